package xds

import (
	"cmp"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlens/meshlens/controlplane/config"
)

// Gateway proxies (Node.Gateway: Istio's "router" nodes) get, instead of a
// sidecar's listeners, one listener per port of the servers of the Gateways
// whose selector matches their labels, and the routes of the
// VirtualServices bound to those Gateways, per host, as istiod builds them:
//
//   - plain HTTP servers share the listener "0.0.0.0_<port>" and the route
//     configuration "http.<port>", one virtual host per bound host;
//   - HTTPS servers get a filter chain each, matched by SNI on their hosts,
//     terminating TLS with the server's certificate, and the route
//     configuration "https.<port>.<portName>.<gateway>.<namespace>";
//   - TLS PASSTHROUGH servers forward by SNI to the VirtualServices' tls
//     routes, TCP servers to their tcp routes (tcp_proxy), without
//     terminating anything.
//
// A host no VirtualService routes gets Istio's answer for it: 404.

// DefaultGatewayCredentialDir holds the certificates a Gateway server's
// credentialName names: DIR/NAME/tls.crt, tls.key and, for MUTUAL, ca.crt,
// the keys of a Kubernetes TLS Secret mounted as files.
const DefaultGatewayCredentialDir = "/etc/istio/gateway-credentials"

const tcpProxyFilter = "envoy.filters.network.tcp_proxy"

// gatewayServer is one server of a Gateway that selects the node.
type gatewayServer struct {
	gw     *config.Object
	server *networking.Server
}

func (s gatewayServer) family() string {
	switch strings.ToUpper(s.server.GetPort().GetProtocol()) {
	case "HTTP", "HTTP2", "GRPC", "GRPC-WEB":
		return "http"
	case "HTTPS":
		if s.server.GetTls().GetMode() == networking.ServerTLSSettings_PASSTHROUGH || s.server.GetTls().GetMode() == networking.ServerTLSSettings_AUTO_PASSTHROUGH {
			return "passthrough"
		}
		return "https"
	case "TLS":
		if m := s.server.GetTls().GetMode(); m == networking.ServerTLSSettings_PASSTHROUGH || m == networking.ServerTLSSettings_AUTO_PASSTHROUGH {
			return "passthrough"
		}
		return "tls-terminated"
	}
	return "tcp"
}

// gatewayServersByPort lists, per port, the servers of the Gateways that
// select the node, in Gateway key order.
func (t *translator) gatewayServersByPort() map[uint32][]gatewayServer {
	out := map[uint32][]gatewayServer{}
	for _, o := range t.m.gateways {
		gw := o.Spec.(*networking.Gateway)
		if !selects(gw.Selector, t.node.Labels) {
			continue
		}
		for _, s := range gw.Servers {
			if s.GetPort() == nil {
				continue
			}
			out[s.Port.Number] = append(out[s.Port.Number], gatewayServer{gw: o, server: s})
		}
	}
	return out
}

