package xds

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	celv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/filters/cel/v3"
	grpclogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	otellogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/open_telemetry/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tracingv3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	telemetry "istio.io/api/telemetry/v1alpha1"

	"github.com/meshlens/meshlens/collector/accesslog"
	"github.com/meshlens/meshlens/controlplane/config"
)

// Telemetry becomes the access loggers and the tracer of the HTTP
// connection managers (and the access loggers of the TCP proxies) of Envoy
// nodes, as istiod writes them:
//
//   - The Telemetries that apply to a proxy are its root namespace's
//     namespace-wide one, its namespace's namespace-wide one, then those of
//     its namespace that select it (selector labels, or targetRefs to the
//     Gateway API Gateway it serves), each overriding the ones before. Of
//     several namespace-wide Telemetries in one namespace the first in key
//     order counts (Istio: the oldest; analysis IST0160).
//   - Access logging: the providers are those named by the last of them
//     that names any for the listener's side (match.mode CLIENT for
//     outbound and gateway listeners, SERVER for inbound ones), each with
//     the filter of the last entry naming it; an entry with disabled: true
//     turns its providers (or those named before it) off.
//   - Tracing: field by field, later entries override earlier ones; the
//     first provider counts. No tracing provider, or disableSpanReporting,
//     means no tracer.
//
// meshlens has no MeshConfig: its providers are built in (see
// config.TelemetryProvider*). meshlens-als and meshlens-otel send to the
// clusters meshlens_als and meshlens_otlp, which every Envoy node gets
// while a Telemetry names their provider and Options has their address.
// grpc-go has neither access logs nor a tracer in its xDS: proxyless
// nodes get none of this.

const (
	alsClusterName  = "meshlens_als"
	otlpClusterName = "meshlens_otlp"
	// defaultTraceSampling is Istio's default (ProxyConfig tracing.sampling).
	defaultTraceSampling = 1.0
	// gatewayNameLabel names, on Gateway API gateway pods, their Gateway.
	gatewayNameLabel = "gateway.networking.k8s.io/gateway-name"
)

// telemetries are the Telemetries that apply to a proxy of namespace ns
// with labels, least specific first.
func (m *model) telemetries(ns string, labels map[string]string) []*telemetry.Telemetry {
	if len(m.telemetry) == 0 {
		return nil
	}
	var out []*telemetry.Telemetry
	namespaceWide := func(want string) {
		for _, o := range m.telemetry {
			if tm := o.Spec.(*telemetry.Telemetry); o.Meta.Namespace == want && config.TelemetryNamespaceWide(tm) {
				out = append(out, tm)
				return
			}
		}
	}
	namespaceWide(m.opts.RootNamespace)
	if ns != m.opts.RootNamespace {
		namespaceWide(ns)
	}
	for _, o := range m.telemetry {
		tm := o.Spec.(*telemetry.Telemetry)
		if o.Meta.Namespace != ns || config.TelemetryNamespaceWide(tm) {
			continue
		}
		if telemetrySelects(tm, labels) {
			out = append(out, tm)
		}
	}
	return out
}

func telemetrySelects(tm *telemetry.Telemetry, labels map[string]string) bool {
	if sel := tm.GetSelector().GetMatchLabels(); len(sel) > 0 {
		return selects(sel, labels)
	}
	refs := tm.GetTargetRefs()
	if r := tm.GetTargetRef(); r != nil {
		refs = append(refs, r)
	}
	for _, r := range refs {
		if r.GetGroup() == "gateway.networking.k8s.io" && r.GetKind() == "Gateway" && labels[gatewayNameLabel] == r.GetName() {
			return true
		}
	}
	return false
}

// logProvider is one access-log provider in effect and its filter.
type logProvider struct {
	name   string
	filter string // CEL, "" for none
}

func modeMatches(m telemetry.WorkloadMode, mode telemetry.WorkloadMode) bool {
	return m == telemetry.WorkloadMode_CLIENT_AND_SERVER || m == mode
}

