package graph

import (
	"context"
	"io"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/meshlens/meshlens/mesh"
)

// clock is a settable test clock.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.ns.Store(t.UnixNano()); return c }
func (c *clock) Now() time.Time   { return time.Unix(0, c.ns.Load()) }
func (c *clock) Set(t time.Time)  { c.ns.Store(t.UnixNano()) }
func (c *clock) Add(d time.Duration) {
	c.ns.Add(int64(d))
}

// t0 is 5 s into a 10 s bucket and a minute.
var t0 = time.Date(2026, 11, 25, 12, 0, 5, 0, time.UTC)

var (
	pA  = mesh.Peer{Namespace: "shop", Service: "a", Workload: "a-v1", Version: "v1"}
	pB1 = mesh.Peer{Namespace: "shop", Service: "b", Workload: "b-v1", Version: "v1"}
	pB2 = mesh.Peer{Namespace: "shop", Service: "b", Workload: "b-v2", Version: "v2"}
	pC  = mesh.Peer{Namespace: "shop", Service: "c", Workload: "c-v1", Version: "v1"}
)

func rec(at time.Time, src, dst mesh.Peer, code uint16, d time.Duration) mesh.Record {
	return mesh.Record{Time: at, Source: src, Destination: dst, Protocol: "http", Code: code, GRPCStatus: -1, Flags: "-", Duration: d, MTLS: true}
}

func newLive(t testing.TB, c *clock, cfg Config) (*Live, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Now = c.Now
	l, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	return l, reg
}

func consume(t *testing.T, l *Live, recs ...mesh.Record) {
	t.Helper()
	if err := l.ConsumeRecords(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
}

func requests(t *testing.T, l *Live, window time.Duration) uint64 {
	t.Helper()
	tr, err := l.Refresh().Traffic(window)
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, s := range tr.Edges {
		n += s.Requests
	}
	return n
}

func TestLiveWindowCoversWholeBucketsBackFromNow(t *testing.T) {
	// t0 is 12:00:05. A window is the buckets that start at or after
	// now-window, the current partial one included: with 10 s buckets a 10 s
	// window is [12:00:00, now], a 1 m window starts at 11:59:10.
	tests := []struct {
		name   string
		ago    time.Duration
		window time.Duration
		in     bool
	}{
		{"start of current bucket is inside 10s", 5 * time.Second, 10 * time.Second, true},
		{"end of previous bucket is outside 10s", 5*time.Second + time.Nanosecond, 10 * time.Second, false},
		{"start of the oldest bucket of 1m is inside", 55 * time.Second, time.Minute, true},
		{"just before the oldest bucket of 1m is outside", 55*time.Second + time.Nanosecond, time.Minute, false},
		{"5m window on the fine tier", 4*time.Minute + 55*time.Second, 5 * time.Minute, true},
		{"10m window on the minute tier includes its oldest minute", 9*time.Minute + 5*time.Second, 10 * time.Minute, true},
		{"10m window on the minute tier excludes the minute before", 9*time.Minute + 5*time.Second + time.Nanosecond, 10 * time.Minute, false},
		{"1h window includes 59m ago", 59 * time.Minute, time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock(t0)
			l, _ := newLive(t, c, Config{})
			consume(t, l, rec(t0.Add(-tt.ago), pA, pB1, 200, time.Millisecond))
			want := uint64(0)
			if tt.in {
				want = 1
			}
			if got := requests(t, l, tt.window); got != want {
				t.Fatalf("requests in %v window = %d, want %d", tt.window, got, want)
			}
		})
	}
}

func TestLiveRejectsWindowsItCannotAnswer(t *testing.T) {
	l, _ := newLive(t, newClock(t0), Config{})
	for _, w := range []time.Duration{0, -time.Second, 2 * time.Hour} {
		if _, err := l.Traffic(w); err == nil {
			t.Errorf("window %v: no error", w)
		}
	}
}

