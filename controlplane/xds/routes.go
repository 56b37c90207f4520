package xds

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlens/meshlens/controlplane/config"
)

const (
	faultFilter = "envoy.filters.http.fault"
	corsFilter  = "envoy.filters.http.cors"
)

// Istio's default retry policy for Envoy sidecars when a route names none.
const istioDefaultRetryOn = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"

func regexpQuote(s string) string { return regexp.QuoteMeta(s) }

// virtualHost builds the routes for one service port, from the service's
// VirtualService or a default route to the subset-less cluster.
func (t *translator) virtualHost(svc *service, port *networking.ServicePort) (*routev3.VirtualHost, error) {
	vh := &routev3.VirtualHost{
		Name:    fmt.Sprintf("%s:%d", svc.host, port.Number),
		Domains: hostDomains(svc.host, port.Number),
	}
	if o := t.m.vss[svc.host]; o != nil {
		vs := o.Spec.(*networking.VirtualService)
		for i, hr := range vs.Http {
			routes, err := t.httpRoutes(svc, port, o.Meta.Namespace, hr)
			if err != nil {
				return nil, fmt.Errorf("VirtualService %s/%s http[%d]: %w", o.Meta.Namespace, o.Meta.Name, i, err)
			}
			vh.Routes = append(vh.Routes, routes...)
		}
		if len(vh.Routes) > 0 {
			return vh, nil
		}
	}
	vh.Routes = []*routev3.Route{{
		Name:  "default",
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: t.routeAction(&routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: outboundName(port.Number, "", svc.host)},
		}, nil, nil, svc.host, port.Number, "")},
	}}
	return vh, nil
}

// hostDomains are the authorities a client may use: the FQDN with and
// without port, and for Kubernetes-style names the short forms Istio adds.
func hostDomains(host string, port uint32) []string {
	p := strconv.FormatUint(uint64(port), 10)
	out := []string{host, host + ":" + p}
	if i := strings.Index(host, ".svc."); i > 0 {
		short := host[:i] // name.namespace
		out = append(out, short+".svc", short+".svc:"+p, short, short+":"+p)
		if j := strings.IndexByte(short, '.'); j > 0 {
			out = append(out, short[:j], short[:j]+":"+p)
		}
	}
	return out
}

// routeAction adds the timeout, retry and hash policy defaults.
func (t *translator) routeAction(ra *routev3.RouteAction, timeout *durationpb.Duration, retries *networking.HTTPRetry, host string, port uint32, subset string) *routev3.RouteAction {
	grpc := t.node.Flavour == FlavourGRPC
	if timeout != nil {
		ra.Timeout = timeout
		if grpc {
			// grpc-go takes the route deadline from max_stream_duration, not timeout.
			ra.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: timeout}
		}
	} else if !grpc {
		ra.Timeout = durationpb.New(0) // Istio disables Envoy's 15s default
	}
	switch {
	case retries != nil && retries.Attempts == 0:
		// attempts 0 disables retries
	case retries != nil:
		rp := &routev3.RetryPolicy{
			NumRetries: wrapperspb.UInt32(uint32(retries.Attempts)),
		}
		rp.RetryOn, rp.RetriableStatusCodes = retryOn(retries.RetryOn)
		if rp.RetryOn == "" {
			rp.RetryOn = istioDefaultRetryOn
		}
		if retries.PerTryTimeout != nil {
			rp.PerTryTimeout = retries.PerTryTimeout
		}
		if retries.Backoff != nil {
			rp.RetryBackOff = &routev3.RetryPolicy_RetryBackOff{BaseInterval: retries.Backoff}
		}
		ra.RetryPolicy = rp
	case !grpc:
		ra.RetryPolicy = &routev3.RetryPolicy{RetryOn: istioDefaultRetryOn, NumRetries: wrapperspb.UInt32(2)}
	}
	ra.HashPolicy = t.hashPolicy(host, port, subset)
	return ra
}

