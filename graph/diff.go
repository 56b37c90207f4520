package graph

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/stattest"
)

// Edge and node states in a diff.
const (
	DiffNew          = "new"          // only in the after window
	DiffVanished     = "vanished"     // only in the before window
	DiffWorse        = "worse"        // error rate or p99 significantly up
	DiffBetter       = "better"       // error rate or p99 significantly down, neither up
	DiffChanged      = "changed"      // only the request rate changed significantly
	DiffUnchanged    = "unchanged"    // no significant change
	DiffInconclusive = "inconclusive" // too few requests to test errors and latency
	DiffKept         = "kept"         // a node in both windows
)

// Significance of one metric's change.
const (
	Significant   = "significant"
	Insignificant = "insignificant"
	TooFew        = "inconclusive" // fewer than MinRequests on a side: not tested
)

// DiffOptions are the thresholds of a diff. The defaults are the rollout
// judge's: a change is significant when its test's two-sided p-value is below
// Alpha and it is large enough to matter.
type DiffOptions struct {
	Alpha float64 // default 0.01
	// MinRequests on each side before error rate and p99 are tested; default 50.
	MinRequests uint64
	// MinErrorRateChange: the 1-Alpha confidence bound of the error rate
	// change must be beyond it (absolute); default 0.02.
	MinErrorRateChange float64
	// MinRelativeChange of rps and p99 (0.2 = 20%), and MinLatencyDeltaMs
	// of p99; defaults 0.2 and 2 ms.
	MinRelativeChange float64
	MinLatencyDeltaMs float64
}

func (o DiffOptions) withDefaults() DiffOptions {
	if o.Alpha <= 0 {
		o.Alpha = 0.01
	}
	if o.MinRequests == 0 {
		o.MinRequests = 50
	}
	if o.MinErrorRateChange <= 0 {
		o.MinErrorRateChange = 0.02
	}
	if o.MinRelativeChange <= 0 {
		o.MinRelativeChange = 0.2
	}
	if o.MinLatencyDeltaMs <= 0 {
		o.MinLatencyDeltaMs = 2
	}
	return o
}

// Diff is the graph of the differences between two windows: every node and
// edge of either, each edge with the change of its rate, error rate and p99
// and how significant each change is.
type Diff struct {
	View      View           `json:"view"`
	Namespace string         `json:"namespace,omitempty"`
	Source    string         `json:"source"`
	Before    DiffWindow     `json:"before"`
	After     DiffWindow     `json:"after"`
	Alpha     float64        `json:"alpha"`
	Generated time.Time      `json:"generated"`
	Nodes     []*DiffNode    `json:"nodes"`
	Edges     []*DiffEdge    `json:"edges"`
	Counts    map[string]int `json:"counts"` // edges by status
	Truncated bool           `json:"truncated,omitempty"`
	Partial   bool           `json:"partial,omitempty"`
	// Notices say what a reader should know to read the diff right (a
	// window without traffic, a window cut at now).
	Notices []string `json:"notices,omitempty"`
}

// DiffWindow is one of the two windows compared.
type DiffWindow struct {
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Seconds  float64   `json:"seconds"`
	Requests uint64    `json:"requests"`
	Edges    int       `json:"edges"`
}

// DiffNode is a node of either window.
type DiffNode struct {
	ID        string `json:"id"`
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	Version   string `json:"version"`
	Workload  string `json:"workload"`
	Unknown   bool   `json:"unknown,omitempty"`
	Status    string `json:"status"` // new, vanished, kept
	// Worst is the worst status of the edges into the node.
	Worst           string  `json:"worst"`
	BeforeRPS       float64 `json:"beforeRps"`
	AfterRPS        float64 `json:"afterRps"`
	BeforeErrorRate float64 `json:"beforeErrorRate"`
	AfterErrorRate  float64 `json:"afterErrorRate"`
}

// DiffEdge is an edge of either window and how it changed.
type DiffEdge struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	Protocol string `json:"protocol"`
	Status   string `json:"status"`
	// Before and After are the edge's numbers in each window; nil where the
	// edge had no traffic.
	Before *EdgeNumbers `json:"before,omitempty"`
	After  *EdgeNumbers `json:"after,omitempty"`
	// The changes, for an edge in both windows.
	RPS       *Change `json:"rps,omitempty"`
	ErrorRate *Change `json:"errorRate,omitempty"`
	P99Ms     *Change `json:"p99Ms,omitempty"`
}