// gatewayListeners are a gateway node's listeners and routes.
func (t *translator) gatewayListeners() ([]*listenerv3.Listener, []*routev3.RouteConfiguration, error) {
	byPort := t.gatewayServersByPort()
	var ls []*listenerv3.Listener
	var rs []*routev3.RouteConfiguration
	for _, port := range sortedPorts(byPort) {
		servers := byPort[port]
		// A port serves one kind of listener; servers of another kind on it
		// are left out (analysis reports them, IST0145).
		family := servers[0].family()
		if family == "https" || family == "passthrough" || family == "tls-terminated" {
			servers = slices.DeleteFunc(slices.Clone(servers), func(s gatewayServer) bool {
				f := s.family()
				return f != "https" && f != "passthrough" && f != "tls-terminated"
			})
		} else {
			servers = slices.DeleteFunc(slices.Clone(servers), func(s gatewayServer) bool { return s.family() != family })
		}
		l := &listenerv3.Listener{
			Name:             fmt.Sprintf("0.0.0.0_%d", port),
			Address:          socketAddress("0.0.0.0", port),
			TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		}
		switch family {
		case "http":
			rc, err := t.gatewayRoutes(fmt.Sprintf("http.%d", port), port, servers)
			if err != nil {
				return nil, nil, err
			}
			rs = append(rs, rc)
			m := t.outboundTelemetry(rdsManager(fmt.Sprintf("outbound_0.0.0.0_%d", port), rc.Name, t.clientFilters()))
			l.FilterChains = []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{Name: hcmFilter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(m)}}}}}
		case "tcp":
			fc, err := t.gatewayTCP(port, servers)
			if err != nil {
				return nil, nil, err
			}
			if fc != nil {
				l.FilterChains = []*listenerv3.FilterChain{fc}
			}
		default:
			l.ListenerFilters = []*listenerv3.ListenerFilter{{Name: "envoy.filters.listener.tls_inspector", ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspector.TlsInspector{})}}}
			fcs, routes, err := t.gatewayTLSChains(port, servers)
			if err != nil {
				return nil, nil, err
			}
			l.FilterChains, rs = fcs, append(rs, routes...)
		}
		if len(l.FilterChains) == 0 {
			continue // nothing bound: no listener, as istiod
		}
		ls = append(ls, l)
	}
	return ls, rs, nil
}

// boundVirtualServices are the VirtualServices bound to a Gateway, in key
// order.
func (t *translator) boundVirtualServices(gw *config.Object) []*config.Object {
	var out []*config.Object
	for _, o := range t.m.gatewayVSs {
		for _, ref := range o.Spec.(*networking.VirtualService).Gateways {
			if ns, name, ok := config.GatewayRef(ref, o.Meta.Namespace); ok && ns == gw.Meta.Namespace && name == gw.Meta.Name {
				out = append(out, o)
				break
			}
		}
	}
	return out
}

// gatewayName is how VirtualService matches name the gateway: ns/name.
func gatewayName(gw *config.Object) string { return gw.Meta.Namespace + "/" + gw.Meta.Name }

// gatewayRoutes builds one route configuration with a virtual host per host
// the servers serve that a bound VirtualService routes. A virtual host's
// domain is the more specific of the VirtualService's and the server's
// hosts ("*" routed on a server for bookinfo.example.com is
// bookinfo.example.com). VirtualServices routing one host on a gateway are
// merged, as istiod does: their routes in key order, catch-all routes last.
func (t *translator) gatewayRoutes(name string, port uint32, servers []gatewayServer) (*routev3.RouteConfiguration, error) {
	rc := &routev3.RouteConfiguration{Name: name, ValidateClusters: wrapperspb.Bool(false)}
	byHost := map[string]*routev3.VirtualHost{}
	for _, s := range servers {
		for _, o := range t.boundVirtualServices(s.gw) {
			vs := o.Spec.(*networking.VirtualService)
			for _, h := range vs.Hosts {
				for _, host := range t.boundHosts(s, h, o.Meta.Namespace) {
					routes, err := t.gatewayHTTPRoutes(s, o, port)
					if err != nil {
						return nil, err
					}
					if len(routes) == 0 {
						continue
					}
					vh := byHost[host]
					if vh == nil {
						vh = &routev3.VirtualHost{Name: fmt.Sprintf("%s:%d", host, port), Domains: gatewayDomains(host, port)}
						if s.server.GetTls().GetHttpsRedirect() {
							vh.RequireTls = routev3.VirtualHost_ALL
						}
						byHost[host] = vh
						rc.VirtualHosts = append(rc.VirtualHosts, vh)
					}
					vh.Routes = append(vh.Routes, routes...)
				}
			}
		}
	}
	for _, vh := range rc.VirtualHosts {
		// Stable: a catch-all ahead of a later VirtualService's routes
		// would hide them.
		slices.SortStableFunc(vh.Routes, func(a, b *routev3.Route) int {
			return boolInt(catchAll(a)) - boolInt(catchAll(b))
		})
	}
	if len(rc.VirtualHosts) == 0 {
		rc.VirtualHosts = []*routev3.VirtualHost{{
			Name: fmt.Sprintf("blackhole:%d", port), Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Name:   "default",
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 404}},
			}},
		}}
	}
	return rc, nil
}