// retryOn splits an Istio retryOn list as istiod does: HTTP status codes
// ("503") are Envoy's retriable_status_codes, retried on the condition
// retriable-status-codes; the other entries are Envoy's retry_on.
func retryOn(s string) (string, []uint32) {
	if s == "" {
		return "", nil
	}
	var on []string
	var codes []uint32
	for _, c := range strings.Split(s, ",") {
		c = strings.TrimSpace(c)
		if n, err := strconv.ParseUint(c, 10, 32); err == nil {
			codes = append(codes, uint32(n))
			continue
		}
		on = append(on, c)
	}
	if len(codes) > 0 && !slices.Contains(on, "retriable-status-codes") {
		on = append(on, "retriable-status-codes")
	}
	return strings.Join(on, ","), codes
}

// hashPolicy is the route side of a consistent-hash DestinationRule. grpc-go
// has no cookie hash policy, so for gRPC nodes an httpCookie hashes the whole
// "cookie" header: sticky for a client that keeps sending the same cookies.
func (t *translator) hashPolicy(host string, port uint32, subset string) []*routev3.RouteAction_HashPolicy {
	tp := t.m.trafficPolicy(host, port, subset)
	ch := tp.GetLoadBalancer().GetConsistentHash()
	if ch == nil {
		return nil
	}
	grpc := t.node.Flavour == FlavourGRPC
	header := func(name string) []*routev3.RouteAction_HashPolicy {
		return []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
			Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: name},
		}}}
	}
	switch k := ch.HashKey.(type) {
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
		return header(k.HttpHeaderName)
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
		if grpc {
			return header("cookie")
		}
		return []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{
			Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: k.HttpCookie.Name, Path: k.HttpCookie.Path, Ttl: k.HttpCookie.Ttl},
		}}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
		return []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
			ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true},
		}}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
		return []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{
			QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: k.HttpQueryParameterName},
		}}}
	}
	return nil
}

// httpRoutes translates one VirtualService HTTP route: one Envoy route per
// match (Istio ORs the matches), all with the same action.
func (t *translator) httpRoutes(svc *service, port *networking.ServicePort, ns string, hr *networking.HTTPRoute) ([]*routev3.Route, error) {
	if hr.Delegate != nil {
		return t.delegateRoutes(svc, port, ns, hr)
	}
	proto, err := t.routeTemplate(svc, port, ns, hr)
	if err != nil {
		return nil, err
	}
	matches := hr.Match
	if len(matches) == 0 {
		matches = []*networking.HTTPMatchRequest{nil}
	}
	var out []*routev3.Route
	for i, m := range matches {
		if m != nil && m.Port != 0 && m.Port != port.Number {
			continue
		}
		if m != nil && len(m.SourceLabels) > 0 && !selects(m.SourceLabels, t.node.Labels) {
			continue
		}
		if m != nil && m.SourceNamespace != "" && m.SourceNamespace != t.node.Namespace {
			continue
		}
		if m != nil && len(m.Gateways) > 0 && !t.matchesGateway(m.Gateways, ns) {
			continue
		}
		rm, err := routeMatch(m)
		if err != nil {
			return nil, fmt.Errorf("match[%d]: %w", i, err)
		}
		r := cloneRoute(proto)
		r.Match = rm
		r.Name = hr.Name
		if m != nil && m.Name != "" {
			r.Name = hr.Name + "." + m.Name
		}
		out = append(out, r)
	}
	return out, nil
}

