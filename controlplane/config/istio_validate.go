package config

import (
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1"
	security "istio.io/api/security/v1"
)

// checkGeneric applies the rules that hold wherever a type appears: no
// negative durations, percentages within 0..100, regexes that compile
// (Go's regexp is RE2, the dialect Envoy uses).
func checkGeneric(m proto.Message, fe *fieldErrs) {
	walkMessages(m.ProtoReflect(), "", func(path string, msg protoreflect.Message) {
		switch msg.Descriptor().FullName() {
		case "google.protobuf.Duration":
			d := msg.Interface().(*durationpb.Duration)
			if d.GetSeconds() < 0 || d.GetNanos() < 0 {
				fe.add(path, "duration must not be negative")
			}
		case "istio.networking.v1alpha3.Percent":
			v := msg.Interface().(*networking.Percent).GetValue()
			if !(v >= 0 && v <= 100) {
				fe.add(joinPath(path, "value"), "percentage %v is outside 0..100", v)
			}
		case "istio.networking.v1alpha3.StringMatch":
			if re, ok := msg.Interface().(*networking.StringMatch).GetMatchType().(*networking.StringMatch_Regex); ok {
				if _, err := regexp.Compile(re.Regex); err != nil {
					fe.add(joinPath(path, "regex"), "invalid RE2 regex: %v", err)
				}
			}
		case "istio.networking.v1alpha3.RegexRewrite":
			if _, err := regexp.Compile(msg.Interface().(*networking.RegexRewrite).GetMatch()); err != nil {
				fe.add(joinPath(path, "match"), "invalid RE2 regex: %v", err)
			}
		}
	})
}

// walkMessages calls visit for every set message field, depth first, with
// its path in JSON field names.
func walkMessages(m protoreflect.Message, path string, visit func(string, protoreflect.Message)) {
	visit(path, m)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := joinPath(path, fd.JSONName())
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					walkMessages(mv.Message(), keyPath(p, k.String()), visit)
					return true
				})
			}
		case fd.IsList():
			if fd.Kind() == protoreflect.MessageKind {
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					walkMessages(l.Get(i).Message(), indexPath(p, i), visit)
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			walkMessages(v.Message(), p, visit)
		}
		return true
	})
}

func positive(d *durationpb.Duration, path string, fe *fieldErrs) {
	if d != nil && d.AsDuration() <= 0 {
		fe.add(path, "duration must be positive")
	}
}

func validPort(p uint32, path string, fe *fieldErrs) {
	if p == 0 || p > 65535 {
		fe.add(path, "port %d is outside 1..65535", p)
	}
}

func percent(v int64, path string, fe *fieldErrs) {
	if v < 0 || v > 100 {
		fe.add(path, "percentage %d is outside 0..100", v)
	}
}