func TestLiveCountsTooOldRecordsAndDropsThem(t *testing.T) {
	c := newClock(t0)
	l, reg := newLive(t, c, Config{})
	consume(t, l,
		rec(t0.Add(-2*time.Hour), pA, pB1, 200, time.Millisecond),
		rec(t0.Add(-30*time.Minute), pA, pB1, 200, time.Millisecond),
	)
	if got := requests(t, l, time.Hour); got != 1 {
		t.Fatalf("requests in 1h = %d, want 1", got)
	}
	if got := value(t, l.m.tooOld); got != 1 {
		t.Fatalf("too_old = %v, want 1", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		found = found || mf.GetName() == "meshlens_graph_records_dropped_total"
	}
	if !found {
		t.Fatal("meshlens_graph_records_dropped_total not registered")
	}
}

func TestLiveOutOfOrderRecordsLandInTheirBuckets(t *testing.T) {
	c := newClock(t0)
	l, _ := newLive(t, c, Config{})
	// Newest first: then a late record 40 s old, into a bucket the ring has
	// already moved past, and one from the future (clock skew) counted now.
	consume(t, l, rec(t0, pA, pB1, 200, time.Millisecond))
	l.Refresh()
	consume(t, l, rec(t0.Add(-40*time.Second), pA, pB1, 500, time.Millisecond))
	consume(t, l, rec(t0.Add(time.Hour), pA, pB1, 200, time.Millisecond))

	if got := requests(t, l, 10*time.Second); got != 2 {
		t.Fatalf("10s window = %d requests, want 2 (now + skewed future)", got)
	}
	if got := requests(t, l, time.Minute); got != 3 {
		t.Fatalf("1m window = %d requests, want 3", got)
	}
	series, step, err := l.Refresh().ServiceSeries("shop", "b", time.Minute, 6)
	if err != nil {
		t.Fatal(err)
	}
	if step != 10*time.Second || len(series) != 1 {
		t.Fatalf("step %v, %d series", step, len(series))
	}
	late := series[0].Points[len(series[0].Points)-5] // 11:59:20 + 10 s = the bucket of 11:59:25
	if !late.Time.Equal(time.Date(2026, 11, 25, 11, 59, 20, 0, time.UTC)) || late.Requests != 1 || late.ErrorRate != 1 {
		t.Fatalf("late point = %+v, want the 500 alone at 11:59:20", late)
	}
}

func TestLiveRecycledBucketsStartFromZero(t *testing.T) {
	c := newClock(t0)
	l, _ := newLive(t, c, Config{})
	for i := 0; i < 5; i++ {
		consume(t, l, rec(c.Now(), pA, pB1, 200, time.Millisecond))
	}
	// Two hours later every slot of both rings has been passed; the slot the
	// new record falls into held 5 requests of the old bucket and must not
	// add them.
	c.Add(2 * time.Hour)
	consume(t, l, rec(c.Now(), pA, pB1, 200, time.Millisecond))
	for _, w := range []time.Duration{10 * time.Second, 5 * time.Minute, time.Hour} {
		if got := requests(t, l, w); got != 1 {
			t.Errorf("%v window after 2h = %d, want 1", w, got)
		}
	}
	// Exactly one ring turn later (360 fine buckets = 6 min) lands in the same slot.
	c.Add(6 * time.Minute)
	consume(t, l, rec(c.Now(), pA, pB1, 200, time.Millisecond))
	if got := requests(t, l, 10*time.Second); got != 1 {
		t.Errorf("10s window one fine ring turn later = %d, want 1", got)
	}
}

func TestPublishedSnapshotNeverChanges(t *testing.T) {
	c := newClock(t0)
	l, _ := newLive(t, c, Config{PublishInterval: time.Hour})
	consume(t, l, rec(t0, pA, pB1, 200, time.Millisecond))
	old := l.Refresh()
	consume(t, l, rec(t0, pA, pB1, 200, time.Millisecond), rec(t0, pA, pB2, 200, time.Millisecond))
	tr, _ := old.Traffic(time.Minute)
	if n := len(tr.Edges); n != 1 || tr.Edges[EdgeKey{pA, pB1, "http"}].Requests != 1 {
		t.Fatalf("old snapshot changed: %d edges", n)
	}
	if l.Snapshot() != old {
		t.Fatal("snapshot republished before the interval")
	}
	if got := requests(t, l, time.Minute); got != 3 {
		t.Fatalf("refreshed = %d, want 3", got)
	}
}

func TestLiveEvictsLeastRecentlySeenEdgesAtCap(t *testing.T) {
	c := newClock(t0)
	l, reg := newLive(t, c, Config{MaxEdges: 10})
	for i := 0; i < 10; i++ {
		dst := mesh.Peer{Namespace: "shop", Service: "s" + string(rune('a'+i))}
		consume(t, l, rec(t0.Add(time.Duration(i)*time.Second-time.Minute), pA, dst, 200, time.Millisecond))
	}
	consume(t, l, rec(t0, pA, pC, 200, time.Millisecond))
	l.Refresh()
	if got := value(t, l.m.evicted); got != 2 {
		t.Fatalf("evicted = %v, want 2 (a tenth of 10, plus one)", got)
	}
	if _, ok := l.edges[EdgeKey{pA, mesh.Peer{Namespace: "shop", Service: "sa"}, "http"}]; ok {
		t.Fatal("the least recently seen edge was kept")
	}
	// Past traffic of evicted edges still counts until it ages out.
	if got := requests(t, l, 5*time.Minute); got != 11 {
		t.Fatalf("requests = %d, want 11", got)
	}
	if v := value(t, l.m.edges); v != 9 {
		t.Fatalf("edges gauge = %v, want 9", v)
	}
	if v := value(t, l.m.memory); v <= 0 {
		t.Fatalf("memory gauge = %v", v)
	}
	_ = reg
}

func TestVersionStatsJudgeOneVersion(t *testing.T) {
	c := newClock(t0)
	l, _ := newLive(t, c, Config{ReservoirSize: 8})
	var recs []mesh.Record
	for i := 0; i < 90; i++ {
		recs = append(recs, rec(t0.Add(-time.Duration(i)*100*time.Millisecond), pA, pB1, 200, 20*time.Millisecond))
	}
	for i := 0; i < 10; i++ {
		recs = append(recs, rec(t0, pA, pB2, 503, 200*time.Millisecond))
		recs = append(recs, rec(t0, mesh.Peer{}, pB2, 200, 200*time.Millisecond))
	}
	consume(t, l, recs...)
	l.Refresh()
	vs, err := l.VersionStats("shop", "b", "v2", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if vs.Requests != 20 || vs.Errors != 10 || vs.ErrorRate != 0.5 {
		t.Fatalf("v2 = %+v", vs)
	}
	counts := make([]uint64, len(mesh.LatencyBucketsMs)+1)
	counts[mesh.BucketIndex(200)] = 20
	if math.Abs(vs.P99Ms-mesh.Quantile(0.99, counts)) > 1e-9 {
		t.Fatalf("p99 = %v, want %v", vs.P99Ms, mesh.Quantile(0.99, counts))
	}
	if len(vs.SamplesMs) != 8 || vs.SamplesMs[0] != 200 {
		t.Fatalf("samples = %v, want the 8 newest at 200ms", vs.SamplesMs)
	}
	v1, _ := l.VersionStats("shop", "b", "v1", 10*time.Second)
	if v1.Requests != 51 || v1.Errors != 0 {
		t.Fatalf("v1 over 10s = %+v, want the 51 records of the current bucket", v1)
	}
}

func TestLiveWritersNeverWaitForReaders(t *testing.T) {
	// Run with -race: concurrent writers and readers on one graph.
	c := newClock(t0)
	l, _ := newLive(t, c, Config{PublishInterval: time.Nanosecond})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	var written atomic.Uint64
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := []mesh.Record{rec(t0, pA, pB1, 200, time.Millisecond), rec(t0, pB1, pC, 500, time.Millisecond)}
			for ctx.Err() == nil {
				_ = l.ConsumeRecords(ctx, batch)
				written.Add(2)
			}
		}()
	}
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				tr, err := l.Traffic(time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				Build(tr, Options{View: ViewVersion})
				_, _ = l.VersionStats("shop", "b", "v1", time.Minute)
			}
		}()
	}
	wg.Wait()
	if got := requests(t, l, time.Minute); got != written.Load() {
		t.Fatalf("counted %d of %d", got, written.Load())
	}
}

