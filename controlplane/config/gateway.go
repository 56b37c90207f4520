package config

import (
	"fmt"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1"
)

// KindGateway is Istio's Gateway (networking.istio.io): the servers (port,
// protocol, hosts, TLS) of the gateway proxies its selector picks, to which
// VirtualServices bind with `gateways:`.
const KindGateway = "Gateway"

// MeshGateway is the reserved gateway name that binds a VirtualService to
// every sidecar and proxyless client, as when it names no gateway.
const MeshGateway = "mesh"

// GatewayRef resolves a VirtualService's `gateways:` entry written in
// namespace ns to the Gateway's namespace and name, as Istio does: "name"
// is in ns, "ns/name" names its namespace, and the legacy
// "name.ns.svc.cluster.local" is read as ns/name. ok is false for "mesh".
func GatewayRef(ref, ns string) (gwNamespace, name string, ok bool) {
	if ref == MeshGateway || ref == "" {
		return "", "", false
	}
	if i := strings.IndexByte(ref, '/'); i >= 0 {
		return ref[:i], ref[i+1:], true
	}
	if parts := strings.Split(ref, "."); len(parts) > 1 {
		return parts[1], parts[0], true
	}
	return ns, ref, true
}

// GatewayServerHost splits a Gateway server host "ns/host" into the
// namespaces whose VirtualServices may bind to it ("*" any, "." the
// Gateway's own) and the host; a host without "/" is "*/host".
func GatewayServerHost(h string) (nsPattern, host string) {
	if i := strings.IndexByte(h, '/'); i >= 0 {
		return h[:i], h[i+1:]
	}
	return "*", h
}

// GatewayHostBinds reports whether a VirtualService host vsHost written in
// namespace vsNS binds to the server host serverHost of a Gateway in gwNS:
// the namespace part allows vsNS and the hosts overlap (either may be a
// wildcard).
func GatewayHostBinds(serverHost, gwNS, vsHost, vsNS string) bool {
	nsPat, h := GatewayServerHost(serverHost)
	switch nsPat {
	case "*":
	case ".":
		if vsNS != gwNS {
			return false
		}
	default:
		if nsPat != vsNS {
			return false
		}
	}
	return hostMatches(h, vsHost) || hostMatches(vsHost, h)
}

func (v *istioValidator) gateway(o *Object) []FieldError {
	gw, ok := o.Spec.(*networking.Gateway)
	if !ok {
		return []FieldError{{Object: o.Key(), Message: fmt.Sprintf("spec is %T, want Gateway", o.Spec)}}
	}
	fe := &fieldErrs{object: o.Key()}
	checkGeneric(gw, fe)
	if len(gw.GetServers()) == 0 {
		fe.add("servers", "a gateway must have at least one server")
	}
	portNames := map[string]int{}
	for i, s := range gw.GetServers() {
		p := indexPath("servers", i)
		if s == nil {
			fe.add(p, "required")
			continue
		}
		if len(s.GetHosts()) == 0 {
			fe.add(joinPath(p, "hosts"), "server config must contain at least one host")
		}
		for j, h := range s.GetHosts() {
			hp := indexPath(joinPath(p, "hosts"), j)
			ns, host := GatewayServerHost(h)
			if strings.Count(h, "/") > 1 || (ns != "*" && ns != "." && !dns1123Label.MatchString(ns)) {
				fe.add(hp, "%q: the namespace part of NAMESPACE/HOST must be *, . or a namespace name", h)
				continue
			}
			if msg := validHost(host, true); msg != "" {
				fe.add(hp, "%s", msg)
			}
		}
		port := s.GetPort()
		if port == nil {
			fe.add(joinPath(p, "port"), "port is required")
			continue
		}
		validPort(port.GetNumber(), joinPath(p, "port.number"), fe)
		proto := strings.ToUpper(port.GetProtocol())
		if !portProtocols[proto] || proto == "UDP" {
			fe.add(joinPath(p, "port.protocol"), "invalid protocol %q, supported protocols are HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP, TLS", port.GetProtocol())
		}
		if n := port.GetName(); n != "" {
			if prev, dup := portNames[n]; dup {
				fe.add(joinPath(p, "port.name"), "port names in servers must be unique: duplicate name %s (also servers[%d])", n, prev)
			} else {
				portNames[n] = i
			}
		}
		serverTLS(s.GetTls(), proto, joinPath(p, "tls"), fe)
	}
	return fe.errs
}