func (v *istioValidator) virtualService(o *Object) []FieldError {
	vs, ok := o.Spec.(*networking.VirtualService)
	if !ok {
		return []FieldError{{Object: o.Key(), Message: fmt.Sprintf("spec is %T, want VirtualService", o.Spec)}}
	}
	fe := &fieldErrs{object: o.Key()}
	checkGeneric(vs, fe)
	if len(vs.GetHosts()) == 0 {
		// A VirtualService without hosts is a delegate: another one's
		// http route hands it a part of its traffic (http[].delegate).
		if len(vs.GetGateways()) > 0 {
			fe.add("gateways", "a delegate VirtualService (one without hosts) must not name gateways: its root's apply")
		}
		if len(vs.GetTcp())+len(vs.GetTls()) > 0 {
			fe.add("", "a delegate VirtualService (one without hosts) has http routes only")
		}
		for i, r := range vs.GetHttp() {
			if r.GetDelegate() != nil {
				fe.add(indexPath("http", i)+".delegate", "a delegate VirtualService (one without hosts) cannot delegate again")
			}
		}
	}
	for i, h := range vs.GetHosts() {
		if msg := validHost(h, true); msg != "" {
			fe.add(indexPath("hosts", i), "%s", msg)
		}
	}
	for i, g := range vs.GetGateways() {
		if msg := validGatewayRef(g); msg != "" {
			fe.add(indexPath("gateways", i), "%s", msg)
		}
	}
	if len(vs.GetHttp())+len(vs.GetTcp())+len(vs.GetTls()) == 0 {
		fe.add("", "at least one of http, tcp or tls routes is required")
	}
	for i, r := range vs.GetHttp() {
		v.httpRoute(r, indexPath("http", i), fe)
	}
	for i, r := range vs.GetTcp() {
		p := indexPath("tcp", i)
		for j, m := range r.GetMatch() {
			if m.GetPort() != 0 {
				validPort(m.GetPort(), indexPath(joinPath(p, "match"), j)+".port", fe)
			}
		}
		v.routeDestinations(r.GetRoute(), p, fe)
	}
	for i, r := range vs.GetTls() {
		p := indexPath("tls", i)
		if len(r.GetMatch()) == 0 {
			fe.add(joinPath(p, "match"), "a TLS route needs at least one match")
		}
		for j, m := range r.GetMatch() {
			if len(m.GetSniHosts()) == 0 {
				fe.add(indexPath(joinPath(p, "match"), j)+".sniHosts", "at least one SNI host is required")
			}
		}
		v.routeDestinations(r.GetRoute(), p, fe)
	}
	return fe.errs
}

// validGatewayRef says why a `gateways:` entry is malformed, or "": it is
// "mesh", NAME, NAMESPACE/NAME or the legacy NAME.NAMESPACE.svc.DOMAIN.
func validGatewayRef(g string) string {
	if g == MeshGateway {
		return ""
	}
	ns, name, _ := GatewayRef(g, "default")
	if strings.Contains(g, "/") && (strings.Count(g, "/") > 1 || !dns1123Label.MatchString(ns)) {
		return fmt.Sprintf("gateway %q: the namespace of NAMESPACE/NAME must be a namespace name", g)
	}
	if !dns1123Subdomain.MatchString(name) {
		return fmt.Sprintf("gateway %q is not a valid gateway name", g)
	}
	return ""
}

// weighted is what HTTP, TCP and TLS route destinations have in common.
type weighted interface {
	GetDestination() *networking.Destination
	GetWeight() int32
}

func (v *istioValidator) routeDestinations(routes []*networking.RouteDestination, path string, fe *fieldErrs) {
	ws := make([]weighted, len(routes))
	for i, r := range routes {
		ws[i] = r
	}
	v.weightedDestinations(ws, path, fe)
}

func (v *istioValidator) weightedDestinations(routes []weighted, path string, fe *fieldErrs) {
	p := joinPath(path, "route")
	if len(routes) == 0 {
		fe.add(p, "at least one route destination is required")
		return
	}
	sum := 0
	for i, r := range routes {
		rp := indexPath(p, i)
		if r.GetWeight() < 0 {
			fe.add(joinPath(rp, "weight"), "weight %d must not be negative", r.GetWeight())
		}
		sum += int(r.GetWeight())
		destination(r.GetDestination(), joinPath(rp, "destination"), fe)
	}
	// Istio only refuses a total of 0; meshlens keeps 100 because the
	// rollout engine and the UI read weights as percentages.
	switch {
	case len(routes) == 1 && routes[0].GetWeight() != 0 && routes[0].GetWeight() != 100:
		fe.add(indexPath(p, 0)+".weight", "a single destination's weight must be 100 or unset, got %d", routes[0].GetWeight())
	case len(routes) > 1 && sum != 100:
		fe.add(indexPath(p, len(routes)-1)+".weight", "weights of %s sum to %d, want 100", p, sum)
	}
}

