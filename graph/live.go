package graph

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/mesh"
)

// Tier is one ring of time buckets: Buckets buckets of Width each. A window
// is answered from the finest tier whose span covers it, so short windows are
// precise to Width and long windows do not cost a fine ring an hour long.
type Tier struct {
	Width   time.Duration
	Buckets int
}

// Config tunes the live graph. Zero values take the defaults.
type Config struct {
	// Tiers, finest first. Default: 10 s × 36 (6 min), 1 min × 61 (1 h) and
	// 10 min × 7 (1 h), the last only to sum long windows from fewer buckets.
	Tiers []Tier
	// MaxEdges caps distinct edges (and cells per bucket). When a new edge
	// would exceed it, the least recently seen tenth of edges is forgotten.
	// Default 20,000.
	MaxEdges int
	// ReservoirSize is how many recent latency samples are kept per
	// destination version for statistical tests. Default 1,024.
	ReservoirSize int
	// PublishInterval is the longest a reader's snapshot lags the writer
	// while records arrive. Default 1 s.
	PublishInterval time.Duration
	// Now is the clock; default time.Now. Tests inject their own.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if len(c.Tiers) == 0 {
		c.Tiers = []Tier{{10 * time.Second, 36}, {time.Minute, 61}, {10 * time.Minute, 7}}
	}
	if c.MaxEdges <= 0 {
		c.MaxEdges = 20000
	}
	if c.ReservoirSize <= 0 {
		c.ReservoirSize = 1024
	}
	if c.PublishInterval <= 0 {
		c.PublishInterval = time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate names the first bad field.
func (c Config) Validate() error {
	c = c.withDefaults()
	for i, t := range c.Tiers {
		if t.Width < time.Second || t.Buckets < 2 {
			return fmt.Errorf("graph config: tiers[%d]: width must be >= 1s and buckets >= 2, got %v × %d", i, t.Width, t.Buckets)
		}
		if i > 0 && t.Width <= c.Tiers[i-1].Width {
			return fmt.Errorf("graph config: tiers[%d]: tiers must be finest first", i)
		}
	}
	if len(mesh.LatencyBucketsMs)+1 > maxLatencyBuckets {
		return fmt.Errorf("graph config: %d latency buckets exceed the live graph's %d", len(mesh.LatencyBucketsMs)+1, maxLatencyBuckets)
	}
	return nil
}

// maxLatencyBuckets sizes the fixed histogram array of a cell, so a cell is
// one allocation-free value.
const maxLatencyBuckets = 24

// Live is the live dependency graph: a windowed model of the mesh fed by
// request records. One writer lock serialises ConsumeRecords calls; readers
// never take it, they read an immutable Snapshot published by atomic swap.
// Buckets are frozen when published and copied on the writer's next write to
// them, so a published snapshot never changes under a reader.
type Live struct {
	cfg    Config
	logger *slog.Logger
	bounds []uint64
	base   time.Time // epoch of reservoir sample times

	mu          sync.Mutex
	edges       map[EdgeKey]*edge
	table       []*edge // by edge id; shared with snapshots until written
	tableShared bool
	free        []freeID // ids of evicted edges, oldest first
	flagNames   []string // interned response flags, append-only
	flagIDs     map[string]uint16
	peerIDs     map[mesh.Peer]uint32 // see peerLocked
	nextPeer    uint32
	rings       []*ring
	reservoirs  map[mesh.Peer]*reservoir
	resDirty    bool
	dirty       bool
	lastPublish time.Time

	snap atomic.Pointer[Snapshot]
	accs queryPool
	m    liveMetrics
}

type liveMetrics struct {
	records   prometheus.Counter
	tooOld    prometheus.Counter
	edgeLimit prometheus.Counter
	evicted   prometheus.Counter
	edges     prometheus.Gauge
	cells     prometheus.Gauge
	memory    prometheus.Gauge
}

// edge is an interned edge key with a dense id. Cells name edges by id so
// that cells hold no pointers (the garbage collector skips them, and a query
// sums into a slice, not a map). An evicted edge's id is reused only once no
// bucket can still hold its cells, so its past traffic stays counted until
// it ages out.
type edge struct {
	id       uint32
	key      EdgeKey
	src, dst uint32 // peer ids of key.Source and key.Destination, or noPeer
	lastSeen int64  // unix nanoseconds; writer-only
}

// noPeer is the peer id of a peer without one.
const noPeer = math.MaxUint32

type freeID struct {
	id uint32
	at int64 // eviction time, unix nanoseconds
}

type ring struct {
	width   int64 // nanoseconds
	buckets []*bucket
}

type bucket struct {
	idx    int64 // start / width
	frozen bool  // published: copy before writing
	index  map[uint32]int32
	cells  []cell
	// Codes and flags beyond a cell's inline slots, rare.
	moreCodes map[edgeCode]uint32
	moreFlags map[edgeFlag]uint32
}

// cell is one edge's counters in one bucket; it holds no pointers.
type cell struct {
	edge                   uint32
	requests, errors, mtls uint32
	bytesIn, bytesOut, dur uint64
	latency                [maxLatencyBuckets]uint32
	codes                  [4]codeCount // n == 0: free slot
	flags                  [2]flagCount
}

type codeCount struct {
	k CodeKey
	n uint32
}

type flagCount struct {
	id uint16
	n  uint32
}

type edgeCode struct {
	edge uint32
	k    CodeKey
}

type edgeFlag struct {
	edge uint32
	id   uint16
}

// New builds an empty live graph and registers its metrics on reg.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Live, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	l := &Live{
		cfg:        cfg,
		logger:     logger,
		bounds:     latencyBoundsUs(),
		base:       cfg.Now().Add(-48 * time.Hour),
		edges:      map[EdgeKey]*edge{},
		flagIDs:    map[string]uint16{},
		peerIDs:    map[mesh.Peer]uint32{},
		reservoirs: map[mesh.Peer]*reservoir{},
	}
	for _, t := range cfg.Tiers {
		l.rings = append(l.rings, &ring{width: int64(t.Width), buckets: make([]*bucket, t.Buckets)})
	}
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshlens_graph_records_dropped_total",
		Help: "Records the live graph did not count, by reason (too_old: older than the longest window; edge_limit: a bucket already held max edges).",
	}, []string{"reason"})
	l.m = liveMetrics{
		records:   prometheus.NewCounter(prometheus.CounterOpts{Name: "meshlens_graph_records_total", Help: "Records counted by the live graph."}),
		tooOld:    dropped.WithLabelValues("too_old"),
		edgeLimit: dropped.WithLabelValues("edge_limit"),
		evicted:   prometheus.NewCounter(prometheus.CounterOpts{Name: "meshlens_graph_edges_evicted_total", Help: "Edges forgotten to stay under the edge cap."}),
		edges:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshlens_graph_edges", Help: "Distinct edges the live graph tracks."}),
		cells:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshlens_graph_cells", Help: "Per-bucket edge counters held in the live graph's rings."}),
		memory:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshlens_graph_memory_bytes", Help: "Estimated memory held by the live graph."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{l.m.records, dropped, l.m.evicted, l.m.edges, l.m.cells, l.m.memory} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register live graph metrics: %w", err)
			}
		}
	}
	l.mu.Lock()
	l.publishLocked(cfg.Now())
	l.mu.Unlock()
	return l, nil
}