// accessLogProviders merges the access logging of tms for one side (mode),
// sorted by name.
func accessLogProviders(tms []*telemetry.Telemetry, mode telemetry.WorkloadMode) []logProvider {
	// In scope: the providers the last Telemetry naming any for this side
	// names; each takes the filter of the last entry naming it.
	var inScope []string
	filters := map[string]string{}
	for _, tm := range tms {
		var named []string
		for _, l := range tm.GetAccessLogging() {
			if l.GetMatch() != nil && !modeMatches(l.GetMatch().GetMode(), mode) {
				continue
			}
			for _, p := range l.GetProviders() {
				named = append(named, p.GetName())
				filters[p.GetName()] = l.GetFilter().GetExpression()
			}
		}
		if len(named) > 0 {
			inScope = named
		}
	}
	// Then every entry in order sets or disables its providers, or those
	// the entry before it named when it names none.
	state := map[string]bool{} // provider -> enabled
	var parent []string
	for _, tm := range tms {
		for _, l := range tm.GetAccessLogging() {
			names := make([]string, 0, len(l.GetProviders()))
			for _, p := range l.GetProviders() {
				names = append(names, p.GetName())
			}
			if len(names) == 0 {
				names = parent
			}
			parent = names
			if l.GetMatch() != nil && !modeMatches(l.GetMatch().GetMode(), mode) {
				continue
			}
			for _, n := range names {
				if slices.Contains(inScope, n) {
					state[n] = !l.GetDisabled().GetValue()
				}
			}
		}
	}
	var out []logProvider
	for n, on := range state {
		if on {
			out = append(out, logProvider{name: n, filter: filters[n]})
		}
	}
	slices.SortFunc(out, func(a, b logProvider) int {
		if a.name < b.name {
			return -1
		}
		if a.name > b.name {
			return 1
		}
		return 0
	})
	return out
}

// proxyIdentity is what a proxy's own telemetry says about it: resource
// attributes of its OpenTelemetry access logs and its tracer's service.
type proxyIdentity struct {
	namespace, service, version string
	direction                   string // "outbound" or "inbound"
}

func identityOf(ns string, labels map[string]string, direction string) proxyIdentity {
	svc := labels["service.istio.io/canonical-name"]
	if svc == "" {
		svc = labels["app"]
	}
	if svc == "" {
		svc = labels[gatewayNameLabel] // a Gateway API gateway's pods
	}
	ver := labels["service.istio.io/canonical-revision"]
	if ver == "" {
		ver = labels["version"]
	}
	return proxyIdentity{namespace: ns, service: svc, version: ver, direction: direction}
}

// accessLogs are the access loggers of one listener of an Envoy node: the
// node's namespace and labels (outbound, gateway) or its workload's
// (inbound); tcp for a TCP proxy. Nil for proxyless nodes and without
// Telemetry.
func (t *translator) accessLogs(ns string, labels map[string]string, mode telemetry.WorkloadMode, tcp bool) []*accesslogv3.AccessLog {
	if t.node.Flavour == FlavourGRPC {
		return nil
	}
	tms := t.m.telemetries(ns, labels)
	if len(tms) == 0 {
		return nil
	}
	dir := "outbound"
	if mode == telemetry.WorkloadMode_SERVER {
		dir = "inbound"
	}
	id := identityOf(ns, labels, dir)
	var out []*accesslogv3.AccessLog
	for _, p := range accessLogProviders(tms, mode) {
		al := t.accessLog(p.name, id, tcp)
		if al == nil {
			continue // a provider meshlens does not know or has no address for (analysis says so)
		}
		if p.filter != "" {
			al.Filter = &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ExtensionFilter{
				ExtensionFilter: &accesslogv3.ExtensionFilter{
					Name:       "envoy.access_loggers.extension_filters.cel",
					ConfigType: &accesslogv3.ExtensionFilter_TypedConfig{TypedConfig: mustAny(&celv3.ExpressionFilter{Expression: p.filter})},
				},
			}}
		}
		out = append(out, al)
	}
	return out
}

func envoyGRPC(cluster string) *corev3.GrpcService {
	return &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: cluster}}}
}

// alsLogName is the log_name of meshlens' ALS and OTLP access logs.
const alsLogName = "meshlens"

