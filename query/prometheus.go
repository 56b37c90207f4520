package query

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/mesh"
)

// Prometheus builds graph traffic from Istio's standard metrics
// (istio_requests_total, istio_request_duration_milliseconds, request and
// response bytes) in a Prometheus server, for users who already run Istio.
// Destination-reported series are preferred; an edge only the source
// reported (a destination outside the mesh) comes from the source side.
type Prometheus struct {
	api       promv1.API
	maxSeries int
	timeout   time.Duration
}

// NewPrometheus connects to the Prometheus HTTP API at url (the --prometheus
// flag). rt may be nil for the default transport.
func NewPrometheus(url string, rt http.RoundTripper) (*Prometheus, error) {
	c, err := api.NewClient(api.Config{Address: url, RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("--prometheus %q: %w", url, err)
	}
	return &Prometheus{api: promv1.NewAPI(c), maxSeries: 1000000, timeout: 30 * time.Second}, nil
}

// API exposes the client, for callers with their own queries.
func (p *Prometheus) API() promv1.API { return p.api }

var edgeLabels = []string{
	"reporter", "request_protocol",
	"source_workload_namespace", "source_canonical_service", "source_app", "source_workload", "source_version", "source_canonical_revision",
	"destination_service_namespace", "destination_service_name", "destination_canonical_service", "destination_workload", "destination_version", "destination_canonical_revision",
}

var requestLabels = append(append([]string(nil), edgeLabels...),
	"response_code", "grpc_response_status", "connection_security_policy", "response_flags")

// promDuration renders a window as a PromQL range in whole seconds.
func promDuration(d time.Duration) string {
	return strconv.FormatInt(int64(d/time.Second), 10) + "s"
}

// Traffic sums every edge over the window ending at end.
func (p *Prometheus) Traffic(ctx context.Context, end time.Time, window time.Duration, namespace string) (*graph.Traffic, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	w := promDuration(window)
	sel := `{reporter=~"destination|source"}`
	queries := []string{
		fmt.Sprintf(`sum by (%s) (increase(istio_requests_total%s[%s]))`, strings.Join(requestLabels, ","), sel, w),
		fmt.Sprintf(`sum by (%s,le) (increase(istio_request_duration_milliseconds_bucket%s[%s]))`, strings.Join(edgeLabels, ","), sel, w),
		fmt.Sprintf(`sum by (%s) (increase(istio_request_duration_milliseconds_sum%s[%s]))`, strings.Join(edgeLabels, ","), sel, w),
		fmt.Sprintf(`sum by (%s) (increase(istio_request_bytes_sum%s[%s]))`, strings.Join(edgeLabels, ","), sel, w),
		fmt.Sprintf(`sum by (%s) (increase(istio_response_bytes_sum%s[%s]))`, strings.Join(edgeLabels, ","), sel, w),
	}
	results := make([]model.Vector, len(queries))
	errs := make([]error, len(queries))
	var wg sync.WaitGroup
	for i, q := range queries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = p.vector(ctx, q, end)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}

	// Count per reporter, then prefer the destination's view of each edge.
	byReporter := map[string]*graph.Traffic{"destination": graph.NewTraffic(end, window), "source": graph.NewTraffic(end, window)}
	tr := graph.NewTraffic(end, window)
	edge := func(m model.Metric) (*graph.Stats, bool) {
		k := edgeKeyOf(m)
		if namespace != "" && k.Source.Namespace != namespace && k.Destination.Namespace != namespace {
			return nil, false
		}
		t := byReporter[string(m["reporter"])]
		if t == nil {
			return nil, false
		}
		return t.Edge(k), true
	}
	for i, v := range results {
		if len(v) > p.maxSeries {
			tr.Partial = true
			v = v[:p.maxSeries]
		}
		for _, s := range v {
			st, ok := edge(s.Metric)
			if !ok {
				continue
			}
			val := counts(float64(s.Value))
			switch i {
			case 0:
				code, _ := strconv.ParseUint(string(s.Metric["response_code"]), 10, 16)
				gs := int16(-1)
				if g, err := strconv.ParseInt(string(s.Metric["grpc_response_status"]), 10, 16); err == nil {
					gs = int16(g)
				}
				st.AddCode(string(s.Metric["request_protocol"]), graph.CodeKey{Code: uint16(code), GRPCStatus: gs}, val)
				if s.Metric["connection_security_policy"] == "mutual_tls" {
					st.MTLS += val
				}
				if f := string(s.Metric["response_flags"]); f != "" && f != "-" && val > 0 {
					if st.Flags == nil {
						st.Flags = map[string]uint64{}
					}
					st.Flags[f] += val
				}
			case 1:
				addBucket(st, string(s.Metric["le"]), float64(s.Value))
			case 2:
				st.DurationSumUs += uint64(math.Round(float64(s.Value) * 1000))
			case 3:
				st.BytesIn += val
			case 4:
				st.BytesOut += val
			}
		}
	}
	for k, st := range byReporter["destination"].Edges {
		cumulativeToCounts(st)
		if st.Requests > 0 {
			tr.Edges[k] = st
		}
	}
	for k, st := range byReporter["source"].Edges {
		cumulativeToCounts(st)
		if _, ok := tr.Edges[k]; !ok && st.Requests > 0 {
			tr.Edges[k] = st
		}
	}
	return tr, nil
}

func (p *Prometheus) vector(ctx context.Context, q string, at time.Time) (model.Vector, error) {
	v, _, _, err := p.api.Query(ctx, q, at)
	if err != nil {
		return nil, fmt.Errorf("prometheus query %s: %w", q, err)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("prometheus query %s: got %s, want a vector", q, v.Type())
	}
	return vec, nil
}