// MaxWindow is the longest window the live graph answers.
func (l *Live) MaxWindow() time.Duration {
	t := l.cfg.Tiers[len(l.cfg.Tiers)-1]
	return t.Width * time.Duration(t.Buckets-1)
}

// Now is the live graph's clock: what its windows end at and what it
// takes as the present when it buckets records.
func (l *Live) Now() time.Time { return l.cfg.Now() }

// ConsumeRecords counts records into their buckets. It implements
// mesh.RecordSink; it never waits for readers and never fails.
func (l *Live) ConsumeRecords(_ context.Context, recs []mesh.Record) error {
	now := l.cfg.Now()
	nowNs := now.UnixNano()
	oldest := nowNs - int64(l.MaxWindow()) - l.rings[len(l.rings)-1].width
	var counted, tooOld, limited float64
	l.mu.Lock()
	for i := range recs {
		switch l.addLocked(&recs[i], nowNs, oldest) {
		case addOK:
			counted++
		case addTooOld:
			tooOld++
		case addLimited:
			limited++
		}
	}
	l.dirty = true
	if now.Sub(l.lastPublish) >= l.cfg.PublishInterval {
		l.publishLocked(now)
	}
	l.mu.Unlock()
	l.m.records.Add(counted)
	l.m.tooOld.Add(tooOld)
	l.m.edgeLimit.Add(limited)
	return nil
}

