package graph

import (
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/meshlens/meshlens/mesh"
)

func trafficOf(recs ...mesh.Record) *Traffic {
	t := NewTraffic(t0, time.Minute)
	bounds := latencyBoundsUs()
	for _, r := range recs {
		st := t.Edge(EdgeKey{r.Source.OrUnknown(), r.Destination.OrUnknown(), r.Protocol})
		st.AddCode(r.Protocol, CodeKey{r.Code, r.GRPCStatus}, 1)
		us := uint64(r.Duration / time.Microsecond)
		st.Latency[bucketOfUs(bounds, us)]++
		st.DurationSumUs += us
		if r.MTLS {
			st.MTLS++
		}
	}
	return t
}

func TestBuildViewsNameNodesByTheirGrain(t *testing.T) {
	tr := trafficOf(
		rec(t0, pA, pB1, 200, 10*time.Millisecond),
		rec(t0, pA, pB2, 503, 10*time.Millisecond),
		rec(t0, mesh.Peer{}, pA, 200, 10*time.Millisecond),
	)
	tests := []struct {
		view  View
		nodes []string
		edges [][2]string
	}{
		{ViewService, []string{"shop/a", "shop/b", "unknown"}, [][2]string{{"shop/a", "shop/b"}, {"unknown", "shop/a"}}},
		{ViewVersion, []string{"shop/a/v1", "shop/b/v1", "shop/b/v2", "unknown"}, [][2]string{{"shop/a/v1", "shop/b/v1"}, {"shop/a/v1", "shop/b/v2"}, {"unknown", "shop/a/v1"}}},
		{ViewWorkload, []string{"shop/a-v1", "shop/b-v1", "shop/b-v2", "unknown"}, [][2]string{{"shop/a-v1", "shop/b-v1"}, {"shop/a-v1", "shop/b-v2"}, {"unknown", "shop/a-v1"}}},
	}
	for _, tt := range tests {
		t.Run(string(tt.view), func(t *testing.T) {
			g := Build(tr, Options{View: tt.view})
			var nodes []string
			for _, n := range g.Nodes {
				nodes = append(nodes, n.ID)
			}
			var edges [][2]string
			for _, e := range g.Edges {
				edges = append(edges, [2]string{e.Source, e.Target})
			}
			if !reflect.DeepEqual(nodes, tt.nodes) || !reflect.DeepEqual(edges, tt.edges) {
				t.Fatalf("nodes %v edges %v; want %v %v", nodes, edges, tt.nodes, tt.edges)
			}
		})
	}
}

func TestBuildEdgeCarriesCountsRatesAndPercentiles(t *testing.T) {
	var recs []mesh.Record
	for i := 0; i < 30; i++ {
		code := uint16(200)
		if i%3 == 0 {
			code = 503
		}
		r := rec(t0, pA, pB1, code, time.Duration(i+1)*time.Millisecond)
		r.MTLS = i%2 == 0
		recs = append(recs, r)
	}
	g := Build(trafficOf(recs...), Options{View: ViewService})
	if len(g.Edges) != 1 {
		t.Fatalf("%d edges", len(g.Edges))
	}
	e := g.Edges[0]
	counts := make([]uint64, len(mesh.LatencyBucketsMs)+1)
	for i := 1; i <= 30; i++ {
		counts[mesh.BucketIndex(float64(i))]++
	}
	if e.Requests != 30 || e.Errors != 10 || math.Abs(e.ErrorRate-1.0/3) > 1e-9 || e.RPS != 0.5 || e.MTLS != 0.5 {
		t.Fatalf("edge = %+v", e)
	}
	if !reflect.DeepEqual(e.Codes, map[string]uint64{"200": 20, "503": 10}) {
		t.Fatalf("codes = %v", e.Codes)
	}
	if math.Abs(e.P90Ms-mesh.Quantile(0.9, counts)) > 1e-3 || math.Abs(e.AvgMs-15.5) > 1e-3 {
		t.Fatalf("p90 %v avg %v, want %v 15.5", e.P90Ms, e.AvgMs, mesh.Quantile(0.9, counts))
	}
	b := g.byID["shop/b"]
	if b.Health != "failing" || b.Requests != 30 || g.byID["shop/a"].Health != "idle" {
		t.Fatalf("health: b %+v", b)
	}
}

