package graph

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/meshlens/meshlens/mesh"
)

// The wire form of Traffic is what one meshlens replica sends another for a
// merged graph: its live per-edge counts over a window, exact (the latency
// histogram travels bucket by bucket, so merged percentiles are those of the
// union of the traffic). It is compact and cheap to write and read: every
// peer is written once and edges name peers by index; numbers are varints;
// latency buckets that are zero are left out.
//
//	"MLT1" end(ns) window(ns) flags[n]{string} peers[n]{ns svc workload version}
//	edges[n]{src dst protocol requests errors mtls bytesIn bytesOut durUs
//	         codes[n]{code grpc(zigzag) n} flags[n]{index n} latency[n]{bucket n}}
const wireMagic = "MLT1"

// TrafficContentType is the media type of the wire form.
const TrafficContentType = "application/vnd.meshlens.traffic"

// AppendWire appends the wire form of t to buf.
func (t *Traffic) AppendWire(buf []byte) []byte {
	buf = append(buf, wireMagic...)
	buf = binary.AppendVarint(buf, t.End.UnixNano())
	buf = binary.AppendUvarint(buf, uint64(t.Window))
	var flags []string
	flagIdx := map[string]uint64{}
	var w wirePeers
	w.byID.reset(2 * t.edgeCount())
	type wireEdge struct {
		src, dst uint64
		key      *EdgeKey
		st       *Stats
	}
	var edges []wireEdge
	if t.ordered {
		edges = make([]wireEdge, 0, len(t.order))
		for i := range t.order {
			te := &t.order[i]
			edges = append(edges, wireEdge{w.of(&te.key.Source, te.src), w.of(&te.key.Destination, te.dst), te.key, te.stats})
		}
	} else {
		edges = make([]wireEdge, 0, len(t.Edges))
		for k, st := range t.Edges {
			k := k
			edges = append(edges, wireEdge{w.of(&k.Source, noPeer), w.of(&k.Destination, noPeer), &k, st})
		}
	}
	for _, e := range edges {
		for f := range e.st.Flags {
			if _, ok := flagIdx[f]; !ok {
				flagIdx[f] = uint64(len(flags))
				flags = append(flags, f)
			}
		}
	}
	buf = binary.AppendUvarint(buf, uint64(len(flags)))
	for _, f := range flags {
		buf = appendString(buf, f)
	}
	buf = w.append(buf)
	buf = binary.AppendUvarint(buf, uint64(len(edges)))
	for _, e := range edges {
		st := e.st
		buf = binary.AppendUvarint(buf, e.src)
		buf = binary.AppendUvarint(buf, e.dst)
		buf = appendString(buf, e.key.Protocol)
		for _, v := range [...]uint64{st.Requests, st.Errors, st.MTLS, st.BytesIn, st.BytesOut, st.DurationSumUs} {
			buf = binary.AppendUvarint(buf, v)
		}
		buf = binary.AppendUvarint(buf, uint64(len(st.Codes)))
		for _, c := range st.Codes {
			buf = binary.AppendUvarint(buf, uint64(c.Code))
			buf = binary.AppendVarint(buf, int64(c.GRPCStatus))
			buf = binary.AppendUvarint(buf, c.N)
		}
		buf = binary.AppendUvarint(buf, uint64(len(st.Flags)))
		for f, n := range st.Flags {
			buf = binary.AppendUvarint(buf, flagIdx[f])
			buf = binary.AppendUvarint(buf, n)
		}
		nz := 0
		for _, n := range st.Latency {
			if n != 0 {
				nz++
			}
		}
		buf = binary.AppendUvarint(buf, uint64(nz))
		for i, n := range st.Latency {
			if n != 0 {
				buf = binary.AppendUvarint(buf, uint64(i))
				buf = binary.AppendUvarint(buf, n)
			}
		}
	}
	return buf
}

