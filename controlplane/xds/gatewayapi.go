package xds

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshlens/meshlens/controlplane/config"
)

// Gateway API objects are translated as istiod translates them: first
// into the Istio objects that mean the same (gatewayAPIObjects), which
// then go through the one translator every Gateway and VirtualService goes
// through.
//
//   - Only Gateways of a GatewayClass whose controllerName is meshlens'
//     (config.GatewayControllerName) are programmed, and only routes'
//     parentRefs to those (or to Services); a backendRef to a Service of
//     another namespace is followed when a ReferenceGrant there allows it.
//   - A Gateway becomes one Istio Gateway per listener, selecting the
//     gateway proxies labelled gateway.networking.k8s.io/gateway-name:
//     <name> (the label istiod's deployed gateways carry). Its name,
//     "<gateway>~<listener>", cannot clash with an Istio Gateway's.
//   - The HTTPRoutes and GRPCRoutes attached to a listener (parentRef to
//     the Gateway, sectionName/port, allowed by its allowedRoutes) become
//     one VirtualService per listener and hostname, bound to it.
//   - The routes attached to a Service (GAMMA) become one VirtualService
//     for the Service's host, for every sidecar and proxyless client.
//
// Rules of all routes of one VirtualService are ordered by Gateway API's
// precedence (exact path, longest prefix, method, most headers, most query
// parameters; then route key and rule order), one VirtualService route per
// match. A VirtualService of the same host wins over routes for the mesh,
// as analysis reports (IST0109).

// gatewayAPIObjects converts the snapshot's Gateway API objects.
func gatewayAPIObjects(snap *config.Snapshot, fqdn func(host, ns string) string) []*config.Object {
	gateways := snap.OfKind(config.KindKubernetesGateway)
	routes := append(snap.OfKind(config.KindHTTPRoute), snap.OfKind(config.KindGRPCRoute)...)
	if len(gateways) == 0 && len(routes) == 0 {
		return nil
	}
	var out []*config.Object
	for _, g := range gateways {
		if config.ServesGateway(snap, g) {
			out = append(out, istioGateways(snap, g)...)
		}
	}
	type vsKey struct{ ns, gateway, host string }
	entries := map[vsKey][]*gwRule{}
	var keys []vsKey
	add := func(k vsKey, rs []*gwRule) {
		if _, ok := entries[k]; !ok {
			keys = append(keys, k)
		}
		entries[k] = append(entries[k], rs...)
	}
	for _, o := range routes {
		r := normalizeRoute(o, fqdn, func(ref gatewayv1.BackendObjectReference) bool {
			return config.BackendPermitted(snap, o.Kind, o.Meta.Namespace, ref)
		})
		for _, pr := range r.parents {
			ns := o.Meta.Namespace
			if pr.Namespace != nil {
				ns = string(*pr.Namespace)
			}
			var port uint32
			if pr.Port != nil {
				port = uint32(*pr.Port)
			}
			switch config.ParentKind(pr) {
			case "ServiceEntry":
				if se := snap.Get(config.KindServiceEntry, ns, string(pr.Name)); se != nil {
					for _, h := range se.Spec.(*networking.ServiceEntry).Hosts {
						add(vsKey{ns: ns, host: fqdn(h, ns)}, r.forPort(port))
					}
				}
			case "Service":
				add(vsKey{ns: ns, host: fqdn(string(pr.Name), ns)}, r.forPort(port))
			case "Gateway":
				g := snap.Get(config.KindKubernetesGateway, ns, string(pr.Name))
				if g == nil || !config.ServesGateway(snap, g) {
					continue // absent, or another controller's
				}
				for _, l := range g.Spec.(*gatewayv1.GatewaySpec).Listeners {
					if pr.SectionName != nil && *pr.SectionName != l.Name || pr.Port != nil && *pr.Port != l.Port ||
						!config.ListenerAllows(l, g.Meta.Namespace, o.Meta.Namespace, config.WireKind(o.Kind)) {
						continue
					}
					for _, h := range config.ListenerHostnames(l, r.hostnames) {
						add(vsKey{ns: g.Meta.Namespace, gateway: g.Meta.Namespace + "/" + listenerGatewayName(g.Meta.Name, l.Name), host: h}, r.forPort(0))
					}
				}
			}
		}
	}
	for _, k := range keys {
		rules := entries[k]
		slices.SortStableFunc(rules, func(a, b *gwRule) int { return a.rank.compare(b.rank) })
		vs := &networking.VirtualService{Hosts: []string{k.host}}
		if k.gateway != "" {
			vs.Gateways = []string{k.gateway}
		}
		for _, r := range rules {
			vs.Http = append(vs.Http, r.route)
		}
		name := "gamma~" + k.host
		if k.gateway != "" {
			name = strings.TrimPrefix(k.gateway, k.ns+"/") + "~" + k.host
		}
		out = append(out, &config.Object{APIVersion: "networking.istio.io/v1", Kind: config.KindVirtualService,
			Meta: config.Meta{Namespace: k.ns, Name: name}, Spec: vs})
	}
	return out
}