func (t *translator) accessLog(provider string, id proxyIdentity, tcp bool) *accesslogv3.AccessLog {
	switch provider {
	case config.TelemetryProviderEnvoy:
		return &accesslogv3.AccessLog{Name: "envoy.access_loggers.file", ConfigType: &accesslogv3.AccessLog_TypedConfig{
			TypedConfig: mustAny(&filev3.FileAccessLog{Path: "/dev/stdout"}),
		}}
	case config.TelemetryProviderALS:
		if t.opts.TelemetryALSAddress == "" {
			return nil
		}
		common := &grpclogv3.CommonGrpcAccessLogConfig{
			LogName: alsLogName, TransportApiVersion: corev3.ApiVersion_V3, GrpcService: envoyGRPC(alsClusterName),
		}
		if tcp {
			return &accesslogv3.AccessLog{Name: "envoy.access_loggers.tcp_grpc", ConfigType: &accesslogv3.AccessLog_TypedConfig{
				TypedConfig: mustAny(&grpclogv3.TcpGrpcAccessLogConfig{CommonConfig: common}),
			}}
		}
		// The headers and trailers meshlens' ALS receiver reads (trace
		// context, gRPC), as the README's hand-written config has them.
		return &accesslogv3.AccessLog{Name: "envoy.access_loggers.http_grpc", ConfigType: &accesslogv3.AccessLog_TypedConfig{
			TypedConfig: mustAny(&grpclogv3.HttpGrpcAccessLogConfig{
				CommonConfig:                    common,
				AdditionalRequestHeadersToLog:   []string{"traceparent", "content-type"},
				AdditionalResponseTrailersToLog: []string{"grpc-status"},
			}),
		}}
	case config.TelemetryProviderOTel:
		if t.opts.TelemetryOTLPAddress == "" {
			return nil
		}
		return &accesslogv3.AccessLog{Name: "envoy.access_loggers.open_telemetry", ConfigType: &accesslogv3.AccessLog_TypedConfig{
			TypedConfig: mustAny(&otellogv3.OpenTelemetryAccessLogConfig{
				GrpcService:        envoyGRPC(otlpClusterName),
				LogName:            alsLogName,
				ResourceAttributes: id.resource(),
				Attributes:         otelLogAttributes(id.direction, tcp),
			}),
		}}
	}
	return nil
}

func kvString(k, v string) *commonv1.KeyValue {
	return &commonv1.KeyValue{Key: k, Value: &commonv1.AnyValue{Value: &commonv1.AnyValue_StringValue{StringValue: v}}}
}

// resource names the proxy in its OpenTelemetry access logs, as meshlens'
// collector reads a sender (collector/accesslog).
func (id proxyIdentity) resource() *commonv1.KeyValueList {
	kv := &commonv1.KeyValueList{}
	for _, a := range [][2]string{{accesslog.ResNamespace, id.namespace}, {accesslog.ResService, id.service}, {accesslog.ResVersion, id.version}} {
		if a[1] != "" {
			kv.Values = append(kv.Values, kvString(a[0], a[1]))
		}
	}
	return kv
}

// otelLogAttributes are Envoy command operators under the attribute names
// meshlens' collector reads from OTLP access logs (collector/accesslog).
func otelLogAttributes(direction string, tcp bool) *commonv1.KeyValueList {
	attrs := [][2]string{
		{accesslog.AttrUpstreamCluster, "%UPSTREAM_CLUSTER%"},
		{accesslog.AttrUpstreamHost, "%UPSTREAM_HOST%"},
		{accesslog.AttrDownstreamRemote, "%DOWNSTREAM_REMOTE_ADDRESS%"},
		{accesslog.AttrResponseFlags, "%RESPONSE_FLAGS%"},
		{accesslog.AttrDurationMs, "%DURATION%"},
		{accesslog.AttrBytesReceived, "%BYTES_RECEIVED%"},
		{accesslog.AttrBytesSent, "%BYTES_SENT%"},
		{accesslog.AttrPeerPrincipal, "%DOWNSTREAM_PEER_URI_SAN%"},
		{accesslog.AttrDirection, direction},
	}
	if tcp {
		attrs = append(attrs, [2]string{accesslog.AttrProtocol, "tcp"})
	} else {
		attrs = append(attrs,
			[2]string{accesslog.AttrResponseCode, "%RESPONSE_CODE%"},
			[2]string{accesslog.AttrGRPCStatus, "%GRPC_STATUS_NUMBER%"},
			[2]string{accesslog.AttrMethod, "%REQ(:METHOD)%"},
			[2]string{accesslog.AttrPath, "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"},
			[2]string{accesslog.AttrAuthority, "%REQ(:AUTHORITY)%"},
			[2]string{accesslog.AttrProtocol, "%PROTOCOL%"},
			[2]string{accesslog.AttrContentType, "%REQ(CONTENT-TYPE)%"},
			[2]string{accesslog.AttrRequestID, "%REQ(X-REQUEST-ID)%"},
			[2]string{accesslog.AttrTraceID, "%TRACE_ID%"},
		)
	}
	kv := &commonv1.KeyValueList{}
	for _, a := range attrs {
		kv.Values = append(kv.Values, kvString(a[0], a[1]))
	}
	return kv
}