// destination checks a destination on its own; whether its host and
// subset exist is analysis (analyzeDestination).
func destination(d *networking.Destination, path string, fe *fieldErrs) {
	if d == nil {
		fe.add(path, "required")
		return
	}
	if msg := validHost(d.GetHost(), false); msg != "" {
		fe.add(joinPath(path, "host"), "%s", msg)
	}
	if d.GetPort() != nil {
		validPort(d.GetPort().GetNumber(), joinPath(path, "port.number"), fe)
	}
}

func (v *istioValidator) httpRoute(r *networking.HTTPRoute, p string, fe *fieldErrs) {
	actions := 0
	for _, set := range []bool{len(r.GetRoute()) > 0, r.GetRedirect() != nil, r.GetDirectResponse() != nil, r.GetDelegate() != nil} {
		if set {
			actions++
		}
	}
	switch {
	case actions == 0:
		fe.add(joinPath(p, "route"), "an HTTP route needs route, redirect, directResponse or delegate")
	case actions > 1:
		fe.add(p, "only one of route, redirect, directResponse or delegate may be set")
	}
	if len(r.GetRoute()) > 0 {
		ws := make([]weighted, len(r.GetRoute()))
		for i, d := range r.GetRoute() {
			ws[i] = d
		}
		v.weightedDestinations(ws, p, fe)
	}
	for j, m := range r.GetMatch() {
		mp := indexPath(joinPath(p, "match"), j)
		if m.GetPort() != 0 {
			validPort(m.GetPort(), joinPath(mp, "port"), fe)
		}
		for name, sm := range map[string]*networking.StringMatch{"uri": m.GetUri(), "scheme": m.GetScheme(), "method": m.GetMethod(), "authority": m.GetAuthority()} {
			if sm != nil && sm.GetMatchType() == nil {
				fe.add(joinPath(mp, name), "set one of exact, prefix or regex")
			}
		}
		for h := range m.GetHeaders() {
			if h == "" || strings.ToLower(h) != h {
				fe.add(keyPath(joinPath(mp, "headers"), h), "header names must be non-empty and lower-case")
			}
		}
	}
	if r.GetTimeout() != nil && r.GetTimeout().AsDuration() < 0 {
		fe.add(joinPath(p, "timeout"), "timeout must not be negative")
	}
	if rt := r.GetRetries(); rt != nil {
		rp := joinPath(p, "retries")
		if rt.GetAttempts() < 0 {
			fe.add(joinPath(rp, "attempts"), "attempts must not be negative")
		}
		positive(rt.GetPerTryTimeout(), joinPath(rp, "perTryTimeout"), fe)
		positive(rt.GetBackoff(), joinPath(rp, "backoff"), fe)
		if rt.GetRetryOn() != "" {
			for _, cond := range strings.Split(rt.GetRetryOn(), ",") {
				if !validRetryOn(strings.TrimSpace(cond)) {
					fe.add(joinPath(rp, "retryOn"), "unknown retry condition %q; use Envoy's (5xx, gateway-error, reset, connect-failure, retriable-4xx, refused-stream, retriable-status-codes, cancelled, deadline-exceeded, internal, resource-exhausted, unavailable) or an HTTP status code", cond)
				}
			}
		}
	}
	if f := r.GetFault(); f != nil {
		fp := joinPath(p, "fault")
		if f.GetDelay() == nil && f.GetAbort() == nil {
			fe.add(fp, "a fault needs delay or abort")
		}
		if d := f.GetDelay(); d != nil {
			dp := joinPath(fp, "delay")
			//lint:ignore SA1019 deprecated but still accepted by Istio, so still checked
			percent(int64(d.GetPercent()), joinPath(dp, "percent"), fe)
			switch {
			case d.GetFixedDelay() != nil:
				positive(d.GetFixedDelay(), joinPath(dp, "fixedDelay"), fe)
			case d.GetExponentialDelay() != nil:
				positive(d.GetExponentialDelay(), joinPath(dp, "exponentialDelay"), fe)
			default:
				fe.add(joinPath(dp, "fixedDelay"), "a delay needs fixedDelay")
			}
		}
		if a := f.GetAbort(); a != nil {
			ap := joinPath(fp, "abort")
			switch t := a.GetErrorType().(type) {
			case *networking.HTTPFaultInjection_Abort_HttpStatus:
				if t.HttpStatus < 200 || t.HttpStatus > 599 {
					fe.add(joinPath(ap, "httpStatus"), "HTTP status %d is outside 200..599", t.HttpStatus)
				}
			case *networking.HTTPFaultInjection_Abort_GrpcStatus:
				if t.GrpcStatus == "" {
					fe.add(joinPath(ap, "grpcStatus"), "must not be empty")
				}
			case nil:
				fe.add(joinPath(ap, "httpStatus"), "an abort needs httpStatus or grpcStatus")
			}
		}
	}
	if r.GetMirror() != nil {
		destination(r.GetMirror(), joinPath(p, "mirror"), fe)
	}
	//lint:ignore SA1019 deprecated but still accepted by Istio, so still checked
	if mp := r.GetMirrorPercent(); mp != nil {
		percent(int64(mp.GetValue()), joinPath(p, "mirrorPercent"), fe)
	}
	for i, m := range r.GetMirrors() {
		destination(m.GetDestination(), indexPath(joinPath(p, "mirrors"), i)+".destination", fe)
	}
	if rd := r.GetRedirect(); rd != nil && rd.GetRedirectCode() != 0 && (rd.GetRedirectCode() < 300 || rd.GetRedirectCode() > 399) {
		fe.add(joinPath(p, "redirect.redirectCode"), "redirect code %d is outside 300..399", rd.GetRedirectCode())
	}
	if dr := r.GetDirectResponse(); dr != nil && (dr.GetStatus() < 200 || dr.GetStatus() > 599) {
		fe.add(joinPath(p, "directResponse.status"), "status %d is outside 200..599", dr.GetStatus())
	}
	if rw := r.GetRewrite(); rw != nil && rw.GetUri() != "" && rw.GetUriRegexRewrite() != nil {
		fe.add(joinPath(p, "rewrite"), "only one of uri and uriRegexRewrite may be set")
	}
}

