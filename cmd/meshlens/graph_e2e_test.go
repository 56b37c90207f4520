package main

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshlens/meshlens/store/storetest"
)

type apiGraph struct {
	Nodes []struct {
		ID      string `json:"id"`
		Service string `json:"service"`
		Version string `json:"version"`
	} `json:"nodes"`
	Edges []struct {
		Source    string         `json:"source"`
		Target    string         `json:"target"`
		Requests  float64        `json:"requests"`
		ErrorRate float64        `json:"errorRate"`
		P99Ms     float64        `json:"p99Ms"`
		Codes     map[string]int `json:"codes"`
	} `json:"edges"`
}

func getGraph(t *testing.T, p *meshlensProcess, query url.Values) apiGraph {
	t.Helper()
	resp, err := http.Get("http://" + p.http + "/api/v1/graph?" + query.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/graph?%s: %s", query.Encode(), resp.Status)
	}
	var g apiGraph
	if err := json.NewDecoder(resp.Body).Decode(&g); err != nil {
		t.Fatal(err)
	}
	return g
}

type edgeWant struct {
	requests  float64
	errorRate float64
}

// checkEdges compares the edges between the test's services with want,
// keyed "source -> target".
func checkEdges(t *testing.T, g apiGraph, want map[string]edgeWant) bool {
	t.Helper()
	got := map[string]edgeWant{}
	for _, e := range g.Edges {
		got[e.Source+" -> "+e.Target] = edgeWant{e.Requests, e.ErrorRate}
	}
	for k, w := range want {
		e, ok := got[k]
		if !ok || e.requests != w.requests || math.Abs(e.errorRate-w.errorRate) > 1e-3 {
			return false
		}
	}
	return len(got) == len(want)
}

// TestSDKTrafficShowsAsVersionedGraphNowAndAfterRestart sends traffic from
// OTel-SDK services A → B(v1, v2) → C through meshlens, reads the versioned
// graph from the API, restarts meshlens, and reads the same graph back from
// ClickHouse history.
func TestSDKTrafficShowsAsVersionedGraphNowAndAfterRestart(t *testing.T) {
	dsn := storetest.DSN(t)
	dataDir := t.TempDir()
	otlp := freeAddr(t)
	args := []string{"--clickhouse", dsn, "--data-dir", dataDir, "--otlp-grpc", otlp, "--pair-wait", "2s"}
	ml := startMeshlens(t, args...)

	provider := func(attrs ...attribute.KeyValue) *sdktrace.TracerProvider {
		exp, err := otlptracegrpc.New(context.Background(), otlptracegrpc.WithEndpoint(otlp), otlptracegrpc.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		attrs = append(attrs, attribute.String("k8s.namespace.name", "shop"))
		return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(100*time.Millisecond)), sdktrace.WithResource(resource.NewSchemaless(attrs...)))
	}
	a := provider(attribute.String("service.name", "a"))
	b1 := provider(attribute.String("service.name", "b"), attribute.String("service.version", "v1"))
	b2 := provider(attribute.String("service.name", "b"), attribute.String("service.version", "v2"))
	c := provider(attribute.String("service.name", "c"), attribute.String("service.version", "v1"))

	// call records a client span in from and the server span of the callee.
	call := func(ctx context.Context, from, to *sdktrace.TracerProvider, host string, code int, d time.Duration) context.Context {
		start := time.Now()
		cctx, cs := from.Tracer("t").Start(ctx, "GET /", trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(start),
			trace.WithAttributes(attribute.String("server.address", host)))
		sctx, ss := to.Tracer("t").Start(cctx, "GET /", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start),
			trace.WithAttributes(attribute.Int("http.response.status_code", code)))
		ss.End(trace.WithTimestamp(start.Add(d)))
		cs.End(trace.WithTimestamp(start.Add(d)))
		return sctx
	}
	for i := 0; i < 100; i++ {
		to, code := b1, 200
		if i%5 >= 3 { // 40% to v2, a quarter of those fail
			to = b2
			if i%20 >= 3 && i%20 <= 4 {
				code = 503
			}
		}
		bctx := call(context.Background(), a, to, "b.shop.svc.cluster.local", code, 20*time.Millisecond)
		call(bctx, to, c, "c.shop.svc.cluster.local", 200, 5*time.Millisecond)
	}
	for _, tp := range []*sdktrace.TracerProvider{c, b1, b2, a} {
		if err := tp.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}

	want := map[string]edgeWant{
		"shop/a/ -> shop/b/v1":   {60, 0}, // a has no version: its node id ends in "/"
		"shop/a/ -> shop/b/v2":   {40, 0.25},
		"shop/b/v1 -> shop/c/v1": {60, 0},
		"shop/b/v2 -> shop/c/v1": {40, 0},
	}
	live := url.Values{"window": {"5m"}, "view": {"version"}, "namespace": {"shop"}}
	var g apiGraph
	deadline := time.Now().Add(30 * time.Second)
	for {
		g = getGraph(t, ml, live)
		if checkEdges(t, g, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("live graph = %+v, want edges %v", g.Edges, want)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Restart: the live graph starts empty, history still has it.
	ml.Stop(t)
	ml = startMeshlens(t, args...)
	end := time.Now().UTC().Add(time.Minute).Truncate(time.Minute)
	history := url.Values{"window": {"10m"}, "view": {"version"}, "namespace": {"shop"}, "end": {end.Format(time.RFC3339)}, "source": {"clickhouse"}}
	deadline = time.Now().Add(30 * time.Second)
	for {
		g = getGraph(t, ml, history)
		if checkEdges(t, g, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history graph after restart = %+v, want edges %v", g.Edges, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("history after restart shows %d edges", len(g.Edges))
}
