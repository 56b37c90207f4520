package graph

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/meshlens/meshlens/mesh"
)

// View says what a node is.
type View string

const (
	ViewService  View = "service"  // one node per namespace/service
	ViewVersion  View = "version"  // one node per namespace/service/version
	ViewWorkload View = "workload" // one node per namespace/workload
)

// ParseView parses a view name.
func ParseView(s string) (View, error) {
	switch v := View(s); v {
	case ViewService, ViewVersion, ViewWorkload:
		return v, nil
	}
	return "", fmt.Errorf("view %q: want service, version or workload", s)
}

// Options shape a graph.
type Options struct {
	View      View
	Namespace string // when set, keep edges with either end in it
	MaxNodes  int    // keep the busiest nodes; 0 means 5,000
	MaxEdges  int    // keep the busiest edges; 0 means 20,000
	Source    string // recorded in the output: live, clickhouse, prometheus
	Now       time.Time
}

// Node is a vertex of the graph.
type Node struct {
	ID        string `json:"id"`
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	Version   string `json:"version"`
	Workload  string `json:"workload"`
	Unknown   bool   `json:"unknown,omitempty"`

	// Inbound traffic.
	Requests  uint64  `json:"requests"`
	RPS       float64 `json:"rps"`
	ErrorRate float64 `json:"errorRate"`
	Health    string  `json:"health"` // healthy, degraded, failing, idle
	InCycle   bool    `json:"inCycle,omitempty"`

	gid                int64
	inRequests, inErrs uint64
	weight             uint64 // inbound + outbound requests, for the node cap
	rank               int    // position in the sorted node list
}

// Edge is a directed edge between two nodes.
type Edge struct {
	Source    string            `json:"source"`
	Target    string            `json:"target"`
	Protocol  string            `json:"protocol"`
	Requests  uint64            `json:"requests"`
	Errors    uint64            `json:"errors"`
	RPS       float64           `json:"rps"`
	ErrorRate float64           `json:"errorRate"`
	P50Ms     float64           `json:"p50Ms"`
	P90Ms     float64           `json:"p90Ms"`
	P99Ms     float64           `json:"p99Ms"`
	AvgMs     float64           `json:"avgMs"`
	Codes     map[string]uint64 `json:"codes"`
	GRPC      map[string]uint64 `json:"grpc,omitempty"`
	Flags     map[string]uint64 `json:"flags,omitempty"`
	MTLS      float64           `json:"mtls"` // share of requests over mTLS, 0..1
	BytesIn   uint64            `json:"bytesIn"`
	BytesOut  uint64            `json:"bytesOut"`
	Health    string            `json:"health"` // as a node's, from this edge's error rate

	stats     *Stats // the source's own Stats until a second edge merges in
	owned     bool
	protocols map[string]uint64
	src, dst  *Node
}

// Graph is the answer to a graph query, the same for every source.
type Graph struct {
	View          View       `json:"view"`
	Namespace     string     `json:"namespace,omitempty"`
	Source        string     `json:"source"`
	Window        string     `json:"window"`
	WindowSeconds float64    `json:"windowSeconds"`
	End           time.Time  `json:"end"`
	Generated     time.Time  `json:"generated"`
	Nodes         []*Node    `json:"nodes"`
	Edges         []*Edge    `json:"edges"`
	Cycles        [][]string `json:"cycles,omitempty"`
	// Truncated says the node or edge cap dropped the quietest parts;
	// Partial says the source itself left traffic out.
	Truncated bool `json:"truncated,omitempty"`
	Partial   bool `json:"partial,omitempty"`
	// Missing names the meshlens replicas whose live traffic a merged graph
	// lacks (they did not answer in time); Partial is set with it.
	Missing []MissingReplica `json:"missing,omitempty"`

	byID  map[string]*Node
	byGID []*Node // by gonum node id
	g     *adjacency
	enc   encoded   // JSON, once
	mem   *graphMem // this graph's memory, recycled (see recycle.go)
	// Of a graph shared in a snapshot's cache (under its cacheMu): the
	// UseGraph calls running, whether a Graph call handed it out for good,
	// and whether the cache still holds it.
	pins         int
	kept, cached bool
	from         *trafficShare // the snapshot's traffic it was built from
}

