package collector_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	datav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlens/meshlens/collector"
	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/store"
	"github.com/meshlens/meshlens/store/storetest"
)

// freeAddr returns a loopback address nobody listens on right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type harness struct {
	cfg     collector.Config
	dataDir string
	store   *store.Store
	reg     *prometheus.Registry
	sink    *recordSink
}

// recordSink is a live sink that remembers what it saw.
type recordSink struct{ ch chan []mesh.Record }

func (s *recordSink) ConsumeRecords(_ context.Context, recs []mesh.Record) error {
	select {
	case s.ch <- recs:
	default:
	}
	return nil
}

// startCollector runs a collector on free loopback ports against a fresh
// ClickHouse database until the test ends.
func startCollector(t *testing.T) *harness { return startCollectorB(t) }

func startCollectorB(t testing.TB, tweaks ...func(*collector.Config)) *harness {
	t.Helper()
	return startCollectorWith(t, nil, nil, tweaks...)
}

// startCollectorWith is startCollectorB with a peer resolver and one more
// live sink (the graph); either may be nil.
func startCollectorWith(t testing.TB, peers mesh.PeerResolver, live mesh.RecordSink, tweaks ...func(*collector.Config)) *harness {
	t.Helper()
	h := &harness{store: storetest.Open(t), reg: prometheus.NewRegistry(), sink: &recordSink{ch: make(chan []mesh.Record, 1024)}}
	h.cfg = collector.DefaultConfig()
	h.cfg.OTLPGRPC, h.cfg.OTLPHTTP, h.cfg.ALS = freeAddr(t), freeAddr(t), freeAddr(t)
	h.cfg.PairWait = time.Second
	for _, tweak := range tweaks {
		tweak(&h.cfg)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	sinks := []mesh.RecordSink{h.sink}
	if live != nil {
		sinks = append(sinks, live)
	}
	h.dataDir = t.TempDir()
	c, err := collector.New(h.cfg, h.dataDir, h.store, sinks, peers, h.reg, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("collector run: %v", err)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !c.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("collector not ready after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return h
}

// waitCount polls a count query until it reaches want or the deadline passes.
func waitCount(t *testing.T, s *store.Store, query string, want uint64) {
	t.Helper()
	var got uint64
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if err := s.Conn().QueryRow(context.Background(), query).Scan(&got); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		if got >= want {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got != want {
		t.Fatalf("%s = %d, want %d", query, got, want)
	}
}

func tracerProvider(t *testing.T, endpoint string, attrs ...attribute.KeyValue) *sdktrace.TracerProvider {
	t.Helper()
	exp, err := otlptracegrpc.New(context.Background(), otlptracegrpc.WithEndpoint(endpoint), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(resource.NewSchemaless(attrs...)))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp
}

func TestSDKSpanPairsBecomeVersionedEdges(t *testing.T) {
	h := startCollector(t)
	a := tracerProvider(t, h.cfg.OTLPGRPC, attribute.String("service.name", "a"), attribute.String("k8s.namespace.name", "shop"))
	b1 := tracerProvider(t, h.cfg.OTLPGRPC, attribute.String("service.name", "b"), attribute.String("service.version", "v1"), attribute.String("k8s.namespace.name", "shop"))
	b2 := tracerProvider(t, h.cfg.OTLPGRPC, attribute.String("service.name", "b"), attribute.String("service.version", "v2"), attribute.String("k8s.namespace.name", "shop"))

	calls := []struct {
		server *sdktrace.TracerProvider
		n      int
		client time.Duration // the caller's view, which the edge reports
		fail   int           // how many of n fail with 503
	}{
		{b1, 30, 20 * time.Millisecond, 0},
		{b2, 20, 120 * time.Millisecond, 5},
	}
	base := time.Now().Add(-time.Minute)
	for _, c := range calls {
		for i := 0; i < c.n; i++ {
			start := base.Add(time.Duration(i) * time.Millisecond)
			ctx, client := a.Tracer("a").Start(context.Background(), "GET /b", trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(start),
				trace.WithAttributes(attribute.String("server.address", "b.shop.svc.cluster.local")))
			code := 200
			if i < c.fail {
				code = 503
			}
			_, server := c.server.Tracer("b").Start(ctx, "GET /b", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start.Add(time.Millisecond)),
				trace.WithAttributes(attribute.Int("http.response.status_code", code), attribute.String("http.request.method", "GET"), attribute.String("url.path", "/b")))
			server.End(trace.WithTimestamp(start.Add(c.client - time.Millisecond)))
			client.End(trace.WithTimestamp(start.Add(c.client)))
		}
	}
	// Servers flush before the client, so each pair is completed by its client half.
	for _, tp := range []*sdktrace.TracerProvider{b1, b2, a} {
		if err := tp.ForceFlush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}

	waitCount(t, h.store, "SELECT count() FROM "+h.store.Table("spans"), 100)
	waitCount(t, h.store, "SELECT count() FROM "+h.store.Table("access_logs"), 50)
	// The materialized view fills the rollup after the source part is
	// written, so the rollup may lag the raw count for a moment.
	waitCount(t, h.store, "SELECT countMerge(requests) FROM "+h.store.Table("edges_1m"), 50)

	rows, err := h.store.Conn().Query(context.Background(), `SELECT src_service, dst_service, dst_version, countMerge(requests),
  sumForEachMerge(latency) FROM `+h.store.Table("edges_1m")+` GROUP BY src_service, dst_service, dst_version ORDER BY dst_version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	type edge struct {
		src, dst, ver string
		n             uint64
		p50           float64
	}
	var got []edge
	for rows.Next() {
		var e edge
		var lat []uint64
		if err := rows.Scan(&e.src, &e.dst, &e.ver, &e.n, &lat); err != nil {
			t.Fatal(err)
		}
		e.p50 = mesh.Quantile(0.5, lat)
		got = append(got, e)
	}
	want := []edge{{"a", "b", "v1", 30, 17.5}, {"a", "b", "v2", 20, 175}}
	if len(got) != len(want) {
		t.Fatalf("edges = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].src != want[i].src || got[i].dst != want[i].dst || got[i].ver != want[i].ver || got[i].n != want[i].n || math.Abs(got[i].p50-want[i].p50) > 0.01 {
			t.Errorf("edge %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	var errs uint64
	if err := h.store.Conn().QueryRow(context.Background(), "SELECT count() FROM "+h.store.Table("access_logs")+" WHERE dst_version = 'v2' AND code = 503").Scan(&errs); err != nil {
		t.Fatal(err)
	}
	if errs != 5 {
		t.Errorf("503s to b@v2 = %d, want 5", errs)
	}
}

func istioNode(app, version, ns string) *corev3.Node {
	md, _ := structpb.NewStruct(map[string]any{
		"NAMESPACE":     ns,
		"NAME":          app + "-" + version + "-7d9f8",
		"WORKLOAD_NAME": app + "-" + version,
		"LABELS":        map[string]any{"app": app, "version": version},
	})
	return &corev3.Node{Id: "sidecar~10.0.0.1~" + app + "." + ns + "~" + ns + ".svc.cluster.local", Cluster: app + "." + ns, Metadata: md}
}

func httpEntry(cluster string, code uint32, d time.Duration) *datav3.HTTPAccessLogEntry {
	return &datav3.HTTPAccessLogEntry{
		CommonProperties: &datav3.AccessLogCommon{
			StartTime:       timestamppb.New(time.Now().Add(-time.Second)),
			UpstreamCluster: cluster,
			Duration:        durationpb.New(d),
			ResponseFlags:   &datav3.ResponseFlags{UpstreamRequestTimeout: code == 504},
		},
		ProtocolVersion: datav3.HTTPAccessLogEntry_HTTP11,
		Request:         &datav3.HTTPRequestProperties{RequestMethod: corev3.RequestMethod_GET, Path: "/reviews/1", Authority: "reviews:9080"},
		Response:        &datav3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(code), ResponseBodyBytes: 100},
	}
}

// alsStream opens an Envoy ALS stream to addr, as an Envoy would.
func alsStream(t *testing.T, addr string) alsv3.AccessLogService_StreamAccessLogsClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	stream, err := alsv3.NewAccessLogServiceClient(conn).StreamAccessLogs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

func TestEnvoyALSEntriesBecomeAccessLogRowsWithVersion(t *testing.T) {
	h := startCollector(t)
	stream := alsStream(t, h.cfg.ALS)
	v2 := "outbound|9080|v2|reviews.bookinfo.svc.cluster.local"
	v3 := "outbound|9080|v3|reviews.bookinfo.svc.cluster.local"
	var first []*datav3.HTTPAccessLogEntry
	for i := 0; i < 10; i++ {
		first = append(first, httpEntry(v2, 200, 30*time.Millisecond))
	}
	msgs := []*alsv3.StreamAccessLogsMessage{
		{
			Identifier: &alsv3.StreamAccessLogsMessage_Identifier{Node: istioNode("productpage", "v1", "bookinfo"), LogName: "als"},
			LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: first}},
		},
		{ // later messages carry no identifier
			LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: []*datav3.HTTPAccessLogEntry{
				httpEntry(v3, 503, 5*time.Millisecond), httpEntry(v3, 504, 15*time.Second),
			}}},
		},
		{
			LogEntries: &alsv3.StreamAccessLogsMessage_TcpLogs{TcpLogs: &alsv3.StreamAccessLogsMessage_TCPAccessLogEntries{LogEntry: []*datav3.TCPAccessLogEntry{{
				CommonProperties:     &datav3.AccessLogCommon{UpstreamCluster: "outbound|3306||mysql.db.svc.cluster.local", Duration: durationpb.New(time.Second)},
				ConnectionProperties: &datav3.ConnectionProperties{ReceivedBytes: 10, SentBytes: 20},
			}}}},
		},
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}

	waitCount(t, h.store, "SELECT count() FROM "+h.store.Table("access_logs"), 13)
	type row struct {
		src, srcVer, dst, dstVer, flags, proto string
		code                                   uint16
		n                                      uint64
	}
	rows, err := h.store.Conn().Query(context.Background(), `SELECT src_service, src_version, dst_service, dst_version, flags, protocol, code, count()
FROM `+h.store.Table("access_logs")+` GROUP BY src_service, src_version, dst_service, dst_version, flags, protocol, code ORDER BY dst_service, dst_version, code`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.src, &r.srcVer, &r.dst, &r.dstVer, &r.flags, &r.proto, &r.code, &r.n); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	want := []row{
		{"productpage", "v1", "mysql", "", "-", "tcp", 0, 1},
		{"productpage", "v1", "reviews", "v2", "-", "http", 200, 10},
		{"productpage", "v1", "reviews", "v3", "-", "http", 503, 1},
		{"productpage", "v1", "reviews", "v3", "UT", "http", 504, 1},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("access_logs:\n got %+v\nwant %+v", got, want)
	}
}

// TestInboundAccessLogsOfMeshCallers: reviews' sidecar reports requests
// from productpage (named by its mTLS identity) and from outside the mesh.
// By default only the latter counts — productpage's own proxy reports its
// requests —; with --inbound-access-logs all, for proxyless callers, both do.
func TestInboundAccessLogsOfMeshCallers(t *testing.T) {
	for _, tc := range []struct {
		setting string
		records uint64
		want    string
	}{
		{collector.InboundOutsideMesh, 3, "[{ reviews v3 3}]"},
		{collector.InboundAll, 5, "[{ reviews v3 3} {bookinfo reviews v3 2}]"},
	} {
		t.Run(tc.setting, func(t *testing.T) {
			h := startCollectorB(t, func(c *collector.Config) { c.InboundAccessLogs = tc.setting })
			stream := alsStream(t, h.cfg.ALS)
			var entries []*datav3.HTTPAccessLogEntry
			for i := range 5 {
				e := httpEntry("inbound|9080||", 200, 10*time.Millisecond)
				if i < 2 {
					e.CommonProperties.TlsProperties = &datav3.TLSProperties{PeerCertificateProperties: &datav3.TLSProperties_CertificateProperties{
						SubjectAltName: []*datav3.TLSProperties_CertificateProperties_SubjectAltName{{
							San: &datav3.TLSProperties_CertificateProperties_SubjectAltName_Uri{Uri: "spiffe://cluster.local/ns/bookinfo/sa/productpage"},
						}},
					}}
				}
				entries = append(entries, e)
			}
			if err := stream.Send(&alsv3.StreamAccessLogsMessage{
				Identifier: &alsv3.StreamAccessLogsMessage_Identifier{Node: istioNode("reviews", "v3", "bookinfo"), LogName: "als"},
				LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries}},
			}); err != nil {
				t.Fatal(err)
			}
			if _, err := stream.CloseAndRecv(); err != nil {
				t.Fatal(err)
			}
			// access_logs holds the request records, what edges are made of.
			waitCount(t, h.store, "SELECT count() FROM "+h.store.Table("access_logs"), tc.records)
			type edge struct {
				srcNS, dst, dstVer string
				n                  uint64
			}
			var got []edge
			rows, err := h.store.Conn().Query(context.Background(), `SELECT src_namespace, dst_service, dst_version, count()
FROM `+h.store.Table("access_logs")+` GROUP BY src_namespace, dst_service, dst_version ORDER BY src_namespace`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			for rows.Next() {
				var e edge
				if err := rows.Scan(&e.srcNS, &e.dst, &e.dstVer, &e.n); err != nil {
					t.Fatal(err)
				}
				got = append(got, e)
			}
			if fmt.Sprint(got) != tc.want {
				t.Fatalf("access_logs by caller namespace: got %v, want %s", got, tc.want)
			}
		})
	}
}

func TestMalformedALSStreamIsRefusedAndCounted(t *testing.T) {
	h := startCollector(t)
	stream := alsStream(t, h.cfg.ALS)
	// No identifier on the first message.
	_ = stream.Send(&alsv3.StreamAccessLogsMessage{LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{
		HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: []*datav3.HTTPAccessLogEntry{httpEntry("x", 200, time.Millisecond)}}}})
	_, err := stream.CloseAndRecv()
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("stream without identifier: %v, want InvalidArgument", err)
	}
	if got := metricValue(t, h.reg, "meshlens_ingest_malformed_total"); got != 1 {
		t.Fatalf("malformed counter = %v, want 1", got)
	}
}

// metricValue sums every series of a metric family.
func metricValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}