var retryOnConditions = map[string]bool{
	"5xx": true, "gateway-error": true, "reset": true, "reset-before-request": true, "connect-failure": true,
	"envoy-ratelimited": true, "retriable-4xx": true, "refused-stream": true, "retriable-status-codes": true,
	"retriable-headers": true, "http3-post-connect-failure": true, "cancelled": true, "deadline-exceeded": true,
	"internal": true, "resource-exhausted": true, "unavailable": true,
}

func validRetryOn(c string) bool {
	if retryOnConditions[c] {
		return true
	}
	n, err := strconv.Atoi(c)
	return err == nil && n >= 100 && n <= 599
}

func (v *istioValidator) destinationRule(o *Object) []FieldError {
	dr, ok := o.Spec.(*networking.DestinationRule)
	if !ok {
		return []FieldError{{Object: o.Key(), Message: fmt.Sprintf("spec is %T, want DestinationRule", o.Spec)}}
	}
	fe := &fieldErrs{object: o.Key()}
	checkGeneric(dr, fe)
	if msg := validHost(dr.GetHost(), true); msg != "" {
		fe.add("host", "%s", msg)
	}
	trafficPolicy(dr.GetTrafficPolicy(), "trafficPolicy", fe)
	seen := map[string]bool{}
	for i, s := range dr.GetSubsets() {
		p := indexPath("subsets", i)
		switch {
		case s.GetName() == "":
			fe.add(joinPath(p, "name"), "required")
		case !dns1123Label.MatchString(s.GetName()):
			fe.add(joinPath(p, "name"), "%q is not a valid subset name: lower-case letters, digits and '-'", s.GetName())
		case seen[s.GetName()]:
			fe.add(joinPath(p, "name"), "subset %q is defined twice", s.GetName())
		}
		seen[s.GetName()] = true
		trafficPolicy(s.GetTrafficPolicy(), joinPath(p, "trafficPolicy"), fe)
	}
	return fe.errs
}