// MissingReplica is a meshlens replica left out of a merged live read, and why.
type MissingReplica struct {
	Replica string `json:"replica"`
	Error   string `json:"error"`
}

// Appender is one step of graph building, adding one kind of information.
// Steps run in order over the same builder (Kiali's appender pipeline).
type Appender struct {
	Name   string
	Append func(b *Builder)
}

// Builder is the state the appenders share.
type Builder struct {
	Traffic  *Traffic
	Opts     Options
	Graph    *Graph
	edges    map[[2]*Node]*Edge
	nodes    map[mesh.Peer]*Node // peers reduced to the view's grain
	slab     []Edge              // backs Graph.Edges: one allocation, not one per edge
	byPeer   *idTable[*Node]     // by peer id, when the traffic has them
	nodeSlab []Node
	mem      *graphMem
}

// DefaultAppenders are the steps Build runs, in order.
func DefaultAppenders() []Appender {
	return []Appender{
		{"traffic", appendTraffic},
		{"limit", appendLimit},
		{"responseTime", appendResponseTime},
		{"security", appendSecurity},
		{"health", appendHealth},
		{"topology", appendTopology},
	}
}

// Build turns traffic into a graph for the view with the default appenders.
func Build(t *Traffic, opts Options) *Graph {
	return BuildWith(t, opts, DefaultAppenders())
}