type addResult int

const (
	addOK addResult = iota
	addTooOld
	addLimited
)

func (l *Live) addLocked(r *mesh.Record, nowNs, oldest int64) addResult {
	t := r.Time.UnixNano()
	if t > nowNs {
		t = nowNs // a skewed clock: count it now rather than in a bucket no window reads yet
	}
	if t < oldest {
		return addTooOld
	}
	key := EdgeKey{Source: r.Source.OrUnknown(), Destination: r.Destination.OrUnknown(), Protocol: r.Protocol}
	e := l.edges[key]
	if e == nil {
		if len(l.edges) >= l.cfg.MaxEdges {
			l.evictLocked(nowNs)
		}
		e = l.internLocked(key, nowNs, oldest)
	}
	if t > e.lastSeen {
		e.lastSeen = t
	}
	us := uint64(r.Duration / time.Microsecond)
	lb := bucketOfUs(l.bounds, us)
	isErr := r.IsError()
	ck := CodeKey{Code: r.Code, GRPCStatus: r.GRPCStatus}
	flag, hasFlag := l.flagLocked(r.Flags)
	res := addOK
	for _, rg := range l.rings {
		b, c := rg.cellFor(e.id, t, nowNs, l.cfg.MaxEdges)
		if c == nil {
			if b != nil || rg == l.rings[len(l.rings)-1] {
				res = addLimited
			}
			continue
		}
		c.add(b, r, us, lb, isErr, ck, flag, hasFlag)
	}
	rk := mesh.Peer{Namespace: key.Destination.Namespace, Service: key.Destination.Service, Version: key.Destination.Version}
	rv := l.reservoirs[rk]
	if rv == nil {
		if len(l.reservoirs) >= l.cfg.MaxEdges {
			return res
		}
		rv = newReservoir(l.cfg.ReservoirSize)
		l.reservoirs[rk] = rv
		l.resDirty = true
	}
	rv.add(uint32((t-l.base.UnixNano())/int64(time.Second)), float32(float64(us)/1000))
	return res
}

// internLocked gives key an edge, reusing the id of an edge evicted before
// the oldest time any bucket still covers.
func (l *Live) internLocked(key EdgeKey, nowNs, oldest int64) *edge {
	e := &edge{key: key, src: l.peerLocked(key.Source), dst: l.peerLocked(key.Destination)}
	if len(l.free) > 0 && l.free[0].at < oldest {
		e.id = l.free[0].id
		l.free = l.free[1:]
		if l.tableShared {
			l.table = append([]*edge(nil), l.table...)
			l.tableShared = false
		}
		l.table[e.id] = e
	} else {
		e.id = uint32(len(l.table))
		l.table = append(l.table, e) // beyond every snapshot's length: no copy needed
	}
	l.edges[key] = e
	return e
}

// peerLocked gives a peer a small id, so a query finds a peer's node by id
// instead of hashing four strings per edge end. Ids are never reused: two
// peers never share one, though one peer may get a second id after the table
// is cleared (it is, when it outgrows the edges it could serve, since evicted
// edges leave their peers behind); a query treats both ids as one node. When
// ids run out, peers get noPeer and queries hash them.
func (l *Live) peerLocked(p mesh.Peer) uint32 {
	if id, ok := l.peerIDs[p]; ok {
		return id
	}
	if l.nextPeer == noPeer {
		return noPeer
	}
	if len(l.peerIDs) >= 4*l.cfg.MaxEdges {
		clear(l.peerIDs)
	}
	id := l.nextPeer
	l.nextPeer++
	l.peerIDs[p] = id
	return id
}

// maxFlags bounds the interned response-flag strings; more are counted as "other".
const maxFlags = 1 << 12

