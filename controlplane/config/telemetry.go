package config

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	telemetry "istio.io/api/telemetry/v1alpha1"
	typev1beta1 "istio.io/api/type/v1beta1"
)

// KindTelemetry is Istio's Telemetry (telemetry.istio.io): which access-log
// and tracing providers the proxies of the root namespace, a namespace or
// some workloads use, with log filters and trace sampling.
const KindTelemetry = "Telemetry"

var telemetryVersions = []string{"telemetry.istio.io/v1", "telemetry.istio.io/v1alpha1"}

// Telemetry providers meshlens knows. Istio names providers in MeshConfig's
// extensionProviders; meshlens has no MeshConfig, so these built-in names
// stand for its own receivers and Envoy's standard output.
const (
	// TelemetryProviderEnvoy is Envoy's file access log on /dev/stdout,
	// Istio's built-in provider of the same name.
	TelemetryProviderEnvoy = "envoy"
	// TelemetryProviderALS sends access logs to meshlens' gRPC Access Log
	// Service (--als): Envoy's http_grpc / tcp_grpc loggers.
	TelemetryProviderALS = "meshlens-als"
	// TelemetryProviderOTel sends access logs (Envoy's open_telemetry
	// logger) and traces (Envoy's OpenTelemetry tracer) to meshlens'
	// OTLP/gRPC receiver (--otlp-grpc).
	TelemetryProviderOTel = "meshlens-otel"
)

// TelemetryProviderLogs and TelemetryProviderTraces report whether a
// provider name is one meshlens can send access logs, or traces, to.
func TelemetryProviderLogs(name string) bool {
	return name == TelemetryProviderEnvoy || name == TelemetryProviderALS || name == TelemetryProviderOTel
}

// TelemetryProviderTraces: see TelemetryProviderLogs.
func TelemetryProviderTraces(name string) bool { return name == TelemetryProviderOTel }

// celParser parses access-log filter expressions as Istio's webhook does
// (syntax only: attributes are Envoy's, known when the proxy evaluates them).
type celParser struct {
	once sync.Once
	env  *cel.Env
	err  error
}

func (p *celParser) parse(expr string) error {
	p.once.Do(func() { p.env, p.err = cel.NewEnv() })
	if p.err != nil {
		return fmt.Errorf("CEL environment: %w", p.err)
	}
	if _, iss := p.env.Parse(expr); iss != nil && iss.Err() != nil {
		return iss.Err()
	}
	return nil
}