// boundHosts are the virtual host names a VirtualService host h, written
// in ns, gets on a server: per server host it binds to, the more specific
// of the two, fully qualified.
func (t *translator) boundHosts(s gatewayServer, h, ns string) []string {
	var out []string
	vsHost := t.m.fqdn(h, ns)
	for _, sh := range s.server.Hosts {
		if !config.GatewayHostBinds(sh, s.gw.Meta.Namespace, h, ns) {
			continue
		}
		_, serverHost := config.GatewayServerHost(sh)
		host := vsHost
		if serverHost != "*" && !hostCovers(serverHost, vsHost) {
			host = serverHost // the VirtualService's host is the wider one
		}
		if !slices.Contains(out, host) {
			out = append(out, host)
		}
	}
	return out
}

// hostCovers reports whether pattern ("*", "*.example.com" or a name)
// covers host.
func hostCovers(pattern, host string) bool {
	if pattern == "*" || pattern == host {
		return true
	}
	return strings.HasPrefix(pattern, "*.") && strings.HasSuffix(host, pattern[1:])
}

// gatewayHTTPRoutes translates a bound VirtualService's HTTP routes for one
// gateway server: matches naming other gateways (or only the mesh) left out.
func (t *translator) gatewayHTTPRoutes(s gatewayServer, o *config.Object, port uint32) ([]*routev3.Route, error) {
	vs := o.Spec.(*networking.VirtualService)
	// No host: a destination without a port takes its service's only port,
	// never the gateway's (destinationPort).
	pseudo := &service{namespace: o.Meta.Namespace}
	sp := &networking.ServicePort{Number: port, Protocol: s.server.Port.Protocol, Name: s.server.Port.Name}
	t.matchGateway = gatewayName(s.gw)
	defer func() { t.matchGateway = "" }()
	var out []*routev3.Route
	for i, hr := range vs.Http {
		routes, err := t.httpRoutes(pseudo, sp, o.Meta.Namespace, hr)
		if err != nil {
			return nil, fmt.Errorf("VirtualService %s/%s http[%d] on gateway %s: %w", o.Meta.Namespace, o.Meta.Name, i, gatewayName(s.gw), err)
		}
		out = append(out, routes...)
	}
	return out, nil
}