func TestBuildKeepsBusiestNodesUnderTheCap(t *testing.T) {
	var recs []mesh.Record
	for i := 0; i < 5; i++ {
		dst := mesh.Peer{Namespace: "shop", Service: string(rune('p' + i))}
		for j := 0; j <= i; j++ {
			recs = append(recs, rec(t0, pA, dst, 200, time.Millisecond))
		}
	}
	g := Build(trafficOf(recs...), Options{View: ViewService, MaxNodes: 3})
	if !g.Truncated || len(g.Nodes) != 3 || len(g.Edges) != 2 {
		t.Fatalf("truncated=%v nodes=%d edges=%d", g.Truncated, len(g.Nodes), len(g.Edges))
	}
	if g.byID["shop/t"] == nil || g.byID["shop/s"] == nil || g.byID["shop/a"] == nil {
		t.Fatal("kept the wrong nodes")
	}
}

func TestImpactFindsBlastRadiusDepthAndCycles(t *testing.T) {
	peer := func(s string) mesh.Peer { return mesh.Peer{Namespace: "n", Service: s} }
	// gw -> a -> b -> c -> d ; x -> b ; c <-> e (a cycle) ; d -> d (self call)
	calls := [][2]string{{"gw", "a"}, {"a", "b"}, {"b", "c"}, {"c", "d"}, {"x", "b"}, {"c", "e"}, {"e", "c"}, {"d", "d"}}
	var recs []mesh.Record
	for _, c := range calls {
		recs = append(recs, rec(t0, peer(c[0]), peer(c[1]), 200, time.Millisecond))
	}
	g := Build(trafficOf(recs...), Options{View: ViewService})
	imp, err := g.Impact("n/b")
	if err != nil {
		t.Fatal(err)
	}
	want := Impact{Node: "n/b", Callers: []string{"n/a", "n/x"}, AffectedCallers: []string{"n/a", "n/gw", "n/x"}, BlastRadius: 3,
		UpstreamDepth: 2, Dependencies: []string{"n/c", "n/d", "n/e"}, DependencyDepth: 2}
	if !reflect.DeepEqual(imp, want) {
		t.Fatalf("impact\n got %+v\nwant %+v", imp, want)
	}
	if !reflect.DeepEqual(g.Cycles, [][]string{{"n/c", "n/e"}, {"n/d"}}) {
		t.Fatalf("cycles = %v", g.Cycles)
	}
	p, err := g.Path("n/gw", "n/e")
	if err != nil || !reflect.DeepEqual(p, []string{"n/gw", "n/a", "n/b", "n/c", "n/e"}) {
		t.Fatalf("path = %v, %v", p, err)
	}
	if _, err := g.Impact("n/nope"); err == nil {
		t.Fatal("impact of a missing node: no error")
	}
}

func TestServicesListCalleesWithInboundNumbers(t *testing.T) {
	tr := trafficOf(rec(t0, pA, pB1, 200, time.Millisecond), rec(t0, pA, pB2, 500, time.Millisecond), rec(t0, mesh.Peer{}, pA, 200, time.Millisecond))
	got := Services(tr, "")
	if len(got) != 2 || got[0].Name != "a" || got[1].Name != "b" || got[1].Requests != 2 || got[1].ErrorRate != 0.5 ||
		!reflect.DeepEqual(got[1].Versions, []string{"v1", "v2"}) || got[0].Callers != 1 {
		t.Fatalf("services = %+v", got)
	}
}

func TestHealthOfNodesEdgesAndServicesFollowsTheErrorRateThresholds(t *testing.T) {
	for _, c := range []struct {
		name                  string
		errs, of              int
		node, edgeTo, service string
	}{
		{"no errors", 0, 200, "healthy", "healthy", "healthy"},
		{"just under 1%", 1, 101, "healthy", "healthy", "healthy"},
		{"1% is degraded", 1, 100, "degraded", "degraded", "degraded"},
		{"5% is still degraded", 5, 100, "degraded", "degraded", "degraded"},
		{"10% is failing", 10, 100, "failing", "failing", "failing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var recs []mesh.Record
			for i := 0; i < c.of; i++ {
				code := uint16(200)
				if i < c.errs {
					code = 503
				}
				recs = append(recs, rec(t0, pA, pB1, code, time.Millisecond))
			}
			g := Build(trafficOf(recs...), Options{View: ViewService})
			if got := g.byID["shop/b"].Health; got != c.node {
				t.Errorf("node health %s, want %s", got, c.node)
			}
			if got := g.Edges[0].Health; got != c.edgeTo {
				t.Errorf("edge health %s, want %s", got, c.edgeTo)
			}
			if got := Services(trafficOf(recs...), "")[1].Health; got != c.service {
				t.Errorf("service health %s, want %s", got, c.service)
			}
			if got := g.byID["shop/a"].Health; got != "idle" {
				t.Errorf("a caller nobody calls is %s, want idle", got)
			}
		})
	}
}