func (v *istioValidator) telemetry(o *Object) []FieldError {
	tm, ok := o.Spec.(*telemetry.Telemetry)
	if !ok {
		return []FieldError{{Object: o.Key(), Message: fmt.Sprintf("spec is %T, want Telemetry", o.Spec)}}
	}
	fe := &fieldErrs{object: o.Key()}
	checkGeneric(tm, fe)
	set := 0
	for _, b := range []bool{tm.GetSelector() != nil, tm.GetTargetRef() != nil, len(tm.GetTargetRefs()) > 0} {
		if b {
			set++
		}
	}
	if set > 1 {
		fe.add("selector", "only one of targetRefs or workloadSelector can be set")
	}
	for k, val := range tm.GetSelector().GetMatchLabels() {
		if k == "" {
			fe.add("selector.matchLabels", "empty key is not supported in selector: %q", k+"="+val)
		}
		if strings.Contains(k, "*") || strings.Contains(val, "*") {
			fe.add("selector.matchLabels", "wildcard is not supported in selector: %q", k+"="+val)
		}
	}
	if r := tm.GetTargetRef(); r != nil {
		validPolicyTargetRef(r, "targetRef", fe)
	}
	for i, r := range tm.GetTargetRefs() {
		validPolicyTargetRef(r, indexPath("targetRefs", i), fe)
	}
	for i, l := range tm.GetAccessLogging() {
		p := indexPath("accessLogging", i)
		if f := l.GetFilter(); f != nil {
			if err := v.cel.parse(f.GetExpression()); err != nil {
				fe.add(joinPath(p, "filter.expression"), "must be a valid CEL expression, %v", err)
			}
		}
		validProviderRefs(l.GetProviders(), p, fe)
	}
	for i, t := range tm.GetTracing() {
		p := indexPath("tracing", i)
		validProviderRefs(t.GetProviders(), p, fe)
		if s := t.GetRandomSamplingPercentage(); s != nil && !(s.GetValue() >= 0 && s.GetValue() <= 100) {
			fe.add(joinPath(p, "randomSamplingPercentage"), "randomSamplingPercentage must be in range [0.0, 100.0]")
		}
		for _, name := range sortedTagNames(t.GetCustomTags()) {
			tag := t.GetCustomTags()[name]
			tp := keyPath(joinPath(p, "customTags"), name)
			if name == "" {
				fe.add(tp, "tag name may not be empty")
			}
			switch x := tag.GetType().(type) {
			case nil:
				fe.add(tp, "tag %q may not have a nil value", name)
			case *telemetry.Tracing_CustomTag_Literal:
				if x.Literal.GetValue() == "" {
					fe.add(joinPath(tp, "literal.value"), "literal tag value may not be empty")
				}
			case *telemetry.Tracing_CustomTag_Header:
				if x.Header.GetName() == "" {
					fe.add(joinPath(tp, "header.name"), "header tag name may not be empty")
				}
			case *telemetry.Tracing_CustomTag_Environment:
				if x.Environment.GetName() == "" {
					fe.add(joinPath(tp, "environment.name"), "environment tag name may not be empty")
				}
			}
		}
	}
	for i, m := range tm.GetMetrics() {
		mp := indexPath("metrics", i)
		validProviderRefs(m.GetProviders(), mp, fe)
		if d := m.GetReportingInterval(); d != nil {
			positive(d, joinPath(mp, "reportingInterval"), fe)
		}
		for j, o := range m.GetOverrides() {
			op := indexPath(joinPath(mp, "overrides"), j)
			if o == nil {
				fe.add(op, "overrides may not be null")
				continue
			}
			if cm, ok := o.GetMatch().GetMetricMatch().(*telemetry.MetricSelector_CustomMetric); ok && cm.CustomMetric == "" {
				fe.add(joinPath(op, "match.customMetric"), "customMetric may not be empty")
			}
			for _, name := range tagNames(o.GetTagOverrides()) {
				to := o.GetTagOverrides()[name]
				tp := keyPath(joinPath(op, "tagOverrides"), name)
				switch {
				case name == "":
					fe.add(joinPath(op, "tagOverrides"), "tagOverrides.name may not be empty")
				case to == nil:
					fe.add(tp, "tagOverrides may not be null")
				case to.GetOperation() == telemetry.MetricsOverrides_TagOverride_UPSERT && to.GetValue() == "":
					fe.add(joinPath(tp, "value"), "tagOverrides.value must be set when operation is UPSERT")
				case to.GetOperation() == telemetry.MetricsOverrides_TagOverride_REMOVE && to.GetValue() != "":
					fe.add(joinPath(tp, "value"), "tagOverrides.value may only be set when operation is UPSERT")
				}
			}
		}
	}
	return fe.errs
}

func validProviderRefs(ps []*telemetry.ProviderRef, path string, fe *fieldErrs) {
	for j, p := range ps {
		if p.GetName() == "" {
			fe.add(indexPath(joinPath(path, "providers"), j)+".name", "providers.name may not be empty")
		}
	}
}

// allowedTargetRefKinds are the group/kind pairs Istio's webhook accepts in
// a policy's targetRefs ("" is the core group).
var allowedTargetRefKinds = []string{"/Service", "networking.istio.io/ServiceEntry", "gateway.networking.k8s.io/Gateway", "gateway.networking.k8s.io/GatewayClass"}

func validPolicyTargetRef(r *typev1beta1.PolicyTargetReference, path string, fe *fieldErrs) {
	if r.GetName() == "" {
		fe.add(joinPath(path, "name"), "targetRef name must be set")
	}
	if r.GetNamespace() != "" {
		fe.add(joinPath(path, "namespace"), "targetRef namespace must not be set; cross namespace referencing is not supported")
	}
	group := r.GetGroup()
	if group == "core" {
		group = ""
	}
	if !slices.Contains(allowedTargetRefKinds, group+"/"+r.GetKind()) {
		fe.add(joinPath(path, "kind"), "targetRef must be to a Service, ServiceEntry, Gateway or GatewayClass but was %s/%s", r.GetGroup(), r.GetKind())
	}
}

