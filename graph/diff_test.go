package graph

import (
	"testing"
	"time"

	"github.com/meshlens/meshlens/mesh"
)

// windowTraffic is one edge's traffic over ten minutes ending at end: n
// requests, errs of them 503, slow of them at slowMs and the rest at fastMs.
func windowTraffic(end time.Time, n, errs, slow int, fastMs, slowMs float64) *Traffic {
	t := NewTraffic(end, 10*time.Minute)
	st := t.Edge(EdgeKey{mesh.Peer{Namespace: "shop", Service: "a"}, mesh.Peer{Namespace: "shop", Service: "b"}, "http"})
	st.AddCode("http", CodeKey{503, -1}, uint64(errs))
	st.AddCode("http", CodeKey{200, -1}, uint64(n-errs))
	st.Latency[mesh.BucketIndex(slowMs)] += uint64(slow)
	st.Latency[mesh.BucketIndex(fastMs)] += uint64(n - slow)
	return t
}

func TestDiffTrafficStatusOfAnEdgeInBothWindows(t *testing.T) {
	end := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name          string
		before, after *Traffic
		status        string
		p99           string
	}{
		{"p99 back down after a slow spell is better", windowTraffic(end, 2000, 0, 200, 8, 800), windowTraffic(end.Add(20*time.Minute), 2000, 0, 0, 8, 800), DiffBetter, "down"},
		{"p99 up is worse", windowTraffic(end, 2000, 0, 0, 8, 800), windowTraffic(end.Add(20*time.Minute), 2000, 0, 200, 8, 800), DiffWorse, "up"},
		{"twice the requests, same errors and latency, is a rate change only", windowTraffic(end, 1000, 10, 0, 8, 800), windowTraffic(end.Add(20*time.Minute), 2000, 20, 0, 8, 800), DiffChanged, "none"},
		{"a handful of requests decides nothing", windowTraffic(end, 20, 0, 0, 8, 800), windowTraffic(end.Add(20*time.Minute), 20, 10, 10, 8, 800), DiffInconclusive, ""},
		{"the same traffic is unchanged", windowTraffic(end, 1000, 10, 5, 8, 800), windowTraffic(end.Add(20*time.Minute), 1000, 10, 5, 8, 800), DiffUnchanged, "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := DiffTraffic(tc.before, tc.after, Options{Now: end}, DiffOptions{})
			if len(d.Edges) != 1 {
				t.Fatalf("%d edges", len(d.Edges))
			}
			e := d.Edges[0]
			if e.Status != tc.status {
				t.Fatalf("status %q, want %q: rps %+v errors %+v p99 %+v", e.Status, tc.status, e.RPS, e.ErrorRate, e.P99Ms)
			}
			switch {
			case tc.p99 == "" && e.P99Ms.Significance != TooFew:
				t.Fatalf("p99 tested on %d requests: %+v", e.Before.Requests, e.P99Ms)
			case tc.p99 == "none" && e.P99Ms.Significance == Significant, (tc.p99 == "up" || tc.p99 == "down") && (e.P99Ms.Significance != Significant || e.P99Ms.Direction != tc.p99):
				t.Fatalf("p99 change %+v, want %s", e.P99Ms, tc.p99)
			}
		})
	}
}

func TestDiffTrafficOfEmptyWindowsSaysSo(t *testing.T) {
	end := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	empty := NewTraffic(end, 10*time.Minute)
	d := DiffTraffic(empty, windowTraffic(end.Add(20*time.Minute), 100, 0, 0, 8, 800), Options{Now: end}, DiffOptions{})
	if len(d.Notices) != 1 || d.Edges[0].Status != DiffNew || d.Nodes[0].Status != DiffNew {
		t.Fatalf("notices %v, edge %+v", d.Notices, d.Edges[0])
	}
	d = DiffTraffic(empty, NewTraffic(end.Add(20*time.Minute), 10*time.Minute), Options{Now: end}, DiffOptions{})
	if d.Before.Requests != 0 || d.After.Requests != 0 || len(d.Edges) != 0 || d.Edges == nil || d.Nodes == nil {
		t.Fatalf("two empty windows: %+v", d)
	}
}
