package istiometrics

import (
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
	telemetry "istio.io/api/telemetry/v1alpha1"

	"github.com/meshlens/meshlens/controlplane/config"
)

// Telemetry's metrics settings, applied to /metrics/istio as Istio applies
// them to a proxy's stats: each series is reported by a workload (the
// client for reporter="source", the server for reporter="destination"),
// and the Telemetries of the root namespace, then of the workload's
// namespace, then those selecting the workload decide, later ones
// overriding earlier ones, which metrics it reports (disabled) and with
// which labels (tagOverrides). meshlens knows of a reporting workload its
// namespace, canonical service and version: selectors naming other labels
// never match (config analysis says so), as do targetRefs.

// prometheusProvider is the metrics provider /metrics/istio stands for;
// Istio's default metrics provider.
const prometheusProvider = "prometheus"

// descMetric is each exported metric's name in Telemetry.
var descMetric = map[*prometheus.Desc]telemetry.MetricSelector_IstioMetric{
	descRequests:      telemetry.MetricSelector_REQUEST_COUNT,
	descDuration:      telemetry.MetricSelector_REQUEST_DURATION,
	descRequestBytes:  telemetry.MetricSelector_REQUEST_SIZE,
	descResponseBytes: telemetry.MetricSelector_RESPONSE_SIZE,
	descTCPOpened:     telemetry.MetricSelector_TCP_OPENED_CONNECTIONS,
	descTCPClosed:     telemetry.MetricSelector_TCP_CLOSED_CONNECTIONS,
	descTCPSent:       telemetry.MetricSelector_TCP_SENT_BYTES,
	descTCPReceived:   telemetry.MetricSelector_TCP_RECEIVED_BYTES,
}

const nIstioMetrics = int(telemetry.MetricSelector_GRPC_RESPONSE_MESSAGES) + 1

// telemetryView is the Telemetries with metrics of one config snapshot.
type telemetryView struct {
	root string
	tms  []*config.Object // with metrics, in key order
}

// newTelemetryView keeps snap's Telemetries that have metrics; nil when
// none has (the scrape then takes its fast path).
func newTelemetryView(root string, snap *config.Snapshot) *telemetryView {
	v := &telemetryView{root: root}
	for _, o := range snap.OfKind(config.KindTelemetry) {
		if tm, ok := o.Spec.(*telemetry.Telemetry); ok && len(tm.GetMetrics()) > 0 {
			v.tms = append(v.tms, o)
		}
	}
	if len(v.tms) == 0 {
		return nil
	}
	return v
}

// reporterKey is what decides a reporter's settings.
type reporterKey struct {
	mode                        telemetry.WorkloadMode
	namespace, service, version string
}

// tagOp is one tag override in effect.
type tagOp struct {
	remove    bool
	literal   string
	fromLabel string // "" for the literal
}

// reporterSettings are the metrics settings of one reporter.
type reporterSettings struct {
	off      bool // prometheus is not among the providers in effect
	disabled [nIstioMetrics]bool
	tags     [nIstioMetrics]*tagSet // equal sets are one, so a label set's metrics share their rewrite
}

// tagSet is the tag overrides in effect for one metric.
type tagSet struct{ ops map[string]tagOp }

// chain is the Telemetries that apply to a workload, least specific first.
func (v *telemetryView) chain(k reporterKey) []*telemetry.Telemetry {
	var out []*telemetry.Telemetry
	wide := func(ns string) {
		for _, o := range v.tms {
			if tm := o.Spec.(*telemetry.Telemetry); o.Meta.Namespace == ns && config.TelemetryNamespaceWide(tm) {
				out = append(out, tm)
				return
			}
		}
	}
	wide(v.root)
	if k.namespace != v.root {
		wide(k.namespace)
	}
	labels := map[string]string{"app": k.service, "service.istio.io/canonical-name": k.service}
	if k.version != vUnknown {
		labels["version"], labels["service.istio.io/canonical-revision"] = k.version, k.version
	}
	for _, o := range v.tms {
		tm := o.Spec.(*telemetry.Telemetry)
		sel := tm.GetSelector().GetMatchLabels()
		if o.Meta.Namespace != k.namespace || len(sel) == 0 {
			continue // namespace-wide, or a targetRef: no gateway is known
		}
		match := true
		for lk, lv := range sel {
			if got, ok := labels[lk]; !ok || got != lv {
				match = false
				break
			}
		}
		if match {
			out = append(out, tm)
		}
	}
	return out
}