func trafficPolicy(tp *networking.TrafficPolicy, p string, fe *fieldErrs) {
	if tp == nil {
		return
	}
	if od := tp.GetOutlierDetection(); od != nil {
		op := joinPath(p, "outlierDetection")
		percent(int64(od.GetMaxEjectionPercent()), joinPath(op, "maxEjectionPercent"), fe)
		percent(int64(od.GetMinHealthPercent()), joinPath(op, "minHealthPercent"), fe)
		positive(od.GetInterval(), joinPath(op, "interval"), fe)
		positive(od.GetBaseEjectionTime(), joinPath(op, "baseEjectionTime"), fe)
		//lint:ignore SA1019 deprecated but still accepted by Istio, so still checked
		if od.GetConsecutiveErrors() < 0 {
			fe.add(joinPath(op, "consecutiveErrors"), "must not be negative")
		}
	}
	if cp := tp.GetConnectionPool(); cp != nil {
		cpp := joinPath(p, "connectionPool")
		if tcp := cp.GetTcp(); tcp != nil {
			if tcp.GetMaxConnections() < 0 {
				fe.add(joinPath(cpp, "tcp.maxConnections"), "must not be negative")
			}
			positive(tcp.GetConnectTimeout(), joinPath(cpp, "tcp.connectTimeout"), fe)
		}
		if h := cp.GetHttp(); h != nil {
			for name, n := range map[string]int32{"http1MaxPendingRequests": h.GetHttp1MaxPendingRequests(), "http2MaxRequests": h.GetHttp2MaxRequests(), "maxRequestsPerConnection": h.GetMaxRequestsPerConnection(), "maxRetries": h.GetMaxRetries(), "maxConcurrentStreams": h.GetMaxConcurrentStreams()} {
				if n < 0 {
					fe.add(joinPath(cpp, "http."+name), "must not be negative")
				}
			}
		}
	}
	if lb := tp.GetLoadBalancer(); lb != nil {
		if ch := lb.GetConsistentHash(); ch != nil && ch.GetHashKey() == nil {
			fe.add(joinPath(p, "loadBalancer.consistentHash"), "set one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName")
		}
		if w := lb.GetWarmup(); w != nil {
			wp := joinPath(p, "loadBalancer.warmup")
			if w.GetDuration() == nil {
				fe.add(joinPath(wp, "duration"), "required")
			}
			if w.GetMinimumPercent().GetValue() > 100 {
				fe.add(joinPath(wp, "minimumPercent"), "must be at most 100")
			}
			if w.GetAggression() != nil && w.GetAggression().GetValue() <= 0 {
				fe.add(joinPath(wp, "aggression"), "must be greater than 0")
			}
		}
	}
	for i, pl := range tp.GetPortLevelSettings() {
		pp := indexPath(joinPath(p, "portLevelSettings"), i)
		if pl.GetPort() == nil {
			fe.add(joinPath(pp, "port"), "required")
		} else {
			validPort(pl.GetPort().GetNumber(), joinPath(pp, "port.number"), fe)
		}
		sub := &networking.TrafficPolicy{OutlierDetection: pl.GetOutlierDetection(), ConnectionPool: pl.GetConnectionPool(), LoadBalancer: pl.GetLoadBalancer()}
		trafficPolicy(sub, pp, fe)
	}
}

var portProtocols = map[string]bool{"HTTP": true, "HTTPS": true, "HTTP2": true, "GRPC": true, "GRPC-WEB": true, "TCP": true, "TLS": true, "MONGO": true, "REDIS": true, "MYSQL": true, "UDP": true}

