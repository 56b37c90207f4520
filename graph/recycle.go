package graph

import (
	"github.com/meshlens/meshlens/internal/recycle"
	"github.com/meshlens/meshlens/mesh"
)

// The memory of a graph query is recycled, not left to the garbage
// collector: a cold query over 10,000 edges builds ~10 MB of graph, merge
// and answer, and memory new to the process costs a page fault per 4 KB on
// first touch (about 15 µs each on the benchmark's virtual machine: a 16 MB
// query spent ~60 ms in them while the heap grew). A graph's memory goes
// back to its Live's pool when its one reader is done with it (a merged
// graph, Graph.Release) or when the snapshot whose readers shared it is
// replaced (Snapshot.UseGraph); a graph handed out for keeps (Snapshot.Graph)
// is never recycled.

// graphMem is the memory of one graph, kept for the next one.
type graphMem struct {
	edges      []Edge // slab behind Graph.Edges; zeroed when put back
	codeMaps   []map[string]uint64
	grpcMaps   []map[string]uint64 // by edge index, kept when emptied
	flagMaps   []map[string]uint64
	nodes      []Node // slab behind Graph.Nodes
	wantNodes  int    // nodes the last graph had
	nodePtrs   []*Node
	edgePtrs   []*Edge
	byID       map[string]*Node
	adj        *adjacency
	json       []byte
	sortStart  []int32
	sortTmp    []*Edge
	edgeMap    map[[2]*Node]*Edge // the builder's, emptied after each build
	peerNodes  map[mesh.Peer]*Node
	byPeer     idTable[*Node]
	pool       *queryPool
	recyclable bool // set for graphs whose memory may go back
}

// queryPool recycles the memory of a Live's queries: window sums, graphs,
// merges and answers.
type queryPool struct {
	accPool
	graphs   recycle.List[*graphMem]
	mergers  recycle.List[*mergerMem]
	traffics recycle.List[*trafficMem]
	wires    recycle.List[*wireScratch]
}

// trafficMem is the memory of a snapshot's window sum (sumEdges): stats,
// histograms and status lists laid out in edge order, and the list.
type trafficMem struct {
	stats []Stats
	hist  []uint64
	codes []CodeCount
	order []trafficEdge
	pool  *queryPool
}

// trafficMem returns zeroed memory for the sums of n edges with ncodes
// statuses in all, recycled when the pool has enough. New memory has room
// for a sixteenth more edges, for a mesh that grows a little between
// queries; a sum kept for good wastes little of it.
func (p *queryPool) trafficMem(n, nl, ncodes int) *trafficMem {
	m, ok := p.traffics.Get()
	if !ok {
		m = &trafficMem{pool: p}
	}
	if cap(m.stats) < n || cap(m.hist) < n*nl {
		m.stats, m.hist = make([]Stats, n, n+n/16), make([]uint64, n*nl, (n+n/16)*nl)
	}
	if cap(m.codes) < ncodes {
		m.codes = make([]CodeCount, ncodes, ncodes+ncodes/16)
	}
	if cap(m.order) < n {
		m.order = make([]trafficEdge, 0, n+n/16)
	}
	m.stats, m.hist, m.codes, m.order = m.stats[:n], m.hist[:n*nl], m.codes[:ncodes], m.order[:0]
	return m
}

// put zeroes the memory and keeps it for the next sum.
func (m *trafficMem) put() {
	if m == nil || m.pool == nil {
		return
	}
	clear(m.stats[:cap(m.stats)])
	clear(m.hist[:cap(m.hist)])
	clear(m.codes[:cap(m.codes)])
	clear(m.order[:cap(m.order)])
	m.order = m.order[:0]
	m.pool.traffics.Put(m)
}

func (p *queryPool) graphMem() *graphMem {
	if p != nil {
		if m, ok := p.graphs.Get(); ok {
			return m
		}
	}
	return &graphMem{pool: p}
}

// put gives a graph's memory back, dropping every pointer into the graph
// it came from so nothing it referenced is kept alive by the pool.
func (m *graphMem) put() {
	if m == nil || m.pool == nil {
		return
	}
	clear(m.edges[:cap(m.edges)])
	m.edges = m.edges[:0]
	for _, cm := range [][]map[string]uint64{m.codeMaps, m.grpcMaps, m.flagMaps} {
		for _, mp := range cm {
			clear(mp)
		}
	}
	clear(m.nodes[:cap(m.nodes)])
	m.nodes = m.nodes[:0]
	clear(m.nodePtrs[:cap(m.nodePtrs)])
	m.nodePtrs = m.nodePtrs[:0]
	clear(m.edgePtrs[:cap(m.edgePtrs)])
	m.edgePtrs = m.edgePtrs[:0]
	clear(m.byID)
	clear(m.sortTmp[:cap(m.sortTmp)])
	m.json = m.json[:0]
	m.recyclable = false
	m.pool.graphs.Put(m)
}

// builderDone empties the builder's scratch maps for the next build, or
// drops them when there is no next build to keep them for.
func (m *graphMem) builderDone() {
	if m.pool == nil {
		m.edgeMap, m.peerNodes, m.byPeer = nil, nil, idTable[*Node]{}
		return
	}
	clear(m.edgeMap)
	clear(m.peerNodes)
	m.byPeer.reset(0)
}

// spareMap returns the kept map at index i of maps, emptied, or a new one
// kept there.
func spareMap(maps *[]map[string]uint64, i, size int) map[string]uint64 {
	for len(*maps) <= i {
		*maps = append(*maps, nil)
	}
	if mp := (*maps)[i]; mp != nil {
		return mp
	}
	mp := make(map[string]uint64, size)
	(*maps)[i] = mp
	return mp
}

// Release gives the memory of a graph built for one reader (from a merged
// or history traffic) back for the next graph. Only the graph's one holder
// may call it, once it is done: g must not be used after. It does nothing
// for graphs shared with other readers.
func (g *Graph) Release() {
	m := g.mem
	if m == nil || !m.recyclable || g.kept || g.cached || g.pins > 0 {
		return
	}
	g.mem = nil
	*g = Graph{}
	m.put()
}

// idTable maps peer ids (small and dense: a Live numbers its peers from
// 0, a merge too) to values through a slice, kept for the next query: a map
// lookup per edge end was a tenth of a merged query's CPU. Ids from limit
// up (a Live's counter runs on after its table is cleared) go through a
// map. The zero V means none.
type idTable[V comparable] struct {
	slots []V
	over  map[uint32]V
	limit uint32
}

// reset empties the table for ids below about limit.
func (t *idTable[V]) reset(limit int) {
	clear(t.slots)
	clear(t.over)
	t.limit = uint32(min(max(limit, 1024), 1<<24))
}

func (t *idTable[V]) get(id uint32) V {
	if id < t.limit {
		if int(id) < len(t.slots) {
			return t.slots[id]
		}
		var zero V
		return zero
	}
	return t.over[id]
}

func (t *idTable[V]) put(id uint32, v V) {
	if id >= t.limit {
		if t.over == nil {
			t.over = map[uint32]V{}
		}
		t.over[id] = v
		return
	}
	if int(id) >= len(t.slots) {
		n := max(int(id)+1, 2*len(t.slots))
		if n > int(t.limit) {
			n = int(t.limit)
		}
		if n <= cap(t.slots) {
			t.slots = t.slots[:n]
		} else {
			t.slots = append(t.slots, make([]V, n-len(t.slots))...)
		}
	}
	t.slots[id] = v
}
