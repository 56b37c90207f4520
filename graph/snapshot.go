package graph

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/meshlens/meshlens/internal/recycle"
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
	edges      []*edge    // by id
	flags      []string   // by id
	accs       *queryPool // shared by every snapshot of one Live

	// Results computed from this snapshot, shared by every reader until the
	// next publish: a window's traffic and the graphs built from it.
	cacheMu sync.Mutex
	traffic map[trafficKey]*Traffic
	graphs  map[graphKey]*Graph
	wires   map[trafficKey]*wireAnswer
	retired bool // a newer snapshot is published (see retire)
}

type trafficKey struct {
	ring   int
	lo, hi int64
	window time.Duration
}

type graphKey struct {
	traffic trafficKey
	view    View
	ns      string
	maxN    int
	maxE    int
}

// maxCached bounds each cache of a snapshot.
const maxCached = 16

type ringView struct {
	width   int64
	buckets []*bucket
}

// Built is when the snapshot was published.
func (s *Snapshot) Built() time.Time { return s.built }

// pick returns the finest ring that covers window, and the bucket indexes
// (lo, hi] that the window ending at now spans in it.
func (s *Snapshot) pick(now time.Time, window time.Duration) (ringView, int64, int64, error) {
	rg, _, lo, hi, err := s.pickIndex(now, window)
	return rg, lo, hi, err
}

func (s *Snapshot) pickIndex(now time.Time, window time.Duration) (ringView, int, int64, int64, error) {
	if window <= 0 {
		return ringView{}, 0, 0, 0, fmt.Errorf("%w: %v is not positive", ErrWindow, window)
	}
	for i, rg := range s.rings {
		span := time.Duration(rg.width) * time.Duration(len(rg.buckets)-1)
		if window <= span {
			hi := now.UnixNano() / rg.width
			n := (int64(window) + rg.width - 1) / rg.width
			return rg, i, hi - n, hi, nil
		}
	}
	last := s.rings[len(s.rings)-1]
	return ringView{}, 0, 0, 0, fmt.Errorf("%w: %v exceeds the live graph's %v", ErrWindow, window, time.Duration(last.width)*time.Duration(len(last.buckets)-1))
}

// each adds the cells (and overflow codes and flags) of the edges that match
// into the accumulator into returns for them.
func (b *bucket) each(edges []*edge, match func(*EdgeKey) bool, into func(*EdgeKey) *acc) {
	for i := range b.cells {
		c := &b.cells[i]
		if k := &edges[c.edge].key; match(k) {
			into(k).add(c)
		}
	}
	for k, n := range b.moreCodes {
		if key := &edges[k.edge].key; match(key) {
			into(key).addCode(k.k, uint64(n))
		}
	}
	for k, n := range b.moreFlags {
		if key := &edges[k.edge].key; match(key) {
			into(key).addFlag(k.id, uint64(n))
		}
	}
}

// sum adds up the matching edges over the buckets in (lo, hi].
func (s *Snapshot) sum(rg ringView, lo, hi int64, match func(*EdgeKey) bool) *Stats {
	var a acc
	for _, b := range rg.buckets {
		if b != nil && b.idx > lo && b.idx <= hi {
			b.each(s.edges, match, func(*EdgeKey) *acc { return &a })
		}
	}
	st := NewStats()
	a.addTo(st, s.flags)
	return st
}

// Traffic sums every edge over the window ending now (the live clock).
func (s *Snapshot) Traffic(window time.Duration) (*Traffic, error) {
	return s.TrafficAt(s.now(), window)
}

// TrafficAt sums every edge over the window ending at now. The result is
// shared: callers must not modify it.
func (s *Snapshot) TrafficAt(now time.Time, window time.Duration) (*Traffic, error) {
	t, _, err := s.keptTraffic(now, window)
	if err != nil {
		return nil, err
	}
	t.Edges = t.lazy.get(t.order)
	return t, nil
}

// TrafficList is TrafficAt without the Edges map: the edges are listed
// only, which is all Merger and AppendWire read (hashing every key costs
// more than they do). The result is shared: callers must not modify it.
func (s *Snapshot) TrafficList(now time.Time, window time.Duration) (*Traffic, error) {
	t, _, err := s.keptTraffic(now, window)
	return t, err
}

