package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1"
)

// KindSidecar is Istio's Sidecar (networking.istio.io): which services the
// proxies of a namespace (or those its workloadSelector picks) may reach
// (egress hosts, so they receive only those clusters and routes), what
// happens to traffic to anything else (outboundTrafficPolicy), and their
// inbound ports.
const KindSidecar = "Sidecar"

// SidecarEgressHost splits an egress host "ns/dnsName": ns is "*" (any
// namespace), "." (the Sidecar's own), "~" (none) or a namespace.
func SidecarEgressHost(h string) (ns, host string, ok bool) {
	ns, host, ok = strings.Cut(h, "/")
	return ns, host, ok && !strings.Contains(host, "/")
}

// SidecarEgressAllows reports whether an egress host of a Sidecar in
// namespace sidecarNS lets its proxies reach host, a service of namespace
// svcNS.
func SidecarEgressAllows(egressHost, sidecarNS, host, svcNS string) bool {
	ns, pattern, ok := SidecarEgressHost(egressHost)
	if !ok {
		return false
	}
	switch ns {
	case "*":
	case ".":
		if svcNS != sidecarNS {
			return false
		}
	case "~":
		return false
	default:
		if ns != svcNS {
			return false
		}
	}
	return hostMatches(pattern, host)
}

func (v *istioValidator) sidecar(o *Object) []FieldError {
	sc, ok := o.Spec.(*networking.Sidecar)
	if !ok {
		return []FieldError{{Object: o.Key(), Message: fmt.Sprintf("spec is %T, want Sidecar", o.Spec)}}
	}
	fe := &fieldErrs{object: o.Key()}
	checkGeneric(sc, fe)
	if ws := sc.GetWorkloadSelector(); ws != nil && len(ws.GetLabels()) == 0 {
		fe.add("workloadSelector.labels", "sidecar: workloadSelector cannot have empty labels")
	}
	if len(sc.GetEgress()) == 0 && len(sc.GetIngress()) == 0 && sc.GetOutboundTrafficPolicy() == nil && sc.GetInboundConnectionPool() == nil {
		fe.add("", "sidecar: empty configuration provided: set egress, ingress or outboundTrafficPolicy")
	}
	ports := map[uint32]string{}
	port := func(p *networking.SidecarPort, path string) {
		validPort(p.GetNumber(), joinPath(path, "number"), fe)
		if proto := strings.ToUpper(p.GetProtocol()); proto != "" && !portProtocols[proto] {
			fe.add(joinPath(path, "protocol"), "invalid protocol %q, supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP, TLS, UDP", p.GetProtocol())
		}
	}
	for i, in := range sc.GetIngress() {
		p := indexPath("ingress", i)
		if in.GetPort() == nil {
			fe.add(joinPath(p, "port"), "sidecar: port is required for ingress listeners")
			continue
		}
		port(in.GetPort(), joinPath(p, "port"))
		//lint:ignore SA1019 deprecated, and refused on Sidecars as Istio's webhook does
		if in.GetPort().GetTargetPort() > 0 {
			fe.add(joinPath(p, "port.targetPort"), "sidecar: targetPort has no impact on Sidecars")
		}
		connectionPool(in.GetConnectionPool(), joinPath(p, "connectionPool"), fe)
		if prev, dup := ports[in.GetPort().GetNumber()]; dup {
			fe.add(joinPath(p, "port.number"), "sidecar: ports on IP bound listeners must be unique: %d is also %s", in.GetPort().GetNumber(), prev)
		}
		ports[in.GetPort().GetNumber()] = p
		if b := in.GetBind(); b != "" {
			if _, err := netip.ParseAddr(b); err != nil {
				fe.add(joinPath(p, "bind"), "sidecar: bind %q must be an IP address (unix domain sockets are not allowed for ingress listeners)", b)
			}
		}
		if tls := in.GetTls(); tls != nil {
			tp := joinPath(p, "tls")
			switch tls.GetMode() {
			case networking.ServerTLSSettings_SIMPLE, networking.ServerTLSSettings_MUTUAL, networking.ServerTLSSettings_OPTIONAL_MUTUAL:
			default:
				fe.add(joinPath(tp, "mode"), "sidecar: cannot set mode to %s in sidecar ingress tls: use SIMPLE, MUTUAL or OPTIONAL_MUTUAL", tls.GetMode())
			}
			if tls.GetServerCertificate() == "" || tls.GetPrivateKey() == "" {
				fe.add(tp, "sidecar: ingress tls needs serverCertificate and privateKey (files on the proxy)")
			}
			if tls.GetMode() != networking.ServerTLSSettings_SIMPLE && tls.GetCaCertificates() == "" {
				fe.add(joinPath(tp, "caCertificates"), "sidecar: mode %s needs caCertificates to verify client certificates", tls.GetMode())
			}
			for _, x := range []struct {
				field string
				set   bool
			}{{"subjectAltNames", len(tls.GetSubjectAltNames()) > 0}, {"httpsRedirect", tls.GetHttpsRedirect()},
				{"credentialName", tls.GetCredentialName() != ""}, {"credentialNames", len(tls.GetCredentialNames()) > 0}, {"tlsCertificates", len(tls.GetTlsCertificates()) > 0}} {
				if x.set {
					fe.add(joinPath(tp, x.field), "sidecar: %s is not supported in ingress tls", x.field)
				}
			}
			if proto := strings.ToUpper(in.GetPort().GetProtocol()); proto != "HTTPS" && proto != "TLS" {
				fe.add(joinPath(tp, "mode"), "sidecar: TLS settings need an HTTPS or TLS port, not %q", in.GetPort().GetProtocol())
			}
		}
		if ep := in.GetDefaultEndpoint(); ep != "" && !strings.HasPrefix(ep, "unix://") {
			host, portStr, found := strings.Cut(ep, ":")
			if !found || (host != "127.0.0.1" && host != "0.0.0.0" && host != "[::1]" && host != "[::]") || portStr == "" || strings.Trim(portStr, "0123456789") != "" {
				fe.add(joinPath(p, "defaultEndpoint"), "sidecar: defaultEndpoint %q must be 127.0.0.1:PORT, 0.0.0.0:PORT, [::1]:PORT, [::]:PORT or unix://PATH", ep)
			}
		}
	}
	connectionPool(sc.GetInboundConnectionPool(), "inboundConnectionPool", fe)
	ports = map[uint32]string{}
	for i, eg := range sc.GetEgress() {
		p := indexPath("egress", i)
		if eg.GetPort() == nil && i != len(sc.GetEgress())-1 {
			fe.add(p, "sidecar: the egress listener with empty port should be the last listener in the list")
		}
		if eg.GetPort() != nil {
			port(eg.GetPort(), joinPath(p, "port"))
			//lint:ignore SA1019 deprecated, and refused on Sidecars as Istio's webhook does
			if eg.GetPort().GetTargetPort() > 0 {
				fe.add(joinPath(p, "port.targetPort"), "sidecar: targetPort has no impact on Sidecars")
			}
			if prev, dup := ports[eg.GetPort().GetNumber()]; dup {
				fe.add(joinPath(p, "port.number"), "sidecar: ports on IP bound listeners must be unique: %d is also %s", eg.GetPort().GetNumber(), prev)
			}
			ports[eg.GetPort().GetNumber()] = p
		}
		if b := eg.GetBind(); b != "" {
			switch {
			case strings.HasPrefix(b, "unix://"):
				// Istio takes a unix socket with port number 0; meshlens
				// builds no such listener.
				fe.add(joinPath(p, "bind"), "sidecar: unix domain socket egress listeners (bind %q) are not supported by meshlens: bind an IP address", b)
			default:
				if _, err := netip.ParseAddr(b); err != nil {
					fe.add(joinPath(p, "bind"), "sidecar: bind %q must be an IP address", b)
				}
			}
		}

		if len(eg.GetHosts()) == 0 {
			fe.add(joinPath(p, "hosts"), "sidecar: egress listener must contain at least one host")
		}
		for j, h := range eg.GetHosts() {
			hp := indexPath(joinPath(p, "hosts"), j)
			ns, host, ok := SidecarEgressHost(h)
			switch {
			case !ok:
				fe.add(hp, "sidecar: host %q must be of form namespace/dnsName", h)
			case ns != "*" && ns != "." && ns != "~" && !dns1123Label.MatchString(ns):
				fe.add(hp, "sidecar: the namespace of %q must be *, ., ~ or a namespace name", h)
			default:
				if msg := validHost(host, true); msg != "" {
					fe.add(hp, "%s", msg)
				}
			}
		}
	}
	if ep := sc.GetOutboundTrafficPolicy().GetEgressProxy(); ep != nil {
		const p = "outboundTrafficPolicy.egressProxy"
		switch {
		case sc.GetOutboundTrafficPolicy().GetMode() != networking.OutboundTrafficPolicy_ALLOW_ANY:
			fe.add(p, "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode")
		case ep.GetPort() == nil:
			fe.add(joinPath(p, "port"), "sidecar: egress_proxy port must be non-nil")
		default:
			if ep.GetHost() == "" {
				fe.add(joinPath(p, "host"), "sidecar: egress_proxy host is required")
			} else if strings.Contains(ep.GetHost(), "*") {
				fe.add(joinPath(p, "host"), "sidecar: egress_proxy host %q must be a fully qualified domain name, not a wildcard", ep.GetHost())
			} else if msg := validHost(ep.GetHost(), false); msg != "" {
				fe.add(joinPath(p, "host"), "%s", msg)
			}
			validPort(ep.GetPort().GetNumber(), joinPath(p, "port.number"), fe)
		}
	}
	return fe.errs
}