// EdgeNumbers are an edge's numbers over one window.
type EdgeNumbers struct {
	Requests  uint64  `json:"requests"`
	Errors    uint64  `json:"errors"`
	RPS       float64 `json:"rps"`
	ErrorRate float64 `json:"errorRate"`
	P50Ms     float64 `json:"p50Ms"`
	P99Ms     float64 `json:"p99Ms"`
}

// Change is how one number of an edge moved from the before window to the
// after window, and the test that says whether it is more than chance.
type Change struct {
	Before float64 `json:"before"`
	After  float64 `json:"after"`
	Delta  float64 `json:"delta"`
	// Relative is Delta / Before, 0 when Before is 0.
	Relative float64 `json:"relative"`
	// P is the two-sided p-value of Test; Direction is up, down or none
	// (the direction the test points).
	P            float64 `json:"p"`
	Direction    string  `json:"direction"`
	Significance string  `json:"significance"` // significant, insignificant, inconclusive
	Test         string  `json:"test"`
	Reason       string  `json:"reason"`
}

// Names of the tests, as the diff reports them.
const (
	testRate    = "exact conditional binomial test of two Poisson rates"
	testErrors  = "Fisher's exact test, with Newcombe's confidence bound of the change"
	testLatency = "Fisher's exact test on the share of requests slower than the other window's p99"
)

