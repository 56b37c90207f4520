package istiometrics

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/meshlens/meshlens/mesh"
)

// The metrics, as Istio defines them.
var (
	httpLabelNames, tcpLabelNames = func() (http, tcp []string) {
		for i, n := range labelNames {
			http = append(http, n)
			if tcpLabel(i) {
				tcp = append(tcp, n)
			}
		}
		return http, tcp
	}()

	descRequests      = prometheus.NewDesc("istio_requests_total", "Requests, as Istio counts them (from meshlens' request records).", httpLabelNames, nil)
	descDuration      = prometheus.NewDesc("istio_request_duration_milliseconds", "Request durations in milliseconds, as Istio measures them (from meshlens' request records).", httpLabelNames, nil)
	descRequestBytes  = prometheus.NewDesc("istio_request_bytes", "Request sizes in bytes, as Istio measures them (from meshlens' request records).", httpLabelNames, nil)
	descResponseBytes = prometheus.NewDesc("istio_response_bytes", "Response sizes in bytes, as Istio measures them (from meshlens' request records).", httpLabelNames, nil)
	descTCPOpened     = prometheus.NewDesc("istio_tcp_connections_opened_total", "TCP connections opened, as Istio counts them (from meshlens' request records).", tcpLabelNames, nil)
	descTCPClosed     = prometheus.NewDesc("istio_tcp_connections_closed_total", "TCP connections closed, as Istio counts them (from meshlens' request records).", tcpLabelNames, nil)
	descTCPSent       = prometheus.NewDesc("istio_tcp_sent_bytes_total", "Bytes sent in responses on TCP connections, as Istio counts them (from meshlens' request records).", tcpLabelNames, nil)
	descTCPReceived   = prometheus.NewDesc("istio_tcp_received_bytes_total", "Bytes received in requests on TCP connections, as Istio counts them (from meshlens' request records).", tcpLabelNames, nil)

	tcpDescs = [4]*prometheus.Desc{descTCPOpened, descTCPClosed, descTCPSent, descTCPReceived}

	// upperBounds are the histograms' bounds as exposed.
	upperBounds = func() (b [nBuckets]float64) {
		copy(b[:], mesh.LatencyBucketsMs)
		return b
	}()
)

// collector is the exporter as a prometheus.Collector.
type collector struct{ x *Exporter }

// Describe describes nothing: the collector is unchecked, because a
// Telemetry's tag overrides change the label names of some series.
func (c collector) Describe(chan<- *prometheus.Desc) {}

// Collect emits every series. It builds the client's data model directly
// (no per-series maps or label-value slices): a label set's label pairs are
// made once per scrape and shared by its four metrics, and a source report
// shares its values with the destination report it equals.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	x := c.x
	x.mu.Lock()
	if now := x.cfg.Now().UnixNano(); now >= x.nextSweep {
		x.sweepLocked(now)
	}
	https, tcps := x.http.snapshot(), x.tcp.snapshot()
	x.mu.Unlock()
	emit := func(m *constMetric) { ch <- m }
	var f *telemetryFilter
	if v := x.telemetry.Load(); v != nil {
		f = newTelemetryFilter(v)
		emit = f.add
	}
	for _, s := range https {
		x.emitHTTP(s, emit)
	}
	for _, s := range tcps {
		x.emitTCP(s, emit)
	}
	if f != nil {
		f.flush(ch)
	}
}

// constMetric is one series of one scrape.
type constMetric struct {
	desc    *prometheus.Desc
	labels  []*dto.LabelPair
	counter *dto.Counter
	hist    *dto.Histogram
}

func (m *constMetric) Desc() *prometheus.Desc { return m.desc }

func (m *constMetric) Write(out *dto.Metric) error {
	out.Label, out.Counter, out.Histogram = m.labels, m.counter, m.hist
	return nil
}

// labelSets are the label pairs of a series' label sets in one scrape: up
// to two destination reports (one per mTLS mode) and a source report.
type labelSets struct {
	pairs   [nLabels + 4]dto.LabelPair // shared ones, then reporter ×2, policy ×3
	sets    [3][nLabels]*dto.LabelPair
	metrics [3][4]constMetric
}

// Indexes of labelSets.sets.
const (
	setNone   = 0 // destination report, connection_security_policy="none"
	setMTLS   = 1 // destination report, "mutual_tls"
	setSource = 2 // source report, "unknown"
)