// serverTLS checks a server's TLS settings as Istio's webhook does.
func serverTLS(tls *networking.ServerTLSSettings, proto, p string, fe *fieldErrs) {
	tlsPort := proto == "HTTPS" || proto == "TLS"
	switch {
	case tls == nil && tlsPort:
		fe.add(p, "server must have TLS settings for HTTPS/TLS protocols")
		return
	case tls == nil:
		return
	case !tlsPort && !(proto == "HTTP" && tls.GetHttpsRedirect()):
		fe.add(p, "server cannot have TLS settings for plain text %s ports (only httpsRedirect on HTTP)", proto)
		return
	}
	files := tls.GetServerCertificate() != "" || tls.GetPrivateKey() != "" || tls.GetCaCertificates() != ""
	switch tls.GetMode() {
	case networking.ServerTLSSettings_SIMPLE, networking.ServerTLSSettings_MUTUAL, networking.ServerTLSSettings_OPTIONAL_MUTUAL:
		if tls.GetCredentialName() != "" || len(tls.GetCredentialNames()) > 0 {
			break
		}
		if tls.GetServerCertificate() == "" {
			fe.add(joinPath(p, "serverCertificate"), "%s mode requires serverCertificate (or credentialName)", tls.GetMode())
		}
		if tls.GetPrivateKey() == "" {
			fe.add(joinPath(p, "privateKey"), "%s mode requires privateKey (or credentialName)", tls.GetMode())
		}
		if tls.GetMode() != networking.ServerTLSSettings_SIMPLE && tls.GetCaCertificates() == "" {
			fe.add(joinPath(p, "caCertificates"), "%s mode requires caCertificates (or credentialName) to verify client certificates", tls.GetMode())
		}
	case networking.ServerTLSSettings_ISTIO_MUTUAL:
		if files || tls.GetCredentialName() != "" {
			fe.add(p, "ISTIO_MUTUAL TLS cannot have associated private key, server certificate, CA certificates or credentialName: it uses the workload identity")
		}
	case networking.ServerTLSSettings_PASSTHROUGH, networking.ServerTLSSettings_AUTO_PASSTHROUGH:
		if proto == "HTTPS" && tls.GetMode() == networking.ServerTLSSettings_AUTO_PASSTHROUGH {
			fe.add(joinPath(p, "mode"), "AUTO_PASSTHROUGH needs protocol TLS")
		}
	}
	minV, maxV := tls.GetMinProtocolVersion(), tls.GetMaxProtocolVersion()
	if minV != networking.ServerTLSSettings_TLS_AUTO && maxV != networking.ServerTLSSettings_TLS_AUTO && minV > maxV {
		fe.add(joinPath(p, "minProtocolVersion"), "minProtocolVersion %s is above maxProtocolVersion %s", minV, maxV)
	}
}