// routeTemplate is everything of a route except its match.
func (t *translator) routeTemplate(svc *service, port *networking.ServicePort, ns string, hr *networking.HTTPRoute) (*routev3.Route, error) {
	r := &routev3.Route{}
	switch {
	case hr.Redirect != nil:
		rd := &routev3.RedirectAction{HostRedirect: hr.Redirect.Authority}
		switch {
		case hr.Redirect.Uri != "":
			rd.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: hr.Redirect.Uri}
		case hr.Redirect.PrefixRewrite != "":
			rd.PathRewriteSpecifier = &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: hr.Redirect.PrefixRewrite}
		}
		switch s := hr.Redirect.Scheme; s {
		case "":
		case "https":
			rd.SchemeRewriteSpecifier = &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true}
		default:
			rd.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: s}
		}
		if p := hr.Redirect.GetPort(); p != 0 {
			rd.PortRedirect = p
		}
		if hr.Redirect.RedirectCode != 0 {
			rd.ResponseCode = redirectCode(hr.Redirect.RedirectCode)
		}
		r.Action = &routev3.Route_Redirect{Redirect: rd}
	case hr.DirectResponse != nil:
		dr := &routev3.DirectResponseAction{Status: hr.DirectResponse.Status}
		if b := hr.DirectResponse.Body; b != nil {
			if s := b.GetString_(); s != "" {
				dr.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: s}}
			} else if by := b.GetBytes(); len(by) > 0 {
				dr.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: by}}
			}
		}
		r.Action = &routev3.Route_DirectResponse{DirectResponse: dr}
	default:
		ra, err := t.destinations(svc, port, ns, hr)
		if err != nil {
			return nil, err
		}
		if rw := hr.Rewrite; rw != nil {
			if rw.Uri != "" {
				ra.PrefixRewrite = rw.Uri
			}
			if rr := rw.UriRegexRewrite; rr != nil {
				ra.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: rr.Match}, Substitution: rr.Rewrite}
			}
			if rw.Authority != "" {
				ra.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: rw.Authority}
			}
		}
		mirrors, err := t.mirrorPolicies(svc, port, ns, hr)
		if err != nil {
			return nil, err
		}
		ra.RequestMirrorPolicies = mirrors
		r.Action = &routev3.Route_Route{Route: ra}
	}
	if cp := hr.CorsPolicy; cp != nil && t.node.Flavour != FlavourGRPC {
		if r.TypedPerFilterConfig == nil {
			r.TypedPerFilterConfig = map[string]*anypb.Any{}
		}
		r.TypedPerFilterConfig[corsFilter] = mustAny(corsPolicy(cp))
	}
	if h := hr.Headers; h != nil {
		r.RequestHeadersToAdd, r.RequestHeadersToRemove = headerOps(h.Request)
		r.ResponseHeadersToAdd, r.ResponseHeadersToRemove = headerOps(h.Response)
	}
	if hr.Fault != nil {
		f, err := faultConfig(hr.Fault)
		if err != nil {
			return nil, err
		}
		if r.TypedPerFilterConfig == nil {
			r.TypedPerFilterConfig = map[string]*anypb.Any{}
		}
		r.TypedPerFilterConfig[faultFilter] = f
	}
	return r, nil
}

func redirectCode(c uint32) routev3.RedirectAction_RedirectResponseCode {
	switch c {
	case 302:
		return routev3.RedirectAction_FOUND
	case 303:
		return routev3.RedirectAction_SEE_OTHER
	case 307:
		return routev3.RedirectAction_TEMPORARY_REDIRECT
	case 308:
		return routev3.RedirectAction_PERMANENT_REDIRECT
	}
	return routev3.RedirectAction_MOVED_PERMANENTLY
}