func listenerGatewayName(gateway string, listener gatewayv1.SectionName) string {
	return gateway + "~" + string(listener)
}

// istioGateways are a Gateway API Gateway's listeners as Istio Gateways.
// An HTTPS listener's certificate is its first certificateRef, as istiod
// names it (GatewayAPICredentialName); one of another namespace that no
// ReferenceGrant allows leaves the listener out.
func istioGateways(snap *config.Snapshot, g *config.Object) []*config.Object {
	spec := g.Spec.(*gatewayv1.GatewaySpec)
	var out []*config.Object
	for _, l := range spec.Listeners {
		// Only HTTP and HTTPS listeners carry routes (analysis says so
		// of the others); HTTPS needs a certificate.
		if l.Protocol != gatewayv1.HTTPProtocolType && (l.Protocol != gatewayv1.HTTPSProtocolType || l.TLS == nil || len(l.TLS.CertificateRefs) == 0) {
			continue
		}
		host := "*"
		if l.Hostname != nil && *l.Hostname != "" {
			host = string(*l.Hostname)
		}
		s := &networking.Server{
			Port:  &networking.Port{Number: uint32(l.Port), Name: string(l.Name), Protocol: string(l.Protocol)},
			Hosts: []string{"*/" + host},
		}
		if l.Protocol == gatewayv1.HTTPSProtocolType {
			ns, name, permitted, _ := config.CertificateRef(snap, g.Meta.Namespace, l)
			if !permitted {
				continue
			}
			s.Tls = &networking.ServerTLSSettings{Mode: networking.ServerTLSSettings_SIMPLE, CredentialName: GatewayAPICredentialName(ns, name)}
		}
		out = append(out, &config.Object{APIVersion: "networking.istio.io/v1", Kind: config.KindGateway,
			Meta: config.Meta{Namespace: g.Meta.Namespace, Name: listenerGatewayName(g.Meta.Name, l.Name)},
			Spec: &networking.Gateway{Selector: map[string]string{config.GatewayNameLabel: g.Meta.Name}, Servers: []*networking.Server{s}}})
	}
	return out
}

// gwRoute is an HTTPRoute or GRPCRoute in the shape both translate
// through: HTTP rules (a GRPCRoute's method matches are path matches).
type gwRoute struct {
	parents   []gatewayv1.ParentReference
	hostnames []gatewayv1.Hostname
	rules     []*gwRule
}

// gwRule is one VirtualService route made of one match of a route's rule,
// with its precedence.
type gwRule struct {
	route *networking.HTTPRoute
	rank  rank
}

// forPort is the route's rules for a parent: its matches limited to port
// when a Service parentRef names one (0: all ports), as copies.
func (r *gwRoute) forPort(port uint32) []*gwRule {
	out := make([]*gwRule, len(r.rules))
	for i, g := range r.rules {
		cp := *g
		if port != 0 {
			hr := proto.Clone(g.route).(*networking.HTTPRoute)
			if len(hr.Match) == 0 {
				hr.Match = []*networking.HTTPMatchRequest{{}}
			}
			for _, m := range hr.Match {
				m.Port = port
			}
			cp.route = hr
		}
		out[i] = &cp
	}
	return out
}