// analyzeTelemetry reports what istioctl analyze does about Telemetries
// (IST0157: access logging without providers, which does nothing; IST0160:
// two namespace-wide Telemetries in one namespace) and what meshlens cannot
// do: providers it does not know (IST0101: meshlens has no MeshConfig, only
// its built-in providers), a tracing provider that does not trace, and
// targetRefs other than a Gateway API Gateway, which meshlens' proxies do
// not match.
func (v *istioValidator) analyzeTelemetry(o *Object, sn *Snapshot) []Warning {
	tm, ok := o.Spec.(*telemetry.Telemetry)
	if !ok {
		return nil
	}
	w := &warns{object: o.Key()}
	if TelemetryNamespaceWide(tm) {
		var others []string
		for _, other := range sn.OfKind(KindTelemetry) {
			if other.Key() != o.Key() && other.Meta.Namespace == o.Meta.Namespace && TelemetryNamespaceWide(other.Spec.(*telemetry.Telemetry)) {
				others = append(others, other.Key())
			}
		}
		if len(others) > 0 {
			w.add(CodeMultipleTelemetriesWithoutWorkloadSelectors, "",
				"The Telemetries %s and %s in namespace %q have no workload selector, which can lead to undefined behavior (meshlens uses the first in key order)",
				o.Key(), strings.Join(others, ", "), o.Meta.Namespace)
		}
	}
	for i, l := range tm.GetAccessLogging() {
		p := indexPath("accessLogging", i)
		if len(l.GetProviders()) == 0 && !l.GetDisabled().GetValue() {
			w.add(CodeInvalidTelemetryProvider, p+".providers",
				"The Telemetry %s in namespace %q with empty providers will be ignored (meshlens has no default providers)", o.Meta.Name, o.Meta.Namespace)
		}
		for j, pr := range l.GetProviders() {
			if n := pr.GetName(); n != "" && !TelemetryProviderLogs(n) {
				w.add(CodeReferencedResourceNotFound, indexPath(p+".providers", j)+".name",
					"Referenced provider not found: %q: meshlens knows the access-log providers %q, %q and %q; this one is ignored", n, TelemetryProviderEnvoy, TelemetryProviderALS, TelemetryProviderOTel)
			}
		}
	}
	for i, t := range tm.GetTracing() {
		p := indexPath("tracing", i)
		for j, pr := range t.GetProviders() {
			n := pr.GetName()
			switch {
			case n == "" || TelemetryProviderTraces(n):
			case TelemetryProviderLogs(n):
				w.add(CodeReferencedResourceNotFound, indexPath(p+".providers", j)+".name",
					"provider %q writes access logs, it does not trace: the tracing provider is %q", n, TelemetryProviderOTel)
			default:
				w.add(CodeReferencedResourceNotFound, indexPath(p+".providers", j)+".name",
					"Referenced provider not found: %q: meshlens' tracing provider is %q; spans are not reported", n, TelemetryProviderOTel)
			}
			if j > 0 {
				w.add(CodeSchemaWarning, indexPath(p+".providers", j), "multiple providers is not currently supported: only the first is used")
			}
		}
	}
	if len(tm.GetTracing()) > 1 {
		w.add(CodeSchemaWarning, "tracing", "multiple tracing is not currently supported: later entries override earlier ones")
	}
	// Proxy metrics are not configured: meshlens derives Istio's standard
	// metrics itself (/metrics/istio) from the telemetry it receives, and
	// applies there what a request record lets it (istiometrics). Each
	// setting it cannot apply is named, so its author knows.
	if len(tm.GetMetrics()) > 0 {
		for _, k := range sortedKeys(tm.GetSelector().GetMatchLabels()) {
			if !slices.Contains(MetricSelectorLabels, k) {
				w.add(CodeSchemaWarning, keyPath("selector.matchLabels", k), "metrics not applied to /metrics/istio: its series know a workload's canonical service (app) and version only, not label %q", k)
			}
		}
		if tm.GetTargetRef() != nil || len(tm.GetTargetRefs()) > 0 {
			w.add(CodeSchemaWarning, "targetRefs", "metrics not applied to /metrics/istio: its series do not know which gateway reported them")
		}
	}
	for i, m := range tm.GetMetrics() {
		mp := indexPath("metrics", i)
		for j, pr := range m.GetProviders() {
			if n := pr.GetName(); n != "" && n != "prometheus" {
				w.add(CodeReferencedResourceNotFound, indexPath(joinPath(mp, "providers"), j)+".name",
					"Referenced provider not found: %q: meshlens serves Istio's standard metrics itself, for Prometheus (/metrics/istio); no other metrics provider is configured, and where prometheus is not among the providers in effect /metrics/istio has no series of the workloads in scope", n)
			}
		}
		if m.GetReportingInterval() != nil {
			w.add(CodeSchemaWarning, joinPath(mp, "reportingInterval"), "not applied: meshlens configures no proxy metrics; /metrics/istio is as fresh as the telemetry meshlens receives")
		}
		for j, o := range m.GetOverrides() {
			op := indexPath(joinPath(mp, "overrides"), j)
			metric := o.GetMatch().GetMetric()
			if c := o.GetMatch().GetCustomMetric(); c != "" {
				w.add(CodeSchemaWarning, joinPath(op, "match.customMetric"), "not applied: /metrics/istio has Istio's standard metrics only, no %q", c)
				continue
			}
			if metric == telemetry.MetricSelector_GRPC_REQUEST_MESSAGES || metric == telemetry.MetricSelector_GRPC_RESPONSE_MESSAGES {
				w.add(CodeSchemaWarning, joinPath(op, "match.metric"), "not applied: meshlens does not export %s (its records do not count gRPC messages)", metric)
				continue
			}
			for _, name := range tagNames(o.GetTagOverrides()) {
				to := o.GetTagOverrides()[name]
				tp := keyPath(joinPath(op, "tagOverrides"), name)
				if to.GetOperation() != telemetry.MetricsOverrides_TagOverride_UPSERT {
					continue
				}
				if !MetricTagName(name) {
					w.add(CodeSchemaWarning, tp, "not applied: %q is not a Prometheus label name", name)
				} else if _, _, ok := MetricTagValue(to.GetValue()); !ok {
					w.add(CodeSchemaWarning, joinPath(tp, "value"), "not applied: meshlens evaluates a string literal ('x') or one of %s, not %q", strings.Join(sortedKeys(MetricTagAttributes), ", "), to.GetValue())
				}
			}
		}
	}
	unmatched := func(r *typev1beta1.PolicyTargetReference, field string) {
		if r.GetGroup() != "gateway.networking.k8s.io" || r.GetKind() != "Gateway" {
			w.add(CodeReferencedResourceNotFound, field,
				"meshlens attaches Telemetry by targetRefs to Gateway API Gateways only (proxies labelled gateway.networking.k8s.io/gateway-name); %s/%s %s applies to no proxy", r.GetGroup(), r.GetKind(), r.GetName())
		}
	}
	if r := tm.GetTargetRef(); r != nil {
		unmatched(r, "targetRef")
	}
	for i, r := range tm.GetTargetRefs() {
		unmatched(r, indexPath("targetRefs", i))
	}
	return w.out
}