// keptTraffic is trafficAt for a caller that may keep the traffic: its
// memory is never recycled.
func (s *Snapshot) keptTraffic(now time.Time, window time.Duration) (*Traffic, trafficKey, error) {
	t, _, key, err := s.trafficAt(now, window, true)
	return t, key, err
}

// trafficAt returns a copy of the shared traffic of the window, ending at
// now, without its Edges map, and the shared one: kept for good, or held
// for a graph to be built from it (graphs, given back by releaseLocked).
func (s *Snapshot) trafficAt(now time.Time, window time.Duration, keep bool) (*Traffic, *trafficShare, trafficKey, error) {
	rg, ri, lo, hi, err := s.pickIndex(now, window)
	if err != nil {
		return nil, nil, trafficKey{}, err
	}
	key := trafficKey{ring: ri, lo: lo, hi: hi, window: window}
	hold := func(t *Traffic) {
		if keep {
			t.share.kept = true
		} else {
			t.share.graphs++
		}
	}
	s.cacheMu.Lock()
	cached := s.traffic[key]
	if cached != nil {
		hold(cached)
	}
	s.cacheMu.Unlock()
	if cached == nil {
		summed := s.sumEdges(s.segments(ri, rg, lo, hi), now, window)
		s.cacheMu.Lock()
		if cached = s.traffic[key]; cached == nil {
			cached = summed
			if !s.retired {
				if s.traffic == nil || len(s.traffic) >= maxCached {
					s.dropTrafficLocked()
					s.traffic = map[trafficKey]*Traffic{}
				}
				cached.share.cached = true
				s.traffic[key] = cached
			}
		} else {
			summed.share.mem.put() // another reader summed it meanwhile
		}
		hold(cached)
		s.cacheMu.Unlock()
	}
	t := *cached // same edges, this query's end
	t.End = now
	return &t, cached.share, key, nil
}

// dropTrafficLocked takes every traffic out of the cache, recycling those
// no graph and no other reader holds.
func (s *Snapshot) dropTrafficLocked() {
	for _, t := range s.traffic {
		t.share.cached = false
		t.share.recycleLocked()
	}
	s.traffic = nil
}

// recycleLocked gives a snapshot's traffic's memory back once nothing
// refers to it: not the cache, no graph built from it, no other reader.
func (t *trafficShare) recycleLocked() {
	if t.cached || t.kept || t.graphs > 0 {
		return
	}
	m := t.mem
	t.mem = nil
	m.put()
}

// TrafficWire is the wire form (AppendWire) of TrafficList(now, window),
// written once per snapshot and window and shared: the other replicas
// asking this one within a snapshot interval get the same bytes. Its end is
// the one the first reader asked for (a Merger takes its own). It is
// written straight from the window's sums: the traffic is not listed for
// an answer that is only sent. Callers must not modify the result, which
// is kept for as long as they hold it; a reader done with it when it
// returns uses UseTrafficWire.
func (s *Snapshot) TrafficWire(now time.Time, window time.Duration) ([]byte, error) {
	w, err := s.trafficWire(now, window, false)
	if err != nil {
		return nil, err
	}
	return *w.b, nil
}

// UseTrafficWire calls use with TrafficWire(now, window), which it must not
// keep: the bytes go to the next answer once this snapshot is replaced and
// no use of them is running. An error of use is returned as it is.
func (s *Snapshot) UseTrafficWire(now time.Time, window time.Duration, use func([]byte) error) error {
	w, err := s.trafficWire(now, window, true)
	if err != nil {
		return err
	}
	defer func() {
		s.cacheMu.Lock()
		defer s.cacheMu.Unlock()
		w.pins--
		s.recycleWireLocked(w)
	}()
	return use(*w.b)
}

// wireAnswer is a snapshot's shared wire answer of one window (under the
// snapshot's cacheMu): the UseTrafficWire calls running, whether a
// TrafficWire call handed it out for good, whether the cache holds it.
type wireAnswer struct {
	b            *[]byte // from the pool's scratch buffers, and back to them
	pins         int
	kept, cached bool
}