func (v *istioValidator) serviceEntry(o *Object) []FieldError {
	se, ok := o.Spec.(*networking.ServiceEntry)
	if !ok {
		return []FieldError{{Object: o.Key(), Message: fmt.Sprintf("spec is %T, want ServiceEntry", o.Spec)}}
	}
	fe := &fieldErrs{object: o.Key()}
	checkGeneric(se, fe)
	if len(se.GetHosts()) == 0 {
		fe.add("hosts", "at least one host is required")
	}
	for i, h := range se.GetHosts() {
		if h == "*" {
			fe.add(indexPath("hosts", i), "\"*\" is not allowed; name the hosts")
		} else if msg := validHost(partialWildcardTrimmed(h), true); msg != "" {
			fe.add(indexPath("hosts", i), "%s", msg)
		}
	}
	res := se.GetResolution()
	for i, a := range se.GetAddresses() {
		if _, err := netip.ParseAddr(a); err != nil {
			if _, err := netip.ParsePrefix(a); err != nil {
				fe.add(indexPath("addresses", i), "%q is not an IP address or CIDR", a)
			} else if res != networking.ServiceEntry_NONE && res != networking.ServiceEntry_STATIC {
				fe.add(indexPath("addresses", i), "CIDR addresses are allowed only with resolution NONE or STATIC")
			}
		}
	}
	for k, val := range se.GetWorkloadSelector().GetLabels() {
		if k == "" || strings.Contains(k, "*") || strings.Contains(val, "*") {
			fe.add(keyPath("workloadSelector.labels", k), "a selector label needs a key, and no wildcard")
		}
	}
	switch {
	case res == networking.ServiceEntry_NONE && len(se.GetEndpoints()) > 0:
		fe.add("endpoints", "resolution NONE takes no endpoints")
	case res == networking.ServiceEntry_DNS_ROUND_ROBIN && len(se.GetEndpoints()) > 1:
		fe.add("endpoints", "resolution DNS_ROUND_ROBIN takes at most one endpoint")
	}
	names, numbers := map[string]bool{}, map[uint32]bool{}
	for i, p := range se.GetPorts() {
		pp := indexPath("ports", i)
		validPort(p.GetNumber(), joinPath(pp, "number"), fe)
		if numbers[p.GetNumber()] {
			fe.add(joinPath(pp, "number"), "port %d is listed twice", p.GetNumber())
		}
		numbers[p.GetNumber()] = true
		if p.GetName() == "" {
			fe.add(joinPath(pp, "name"), "required")
		} else if names[p.GetName()] {
			fe.add(joinPath(pp, "name"), "port name %q is used twice", p.GetName())
		}
		names[p.GetName()] = true
		if p.GetProtocol() != "" && !portProtocols[strings.ToUpper(p.GetProtocol())] {
			fe.add(joinPath(pp, "protocol"), "unknown protocol %q", p.GetProtocol())
		}
		if p.GetTargetPort() != 0 {
			validPort(p.GetTargetPort(), joinPath(pp, "targetPort"), fe)
		}
	}
	if len(se.GetEndpoints()) > 0 && se.GetWorkloadSelector() != nil {
		fe.add("workloadSelector", "only one of endpoints and workloadSelector may be set")
	}
	if se.GetResolution() == networking.ServiceEntry_STATIC && len(se.GetEndpoints()) == 0 && se.GetWorkloadSelector() == nil {
		fe.add("endpoints", "resolution STATIC needs endpoints or a workloadSelector")
	}
	for i, e := range se.GetEndpoints() {
		workloadEntry(e, indexPath("endpoints", i), se.GetResolution() == networking.ServiceEntry_STATIC, fe)
	}
	return fe.errs
}

// partialWildcardTrimmed is host without the "*" of a partial wildcard
// ("*x.example.com"), which Istio accepts in a ServiceEntry with a warning.
func partialWildcardTrimmed(h string) string {
	if strings.HasPrefix(h, "*") && !strings.HasPrefix(h, "*.") {
		return h[1:]
	}
	return h
}