func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func valueOf(m prometheus.Metric) float64 {
	var d dto.Metric
	_ = m.Write(&d)
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

func TestSnapshotSharesGraphsUntilTheNextPublish(t *testing.T) {
	c := newClock(t0)
	l, _ := newLive(t, c, Config{PublishInterval: time.Hour})
	consume(t, l, rec(t0, pA, pB1, 200, time.Millisecond))
	s := l.Refresh()
	g1, err := s.Graph(time.Minute, Options{View: ViewVersion})
	if err != nil {
		t.Fatal(err)
	}
	if g2, _ := s.Graph(time.Minute, Options{View: ViewVersion}); g2 != g1 {
		t.Fatal("same snapshot, window and options built the graph twice")
	}
	if g3, _ := s.Graph(time.Minute, Options{View: ViewService}); g3 == g1 {
		t.Fatal("another view got the cached graph")
	}
	consume(t, l, rec(t0, pA, pB2, 200, time.Millisecond))
	g4, _ := l.Refresh().Graph(time.Minute, Options{View: ViewVersion})
	if len(g4.Edges) != 2 || len(g1.Edges) != 1 {
		t.Fatalf("edges: new %d, old %d; want 2 and 1", len(g4.Edges), len(g1.Edges))
	}
}

func TestFineWindowsSummedWithCoarseBucketsMatchFineBucketsAlone(t *testing.T) {
	c := newClock(t0.Add(7 * time.Second))
	l, _ := newLive(t, c, Config{})
	var recs []mesh.Record
	for i := 0; i < 360; i++ {
		code := uint16(200)
		if i%7 == 0 {
			code = 500
		}
		recs = append(recs, rec(c.Now().Add(-time.Duration(i)*time.Second), pA, pB1, code, time.Duration(i)*time.Millisecond))
	}
	consume(t, l, recs...)
	s := l.Refresh()
	for _, w := range []time.Duration{10 * time.Second, 50 * time.Second, time.Minute, 70 * time.Second, 2 * time.Minute, 5*time.Minute + 30*time.Second} {
		rg, ri, lo, hi, err := s.pickIndex(c.Now(), w)
		if err != nil || ri != 0 {
			t.Fatalf("%v: ring %d, %v", w, ri, err)
		}
		mixed := s.sumTraffic(s.segments(ri, rg, lo, hi), c.Now(), w)
		fine := s.sumTraffic([]segment{{rg, lo, hi}}, c.Now(), w)
		k := EdgeKey{pA, pB1, "http"}
		m, f := mixed.Edges[k], fine.Edges[k]
		if m == nil || f == nil || m.Requests != f.Requests || m.Errors != f.Errors || m.DurationSumUs != f.DurationSumUs || m.Quantile(0.9) != f.Quantile(0.9) {
			t.Fatalf("%v: mixed %+v, fine %+v", w, m, f)
		}
		if len(s.segments(ri, rg, lo, hi)) == 1 && w >= 2*time.Minute {
			t.Fatalf("%v: no coarse buckets used", w)
		}
	}
}

func TestReadersPublishAStaleSnapshotWhenTheWriterIsIdle(t *testing.T) {
	c := newClock(t0)
	l, _ := newLive(t, c, Config{PublishInterval: time.Second})
	consume(t, l, rec(t0, pA, pB1, 200, time.Millisecond)) // pending: New published at t0
	before := l.Snapshot()
	c.Add(2 * time.Second)
	consume(t, l, rec(c.Now(), pA, pB1, 200, time.Millisecond)) // publishes (interval passed)
	consume(t, l, rec(c.Now(), pA, pB1, 200, time.Millisecond)) // pending: within the interval
	mid := l.Snapshot()
	if mid == before {
		t.Fatal("the writer did not publish after the interval")
	}
	c.Add(2 * time.Second)
	after := l.Snapshot()
	if after == mid {
		t.Fatal("a reader found pending records and a stale snapshot, and did not publish")
	}
	tr, _ := after.Traffic(time.Minute)
	if n := tr.Edges[EdgeKey{pA, pB1, "http"}].Requests; n != 3 {
		t.Fatalf("requests = %d, want 3", n)
	}
	if l.Snapshot() != after {
		t.Fatal("republished with nothing pending")
	}
}
