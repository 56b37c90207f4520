package graph

import (
	"fmt"
	"sort"

	gonum "gonum.org/v1/gonum/graph"
	"gonum.org/v1/gonum/graph/path"
	"gonum.org/v1/gonum/graph/simple"
	"gonum.org/v1/gonum/graph/topo"
	"gonum.org/v1/gonum/graph/traverse"
)

// maxCycles bounds the cycles listed in a response.
const maxCycles = 100

// appendTopology builds the gonum graph and marks dependency cycles: the
// strongly connected components of more than one node, and self-calls.
func appendTopology(b *Builder) {
	g := b.Graph
	dg := simple.NewDirectedGraph()
	for i, n := range g.Nodes {
		n.gid = int64(i)
		dg.AddNode(simple.Node(n.gid))
	}
	var selfLoops []string
	for _, e := range g.Edges {
		s, t := e.src, e.dst
		if s == t {
			selfLoops = append(selfLoops, s.ID)
			continue // simple graphs have no self loops
		}
		dg.SetEdge(dg.NewEdge(simple.Node(s.gid), simple.Node(t.gid)))
	}
	g.g = dg
	g.byGID = append([]*Node(nil), g.Nodes...)
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
type reversed struct{ g *simple.DirectedGraph }

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
