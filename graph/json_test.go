package graph

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// randString draws from what telemetry may carry: plain names, JSON's
// special characters, HTML's, control bytes, multi-byte runes, U+2028/9 and
// invalid UTF-8.
func randString(r *rand.Rand) string {
	pieces := []string{"", "a", "svc-1", "reviews", "v2", "ns.x", `"`, `\`, "<", ">", "&", "\n", "\t", "\r", "\b", "\f",
		"\x00", "\x1f", "\x7f", "é", "日本", "\u2028", "\u2029", "\xff", "\xe2\x80", "💥", " ", "/", "'"}
	var b []byte
	for range r.IntN(6) {
		b = append(b, pieces[r.IntN(len(pieces))]...)
	}
	return string(b)
}

// randFloat covers both of encoding/json's formats and their cut-offs.
func randFloat(r *rand.Rand) float64 {
	switch r.IntN(8) {
	case 0:
		return 0
	case 1:
		return float64(r.IntN(1000))
	case 2:
		return r.Float64()
	case 3:
		return r.Float64() * 1e-7 // below 1e-6: exponent form
	case 4:
		return []float64{1e-6, 1e21, 9.999999e20, 1e-7, 5e-324, math.MaxFloat64, -1e-9, -1e22}[r.IntN(8)]
	case 5:
		return -r.Float64() * 1e5
	case 6:
		return float64(r.Uint64()) * 1e10
	default:
		return r.NormFloat64() * 100
	}
}

func randCounts(r *rand.Rand, nilOK bool) map[string]uint64 {
	if nilOK && r.IntN(3) == 0 {
		return nil
	}
	m := map[string]uint64{}
	for range r.IntN(5) {
		m[randString(r)] = r.Uint64() >> uint(r.IntN(64))
	}
	return m
}

func randGraph(r *rand.Rand) *Graph {
	g := &Graph{View: View(randString(r)), Namespace: randString(r), Source: randString(r), Window: randString(r),
		WindowSeconds: randFloat(r), End: time.Unix(r.Int64N(1<<34), r.Int64N(1e9)).UTC(),
		Generated: time.Unix(r.Int64N(1<<34), 0).In(time.FixedZone("x", 3600*(r.IntN(20)-10))),
		Truncated: r.IntN(2) == 0, Partial: r.IntN(2) == 0}
	if r.IntN(10) > 0 {
		g.Nodes = []*Node{}
	}
	for range r.IntN(20) {
		g.Nodes = append(g.Nodes, &Node{ID: randString(r), Namespace: randString(r), Service: randString(r), Version: randString(r),
			Workload: randString(r), Unknown: r.IntN(2) == 0, Requests: r.Uint64(), RPS: randFloat(r), ErrorRate: randFloat(r),
			Health: randString(r), InCycle: r.IntN(2) == 0})
	}
	if r.IntN(10) > 0 {
		g.Edges = []*Edge{}
	}
	for range r.IntN(30) {
		g.Edges = append(g.Edges, &Edge{Source: randString(r), Target: randString(r), Protocol: randString(r),
			Requests: r.Uint64(), Errors: r.Uint64N(1000), RPS: randFloat(r), ErrorRate: randFloat(r), P50Ms: randFloat(r),
			P90Ms: randFloat(r), P99Ms: randFloat(r), AvgMs: randFloat(r), Codes: randCounts(r, true), GRPC: randCounts(r, true),
			Flags: randCounts(r, true), MTLS: randFloat(r), BytesIn: r.Uint64(), BytesOut: r.Uint64(), Health: randString(r)})
	}
	for range r.IntN(3) {
		var c []string
		for range r.IntN(4) {
			c = append(c, randString(r))
		}
		g.Cycles = append(g.Cycles, c)
	}
	for range r.IntN(3) {
		g.Missing = append(g.Missing, MissingReplica{Replica: randString(r), Error: randString(r)})
	}
	return g
}

func sameAsEncodingJSON(t *testing.T, g *Graph) {
	t.Helper()
	want, werr := json.Marshal(g)
	got, gerr := g.AppendJSON(nil)
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("encoding/json error %v, AppendJSON error %v", werr, gerr)
	}
	if werr == nil && !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("AppendJSON differs from encoding/json at byte %d:\n got %q\nwant %q", i, got[max(0, i-40):min(len(got), i+40)], want[max(0, i-40):min(len(want), i+40)])
	}
}

// The graph answer written without reflection is byte for byte what
// encoding/json writes, for random graphs with every kind of string and
// float in them.
func TestAppendJSONIsEncodingJSONsOutputForRandomGraphs(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 2026))
	for range 3000 {
		sameAsEncodingJSON(t, randGraph(r))
	}
}

// A built graph (the real one the API answers) encodes the same both ways,
// and JSON() is written once and shared.
func TestAppendJSONOfABuiltGraph(t *testing.T) {
	c := newClock(t0)
	l, _ := newLive(t, c, Config{PublishInterval: time.Hour})
	consume(t, l, rec(t0, pA, pB1, 200, time.Millisecond), rec(t0, pA, pB2, 503, 40*time.Millisecond),
		rec(t0, pB1, pC, 200, 3*time.Millisecond), rec(t0, pC, pA, 404, time.Second))
	g, err := l.Refresh().Graph(time.Minute, Options{View: ViewVersion, Source: "live", Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Edges) != 4 || len(g.Cycles) == 0 {
		t.Fatalf("%d edges, cycles %v: want 4 and a cycle", len(g.Edges), g.Cycles)
	}
	sameAsEncodingJSON(t, g)
	a, err := g.JSON()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := g.JSON()
	if &a[0] != &b[0] {
		t.Error("JSON() wrote the graph twice")
	}
}

// NaN and infinities are refused, as encoding/json refuses them, naming
// where.
func TestAppendJSONRefusesNaN(t *testing.T) {
	g := &Graph{Nodes: []*Node{{ID: "a", RPS: math.NaN()}}}
	if _, err := json.Marshal(g); err == nil {
		t.Fatal("encoding/json took NaN")
	}
	if _, err := g.AppendJSON(nil); err == nil {
		t.Fatal("AppendJSON took NaN")
	}
}

// Strings and floats from telemetry are untrusted: any of them encodes as
// encoding/json encodes it.
func FuzzAppendJSON(f *testing.F) {
	f.Add("reviews", "v1", "\u2028<&>\xff", 0.5, 1e21)
	f.Add("", "\x00", `"\`, 1e-7, math.Copysign(0, -1))
	f.Fuzz(func(t *testing.T, a, b, c string, x, y float64) {
		g := &Graph{View: View(a), Namespace: b, Source: c, Window: a, WindowSeconds: x, End: time.Unix(0, 0).UTC(),
			Nodes: []*Node{{ID: a, Namespace: b, Service: c, Version: a + b, Workload: c, RPS: x, ErrorRate: y, Health: b}},
			Edges: []*Edge{{Source: a, Target: b, Protocol: c, RPS: y, P99Ms: x, Codes: map[string]uint64{a: 1, b: 2, c: 3},
				Flags: map[string]uint64{c: 4}, Health: a}},
			Cycles: [][]string{{a, b, c}}, Missing: []MissingReplica{{Replica: a, Error: c}}}
		sameAsEncodingJSON(t, g)
	})
}

// BenchmarkGraphJSON encodes a 10,000-edge version graph (the benchmark
// mesh's shape) with encoding/json and with AppendJSON.
func BenchmarkGraphJSON(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	g := &Graph{View: ViewVersion, Source: "live", Window: "5m0s", WindowSeconds: 300, End: t0, Generated: t0}
	for i := range 3000 {
		g.Nodes = append(g.Nodes, &Node{ID: fmt.Sprintf("ns%d/svc%d/v%d", i%10, i/3, i%3+1), Namespace: fmt.Sprintf("ns%d", i%10),
			Service: fmt.Sprintf("svc%d", i/3), Version: fmt.Sprintf("v%d", i%3+1), Workload: fmt.Sprintf("svc%d-v%d", i/3, i%3+1),
			Requests: uint64(r.IntN(1000)), RPS: r.Float64() * 10, ErrorRate: float64(r.IntN(3)) / 10, Health: "healthy"})
	}
	for i := range 10000 {
		g.Edges = append(g.Edges, &Edge{Source: g.Nodes[i%3000].ID, Target: g.Nodes[(i*7+1)%3000].ID, Protocol: "http",
			Requests: 30, Errors: uint64(i % 3), RPS: 0.1, ErrorRate: float64(i%3) / 30, P50Ms: float64(i%200) + 0.5,
			P90Ms: 180.25, P99Ms: 240.1234, AvgMs: 97.33333333333333, Codes: map[string]uint64{"200": 27, "503": 3},
			MTLS: 0.75, BytesIn: 6000, BytesOut: 60000, Health: "degraded"})
	}
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(g); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		for b.Loop() {
			if _, err := g.AppendJSON(make([]byte, 0, 4<<20)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