// destinations builds the cluster or weighted clusters of a route.
func (t *translator) destinations(svc *service, port *networking.ServicePort, ns string, hr *networking.HTTPRoute) (*routev3.RouteAction, error) {
	type dest struct {
		cluster, host, subset string
		port                  uint32
		weight                uint32
		headers               *networking.Headers
	}
	var ds []dest
	for i, rd := range hr.Route {
		if rd.Destination == nil {
			return nil, fmt.Errorf("route[%d]: no destination", i)
		}
		host := t.m.fqdn(rd.Destination.Host, ns)
		p, err := t.destinationPort(host, rd.Destination.GetPort().GetNumber(), svc, port)
		if err != nil {
			return nil, fmt.Errorf("route[%d]: %w", i, err)
		}
		w := rd.Weight
		if len(hr.Route) == 1 && w == 0 {
			w = 100
		}
		if w <= 0 {
			continue // Istio drops zero-weight destinations
		}
		t.routeTo(outboundName(p, rd.Destination.Subset, host))
		ds = append(ds, dest{
			cluster: outboundName(p, rd.Destination.Subset, host),
			host:    host, subset: rd.Destination.Subset, port: p,
			weight: uint32(w), headers: rd.Headers,
		})
	}
	if len(ds) == 0 {
		return nil, fmt.Errorf("no destination with a positive weight")
	}
	if len(ds) == 1 {
		ra := t.routeAction(&routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ds[0].cluster}},
			hr.Timeout, hr.Retries, ds[0].host, ds[0].port, ds[0].subset)
		return ra, nil
	}
	wc := &routev3.WeightedCluster{}
	for _, d := range ds {
		cw := &routev3.WeightedCluster_ClusterWeight{Name: d.cluster, Weight: wrapperspb.UInt32(d.weight)}
		if d.headers != nil {
			cw.RequestHeadersToAdd, cw.RequestHeadersToRemove = headerOps(d.headers.Request)
			cw.ResponseHeadersToAdd, cw.ResponseHeadersToRemove = headerOps(d.headers.Response)
		}
		wc.Clusters = append(wc.Clusters, cw)
	}
	return t.routeAction(&routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}},
		hr.Timeout, hr.Retries, ds[0].host, ds[0].port, ds[0].subset), nil
}

// destinationPort is the port a destination means: explicit, or the port
// being routed when the destination is the routed service, or the
// destination service's only port.
func (t *translator) destinationPort(host string, explicit uint32, routed *service, routedPort *networking.ServicePort) (uint32, error) {
	if explicit != 0 {
		return explicit, nil
	}
	if host == routed.host {
		return routedPort.Number, nil
	}
	if s := t.m.services[host]; s != nil && len(s.ports) == 1 {
		return s.ports[0].Number, nil
	}
	return routedPort.Number, nil
}

func headerOps(h *networking.Headers_HeaderOperations) ([]*corev3.HeaderValueOption, []string) {
	if h == nil {
		return nil, nil
	}
	var add []*corev3.HeaderValueOption
	for _, k := range sortedKeys(h.Set) {
		add = append(add, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: k, Value: h.Set[k]},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	for _, k := range sortedKeys(h.Add) {
		add = append(add, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: k, Value: h.Add[k]},
			AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD,
		})
	}
	return add, slices.Clone(h.Remove)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func routeMatch(m *networking.HTTPMatchRequest) (*routev3.RouteMatch, error) {
	rm := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if m == nil {
		return rm, nil
	}
	if m.Uri != nil {
		switch u := m.Uri.MatchType.(type) {
		case *networking.StringMatch_Exact:
			rm.PathSpecifier = &routev3.RouteMatch_Path{Path: u.Exact}
		case *networking.StringMatch_Prefix:
			rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: u.Prefix}
		case *networking.StringMatch_Regex:
			rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: u.Regex}}
		}
		if m.IgnoreUriCase {
			rm.CaseSensitive = wrapperspb.Bool(false)
		}
	}
	for _, name := range sortedKeys(m.Headers) {
		sm, err := stringMatcher(m.Headers[name])
		if err != nil {
			return nil, fmt.Errorf("header %q: %w", name, err)
		}
		rm.Headers = append(rm.Headers, headerMatcher(strings.ToLower(name), sm, false))
	}
	for _, name := range sortedKeys(m.WithoutHeaders) {
		hm := &routev3.HeaderMatcher{Name: strings.ToLower(name), HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}, InvertMatch: true}
		if sm := m.WithoutHeaders[name]; sm != nil && sm.MatchType != nil {
			s, err := stringMatcher(sm)
			if err != nil {
				return nil, fmt.Errorf("withoutHeaders %q: %w", name, err)
			}
			hm = headerMatcher(strings.ToLower(name), s, true)
		}
		rm.Headers = append(rm.Headers, hm)
	}
	for _, pseudo := range []struct {
		name string
		sm   *networking.StringMatch
	}{{":method", m.Method}, {":authority", m.Authority}, {":scheme", m.Scheme}} {
		if pseudo.sm == nil {
			continue
		}
		sm, err := stringMatcher(pseudo.sm)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", pseudo.name, err)
		}
		rm.Headers = append(rm.Headers, headerMatcher(pseudo.name, sm, false))
	}
	for _, name := range sortedKeys(m.QueryParams) {
		sm, err := stringMatcher(m.QueryParams[name])
		if err != nil {
			return nil, fmt.Errorf("queryParams %q: %w", name, err)
		}
		rm.QueryParameters = append(rm.QueryParameters, &routev3.QueryParameterMatcher{
			Name: name, QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: sm},
		})
	}
	return rm, nil
}