func (s *Snapshot) trafficWire(now time.Time, window time.Duration, pin bool) (*wireAnswer, error) {
	rg, ri, lo, hi, err := s.pickIndex(now, window)
	if err != nil {
		return nil, err
	}
	hold := func(w *wireAnswer) {
		if pin {
			w.pins++
		} else {
			w.kept = true
		}
	}
	key := trafficKey{ring: ri, lo: lo, hi: hi, window: window}
	s.cacheMu.Lock()
	w := s.wires[key]
	if w != nil {
		hold(w)
	}
	s.cacheMu.Unlock()
	if w != nil {
		return w, nil
	}
	accs := s.accs.get(len(s.edges))
	for _, sg := range s.segments(ri, rg, lo, hi) {
		s.sumInto(accs, sg)
	}
	buf := s.accs.buf()
	*buf = s.appendWireSums((*buf)[:0], accs, now, window)
	s.accs.put(accs)
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if w = s.wires[key]; w != nil { // another reader wrote it meanwhile
		s.accs.putBuf(buf)
		hold(w)
		return w, nil
	}
	w = &wireAnswer{b: buf}
	if !s.retired {
		if s.wires == nil || len(s.wires) >= maxCached {
			s.dropWiresLocked()
			s.wires = map[trafficKey]*wireAnswer{}
		}
		s.wires[key] = w
		w.cached = true
	}
	hold(w)
	return w, nil
}

// recycleWireLocked gives a wire answer's buffer back once nothing holds it.
func (s *Snapshot) recycleWireLocked(w *wireAnswer) {
	if w.pins > 0 || w.kept || w.cached || w.b == nil {
		return
	}
	s.accs.putBuf(w.b)
	w.b = nil
}

func (s *Snapshot) dropWiresLocked() {
	for _, w := range s.wires {
		w.cached = false
		s.recycleWireLocked(w)
	}
	s.wires = nil
}

// Sums are a snapshot's per-edge sums over a window, for a Merger to add
// (AddSums) without listing them as traffic first: a merged read's own
// share costs one pass over the buckets and one over the edges.
type Sums struct {
	s      *Snapshot
	accs   []acc
	edges  int      // edges with traffic
	listed *Traffic // the snapshot's traffic of the window, already listed
}

// Sums sums every edge over the window ending at now, or hands over the
// traffic of the window a reader of this snapshot already listed.
func (s *Snapshot) Sums(now time.Time, window time.Duration) (*Sums, error) {
	rg, ri, lo, hi, err := s.pickIndex(now, window)
	if err != nil {
		return nil, err
	}
	s.cacheMu.Lock()
	cached := s.traffic[trafficKey{ring: ri, lo: lo, hi: hi, window: window}]
	if cached != nil {
		cached.share.kept = true // a Merger keeps its keys
	}
	s.cacheMu.Unlock()
	if cached != nil {
		return &Sums{s: s, listed: cached}, nil
	}
	accs := s.accs.get(len(s.edges))
	for _, sg := range s.segments(ri, rg, lo, hi) {
		s.sumInto(accs, sg)
	}
	n := 0
	for i := range accs {
		if accs[i].requests != 0 {
			n++
		}
	}
	return &Sums{s: s, accs: accs, edges: n}, nil
}

// Graph builds the graph of the window ending now, or returns the one
// already built from this snapshot for the same window and options. The
// result is shared: callers must not modify it. It is kept for as long as
// anyone holds it; a reader done with it when it returns uses UseGraph.
func (s *Snapshot) Graph(window time.Duration, opts Options) (*Graph, error) {
	return s.graph(window, opts, false)
}

// UseGraph calls use with Graph(window, opts), which it must not keep: the
// graph's memory goes to the next graph once this snapshot is replaced and
// no use of it is running (see recycle.go). An error of use is returned as
// it is.
func (s *Snapshot) UseGraph(window time.Duration, opts Options, use func(*Graph) error) error {
	g, err := s.graph(window, opts, true)
	if err != nil {
		return err
	}
	defer s.unpin(g)
	return use(g)
}