// counts turns an increase() into a count: increases of integer counters are
// integers up to extrapolation, which rounding absorbs.
func counts(v float64) uint64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return uint64(math.Round(v))
}

// unknownLabel is what Istio writes for a peer it could not identify.
func label(m model.Metric, names ...string) string {
	for _, n := range names {
		if v := string(m[model.LabelName(n)]); v != "" && v != "unknown" {
			return v
		}
	}
	return ""
}

func edgeKeyOf(m model.Metric) graph.EdgeKey {
	src := mesh.Peer{
		Namespace: label(m, "source_workload_namespace"),
		Service:   label(m, "source_canonical_service", "source_app"),
		Workload:  label(m, "source_workload"),
		Version:   label(m, "source_version", "source_canonical_revision"),
	}
	if src.Version == "latest" {
		src.Version = ""
	}
	dst := mesh.Peer{
		Namespace: label(m, "destination_service_namespace"),
		Service:   label(m, "destination_service_name", "destination_canonical_service"),
		Workload:  label(m, "destination_workload"),
		Version:   label(m, "destination_version", "destination_canonical_revision"),
	}
	if dst.Version == "latest" {
		dst.Version = ""
	}
	if src.Service == "" && src.Workload == "" {
		src = mesh.Peer{}
	}
	return graph.EdgeKey{Source: src.OrUnknown(), Destination: dst.OrUnknown(), Protocol: string(m["request_protocol"])}
}

// Until cumulativeToCounts runs, Latency holds cumulative counts per bucket
// index (the le of each Prometheus bucket mapped to mesh's bucket).
func addBucket(st *graph.Stats, le string, v float64) {
	var i int
	if le == "+Inf" {
		i = len(mesh.LatencyBucketsMs)
	} else {
		f, err := strconv.ParseFloat(le, 64)
		if err != nil {
			return
		}
		i = mesh.BucketIndex(f)
	}
	if c := counts(v); c > st.Latency[i] {
		st.Latency[i] = c
	}
}

// cumulativeToCounts turns cumulative bucket counts into per-bucket counts.
// Buckets missing from Prometheus inherit the count below them.
func cumulativeToCounts(st *graph.Stats) {
	var prev uint64
	for i, c := range st.Latency {
		if c < prev {
			c = prev // a missing or extrapolated-low bucket: never negative
		}
		st.Latency[i] = c - prev
		prev = c
	}
}

// ServiceSeries returns per-version series of a service's inbound traffic
// over [end-rng, end) with the given step, from range queries.
func (p *Prometheus) ServiceSeries(ctx context.Context, ns, service string, end time.Time, rng, step time.Duration) ([]graph.Series, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	stepS := int64(step / time.Second)
	start := time.Unix(end.Add(-rng).Unix()/stepS*stepS, 0)
	n := int((end.Sub(start) + step - 1) / step)
	sel := fmt.Sprintf(`{reporter="destination",destination_service_namespace=%q,destination_service_name=%q}`, ns, service)
	r := promv1.Range{Start: start.Add(step), End: start.Add(time.Duration(n) * step), Step: step}
	sb := graph.NewSeriesBuilder(start, step, n)
	q := fmt.Sprintf(`sum by (destination_version,destination_canonical_revision,request_protocol,response_code,grpc_response_status) (increase(istio_requests_total%s[%s]))`, sel, promDuration(step))
	m, err := p.matrix(ctx, q, r)
	if err != nil {
		return nil, err
	}
	for _, s := range m {
		ver := label(s.Metric, "destination_version", "destination_canonical_revision")
		code, _ := strconv.ParseUint(string(s.Metric["response_code"]), 10, 16)
		gs := int16(-1)
		if g, err := strconv.ParseInt(string(s.Metric["grpc_response_status"]), 10, 16); err == nil {
			gs = int16(g)
		}
		for _, v := range s.Values {
			// A point at T is the increase over (T-step, T]: the step that starts at T-step.
			if st := sb.At(ver, v.Timestamp.Time().Add(-step)); st != nil {
				st.AddCode(string(s.Metric["request_protocol"]), graph.CodeKey{Code: uint16(code), GRPCStatus: gs}, counts(float64(v.Value)))
			}
		}
	}
	q = fmt.Sprintf(`sum by (destination_version,destination_canonical_revision,le) (increase(istio_request_duration_milliseconds_bucket%s[%s]))`, sel, promDuration(step))
	if m, err = p.matrix(ctx, q, r); err != nil {
		return nil, err
	}
	touched := map[*graph.Stats]bool{}
	for _, s := range m {
		ver := label(s.Metric, "destination_version", "destination_canonical_revision")
		for _, v := range s.Values {
			if st := sb.At(ver, v.Timestamp.Time().Add(-step)); st != nil {
				addBucket(st, string(s.Metric["le"]), float64(v.Value))
				touched[st] = true
			}
		}
	}
	for st := range touched {
		cumulativeToCounts(st)
	}
	out := sb.Series()
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

func (p *Prometheus) matrix(ctx context.Context, q string, r promv1.Range) (model.Matrix, error) {
	v, _, _, err := p.api.QueryRange(ctx, q, r)
	if err != nil {
		return nil, fmt.Errorf("prometheus query %s: %w", q, err)
	}
	m, ok := v.(model.Matrix)
	if !ok {
		return nil, fmt.Errorf("prometheus query %s: got %s, want a matrix", q, v.Type())
	}
	return m, nil
}