// analyzeGateway reports servers that cannot all be served: two servers of
// this or another Gateway selecting the same workloads that claim one port
// with overlapping hosts (Istio's IST0145), or one port given two
// protocols that do not share a listener.
func (v *istioValidator) analyzeGateway(o *Object, sn *Snapshot) []Warning {
	gw, ok := o.Spec.(*networking.Gateway)
	if !ok {
		return nil
	}
	w := &warns{object: o.Key()}
	for i, s := range gw.GetServers() {
		p := indexPath("servers", i)
		if name := s.GetTls().GetCredentialName(); name != "" && v.opts.GatewayCredential != nil {
			switch m := s.GetTls().GetMode(); m {
			case networking.ServerTLSSettings_SIMPLE, networking.ServerTLSSettings_MUTUAL, networking.ServerTLSSettings_OPTIONAL_MUTUAL:
				if code, msg, bad := v.opts.GatewayCredential(GatewayCredentialRef{GatewayNamespace: o.Meta.Namespace, Selector: gw.GetSelector(), Name: name,
					NeedCA: m != networking.ServerTLSSettings_SIMPLE}); bad {
					w.add(code, joinPath(p, "tls.credentialName"), "%s: this server (port %d) is not served", msg, s.GetPort().GetNumber())
				}
			}
		}
		for j, t := range gw.GetServers()[:i] {
			if s.GetPort().GetNumber() == t.GetPort().GetNumber() && listenerFamily(s) != listenerFamily(t) {
				w.add(CodeConflictingGateways, joinPath(p, "port"),
					"Conflict with servers[%d] on port %d: protocols %s and %s cannot share one listener; only servers[%d] is served on it",
					j, s.GetPort().GetNumber(), t.GetPort().GetProtocol(), s.GetPort().GetProtocol(), j)
			}
		}
		for _, other := range sn.OfKind(KindGateway) {
			if other.Key() == o.Key() {
				continue
			}
			og := other.Spec.(*networking.Gateway)
			if !selectorsOverlap(gw.GetSelector(), og.GetSelector()) {
				continue
			}
			for _, t := range og.GetServers() {
				if t.GetPort().GetNumber() != s.GetPort().GetNumber() {
					continue
				}
				if hosts := overlappingHosts(s.GetHosts(), t.GetHosts()); len(hosts) > 0 {
					w.add(CodeConflictingGateways, joinPath(p, "port"),
						"Conflict with gateways %s (workload selector %s, port %d, hosts %s): the proxies they select cannot serve both; the first in key order is used",
						other.Key(), selectorString(gw.GetSelector()), s.GetPort().GetNumber(), strings.Join(hosts, ", "))
				}
			}
		}
	}
	return w.out
}

// listenerFamily groups protocols that one gateway listener serves
// together: plain-text HTTP, TLS-terminated HTTP, raw TCP, TLS by SNI.
func listenerFamily(s *networking.Server) string {
	switch strings.ToUpper(s.GetPort().GetProtocol()) {
	case "HTTP", "HTTP2", "GRPC", "GRPC-WEB":
		return "http"
	case "HTTPS", "TLS":
		return "tls"
	}
	return "tcp"
}

func overlappingHosts(a, b []string) []string {
	var out []string
	for _, x := range a {
		_, hx := GatewayServerHost(x)
		for _, y := range b {
			_, hy := GatewayServerHost(y)
			if hostMatches(hx, hy) || hostMatches(hy, hx) {
				out = append(out, hx)
				break
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// selectorsOverlap reports whether some workload may carry both label
// sets: no key with two different values.
func selectorsOverlap(a, b map[string]string) bool {
	for k, va := range a {
		if vb, ok := b[k]; ok && vb != va {
			return false
		}
	}
	return true
}

func selectorString(sel map[string]string) string {
	var parts []string
	for _, k := range sortedStringKeys(sel) {
		parts = append(parts, k+"="+sel[k])
	}
	return strings.Join(parts, ",")
}

func sortedStringKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// analyzeGatewayBindings reports, for a VirtualService's `gateways:`, what
// istioctl analyze does: a Gateway that does not exist (IST0101) and one
// none of whose server hosts matches the VirtualService's hosts (IST0132).
func (v *istioValidator) analyzeGatewayBindings(o *Object, vs *networking.VirtualService, sn *Snapshot, w *warns) {
	for i, ref := range vs.GetGateways() {
		ns, name, ok := GatewayRef(ref, o.Meta.Namespace)
		if !ok {
			continue
		}
		g := sn.Get(KindGateway, ns, name)
		if g == nil {
			w.add(CodeReferencedResourceNotFound, indexPath("gateways", i),
				"Referenced gateway not found: %q: no Gateway %s/%s exists; the routes are served by no gateway until one does", ref, ns, name)
			continue
		}
		gw := g.Spec.(*networking.Gateway)
		var missing []string
		for _, h := range vs.GetHosts() {
			bound := false
			for _, s := range gw.GetServers() {
				for _, sh := range s.GetHosts() {
					if GatewayHostBinds(sh, g.Meta.Namespace, h, o.Meta.Namespace) {
						bound = true
					}
				}
			}
			if !bound {
				missing = append(missing, h)
			}
		}
		if len(missing) > 0 {
			w.add(CodeVirtualServiceHostNotFoundInGateway, indexPath("gateways", i),
				"one or more host %v defined in VirtualService %s not found in Gateway %s/%s: the gateway does not serve them", missing, o.Key(), ns, name)
		}
	}
}
