package graph

import (
	"fmt"
	"sort"
	"time"

	"github.com/meshlens/meshlens/mesh"
)

// Snapshot is an immutable view of the live graph at the moment it was
// published. All of its methods are safe for concurrent use.
type Snapshot struct {
	built      time.Time
	now        func() time.Time
	tiers      []Tier
	rings      []ringView
	reservoirs map[mesh.Peer]*reservoir
	bounds     []uint64
	base       time.Time
}

type ringView struct {
	width   int64
	buckets []*bucket
}

// Built is when the snapshot was published.
func (s *Snapshot) Built() time.Time { return s.built }

// pick returns the finest ring that covers window, and the bucket indexes
// (lo, hi] that the window ending at now spans in it.
func (s *Snapshot) pick(now time.Time, window time.Duration) (ringView, int64, int64, error) {
	if window <= 0 {
		return ringView{}, 0, 0, fmt.Errorf("%w: %v is not positive", ErrWindow, window)
	}
	for i, rg := range s.rings {
		span := time.Duration(rg.width) * time.Duration(len(rg.buckets)-1)
		if window <= span {
			hi := now.UnixNano() / rg.width
			n := (int64(window) + rg.width - 1) / rg.width
			_ = i
			return rg, hi - n, hi, nil
		}
	}
	last := s.rings[len(s.rings)-1]
	return ringView{}, 0, 0, fmt.Errorf("%w: %v exceeds the live graph's %v", ErrWindow, window, time.Duration(last.width)*time.Duration(len(last.buckets)-1))
}

// each calls fn for every cell of the buckets in (lo, hi].
func (rg ringView) each(lo, hi int64, fn func(b *bucket, c *cell)) {
	for _, b := range rg.buckets {
		if b == nil || b.idx <= lo || b.idx > hi {
			continue
		}
		for i := range b.cells {
			fn(b, &b.cells[i])
		}
	}
}

// Traffic sums every edge over the window ending now (the live clock).
func (s *Snapshot) Traffic(window time.Duration) (*Traffic, error) {
	return s.TrafficAt(s.now(), window)
}

// TrafficAt sums every edge over the window ending at now.
func (s *Snapshot) TrafficAt(now time.Time, window time.Duration) (*Traffic, error) {
	rg, lo, hi, err := s.pick(now, window)
	if err != nil {
		return nil, err
	}
	// Sum per interned edge first (a pointer key hashes cheaply), then merge
	// by key: an evicted and re-interned edge has two pointers, one key.
	byEdge := map[*edge]*Stats{}
	rg.each(lo, hi, func(_ *bucket, c *cell) {
		st := byEdge[c.edge]
		if st == nil {
			st = NewStats()
			byEdge[c.edge] = st
		}
		c.addTo(st)
	})
	t := NewTraffic(now, window)
	for e, st := range byEdge {
		if prev := t.Edges[e.key]; prev != nil {
			prev.Add(st)
			continue
		}
		t.Edges[e.key] = st
	}
	return t, nil
}

// VersionStats are the numbers a rollout judges a version by.
type VersionStats struct {
	Requests  uint64  `json:"requests"`
	Errors    uint64  `json:"errors"`
	ErrorRate float64 `json:"errorRate"`
	RPS       float64 `json:"rps"`
	P50Ms     float64 `json:"p50Ms"`
	P90Ms     float64 `json:"p90Ms"`
	P99Ms     float64 `json:"p99Ms"`
	// SamplesMs are recent individual latencies (a bounded reservoir, the
	// newest ones within the window), for rank tests such as Mann-Whitney.
	SamplesMs []float64 `json:"samplesMs,omitempty"`
}

// VersionStats sums the inbound traffic of one version of a service (from
// every caller, every workload) over the window ending now. An empty version
// matches traffic whose version is unknown.
func (s *Snapshot) VersionStats(ns, service, version string, window time.Duration) (VersionStats, error) {
	now := s.now()
	rg, lo, hi, err := s.pick(now, window)
	if err != nil {
		return VersionStats{}, err
	}
	st := NewStats()
	rg.each(lo, hi, func(_ *bucket, c *cell) {
		d := &c.edge.key.Destination
		if d.Service == service && d.Namespace == ns && d.Version == version {
			c.addTo(st)
		}
	})
	vs := VersionStats{
		Requests: st.Requests, Errors: st.Errors, ErrorRate: st.ErrorRate(),
		RPS:   float64(st.Requests) / window.Seconds(),
		P50Ms: finite(st.Quantile(0.5)), P90Ms: finite(st.Quantile(0.9)), P99Ms: finite(st.Quantile(0.99)),
	}
	if rv := s.reservoirs[mesh.Peer{Namespace: ns, Service: service, Version: version}]; rv != nil {
		from := now.Add(-window).Sub(s.base) / time.Second
		if from < 0 {
			from = 0
		}
		vs.SamplesMs = rv.since(uint32(from), nil)
	}
	return vs, nil
}