// traceSpec is the merged tracing of one side.
type traceSpec struct {
	provider  string
	disabled  bool
	sampling  *float64
	tags      map[string]*telemetry.Tracing_CustomTag
	noContext bool
}

// tracing is the HTTP connection manager's tracer for one side of an Envoy
// node, nil for none.
func (t *translator) tracing(ns string, labels map[string]string, mode telemetry.WorkloadMode) *hcm.HttpConnectionManager_Tracing {
	if t.node.Flavour == FlavourGRPC {
		return nil
	}
	var spec traceSpec
	any := false
	for _, tm := range t.m.telemetries(ns, labels) {
		for _, tr := range tm.GetTracing() {
			if tr.GetMatch() != nil && !modeMatches(tr.GetMatch().GetMode(), mode) {
				continue
			}
			any = true
			if ps := tr.GetProviders(); len(ps) > 0 {
				spec.provider = ps[0].GetName()
			}
			if d := tr.GetDisableSpanReporting(); d != nil {
				spec.disabled = d.GetValue()
			}
			if tr.GetCustomTags() != nil {
				spec.tags = tr.GetCustomTags()
			}
			if s := tr.GetRandomSamplingPercentage(); s != nil {
				v := s.GetValue()
				spec.sampling = &v
			}
			if c := tr.GetDisableContextPropagation(); c != nil {
				spec.noContext = c.GetValue()
			}
		}
	}
	if !any || spec.disabled || spec.provider != config.TelemetryProviderOTel || t.opts.TelemetryOTLPAddress == "" {
		return nil
	}
	sampling := defaultTraceSampling
	if spec.sampling != nil {
		sampling = *spec.sampling
	}
	id := identityOf(ns, labels, "")
	service := id.service
	if service == "" {
		service = "unknown"
	}
	if id.namespace != "" {
		service += "." + id.namespace // Istio's service name: the canonical name and namespace
	}
	out := &hcm.HttpConnectionManager_Tracing{
		ClientSampling:  &typev3.Percent{Value: 100},
		OverallSampling: &typev3.Percent{Value: 100},
		RandomSampling:  &typev3.Percent{Value: sampling},
		Provider: &tracev3.Tracing_Http{
			Name: "envoy.tracers.opentelemetry",
			ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(&tracev3.OpenTelemetryConfig{
				GrpcService: envoyGRPC(otlpClusterName),
				ServiceName: service,
			})},
		},
		NoContextPropagation: spec.noContext,
	}
	names := make([]string, 0, len(spec.tags))
	for n := range spec.tags {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if ct := customTag(n, spec.tags[n]); ct != nil {
			out.CustomTags = append(out.CustomTags, ct)
		}
	}
	return out
}

func customTag(name string, tag *telemetry.Tracing_CustomTag) *tracingv3.CustomTag {
	switch x := tag.GetType().(type) {
	case *telemetry.Tracing_CustomTag_Literal:
		return &tracingv3.CustomTag{Tag: name, Type: &tracingv3.CustomTag_Literal_{Literal: &tracingv3.CustomTag_Literal{Value: x.Literal.GetValue()}}}
	case *telemetry.Tracing_CustomTag_Environment:
		return &tracingv3.CustomTag{Tag: name, Type: &tracingv3.CustomTag_Environment_{Environment: &tracingv3.CustomTag_Environment{
			Name: x.Environment.GetName(), DefaultValue: x.Environment.GetDefaultValue(),
		}}}
	case *telemetry.Tracing_CustomTag_Header:
		return &tracingv3.CustomTag{Tag: name, Type: &tracingv3.CustomTag_RequestHeader{RequestHeader: &tracingv3.CustomTag_Header{
			Name: x.Header.GetName(), DefaultValue: x.Header.GetDefaultValue(),
		}}}
	case *telemetry.Tracing_CustomTag_Formatter:
		return &tracingv3.CustomTag{Tag: name, Type: &tracingv3.CustomTag_Value{Value: x.Formatter.GetValue()}}
	}
	return nil
}