// graph is the shared graph of window and opts, pinned for a UseGraph or
// else kept for good (never recycled).
func (s *Snapshot) graph(window time.Duration, opts Options, pin bool) (*Graph, error) {
	t, from, tk, err := s.trafficAt(s.now(), window, false)
	if err != nil {
		return nil, err
	}
	key := graphKey{traffic: tk, view: opts.View, ns: opts.Namespace, maxN: opts.MaxNodes, maxE: opts.MaxEdges}
	unhold := func() { // the graph is not built from this reader's hold
		from.graphs--
		from.recycleLocked()
	}
	s.cacheMu.Lock()
	g := s.graphs[key]
	if g != nil {
		unhold()
		s.holdLocked(g, pin)
		s.cacheMu.Unlock()
		return g, nil
	}
	s.cacheMu.Unlock()
	built := Build(t, opts)
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if g = s.graphs[key]; g != nil {
		// Another reader built it meanwhile: theirs is the shared one.
		built.Release()
		unhold()
		s.holdLocked(g, pin)
		return g, nil
	}
	g = built
	g.from = from // its edges' stats are from's, held until it is recycled
	if !s.retired {
		if s.graphs == nil || len(s.graphs) >= maxCached {
			s.dropGraphsLocked()
			s.graphs = map[graphKey]*Graph{}
		}
		s.graphs[key] = g
		g.cached = true
	}
	s.holdLocked(g, pin)
	return g, nil
}

func (s *Snapshot) holdLocked(g *Graph, pin bool) {
	if pin {
		g.pins++
		return
	}
	if !g.kept && g.mem != nil {
		// Never recycled: the builder's emptied maps need not stay with it.
		g.mem.edgeMap, g.mem.peerNodes, g.mem.byPeer = nil, nil, idTable[*Node]{}
	}
	g.kept = true
}

// unpin ends a UseGraph, recycling the graph when it was the last use of
// a graph no longer cached.
func (s *Snapshot) unpin(g *Graph) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	g.pins--
	if g.pins == 0 && !g.kept && !g.cached {
		releaseLocked(g)
	}
}

// releaseLocked recycles a snapshot's graph no one holds, and then its
// traffic if no other graph or reader holds that.
func releaseLocked(g *Graph) {
	from := g.from
	g.Release()
	if from != nil {
		from.graphs--
		from.recycleLocked()
	}
}

// dropGraphsLocked takes every graph out of the cache, recycling those no
// reader holds.
func (s *Snapshot) dropGraphsLocked() {
	for _, g := range s.graphs {
		g.cached = false
		if g.pins == 0 && !g.kept {
			releaseLocked(g)
		}
	}
	s.graphs = nil
}

// retire is called once a newer snapshot is published: the graphs built
// from this one go to the next ones' use as their readers finish, and
// later graphs of this snapshot are not cached.
func (s *Snapshot) retire() {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	s.retired = true
	s.dropGraphsLocked()
	s.dropTrafficLocked()
	s.dropWiresLocked()
}

// Graph is Snapshot().Graph on the latest snapshot.
func (l *Live) Graph(window time.Duration, opts Options) (*Graph, error) {
	return l.Snapshot().Graph(window, opts)
}

// UseGraph is Snapshot().UseGraph on the latest snapshot.
func (l *Live) UseGraph(window time.Duration, opts Options, use func(*Graph) error) error {
	return l.Snapshot().UseGraph(window, opts, use)
}

// segment is the buckets (lo, hi] of a ring.
type segment struct {
	rg     ringView
	lo, hi int64
}

// segments covers the buckets (lo, hi] of ring ri with as few buckets as
// possible: the whole buckets of the next coarser ring inside the range
// replace the fine buckets they sum, leaving fine buckets at both ends.
func (s *Snapshot) segments(ri int, rg ringView, lo, hi int64) []segment {
	if ri+1 >= len(s.rings) || s.rings[ri+1].width%rg.width != 0 {
		return []segment{{rg, lo, hi}}
	}
	coarse := s.rings[ri+1]
	k := coarse.width / rg.width
	first := (lo + 1 + k - 1) / k // first coarse bucket starting at or after fine lo+1
	last := (hi+1)/k - 1          // last coarse bucket ending at or before fine hi
	if first > last {
		return []segment{{rg, lo, hi}}
	}
	return []segment{{rg, lo, first*k - 1}, {coarse, first - 1, last}, {rg, (last+1)*k - 1, hi}}
}