// appendWireSums appends the wire form of a snapshot's per-edge sums (accs,
// by edge id) to buf: the bytes AppendWire writes for the traffic sumEdges
// would list from them, without listing it (no stats, histograms or status
// lists are allocated for an answer that is only sent).
func (s *Snapshot) appendWireSums(buf []byte, accs []acc, end time.Time, window time.Duration) []byte {
	buf = append(buf, wireMagic...)
	buf = binary.AppendVarint(buf, end.UnixNano())
	buf = binary.AppendUvarint(buf, uint64(window))
	ws := s.accs.wireScratch()
	defer s.accs.putWireScratch(ws)
	w := &ws.peers
	w.byID.reset(2 * len(accs))
	var flags []uint16 // flag ids in the order the answer lists them
	var flagIdx map[uint16]uint64
	edges := ws.edges[:0]
	defer func() { ws.edges = edges[:0] }()
	for id := range accs {
		a := &accs[id]
		if a.requests == 0 {
			continue
		}
		e := s.edges[id]
		edges = append(edges, wireSumEdge{uint32(id), w.of(&e.key.Source, e.src), w.of(&e.key.Destination, e.dst)})
		for _, f := range a.flags {
			if _, ok := flagIdx[f.id]; !ok {
				if flagIdx == nil {
					flagIdx = map[uint16]uint64{}
				}
				flagIdx[f.id] = uint64(len(flags))
				flags = append(flags, f.id)
			}
		}
	}
	buf = binary.AppendUvarint(buf, uint64(len(flags)))
	for _, f := range flags {
		buf = appendString(buf, s.flags[f])
	}
	buf = w.append(buf)
	buf = binary.AppendUvarint(buf, uint64(len(edges)))
	nl := len(mesh.LatencyBucketsMs) + 1
	for _, e := range edges {
		a := &accs[e.id]
		buf = binary.AppendUvarint(buf, e.src)
		buf = binary.AppendUvarint(buf, e.dst)
		buf = appendString(buf, s.edges[e.id].key.Protocol)
		for _, v := range [...]uint64{a.requests, a.errors, a.mtls, a.bytesIn, a.bytesOut, a.dur} {
			buf = binary.AppendUvarint(buf, v)
		}
		buf = binary.AppendUvarint(buf, uint64(len(a.codes)))
		for _, c := range a.codes {
			buf = binary.AppendUvarint(buf, uint64(c.k.Code))
			buf = binary.AppendVarint(buf, int64(c.k.GRPCStatus))
			buf = binary.AppendUvarint(buf, c.n)
		}
		buf = binary.AppendUvarint(buf, uint64(len(a.flags)))
		for _, f := range a.flags {
			buf = binary.AppendUvarint(buf, flagIdx[f.id])
			buf = binary.AppendUvarint(buf, f.n)
		}
		nz := 0
		for _, n := range a.latency[:nl] {
			if n != 0 {
				nz++
			}
		}
		buf = binary.AppendUvarint(buf, uint64(nz))
		for i, n := range a.latency[:nl] {
			if n != 0 {
				buf = binary.AppendUvarint(buf, uint64(i))
				buf = binary.AppendUvarint(buf, n)
			}
		}
	}
	return buf
}

type wireSumEdge struct {
	id       uint32
	src, dst uint64
}

// wireScratch is appendWireSums' memory, kept for the next answer.
type wireScratch struct {
	peers wirePeers
	edges []wireSumEdge
}

func (p *queryPool) wireScratch() *wireScratch {
	if w, ok := p.wires.Get(); ok {
		return w
	}
	return &wireScratch{}
}

func (p *queryPool) putWireScratch(w *wireScratch) {
	w.peers.byID.reset(0)
	clear(w.peers.byKey)
	clear(w.peers.list[:cap(w.peers.list)])
	w.peers.list = w.peers.list[:0]
	p.wires.Put(w)
}

// wirePeers numbers the peers of an answer in the order they are first
// seen, each once: by the live graph's peer id when there is one (no
// hashing of four strings), else by value.
type wirePeers struct {
	byID  idTable[uint64] // index + 1
	byKey map[mesh.Peer]uint64
	list  []*mesh.Peer
}

func (w *wirePeers) of(p *mesh.Peer, id uint32) uint64 {
	if id != noPeer {
		if i := w.byID.get(id); i != 0 {
			return i - 1
		}
	}
	if w.byKey == nil {
		w.byKey = map[mesh.Peer]uint64{}
	}
	i, ok := w.byKey[*p]
	if !ok {
		i = uint64(len(w.list))
		w.byKey[*p] = i
		w.list = append(w.list, p)
	}
	if id != noPeer {
		w.byID.put(id, i+1)
	}
	return i
}

func (w *wirePeers) append(buf []byte) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(w.list)))
	for _, p := range w.list {
		buf = appendString(buf, p.Namespace)
		buf = appendString(buf, p.Service)
		buf = appendString(buf, p.Workload)
		buf = appendString(buf, p.Version)
	}
	return buf
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