// labelValues sets the values of every label of s but the reporter and the
// connection security policy.
func labelValues[K key[K], C any](x *Exporter, s *series[K, C], src, dst *mesh.Peer, protocol, flags *string, v *[nLabels]*string) {
	cluster := func(p *mesh.Peer) *string {
		if known(p) {
			return &x.cfg.Cluster
		}
		return &vUnknown
	}
	v[lDestinationApp] = &dst.Service
	v[lDestinationCanonicalRevision] = revisionLabel(dst)
	v[lDestinationCanonicalService] = &dst.Service
	v[lDestinationCluster] = cluster(dst)
	v[lDestinationPrincipal] = &vUnknown
	v[lDestinationService] = &s.fqdn
	v[lDestinationServiceName] = &dst.Service
	v[lDestinationServiceNamespace] = &dst.Namespace
	v[lDestinationVersion] = versionLabel(dst)
	v[lDestinationWorkload] = &dst.Workload
	v[lDestinationWorkloadNamespace] = &dst.Namespace
	v[lGRPCResponseStatus] = &s.grpc
	v[lRequestProtocol] = protocol
	v[lResponseCode] = &s.code
	v[lResponseFlags] = flags
	v[lSourceApp] = &src.Service
	v[lSourceCanonicalRevision] = revisionLabel(src)
	v[lSourceCanonicalService] = &src.Service
	v[lSourceCluster] = cluster(src)
	v[lSourcePrincipal] = &vUnknown
	v[lSourceVersion] = versionLabel(src)
	v[lSourceWorkload] = &src.Workload
	v[lSourceWorkloadNamespace] = &src.Namespace
}

// build makes the label sets wanted (by set index) from the values v.
func (l *labelSets) build(v *[nLabels]*string, want [3]bool, tcp bool) {
	n := 0
	for i := range nLabels {
		if i == lReporter || i == lConnectionSecurityPolicy {
			continue
		}
		l.pairs[n].Name, l.pairs[n].Value = &labelNames[i], v[i]
		n++
	}
	reporter := [3]*string{&vDestination, &vDestination, &vSource}
	policy := [3]*string{&vNone, &vMutualTLS, &vUnknown}
	for set := range 3 {
		if !want[set] {
			continue
		}
		rp, pp := &l.pairs[n], &l.pairs[n+1]
		n += 2
		rp.Name, rp.Value = &labelNames[lReporter], reporter[set]
		pp.Name, pp.Value = &labelNames[lConnectionSecurityPolicy], policy[set]
		j, shared := 0, 0
		for i := range nLabels {
			var p *dto.LabelPair
			switch i {
			case lReporter:
				p = rp
			case lConnectionSecurityPolicy:
				p = pp
			default:
				p = &l.pairs[shared]
				shared++
				if tcp && !tcpLabel(i) {
					continue
				}
			}
			l.sets[set][j] = p
			j++
		}
	}
}

// labels returns set's label pairs.
func (l *labelSets) labels(set int, tcp bool) []*dto.LabelPair {
	if tcp {
		return l.sets[set][:nLabels-2]
	}
	return l.sets[set][:]
}

// httpSnap is a mode's counts at one moment.
type httpSnap struct {
	requests uint64
	hist     [3]histSnap
}

type histSnap struct {
	buckets [nBuckets + 1]uint64
	sum     uint64
}

func (h *histSnap) read(from *histogram) {
	for i := range h.buckets {
		h.buckets[i] = from.buckets[i].Load()
	}
	h.sum = from.sum.Load()
}

func (h *histSnap) add(o *histSnap) {
	for i := range h.buckets {
		h.buckets[i] += o.buckets[i]
	}
	h.sum += o.sum
}

// read takes the counts of a mode; zero the first time it is exposed.
func (s *httpSnap) read(m *mode[httpCounts]) {
	if m.published.CompareAndSwap(false, true) {
		return
	}
	s.requests = m.c.requests.Load()
	s.hist[0].read(&m.c.duration)
	s.hist[1].read(&m.c.requestBytes)
	s.hist[2].read(&m.c.responseBytes)
}

// httpValues are one label set's values in the client's data model.
type httpValues struct {
	requestsV float64
	requests  dto.Counter
	hist      [3]histDTO
}

type histDTO struct {
	h     dto.Histogram
	count uint64
	sum   float64
	b     [nBuckets]dto.Bucket
	bp    [nBuckets]*dto.Bucket
	cum   [nBuckets]uint64
}

