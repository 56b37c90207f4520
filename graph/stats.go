package graph

import (
	"math"
	"sync"
	"time"

	"github.com/meshlens/meshlens/mesh"
)

// EdgeKey identifies one directed edge at the finest grain every source can
// give: full source and destination peers (namespace, service, workload,
// version) and the protocol. Views aggregate edge keys into coarser nodes.
type EdgeKey struct {
	Source      mesh.Peer
	Destination mesh.Peer
	Protocol    string
}

// CodeKey is an HTTP status and gRPC status pair, the grain at which the
// ClickHouse rollups and Istio's istio_requests_total count responses.
type CodeKey struct {
	Code       uint16
	GRPCStatus int16 // -1 when not gRPC
}

// Stats are the counters of some traffic over a window: one edge, a node's
// inbound traffic, or a version's. The latency histogram has one count per
// bucket of mesh.LatencyBucketsMs plus +Inf, not cumulative.
type Stats struct {
	Requests      uint64
	Errors        uint64
	MTLS          uint64 // requests over a mutually authenticated connection
	BytesIn       uint64
	BytesOut      uint64
	DurationSumUs uint64
	Codes         []CodeCount // by status; a handful per edge, so a slice beats a map

	Flags   map[string]uint64 // Envoy response flags other than "-"; empty for sources without them
	Latency []uint64
}

// CodeCount is a number of responses with one status.
type CodeCount struct {
	CodeKey
	N uint64
}

// NewStats returns empty stats with the histogram allocated.
func NewStats() *Stats {
	return &Stats{Latency: make([]uint64, len(mesh.LatencyBucketsMs)+1)}
}

// Code returns the count of responses with status k.
func (s *Stats) Code(k CodeKey) uint64 {
	for _, c := range s.Codes {
		if c.CodeKey == k {
			return c.N
		}
	}
	return 0
}

func (s *Stats) addCount(k CodeKey, n uint64) {
	for i := range s.Codes {
		if s.Codes[i].CodeKey == k {
			s.Codes[i].N += n
			return
		}
	}
	s.Codes = append(s.Codes, CodeCount{k, n})
}

// IsError says whether a response counts as an error. It is the one
// definition, mesh.Record.IsError, applied to the fields every source keeps.
func IsError(protocol string, code uint16, grpcStatus int16) bool {
	r := mesh.Record{Protocol: protocol, Code: code, GRPCStatus: grpcStatus}
	return r.IsError()
}

// AddCode counts n responses with the given status; the error count follows.
func (s *Stats) AddCode(protocol string, k CodeKey, n uint64) {
	if n == 0 {
		return
	}
	s.Requests += n
	s.addCount(k, n)
	if IsError(protocol, k.Code, k.GRPCStatus) {
		s.Errors += n
	}
}

// Add adds o into s.
func (s *Stats) Add(o *Stats) {
	s.Requests += o.Requests
	s.Errors += o.Errors
	s.MTLS += o.MTLS
	s.BytesIn += o.BytesIn
	s.BytesOut += o.BytesOut
	s.DurationSumUs += o.DurationSumUs
	for _, c := range o.Codes {
		s.addCount(c.CodeKey, c.N)
	}
	for f, n := range o.Flags {
		if s.Flags == nil {
			s.Flags = map[string]uint64{}
		}
		s.Flags[f] += n
	}
	for i, n := range o.Latency {
		if i < len(s.Latency) {
			s.Latency[i] += n
		}
	}
}

// ErrorRate is errors / requests, 0 without requests.
func (s *Stats) ErrorRate() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Errors) / float64(s.Requests)
}

// MTLSShare is the fraction of requests over mTLS, 0 without requests.
func (s *Stats) MTLSShare() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.MTLS) / float64(s.Requests)
}

// Quantile is the q-quantile of latency in milliseconds, computed like
// Prometheus's histogram_quantile; NaN without observations.
func (s *Stats) Quantile(q float64) float64 { return mesh.Quantile(q, s.Latency) }