// ErrWire is returned for data that is not the wire form of Traffic.
var ErrWire = errors.New("not meshlens traffic")

// Merger adds up the traffic of several live graphs (this replica's and its
// peers', as Traffic or in the wire form) into one Traffic. Counts and
// histograms add, so the merge is exact. Peers are interned once, and the
// result lists its edges with peer ids, the form Build walks fastest.
type Merger struct {
	t     *Traffic
	peers map[mesh.Peer]uint32
	edges map[mergeKey]int // index into t.order
	nl    int
	slab  []Stats
	hist  []uint64
	codes []CodeCount
	strs  map[string]string // the strings of answers read, each kept once
	mem   *mergerMem
}

// mergerMem is the memory of one merge, kept for the next one (see
// recycle.go): its maps, the merged traffic's list, and the stats,
// histograms and status lists in chunks of mergeChunk edges.
type mergerMem struct {
	peers    map[mesh.Peer]uint32
	edges    map[mergeKey]int
	strs     map[string]string
	live     idTable[uint32] // livePeers'
	order    []trafficEdge
	stats    [][]Stats
	hists    [][]uint64
	codes    [][]CodeCount
	used     int         // chunks handed out
	wire     []mesh.Peer // an answer's peers, while it is read
	wireIDs  []uint32
	pool     *queryPool
	released bool
}

// mergeChunk is the edges whose stats share one allocation.
const mergeChunk = 1024

func (p *queryPool) mergerMem() *mergerMem {
	if p != nil {
		if m, ok := p.mergers.Get(); ok {
			m.released = false
			return m
		}
	}
	return &mergerMem{pool: p}
}

// chunk hands out the next chunk of stats, histograms and status lists,
// zeroed.
func (m *mergerMem) chunk(nl int) ([]Stats, []uint64, []CodeCount) {
	if m.used == len(m.stats) {
		m.stats = append(m.stats, make([]Stats, mergeChunk))
		m.hists = append(m.hists, make([]uint64, mergeChunk*nl))
		m.codes = append(m.codes, make([]CodeCount, mergeChunk*slabCodes))
	}
	i := m.used
	m.used++
	return m.stats[i], m.hists[i], m.codes[i]
}

func (m *mergerMem) put() {
	if m == nil || m.pool == nil || m.released {
		return
	}
	m.released = true
	for i := range m.used {
		clear(m.stats[i])
		clear(m.hists[i])
		clear(m.codes[i])
	}
	m.used = 0
	clear(m.peers)
	clear(m.edges)
	clear(m.strs)
	m.live.reset(0)
	clear(m.order[:cap(m.order)])
	m.order = m.order[:0]
	clear(m.wire[:cap(m.wire)])
	m.pool.mergers.Put(m)
}

// Release gives the memory of a merged traffic (Live.NewMerger) back for
// the next merge, once its one holder is done with it and with every graph
// built from it (their edges' stats are this memory). It does nothing for
// other traffic.
func (t *Traffic) Release() {
	m := t.merged
	t.merged = nil
	m.put()
}

type mergeKey struct {
	src, dst uint32
	protocol string
}

// NewMerger starts an empty merge of the window ending at end.
func NewMerger(end time.Time, window time.Duration, sizeHint int) *Merger {
	return newMerger(end, window, sizeHint, nil)
}

// NewMerger is graph.NewMerger in memory recycled from the Live's earlier
// merges; Release the merged traffic to give it back.
func (l *Live) NewMerger(end time.Time, window time.Duration) *Merger {
	return newMerger(end, window, 0, &l.accs)
}

func newMerger(end time.Time, window time.Duration, sizeHint int, pool *queryPool) *Merger {
	mem := pool.mergerMem()
	if mem.peers == nil {
		mem.peers = make(map[mesh.Peer]uint32, sizeHint/2)
		mem.edges = make(map[mergeKey]int, sizeHint)
	}
	if cap(mem.order) < sizeHint {
		mem.order = make([]trafficEdge, 0, sizeHint)
	}
	return &Merger{
		t:     &Traffic{End: end, Window: window, ordered: true, lazy: &lazyEdges{}, order: mem.order[:0], pool: pool, merged: mem},
		peers: mem.peers,
		edges: mem.edges,
		nl:    len(mesh.LatencyBucketsMs) + 1,
		mem:   mem,
	}
}