// connectionPool checks a Sidecar's inbound connection pool as Istio's
// webhook does (validateConnectionPool).
func connectionPool(cp *networking.ConnectionPoolSettings, path string, fe *fieldErrs) {
	if cp == nil {
		return
	}
	if cp.GetHttp() == nil && cp.GetTcp() == nil {
		fe.add(path, "connection pool must have at least one field: set tcp or http")
		return
	}
	if h := cp.GetHttp(); h != nil {
		for _, x := range []struct {
			field string
			n     int32
		}{{"http1MaxPendingRequests", h.GetHttp1MaxPendingRequests()}, {"http2MaxRequests", h.GetHttp2MaxRequests()},
			{"maxRequestsPerConnection", h.GetMaxRequestsPerConnection()}, {"maxRetries", h.GetMaxRetries()}, {"maxConcurrentStreams", h.GetMaxConcurrentStreams()}} {
			if x.n < 0 {
				fe.add(joinPath(path, "http."+x.field), "must not be negative")
			}
		}
		positive(h.GetIdleTimeout(), joinPath(path, "http.idleTimeout"), fe)
		if h.GetH2UpgradePolicy() == networking.ConnectionPoolSettings_HTTPSettings_UPGRADE && h.GetUseClientProtocol() {
			fe.add(joinPath(path, "http.useClientProtocol"), "use client protocol must not be true when h2UpgradePolicy is UPGRADE")
		}
		if ka := h.GetHttp2KeepAlive(); ka != nil {
			if ka.GetInterval() == nil {
				fe.add(joinPath(path, "http.http2KeepAlive.interval"), "http2 keepalive interval is required")
			}
			if ka.GetTimeout() == nil {
				fe.add(joinPath(path, "http.http2KeepAlive.timeout"), "http2 keepalive timeout is required")
			}
			positive(ka.GetInterval(), joinPath(path, "http.http2KeepAlive.interval"), fe)
			positive(ka.GetTimeout(), joinPath(path, "http.http2KeepAlive.timeout"), fe)
		}
	}
	if tcp := cp.GetTcp(); tcp != nil {
		if tcp.GetMaxConnections() < 0 {
			fe.add(joinPath(path, "tcp.maxConnections"), "must not be negative")
		}
		positive(tcp.GetConnectTimeout(), joinPath(path, "tcp.connectTimeout"), fe)
		positive(tcp.GetMaxConnectionDuration(), joinPath(path, "tcp.maxConnectionDuration"), fe)
		if d := tcp.GetIdleTimeout(); d != nil && d.AsDuration() != 0 { // 0s turns the timeout off
			positive(d, joinPath(path, "tcp.idleTimeout"), fe)
		}
		positive(tcp.GetTcpKeepalive().GetTime(), joinPath(path, "tcp.tcpKeepalive.time"), fe)
		positive(tcp.GetTcpKeepalive().GetInterval(), joinPath(path, "tcp.tcpKeepalive.interval"), fe)
	}
}