func stringMatcher(s *networking.StringMatch) (*matcherv3.StringMatcher, error) {
	switch m := s.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return exact(m.Exact), nil
	case *networking.StringMatch_Prefix:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: m.Prefix}}, nil
	case *networking.StringMatch_Regex:
		if _, err := regexp.Compile(m.Regex); err != nil {
			return nil, fmt.Errorf("regex %q: %w", m.Regex, err)
		}
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: m.Regex}}}, nil
	}
	// An empty match means "present", as in Istio.
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".*"}}}, nil
}

func headerMatcher(name string, sm *matcherv3.StringMatcher, invert bool) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}, InvertMatch: invert}
}

// faultConfig is the per-route fault filter configuration.
func faultConfig(f *networking.HTTPFaultInjection) (*anypb.Any, error) {
	out := &faultv3.HTTPFault{}
	if d := f.Delay; d != nil {
		//lint:ignore SA1019 the deprecated integer percent is still honoured, as Istio does
		fd := &faultcommon.FaultDelay{Percentage: percent(d.Percentage, d.Percent)}
		switch x := d.HttpDelayType.(type) {
		case *networking.HTTPFaultInjection_Delay_FixedDelay:
			fd.FaultDelaySecifier = &faultcommon.FaultDelay_FixedDelay{FixedDelay: x.FixedDelay}
		default:
			return nil, fmt.Errorf("fault delay: only fixedDelay is supported")
		}
		out.Delay = fd
	}
	if a := f.Abort; a != nil {
		fa := &faultv3.FaultAbort{Percentage: percent(a.Percentage, 0)}
		switch x := a.ErrorType.(type) {
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			fa.ErrorType = &faultv3.FaultAbort_HttpStatus{HttpStatus: uint32(x.HttpStatus)}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			code, err := grpcCode(x.GrpcStatus)
			if err != nil {
				return nil, fmt.Errorf("fault abort: %w", err)
			}
			fa.ErrorType = &faultv3.FaultAbort_GrpcStatus{GrpcStatus: code}
		default:
			return nil, fmt.Errorf("fault abort: httpStatus or grpcStatus is required")
		}
		out.Abort = fa
	}
	return anypb.New(out)
}

// percent converts Istio's 0-100 double to a per-million fraction; absent
// means every request, as in Istio.
func percent(p *networking.Percent, legacy int32) *typev3.FractionalPercent {
	v := 100.0
	switch {
	case p != nil:
		v = p.Value
	case legacy > 0:
		v = float64(legacy)
	}
	return &typev3.FractionalPercent{Numerator: uint32(v * 10000), Denominator: typev3.FractionalPercent_MILLION}
}

func grpcCode(s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if strings.EqualFold(strings.ReplaceAll(c.String(), "_", ""), strings.ReplaceAll(s, "_", "")) {
			return uint32(c), nil
		}
	}
	return 0, fmt.Errorf("unknown gRPC status %q", s)
}

func cloneRoute(r *routev3.Route) *routev3.Route { return proto.Clone(r).(*routev3.Route) }

// matchesGateway reports whether a match's gateways, written in namespace
// ns, include the gateway whose routes are being built (the mesh: "mesh").
func (t *translator) matchesGateway(gateways []string, ns string) bool {
	for _, g := range gateways {
		if g == config.MeshGateway {
			if t.matchGateway == "" {
				return true
			}
			continue
		}
		if gns, name, ok := config.GatewayRef(g, ns); ok && gns+"/"+name == t.matchGateway {
			return true
		}
	}
	return false
}