// catchAll reports whether a route matches every request.
func catchAll(r *routev3.Route) bool {
	m := r.GetMatch()
	return m.GetPrefix() == "/" && len(m.GetHeaders()) == 0 && len(m.GetQueryParameters()) == 0 && m.GetRuntimeFraction() == nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// gatewayDomains are the authorities of a gateway virtual host: "*" for
// any host, else the host with and without the port.
func gatewayDomains(host string, port uint32) []string {
	if host == "*" {
		return []string{"*"}
	}
	return []string{host, host + ":" + strconv.FormatUint(uint64(port), 10)}
}

// gatewayTLSChains are the filter chains of a TLS port: a terminating chain
// per HTTPS server (matched by SNI, routes of its own) and a forwarding
// chain per SNI match of the bound tls routes for PASSTHROUGH servers.
func (t *translator) gatewayTLSChains(port uint32, servers []gatewayServer) ([]*listenerv3.FilterChain, []*routev3.RouteConfiguration, error) {
	var fcs []*listenerv3.FilterChain
	var rs []*routev3.RouteConfiguration
	seenSNI := map[string]bool{}
	for _, s := range servers {
		switch s.family() {
		case "https":
			name := fmt.Sprintf("https.%d.%s.%s.%s", port, s.server.Port.Name, s.gw.Meta.Name, s.gw.Meta.Namespace)
			rc, err := t.gatewayRoutes(name, port, []gatewayServer{s})
			if err != nil {
				return nil, nil, err
			}
			ts, err := t.gatewayServerTLS(s)
			if skipServer(err) {
				continue
			}
			if err != nil {
				return nil, nil, fmt.Errorf("gateway %s port %d: %w", gatewayName(s.gw), port, err)
			}
			sni, ok := serverNames(s.server.Hosts, seenSNI)
			if !ok {
				continue
			}
			m := t.outboundTelemetry(rdsManager(fmt.Sprintf("outbound_0.0.0.0_%d", port), name, t.clientFilters()))
			rs = append(rs, rc)
			fcs = append(fcs, &listenerv3.FilterChain{
				Name:             name,
				FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: sni},
				Filters:          []*listenerv3.Filter{{Name: hcmFilter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(m)}}},
				TransportSocket:  ts,
			})
		case "tls-terminated":
			// TLS terminated on a TLS port, the plain stream forwarded by
			// the bound VirtualServices' tcp routes (Istio's TLS origination
			// at ingress).
			fc, err := t.gatewayTCP(port, []gatewayServer{s})
			if err != nil {
				return nil, nil, err
			}
			if fc == nil {
				continue
			}
			ts, err := t.gatewayServerTLS(s)
			if skipServer(err) {
				continue
			}
			if err != nil {
				return nil, nil, fmt.Errorf("gateway %s port %d: %w", gatewayName(s.gw), port, err)
			}
			sni, ok := serverNames(s.server.Hosts, seenSNI)
			if !ok {
				continue
			}
			fc.Name = fmt.Sprintf("tls.%d.%s.%s.%s", port, s.server.Port.Name, s.gw.Meta.Name, s.gw.Meta.Namespace)
			fc.FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: sni}
			fc.TransportSocket = ts
			fcs = append(fcs, fc)
		case "passthrough":
			for _, o := range t.boundVirtualServices(s.gw) {
				vs := o.Spec.(*networking.VirtualService)
				for i, tr := range vs.Tls {
					for _, m := range tr.Match {
						if m.Port != 0 && m.Port != port {
							continue
						}
						if len(m.Gateways) > 0 && !slices.ContainsFunc(m.Gateways, func(g string) bool { return refersTo(g, o.Meta.Namespace, s.gw) }) {
							continue
						}
						var sni []string
						var ok bool
						for _, h := range m.SniHosts {
							if slices.ContainsFunc(s.server.Hosts, func(sh string) bool {
								return config.GatewayHostBinds(sh, s.gw.Meta.Namespace, h, o.Meta.Namespace)
							}) {
								sni = append(sni, h)
							}
						}
						if len(sni) == 0 {
							continue
						}
						if sni, ok = serverNames(sni, seenSNI); !ok {
							continue
						}
						f, err := t.tcpProxy(fmt.Sprintf("outbound_0.0.0.0_%d", port), tr.Route, o.Meta.Namespace, port)
						if err != nil {
							return nil, nil, fmt.Errorf("VirtualService %s/%s tls[%d]: %w", o.Meta.Namespace, o.Meta.Name, i, err)
						}
						fcs = append(fcs, &listenerv3.FilterChain{
							Name:             fmt.Sprintf("passthrough.%d.%s", port, strings.Join(sni, ",")),
							FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: sni},
							Filters:          []*listenerv3.Filter{f},
						})
					}
				}
			}
		}
	}
	return fcs, rs, nil
}