// sumTraffic sums every edge over the segments, with the Edges map.
func (s *Snapshot) sumTraffic(segs []segment, now time.Time, window time.Duration) *Traffic {
	t := s.sumEdges(segs, now, window)
	t.Edges = t.lazy.get(t.order)
	return t
}

// sumEdges sums every edge over the segments into a listed traffic, without
// the Edges map.
func (s *Snapshot) sumEdges(segs []segment, now time.Time, window time.Duration) *Traffic {
	// Sum per edge id into flat accumulators (no map is touched per cell).
	// An evicted and re-interned edge has two ids and one key: it is listed
	// twice, and Build and the Edges map add the two up.
	accs := s.accs.get(len(s.edges))
	defer s.accs.put(accs)
	for _, sg := range segs {
		s.sumInto(accs, sg)
	}
	// The stats of all edges share three allocations (structs, histograms,
	// status counts) laid out in edge-id order, which Build then walks in
	// that order: a cold query touches memory sequentially, not at random.
	live, ncodes := 0, 0
	for id := range accs {
		if accs[id].requests != 0 {
			live++
			ncodes += len(accs[id].codes)
		}
	}
	nl := len(mesh.LatencyBucketsMs) + 1
	mem := s.accs.trafficMem(live, nl, ncodes)
	slab, hist, codes := mem.stats, mem.hist, mem.codes
	t := &Traffic{End: now, Window: window, ordered: true, lazy: &lazyEdges{}, order: mem.order, pool: s.accs, share: &trafficShare{mem: mem}}
	for id := range accs {
		a := &accs[id]
		if a.requests == 0 {
			continue
		}
		e := s.edges[id]
		st := &slab[len(t.order)]
		st.Latency = hist[len(t.order)*nl : (len(t.order)+1)*nl : (len(t.order)+1)*nl]
		// Capacity ends at this edge's codes: an append by anyone later
		// reallocates instead of writing over the next edge's.
		st.Codes = codes[:0:len(a.codes)]
		codes = codes[len(a.codes):]
		a.addTo(st, s.flags)
		t.order = append(t.order, trafficEdge{key: &e.key, stats: st, src: e.src, dst: e.dst})
	}
	mem.order = t.order
	return t
}

func (s *Snapshot) sumInto(accs []acc, sg segment) {
	for _, b := range sg.rg.buckets {
		if b == nil || b.idx <= sg.lo || b.idx > sg.hi {
			continue
		}
		for i := range b.cells {
			accs[b.cells[i].edge].add(&b.cells[i])
		}
		for k, n := range b.moreCodes {
			accs[k.edge].addCode(k.k, uint64(n))
		}
		for k, n := range b.moreFlags {
			accs[k.edge].addFlag(k.id, uint64(n))
		}
	}
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
	sum, err := s.VersionSum(ns, service, version, window)
	if err != nil {
		return VersionStats{}, err
	}
	return sum.Stats(window), nil
}

// VersionSum is what a version's stats are computed from: its request and
// error counts, latency histogram and recent latency samples. Sums of
// several replicas add (Add), so stats computed from the total are those
// of all the traffic.
type VersionSum struct {
	Requests  uint64    `json:"requests"`
	Errors    uint64    `json:"errors"`
	Latency   []uint64  `json:"latency"` // per bucket of mesh.LatencyBucketsMs, then +Inf
	SamplesMs []float64 `json:"samplesMs,omitempty"`
}

// maxMergedSamples bounds the samples of merged sums (a reservoir each).
const maxMergedSamples = 4096

