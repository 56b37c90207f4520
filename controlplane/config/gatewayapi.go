package config

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Gateway API (gateway.networking.k8s.io) kinds meshlens serves as Istio
// does: a Gateway's listeners for the gateway proxies it names, and
// HTTPRoutes and GRPCRoutes attached to a Gateway (ingress) or to a Service
// (mesh routing, GAMMA). The xDS translator turns them into the same
// resources as the equivalent Gateway and VirtualService.
const (
	// KindKubernetesGateway is Gateway API's Gateway, qualified by its
	// group beside Istio's Gateway: YAML says "kind: Gateway" with
	// apiVersion gateway.networking.k8s.io/v1 (see WireKind).
	KindKubernetesGateway = "Gateway." + GatewayAPIGroup
	KindHTTPRoute         = "HTTPRoute"
	KindGRPCRoute         = "GRPCRoute"
	// GatewayAPIGroup is Gateway API's API group.
	GatewayAPIGroup = "gateway.networking.k8s.io"
	// GatewayNameLabel names, on a gateway proxy, the Gateway API Gateway
	// of its namespace it serves (the label Istio puts on the gateways it
	// deploys for a Gateway).
	GatewayNameLabel = "gateway.networking.k8s.io/gateway-name"
)

var (
	gatewayAPIVersions = []string{GatewayAPIGroup + "/v1", GatewayAPIGroup + "/v1beta1"}
	grpcRouteVersions  = []string{GatewayAPIGroup + "/v1"}
)

func gatewayAPIKinds(v *istioValidator) []KindSpec {
	return append([]KindSpec{
		{APIVersions: gatewayAPIVersions, Kind: KindKubernetesGateway, ShortNames: []string{"gtw"},
			Decode: decodeJSONAs[gatewayv1.GatewaySpec], Validate: v.kubernetesGateway, Analyze: v.analyzeKubernetesGateway},
		{APIVersions: gatewayAPIVersions, Kind: KindHTTPRoute,
			Decode: decodeJSONAs[gatewayv1.HTTPRouteSpec], Validate: v.httpRouteAPI, Analyze: v.analyzeRoute},
		{APIVersions: grpcRouteVersions, Kind: KindGRPCRoute,
			Decode: decodeJSONAs[gatewayv1.GRPCRouteSpec], Validate: v.grpcRouteAPI, Analyze: v.analyzeRoute},
	}, gatewayClassKinds()...)
}

func decodeJSONAs[T any](js []byte) (any, error) {
	v := new(T)
	if err := DecodeJSON(js, v); err != nil {
		return nil, err
	}
	return v, nil
}

