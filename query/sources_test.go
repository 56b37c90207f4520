package query

import (
	"context"
	"io"
	"log/slog"
	"math"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/istiometrics"
	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/store/storetest"
)

var (
	peerGW = mesh.Peer{Namespace: "edge", Service: "gateway", Workload: "gateway", Version: "v1"}
	peerA  = mesh.Peer{Namespace: "shop", Service: "a", Workload: "a-v1", Version: "v1"}
	peerB1 = mesh.Peer{Namespace: "shop", Service: "b", Workload: "b-v1", Version: "v1"}
	peerB2 = mesh.Peer{Namespace: "shop", Service: "b", Workload: "b-v2", Version: "v2"}
	peerC  = mesh.Peer{Namespace: "shop", Service: "c", Workload: "c-v1", Version: "v1"}
)

// testTraffic is a small mesh with errors, gRPC, unknown callers, mixed
// mTLS and latencies spread over many buckets.
func testTraffic(at time.Time) []mesh.Record {
	var recs []mesh.Record
	add := func(n int, src, dst mesh.Peer, proto string, code uint16, grpc int16, base time.Duration, mtls bool, flags string) {
		for i := 0; i < n; i++ {
			recs = append(recs, mesh.Record{
				Time: at.Add(-time.Duration(i) * 10 * time.Millisecond), Source: src, Destination: dst, Protocol: proto,
				Method: "GET", Path: "/p", Code: code, GRPCStatus: grpc, Flags: flags,
				Duration: base + time.Duration(i%17)*base/7, BytesIn: uint64(100 + i), BytesOut: uint64(1000 + 3*i), MTLS: mtls,
				Origin: mesh.OriginALS,
			})
		}
	}
	add(120, peerGW, peerA, "http", 200, -1, 3*time.Millisecond, true, "-")
	add(7, mesh.Peer{}, peerA, "http", 404, -1, 700*time.Microsecond, false, "NR")
	add(90, peerA, peerB1, "http", 200, -1, 12*time.Millisecond, true, "-")
	add(3, peerA, peerB1, "http", 503, -1, 30*time.Millisecond, true, "UF")
	add(40, peerA, peerB2, "http", 200, -1, 80*time.Millisecond, true, "-")
	add(20, peerA, peerB2, "http", 500, -1, 400*time.Millisecond, false, "-")
	add(60, peerB1, peerC, "grpc", 200, 0, 2*time.Millisecond, true, "-")
	add(5, peerB2, peerC, "grpc", 200, 14, 1500*time.Millisecond, true, "-")
	return recs
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// edgeSummary is what must agree between sources.
type edgeSummary struct {
	Requests, Errors, BytesIn, BytesOut uint64
	RPS, ErrorRate, P50, P90, P99, MTLS float64
	Codes, GRPC                         map[string]uint64
}

func summarize(g *graph.Graph) (nodes []string, edges map[string]edgeSummary) {
	for _, n := range g.Nodes {
		nodes = append(nodes, n.ID)
	}
	sort.Strings(nodes)
	edges = map[string]edgeSummary{}
	for _, e := range g.Edges {
		edges[e.Source+" -> "+e.Target] = edgeSummary{e.Requests, e.Errors, e.BytesIn, e.BytesOut,
			e.RPS, e.ErrorRate, e.P50Ms, e.P90Ms, e.P99Ms, e.MTLS, e.Codes, e.GRPC}
	}
	return nodes, edges
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(a)) }

func compareGraphs(t *testing.T, name string, want, got *graph.Graph) {
	t.Helper()
	wn, we := summarize(want)
	gn, ge := summarize(got)
	if len(wn) != len(gn) {
		t.Errorf("%s: nodes %v, want %v", name, gn, wn)
	}
	for i := range wn {
		if i < len(gn) && wn[i] != gn[i] {
			t.Errorf("%s: node %d = %s, want %s", name, i, gn[i], wn[i])
		}
	}
	if len(we) != len(ge) {
		t.Errorf("%s: %d edges, want %d", name, len(ge), len(we))
	}
	for k, w := range we {
		g, ok := ge[k]
		if !ok {
			t.Errorf("%s: missing edge %s", name, k)
			continue
		}
		if g.Requests != w.Requests || g.Errors != w.Errors || g.BytesIn != w.BytesIn || g.BytesOut != w.BytesOut ||
			!near(g.RPS, w.RPS) || !near(g.ErrorRate, w.ErrorRate) || !near(g.MTLS, w.MTLS) ||
			!near(g.P50, w.P50) || !near(g.P90, w.P90) || !near(g.P99, w.P99) || len(g.Codes) != len(w.Codes) || len(g.GRPC) != len(w.GRPC) {
			t.Errorf("%s: edge %s\n got %+v\nwant %+v", name, k, g, w)
			continue
		}
		for c, n := range w.Codes {
			if g.Codes[c] != n {
				t.Errorf("%s: edge %s code %s = %d, want %d", name, k, c, g.Codes[c], n)
			}
		}
		for c, n := range w.GRPC {
			if g.GRPC[c] != n {
				t.Errorf("%s: edge %s grpc %s = %d, want %d", name, k, c, g.GRPC[c], n)
			}
		}
	}
}