// Add adds o into v.
func (v *VersionSum) Add(o VersionSum) {
	v.Requests += o.Requests
	v.Errors += o.Errors
	if len(v.Latency) < len(o.Latency) {
		v.Latency = append(v.Latency, make([]uint64, len(o.Latency)-len(v.Latency))...)
	}
	for i, n := range o.Latency {
		v.Latency[i] += n
	}
	room := maxMergedSamples - len(v.SamplesMs)
	if room > len(o.SamplesMs) {
		room = len(o.SamplesMs)
	}
	if room > 0 {
		v.SamplesMs = append(v.SamplesMs, o.SamplesMs[len(o.SamplesMs)-room:]...)
	}
}

// Stats computes the numbers a rollout judges by over window.
func (v VersionSum) Stats(window time.Duration) VersionStats {
	st := Stats{Requests: v.Requests, Errors: v.Errors, Latency: v.Latency}
	return VersionStats{
		Requests: v.Requests, Errors: v.Errors, ErrorRate: st.ErrorRate(),
		RPS:   float64(v.Requests) / window.Seconds(),
		P50Ms: finite(st.Quantile(0.5)), P90Ms: finite(st.Quantile(0.9)), P99Ms: finite(st.Quantile(0.99)),
		SamplesMs: v.SamplesMs,
	}
}