func (m *Merger) peer(p mesh.Peer) uint32 {
	id, ok := m.peers[p]
	if !ok {
		id = uint32(len(m.peers))
		m.peers[p] = id
	}
	return id
}

// edge returns the merged stats of an edge, creating them. key, when not
// nil, is the edge's key to keep (a live graph's keys never change), so no
// new one is made.
func (m *Merger) edge(src, dst uint32, sp, dp *mesh.Peer, protocol string, key *EdgeKey) *Stats {
	k := mergeKey{src, dst, protocol}
	if i, ok := m.edges[k]; ok {
		return m.t.order[i].stats
	}
	// Stats, histograms and room for a few statuses come from chunks: one
	// allocation each per 1,024 edges, recycled. A longer status list
	// reallocates instead of writing over the next edge's.
	if len(m.slab) == 0 {
		m.slab, m.hist, m.codes = m.mem.chunk(m.nl)
	}
	st := &m.slab[0]
	m.slab = m.slab[1:]
	st.Latency = m.hist[:m.nl:m.nl]
	m.hist = m.hist[m.nl:]
	st.Codes = m.codes[:0:slabCodes]
	m.codes = m.codes[slabCodes:]
	m.edges[k] = len(m.t.order)
	if key == nil {
		key = &EdgeKey{Source: *sp, Destination: *dp, Protocol: protocol}
	}
	m.t.order = append(m.t.order, trafficEdge{key: key, stats: st, src: src, dst: dst})
	return st
}

// slabCodes is the statuses an edge's merged list holds before it grows.
const slabCodes = 4

// Add merges traffic in.
func (m *Merger) Add(t *Traffic) {
	if t.Partial {
		m.t.Partial = true
	}
	m.size(t.edgeCount())
	if t.ordered {
		peer := m.livePeers(len(t.order))
		for i := range t.order {
			te := &t.order[i]
			k := te.key
			m.edge(peer(&k.Source, te.src), peer(&k.Destination, te.dst), &k.Source, &k.Destination, k.Protocol, k).Add(te.stats)
		}
		return
	}
	for k, st := range t.Edges {
		m.edge(m.peer(k.Source), m.peer(k.Destination), &k.Source, &k.Destination, k.Protocol, nil).Add(st)
	}
}

// size makes room for n edges when the merge is empty: the first traffic
// in sizes it (the others mostly share its edges), since growing the maps
// edge by edge rehashed them a dozen times.
func (m *Merger) size(n int) {
	if len(m.edges) != 0 || n <= 64 || cap(m.t.order) >= n {
		return
	}
	m.edges = make(map[mergeKey]int, n+n/4)
	m.t.order = make([]trafficEdge, 0, n+n/4)
	m.mem.edges, m.mem.order = m.edges, m.t.order
	if len(m.peers) == 0 {
		m.peers = make(map[mesh.Peer]uint32, n/2)
		m.mem.peers = m.peers
	}
}

// livePeers maps a live graph's peers to the merge's: its own peer ids say
// which peers are one without hashing them again.
func (m *Merger) livePeers(n int) func(p *mesh.Peer, id uint32) uint32 {
	ids := &m.mem.live
	ids.reset(2 * n) // a peer id is another Live's peer in the next traffic
	return func(p *mesh.Peer, id uint32) uint32 {
		if id == noPeer {
			return m.peer(*p)
		}
		v := ids.get(id) // the merge's id + 1
		if v == 0 {
			v = m.peer(*p) + 1
			ids.put(id, v)
		}
		return v - 1
	}
}

// AddSums merges a snapshot's sums in (Snapshot.Sums) and gives their
// memory back; sums must not be used after.
func (m *Merger) AddSums(sums *Sums) {
	if sums.listed != nil {
		m.Add(sums.listed)
		return
	}
	s, accs := sums.s, sums.accs
	sums.accs = nil
	defer s.accs.put(accs)
	m.size(sums.edges)
	peer := m.livePeers(sums.edges)
	for id := range accs {
		a := &accs[id]
		if a.requests == 0 {
			continue
		}
		e := s.edges[id]
		k := &e.key
		a.addTo(m.edge(peer(&k.Source, e.src), peer(&k.Destination, e.dst), &k.Source, &k.Destination, k.Protocol, k), s.flags)
	}
}