func workloadEntry(we *networking.WorkloadEntry, p string, needIP bool, fe *fieldErrs) {
	ap := joinPath(p, "address")
	switch a := we.GetAddress(); {
	case a == "" && we.GetNetwork() != "":
		// Istio allows it (with a warning): the endpoint is reached
		// through its network's gateway.
	case a == "":
		fe.add(ap, "required")
	case strings.HasPrefix(a, "unix://"):
		if uds := strings.TrimPrefix(a, "unix://"); !strings.HasPrefix(uds, "@") && (!path.IsAbs(uds) || strings.HasSuffix(uds, "/")) {
			fe.add(ap, "%q is not an absolute path to a socket file nor an abstract socket (unix://@name)", a)
		}
		if len(we.GetPorts()) > 0 {
			fe.add(joinPath(p, "ports"), "a unix socket endpoint has no ports")
		}
	case needIP:
		if _, err := netip.ParseAddr(a); err != nil {
			fe.add(ap, "%q is not an IP address (resolution STATIC needs IPs)", a)
		}
	default:
		if _, err := netip.ParseAddr(a); err != nil {
			if msg := validHost(a, false); msg != "" {
				fe.add(ap, "%q is not an IP address or host name", a)
			}
		}
	}
	for name, port := range we.GetPorts() {
		validPort(port, keyPath(joinPath(p, "ports"), name), fe)
		if !dns1123Label.MatchString(name) {
			fe.add(keyPath(joinPath(p, "ports"), name), "%q is not a valid port name: lower-case letters, digits and '-'", name)
		}
	}
}

func (v *istioValidator) workloadEntry(o *Object) []FieldError {
	we, ok := o.Spec.(*networking.WorkloadEntry)
	if !ok {
		return []FieldError{{Object: o.Key(), Message: fmt.Sprintf("spec is %T, want WorkloadEntry", o.Spec)}}
	}
	fe := &fieldErrs{object: o.Key()}
	checkGeneric(we, fe)
	workloadEntry(we, "", false, fe)
	return fe.errs
}

func (v *istioValidator) peerAuthentication(o *Object) []FieldError {
	pa, ok := o.Spec.(*security.PeerAuthentication)
	if !ok {
		return []FieldError{{Object: o.Key(), Message: fmt.Sprintf("spec is %T, want PeerAuthentication", o.Spec)}}
	}
	fe := &fieldErrs{object: o.Key()}
	if len(pa.GetPortLevelMtls()) > 0 && len(pa.GetSelector().GetMatchLabels()) == 0 {
		fe.add("portLevelMtls", "portLevelMtls needs a selector with matchLabels")
	}
	for port, m := range pa.GetPortLevelMtls() {
		p := keyPath("portLevelMtls", strconv.FormatUint(uint64(port), 10))
		validPort(port, p, fe)
		if m == nil || m.GetMode() == security.PeerAuthentication_MutualTLS_UNSET {
			fe.add(joinPath(p, "mode"), "set mode to DISABLE, PERMISSIVE or STRICT")
		}
	}
	return fe.errs
}

// conditionKeys are the AuthorizationPolicy "when" keys Istio defines; keys
// with a [name] suffix take any name.
var conditionKeys = map[string]bool{
	"request.headers": true, "source.ip": true, "remote.ip": true, "source.namespace": true,
	"source.principal": true, "request.auth.principal": true, "request.auth.audiences": true,
	"request.auth.presenter": true, "request.auth.claims": true, "destination.ip": true,
	"destination.port": true, "connection.sni": true, "source.serviceAccount": true,
	"source.trustDomain": true,
}