// mirrorPolicies are a route's traffic mirrors, as Istio translates them:
// mirror with mirrorPercentage (or the deprecated mirrorPercent; all
// requests when neither is set), and each of mirrors with its percentage.
// The mirrored cluster is routed to like any destination.
func (t *translator) mirrorPolicies(svc *service, port *networking.ServicePort, ns string, hr *networking.HTTPRoute) ([]*routev3.RouteAction_RequestMirrorPolicy, error) {
	type mirror struct {
		d   *networking.Destination
		pct *networking.Percent
	}
	var ms []mirror
	if hr.Mirror != nil {
		pct := hr.MirrorPercentage
		//lint:ignore SA1019 the deprecated integer percent is still honoured, as Istio does
		if legacy := hr.MirrorPercent; pct == nil && legacy != nil {
			pct = &networking.Percent{Value: float64(legacy.GetValue())}
		}
		ms = append(ms, mirror{hr.Mirror, pct})
	}
	for _, m := range hr.Mirrors {
		ms = append(ms, mirror{m.Destination, m.Percentage})
	}
	var out []*routev3.RouteAction_RequestMirrorPolicy
	for i, m := range ms {
		if m.d == nil {
			return nil, fmt.Errorf("mirrors[%d]: no destination", i)
		}
		host := t.m.fqdn(m.d.Host, ns)
		p, err := t.destinationPort(host, m.d.GetPort().GetNumber(), svc, port)
		if err != nil {
			return nil, fmt.Errorf("mirror %s: %w", host, err)
		}
		name := outboundName(p, m.d.Subset, host)
		t.routeTo(name)
		out = append(out, &routev3.RouteAction_RequestMirrorPolicy{
			Cluster:         name,
			RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: percent(m.pct, 0)},
		})
	}
	return out, nil
}

// corsPolicy is a route's CORS policy for Envoy's CORS filter.
func corsPolicy(cp *networking.CorsPolicy) *corsv3.CorsPolicy {
	out := &corsv3.CorsPolicy{
		AllowMethods:     strings.Join(cp.AllowMethods, ","),
		AllowHeaders:     strings.Join(cp.AllowHeaders, ","),
		ExposeHeaders:    strings.Join(cp.ExposeHeaders, ","),
		AllowCredentials: cp.AllowCredentials,
		FilterEnabled:    &corev3.RuntimeFractionalPercent{DefaultValue: percent(nil, 0)},
	}
	if cp.MaxAge != nil {
		out.MaxAge = strconv.FormatInt(int64(cp.MaxAge.AsDuration().Seconds()), 10)
	}
	//lint:ignore SA1019 the deprecated exact origins are still honoured, as Istio does
	for _, o := range cp.AllowOrigin {
		out.AllowOriginStringMatch = append(out.AllowOriginStringMatch, exact(o))
	}
	for _, o := range cp.AllowOrigins {
		if sm, err := stringMatcher(o); err == nil {
			out.AllowOriginStringMatch = append(out.AllowOriginStringMatch, sm)
		}
	}
	if cp.UnmatchedPreflights == networking.CorsPolicy_IGNORE {
		out.ForwardNotMatchingPreflights = wrapperspb.Bool(false)
	}
	return out
}