// rank orders rules by Gateway API's precedence; lower first.
type rank struct {
	pathKind  int // 0 exact, 1 regular expression, 2 prefix
	prefixLen int
	method    bool
	headers   int
	query     int
	key       string // route key
	rule, seq int
}

func (a rank) compare(b rank) int {
	return cmp.Or(
		cmp.Compare(a.pathKind, b.pathKind),
		-cmp.Compare(a.prefixLen, b.prefixLen),
		-cmp.Compare(boolInt(a.method), boolInt(b.method)),
		-cmp.Compare(a.headers, b.headers),
		-cmp.Compare(a.query, b.query),
		strings.Compare(a.key, b.key),
		cmp.Compare(a.rule, b.rule),
		cmp.Compare(a.seq, b.seq),
	)
}

// pathMatch is one Gateway API path match as the VirtualService matches
// it needs. A PathPrefix matches whole path elements ("/foo" matches
// "/foo" and "/foo/bar", not "/foobar"): an exact match of the path and a
// prefix match of the path and "/", which grpc-go and Envoy both match.
type pathMatch struct {
	uri    *networking.StringMatch // nil: any path
	prefix string                  // for a prefix half: the matched prefix with its trailing "/"
	exact  string                  // for the exact half of a PathPrefix: the path
	rank   rank
}

func httpPathMatches(p *gatewayv1.HTTPPathMatch) []pathMatch {
	typ, val := gatewayv1.PathMatchPathPrefix, "/"
	if p != nil {
		if p.Type != nil {
			typ = *p.Type
		}
		if p.Value != nil {
			val = *p.Value
		}
	}
	switch typ {
	case gatewayv1.PathMatchExact:
		return []pathMatch{{uri: &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: val}}, rank: rank{pathKind: 0}}}
	case gatewayv1.PathMatchRegularExpression:
		return []pathMatch{{uri: &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: val}}, rank: rank{pathKind: 1}}}
	}
	trimmed := strings.TrimRight(val, "/")
	r := rank{pathKind: 2, prefixLen: len(trimmed)}
	if trimmed == "" {
		return []pathMatch{{prefix: "/", rank: r}}
	}
	return []pathMatch{
		{uri: &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: trimmed}}, exact: trimmed, rank: r},
		{uri: &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: trimmed + "/"}}, prefix: trimmed + "/", rank: r},
	}
}

// grpcPathMatch is a GRPCRoute method match as a path match: gRPC calls
// are POSTs to /package.Service/Method.
func grpcPathMatch(m *gatewayv1.GRPCMethodMatch) pathMatch {
	if m == nil {
		return pathMatch{prefix: "/", rank: rank{pathKind: 2}}
	}
	svc, meth := "", ""
	if m.Service != nil {
		svc = *m.Service
	}
	if m.Method != nil {
		meth = *m.Method
	}
	if m.Type != nil && *m.Type == gatewayv1.GRPCMethodMatchRegularExpression {
		svcRe, methRe := cmp.Or(svc, `[^/]+`), cmp.Or(meth, `[^/]+`)
		return pathMatch{uri: &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: "/" + svcRe + "/" + methRe}}, rank: rank{pathKind: 1}}
	}
	switch {
	case svc != "" && meth != "":
		return pathMatch{uri: &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: "/" + svc + "/" + meth}}, rank: rank{pathKind: 0}}
	case svc != "":
		return pathMatch{uri: &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: "/" + svc + "/"}}, prefix: "/" + svc + "/", rank: rank{pathKind: 2, prefixLen: len(svc) + 2}}
	}
	return pathMatch{uri: &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: "/[^/]+/" + regexp.QuoteMeta(meth)}}, rank: rank{pathKind: 1}}
}

func stringMatch(typ string, value string) *networking.StringMatch {
	if typ == "RegularExpression" {
		return &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: value}}
	}
	return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: value}}
}

func typeOf[T ~string](p *T) string {
	if p == nil {
		return ""
	}
	return string(*p)
}

// ruleParts is one Gateway API rule in the terms of both route kinds.
type ruleParts struct {
	filters  []gatewayv1.HTTPRouteFilter
	backends []gatewayv1.HTTPBackendRef
	timeouts *gatewayv1.HTTPRouteTimeouts
	retry    *gatewayv1.HTTPRouteRetry
}