// serverNames are the SNI names of hosts for a filter chain match: none
// for "*" (any name). Names an earlier chain of the port took are left out,
// since Envoy refuses two chains with the same match; ok is false when
// nothing is left, and the chain must not be made.
func serverNames(hosts []string, seen map[string]bool) (names []string, ok bool) {
	for _, h := range hosts {
		if _, h = config.GatewayServerHost(h); h == "*" {
			if seen["*"] {
				return nil, false
			}
			seen["*"] = true
			return nil, true
		}
	}
	for _, h := range hosts {
		_, h = config.GatewayServerHost(h)
		if !seen[h] {
			seen[h] = true
			names = append(names, h)
		}
	}
	slices.Sort(names)
	return names, len(names) > 0
}

// refersTo reports whether a gateways entry written in ns names gw.
func refersTo(ref, ns string, gw *config.Object) bool {
	gns, name, ok := config.GatewayRef(ref, ns)
	return ok && gns == gw.Meta.Namespace && name == gw.Meta.Name
}

// gatewayTCP is the filter chain of a TCP port: the first tcp route of a
// bound VirtualService that matches the port, proxied to its destinations.
func (t *translator) gatewayTCP(port uint32, servers []gatewayServer) (*listenerv3.FilterChain, error) {
	for _, s := range servers {
		for _, o := range t.boundVirtualServices(s.gw) {
			vs := o.Spec.(*networking.VirtualService)
			for i, tr := range vs.Tcp {
				if !tcpRouteMatches(tr, port, o.Meta.Namespace, s.gw) {
					continue
				}
				f, err := t.tcpProxy(fmt.Sprintf("outbound_0.0.0.0_%d", port), tr.Route, o.Meta.Namespace, port)
				if err != nil {
					return nil, fmt.Errorf("VirtualService %s/%s tcp[%d]: %w", o.Meta.Namespace, o.Meta.Name, i, err)
				}
				return &listenerv3.FilterChain{Name: fmt.Sprintf("tcp.%d", port), Filters: []*listenerv3.Filter{f}}, nil
			}
		}
	}
	return nil, nil
}

func tcpRouteMatches(tr *networking.TCPRoute, port uint32, ns string, gw *config.Object) bool {
	if len(tr.Match) == 0 {
		return true
	}
	for _, m := range tr.Match {
		if m.Port != 0 && m.Port != port {
			continue
		}
		if len(m.Gateways) > 0 && !slices.ContainsFunc(m.Gateways, func(g string) bool { return refersTo(g, ns, gw) }) {
			continue
		}
		return true
	}
	return false
}

// tcpProxy forwards connections to route destinations: one cluster, or
// weighted clusters.
func (t *translator) tcpProxy(statPrefix string, route []*networking.RouteDestination, ns string, port uint32) (*listenerv3.Filter, error) {
	tp := &tcpproxy.TcpProxy{StatPrefix: statPrefix, AccessLog: t.outboundTCPAccessLogs()}
	type dest struct {
		cluster string
		weight  uint32
	}
	var ds []dest
	for i, rd := range route {
		if rd.Destination == nil {
			return nil, fmt.Errorf("route[%d]: no destination", i)
		}
		host := t.m.fqdn(rd.Destination.Host, ns)
		p := rd.Destination.GetPort().GetNumber()
		if p == 0 {
			if s := t.m.services[host]; s != nil && len(s.ports) == 1 {
				p = s.ports[0].Number
			} else {
				p = port
			}
		}
		w := uint32(max(rd.Weight, 0))
		if len(route) == 1 && w == 0 {
			w = 100
		}
		if w == 0 {
			continue
		}
		name := outboundName(p, rd.Destination.Subset, host)
		t.routeTo(name)
		ds = append(ds, dest{name, w})
	}
	switch len(ds) {
	case 0:
		return nil, fmt.Errorf("no destination with a positive weight")
	case 1:
		tp.ClusterSpecifier = &tcpproxy.TcpProxy_Cluster{Cluster: ds[0].cluster}
	default:
		wc := &tcpproxy.TcpProxy_WeightedCluster{}
		for _, d := range ds {
			wc.Clusters = append(wc.Clusters, &tcpproxy.TcpProxy_WeightedCluster_ClusterWeight{Name: d.cluster, Weight: d.weight})
		}
		tp.ClusterSpecifier = &tcpproxy.TcpProxy_WeightedClusters{WeightedClusters: wc}
	}
	return &listenerv3.Filter{Name: tcpProxyFilter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(tp)}}, nil
}

