package graph

import (
	"fmt"
	"slices"
	"sort"

	gonum "gonum.org/v1/gonum/graph"
	"gonum.org/v1/gonum/graph/iterator"
	"gonum.org/v1/gonum/graph/path"
	"gonum.org/v1/gonum/graph/simple"
	"gonum.org/v1/gonum/graph/topo"
	"gonum.org/v1/gonum/graph/traverse"
)

// maxCycles bounds the cycles listed in a response.
const maxCycles = 100

// appendTopology indexes the edges as a compact adjacency (see adjacency) and
// marks dependency cycles: the strongly connected components of more than
// one node, and self-calls.
func appendTopology(b *Builder) {
	g := b.Graph
	for i, n := range g.Nodes {
		n.gid = int64(i)
	}
	g.byGID = append([]*Node(nil), g.Nodes...)
	var selfLoops []string
	for _, e := range g.Edges {
		if e.src == e.dst {
			selfLoops = append(selfLoops, e.src.ID)
		}
	}
	var reuse *adjacency
	if g.mem != nil {
		reuse = g.mem.adj
	}
	dg := newAdjacency(len(g.Nodes), g.Edges, reuse)
	if g.mem != nil {
		g.mem.adj = dg
	}
	g.g = dg
	var cycles [][]string
	for _, scc := range topo.TarjanSCC(dg) {
		if len(scc) < 2 {
			continue
		}
		ids := make([]string, len(scc))
		for i, n := range scc {
			nd := g.byGID[n.ID()]
			nd.InCycle = true
			ids[i] = nd.ID
		}
		sort.Strings(ids)
		cycles = append(cycles, ids)
	}
	for _, id := range selfLoops {
		g.byID[id].InCycle = true
		cycles = append(cycles, []string{id})
	}
	sort.Slice(cycles, func(i, j int) bool { return cycles[i][0] < cycles[j][0] })
	if len(cycles) > maxCycles {
		cycles = cycles[:maxCycles]
	}
	g.Cycles = cycles
}

// adjacency is a read-only directed graph over node ids 0..n-1 in compressed
// sparse rows, for gonum's algorithms. A simple.DirectedGraph keeps a map per
// node and a map entry per edge, and building one cost more than the rest of
// a query; this is four slices built in two passes. Self loops are left out,
// as a simple graph leaves them out.
type adjacency struct {
	nodes   []gonum.Node // boxed once: iterators hand out these values
	out, in []int32      // row starts, len(nodes)+1
	succ    []gonum.Node // successors of node i: succ[out[i]:out[i+1]], ascending
	pred    []gonum.Node
	succIDs []int64 // ids of succ, for Edge lookups

	nextOut, nextIn []int32 // scratch of newAdjacency
}