// analyzeSidecar reports what istioctl analyze does about Sidecars: two of
// a namespace without a workload selector (IST0123: which one applies is
// undefined) and, the bad input, egress hosts that name a service
// nothing defines (IST0101: the proxies get no route to it).
func (v *istioValidator) analyzeSidecar(o *Object, sn *Snapshot) []Warning {
	sc, ok := o.Spec.(*networking.Sidecar)
	if !ok {
		return nil
	}
	w := &warns{object: o.Key()}
	if sc.GetWorkloadSelector() == nil {
		var others []string
		for _, other := range sn.OfKind(KindSidecar) {
			if other.Key() != o.Key() && other.Meta.Namespace == o.Meta.Namespace && other.Spec.(*networking.Sidecar).GetWorkloadSelector() == nil {
				others = append(others, other.Key())
			}
		}
		if len(others) > 0 {
			w.add(CodeMultipleSidecarsWithoutWorkloadSelectors, "",
				"The Sidecars %s and %s in namespace %q have no workload selector: which one applies is undefined (meshlens uses the first in key order)",
				o.Key(), strings.Join(others, ", "), o.Meta.Namespace)
		}
	}
	idx := v.index(sn)
	for i, eg := range sc.GetEgress() {
		for j, h := range eg.GetHosts() {
			ns, host, ok := SidecarEgressHost(h)
			if !ok || ns == "~" || strings.Contains(host, "*") || validHost(host, false) != "" {
				continue
			}
			if !idx.resolves(host, v.opts.KnownHost) {
				w.add(CodeReferencedResourceNotFound, indexPath(indexPath("egress", i)+".hosts", j),
					"Referenced host not found: %q: no ServiceEntry, WorkloadEntry or Kubernetes Service defines it; the egress host matches nothing, so these proxies get no route to it", host)
			}
		}
	}
	// A port's egress listener imports only that port of its hosts (as
	// istiod's serviceMatchingListenerPort): a ServiceEntry host without
	// the port is reached by nothing on it.
	for i, eg := range sc.GetEgress() {
		port := eg.GetPort().GetNumber()
		if port == 0 {
			continue
		}
		for j, h := range eg.GetHosts() {
			ns, host, ok := SidecarEgressHost(h)
			if !ok || ns == "~" || strings.Contains(host, "*") || validHost(host, false) != "" {
				continue
			}
			if ports, defined := serviceEntryPorts(sn, host, v.opts.DomainSuffix); defined && !slices.Contains(ports, port) {
				w.add(CodeReferencedResourceNotFound, indexPath(indexPath("egress", i)+".hosts", j),
					"Referenced host %q has no port %d (its ServiceEntries define %v): the egress listener of port %d imports only that port of its hosts, so these proxies reach nothing of it there", host, port, ports, port)
			}
		}
	}
	// Duplicated egress hosts, as Istio's webhook warns.
	for i, eg := range sc.GetEgress() {
		seen := map[string]map[string]bool{}
		for j, h := range eg.GetHosts() {
			ns, host, ok := SidecarEgressHost(h)
			if !ok || strings.HasPrefix(ns, "~") {
				continue
			}
			if ns == "." {
				ns = o.Meta.Namespace
			}
			if seen[ns] == nil {
				seen[ns] = map[string]bool{}
			}
			if (host != "*" && (seen[ns][host] || seen[ns]["*"])) || (host == "*" && len(seen[ns]) != 0) {
				w.add(CodeSchemaWarning, indexPath(indexPath("egress", i)+".hosts", j), "duplicated egress host: %s", h)
			}
			seen[ns][host] = true
		}
		if seen["*"]["*"] && len(seen) != 1 {
			w.add(CodeSchemaWarning, indexPath("egress", i)+".hosts", "`*/*` host select all resources, no other hosts can be added")
		}
	}
	if ep := sc.GetOutboundTrafficPolicy().GetEgressProxy(); ep != nil && ep.GetHost() != "" && !strings.Contains(ep.GetHost(), "*") {
		host := FQDN(ep.GetHost(), o.Meta.Namespace, v.opts.DomainSuffix)
		if !idx.resolves(host, v.opts.KnownHost) {
			w.add(CodeReferencedResourceNotFound, "outboundTrafficPolicy.egressProxy.host",
				"Referenced host not found: %q: no ServiceEntry, WorkloadEntry or Kubernetes Service defines the egress proxy, so traffic to unknown destinations, which goes there, fails", host)
		}
	}
	for i, in := range sc.GetIngress() {
		if in.GetConnectionPool().GetHttp() != nil && !isHTTPProtocol(in.GetPort().GetProtocol()) {
			w.add(CodeSchemaWarning, indexPath("ingress", i)+".connectionPool.http",
				"sidecar: HTTP connection pool settings are configured for port %d (%q) but its protocol is not HTTP (%s); only TCP settings will apply", in.GetPort().GetNumber(), in.GetPort().GetName(), in.GetPort().GetProtocol())
		}
	}
	return w.out
}

// isHTTPProtocol reports whether an Istio port protocol is HTTP-based (as
// Istio's protocol.IsHTTP).
func isHTTPProtocol(p string) bool {
	switch strings.ToUpper(p) {
	case "HTTP", "HTTP2", "GRPC", "GRPC-WEB", "HTTP_PROXY":
		return true
	}
	return false
}

// serviceEntryPorts are the port numbers the ServiceEntries defining host
// (a FQDN) give it; defined is false when no ServiceEntry names it (a
// Kubernetes Service's ports are not known here).
func serviceEntryPorts(sn *Snapshot, host, domain string) (ports []uint32, defined bool) {
	for _, o := range sn.OfKind(KindServiceEntry) {
		se, ok := o.Spec.(*networking.ServiceEntry)
		if !ok || !slices.ContainsFunc(se.GetHosts(), func(h string) bool { return FQDN(h, o.Meta.Namespace, domain) == host }) {
			continue
		}
		defined = true
		for _, p := range se.GetPorts() {
			if !slices.Contains(ports, p.GetNumber()) {
				ports = append(ports, p.GetNumber())
			}
		}
	}
	slices.Sort(ports)
	return ports, defined
}