// settings merges the metrics of the chain for one side, as Istio does
// (pilot's mergeMetrics): an entry without providers keeps those in
// effect; overrides apply on top of earlier ones, for the providers of
// their entry.
func (v *telemetryView) settings(k reporterKey) *reporterSettings {
	st := &reporterSettings{}
	providers := []string{prometheusProvider}
	for _, tm := range v.chain(k) {
		for _, m := range tm.GetMetrics() {
			if names := providerNames(m); len(names) > 0 {
				providers = names
			}
			if !slices.Contains(providers, prometheusProvider) {
				continue
			}
			for _, o := range m.GetOverrides() {
				st.override(o, k.mode)
			}
		}
	}
	st.off = !slices.Contains(providers, prometheusProvider)
	for i := range st.tags {
		for j := range i {
			if st.tags[i] != nil && st.tags[j] != nil && maps.Equal(st.tags[i].ops, st.tags[j].ops) {
				st.tags[i] = st.tags[j]
				break
			}
		}
	}
	return st
}

func providerNames(m *telemetry.Metrics) []string {
	var out []string
	for _, p := range m.GetProviders() {
		out = append(out, p.GetName())
	}
	return out
}

func (st *reporterSettings) override(o *telemetry.MetricsOverrides, mode telemetry.WorkloadMode) {
	match := o.GetMatch()
	if match.GetCustomMetric() != "" {
		return // meshlens exports no custom metrics
	}
	if m := match.GetMode(); m != telemetry.WorkloadMode_CLIENT_AND_SERVER && m != mode {
		return
	}
	metrics := []telemetry.MetricSelector_IstioMetric{match.GetMetric()}
	if metrics[0] == telemetry.MetricSelector_ALL_METRICS {
		metrics = metrics[:0]
		for i := 1; i < nIstioMetrics; i++ {
			metrics = append(metrics, telemetry.MetricSelector_IstioMetric(i))
		}
	}
	for _, m := range metrics {
		if int(m) >= nIstioMetrics {
			continue
		}
		if d := o.GetDisabled(); d != nil {
			st.disabled[m] = d.GetValue()
		}
		for name, to := range o.GetTagOverrides() {
			op := tagOp{remove: to.GetOperation() == telemetry.MetricsOverrides_TagOverride_REMOVE}
			if !op.remove {
				var ok bool
				if op.literal, op.fromLabel, ok = config.MetricTagValue(to.GetValue()); !ok || !config.MetricTagName(name) {
					continue // named by config analysis
				}
			}
			if st.tags[m] == nil {
				st.tags[m] = &tagSet{ops: map[string]tagOp{}}
			}
			st.tags[m].ops[name] = op
		}
	}
}

// telemetryFilter applies the settings to one scrape's metrics: it drops
// the disabled ones, rewrites labels, and sums the series whose labels
// become the same (a REMOVE merges series). It never makes more series
// than it is given.
type telemetryFilter struct {
	v        *telemetryView
	settings map[reporterKey]*reporterSettings
	seen     map[string]*mergedMetric
	out      []*mergedMetric
	key      strings.Builder

	// The last label set rewritten, and its rewrite: the metrics of a
	// label set come one after the other, sharing its slice. Holding the
	// slice keeps its array from being reused by another label set.
	lastIn   []*dto.LabelPair
	lastTags *tagSet
	lastOut  []*dto.LabelPair
	lastKey  string
}

type mergedMetric struct {
	m     *constMetric
	owned bool // m's values are this filter's, so they may be added to
}

func newTelemetryFilter(v *telemetryView) *telemetryFilter {
	return &telemetryFilter{v: v, settings: map[reporterKey]*reporterSettings{}, seen: map[string]*mergedMetric{}}
}

func labelValue(labels []*dto.LabelPair, name string) string {
	for _, p := range labels {
		if p.GetName() == name {
			return p.GetValue()
		}
	}
	return ""
}