func (l *Live) flagLocked(f string) (uint16, bool) {
	if f == "" || f == "-" {
		return 0, false
	}
	if id, ok := l.flagIDs[f]; ok {
		return id, true
	}
	if len(l.flagNames) >= maxFlags {
		f = "other"
		if id, ok := l.flagIDs[f]; ok {
			return id, true
		}
	}
	id := uint16(len(l.flagNames))
	l.flagNames = append(l.flagNames, f)
	l.flagIDs[f] = id
	return id, true
}

// evictLocked forgets the least recently seen tenth of the edges.
func (l *Live) evictLocked(nowNs int64) {
	all := make([]*edge, 0, len(l.edges))
	for _, e := range l.edges {
		all = append(all, e)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].lastSeen < all[j].lastSeen })
	n := len(all)/10 + 1
	for _, e := range all[:n] {
		delete(l.edges, e.key)
		l.free = append(l.free, freeID{id: e.id, at: nowNs})
	}
	l.m.evicted.Add(float64(n))
	l.logger.Debug("live graph evicted edges", "evicted", n, "cap", l.cfg.MaxEdges)
}

// cellFor returns the bucket holding time t and the cell of edge id in it,
// creating the bucket (recycling its ring slot) or the cell as needed. The
// bucket is nil when t is older than this ring keeps; the cell is nil then
// or when the bucket is full.
func (rg *ring) cellFor(id uint32, t, nowNs int64, maxCells int) (*bucket, *cell) {
	idx := t / rg.width
	nowIdx := nowNs / rg.width
	n := int64(len(rg.buckets))
	if idx <= nowIdx-n {
		return nil, nil
	}
	slot := idx % n
	b := rg.buckets[slot]
	switch {
	case b == nil || b.idx < idx:
		// Empty, or holding a bucket a full ring ago: start over. This is where
		// counts reset; nothing else ever subtracts.
		b = &bucket{idx: idx, index: map[uint32]int32{}}
		rg.buckets[slot] = b
	case b.idx > idx:
		return nil, nil // cannot happen within the ring span; be safe
	case b.frozen:
		b = b.clone()
		rg.buckets[slot] = b
	}
	i, ok := b.index[id]
	if !ok {
		if len(b.cells) >= maxCells {
			return b, nil
		}
		i = int32(len(b.cells))
		b.cells = append(b.cells, cell{edge: id})
		b.index[id] = i
	}
	return b, &b.cells[i]
}

func (b *bucket) clone() *bucket {
	nb := &bucket{idx: b.idx, index: make(map[uint32]int32, len(b.index)), cells: make([]cell, len(b.cells), cap(b.cells))}
	copy(nb.cells, b.cells)
	for e, i := range b.index {
		nb.index[e] = i
	}
	if b.moreCodes != nil {
		nb.moreCodes = make(map[edgeCode]uint32, len(b.moreCodes))
		for k, v := range b.moreCodes {
			nb.moreCodes[k] = v
		}
	}
	if b.moreFlags != nil {
		nb.moreFlags = make(map[edgeFlag]uint32, len(b.moreFlags))
		for k, v := range b.moreFlags {
			nb.moreFlags[k] = v
		}
	}
	return nb
}

func (c *cell) add(b *bucket, r *mesh.Record, us uint64, lb int, isErr bool, ck CodeKey, flag uint16, hasFlag bool) {
	c.requests++
	if isErr {
		c.errors++
	}
	if r.MTLS {
		c.mtls++
	}
	c.bytesIn += r.BytesIn
	c.bytesOut += r.BytesOut
	c.dur += us
	c.latency[lb]++
	c.addCode(b, ck)
	if hasFlag {
		c.addFlag(b, flag)
	}
}

func (c *cell) addCode(b *bucket, ck CodeKey) {
	for i := range c.codes {
		switch {
		case c.codes[i].n == 0:
			c.codes[i] = codeCount{k: ck, n: 1}
			return
		case c.codes[i].k == ck:
			c.codes[i].n++
			return
		}
	}
	if b.moreCodes == nil {
		b.moreCodes = map[edgeCode]uint32{}
	}
	b.moreCodes[edgeCode{c.edge, ck}]++
}

func (c *cell) addFlag(b *bucket, id uint16) {
	for i := range c.flags {
		switch {
		case c.flags[i].n == 0:
			c.flags[i] = flagCount{id: id, n: 1}
			return
		case c.flags[i].id == id:
			c.flags[i].n++
			return
		}
	}
	if b.moreFlags == nil {
		b.moreFlags = map[edgeFlag]uint32{}
	}
	b.moreFlags[edgeFlag{c.edge, id}]++
}