// gatewayServerTLS is the TLS a server terminates: the workload identity
// for ISTIO_MUTUAL, else the server's certificate from credentialName's
// Secret over SDS (with a cluster) or files, or the paths it names, and
// for MUTUAL the CA that client certificates must chain to. A
// *credentialError says the server cannot be served.
func (t *translator) gatewayServerTLS(s gatewayServer) (*corev3.TransportSocket, error) {
	tls := s.server.GetTls()
	if tls.GetMode() == networking.ServerTLSSettings_ISTIO_MUTUAL {
		return t.downstreamTLS()
	}
	cert, key, ca := tls.GetServerCertificate(), tls.GetPrivateKey(), tls.GetCaCertificates()
	if name := tls.GetCredentialName(); name != "" {
		if t.m.creds != nil {
			return t.sdsServerTLS(s)
		}
		dir := filepath.Join(cmp.Or(t.opts.GatewayCredentialDir, DefaultGatewayCredentialDir), fileCredentialName(name))
		cert, key = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		if ca == "" {
			ca = filepath.Join(dir, "ca.crt")
		}
	}
	if cert == "" || key == "" {
		return nil, fmt.Errorf("server %s: TLS mode %s needs a certificate and key (credentialName or serverCertificate and privateKey)", s.server.Port.Name, tls.GetMode())
	}
	common := &tlsv3.CommonTlsContext{
		TlsCertificates: []*tlsv3.TlsCertificate{{CertificateChain: fileSource(cert), PrivateKey: fileSource(key)}},
		AlpnProtocols:   []string{"h2", "http/1.1"},
	}
	if p := tlsParams(tls); p != nil {
		common.TlsParams = p
	}
	ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: common}
	switch tls.GetMode() {
	case networking.ServerTLSSettings_MUTUAL, networking.ServerTLSSettings_OPTIONAL_MUTUAL:
		common.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: fileSource(ca), MatchTypedSubjectAltNames: sanMatchers(tls.GetSubjectAltNames()),
		}}
		ctx.RequireClientCertificate = wrapperspb.Bool(tls.GetMode() == networking.ServerTLSSettings_MUTUAL)
	}
	return transportSocket(ctx)
}

func tlsParams(tls *networking.ServerTLSSettings) *tlsv3.TlsParameters {
	version := func(v networking.ServerTLSSettings_TLSProtocol) tlsv3.TlsParameters_TlsProtocol {
		switch v {
		case networking.ServerTLSSettings_TLSV1_0:
			return tlsv3.TlsParameters_TLSv1_0
		case networking.ServerTLSSettings_TLSV1_1:
			return tlsv3.TlsParameters_TLSv1_1
		case networking.ServerTLSSettings_TLSV1_2:
			return tlsv3.TlsParameters_TLSv1_2
		case networking.ServerTLSSettings_TLSV1_3:
			return tlsv3.TlsParameters_TLSv1_3
		}
		return tlsv3.TlsParameters_TLS_AUTO
	}
	if tls.GetMinProtocolVersion() == networking.ServerTLSSettings_TLS_AUTO && tls.GetMaxProtocolVersion() == networking.ServerTLSSettings_TLS_AUTO && len(tls.GetCipherSuites()) == 0 {
		return nil
	}
	return &tlsv3.TlsParameters{
		TlsMinimumProtocolVersion: version(tls.GetMinProtocolVersion()),
		TlsMaximumProtocolVersion: version(tls.GetMaxProtocolVersion()),
		CipherSuites:              slices.Clone(tls.GetCipherSuites()),
	}
}