// VersionSum sums the inbound traffic of one version over the window
// ending now (see VersionStats).
func (s *Snapshot) VersionSum(ns, service, version string, window time.Duration) (VersionSum, error) {
	now := s.now()
	rg, lo, hi, err := s.pick(now, window)
	if err != nil {
		return VersionSum{}, err
	}
	st := s.sum(rg, lo, hi, func(k *EdgeKey) bool {
		d := &k.Destination
		return d.Service == service && d.Namespace == ns && d.Version == version
	})
	vs := VersionSum{Requests: st.Requests, Errors: st.Errors, Latency: st.Latency}
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

// CurrentVersionStats is VersionStats up to the last record counted (it
// publishes a snapshot first): what a rollout's judge reads.
func (l *Live) CurrentVersionStats(_ context.Context, ns, service, version string, window time.Duration) (VersionStats, error) {
	return l.Refresh().VersionStats(ns, service, version, window)
}

// TrafficNow is the traffic of every edge over the window ending at end, up
// to the last record counted (it publishes a snapshot first): what alert
// rules read. The result is shared: callers must not modify it.
func (l *Live) TrafficNow(_ context.Context, end time.Time, window time.Duration) (*Traffic, error) {
	return l.Refresh().TrafficAt(end, window)
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

// SeriesSums are a SeriesBuilder's sums as they travel between meshlens
// replicas: per version, the stats of every step (null: no traffic). Counts
// and histograms add, so series added up from every replica are exact.
type SeriesSums struct {
	Start    time.Time           `json:"start"`
	Step     time.Duration       `json:"step"`
	Versions map[string][]*Stats `json:"versions"`
}

// Sums are the builder's stats so far.
func (b *SeriesBuilder) Sums() SeriesSums {
	return SeriesSums{Start: b.Start, Step: b.Step, Versions: b.cells}
}

// AddSums adds another builder's sums, each step at its time; steps outside
// this builder's range are left out.
func (b *SeriesBuilder) AddSums(o SeriesSums) {
	for v, row := range o.Versions {
		for i, st := range row {
			if st == nil {
				continue
			}
			if into := b.At(v, o.Start.Add(time.Duration(i)*o.Step)); into != nil {
				into.Add(st)
			}
		}
	}
}

// ServiceSeries returns per-version series of a service's inbound traffic
// over the range ending now, with about maxPoints steps of a whole number of
// buckets.
func (s *Snapshot) ServiceSeries(ns, service string, rng time.Duration, maxPoints int) ([]Series, time.Duration, error) {
	sb, err := s.ServiceSeriesAt(ns, service, s.now(), rng, maxPoints)
	if err != nil {
		return nil, 0, err
	}
	return sb.Series(), sb.Step, nil
}

// ServiceSeriesAt is ServiceSeries over the range ending at now, as a
// builder whose sums another replica's can be added to (SeriesSums): the
// steps are whole buckets aligned on the clock, the same on every replica.
func (s *Snapshot) ServiceSeriesAt(ns, service string, now time.Time, rng time.Duration, maxPoints int) (*SeriesBuilder, error) {
	rg, lo, hi, err := s.pick(now, rng)
	if err != nil {
		return nil, err
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
	for _, b := range rg.buckets {
		if b == nil || b.idx <= lo || b.idx > hi {
			continue
		}
		at := time.Unix(0, b.idx*rg.width)
		byVersion := map[string]*acc{}
		b.each(s.edges, func(k *EdgeKey) bool {
			return k.Destination.Service == service && k.Destination.Namespace == ns
		}, func(k *EdgeKey) *acc {
			a := byVersion[k.Destination.Version]
			if a == nil {
				a = &acc{}
				byVersion[k.Destination.Version] = a
			}
			return a
		})
		for v, a := range byVersion {
			if st := sb.At(v, at); st != nil {
				a.addTo(st, s.flags)
			}
		}
	}
	return sb, nil
}

// accPool recycles the per-edge accumulators of a window sum: a cold query
// over 10,000 edges needs 3 MB of them, and fresh memory costs page faults
// and zeroing on every query.
type accPool struct {
	p    recycle.List[*[]acc]
	bufs recycle.List[*[]byte]
}

// buf is a scratch buffer to write a wire answer into.
func (p *accPool) buf() *[]byte {
	if b, ok := p.bufs.Get(); ok {
		return b
	}
	b := make([]byte, 0, 64<<10)
	return &b
}

func (p *accPool) putBuf(b *[]byte) { p.bufs.Put(b) }

func (p *accPool) get(n int) []acc {
	if v, ok := p.p.Get(); ok && cap(*v) >= n {
		return (*v)[:n]
	}
	return make([]acc, n)
}

// put clears the accumulators for the next use, keeping the capacity of
// their status and flag lists.
func (p *accPool) put(accs []acc) {
	for i := range accs {
		a := &accs[i]
		*a = acc{codes: a.codes[:0], flags: a.flags[:0]}
	}
	p.p.Put(&accs)
}

// acc sums cells of one edge without maps.
type acc struct {
	requests, errors, mtls, bytesIn, bytesOut, dur uint64
	latency                                        [maxLatencyBuckets]uint64
	codes                                          []codeSum
	flags                                          []flagSum
}

// codeSum and flagSum are 64-bit sums of cells' 32-bit counts.
type codeSum struct {
	k CodeKey
	n uint64
}

type flagSum struct {
	id uint16
	n  uint64
}

func (a *acc) add(c *cell) {
	a.requests += uint64(c.requests)
	a.errors += uint64(c.errors)
	a.mtls += uint64(c.mtls)
	a.bytesIn += c.bytesIn
	a.bytesOut += c.bytesOut
	a.dur += c.dur
	for i := range c.latency {
		a.latency[i] += uint64(c.latency[i])
	}
	for _, cc := range c.codes {
		if cc.n == 0 {
			break
		}
		a.addCode(cc.k, uint64(cc.n))
	}
	for _, f := range c.flags {
		if f.n == 0 {
			break
		}
		a.addFlag(f.id, uint64(f.n))
	}
}

func (a *acc) addCode(k CodeKey, n uint64) {
	for i := range a.codes {
		if a.codes[i].k == k {
			a.codes[i].n += n
			return
		}
	}
	a.codes = append(a.codes, codeSum{k, n})
}

func (a *acc) addFlag(id uint16, n uint64) {
	for i := range a.flags {
		if a.flags[i].id == id {
			a.flags[i].n += n
			return
		}
	}
	a.flags = append(a.flags, flagSum{id, n})
}

func (a *acc) addTo(s *Stats, flagNames []string) {
	s.Requests += a.requests
	s.Errors += a.errors
	s.MTLS += a.mtls
	s.BytesIn += a.bytesIn
	s.BytesOut += a.bytesOut
	s.DurationSumUs += a.dur
	for i := range s.Latency {
		s.Latency[i] += a.latency[i]
	}
	for _, cc := range a.codes {
		s.addCount(cc.k, cc.n)
	}
	for _, f := range a.flags {
		if s.Flags == nil {
			s.Flags = map[string]uint64{}
		}
		s.Flags[flagNames[f.id]] += f.n
	}
}