// normalizeRoute turns an HTTPRoute or GRPCRoute into VirtualService
// routes, one per path match, each with its rank.
func normalizeRoute(o *config.Object, fqdn func(host, ns string) string, permitted func(gatewayv1.BackendObjectReference) bool) *gwRoute {
	r := &gwRoute{}
	key := o.Key()
	ns := o.Meta.Namespace
	type oneMatch struct {
		paths []pathMatch
		base  *networking.HTTPMatchRequest
		rank  rank
	}
	addRule := func(i int, name string, matches []oneMatch, parts ruleParts) {
		for j, m := range matches {
			for k, pm := range m.paths {
				im := proto.Clone(m.base).(*networking.HTTPMatchRequest)
				im.Uri = pm.uri
				rk := m.rank
				rk.pathKind, rk.prefixLen = pm.rank.pathKind, pm.rank.prefixLen
				rk.key, rk.rule, rk.seq = key, i, j*2+k
				hr := translateRule(parts, pm, ns, fqdn, permitted)
				hr.Name = fmt.Sprintf("%s.%s.%s", ns, o.Meta.Name, name)
				if !isEmptyMatch(im) {
					hr.Match = []*networking.HTTPMatchRequest{im}
				}
				r.rules = append(r.rules, &gwRule{route: hr, rank: rk})
			}
		}
	}
	ruleName := func(n *gatewayv1.SectionName, i int) string {
		if n != nil && *n != "" {
			return string(*n)
		}
		return fmt.Sprintf("rule%d", i)
	}
	switch spec := o.Spec.(type) {
	case *gatewayv1.HTTPRouteSpec:
		r.parents, r.hostnames = spec.ParentRefs, spec.Hostnames
		for i, rule := range spec.Rules {
			ms := rule.Matches
			if len(ms) == 0 {
				ms = []gatewayv1.HTTPRouteMatch{{}}
			}
			var matches []oneMatch
			for _, m := range ms {
				om := oneMatch{paths: httpPathMatches(m.Path), base: &networking.HTTPMatchRequest{}}
				for _, h := range m.Headers {
					if om.base.Headers == nil {
						om.base.Headers = map[string]*networking.StringMatch{}
					}
					om.base.Headers[strings.ToLower(string(h.Name))] = stringMatch(typeOf(h.Type), h.Value)
				}
				for _, q := range m.QueryParams {
					if om.base.QueryParams == nil {
						om.base.QueryParams = map[string]*networking.StringMatch{}
					}
					om.base.QueryParams[string(q.Name)] = stringMatch(typeOf(q.Type), q.Value)
				}
				if m.Method != nil {
					om.base.Method = &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: string(*m.Method)}}
				}
				om.rank = rank{method: m.Method != nil, headers: len(m.Headers), query: len(m.QueryParams)}
				matches = append(matches, om)
			}
			addRule(i, ruleName(rule.Name, i), matches, ruleParts{filters: rule.Filters, backends: rule.BackendRefs, timeouts: rule.Timeouts, retry: rule.Retry})
		}
	case *gatewayv1.GRPCRouteSpec:
		r.parents, r.hostnames = spec.ParentRefs, spec.Hostnames
		for i, rule := range spec.Rules {
			ms := rule.Matches
			if len(ms) == 0 {
				ms = []gatewayv1.GRPCRouteMatch{{}}
			}
			var matches []oneMatch
			for _, m := range ms {
				om := oneMatch{paths: []pathMatch{grpcPathMatch(m.Method)}, base: &networking.HTTPMatchRequest{}}
				for _, h := range m.Headers {
					if om.base.Headers == nil {
						om.base.Headers = map[string]*networking.StringMatch{}
					}
					om.base.Headers[strings.ToLower(string(h.Name))] = stringMatch(typeOf(h.Type), h.Value)
				}
				om.rank = rank{headers: len(m.Headers)}
				matches = append(matches, om)
			}
			parts := ruleParts{}
			for _, f := range rule.Filters {
				parts.filters = append(parts.filters, gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterType(f.Type),
					RequestHeaderModifier: f.RequestHeaderModifier, ResponseHeaderModifier: f.ResponseHeaderModifier, RequestMirror: f.RequestMirror})
			}
			for _, b := range rule.BackendRefs {
				hb := gatewayv1.HTTPBackendRef{BackendRef: b.BackendRef}
				for _, f := range b.Filters {
					hb.Filters = append(hb.Filters, gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterType(f.Type),
						RequestHeaderModifier: f.RequestHeaderModifier, ResponseHeaderModifier: f.ResponseHeaderModifier})
				}
				parts.backends = append(parts.backends, hb)
			}
			addRule(i, ruleName(rule.Name, i), matches, parts)
		}
	}
	return r
}