func (f *telemetryFilter) add(m *constMetric) {
	k := reporterKey{mode: telemetry.WorkloadMode_SERVER, namespace: labelValue(m.labels, "destination_workload_namespace"),
		service: labelValue(m.labels, "destination_canonical_service"), version: labelValue(m.labels, "destination_version")}
	if labelValue(m.labels, "reporter") == vSource {
		k = reporterKey{mode: telemetry.WorkloadMode_CLIENT, namespace: labelValue(m.labels, "source_workload_namespace"),
			service: labelValue(m.labels, "source_canonical_service"), version: labelValue(m.labels, "source_version")}
	}
	st := f.settings[k]
	if st == nil {
		st = f.v.settings(k)
		f.settings[k] = st
	}
	metric := descMetric[m.desc]
	if st.off || st.disabled[metric] {
		return
	}
	tags := st.tags[metric]
	if len(m.labels) == 0 || len(f.lastIn) != len(m.labels) || &f.lastIn[0] != &m.labels[0] || tags != f.lastTags {
		f.lastIn, f.lastTags, f.lastOut = m.labels, tags, m.labels
		if tags != nil {
			f.lastOut = rewriteLabels(m.labels, tags.ops)
		}
		var b strings.Builder
		for _, p := range f.lastOut {
			b.WriteString(p.GetName())
			b.WriteByte(0xfe)
			b.WriteString(p.GetValue())
			b.WriteByte(0xff)
		}
		f.lastKey = b.String()
	}
	if tags != nil {
		m = &constMetric{desc: m.desc, labels: f.lastOut, counter: m.counter, hist: m.hist}
	}
	f.key.Reset()
	f.key.WriteByte(byte(metric)) // one desc per metric
	f.key.WriteString(f.lastKey)
	if g := f.seen[f.key.String()]; g != nil {
		g.add(m)
		return
	}
	g := &mergedMetric{m: m}
	f.seen[f.key.String()] = g
	f.out = append(f.out, g)
}

// rewriteLabels applies tag overrides to a copy of labels, sorted by name.
func rewriteLabels(labels []*dto.LabelPair, tags map[string]tagOp) []*dto.LabelPair {
	out := make([]*dto.LabelPair, 0, len(labels)+len(tags))
	for _, p := range labels {
		op, ok := tags[p.GetName()]
		switch {
		case !ok:
			out = append(out, p)
		case !op.remove:
			out = append(out, upsert(p.GetName(), op, labels))
		}
	}
	for name, op := range tags {
		if !op.remove && !hasLabel(labels, name) {
			out = append(out, upsert(name, op, labels))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out
}

func hasLabel(labels []*dto.LabelPair, name string) bool {
	for _, p := range labels {
		if p.GetName() == name {
			return true
		}
	}
	return false
}

func upsert(name string, op tagOp, labels []*dto.LabelPair) *dto.LabelPair {
	v := op.literal
	if op.fromLabel != "" {
		v = labelValue(labels, op.fromLabel)
	}
	return &dto.LabelPair{Name: proto.String(name), Value: proto.String(v)}
}

// add sums o into g, copying g's values first if they are shared.
func (g *mergedMetric) add(o *constMetric) {
	if !g.owned {
		c := *g.m
		if c.counter != nil {
			c.counter = proto.Clone(c.counter).(*dto.Counter)
		}
		if c.hist != nil {
			c.hist = proto.Clone(c.hist).(*dto.Histogram)
		}
		g.m, g.owned = &c, true
	}
	if o.counter != nil && g.m.counter != nil {
		g.m.counter.Value = proto.Float64(g.m.counter.GetValue() + o.counter.GetValue())
	}
	if h, oh := g.m.hist, o.hist; h != nil && oh != nil {
		h.SampleCount = proto.Uint64(h.GetSampleCount() + oh.GetSampleCount())
		h.SampleSum = proto.Float64(h.GetSampleSum() + oh.GetSampleSum())
		for i, b := range h.GetBucket() {
			if i < len(oh.GetBucket()) {
				b.CumulativeCount = proto.Uint64(b.GetCumulativeCount() + oh.GetBucket()[i].GetCumulativeCount())
			}
		}
	}
}

func (f *telemetryFilter) flush(ch chan<- prometheus.Metric) {
	for _, g := range f.out {
		ch <- g.m
	}
}