// DiffTraffic compares the traffic of two windows in the given view. The
// graphs of both are built as Build builds them (same caps), then matched
// node by node and edge by edge.
func DiffTraffic(before, after *Traffic, opts Options, dopts DiffOptions) *Diff {
	dopts = dopts.withDefaults()
	gb, ga := Build(before, opts), Build(after, opts)
	d := &Diff{
		View: gb.View, Namespace: opts.Namespace, Source: opts.Source, Alpha: dopts.Alpha, Generated: gb.Generated,
		Before: window(before, gb), After: window(after, ga),
		Truncated: gb.Truncated || ga.Truncated, Partial: gb.Partial || ga.Partial,
		Counts: map[string]int{},
	}
	nodes := map[string]*DiffNode{}
	addNode := func(n *Node, after bool) {
		dn := nodes[n.ID]
		if dn == nil {
			dn = &DiffNode{ID: n.ID, Namespace: n.Namespace, Service: n.Service, Version: n.Version, Workload: n.Workload,
				Unknown: n.Unknown, Status: DiffVanished}
			if after {
				dn.Status = DiffNew
			}
			nodes[n.ID] = dn
		} else if after && dn.Status == DiffVanished {
			dn.Status = DiffKept
		}
		if after {
			dn.AfterRPS, dn.AfterErrorRate = n.RPS, n.ErrorRate
		} else {
			dn.BeforeRPS, dn.BeforeErrorRate = n.RPS, n.ErrorRate
		}
	}
	for _, n := range gb.Nodes {
		addNode(n, false)
	}
	for _, n := range ga.Nodes {
		addNode(n, true)
	}
	type pair struct{ src, dst string }
	edges := map[pair]*DiffEdge{}
	bStats := map[pair]*Stats{}
	for _, e := range gb.Edges {
		p := pair{e.Source, e.Target}
		edges[p] = &DiffEdge{Source: e.Source, Target: e.Target, Protocol: e.Protocol, Status: DiffVanished, Before: numbersOf(e)}
		bStats[p] = e.stats
	}
	for _, e := range ga.Edges {
		p := pair{e.Source, e.Target}
		de := edges[p]
		if de == nil {
			edges[p] = &DiffEdge{Source: e.Source, Target: e.Target, Protocol: e.Protocol, Status: DiffNew, After: numbersOf(e)}
			continue
		}
		de.After, de.Protocol = numbersOf(e), e.Protocol
		compare(de, bStats[p], e.stats, d.Before.Seconds, d.After.Seconds, dopts)
	}
	for _, de := range edges {
		d.Edges = append(d.Edges, de)
		d.Counts[de.Status]++
		if n := nodes[de.Target]; n != nil && severity(de.Status) > severity(n.Worst) {
			n.Worst = de.Status
		}
	}
	for _, n := range nodes {
		if n.Worst == "" {
			n.Worst = n.Status
		}
		d.Nodes = append(d.Nodes, n)
	}
	slices.SortFunc(d.Nodes, func(a, b *DiffNode) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(d.Edges, func(a, b *DiffEdge) int {
		if c := strings.Compare(a.Source, b.Source); c != 0 {
			return c
		}
		return strings.Compare(a.Target, b.Target)
	})
	if d.Nodes == nil {
		d.Nodes = []*DiffNode{}
	}
	if d.Edges == nil {
		d.Edges = []*DiffEdge{}
	}
	switch {
	case d.Before.Requests == 0 && d.After.Requests > 0:
		d.Notices = append(d.Notices, "the before window has no traffic: every edge of the after window shows as new")
	case d.After.Requests == 0 && d.Before.Requests > 0:
		d.Notices = append(d.Notices, "the after window has no traffic: every edge of the before window shows as vanished")
	}
	return d
}

// severity orders statuses for a node's worst edge.
func severity(s string) int {
	switch s {
	case DiffWorse:
		return 6
	case DiffNew:
		return 5
	case DiffVanished:
		return 4
	case DiffBetter:
		return 3
	case DiffChanged:
		return 2
	case DiffInconclusive:
		return 1
	}
	return 0
}

func window(t *Traffic, g *Graph) DiffWindow {
	w := DiffWindow{Start: t.End.Add(-t.Window).UTC(), End: t.End.UTC(), Seconds: t.Window.Seconds(), Edges: len(g.Edges)}
	for _, e := range g.Edges {
		w.Requests += e.Requests
	}
	return w
}

func numbersOf(e *Edge) *EdgeNumbers {
	return &EdgeNumbers{Requests: e.Requests, Errors: e.Errors, RPS: e.RPS, ErrorRate: e.ErrorRate, P50Ms: e.P50Ms, P99Ms: e.P99Ms}
}

// compare tests the three changes of an edge in both windows and sets its
// status from them.
func compare(de *DiffEdge, b, a *Stats, bSecs, aSecs float64, o DiffOptions) {
	de.RPS = rateChange(de.Before, de.After, bSecs, aSecs, o)
	enough := b.Requests >= o.MinRequests && a.Requests >= o.MinRequests
	de.ErrorRate = errorChange(b, a, enough, o)
	de.P99Ms = latencyChange(de.Before.P99Ms, de.After.P99Ms, b, a, enough, o)
	up := func(c *Change) bool { return c.Significance == Significant && c.Direction == "up" }
	down := func(c *Change) bool { return c.Significance == Significant && c.Direction == "down" }
	switch {
	case up(de.ErrorRate) || up(de.P99Ms):
		de.Status = DiffWorse
	case down(de.ErrorRate) || down(de.P99Ms):
		de.Status = DiffBetter
	case de.RPS.Significance == Significant:
		de.Status = DiffChanged
	case !enough:
		de.Status = DiffInconclusive
	default:
		de.Status = DiffUnchanged
	}
}

func newChange(before, after float64, test string) *Change {
	c := &Change{Before: before, After: after, Delta: after - before, Test: test, P: 1, Direction: "none", Significance: Insignificant}
	if before != 0 {
		c.Relative = c.Delta / before
	}
	return c
}

func direction(dir int) string {
	switch dir {
	case 1:
		return "up"
	case -1:
		return "down"
	}
	return "none"
}

func rateChange(b, a *EdgeNumbers, bSecs, aSecs float64, o DiffOptions) *Change {
	c := newChange(b.RPS, a.RPS, testRate)
	var dir int
	c.P, dir = stattest.TwoSided(stattest.RateChange(b.Requests, bSecs, a.Requests, aSecs))
	c.Direction = direction(dir)
	switch {
	case c.P >= o.Alpha:
		c.Reason = fmt.Sprintf("%d requests over %.0f s vs %d over %.0f s: within chance (p=%.2g)", b.Requests, bSecs, a.Requests, aSecs, c.P)
	case math.Abs(c.Relative) < o.MinRelativeChange:
		c.Reason = fmt.Sprintf("%+.1f%%, under the %.0f%% that counts (p=%.2g)", 100*c.Relative, 100*o.MinRelativeChange, c.P)
	default:
		c.Significance = Significant
		c.Reason = fmt.Sprintf("%.3g → %.3g rps (%+.1f%%, p=%.2g)", c.Before, c.After, 100*c.Relative, c.P)
	}
	return c
}

func errorChange(b, a *Stats, enough bool, o DiffOptions) *Change {
	c := newChange(b.ErrorRate(), a.ErrorRate(), testErrors)
	if !enough {
		c.Significance = TooFew
		c.Reason = fmt.Sprintf("%d and %d requests: fewer than the %d needed on each side", b.Requests, a.Requests, o.MinRequests)
		return c
	}
	var dir int
	c.P, dir = stattest.TwoSided(stattest.ProportionChange(b.Errors, b.Requests, a.Errors, a.Requests))
	c.Direction = direction(dir)
	// The change must be confidently beyond the minimum, not only nonzero.
	var bound float64
	if dir >= 0 {
		bound = stattest.DifferenceLowerBound(a.Errors, a.Requests, b.Errors, b.Requests, o.Alpha/2)
	} else {
		bound = stattest.DifferenceLowerBound(b.Errors, b.Requests, a.Errors, a.Requests, o.Alpha/2)
	}
	switch {
	case c.P >= o.Alpha:
		c.Reason = fmt.Sprintf("%d of %d vs %d of %d errors: within chance (Fisher p=%.2g)", b.Errors, b.Requests, a.Errors, a.Requests, c.P)
	case bound <= o.MinErrorRateChange:
		c.Reason = fmt.Sprintf("a change of at least %.4f is certain, under the %.4f that counts (Fisher p=%.2g)", max(bound, 0), o.MinErrorRateChange, c.P)
	default:
		c.Significance = Significant
		c.Reason = fmt.Sprintf("%.4f → %.4f, by at least %.4f (Fisher p=%.2g)", c.Before, c.After, bound, c.P)
	}
	return c
}

// latencyChange tests p99 the way the judge tests a p99 limit, by counting
// requests above it: the share of after's requests slower than before's p99
// bucket against before's own share (H1: slower), and the share of before's
// requests slower than after's p99 bucket against after's (H1: faster).
// Histogram bucket bounds are the only exact cut points the rollups keep.
func latencyChange(bP99, aP99 float64, b, a *Stats, enough bool, o DiffOptions) *Change {
	c := newChange(bP99, aP99, testLatency)
	if !enough {
		c.Significance = TooFew
		c.Reason = fmt.Sprintf("%d and %d requests: fewer than the %d needed on each side", b.Requests, a.Requests, o.MinRequests)
		return c
	}
	nb, na := total(b.Latency), total(a.Latency)
	if nb == 0 || na == 0 {
		c.Significance = TooFew
		c.Reason = "no latency observations on one side"
		return c
	}
	ib, ia := p99Bucket(b.Latency), p99Bucket(a.Latency)
	slowB, slowA := above(b.Latency, ib), above(a.Latency, ib)
	up, _ := stattest.ProportionChange(slowB, nb, slowA, na)
	fastB, fastA := above(b.Latency, ia), above(a.Latency, ia)
	_, down := stattest.ProportionChange(fastB, nb, fastA, na)
	var dir int
	c.P, dir = stattest.TwoSided(up, down)
	c.Direction = direction(dir)
	minDelta := max(o.MinLatencyDeltaMs, o.MinRelativeChange*bP99)
	switch {
	case c.P >= o.Alpha:
		c.Reason = fmt.Sprintf("p99 %.1f → %.1f ms: within chance (p=%.2g)", bP99, aP99, c.P)
	case math.Abs(c.Delta) < minDelta || (dir > 0) != (c.Delta > 0):
		c.Reason = fmt.Sprintf("p99 %.1f → %.1f ms: under the %.1f ms that counts (p=%.2g)", bP99, aP99, minDelta, c.P)
	default:
		c.Significance = Significant
		if dir > 0 {
			c.Reason = fmt.Sprintf("p99 %.1f → %.1f ms: %d of %d requests slower than %s ms, before %d of %d (p=%.2g)",
				bP99, aP99, slowA, na, bound(ib), slowB, nb, c.P)
		} else {
			c.Reason = fmt.Sprintf("p99 %.1f → %.1f ms: %d of %d requests slower than %s ms before, now %d of %d (p=%.2g)",
				bP99, aP99, fastB, nb, bound(ia), fastA, na, c.P)
		}
	}
	return c
}

func total(h []uint64) uint64 {
	var n uint64
	for _, c := range h {
		n += c
	}
	return n
}

// p99Bucket is the index of the bucket holding the 0.99-quantile.
func p99Bucket(h []uint64) int {
	rank := 0.99 * float64(total(h))
	var cum uint64
	for i, c := range h {
		cum += c
		if float64(cum) >= rank {
			return i
		}
	}
	return len(h) - 1
}

// above counts the observations in buckets after i.
func above(h []uint64, i int) uint64 {
	if i+1 >= len(h) {
		return 0
	}
	return total(h[i+1:])
}

func bound(i int) string {
	if i >= len(mesh.LatencyBucketsMs) {
		return "+Inf"
	}
	return fmt.Sprint(mesh.LatencyBucketsMs[i])
}