// withTelemetry sets an Envoy HTTP connection manager's access loggers and
// tracer for one side of the proxy.
func (t *translator) withTelemetry(m *hcm.HttpConnectionManager, ns string, labels map[string]string, mode telemetry.WorkloadMode) *hcm.HttpConnectionManager {
	m.AccessLog = t.accessLogs(ns, labels, mode, false)
	m.Tracing = t.tracing(ns, labels, mode)
	return m
}

// outboundTelemetry is withTelemetry for the node's client side.
func (t *translator) outboundTelemetry(m *hcm.HttpConnectionManager) *hcm.HttpConnectionManager {
	return t.withTelemetry(m, t.node.Namespace, t.node.Labels, telemetry.WorkloadMode_CLIENT)
}

// telemetryClusters are the clusters of meshlens' receivers that a
// Telemetry of the config sends to, for Envoy nodes.
func (t *translator) telemetryClusters() ([]*clusterv3.Cluster, error) {
	if t.node.Flavour == FlavourGRPC {
		return nil, nil
	}
	var out []*clusterv3.Cluster
	for _, c := range []struct {
		name, addr string
		used       bool
	}{
		{alsClusterName, t.opts.TelemetryALSAddress, t.m.telemetryProviders[config.TelemetryProviderALS]},
		{otlpClusterName, t.opts.TelemetryOTLPAddress, t.m.telemetryProviders[config.TelemetryProviderOTel]},
	} {
		if !c.used || c.addr == "" {
			continue
		}
		cl, err := receiverCluster(c.name, c.addr)
		if err != nil {
			return nil, err
		}
		if err := t.receiverTLS(cl, c.addr); err != nil {
			return nil, err
		}
		out = append(out, cl)
	}
	return out, nil
}

// receiverCluster is an HTTP/2 cluster to one of meshlens' gRPC receivers
// at addr (host:port): STATIC for an IP, STRICT_DNS for a name.
func receiverCluster(name, addr string) (*clusterv3.Cluster, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: address %q: %w", name, addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("cluster %s: address %q: bad port", name, addr)
	}
	typ := clusterv3.Cluster_STRICT_DNS
	if _, err := netip.ParseAddr(host); err == nil {
		typ = clusterv3.Cluster_STATIC
	}
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: typ},
		ConnectTimeout:       durationpb.New(defaultConnectTimeout),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: socketAddress(host, uint32(port)),
			}}}},
		}}},
	}
	if err := setProtocolOptions(c, &corev3.HttpProtocolOptions{}, true); err != nil {
		return nil, fmt.Errorf("cluster %s: %w", name, err)
	}
	return c, nil
}

// inboundTelemetry is withTelemetry for the server side of workload w.
func (t *translator) inboundTelemetry(m *hcm.HttpConnectionManager, w *workload) *hcm.HttpConnectionManager {
	return t.withTelemetry(m, w.namespace, w.labels, telemetry.WorkloadMode_SERVER)
}

// outboundTCPAccessLogs are the access loggers of the node's TCP proxies
// (client side).
func (t *translator) outboundTCPAccessLogs() []*accesslogv3.AccessLog {
	return t.accessLogs(t.node.Namespace, t.node.Labels, telemetry.WorkloadMode_CLIENT, true)
}

// addTelemetry indexes a Telemetry and the providers it names.
func (m *model) addTelemetry(o *config.Object) {
	m.telemetry = append(m.telemetry, o)
	if m.telemetryProviders == nil {
		m.telemetryProviders = map[string]bool{}
	}
	tm := o.Spec.(*telemetry.Telemetry)
	for _, l := range tm.GetAccessLogging() {
		for _, p := range l.GetProviders() {
			m.telemetryProviders[p.GetName()] = true
		}
	}
	for _, tr := range tm.GetTracing() {
		for _, p := range tr.GetProviders() {
			m.telemetryProviders[p.GetName()] = true
		}
	}
}