// VersionStats is Snapshot().VersionStats on the latest snapshot.
func (l *Live) VersionStats(ns, service, version string, window time.Duration) (VersionStats, error) {
	return l.Snapshot().VersionStats(ns, service, version, window)
}

// Traffic is Snapshot().Traffic on the latest snapshot.
func (l *Live) Traffic(window time.Duration) (*Traffic, error) {
	return l.Snapshot().Traffic(window)
}

// Point is one step of a time series.
type Point struct {
	Time      time.Time `json:"t"`
	Requests  uint64    `json:"requests"`
	RPS       float64   `json:"rps"`
	ErrorRate float64   `json:"errorRate"`
	P50Ms     float64   `json:"p50Ms"`
	P90Ms     float64   `json:"p90Ms"`
	P99Ms     float64   `json:"p99Ms"`
}

// Series is a version's time series.
type Series struct {
	Version string  `json:"version"`
	Points  []Point `json:"points"`
}

// SeriesBuilder accumulates per-version, per-step stats and renders them as
// series. History and the live graph both fill one, so the shapes match.
type SeriesBuilder struct {
	Start time.Time
	Step  time.Duration
	N     int
	cells map[string][]*Stats
}

// NewSeriesBuilder covers [start, start+n*step).
func NewSeriesBuilder(start time.Time, step time.Duration, n int) *SeriesBuilder {
	return &SeriesBuilder{Start: start, Step: step, N: n, cells: map[string][]*Stats{}}
}

// At returns the stats of version at time t, or nil outside the range.
func (b *SeriesBuilder) At(version string, t time.Time) *Stats {
	i := int(t.Sub(b.Start) / b.Step)
	if t.Before(b.Start) || i >= b.N {
		return nil
	}
	row := b.cells[version]
	if row == nil {
		row = make([]*Stats, b.N)
		b.cells[version] = row
	}
	if row[i] == nil {
		row[i] = NewStats()
	}
	return row[i]
}

// Series renders every version, sorted by version; steps without traffic
// are points with zero requests so charts show gaps as zeros.
func (b *SeriesBuilder) Series() []Series {
	out := make([]Series, 0, len(b.cells))
	for v, row := range b.cells {
		s := Series{Version: v, Points: make([]Point, b.N)}
		for i, st := range row {
			p := Point{Time: b.Start.Add(time.Duration(i) * b.Step).UTC()}
			if st != nil {
				p.Requests = st.Requests
				p.RPS = float64(st.Requests) / b.Step.Seconds()
				p.ErrorRate = st.ErrorRate()
				p.P50Ms, p.P90Ms, p.P99Ms = finite(st.Quantile(0.5)), finite(st.Quantile(0.9)), finite(st.Quantile(0.99))
			}
			s.Points[i] = p
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out
}

// ServiceSeries returns per-version series of a service's inbound traffic
// over the range ending now, with about maxPoints steps of a whole number of
// buckets.
func (s *Snapshot) ServiceSeries(ns, service string, rng time.Duration, maxPoints int) ([]Series, time.Duration, error) {
	now := s.now()
	rg, lo, hi, err := s.pick(now, rng)
	if err != nil {
		return nil, 0, err
	}
	if maxPoints < 1 {
		maxPoints = 1
	}
	per := (hi - lo + int64(maxPoints) - 1) / int64(maxPoints)
	if per < 1 {
		per = 1
	}
	step := time.Duration(rg.width * per)
	n := int((hi - lo + per - 1) / per)
	start := time.Unix(0, (lo+1)*rg.width)
	sb := NewSeriesBuilder(start, step, n)
	rg.each(lo, hi, func(b *bucket, c *cell) {
		d := &c.edge.key.Destination
		if d.Service != service || d.Namespace != ns {
			return
		}
		if st := sb.At(d.Version, time.Unix(0, b.idx*rg.width)); st != nil {
			c.addTo(st)
		}
	})
	return sb.Series(), step, nil
}