// Gateway API's own formats (its CRDs' validation patterns).
var (
	gwDuration   = regexp.MustCompile(`^([0-9]{1,5}(h|m|s|ms)){1,4}$`)
	headerName   = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+\-.^_\x60|~]+$`)
	sectionName  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	grpcService  = regexp.MustCompile(`^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$`)
	grpcMethod   = regexp.MustCompile(`^[A-Za-z_][A-Za-z_0-9]*$`)
	httpMethods  = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "DELETE": true, "CONNECT": true, "OPTIONS": true, "TRACE": true, "PATCH": true}
	redirectCode = map[int]bool{301: true, 302: true, 303: true, 307: true, 308: true}
)

// GatewayAPIDuration parses a Gateway API duration ("1h2m", "500ms"):
// Go's syntax restricted to h, m, s and ms.
func GatewayAPIDuration(d gatewayv1.Duration) (time.Duration, error) {
	if !gwDuration.MatchString(string(d)) {
		return 0, fmt.Errorf("%q is not a Gateway API duration: up to four numbers of at most 5 digits each followed by h, m, s or ms (e.g. 1m30s, 500ms)", d)
	}
	return time.ParseDuration(string(d))
}

func (v *istioValidator) kubernetesGateway(o *Object) []FieldError {
	gw, ok := o.Spec.(*gatewayv1.GatewaySpec)
	if !ok {
		return []FieldError{{Object: o.Key(), Message: fmt.Sprintf("spec is %T, want Gateway API GatewaySpec", o.Spec)}}
	}
	fe := &fieldErrs{object: o.Key()}
	if gw.GatewayClassName == "" {
		fe.add("gatewayClassName", "required")
	}
	if gw.AllowedListeners != nil {
		fe.add("allowedListeners", "not supported: meshlens serves no ListenerSets")
	}
	if gw.TLS != nil {
		fe.add("tls", "not supported: meshlens does not translate Gateway-level TLS (backend or frontend validation); set tls on listeners")
	}
	names := map[string]int{}
	type portHost struct {
		port int32
		host string
	}
	seen := map[portHost]int{}
	for i, l := range gw.Listeners {
		p := indexPath("listeners", i)
		switch {
		case l.Name == "":
			fe.add(joinPath(p, "name"), "required")
		case !sectionName.MatchString(string(l.Name)) || len(l.Name) > 253:
			fe.add(joinPath(p, "name"), "%q is not a valid listener name: lower-case letters, digits and '-'", l.Name)
		}
		if j, dup := names[string(l.Name)]; dup && l.Name != "" {
			fe.add(joinPath(p, "name"), "listener names must be unique: %q is also listeners[%d]", l.Name, j)
		}
		names[string(l.Name)] = i
		if l.Port < 1 || l.Port > 65535 {
			fe.add(joinPath(p, "port"), "port %d is out of range 1-65535", l.Port)
		}
		host := ""
		if l.Hostname != nil {
			host = string(*l.Hostname)
			if msg := validHost(host, true); msg != "" || host == "*" {
				fe.add(joinPath(p, "hostname"), "%q is not a valid hostname: a DNS name, optionally starting with \"*.\"", host)
			}
		}
		if j, dup := seen[portHost{l.Port, host}]; dup {
			fe.add(joinPath(p, "hostname"), "listeners[%d] already serves port %d for hostname %q: listeners on one port need distinct hostnames", j, l.Port, host)
		}
		seen[portHost{l.Port, host}] = i
		tls := l.TLS
		switch l.Protocol {
		case gatewayv1.HTTPProtocolType, gatewayv1.TCPProtocolType:
			if tls != nil {
				fe.add(joinPath(p, "tls"), "must not be set for protocol %s", l.Protocol)
			}
		case gatewayv1.HTTPSProtocolType, gatewayv1.TLSProtocolType:
			if tls == nil {
				fe.add(joinPath(p, "tls"), "required for protocol %s", l.Protocol)
				break
			}
			mode := gatewayv1.TLSModeTerminate
			if tls.Mode != nil {
				mode = *tls.Mode
			}
			switch mode {
			case gatewayv1.TLSModeTerminate:
			case gatewayv1.TLSModePassthrough:
				if l.Protocol == gatewayv1.HTTPSProtocolType {
					fe.add(joinPath(p, "tls.mode"), "Passthrough needs protocol TLS, not HTTPS")
				}
			default:
				fe.add(joinPath(p, "tls.mode"), "unknown mode %q: use Terminate or Passthrough", mode)
			}
			for j, c := range tls.CertificateRefs {
				cp := indexPath(joinPath(p, "tls.certificateRefs"), j)
				if (c.Group != nil && *c.Group != "") || (c.Kind != nil && *c.Kind != "Secret") {
					fe.add(cp, "meshlens reads certificates from Secrets (group \"\", kind Secret) only")
				}
				if c.Name == "" {
					fe.add(joinPath(cp, "name"), "required")
				}
			}
		case "":
			fe.add(joinPath(p, "protocol"), "required")
		}
		if ar := l.AllowedRoutes; ar != nil {
			if ns := ar.Namespaces; ns != nil && ns.From != nil {
				switch *ns.From {
				case gatewayv1.NamespacesFromAll, gatewayv1.NamespacesFromSame, gatewayv1.NamespacesFromSelector:
				default:
					fe.add(joinPath(p, "allowedRoutes.namespaces.from"), "unknown value %q: use Same or All", *ns.From)
				}
			}
		}
	}
	return fe.errs
}

// routeCommon checks what HTTPRoute and GRPCRoute share: parentRefs and
// hostnames.
func routeCommon(o *Object, parents []gatewayv1.ParentReference, hostnames []gatewayv1.Hostname, fe *fieldErrs) {
	if len(parents) == 0 {
		fe.add("parentRefs", "a route needs at least one parentRef: a Gateway (ingress) or a Service (mesh routing)")
	}
	for i, pr := range parents {
		p := indexPath("parentRefs", i)
		switch ParentKind(pr) {
		case "Gateway", "Service", "ServiceEntry":
		case "Gateway/Service":
			fe.add(joinPath(p, "group"), "a Service parent needs group: \"\" (unset, the group is %s, which has no Service)", GatewayAPIGroup)
		default:
			fe.add(joinPath(p, "kind"), "parentRef group %q kind %q: meshlens attaches routes to a Gateway (group %s), a Service (group \"\") or a ServiceEntry (group networking.istio.io) only",
				ptrStr(pr.Group), ptrStr(pr.Kind), GatewayAPIGroup)
		}
		if pr.Name == "" {
			fe.add(joinPath(p, "name"), "required")
		}
		if pr.Port != nil && (*pr.Port < 1 || *pr.Port > 65535) {
			fe.add(joinPath(p, "port"), "port %d is out of range 1-65535", *pr.Port)
		}
		if ParentKind(pr) != "Gateway" && pr.SectionName != nil {
			fe.add(joinPath(p, "sectionName"), "not supported for a Service parent: use port")
		}
		if pr.Namespace != nil && ParentKind(pr) == "Service" && string(*pr.Namespace) != o.Meta.Namespace {
			// GAMMA's "producer" routes only: a consumer route needs a
			// ReferenceGrant-free cross-namespace reference.
			fe.add(joinPath(p, "namespace"), "a Service parent must be in the route's namespace %s", o.Meta.Namespace)
		}
	}
	for i, h := range hostnames {
		if msg := validHost(string(h), true); msg != "" || h == "*" {
			fe.add(indexPath("hostnames", i), "%q is not a valid hostname: a DNS name, optionally starting with \"*.\"", h)
		}
	}
}

// ParentKind is what a route's parentRef names: "Gateway" (the default),
// "Service" (core group), "ServiceEntry" (Istio's, as Istio allows), or
// "group/kind" for anything else.
func ParentKind(pr gatewayv1.ParentReference) string {
	g, k := ptrStr(pr.Group), ptrStr(pr.Kind)
	switch {
	case (pr.Group == nil || g == GatewayAPIGroup) && (k == "" || k == "Gateway"):
		return "Gateway"
	case g == "" && pr.Group != nil && k == "Service":
		return "Service"
	case g == "networking.istio.io" && k == "ServiceEntry":
		return "ServiceEntry"
	case g == "" && pr.Group == nil && k == "Service":
		return "Gateway/Service" // group defaults to gateway.networking.k8s.io
	}
	return g + "/" + k
}

func ptrStr[T ~string](p *T) string {
	if p == nil {
		return ""
	}
	return string(*p)
}

// backendRef checks a backendRef (or a mirror's): a Service, or a host
// (Istio's kind Hostname), with a port.
func backendRef(o *Object, ref gatewayv1.BackendObjectReference, p string, fe *fieldErrs) {
	switch BackendKind(ref) {
	case "Service":
	case "Hostname":
		if msg := validHost(string(ref.Name), false); msg != "" {
			fe.add(joinPath(p, "name"), "%s", msg)
		}
	default:
		fe.add(p, "backendRef group %q kind %q: meshlens routes to Services (group \"\", kind Service) and hosts (group networking.istio.io, kind Hostname) only", ptrStr(ref.Group), ptrStr(ref.Kind))
		return
	}
	if ref.Name == "" {
		fe.add(joinPath(p, "name"), "required")
	}
	if ref.Port == nil {
		fe.add(joinPath(p, "port"), "required for a Service backend")
	} else if *ref.Port < 1 || *ref.Port > 65535 {
		fe.add(joinPath(p, "port"), "port %d is out of range 1-65535", *ref.Port)
	}
}

// BackendKind is what a backendRef names: "Service", "Hostname" (Istio's
// host by name), or "group/kind".
func BackendKind(ref gatewayv1.BackendObjectReference) string {
	g, k := ptrStr(ref.Group), ptrStr(ref.Kind)
	switch {
	case g == "" && (k == "" || k == "Service"):
		return "Service"
	case g == "networking.istio.io" && k == "Hostname":
		return "Hostname"
	}
	return g + "/" + k
}

// CrossNamespace reports whether a backendRef names a Service of another
// namespace than the route's: Gateway API permits it only with a
// ReferenceGrant (BackendPermitted).
func CrossNamespace(ref gatewayv1.BackendObjectReference, routeNS string) bool {
	return BackendKind(ref) == "Service" && ref.Namespace != nil && string(*ref.Namespace) != routeNS
}

func weight(w *int32, p string, fe *fieldErrs) {
	if w != nil && (*w < 0 || *w > 1000000) {
		fe.add(joinPath(p, "weight"), "weight %d is out of range 0-1000000", *w)
	}
}

func headerFilter(h *gatewayv1.HTTPHeaderFilter, p string, fe *fieldErrs) {
	if h == nil {
		fe.add(p, "required by the filter's type")
		return
	}
	seen := map[string]string{}
	check := func(list, name string) {
		lp := joinPath(p, list)
		if !headerName.MatchString(name) {
			fe.add(lp, "%q is not a valid header name", name)
			return
		}
		if prev, dup := seen[strings.ToLower(name)]; dup {
			fe.add(lp, "header %q is also in %s: a header may be named once per filter", name, prev)
		}
		seen[strings.ToLower(name)] = list
	}
	for _, h := range h.Set {
		check("set", string(h.Name))
	}
	for _, h := range h.Add {
		check("add", string(h.Name))
	}
	for _, n := range h.Remove {
		check("remove", n)
	}
	if len(h.Set)+len(h.Add)+len(h.Remove) == 0 {
		fe.add(p, "sets, adds or removes nothing")
	}
}

func mirrorFilter(o *Object, m *gatewayv1.HTTPRequestMirrorFilter, p string, fe *fieldErrs) {
	if m == nil {
		fe.add(p, "required by the filter's type")
		return
	}
	backendRef(o, m.BackendRef, joinPath(p, "backendRef"), fe)
	if m.Percent != nil && m.Fraction != nil {
		fe.add(p, "set percent or fraction, not both")
	}
	if m.Percent != nil && (*m.Percent < 0 || *m.Percent > 100) {
		fe.add(joinPath(p, "percent"), "%d is out of range 0-100", *m.Percent)
	}
	if f := m.Fraction; f != nil {
		den := int32(100)
		if f.Denominator != nil {
			den = *f.Denominator
		}
		if den < 1 || f.Numerator < 0 || f.Numerator > den {
			fe.add(joinPath(p, "fraction"), "numerator %d over denominator %d: want 0 <= numerator <= denominator, denominator >= 1", f.Numerator, den)
		}
	}
}

// unsupportedFilter names filter types meshlens does not translate.
func unsupportedFilter(t string, p string, fe *fieldErrs) {
	fe.add(joinPath(p, "type"), "filter type %s is not supported by meshlens: it translates RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite and RequestMirror", t)
}

func stringMatchValue(typ, value, p string, fe *fieldErrs) {
	switch typ {
	case "", "Exact":
	case "RegularExpression":
		if _, err := regexp.Compile(value); err != nil {
			fe.add(joinPath(p, "value"), "not a valid RE2 regular expression: %v", err)
		}
	default:
		fe.add(joinPath(p, "type"), "unknown type %q: use Exact or RegularExpression", typ)
	}
}

func (v *istioValidator) httpRouteAPI(o *Object) []FieldError {
	hr, ok := o.Spec.(*gatewayv1.HTTPRouteSpec)
	if !ok {
		return []FieldError{{Object: o.Key(), Message: fmt.Sprintf("spec is %T, want HTTPRouteSpec", o.Spec)}}
	}
	fe := &fieldErrs{object: o.Key()}
	routeCommon(o, hr.ParentRefs, hr.Hostnames, fe)
	for i, r := range hr.Rules {
		p := indexPath("rules", i)
		prefixOnly := true // no matches: PathPrefix "/"
		for j, m := range r.Matches {
			mp := indexPath(joinPath(p, "matches"), j)
			if m.Path != nil {
				pt, val := gatewayv1.PathMatchPathPrefix, "/"
				if m.Path.Type != nil {
					pt = *m.Path.Type
				}
				if m.Path.Value != nil {
					val = *m.Path.Value
				}
				switch pt {
				case gatewayv1.PathMatchExact, gatewayv1.PathMatchPathPrefix:
					if !strings.HasPrefix(val, "/") || strings.Contains(val, "//") || strings.ContainsAny(val, "?#") {
						fe.add(joinPath(mp, "path.value"), "%q must be an absolute path starting with '/', without '//', '?' or '#'", val)
					}
				case gatewayv1.PathMatchRegularExpression:
					if _, err := regexp.Compile(val); err != nil {
						fe.add(joinPath(mp, "path.value"), "not a valid RE2 regular expression: %v", err)
					}
				default:
					fe.add(joinPath(mp, "path.type"), "unknown type %q: use Exact, PathPrefix or RegularExpression", pt)
				}
				if pt != gatewayv1.PathMatchPathPrefix {
					prefixOnly = false
				}
			}
			names := map[string]bool{}
			for k, h := range m.Headers {
				hp := indexPath(joinPath(mp, "headers"), k)
				if !headerName.MatchString(string(h.Name)) {
					fe.add(joinPath(hp, "name"), "%q is not a valid header name", h.Name)
				}
				if names[strings.ToLower(string(h.Name))] {
					fe.add(joinPath(hp, "name"), "header %q is matched twice in one match", h.Name)
				}
				names[strings.ToLower(string(h.Name))] = true
				stringMatchValue(ptrStr(h.Type), h.Value, hp, fe)
			}
			qnames := map[string]bool{}
			for k, q := range m.QueryParams {
				qp := indexPath(joinPath(mp, "queryParams"), k)
				if q.Name == "" {
					fe.add(joinPath(qp, "name"), "required")
				}
				if qnames[string(q.Name)] {
					fe.add(joinPath(qp, "name"), "query parameter %q is matched twice in one match", q.Name)
				}
				qnames[string(q.Name)] = true
				stringMatchValue(ptrStr(q.Type), q.Value, qp, fe)
			}
			if m.Method != nil && !httpMethods[string(*m.Method)] {
				fe.add(joinPath(mp, "method"), "unknown method %q: use GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE or PATCH", *m.Method)
			}
		}
		var redirect, rewrite bool
		onceTypes := map[gatewayv1.HTTPRouteFilterType]int{}
		for j, f := range r.Filters {
			fp := indexPath(joinPath(p, "filters"), j)
			if prev, dup := onceTypes[f.Type]; dup && f.Type != gatewayv1.HTTPRouteFilterRequestMirror {
				fe.add(joinPath(fp, "type"), "filter type %s is also filters[%d]: each type but RequestMirror may appear once per rule", f.Type, prev)
			}
			onceTypes[f.Type] = j
			v.httpFilter(o, f, fp, prefixOnly, fe)
			redirect = redirect || f.Type == gatewayv1.HTTPRouteFilterRequestRedirect
			rewrite = rewrite || f.Type == gatewayv1.HTTPRouteFilterURLRewrite
		}
		if redirect && rewrite {
			fe.add(joinPath(p, "filters"), "RequestRedirect and URLRewrite cannot be used together")
		}
		if redirect && len(r.BackendRefs) > 0 {
			fe.add(joinPath(p, "backendRefs"), "a rule with a RequestRedirect filter answers with the redirect: it must have no backendRefs")
		}
		for j, b := range r.BackendRefs {
			bp := indexPath(joinPath(p, "backendRefs"), j)
			backendRef(o, b.BackendObjectReference, bp, fe)
			weight(b.Weight, bp, fe)
			for k, f := range b.Filters {
				backendRefFilter(indexPath(joinPath(bp, "filters"), k), string(f.Type), f.RequestHeaderModifier, f.ResponseHeaderModifier, " (or put it on the rule)", fe)
			}
		}
		if t := r.Timeouts; t != nil {
			var req, be time.Duration
			var err error
			if t.Request != nil {
				if req, err = GatewayAPIDuration(*t.Request); err != nil {
					fe.add(joinPath(p, "timeouts.request"), "%v", err)
				}
			}
			if t.BackendRequest != nil {
				if be, err = GatewayAPIDuration(*t.BackendRequest); err != nil {
					fe.add(joinPath(p, "timeouts.backendRequest"), "%v", err)
				}
			}
			if req > 0 && be > req {
				fe.add(joinPath(p, "timeouts.backendRequest"), "backendRequest %s is longer than request %s: it must not be", be, req)
			}
		}
		if rt := r.Retry; rt != nil {
			if rt.Attempts != nil && *rt.Attempts < 0 {
				fe.add(joinPath(p, "retry.attempts"), "%d is negative", *rt.Attempts)
			}
			for k, c := range rt.Codes {
				if c < 400 || c > 599 {
					fe.add(indexPath(joinPath(p, "retry.codes"), k), "%d is not an HTTP status code of 400-599", c)
				}
			}
			if rt.Backoff != nil {
				if _, err := GatewayAPIDuration(*rt.Backoff); err != nil {
					fe.add(joinPath(p, "retry.backoff"), "%v", err)
				}
			}
		}
		if r.SessionPersistence != nil {
			fe.add(joinPath(p, "sessionPersistence"), "not supported by meshlens; use a DestinationRule consistentHash for sticky sessions")
		}
	}
	return fe.errs
}

// httpFilter checks one rule filter. prefixOnly says whether every match
// of the rule is a PathPrefix, which ReplacePrefixMatch needs.
func (v *istioValidator) httpFilter(o *Object, f gatewayv1.HTTPRouteFilter, fp string, prefixOnly bool, fe *fieldErrs) {
	set := 0
	for _, b := range []bool{f.RequestHeaderModifier != nil, f.ResponseHeaderModifier != nil, f.RequestMirror != nil,
		f.RequestRedirect != nil, f.URLRewrite != nil, f.CORS != nil, f.ExternalAuth != nil, f.ExtensionRef != nil} {
		if b {
			set++
		}
	}
	if set > 1 {
		fe.add(fp, "sets more than one filter: set only the field its type names")
	}
	pathMod := func(pm *gatewayv1.HTTPPathModifier, pp string) {
		if pm == nil {
			return
		}
		switch pm.Type {
		case gatewayv1.FullPathHTTPPathModifier:
			if pm.ReplaceFullPath == nil || !strings.HasPrefix(*pm.ReplaceFullPath, "/") {
				fe.add(joinPath(pp, "replaceFullPath"), "type ReplaceFullPath needs replaceFullPath, a path starting with '/'")
			}
			if pm.ReplacePrefixMatch != nil {
				fe.add(joinPath(pp, "replacePrefixMatch"), "must not be set with type ReplaceFullPath")
			}
		case gatewayv1.PrefixMatchHTTPPathModifier:
			if pm.ReplacePrefixMatch == nil || !strings.HasPrefix(*pm.ReplacePrefixMatch, "/") {
				fe.add(joinPath(pp, "replacePrefixMatch"), "type ReplacePrefixMatch needs replacePrefixMatch, a path starting with '/'")
			}
			if pm.ReplaceFullPath != nil {
				fe.add(joinPath(pp, "replaceFullPath"), "must not be set with type ReplacePrefixMatch")
			}
			if !prefixOnly {
				fe.add(joinPath(pp, "type"), "ReplacePrefixMatch needs every match of the rule to be a PathPrefix path match")
			}
		default:
			fe.add(joinPath(pp, "type"), "unknown type %q: use ReplaceFullPath or ReplacePrefixMatch", pm.Type)
		}
	}
	switch f.Type {
	case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
		headerFilter(f.RequestHeaderModifier, joinPath(fp, "requestHeaderModifier"), fe)
	case gatewayv1.HTTPRouteFilterResponseHeaderModifier:
		headerFilter(f.ResponseHeaderModifier, joinPath(fp, "responseHeaderModifier"), fe)
	case gatewayv1.HTTPRouteFilterRequestMirror:
		mirrorFilter(o, f.RequestMirror, joinPath(fp, "requestMirror"), fe)
	case gatewayv1.HTTPRouteFilterRequestRedirect:
		rd := f.RequestRedirect
		if rd == nil {
			fe.add(joinPath(fp, "requestRedirect"), "required by the filter's type")
			return
		}
		rp := joinPath(fp, "requestRedirect")
		if rd.Scheme != nil && *rd.Scheme != "http" && *rd.Scheme != "https" {
			fe.add(joinPath(rp, "scheme"), "%q: use http or https", *rd.Scheme)
		}
		if rd.Hostname != nil && validHost(string(*rd.Hostname), false) != "" {
			fe.add(joinPath(rp, "hostname"), "%q is not a valid hostname", *rd.Hostname)
		}
		if rd.Port != nil && (*rd.Port < 1 || *rd.Port > 65535) {
			fe.add(joinPath(rp, "port"), "port %d is out of range 1-65535", *rd.Port)
		}
		if rd.StatusCode != nil && !redirectCode[*rd.StatusCode] {
			fe.add(joinPath(rp, "statusCode"), "%d: use 301, 302, 303, 307 or 308", *rd.StatusCode)
		}
		pathMod(rd.Path, joinPath(rp, "path"))
	case gatewayv1.HTTPRouteFilterURLRewrite:
		rw := f.URLRewrite
		if rw == nil {
			fe.add(joinPath(fp, "urlRewrite"), "required by the filter's type")
			return
		}
		if rw.Hostname != nil && validHost(string(*rw.Hostname), false) != "" {
			fe.add(joinPath(fp, "urlRewrite.hostname"), "%q is not a valid hostname", *rw.Hostname)
		}
		pathMod(rw.Path, joinPath(fp, "urlRewrite.path"))
	case "":
		fe.add(joinPath(fp, "type"), "required")
	default:
		unsupportedFilter(string(f.Type), fp, fe)
	}
}

func (v *istioValidator) grpcRouteAPI(o *Object) []FieldError {
	gr, ok := o.Spec.(*gatewayv1.GRPCRouteSpec)
	if !ok {
		return []FieldError{{Object: o.Key(), Message: fmt.Sprintf("spec is %T, want GRPCRouteSpec", o.Spec)}}
	}
	fe := &fieldErrs{object: o.Key()}
	routeCommon(o, gr.ParentRefs, gr.Hostnames, fe)
	for i, r := range gr.Rules {
		p := indexPath("rules", i)
		for j, m := range r.Matches {
			mp := indexPath(joinPath(p, "matches"), j)
			if mm := m.Method; mm != nil {
				typ := gatewayv1.GRPCMethodMatchExact
				if mm.Type != nil {
					typ = *mm.Type
				}
				svc, meth := ptrStr(mm.Service), ptrStr(mm.Method)
				switch typ {
				case gatewayv1.GRPCMethodMatchExact:
					if svc == "" && meth == "" {
						fe.add(joinPath(mp, "method"), "an Exact method match needs service, method or both")
					}
					if svc != "" && !grpcService.MatchString(svc) {
						fe.add(joinPath(mp, "method.service"), "%q is not a gRPC service name (package.Service)", svc)
					}
					if meth != "" && !grpcMethod.MatchString(meth) {
						fe.add(joinPath(mp, "method.method"), "%q is not a gRPC method name", meth)
					}
				case gatewayv1.GRPCMethodMatchRegularExpression:
					for _, x := range []struct{ f, v string }{{"service", svc}, {"method", meth}} {
						if _, err := regexp.Compile(x.v); err != nil {
							fe.add(joinPath(mp, "method."+x.f), "not a valid RE2 regular expression: %v", err)
						}
					}
				default:
					fe.add(joinPath(mp, "method.type"), "unknown type %q: use Exact or RegularExpression", typ)
				}
			}
			names := map[string]bool{}
			for k, h := range m.Headers {
				hp := indexPath(joinPath(mp, "headers"), k)
				if !headerName.MatchString(string(h.Name)) {
					fe.add(joinPath(hp, "name"), "%q is not a valid header name", h.Name)
				}
				if names[strings.ToLower(string(h.Name))] {
					fe.add(joinPath(hp, "name"), "header %q is matched twice in one match", h.Name)
				}
				names[strings.ToLower(string(h.Name))] = true
				stringMatchValue(ptrStr(h.Type), h.Value, hp, fe)
			}
		}
		onceTypes := map[gatewayv1.GRPCRouteFilterType]int{}
		for j, f := range r.Filters {
			fp := indexPath(joinPath(p, "filters"), j)
			if prev, dup := onceTypes[f.Type]; dup && f.Type != gatewayv1.GRPCRouteFilterRequestMirror {
				fe.add(joinPath(fp, "type"), "filter type %s is also filters[%d]: each type but RequestMirror may appear once per rule", f.Type, prev)
			}
			onceTypes[f.Type] = j
			switch f.Type {
			case gatewayv1.GRPCRouteFilterRequestHeaderModifier:
				headerFilter(f.RequestHeaderModifier, joinPath(fp, "requestHeaderModifier"), fe)
			case gatewayv1.GRPCRouteFilterResponseHeaderModifier:
				headerFilter(f.ResponseHeaderModifier, joinPath(fp, "responseHeaderModifier"), fe)
			case gatewayv1.GRPCRouteFilterRequestMirror:
				mirrorFilter(o, f.RequestMirror, joinPath(fp, "requestMirror"), fe)
			case "":
				fe.add(joinPath(fp, "type"), "required")
			default:
				fe.add(joinPath(fp, "type"), "filter type %s is not supported by meshlens: it translates RequestHeaderModifier, ResponseHeaderModifier and RequestMirror", f.Type)
			}
		}
		for j, b := range r.BackendRefs {
			bp := indexPath(joinPath(p, "backendRefs"), j)
			backendRef(o, b.BackendObjectReference, bp, fe)
			weight(b.Weight, bp, fe)
			for k, f := range b.Filters {
				backendRefFilter(indexPath(joinPath(bp, "filters"), k), string(f.Type), f.RequestHeaderModifier, f.ResponseHeaderModifier, "", fe)
			}
		}
		if r.SessionPersistence != nil {
			fe.add(joinPath(p, "sessionPersistence"), "not supported by meshlens; use a DestinationRule consistentHash for sticky sessions")
		}
	}
	return fe.errs
}

// backendRefFilter checks one filter of an HTTPRoute's or GRPCRoute's
// backendRef: both kinds allow the two header modifiers there (their type
// names are the same strings), and meshlens nothing else.
func backendRefFilter(fp, typ string, req, resp *gatewayv1.HTTPHeaderFilter, hint string, fe *fieldErrs) {
	switch typ {
	case string(gatewayv1.HTTPRouteFilterRequestHeaderModifier):
		headerFilter(req, joinPath(fp, "requestHeaderModifier"), fe)
	case string(gatewayv1.HTTPRouteFilterResponseHeaderModifier):
		headerFilter(resp, joinPath(fp, "responseHeaderModifier"), fe)
	default:
		fe.add(joinPath(fp, "type"), "filter type %s is not supported on a backendRef by meshlens: use RequestHeaderModifier or ResponseHeaderModifier%s", typ, hint)
	}
}