// TelemetryNamespaceWide reports whether a Telemetry applies to every
// proxy of its namespace (no selector, no targetRefs).
func TelemetryNamespaceWide(tm *telemetry.Telemetry) bool {
	return len(tm.GetSelector().GetMatchLabels()) == 0 && tm.GetTargetRef() == nil && len(tm.GetTargetRefs()) == 0
}

func sortedTagNames(m map[string]*telemetry.Tracing_CustomTag) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// tagNames are a metrics override's tag names, sorted.
func tagNames(m map[string]*telemetry.MetricsOverrides_TagOverride) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// MetricTagAttributes are the attributes a metrics tagOverrides value may
// name that meshlens can evaluate for /metrics/istio: those its series
// keep, each the label whose value it is.
var MetricTagAttributes = map[string]string{
	"response.code":        "response_code",
	"response.grpc_status": "grpc_response_status",
}

// MetricTagValue evaluates a tagOverrides UPSERT value the way meshlens can:
// a CEL string literal ('x' or "x") is its text, an attribute of
// MetricTagAttributes is the label holding it. ok is false for any other
// expression.
func MetricTagValue(expr string) (literal, fromLabel string, ok bool) {
	e := strings.TrimSpace(expr)
	if len(e) >= 2 && (e[0] == '\'' || e[0] == '"') && e[len(e)-1] == e[0] && !strings.ContainsAny(e[1:len(e)-1], `'"\`) {
		return e[1 : len(e)-1], "", true
	}
	if l, found := MetricTagAttributes[e]; found {
		return "", l, true
	}
	return "", "", false
}

// MetricTagName reports whether name can be a Prometheus label name: a
// tag meshlens can add to /metrics/istio.
func MetricTagName(name string) bool {
	if name == "" || strings.HasPrefix(name, "__") {
		return false
	}
	for i, r := range name {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// MetricSelectorLabels are the workload labels a Telemetry's selector may
// match for its metrics to apply in /metrics/istio: a request record knows
// a workload's canonical service (app) and version, no other label.
var MetricSelectorLabels = []string{"app", "version", "service.istio.io/canonical-name", "service.istio.io/canonical-revision"}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