func (d *histDTO) fill(s *histSnap, scale float64) *dto.Histogram {
	var c uint64
	for i := range nBuckets {
		c += s.buckets[i]
		d.cum[i] = c
		d.b[i].CumulativeCount, d.b[i].UpperBound = &d.cum[i], &upperBounds[i]
		d.bp[i] = &d.b[i]
	}
	d.count = c + s.buckets[nBuckets]
	d.sum = float64(s.sum) * scale
	d.h.SampleCount, d.h.SampleSum, d.h.Bucket = &d.count, &d.sum, d.bp[:]
	return &d.h
}

func (v *httpValues) fill(s *httpSnap) {
	v.requestsV = float64(s.requests)
	v.requests.Value = &v.requestsV
	v.hist[0].fill(&s.hist[0], 0.001) // µs → ms
	v.hist[1].fill(&s.hist[1], 1)
	v.hist[2].fill(&s.hist[2], 1)
}

func (x *Exporter) emitHTTP(s *series[httpKey, httpCounts], emit func(*constMetric)) {
	var snaps [2]httpSnap
	var want [3]bool
	for b := range 2 {
		if m := s.modes[b].Load(); m != nil {
			want[b] = true
			snaps[b].read(m)
		}
	}
	if !want[setNone] && !want[setMTLS] {
		return
	}
	want[setSource] = s.key.sourceKnown()

	var v [nLabels]*string
	labelValues(x, s, &s.key.src, &s.key.dst, &s.key.protocol, &s.key.flags, &v)
	ls := &labelSets{}
	ls.build(&v, want, false)

	// A source report equals its destination report when there is one
	// mode; it is their sum when there are two.
	both := want[setNone] && want[setMTLS]
	vals := make([]httpValues, 1+b2i(both)*2)
	var valOf [3]*httpValues
	switch {
	case both:
		vals[0].fill(&snaps[0])
		vals[1].fill(&snaps[1])
		sum := snaps[0]
		sum.requests += snaps[1].requests
		for i := range sum.hist {
			sum.hist[i].add(&snaps[1].hist[i])
		}
		vals[2].fill(&sum)
		valOf = [3]*httpValues{&vals[0], &vals[1], &vals[2]}
	default:
		b := b2i(want[setMTLS])
		vals[0].fill(&snaps[b])
		valOf = [3]*httpValues{&vals[0], &vals[0], &vals[0]}
	}
	for set := range 3 {
		if !want[set] {
			continue
		}
		labels, val, ms := ls.labels(set, false), valOf[set], &ls.metrics[set]
		ms[0] = constMetric{desc: descRequests, labels: labels, counter: &val.requests}
		ms[1] = constMetric{desc: descDuration, labels: labels, hist: &val.hist[0].h}
		ms[2] = constMetric{desc: descRequestBytes, labels: labels, hist: &val.hist[1].h}
		ms[3] = constMetric{desc: descResponseBytes, labels: labels, hist: &val.hist[2].h}
		for i := range ms {
			emit(&ms[i])
		}
	}
}

// tcpSnap is a TCP mode's counts at one moment.
type tcpSnap [4]uint64 // opened, closed, sent, received

func (s *tcpSnap) read(m *mode[tcpCounts]) {
	if m.published.CompareAndSwap(false, true) {
		return
	}
	*s = tcpSnap{m.c.opened.Load(), m.c.closed.Load(), m.c.sent.Load(), m.c.received.Load()}
}

type tcpValues struct {
	v [4]float64
	c [4]dto.Counter
}

func (x *Exporter) emitTCP(s *series[tcpKey, tcpCounts], emit func(*constMetric)) {
	var snaps [3]tcpSnap // none, mtls, their sum
	var want [3]bool
	for b := range 2 {
		if m := s.modes[b].Load(); m != nil {
			want[b] = true
			snaps[b].read(m)
			for i := range snaps[2] {
				snaps[2][i] += snaps[b][i]
			}
		}
	}
	if !want[setNone] && !want[setMTLS] {
		return
	}
	want[setSource] = s.key.sourceKnown()

	var v [nLabels]*string
	labelValues(x, s, &s.key.src, &s.key.dst, &vTCP, &s.key.flags, &v)
	ls := &labelSets{}
	ls.build(&v, want, true)
	var vals [3]tcpValues
	for set := range 3 {
		if !want[set] {
			continue
		}
		val := &vals[set]
		for i := range val.v {
			val.v[i] = float64(snaps[set][i])
			val.c[i].Value = &val.v[i]
		}
		labels, ms := ls.labels(set, true), &ls.metrics[set]
		for i, d := range tcpDescs {
			ms[i] = constMetric{desc: d, labels: labels, counter: &val.c[i]}
			emit(&ms[i])
		}
	}
}
