package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func limitBites(t *testing.T, ml *meshlensProcess, listener, limit string) float64 {
	t.Helper()
	return ml.metric(t, fmt.Sprintf(`meshlens_limit_exceeded_total{limit=%q,listener=%q}`, limit, listener))
}

// TestListenerLimitsRefuseAndCountWhenTheyBite sends each listener what
// passes its limit: an HTTP API body over --http-max-body-bytes, a client
// that sends half a request header and waits, OTLP over gRPC and HTTP, an
// ALS message and an xDS request over --grpc-max-message-bytes. Each is
// refused with the answer its protocol has for it and counted in
// meshlens_limit_exceeded_total; requests within the limits still pass.
func TestListenerLimitsRefuseAndCountWhenTheyBite(t *testing.T) {
	otlpGRPC, otlpHTTP, als, xdsAddr := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	ml := startMeshlens(t, "--clickhouse", "clickhouse://127.0.0.1:1/none", "--clickhouse-wait", "0s", "--data-dir", t.TempDir(),
		"--otlp-grpc", otlpGRPC, "--otlp-http", otlpHTTP, "--als", als, "--xds", xdsAddr,
		"--http-max-body-bytes", "4096", "--grpc-max-message-bytes", "65536", "--http-read-timeout", "1s")
	ctx := context.Background()

	// HTTP API body.
	resp, err := http.Post("http://"+ml.http+"/api/v1/config", "application/json", bytes.NewReader(make([]byte, 10_000)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "limit, 4096 bytes") {
		t.Errorf("API body of 10,000 bytes: %d %s, want 413 naming the limit", resp.StatusCode, body)
	}
	if n := limitBites(t, ml, "http", "body_bytes"); n != 1 {
		t.Errorf("http body_bytes bites = %v, want 1", n)
	}
	if code, _ := get(t, ml, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz after the refusal: %d", code)
	}

	// A slow client: half a header, then nothing. The clock starts before
	// the dial, as the server's read deadline starts after it accepts: a
	// cut sooner than 1 s after start is a cut before the timeout.
	start := time.Now()
	conn, err := net.Dial("tcp", ml.http)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	// The read below gives up after 2 minutes: a cut that never comes
	// fails it. No upper bound beyond that: it would only measure how
	// loaded the machine is.
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	if _, err := io.ReadAll(conn); err != nil {
		t.Fatalf("the server did not close the slow connection: %v", err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("slow client cut after %s, before --http-read-timeout (1s)", d)
	}
	t.Logf("slow client cut after %s (--http-read-timeout 1s)", time.Since(start).Round(time.Millisecond))
	waitFor(t, "read_timeout counted", 30*time.Second, func() bool { return limitBites(t, ml, "http", "read_timeout") == 1 })

	// OTLP/gRPC and OTLP/HTTP.
	big := ptraceotlp.NewExportRequestFromTraces(bigSpans(1)) // about 64 KiB of attributes and more
	gc, err := grpc.NewClient(otlpGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	_, err = ptraceotlp.NewGRPCClient(gc).Export(ctx, big)
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("OTLP/gRPC message over the limit: %v, want ResourceExhausted", err)
	}
	waitFor(t, "otlp_grpc message_bytes counted", 30*time.Second, func() bool { return limitBites(t, ml, "otlp_grpc", "message_bytes") == 1 })
	pb, _ := big.MarshalProto()
	resp, err = http.Post("http://"+otlpHTTP+"/v1/traces", "application/x-protobuf", bytes.NewReader(pb))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("OTLP/HTTP body of %d bytes: %d, want 413", len(pb), resp.StatusCode)
	}
	if n := limitBites(t, ml, "otlp_http", "body_bytes"); n != 1 {
		t.Errorf("otlp_http body_bytes bites = %v, want 1", n)
	}
	// A slow OTLP/HTTP sender: the header, 10 bytes of a 1000-byte body,
	// then nothing; cut by --http-read-timeout and counted.
	start = time.Now()
	oc, err := net.Dial("tcp", otlpHTTP)
	if err != nil {
		t.Fatal(err)
	}
	defer oc.Close()
	if _, err := oc.Write([]byte("POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n0123456789")); err != nil {
		t.Fatal(err)
	}
	_ = oc.SetReadDeadline(time.Now().Add(2 * time.Minute))
	if _, err := io.ReadAll(oc); err != nil {
		t.Fatalf("the OTLP/HTTP server did not cut the slow body: %v", err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("slow OTLP/HTTP body cut after %s, before --http-read-timeout (1s)", d)
	}
	t.Logf("slow OTLP/HTTP body cut after %s (--http-read-timeout 1s)", time.Since(start).Round(time.Millisecond))
	waitFor(t, "otlp_http read_timeout counted", 30*time.Second, func() bool { return limitBites(t, ml, "otlp_http", "read_timeout") == 1 })

	// ALS.
	ac, err := grpc.NewClient(als, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	stream, err := alsv3.NewAccessLogServiceClient(ac).StreamAccessLogs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&alsv3.StreamAccessLogsMessage{Identifier: &alsv3.StreamAccessLogsMessage_Identifier{
		Node: &corev3.Node{Id: strings.Repeat("n", 100_000)}, LogName: "big"}})
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("ALS message over the limit: %v, want ResourceExhausted", err)
	}
	waitFor(t, "als message_bytes counted", 30*time.Second, func() bool { return limitBites(t, ml, "als", "message_bytes") == 1 })

	// xDS: an open stream shows; a request over the limit is refused.
	xc, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer xc.Close()
	xs, err := discovery.NewAggregatedDiscoveryServiceClient(xc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := xs.Send(&discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, Node: &corev3.Node{Id: "a"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := xs.Recv(); err != nil {
		t.Fatal(err)
	}
	if n := ml.metric(t, `meshlens_grpc_streams{listener="xds"}`); n != 1 {
		t.Errorf("xds streams open = %v, want 1", n)
	}
	_ = xs.Send(&discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, ResourceNames: []string{strings.Repeat("c", 100_000)}})
	if _, err := xs.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("xDS request over the limit: %v, want ResourceExhausted", err)
	}
	waitFor(t, "xds message_bytes counted", 30*time.Second, func() bool { return limitBites(t, ml, "xds", "message_bytes") == 1 })
}
