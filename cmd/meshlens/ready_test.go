package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
)

// TestReadyzSaysHowClickHouseTheQueueAndXDSAreNow checks /readyz follows
// the state of things as it changes: ClickHouse stopped after start (it
// used to stay plain "ready" once the schema was made), the ingest queue
// filling up to its bound (not ready: telemetry is refused), a proxy
// NACKing its config and then accepting the next one.
func TestReadyzSaysHowClickHouseTheQueueAndXDSAreNow(t *testing.T) {
	ch := startClickHouse(t)
	otlp, xdsAddr := freeAddr(t), freeAddr(t)
	ml := startMeshlens(t, "--clickhouse", ch.DSN(), "--data-dir", t.TempDir(), "--otlp-grpc", otlp, "--xds", xdsAddr,
		"--queue-max-bytes", "1048576", "--clickhouse-wait", "2s")
	if got := readyz(t, ml); got != "ready" {
		t.Fatalf("/readyz with everything up: %q", got)
	}

	// A proxy NACKs; then ACKs the same resources again.
	cc, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := structpb.NewStruct(map[string]any{"GENERATOR": "grpc", "NAMESPACE": "default"})
	if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, Node: &corev3.Node{Id: "sidecar~10.0.0.9~nacker.default~default.svc.cluster.local", Metadata: md}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: resp.GetNonce(),
		ErrorDetail: &statuspb.Status{Code: 3, Message: "cluster refused by the test"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "/readyz naming the NACK", 10*time.Second, func() bool {
		return strings.Contains(readyz(t, ml), "xds: 1 proxies rejected their latest config (NACK)")
	})
	if code, body := get(t, ml, "/readyz"); code != http.StatusOK || !strings.Contains(body, "nacker") {
		t.Errorf("/readyz with a NACK: %d %q, want 200 naming the proxy", code, body)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: resp.GetNonce(), VersionInfo: resp.GetVersionInfo()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "/readyz after the ACK", 10*time.Second, func() bool { return readyz(t, ml) == "ready" })

	// ClickHouse goes away after the schema was made.
	ch.Stop()
	waitFor(t, "/readyz naming ClickHouse", 10*time.Second, func() bool {
		return strings.HasPrefix(readyz(t, ml), "ready; clickhouse unreachable")
	})

	// The queue fills up to its bound while ClickHouse is away.
	conn, err := grpc.NewClient(otlp, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := ptraceotlp.NewGRPCClient(conn)
	var sawWarning bool
	for i := 0; ; i++ {
		if _, err := client.Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(bigSpans(i))); err != nil {
			t.Logf("request %d refused: %v", i, err)
			break
		}
		sawWarning = sawWarning || strings.Contains(readyz(t, ml), "% full")
		if i > 1000 {
			t.Fatal("the queue never filled up")
		}
	}
	if !sawWarning {
		t.Errorf("/readyz never warned of the queue filling up")
	}
	if code, body := get(t, ml, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "ingest queue full") {
		t.Errorf("/readyz with the queue full: %d %q, want 503 ingest queue full", code, body)
	}

	// ClickHouse back: the queue drains, all is well again.
	ch.Start()
	waitFor(t, "/readyz after ClickHouse is back", 90*time.Second, func() bool { return readyz(t, ml) == "ready" })
}

// bigSpans is one OTLP request of about 64 KiB.
func bigSpans(seq int) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "filler")
	ss := rs.ScopeSpans().AppendEmpty()
	now := time.Now()
	for i := 0; i < 16; i++ {
		sp := ss.Spans().AppendEmpty()
		sp.SetName("fill")
		sp.SetTraceID(pcommon.TraceID{byte(seq), byte(seq >> 8), byte(i), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13})
		sp.SetSpanID(pcommon.SpanID{byte(seq), byte(seq >> 8), byte(i), 1, 2, 3, 4, 5})
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(now))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Millisecond)))
		sp.Attributes().PutStr("filler", strings.Repeat("x", 4096))
	}
	return td
}