func isEmptyMatch(m *networking.HTTPMatchRequest) bool {
	return m.Uri == nil && len(m.Headers) == 0 && len(m.QueryParams) == 0 && m.Method == nil && m.Port == 0
}

// translateRule is a rule's action for one path match: its backends,
// filters and timeouts as a VirtualService route. Filters missing the
// field of their type (refused by validation) are left out. A rule with no backend
// of positive weight (and no redirect) answers 500, as Gateway API says.
func translateRule(parts ruleParts, pm pathMatch, ns string, fqdn func(host, ns string) string, permitted func(gatewayv1.BackendObjectReference) bool) *networking.HTTPRoute {
	hr := &networking.HTTPRoute{}
	// prefixValue is what a ReplacePrefixMatch value replaces this path
	// match's matched part with: the whole path for an exact half, the
	// prefix with its "/" for a prefix half.
	prefixValue := func(repl string) string {
		if pm.prefix != "" {
			return strings.TrimRight(repl, "/") + "/"
		}
		return repl
	}
	headers := func(f *gatewayv1.HTTPHeaderFilter) *networking.Headers_HeaderOperations {
		if f == nil {
			return nil
		}
		ops := &networking.Headers_HeaderOperations{Remove: f.Remove}
		for _, h := range f.Set {
			if ops.Set == nil {
				ops.Set = map[string]string{}
			}
			ops.Set[strings.ToLower(string(h.Name))] = h.Value
		}
		for _, h := range f.Add {
			if ops.Add == nil {
				ops.Add = map[string]string{}
			}
			ops.Add[strings.ToLower(string(h.Name))] = h.Value
		}
		return ops
	}
	for _, f := range parts.filters {
		switch f.Type {
		case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
			if hr.Headers == nil {
				hr.Headers = &networking.Headers{}
			}
			hr.Headers.Request = headers(f.RequestHeaderModifier)
		case gatewayv1.HTTPRouteFilterResponseHeaderModifier:
			if hr.Headers == nil {
				hr.Headers = &networking.Headers{}
			}
			hr.Headers.Response = headers(f.ResponseHeaderModifier)
		case gatewayv1.HTTPRouteFilterRequestMirror:
			m := f.RequestMirror
			if m == nil || !permitted(m.BackendRef) {
				continue // another namespace's, and no ReferenceGrant allows it
			}
			mp := &networking.HTTPMirrorPolicy{Destination: destinationOf(m.BackendRef, ns, fqdn)}
			switch {
			case m.Percent != nil:
				mp.Percentage = &networking.Percent{Value: float64(*m.Percent)}
			case m.Fraction != nil:
				den := int32(100)
				if m.Fraction.Denominator != nil {
					den = *m.Fraction.Denominator
				}
				mp.Percentage = &networking.Percent{Value: 100 * float64(m.Fraction.Numerator) / float64(den)}
			}
			hr.Mirrors = append(hr.Mirrors, mp)
		case gatewayv1.HTTPRouteFilterRequestRedirect:
			rd := f.RequestRedirect
			if rd == nil {
				continue
			}
			out := &networking.HTTPRedirect{RedirectCode: 302}
			if rd.StatusCode != nil {
				out.RedirectCode = uint32(*rd.StatusCode)
			}
			if rd.Scheme != nil {
				out.Scheme = *rd.Scheme
			}
			if rd.Hostname != nil {
				out.Authority = string(*rd.Hostname)
			}
			if rd.Port != nil {
				out.RedirectPort = &networking.HTTPRedirect_Port{Port: uint32(*rd.Port)}
			}
			if p := rd.Path; p != nil {
				if p.ReplaceFullPath != nil {
					out.Uri = *p.ReplaceFullPath
				} else if p.ReplacePrefixMatch != nil {
					out.PrefixRewrite = prefixValue(*p.ReplacePrefixMatch)
				}
			}
			hr.Redirect = out
		case gatewayv1.HTTPRouteFilterURLRewrite:
			rw := f.URLRewrite
			if rw == nil {
				continue
			}
			out := &networking.HTTPRewrite{}
			if rw.Hostname != nil {
				out.Authority = string(*rw.Hostname)
			}
			if p := rw.Path; p != nil {
				if p.ReplaceFullPath != nil {
					out.UriRegexRewrite = &networking.RegexRewrite{Match: "^/.*$", Rewrite: *p.ReplaceFullPath}
				} else if p.ReplacePrefixMatch != nil {
					out.Uri = prefixValue(*p.ReplacePrefixMatch)
				}
			}
			hr.Rewrite = out
		}
	}
	if hr.Redirect != nil {
		return hr
	}
	for _, b := range parts.backends {
		w := int32(1)
		if b.Weight != nil {
			w = *b.Weight
		}
		if w <= 0 || !permitted(b.BackendObjectReference) {
			continue // no traffic; a cross-namespace backend needs a ReferenceGrant
		}
		rd := &networking.HTTPRouteDestination{Destination: destinationOf(b.BackendObjectReference, ns, fqdn), Weight: w}
		for _, f := range b.Filters {
			if rd.Headers == nil {
				rd.Headers = &networking.Headers{}
			}
			switch f.Type {
			case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
				rd.Headers.Request = headers(f.RequestHeaderModifier)
			case gatewayv1.HTTPRouteFilterResponseHeaderModifier:
				rd.Headers.Response = headers(f.ResponseHeaderModifier)
			}
		}
		hr.Route = append(hr.Route, rd)
	}
	if len(hr.Route) == 0 {
		hr.DirectResponse = &networking.HTTPDirectResponse{Status: 500}
		hr.Rewrite, hr.Mirrors = nil, nil
		return hr
	}
	if rt := parts.retry; rt != nil {
		// As istiod: connection errors are retried, and the codes listed.
		retryOn := []string{"connect-failure", "refused-stream", "unavailable", "cancelled"}
		for _, c := range rt.Codes {
			retryOn = append(retryOn, strconv.Itoa(int(c)))
		}
		hr.Retries = &networking.HTTPRetry{Attempts: 2, RetryOn: strings.Join(retryOn, ",")}
		if rt.Attempts != nil {
			hr.Retries.Attempts = int32(*rt.Attempts)
		}
		if rt.Backoff != nil {
			if d, err := config.GatewayAPIDuration(*rt.Backoff); err == nil {
				hr.Retries.Backoff = durationpb.New(d)
			}
		}
	}
	if t := parts.timeouts; t != nil {
		if t.Request != nil {
			if d, err := config.GatewayAPIDuration(*t.Request); err == nil && d > 0 {
				hr.Timeout = durationpb.New(d)
			}
		}
		if t.BackendRequest != nil {
			if d, err := config.GatewayAPIDuration(*t.BackendRequest); err == nil && d > 0 {
				// Each backend request's timeout, as istiod: with retries
				// each attempt's, without them the request's (there is
				// only one backend request).
				if hr.Retries != nil && hr.Retries.Attempts > 0 {
					hr.Retries.PerTryTimeout = durationpb.New(d)
				} else {
					hr.Timeout = durationpb.New(d)
				}
			}
		}
	}
	return hr
}

func destinationOf(ref gatewayv1.BackendObjectReference, ns string, fqdn func(host, ns string) string) *networking.Destination {
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = string(*ref.Namespace)
	}
	d := &networking.Destination{Host: fqdn(string(ref.Name), ns)}
	if config.BackendKind(ref) == "Hostname" {
		d.Host = string(ref.Name)
	}
	if ref.Port != nil {
		d.Port = &networking.PortSelector{Number: uint32(*ref.Port)}
	}
	return d
}