// resized is s with length n and every element zero, reusing its array
// when it is large enough.
func resized[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// newAdjacency indexes edges between n nodes, in the slices of reuse
// (an adjacency of a graph no longer used) when it has one.
func newAdjacency(n int, edges []*Edge, reuse *adjacency) *adjacency {
	a := reuse
	if a == nil {
		a = &adjacency{}
	}
	// Boxed nodes stay valid: node i is always simple.Node(i).
	for i := len(a.nodes); i < n; i++ {
		a.nodes = append(a.nodes, simple.Node(i))
	}
	a.nodes = a.nodes[:n]
	a.out, a.in = resized(a.out, n+1), resized(a.in, n+1)
	m := 0
	for _, e := range edges {
		if e.src != e.dst {
			a.out[e.src.gid+1]++
			a.in[e.dst.gid+1]++
			m++
		}
	}
	for i := 0; i < n; i++ {
		a.out[i+1] += a.out[i]
		a.in[i+1] += a.in[i]
	}
	a.succ, a.pred, a.succIDs = resized(a.succ, m), resized(a.pred, m), resized(a.succIDs, m)
	a.nextOut = append(a.nextOut[:0], a.out[:n]...)
	a.nextIn = append(a.nextIn[:0], a.in[:n]...)
	nextOut, nextIn := a.nextOut, a.nextIn
	for _, e := range edges {
		s, t := e.src.gid, e.dst.gid
		if s == t {
			continue
		}
		a.succIDs[nextOut[s]] = t
		nextOut[s]++
		a.pred[nextIn[t]] = a.nodes[s]
		nextIn[t]++
	}
	for i := 0; i < n; i++ {
		row := a.succIDs[a.out[i]:a.out[i+1]]
		slices.Sort(row)
		for j, id := range row {
			a.succ[int(a.out[i])+j] = a.nodes[id]
		}
	}
	return a
}

func (a *adjacency) valid(id int64) bool { return id >= 0 && id < int64(len(a.nodes)) }

func (a *adjacency) Node(id int64) gonum.Node {
	if !a.valid(id) {
		return nil
	}
	return a.nodes[id]
}

func (a *adjacency) Nodes() gonum.Nodes { return iterator.NewOrderedNodes(a.nodes) }

func (a *adjacency) From(id int64) gonum.Nodes {
	if !a.valid(id) || a.out[id] == a.out[id+1] {
		return gonum.Empty
	}
	return iterator.NewOrderedNodes(a.succ[a.out[id]:a.out[id+1]])
}

func (a *adjacency) To(id int64) gonum.Nodes {
	if !a.valid(id) || a.in[id] == a.in[id+1] {
		return gonum.Empty
	}
	return iterator.NewOrderedNodes(a.pred[a.in[id]:a.in[id+1]])
}

func (a *adjacency) HasEdgeFromTo(uid, vid int64) bool {
	if !a.valid(uid) {
		return false
	}
	_, ok := slices.BinarySearch(a.succIDs[a.out[uid]:a.out[uid+1]], vid)
	return ok
}

func (a *adjacency) HasEdgeBetween(xid, yid int64) bool {
	return a.HasEdgeFromTo(xid, yid) || a.HasEdgeFromTo(yid, xid)
}

func (a *adjacency) Edge(uid, vid int64) gonum.Edge {
	if !a.HasEdgeFromTo(uid, vid) {
		return nil
	}
	return simple.Edge{F: a.nodes[uid], T: a.nodes[vid]}
}

// Impact is what depends on a node and what it depends on.
type Impact struct {
	Node string `json:"node"`
	// Callers call the node directly; AffectedCallers reach it through any
	// path: the blast radius if the node fails.
	Callers         []string `json:"callers"`
	AffectedCallers []string `json:"affectedCallers"`
	BlastRadius     int      `json:"blastRadius"`
	// UpstreamDepth is the longest shortest path from an affected caller.
	UpstreamDepth int `json:"upstreamDepth"`
	// Dependencies are reachable from the node; DependencyDepth is the
	// longest shortest path to one of them.
	Dependencies    []string `json:"dependencies"`
	DependencyDepth int      `json:"dependencyDepth"`
	InCycle         bool     `json:"inCycle"`
}

// ErrNoNode is returned for a node id not in the graph.
var ErrNoNode = fmt.Errorf("no such node")

// Impact computes the blast radius and dependency depth of a node by
// breadth-first walks up (callers) and down (dependencies) the graph.
func (g *Graph) Impact(id string) (Impact, error) {
	n := g.byID[id]
	if n == nil || g.g == nil {
		return Impact{}, fmt.Errorf("%w: %q", ErrNoNode, id)
	}
	imp := Impact{Node: id, InCycle: n.InCycle, Callers: []string{}}
	down, depth := g.walk(g.g, n)
	imp.Dependencies, imp.DependencyDepth = down, depth
	up, udepth := g.walk(reversed{g.g}, n)
	imp.AffectedCallers, imp.UpstreamDepth, imp.BlastRadius = up, udepth, len(up)
	to := g.g.To(n.gid)
	for to.Next() {
		imp.Callers = append(imp.Callers, g.byGID[to.Node().ID()].ID)
	}
	sort.Strings(imp.Callers)
	return imp, nil
}

func (g *Graph) walk(tg traverse.Graph, from *Node) ([]string, int) {
	var bf traverse.BreadthFirst
	ids := []string{}
	depth := 0
	bf.Walk(tg, simple.Node(from.gid), func(n gonum.Node, d int) bool {
		if n.ID() != from.gid {
			ids = append(ids, g.byGID[n.ID()].ID)
			if d > depth {
				depth = d
			}
		}
		return false
	})
	sort.Strings(ids)
	return ids, depth
}

// reversed walks a directed graph against its edges.
type reversed struct{ g *adjacency }

func (r reversed) From(id int64) gonum.Nodes { return r.g.To(id) }
func (r reversed) Edge(uid, vid int64) gonum.Edge {
	e := r.g.Edge(vid, uid)
	if e == nil {
		return nil
	}
	return e.ReversedEdge()
}

// Path returns the shortest call path (fewest hops) from one node to another,
// nil when there is none.
func (g *Graph) Path(from, to string) ([]string, error) {
	a, b := g.byID[from], g.byID[to]
	if a == nil || g.g == nil {
		return nil, fmt.Errorf("%w: %q", ErrNoNode, from)
	}
	if b == nil {
		return nil, fmt.Errorf("%w: %q", ErrNoNode, to)
	}
	sp := path.DijkstraFrom(simple.Node(a.gid), g.g)
	nodes, _ := sp.To(b.gid)
	if len(nodes) == 0 {
		return nil, nil
	}
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = g.byGID[n.ID()].ID
	}
	return out, nil
}