// Refresh publishes a snapshot of everything counted so far. Readers that
// need the very latest records (tests, a rollout judging a step) call it; it
// holds the writer lock only to copy bucket pointers.
func (l *Live) Refresh() *Snapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.publishLocked(l.cfg.Now())
}

// Snapshot returns the latest published snapshot. When it is stale and
// records are pending it publishes a new one, but only if the writer lock is
// free: a reader never waits for the writer.
func (l *Live) Snapshot() *Snapshot {
	s := l.snap.Load()
	now := l.cfg.Now()
	if now.Sub(s.built) < l.cfg.PublishInterval {
		return s
	}
	if l.mu.TryLock() {
		if l.dirty {
			s = l.publishLocked(now)
		}
		l.mu.Unlock()
	}
	return s
}

func (l *Live) publishLocked(now time.Time) *Snapshot {
	s := &Snapshot{built: now, bounds: l.bounds, base: l.base, tiers: l.cfg.Tiers, now: l.cfg.Now,
		edges: l.table, flags: l.flagNames, accs: &l.accs}
	l.tableShared = true
	cells := 0
	for _, rg := range l.rings {
		bs := make([]*bucket, len(rg.buckets))
		for i, b := range rg.buckets {
			if b != nil {
				b.frozen = true
				cells += len(b.cells)
			}
			bs[i] = b
		}
		s.rings = append(s.rings, ringView{width: rg.width, buckets: bs})
	}
	prev := l.snap.Load()
	if prev != nil && !l.resDirty {
		s.reservoirs = prev.reservoirs
	} else {
		s.reservoirs = make(map[mesh.Peer]*reservoir, len(l.reservoirs))
		for k, v := range l.reservoirs {
			s.reservoirs[k] = v
		}
		l.resDirty = false
	}
	l.snap.Store(s)
	if prev != nil {
		prev.retire()
	}
	l.dirty = false
	l.lastPublish = now
	l.m.edges.Set(float64(len(l.edges)))
	l.m.cells.Set(float64(cells))
	l.m.memory.Set(float64(l.memoryEstimateLocked(cells)))
	return s
}

// memoryEstimateLocked approximates the bytes held: cells with their index
// entries and typical code lists, interned edges and peers, reservoirs.
func (l *Live) memoryEstimateLocked(cells int) int64 {
	const indexEntry, edgeStrings = 16, 160
	perCell := int64(unsafe.Sizeof(cell{})) + indexEntry
	perEdge := int64(unsafe.Sizeof(edge{})) + edgeStrings + 64
	perRes := int64(l.cfg.ReservoirSize)*8 + 128
	perPeer := int64(unsafe.Sizeof(mesh.Peer{})) + 16 // strings shared with edge keys
	return int64(cells)*perCell + int64(len(l.table))*perEdge + int64(len(l.reservoirs))*perRes + int64(len(l.peerIDs))*perPeer
}

// reservoir keeps the most recent samples of a destination version's latency,
// lock-free: each sample is one atomic word (seconds since base, float32 ms).
type reservoir struct {
	next    atomic.Uint64
	samples []atomic.Uint64
}

func newReservoir(n int) *reservoir { return &reservoir{samples: make([]atomic.Uint64, n)} }

func (r *reservoir) add(sec uint32, ms float32) {
	i := r.next.Add(1) - 1
	r.samples[i%uint64(len(r.samples))].Store(uint64(sec)<<32 | uint64(math.Float32bits(ms)))
}

// since returns the samples at or after second sec, oldest first.
func (r *reservoir) since(sec uint32, out []float64) []float64 {
	n := r.next.Load()
	size := uint64(len(r.samples))
	start := uint64(0)
	if n > size {
		start = n - size
	}
	for i := start; i < n; i++ {
		v := r.samples[i%size].Load()
		if v == 0 {
			continue
		}
		if uint32(v>>32) >= sec {
			out = append(out, float64(math.Float32frombits(uint32(v))))
		}
	}
	return out
}

// ErrWindow is returned for windows the live graph cannot answer.
var ErrWindow = errors.New("window out of range")