// TestSourcesAgreeOnTheSameTraffic feeds the same records to the live graph,
// to ClickHouse, and to meshlens' exporter of Istio's metrics, which a real
// Prometheus scrapes, then checks the three sources build the same graph in
// every view: source=prometheus fed by meshlens' own metrics is its live
// graph.
func TestSourcesAgreeOnTheSameTraffic(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()

	var frozen atomic.Int64 // 0: real time
	now := func() time.Time {
		if ns := frozen.Load(); ns != 0 {
			return time.Unix(0, ns)
		}
		return time.Now()
	}
	live, err := graph.New(graph.Config{Now: now}, discard(), nil)
	if err != nil {
		t.Fatal(err)
	}

	im := newIstioMetrics(t)
	prom, err := NewPrometheus(startPrometheus(t, serveIstioMetrics(t, im)), nil)
	if err != nil {
		t.Fatal(err)
	}
	recs := testTraffic(time.Now())
	consume(t, im, recs)
	if err := live.ConsumeRecords(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if err := st.InsertRecords(ctx, recs); err != nil {
		t.Fatal(err)
	}
	// Evaluate everything at the newest scrape: Prometheus then needs no
	// extrapolation (the exporter shows new series at zero first, so none is
	// needed at the start either), and the live clock and ClickHouse end
	// agree with it.
	end := scrapedTwice(t, prom)
	frozen.Store(end.UnixNano())
	live.Refresh()

	window := 5 * time.Minute
	liveT, err := live.Traffic(window)
	if err != nil {
		t.Fatal(err)
	}
	histT, err := NewHistory(st, 0).Traffic(ctx, end, window, "")
	if err != nil {
		t.Fatal(err)
	}
	promT, err := prom.Traffic(ctx, end, window, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, view := range []graph.View{graph.ViewService, graph.ViewVersion, graph.ViewWorkload} {
		opts := graph.Options{View: view}
		want := graph.Build(liveT, opts)
		if len(want.Edges) < 4 {
			t.Fatalf("%s view: live graph has only %d edges", view, len(want.Edges))
		}
		compareGraphs(t, string(view)+"/clickhouse", want, graph.Build(histT, opts))
		compareGraphs(t, string(view)+"/prometheus", want, graph.Build(promT, opts))
	}
	// The numbers are the records', not just equal to each other.
	g := graph.Build(liveT, graph.Options{View: graph.ViewVersion})
	for _, e := range g.Edges {
		if e.Source == "shop/a/v1" && e.Target == "shop/b/v2" {
			if e.Requests != 60 || e.Errors != 20 || e.Codes["500"] != 20 || e.MTLS != 40.0/60 {
				t.Fatalf("a -> b v2 = %+v", e)
			}
		}
		if e.Target == "shop/a/v1" && e.Source == "unknown" && (e.Requests != 7 || e.Flags["NR"] != 7) {
			t.Fatalf("unknown -> a = %+v", e)
		}
	}
	// Namespace filtering agrees too.
	promNS, err := prom.Traffic(ctx, end, window, "edge")
	if err != nil {
		t.Fatal(err)
	}
	histNS, err := NewHistory(st, 0).Traffic(ctx, end, window, "edge")
	if err != nil {
		t.Fatal(err)
	}
	wantNS := graph.Build(liveT, graph.Options{View: graph.ViewService, Namespace: "edge"})
	if len(wantNS.Edges) != 1 {
		t.Fatalf("namespace edge: %d edges", len(wantNS.Edges))
	}
	compareGraphs(t, "namespace/prometheus", wantNS, graph.Build(promNS, graph.Options{View: graph.ViewService, Namespace: "edge"}))
	compareGraphs(t, "namespace/clickhouse", wantNS, graph.Build(histNS, graph.Options{View: graph.ViewService, Namespace: "edge"}))
}

// TestPrometheusSourceCountsAcrossCounterResets restarts the exporter
// (fresh counters at zero, as after a restart of meshlens or of an Envoy)
// between two halves of the traffic; increase() must count both halves, as
// the live graph does.
func TestPrometheusSourceCountsAcrossCounterResets(t *testing.T) {
	ctx := context.Background()
	var cur atomic.Pointer[istiometrics.Exporter]
	first := newIstioMetrics(t)
	cur.Store(first)
	prom, err := NewPrometheus(startPrometheus(t, serveMetrics(t, &cur)), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Every label set in both halves: a series that ended would be
	// extrapolated past its last sample.
	recs := testTraffic(time.Now())
	var before, after []mesh.Record
	for i, r := range recs {
		if i%2 == 0 {
			before = append(before, r)
		} else {
			after = append(after, r)
		}
	}
	consume(t, first, before)
	scrapedTwice(t, prom)

	second := newIstioMetrics(t) // meshlens restarted
	consume(t, second, after)
	cur.Store(second)
	end := scrapedTwice(t, prom)

	live, err := graph.New(graph.Config{Now: func() time.Time { return end }}, discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := live.ConsumeRecords(ctx, recs); err != nil {
		t.Fatal(err)
	}
	liveT, _ := live.Refresh().Traffic(5 * time.Minute)
	promT, err := prom.Traffic(ctx, end, 5*time.Minute, "")
	if err != nil {
		t.Fatal(err)
	}
	compareGraphs(t, "after reset", graph.Build(liveT, graph.Options{View: graph.ViewVersion}), graph.Build(promT, graph.Options{View: graph.ViewVersion}))
}