// delegateRoutes are the routes a root VirtualService's http route hands
// to a delegate VirtualService (one without hosts), as Istio merges them:
// each delegate route in order, its matches ANDed with the root route's
// (a delegate's uri must lie within the root's: a prefix of the root's
// prefix, or a conflicting pair is dropped), its destinations read in the
// delegate's namespace. A delegate that does not exist sends nothing.
func (t *translator) delegateRoutes(svc *service, port *networking.ServicePort, ns string, hr *networking.HTTPRoute) ([]*routev3.Route, error) {
	dns := hr.Delegate.Namespace
	if dns == "" {
		dns = ns
	}
	o := t.m.delegates[dns+"/"+hr.Delegate.Name]
	if o == nil {
		return nil, nil
	}
	var out []*routev3.Route
	for i, dh := range o.Spec.(*networking.VirtualService).Http {
		if dh.Delegate != nil {
			continue // no nested delegation (refused by validation)
		}
		merged := proto.Clone(dh).(*networking.HTTPRoute)
		merged.Match = mergeMatches(hr.Match, dh.Match)
		if merged.Match == nil && (len(hr.Match) > 0 || len(dh.Match) > 0) {
			continue // every pair of matches conflicts
		}
		if merged.Name == "" {
			merged.Name = hr.Name
		}
		routes, err := t.httpRoutes(svc, port, dns, merged)
		if err != nil {
			return nil, fmt.Errorf("delegate VirtualService %s/%s http[%d]: %w", dns, hr.Delegate.Name, i, err)
		}
		out = append(out, routes...)
	}
	return out, nil
}

// mergeMatches ANDs a root route's matches with a delegate route's: every
// pair, the delegate's conditions with the root's for what the delegate
// leaves unset. Nil when one side has none and so does the other, or when
// every pair conflicts.
func mergeMatches(root, del []*networking.HTTPMatchRequest) []*networking.HTTPMatchRequest {
	switch {
	case len(root) == 0:
		return del
	case len(del) == 0:
		return root
	}
	var out []*networking.HTTPMatchRequest
	for _, r := range root {
		for _, d := range del {
			m := proto.Clone(d).(*networking.HTTPMatchRequest)
			switch {
			case m.Uri == nil:
				m.Uri = r.Uri
			case r.Uri != nil && !uriWithin(m.Uri, r.Uri):
				continue
			}
			for _, f := range []struct {
				dst **networking.StringMatch
				src *networking.StringMatch
			}{{&m.Method, r.Method}, {&m.Authority, r.Authority}, {&m.Scheme, r.Scheme}} {
				if *f.dst == nil {
					*f.dst = f.src
				}
			}
			m.Headers = mergeStringMatches(r.Headers, m.Headers)
			m.WithoutHeaders = mergeStringMatches(r.WithoutHeaders, m.WithoutHeaders)
			m.QueryParams = mergeStringMatches(r.QueryParams, m.QueryParams)
			if m.Port == 0 {
				m.Port = r.Port
			}
			if len(m.SourceLabels) == 0 {
				m.SourceLabels = r.SourceLabels
			}
			if m.SourceNamespace == "" {
				m.SourceNamespace = r.SourceNamespace
			}
			if len(m.Gateways) == 0 {
				m.Gateways = r.Gateways
			}
			if r.Name != "" && m.Name != "" {
				m.Name = r.Name + "-" + m.Name
			} else if m.Name == "" {
				m.Name = r.Name
			}
			out = append(out, m)
		}
	}
	return out
}

// uriWithin reports whether every path the delegate's uri match accepts
// is one the root's accepts (exact within prefix, prefix within prefix,
// equal exacts); regexes are taken as within.
func uriWithin(d, r *networking.StringMatch) bool {
	rp, rIsPrefix := r.MatchType.(*networking.StringMatch_Prefix)
	switch dm := d.MatchType.(type) {
	case *networking.StringMatch_Prefix:
		return rIsPrefix && strings.HasPrefix(dm.Prefix, rp.Prefix)
	case *networking.StringMatch_Exact:
		if rIsPrefix {
			return strings.HasPrefix(dm.Exact, rp.Prefix)
		}
		re, ok := r.MatchType.(*networking.StringMatch_Exact)
		return !ok || re.Exact == dm.Exact
	}
	return true
}

// mergeStringMatches is the root's map with the delegate's entries over it.
func mergeStringMatches(root, del map[string]*networking.StringMatch) map[string]*networking.StringMatch {
	if len(root) == 0 {
		return del
	}
	out := make(map[string]*networking.StringMatch, len(root)+len(del))
	for k, v := range root {
		out[k] = v
	}
	for k, v := range del {
		out[k] = v
	}
	return out
}