// Traffic is what a source knows about a window: per-edge stats. Every
// source (live, ClickHouse, Prometheus) produces it and Build turns it into
// the same Graph, so the sources differ only in where counts come from.
type Traffic struct {
	End    time.Time
	Window time.Duration
	Edges  map[EdgeKey]*Stats
	// Partial is set when a source had to leave traffic out (a cap on rows or
	// series), so the graph is marked incomplete rather than silently small.
	Partial bool

	// A live graph's traffic lists its edges in edge-id order (stats
	// adjacent in memory), which Build walks instead of the map; the map is
	// built from the list only when a caller asks for the traffic itself
	// (see lazyEdges), since hashing every key costs a graph query more than
	// it needs. One key can appear twice in the list (an edge evicted and
	// seen again); the map holds their sum.
	order   []trafficEdge
	ordered bool
	lazy    *lazyEdges
	pool    *queryPool    // the Live's, to build graphs in recycled memory
	merged  *mergerMem    // a Merger's memory, given back by Release
	share   *trafficShare // a snapshot's sum: its memory and holders
}

// trafficShare is a snapshot's window sum shared by its readers (under the
// snapshot's cacheMu): its memory (recycleLocked), whether the cache holds
// it, whether a reader was handed it for good, and the graphs built from it
// not yet recycled.
type trafficShare struct {
	mem          *trafficMem
	cached, kept bool
	graphs       int
}

// lazyEdges builds a Traffic's Edges map from its list once, for every copy.
type lazyEdges struct {
	once sync.Once
	m    map[EdgeKey]*Stats
}

func (l *lazyEdges) get(order []trafficEdge) map[EdgeKey]*Stats {
	l.once.Do(func() {
		l.m = make(map[EdgeKey]*Stats, len(order))
		for _, te := range order {
			prev := l.m[*te.key]
			if prev == nil {
				l.m[*te.key] = te.stats
				continue
			}
			// The listed stats are shared with every graph built from
			// them: sum into a copy.
			sum := NewStats()
			sum.Add(prev)
			sum.Add(te.stats)
			l.m[*te.key] = sum
		}
	})
	return l.m
}

// edgeCount is the number of edges, or of listed edges before the map exists.
func (t *Traffic) edgeCount() int {
	if t.ordered {
		return len(t.order)
	}
	return len(t.Edges)
}

type trafficEdge struct {
	key      *EdgeKey
	stats    *Stats
	src, dst uint32 // peer ids (see Live.peerLocked), or noPeer
}

// NewTraffic returns empty traffic for the window ending at end.
func NewTraffic(end time.Time, window time.Duration) *Traffic {
	return &Traffic{End: end, Window: window, Edges: map[EdgeKey]*Stats{}}
}

// NewTrafficSized is NewTraffic with room for n edges.
func NewTrafficSized(end time.Time, window time.Duration, n int) *Traffic {
	return &Traffic{End: end, Window: window, Edges: make(map[EdgeKey]*Stats, n)}
}

// Edge returns the stats of k, creating them.
func (t *Traffic) Edge(k EdgeKey) *Stats {
	s := t.Edges[k]
	if s == nil {
		s = NewStats()
		t.Edges[k] = s
	}
	return s
}

// latencyBoundsUs are the bucket bounds in whole microseconds, the unit the
// ClickHouse rollup compares durations in; bucketing in the same unit keeps
// the live graph and the rollups bucket-for-bucket identical.
func latencyBoundsUs() []uint64 {
	b := make([]uint64, len(mesh.LatencyBucketsMs))
	for i, ms := range mesh.LatencyBucketsMs {
		b[i] = uint64(math.Round(ms * 1000))
	}
	return b
}

// bucketOfUs is the index of the first bound >= us, len(bounds) for +Inf:
// the count of bounds strictly below us, as the rollup computes it.
func bucketOfUs(bounds []uint64, us uint64) int {
	lo, hi := 0, len(bounds)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bounds[m] < us {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// finite turns NaN into 0 for JSON, which has no NaN.
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}