// analyzeAuthorizationPolicy reports a CUSTOM policy whose ext_authz
// provider meshlens cannot use (not in the mesh config, or not an
// ext_authz provider): its rules deny what they match (fails closed).
func (v *istioValidator) analyzeAuthorizationPolicy(o *Object, _ *Snapshot) []Warning {
	ap, ok := o.Spec.(*security.AuthorizationPolicy)
	if !ok || v.opts.ExtAuthzProvider == nil || ap.GetAction() != security.AuthorizationPolicy_CUSTOM || ap.GetProvider().GetName() == "" {
		return nil
	}
	err := v.opts.ExtAuthzProvider(ap.GetProvider().GetName())
	if err == nil {
		return nil
	}
	w := &warns{object: o.Key()}
	w.add(CodeReferencedResourceNotFound, "provider.name", "Referenced provider not usable: %v: the policy fails closed, its rules deny what they match", err)
	return w.out
}

func (v *istioValidator) authorizationPolicy(o *Object) []FieldError {
	ap, ok := o.Spec.(*security.AuthorizationPolicy)
	if !ok {
		return []FieldError{{Object: o.Key(), Message: fmt.Sprintf("spec is %T, want AuthorizationPolicy", o.Spec)}}
	}
	fe := &fieldErrs{object: o.Key()}
	switch {
	case ap.GetAction() == security.AuthorizationPolicy_CUSTOM && ap.GetProvider().GetName() == "":
		fe.add("provider.name", "action CUSTOM needs a provider")
	case ap.GetAction() != security.AuthorizationPolicy_CUSTOM && ap.GetProvider() != nil:
		fe.add("provider", "a provider is only allowed with action CUSTOM")
	}
	if ap.GetSelector() != nil && (ap.GetTargetRef() != nil || len(ap.GetTargetRefs()) > 0) {
		fe.add("selector", "only one of selector, targetRef and targetRefs may be set")
	}
	for i, r := range ap.GetRules() {
		rp := indexPath("rules", i)
		for j, f := range r.GetFrom() {
			fp := indexPath(joinPath(rp, "from"), j) + ".source"
			src := f.GetSource()
			if src == nil || proto.Size(src) == 0 {
				fe.add(fp, "a from entry needs a non-empty source")
			}
			if len(src.GetServiceAccounts())+len(src.GetNotServiceAccounts()) > 0 &&
				len(src.GetPrincipals())+len(src.GetNotPrincipals())+len(src.GetNamespaces())+len(src.GetNotNamespaces()) > 0 {
				fe.add(joinPath(fp, "serviceAccounts"), "cannot set serviceAccounts with namespaces or principals")
			}
			for k, ip := range append(append([]string{}, f.GetSource().GetIpBlocks()...), f.GetSource().GetNotIpBlocks()...) {
				if _, err := netip.ParsePrefix(ip); err != nil {
					if _, err := netip.ParseAddr(ip); err != nil {
						fe.add(indexPath(joinPath(fp, "ipBlocks"), k), "%q is not an IP address or CIDR", ip)
					}
				}
			}
		}
		for j, t := range r.GetTo() {
			tp := indexPath(joinPath(rp, "to"), j) + ".operation"
			op := t.GetOperation()
			if op == nil || proto.Size(op) == 0 {
				fe.add(tp, "a to entry needs a non-empty operation")
				continue
			}
			for k, port := range append(append([]string{}, op.GetPorts()...), op.GetNotPorts()...) {
				n, err := strconv.ParseUint(port, 10, 32)
				if err != nil || n == 0 || n > 65535 {
					fe.add(indexPath(joinPath(tp, "ports"), k), "%q is not a port in 1..65535", port)
				}
			}
		}
		for j, c := range r.GetWhen() {
			cp := indexPath(joinPath(rp, "when"), j)
			key := c.GetKey()
			if i := strings.IndexByte(key, '['); i > 0 && strings.HasSuffix(key, "]") {
				key = key[:i]
			}
			if !conditionKeys[key] && !strings.HasPrefix(key, "experimental.") {
				fe.add(joinPath(cp, "key"), "unknown condition key %q", c.GetKey())
			}
			if len(c.GetValues()) == 0 && len(c.GetNotValues()) == 0 {
				fe.add(cp, "a condition needs values or notValues")
			}
		}
	}
	return fe.errs
}
