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
	peers := map[mesh.Peer]uint64{}
	var peerList []mesh.Peer
	byID := map[uint32]uint64{}
	peerOf := func(p *mesh.Peer, id uint32) uint64 {
		if id != noPeer {
			if i, ok := byID[id]; ok {
				return i
			}
		}
		i, ok := peers[*p]
		if !ok {
			i = uint64(len(peerList))
			peers[*p] = i
			peerList = append(peerList, *p)
		}
		if id != noPeer {
			byID[id] = i
		}
		return i
	}
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
			edges = append(edges, wireEdge{peerOf(&te.key.Source, te.src), peerOf(&te.key.Destination, te.dst), te.key, te.stats})
		}
	} else {
		edges = make([]wireEdge, 0, len(t.Edges))
		for k, st := range t.Edges {
			k := k
			edges = append(edges, wireEdge{peerOf(&k.Source, noPeer), peerOf(&k.Destination, noPeer), &k, st})
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
	buf = binary.AppendUvarint(buf, uint64(len(peerList)))
	for _, p := range peerList {
		buf = appendString(buf, p.Namespace)
		buf = appendString(buf, p.Service)
		buf = appendString(buf, p.Workload)
		buf = appendString(buf, p.Version)
	}
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
}

type mergeKey struct {
	src, dst uint32
	protocol string
}

// NewMerger starts an empty merge of the window ending at end.
func NewMerger(end time.Time, window time.Duration, sizeHint int) *Merger {
	return &Merger{
		t:     &Traffic{End: end, Window: window, ordered: true, lazy: &lazyEdges{}, order: make([]trafficEdge, 0, sizeHint)},
		peers: make(map[mesh.Peer]uint32, sizeHint/2),
		edges: make(map[mergeKey]int, sizeHint),
		nl:    len(mesh.LatencyBucketsMs) + 1,
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
	// Stats and histograms come from slabs: one allocation per 1,024 edges.
	if len(m.slab) == 0 {
		m.slab = make([]Stats, 1024)
		m.hist = make([]uint64, 1024*m.nl)
	}
	st := &m.slab[0]
	m.slab = m.slab[1:]
	st.Latency = m.hist[:m.nl:m.nl]
	m.hist = m.hist[m.nl:]
	m.edges[k] = len(m.t.order)
	if key == nil {
		key = &EdgeKey{Source: *sp, Destination: *dp, Protocol: protocol}
	}
	m.t.order = append(m.t.order, trafficEdge{key: key, stats: st, src: src, dst: dst})
	return st
}

// Add merges traffic in.
func (m *Merger) Add(t *Traffic) {
	if t.Partial {
		m.t.Partial = true
	}
	if n := t.edgeCount(); len(m.edges) == 0 && n > 64 && cap(m.t.order) < n {
		// The first traffic in sizes the merge (the others mostly share its
		// edges): growing the maps edge by edge rehashed them a dozen times.
		m.edges = make(map[mergeKey]int, n+n/4)
		m.t.order = make([]trafficEdge, 0, n+n/4)
		if len(m.peers) == 0 {
			m.peers = make(map[mesh.Peer]uint32, n/2)
		}
	}
	if t.ordered {
		// The live graph's own peer ids say which peers are one without
		// hashing them again.
		ids := make(map[uint32]uint32, len(t.order)/4)
		peer := func(p *mesh.Peer, id uint32) uint32 {
			if id == noPeer {
				return m.peer(*p)
			}
			v, ok := ids[id]
			if !ok {
				v = m.peer(*p)
				ids[id] = v
			}
			return v
		}
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

// AddWire merges traffic in its wire form.
func (m *Merger) AddWire(data []byte) error {
	r := wireReader{b: data}
	if len(data) < len(wireMagic) || string(data[:len(wireMagic)]) != wireMagic {
		return ErrWire
	}
	r.b = r.b[len(wireMagic):]
	r.varint() // end: the merge's own
	r.uvarint()
	flags := make([]string, r.count())
	for i := range flags {
		flags[i] = r.string()
	}
	n := r.count()
	peerIDs := make([]uint32, n)
	peers := make([]mesh.Peer, n)
	for i := range peers {
		peers[i] = mesh.Peer{Namespace: r.string(), Service: r.string(), Workload: r.string(), Version: r.string()}
		peerIDs[i] = m.peer(peers[i])
	}
	n = r.count()
	if len(m.edges) == 0 && n > 64 {
		m.edges = make(map[mergeKey]int, n+n/4) // sized as Add sizes it
		m.t.order = make([]trafficEdge, 0, n+n/4)
	}
	var st Stats
	for range n {
		src, dst := r.index(len(peers)), r.index(len(peers))
		proto := r.string()
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

func (r *wireReader) string() string {
	n := r.count()
	if r.err != nil {
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}