// BuildWith runs the given appenders.
func BuildWith(t *Traffic, opts Options, steps []Appender) *Graph {
	if opts.View == "" {
		opts.View = ViewService
	}
	if opts.MaxNodes <= 0 {
		opts.MaxNodes = 5000
	}
	if opts.MaxEdges <= 0 {
		opts.MaxEdges = 20000
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	// The maps, slabs and lists come from the memory of an earlier graph
	// when the traffic's Live has one to give (see recycle.go).
	mem := t.pool.graphMem()
	n := t.edgeCount()
	if mem.edgeMap == nil {
		mem.edgeMap = make(map[[2]*Node]*Edge, n)
		mem.peerNodes = map[mesh.Peer]*Node{}
		mem.byID = make(map[string]*Node, max(mem.wantNodes, n/2))
	}
	if cap(mem.nodes) < mem.wantNodes {
		mem.nodes = make([]Node, 0, mem.wantNodes+mem.wantNodes/16)
	}
	b := &Builder{Traffic: t, Opts: opts, edges: mem.edgeMap, nodes: mem.peerNodes, nodeSlab: mem.nodes, mem: mem, Graph: &Graph{
		View: opts.View, Namespace: opts.Namespace, Source: opts.Source,
		Window: t.Window.String(), WindowSeconds: t.Window.Seconds(),
		End: t.End.UTC(), Generated: opts.Now.UTC(), Partial: t.Partial,
		byID: mem.byID, Nodes: mem.nodePtrs[:0], Edges: mem.edgePtrs[:0], mem: mem,
	}}
	for _, s := range steps {
		s.Append(b)
	}
	g := b.Graph
	mem.builderDone()
	mem.nodePtrs, mem.edgePtrs, mem.wantNodes = g.Nodes, g.Edges, len(g.Nodes)
	mem.recyclable = true
	slices.SortFunc(g.Nodes, func(a, b *Node) int { return strings.Compare(a.ID, b.ID) })
	for i, n := range g.Nodes {
		n.rank = i
	}
	sortEdges(g)
	if g.Nodes == nil {
		g.Nodes = []*Node{}
	}
	if g.Edges == nil {
		g.Edges = []*Edge{}
	}
	return g
}

// sortEdges orders edges by their nodes' ranks: the order of (source,
// target) ids. A counting sort on the source rank does most of the work in
// one pass; each source's few edges are then sorted by target rank.
func sortEdges(g *Graph) {
	byRank := func(a, b *Edge) int {
		if a.src.rank != b.src.rank {
			return a.src.rank - b.src.rank
		}
		return a.dst.rank - b.dst.rank
	}
	n := len(g.Nodes)
	start := make([]int32, n+1)
	if m := g.mem; m != nil {
		if cap(m.sortStart) < n+1 {
			m.sortStart = make([]int32, n+1+n/16)
		}
		start = m.sortStart[:n+1]
		clear(start)
	}
	for _, e := range g.Edges {
		r := e.src.rank
		if r >= n || g.Nodes[r] != e.src || e.dst.rank >= n || g.Nodes[e.dst.rank] != e.dst {
			// An appender left an edge whose node is not in the graph, so
			// ranks do not identify nodes: compare them as they are.
			slices.SortFunc(g.Edges, byRank)
			return
		}
		start[r+1]++
	}
	for i := 0; i < n; i++ {
		start[i+1] += start[i]
	}
	var sorted []*Edge
	if m := g.mem; m != nil {
		if cap(m.sortTmp) < len(g.Edges) {
			m.sortTmp = make([]*Edge, len(g.Edges)+len(g.Edges)/16)
		}
		sorted = m.sortTmp[:len(g.Edges)]
	} else {
		sorted = make([]*Edge, len(g.Edges))
	}
	for _, e := range g.Edges {
		sorted[start[e.src.rank]] = e
		start[e.src.rank]++
	}
	// start[i] is now the end of source i's edges.
	from := int32(0)
	for i := 0; i < n; i++ {
		if row := sorted[from:start[i]]; len(row) > 1 {
			slices.SortFunc(row, byRank)
		}
		from = start[i]
	}
	copy(g.Edges, sorted)
}

// NodeOf maps a peer to its node in a view.
func NodeOf(v View, p mesh.Peer) Node {
	p = p.OrUnknown()
	if p.Service == mesh.Unknown && p.Workload == "" {
		return Node{ID: mesh.Unknown, Service: mesh.Unknown, Unknown: true}
	}
	switch v {
	case ViewVersion:
		return Node{ID: p.Namespace + "/" + p.Service + "/" + p.Version, Namespace: p.Namespace, Service: p.Service, Version: p.Version}
	case ViewWorkload:
		wl := p.Workload
		if wl == "" {
			wl = p.Service
		}
		return Node{ID: p.Namespace + "/" + wl, Namespace: p.Namespace, Service: p.Service, Version: p.Version, Workload: p.Workload}
	default:
		return Node{ID: p.Namespace + "/" + p.Service, Namespace: p.Namespace, Service: p.Service}
	}
}

// grain reduces a peer to the fields that identify its node in a view, so
// nodes are found without building their id strings.
func grain(v View, p mesh.Peer) mesh.Peer {
	switch v {
	case ViewVersion:
		p.Workload = ""
	case ViewWorkload:
		if p.Workload != "" {
			p.Service, p.Version = "", ""
		}
	default:
		p.Workload, p.Version = "", ""
	}
	return p
}

func (b *Builder) node(v View, p mesh.Peer) *Node {
	k := grain(v, p)
	if n := b.nodes[k]; n != nil {
		return n
	}
	n := b.nodeByID(v, p)
	b.nodes[k] = n
	return n
}

// nodeByID finds or adds the node of p by its id. Nodes come from a slab:
// chunks growing to 256 nodes, not an allocation each.
func (b *Builder) nodeByID(v View, p mesh.Peer) *Node {
	n := NodeOf(v, p)
	if got := b.Graph.byID[n.ID]; got != nil {
		if got.Version != n.Version {
			// Peers of several versions under one node (the workload view of
			// callees known by service only) name none: the first one met
			// would depend on the order edges come in, which differs between
			// a replica's own graph and a merged one.
			got.Version = ""
		}
		return got
	}
	if len(b.nodeSlab) == cap(b.nodeSlab) {
		b.nodeSlab = make([]Node, 0, max(8, min(256, 2*cap(b.nodeSlab))))
	}
	b.nodeSlab = append(b.nodeSlab, n)
	nn := &b.nodeSlab[len(b.nodeSlab)-1]
	b.Graph.byID[n.ID] = nn
	b.Graph.Nodes = append(b.Graph.Nodes, nn)
	return nn
}

// addEdge adds the traffic of one edge key to its nodes and view edge.
func (b *Builder) addEdge(k *EdgeKey, st *Stats, srcPeer, dstPeer uint32) {
	if st.Requests == 0 {
		return
	}
	if ns := b.Opts.Namespace; ns != "" && k.Source.Namespace != ns && k.Destination.Namespace != ns {
		return
	}
	src, dst := b.peerNode(srcPeer, &k.Source), b.peerNode(dstPeer, &k.Destination)
	dst.inRequests += st.Requests
	dst.inErrs += st.Errors
	src.weight += st.Requests
	dst.weight += st.Requests
	id := [2]*Node{src, dst}
	e := b.edges[id]
	if e == nil {
		// Borrow the source's stats; copy only when a second edge merges in.
		if len(b.slab) == cap(b.slab) {
			b.slab = make([]Edge, 0, 64) // a caller added edges to the traffic after sizing
		}
		b.slab = append(b.slab, Edge{Source: src.ID, Target: dst.ID, stats: st, src: src, dst: dst, Protocol: k.Protocol})
		e = &b.slab[len(b.slab)-1]
		b.edges[id] = e
		b.Graph.Edges = append(b.Graph.Edges, e)
		return
	}
	if !e.owned {
		own := NewStats()
		own.Add(e.stats)
		e.stats, e.owned = own, true
		e.protocols = map[string]uint64{e.Protocol: e.stats.Requests}
	}
	e.stats.Add(st)
	e.protocols[k.Protocol] += st.Requests
}

// peerNode is node, found by the peer's id when it has one.
func (b *Builder) peerNode(id uint32, p *mesh.Peer) *Node {
	if id == noPeer || b.byPeer == nil {
		return b.node(b.Opts.View, *p)
	}
	if n := b.byPeer.get(id); n != nil {
		return n
	}
	// One id is one peer: its grain needs no lookup of its own.
	n := b.nodeByID(b.Opts.View, *p)
	b.byPeer.put(id, n)
	return n
}

// appendTraffic aggregates edge keys into the view's nodes and edges: counts,
// codes, bytes, rates.
func appendTraffic(b *Builder) {
	secs := b.Traffic.Window.Seconds()
	t := b.Traffic
	if m := b.mem; m != nil && cap(m.edges) >= t.edgeCount() {
		b.slab = m.edges[:0]
	} else {
		b.slab = make([]Edge, 0, t.edgeCount())
		if m != nil {
			m.edges = b.slab // for the next graph
		}
	}
	if t.ordered {
		if m := b.mem; m != nil {
			b.byPeer = &m.byPeer
		} else {
			b.byPeer = &idTable[*Node]{}
		}
		b.byPeer.reset(2 * len(t.order))
		for i := range t.order {
			te := &t.order[i]
			b.addEdge(te.key, te.stats, te.src, te.dst)
		}
	} else {
		for k, st := range t.Edges {
			b.addEdge(&k, st, noPeer, noPeer)
		}
	}
	m := b.mem
	if m == nil {
		m = &graphMem{}
	}
	if n := len(b.Graph.Edges); cap(m.codeMaps) < n {
		m.codeMaps = append(make([]map[string]uint64, 0, n), m.codeMaps...)
	}
	for i, e := range b.Graph.Edges {
		st := e.stats
		e.Requests, e.Errors, e.ErrorRate = st.Requests, st.Errors, st.ErrorRate()
		if secs > 0 {
			e.RPS = float64(st.Requests) / secs
		}
		e.BytesIn, e.BytesOut = st.BytesIn, st.BytesOut
		// The maps of the graph before, emptied (10,000 small maps were a
		// fifth of a cold query's garbage).
		e.Codes = spareMap(&m.codeMaps, i, len(st.Codes))
		for _, c := range st.Codes {
			e.Codes[codeString(c.Code)] += c.N
			if c.GRPCStatus >= 0 {
				if e.GRPC == nil {
					e.GRPC = spareMap(&m.grpcMaps, i, 1)
				}
				e.GRPC[strconv.Itoa(int(c.GRPCStatus))] += c.N
			}
		}
		if len(st.Flags) > 0 {
			e.Flags = spareMap(&m.flagMaps, i, len(st.Flags))
			for f, n := range st.Flags {
				e.Flags[f] = n
			}
		}
		var best uint64
		for p, n := range e.protocols {
			if n > best || (n == best && p < e.Protocol) {
				e.Protocol, best = p, n
			}
		}
	}
}

// appendLimit keeps the busiest MaxNodes nodes and MaxEdges edges, so a
// response stays bounded on any mesh.
func appendLimit(b *Builder) {
	g := b.Graph
	if len(g.Nodes) > b.Opts.MaxNodes {
		sort.Slice(g.Nodes, func(i, j int) bool {
			if g.Nodes[i].weight != g.Nodes[j].weight {
				return g.Nodes[i].weight > g.Nodes[j].weight
			}
			return g.Nodes[i].ID < g.Nodes[j].ID
		})
		for _, n := range g.Nodes[b.Opts.MaxNodes:] {
			delete(g.byID, n.ID)
		}
		g.Nodes = g.Nodes[:b.Opts.MaxNodes]
		kept := g.Edges[:0]
		for _, e := range g.Edges {
			if g.byID[e.Source] != nil && g.byID[e.Target] != nil {
				kept = append(kept, e)
			}
		}
		g.Edges = kept
		g.Truncated = true
	}
	if len(g.Edges) > b.Opts.MaxEdges {
		sort.Slice(g.Edges, func(i, j int) bool { return g.Edges[i].Requests > g.Edges[j].Requests })
		g.Edges = g.Edges[:b.Opts.MaxEdges]
		g.Truncated = true
	}
}

// appendResponseTime adds latency percentiles from the merged histograms.
func appendResponseTime(b *Builder) {
	for _, e := range b.Graph.Edges {
		e.P50Ms = round3(finite(e.stats.Quantile(0.5)))
		e.P90Ms = round3(finite(e.stats.Quantile(0.9)))
		e.P99Ms = round3(finite(e.stats.Quantile(0.99)))
		if e.stats.Requests > 0 {
			e.AvgMs = round3(float64(e.stats.DurationSumUs) / 1000 / float64(e.stats.Requests))
		}
	}
}

// appendSecurity adds the mTLS share of each edge.
func appendSecurity(b *Builder) {
	for _, e := range b.Graph.Edges {
		e.MTLS = e.stats.MTLSShare()
	}
}

// Health thresholds on a node's inbound error rate.
const (
	degradedErrorRate = 0.01
	failingErrorRate  = 0.10
)

// health classifies traffic by its error rate. The UI shows it as given:
// these thresholds are the only ones.
func health(requests uint64, errorRate float64) string {
	switch {
	case requests == 0:
		return "idle"
	case errorRate >= failingErrorRate:
		return "failing"
	case errorRate >= degradedErrorRate:
		return "degraded"
	}
	return "healthy"
}

// appendHealth adds each node's inbound rate, error rate and health, and
// each edge's health.
func appendHealth(b *Builder) {
	secs := b.Traffic.Window.Seconds()
	for _, n := range b.Graph.Nodes {
		n.Requests = n.inRequests
		if secs > 0 {
			n.RPS = float64(n.inRequests) / secs
		}
		if n.inRequests > 0 {
			n.ErrorRate = float64(n.inErrs) / float64(n.inRequests)
		}
		n.Health = health(n.inRequests, n.ErrorRate)
	}
	for _, e := range b.Graph.Edges {
		e.Health = health(e.Requests, e.ErrorRate)
	}
}

// codeString formats an HTTP status without allocating for the common ones.
func codeString(c uint16) string {
	switch c {
	case 200:
		return "200"
	case 0:
		return "0"
	case 404:
		return "404"
	case 500:
		return "500"
	case 503:
		return "503"
	}
	return strconv.Itoa(int(c))
}

func round3(v float64) float64 {
	return float64(int64(v*1000+0.5)) / 1000
}
