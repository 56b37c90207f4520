package rollout

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshlens/meshlens/collector"
	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/store/storetest"
)

// telemetry is the real telemetry path of a rig: every call is traced with
// the OTel SDK (a client span in the caller, a server span in the version
// that served it), exported over OTLP to meshlens' collector, which pairs
// the spans into mesh records and feeds the live graph.
type telemetry struct {
	client *sdktrace.TracerProvider
	server map[string]*sdktrace.TracerProvider // by version
}

func tracerProvider(t testing.TB, endpoint string, attrs ...attribute.KeyValue) *sdktrace.TracerProvider {
	t.Helper()
	exp, err := otlptracegrpc.New(context.Background(), otlptracegrpc.WithEndpoint(endpoint), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(100*time.Millisecond)),
		sdktrace.WithResource(resource.NewSchemaless(attrs...)))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp
}

// startCollector runs meshlens' collector (ClickHouse from
// MESHLENS_TEST_CLICKHOUSE) with the rig's live graph as its sink, and
// switches the rig's backends and clients to OTel tracing.
func (r *rig) startCollector(t *testing.T) {
	t.Helper()
	st := storetest.Open(t)
	cfg := collector.DefaultConfig()
	addr := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	cfg.OTLPGRPC, cfg.OTLPHTTP, cfg.ALS = addr(), addr(), addr()
	cfg.PairWait = time.Second
	c, err := collector.New(cfg, t.TempDir(), st, []mesh.RecordSink{r.live}, nil, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	meshtest.Background(t, c.Run)
	deadline := time.Now().Add(30 * time.Second)
	for !c.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("collector not ready after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	tel := &telemetry{server: map[string]*sdktrace.TracerProvider{},
		client: tracerProvider(t, cfg.OTLPGRPC, attribute.String("service.name", "client"), attribute.String("k8s.namespace.name", ns))}
	for _, v := range []string{"v1", "v2"} {
		tel.server[v] = tracerProvider(t, cfg.OTLPGRPC, attribute.String("service.name", svc),
			attribute.String("service.version", v), attribute.String("k8s.namespace.name", ns))
	}
	r.tel.Store(tel)
}

type mdCarrier metadata.MD

func (m mdCarrier) Get(k string) string {
	if v := metadata.MD(m).Get(k); len(v) > 0 {
		return v[0]
	}
	return ""
}
func (m mdCarrier) Set(k, v string) { metadata.MD(m).Set(k, v) }
func (m mdCarrier) Keys() []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func rpcAttrs(method string, code codes.Code) []attribute.KeyValue {
	svcName, m, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	return []attribute.KeyValue{attribute.String("rpc.system", "grpc"), attribute.String("rpc.service", svcName),
		attribute.String("rpc.method", m), attribute.Int("rpc.grpc.status_code", int(code))}
}

// serverSpan wraps a backend call in a server span continuing the caller's
// trace.
func (tel *telemetry) serverSpan(ctx context.Context, version, method string, h func(context.Context) (any, error)) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	ctx = propagation.TraceContext{}.Extract(ctx, mdCarrier(md))
	ctx, span := tel.server[version].Tracer("echo").Start(ctx, method, trace.WithSpanKind(trace.SpanKindServer))
	resp, err := h(ctx)
	span.SetAttributes(rpcAttrs(method, status.Code(err))...)
	span.End()
	return resp, err
}

// clientCall makes one traced call.
func (tel *telemetry) clientCall(ctx context.Context, c testgrpc.TestServiceClient, opts ...grpc.CallOption) (*testgrpc.SimpleResponse, error) {
	const method = "/grpc.testing.TestService/UnaryCall"
	ctx, span := tel.client.Tracer("client").Start(ctx, method, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("server.address", host)))
	md := metadata.MD{}
	propagation.TraceContext{}.Inject(ctx, mdCarrier(md))
	ctx = metadata.NewOutgoingContext(ctx, md)
	resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}, opts...)
	span.SetAttributes(rpcAttrs(method, status.Code(err))...)
	span.End()
	return resp, err
}

// The closed loop through the real telemetry pipeline: OTel spans →
// collector → live graph → judge → config store → xDS → clients.
func TestFailingCandidateIsRolledBackThroughCollectorPipeline(t *testing.T) {
	r := newRig(t)
	r.startCollector(t)
	r.startEngine()
	l := r.startLoad(r.client(), 4, 5*time.Millisecond)
	r.apply(canaryYAML("echo", "[50, 100]", "1h", 30, 30, ""))
	r.waitState("echo", Progressing, 10*time.Second)
	meshtest.Eventually(t, 20*time.Second, "the judge sees both versions through the collector", func() error {
		st := r.status("echo")
		if v := st.LastVerdict; v == nil || v.Result != Pass {
			return fmt.Errorf("last verdict %+v", st.LastVerdict)
		}
		return nil
	})
	st, took := r.breakCandidate(l, "echo")
	t.Logf("through the collector: first bad response to clients seeing only stable: %v (target < 10s)", took.Round(time.Millisecond))
	if fv := lastFailing(st); fv == nil || fv.Candidate.Errors == 0 {
		t.Fatalf("no failing verdict with candidate errors:\n%s", historyText(st))
	}
}

func TestHealthyCanaryIsPromotedThroughCollectorPipeline(t *testing.T) {
	r := newRig(t)
	r.startCollector(t)
	r.startEngine()
	r.startLoad(r.client(), 4, 5*time.Millisecond)
	r.apply(canaryYAML("echo", "[20, 50, 100]", "800ms", 30, 30, ""))
	st := r.waitState("echo", Succeeded, 60*time.Second)
	passed := 0
	for _, h := range st.History {
		if h.Event == EvAdvance || h.Event == EvComplete {
			passed++
		}
	}
	if passed != 3 {
		t.Fatalf("want 3 passed steps, got %d:\n%s", passed, historyText(st))
	}
}