// AddWire merges traffic in its wire form.
func (m *Merger) AddWire(data []byte) error {
	r := wireReader{b: data}
	if len(data) < len(wireMagic) || string(data[:len(wireMagic)]) != wireMagic {
		return ErrWire
	}
	r.b = r.b[len(wireMagic):]
	r.varint() // end: the merge's own
	r.uvarint()
	if m.strs == nil {
		if m.mem.strs == nil {
			m.mem.strs = map[string]string{}
		}
		m.strs = m.mem.strs
	}
	// Strings repeat (namespaces, versions, one protocol on every edge):
	// each is made once per merge, not once per use.
	str := func() string {
		b := r.bytes()
		if s, ok := m.strs[string(b)]; ok {
			return s
		}
		s := string(b)
		m.strs[s] = s
		return s
	}
	flags := make([]string, r.count())
	for i := range flags {
		flags[i] = str()
	}
	n := r.count()
	if cap(m.mem.wire) < n {
		m.mem.wire, m.mem.wireIDs = make([]mesh.Peer, n+n/4), make([]uint32, n+n/4)
	}
	peerIDs, peers := m.mem.wireIDs[:n], m.mem.wire[:n]
	for i := range peers {
		peers[i] = mesh.Peer{Namespace: str(), Service: str(), Workload: str(), Version: str()}
		peerIDs[i] = m.peer(peers[i])
	}
	n = r.count()
	m.size(n)
	var st Stats
	for range n {
		src, dst := r.index(len(peers)), r.index(len(peers))
		proto := str()
		if r.err != nil {
			break
		}
		into := m.edge(peerIDs[src], peerIDs[dst], &peers[src], &peers[dst], proto, nil)
		st = Stats{Requests: r.uvarint(), Errors: r.uvarint(), MTLS: r.uvarint(), BytesIn: r.uvarint(), BytesOut: r.uvarint(), DurationSumUs: r.uvarint()}
		into.Requests += st.Requests
		into.Errors += st.Errors
		into.MTLS += st.MTLS
		into.BytesIn += st.BytesIn
		into.BytesOut += st.BytesOut
		into.DurationSumUs += st.DurationSumUs
		for range r.count() {
			code, grpc, cnt := r.uvarint(), r.varint(), r.uvarint()
			into.addCount(CodeKey{Code: uint16(code), GRPCStatus: int16(grpc)}, cnt)
		}
		for range r.count() {
			f, cnt := r.index(len(flags)), r.uvarint()
			if r.err != nil {
				break
			}
			if into.Flags == nil {
				into.Flags = map[string]uint64{}
			}
			into.Flags[flags[f]] += cnt
		}
		for range r.count() {
			b, cnt := r.index(m.nl), r.uvarint()
			if r.err != nil {
				break
			}
			into.Latency[b] += cnt
		}
	}
	if r.err != nil {
		return fmt.Errorf("%w: %v", ErrWire, r.err)
	}
	return nil
}

// SetPartial marks the merged traffic incomplete (a peer did not answer).
func (m *Merger) SetPartial() { m.t.Partial = true }

// Traffic is the merged traffic; the Merger must not be used after.
func (m *Merger) Traffic() *Traffic {
	t := m.t
	t.Edges = nil
	m.mem.order = t.order // grown or not, the list to reuse
	return t
}

// Listed returns t with its Edges map, as TrafficAt does.
func Listed(t *Traffic) *Traffic {
	if t.ordered && t.Edges == nil {
		t.Edges = t.lazy.get(t.order)
	}
	return t
}

type wireReader struct {
	b   []byte
	err error
}

var errShort = errors.New("truncated")

func (r *wireReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *wireReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a length, bounded by the bytes left (every item takes one).
func (r *wireReader) count() int {
	v := r.uvarint()
	if v > uint64(len(r.b)) {
		r.err = errShort
		return 0
	}
	return int(v)
}

// index reads an index below n.
func (r *wireReader) index(n int) int {
	v := r.uvarint()
	if v >= uint64(n) {
		if r.err == nil {
			r.err = fmt.Errorf("index %d out of range %d", v, n)
		}
		return 0
	}
	return int(v)
}

// bytes reads a string's bytes, which alias the data.
func (r *wireReader) bytes() []byte {
	n := r.count()
	if r.err != nil {
		return nil
	}
	b := r.b[:n:n]
	r.b = r.b[n:]
	return b
}
