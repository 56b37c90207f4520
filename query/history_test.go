package query

import (
	"context"
	"testing"
	"time"

	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/store"
	"github.com/meshlens/meshlens/store/storetest"
)

func TestHistoryLongWindowsSumHourlyAndRaggedMinuteRollups(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) { testHistoryLongWindowsSumHourlyAndRaggedMinuteRollups(t, b.Open(t)) })
	}
}

func testHistoryLongWindowsSumHourlyAndRaggedMinuteRollups(t *testing.T, st *store.Store) {
	ctx := context.Background()
	end := time.Now().UTC().Truncate(time.Minute).Add(-37*time.Minute + 20*time.Second) // not aligned to anything
	var recs []mesh.Record
	// One record every 7 minutes for 6 hours, with a 503 every third.
	for i := 0; i < 6*60/7; i++ {
		r := mesh.Record{Time: end.Add(-time.Duration(i) * 7 * time.Minute), Source: peerA, Destination: peerB1, Protocol: "http",
			Code: 200, GRPCStatus: -1, Duration: time.Duration(i) * time.Millisecond, MTLS: true}
		if i%3 == 0 {
			r.Code = 503
		}
		recs = append(recs, r)
	}
	if err := st.InsertRecords(ctx, recs); err != nil {
		t.Fatal(err)
	}
	h := NewHistory(st, 0)
	for _, window := range []time.Duration{time.Hour, 3 * time.Hour, 4*time.Hour + 30*time.Minute} {
		start := end.Add(-window)
		want := graph.NewStats()
		for _, r := range recs {
			// A minute row counts when the minute starts in [start, end).
			if m := r.Time.Truncate(time.Minute); !m.Before(start) && m.Before(end) {
				want.AddCode(r.Protocol, graph.CodeKey{Code: r.Code, GRPCStatus: r.GRPCStatus}, 1)
			}
		}
		tr, err := h.Traffic(ctx, end, window, "")
		if err != nil {
			t.Fatalf("%v: %v", window, err)
		}
		got := tr.Edges[graph.EdgeKey{Source: peerA, Destination: peerB1, Protocol: "http"}]
		if got == nil || got.Requests != want.Requests || got.Errors != want.Errors || got.MTLS != want.Requests {
			t.Fatalf("%v window: got %+v, want %d requests %d errors", window, got, want.Requests, want.Errors)
		}
	}
	if src := h.rollupSource(end.Add(-4*time.Hour), end, ""); !contains(src, "edges_1h") || !contains(src, "edges_1m") {
		t.Fatalf("a 4h window does not read the hourly rollup: %s", src)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
