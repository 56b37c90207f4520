package xds

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlens/meshlens/controlplane/config"
)

// A Sidecar scopes what a proxy receives, as istiod's SidecarScope does:
// the services its egress hosts allow, plus every service a route of those
// services sends traffic to (so a VirtualService's destinations work), and
// nothing else: no listener, route or cluster of any other host. This is
// what keeps a proxy's config small in a large mesh. Its
// outboundTrafficPolicy decides what Envoy does with traffic to anything
// else: ALLOW_ANY passes it through to its original destination,
// REGISTRY_ONLY refuses it.
//
// Scoping is applied to the translation made for every node (which the
// server shares between nodes), so it is a filter over finished resources.

// Istio's names for the outbound-policy resources.
const (
	passthroughCluster = "PassthroughCluster"
	blackHoleCluster   = "BlackHoleCluster"
	virtualOutbound    = "virtualOutbound"
	// envoyOutboundPort is Istio's outbound capture port.
	envoyOutboundPort = 15001
)

// sidecarFor is the Sidecar that applies to a node, as Istio picks it: one
// of the node's namespace whose workloadSelector matches its labels, else
// the namespace's Sidecar without selector, else the root namespace's
// without selector; the first in key order of each. Nil: none.
func (m *model) sidecarFor(n Node) *config.Object {
	var nsDefault, rootDefault *config.Object
	for _, o := range m.sidecars {
		sc := o.Spec.(*networking.Sidecar)
		sel := sc.GetWorkloadSelector().GetLabels()
		switch {
		case o.Meta.Namespace == n.Namespace && len(sel) > 0:
			if selects(sel, n.Labels) {
				return o
			}
		case o.Meta.Namespace == n.Namespace && nsDefault == nil:
			nsDefault = o
		case o.Meta.Namespace == m.opts.RootNamespace && len(sel) == 0 && rootDefault == nil:
			rootDefault = o
		}
	}
	if nsDefault != nil {
		return nsDefault
	}
	return rootDefault
}

// sidecarScope is the Sidecar that applies to the node and what it lets
// the node see.
type sidecarScope struct {
	o  *config.Object // nil: no Sidecar, everything is visible
	sc *networking.Sidecar
	m  *model
}

// sidecarScope is the node's scope; gateways have none.
func (t *translator) sidecarScope() sidecarScope {
	if t.node.Gateway {
		return sidecarScope{}
	}
	o := t.m.sidecarFor(t.node)
	if o == nil {
		return sidecarScope{}
	}
	return sidecarScope{o: o, sc: o.Spec.(*networking.Sidecar), m: t.m}
}

// allows reports whether one egress listener's hosts name host.
func (s sidecarScope) allows(eg *networking.IstioEgressListener, host string) bool {
	ns := ""
	if svc := s.m.services[host]; svc != nil {
		ns = svc.namespace
	}
	for _, h := range eg.Hosts {
		if config.SidecarEgressAllows(h, s.o.Meta.Namespace, host, ns) {
			return true
		}
	}
	return false
}

// egressFor is the egress listener that decides what the node reaches on
// port, as istiod picks it for a route (GetEgressListenerForRDS): the one
// of that port, else the catch-all one without a port; nil when neither
// exists, so nothing is reached on that port.
func (s sidecarScope) egressFor(port uint32) *networking.IstioEgressListener {
	for _, eg := range s.sc.Egress {
		if eg.GetPort() == nil || eg.GetPort().GetNumber() == port {
			return eg
		}
	}
	return nil
}

// visibleOn reports whether the node gets a listener and route to host on
// port: the egress listener of that port decides alone (its hosts are the
// port's only ones, whatever the catch-all listener names), else the
// catch-all one.
func (s sidecarScope) visibleOn(host string, port uint32) bool {
	if s.o == nil || len(s.sc.Egress) == 0 {
		return true
	}
	eg := s.egressFor(port)
	return eg != nil && s.allows(eg, host)
}

// clusterVisible reports whether the node gets host's clusters of port:
// as istiod's SidecarScope imports services, any egress listener of that
// port or without a port that names host (a port's listener imports only
// that port of its hosts).
func (s sidecarScope) clusterVisible(host string, port uint32) bool {
	if s.o == nil || len(s.sc.Egress) == 0 {
		return true
	}
	for _, eg := range s.sc.Egress {
		if (eg.GetPort() == nil || eg.GetPort().GetNumber() == port) && s.allows(eg, host) {
			return true
		}
	}
	return false
}

// egressBind is where the node listens for port when the egress listener
// that decides the port (egressFor) says so, as istiod builds it:
// captureMode NONE binds a real port on bind (default 127.0.0.1), so the
// application calls the sidecar at bind:port; a bind address alone keeps
// the capture (not bound) but matches only traffic to that address. A
// catch-all listener's bind applies to every port it decides. addr "" is
// the usual captured 0.0.0.0:port.
func (s sidecarScope) egressBind(port uint32) (addr string, bindToPort bool) {
	if s.o == nil {
		return "", false
	}
	eg := s.egressFor(port)
	if eg == nil {
		return "", false
	}
	if eg.CaptureMode == networking.CaptureMode_NONE {
		return cmp.Or(eg.Bind, "127.0.0.1"), true
	}
	return eg.Bind, false
}

// inboundPool is the connection pool of the node's inbound cluster of
// port, as istiod's InboundConnectionPoolForPort: the connectionPool of
// the Sidecar's ingress listener of that port, else its
// inboundConnectionPool; nil for none.
func (s sidecarScope) inboundPool(port uint32) *networking.ConnectionPoolSettings {
	if s.o == nil {
		return nil
	}
	for _, in := range s.sc.Ingress {
		if in.GetPort().GetNumber() == port && in.ConnectionPool != nil {
			return in.ConnectionPool
		}
	}
	return s.sc.InboundConnectionPool
}

// scopeToSidecar returns the node's resources as its Sidecar scopes them;
// out itself when no Sidecar applies (gateways have none). The outbound
// builders already left out the listeners and routes of hosts out of
// scope; this leaves out their clusters, but those routes send traffic to.
// Resources are shared between nodes, so none of out's is modified:
// changed ones are copies.
func (t *translator) scopeToSidecar(out *Resources) (*Resources, error) {
	scope := t.sidecarScope()
	if scope.o == nil {
		return out, nil
	}
	o, sc := scope.o, scope.sc
	scoped := &Resources{}
	keptRoutes := map[string]bool{}
	used := map[string]bool{} // clusters the kept routes send traffic to
	for _, rc := range out.Routes {
		switch {
		case strings.HasPrefix(rc.Name, "inbound|"):
		case t.node.Flavour == FlavourGRPC:
			if !scope.visibleOn(hostPortOfName(rc.Name)) {
				continue
			}
		default:
			vhs := slices.DeleteFunc(slices.Clone(rc.VirtualHosts), func(vh *routev3.VirtualHost) bool { return !scope.visibleOn(hostPortOfName(vh.Name)) })
			if len(vhs) == 0 {
				continue
			}
			if len(vhs) != len(rc.VirtualHosts) {
				cp := proto.Clone(rc).(*routev3.RouteConfiguration)
				cp.VirtualHosts = vhs
				rc = cp
			}
		}
		keptRoutes[rc.Name] = true
		for _, vh := range rc.VirtualHosts {
			for _, r := range vh.Routes {
				for _, c := range routeClusters(r) {
					used[c] = true
				}
			}
		}
		scoped.Routes = append(scoped.Routes, rc)
	}
	for _, l := range out.Listeners {
		if l.GetApiListener() != nil || l.TrafficDirection == corev3.TrafficDirection_OUTBOUND {
			// HTTP: kept with its routes; TCP and TLS (tcp_proxy) ones
			// were made for visible hosts only.
			if name := listenerRouteName(l); name != "" && !keptRoutes[name] {
				continue
			}
			for _, c := range tcpProxyClusters(l) {
				used[c] = true
			}
		}
		scoped.Listeners = append(scoped.Listeners, l)
	}
	keep := func(name string) bool {
		if used[name] || !strings.HasPrefix(name, "outbound|") {
			return true
		}
		parts := strings.SplitN(name, "|", 4)
		if len(parts) != 4 {
			return false
		}
		port, err := strconv.ParseUint(parts[1], 10, 32)
		return err == nil && scope.clusterVisible(parts[3], uint32(port))
	}
	for _, c := range out.Clusters {
		if keep(c.Name) {
			scoped.Clusters = append(scoped.Clusters, c)
		}
	}
	for _, e := range out.Endpoints {
		if keep(e.ClusterName) {
			scoped.Endpoints = append(scoped.Endpoints, e)
		}
	}
	if t.node.Flavour != FlavourGRPC && sc.OutboundTrafficPolicy != nil {
		if ep := sc.OutboundTrafficPolicy.EgressProxy; ep != nil {
			// Its cluster is kept whatever the egress hosts say: it is
			// where every unknown destination goes.
			egress := outboundName(ep.GetPort().GetNumber(), ep.GetSubset(), t.m.fqdn(ep.GetHost(), o.Meta.Namespace))
			if !slices.ContainsFunc(scoped.Clusters, func(c *clusterv3.Cluster) bool { return c.Name == egress }) {
				for _, c := range out.Clusters {
					if c.Name == egress {
						scoped.Clusters = append(scoped.Clusters, c)
					}
				}
				for _, e := range out.Endpoints {
					if e.ClusterName == egress {
						scoped.Endpoints = append(scoped.Endpoints, e)
					}
				}
			}
		}
		if err := t.outboundTrafficPolicy(scoped, sc.OutboundTrafficPolicy); err != nil {
			return nil, fmt.Errorf("node %s: Sidecar %s/%s outboundTrafficPolicy: %w", t.node.ID, o.Meta.Namespace, o.Meta.Name, err)
		}
	}
	return scoped, nil
}

// hostPortOfName splits a "host:port" resource or virtual host name; port
// 0 when it has none.
func hostPortOfName(name string) (string, uint32) {
	h, p, err := net.SplitHostPort(name)
	if err != nil {
		return name, 0
	}
	n, err := strconv.ParseUint(p, 10, 32)
	if err != nil {
		return h, 0
	}
	return h, uint32(n)
}

// listenerRouteName is the RDS route configuration an outbound listener's
// HTTP connection manager names, "" for none.
func listenerRouteName(l *listenerv3.Listener) string {
	if a := l.GetApiListener().GetApiListener(); a != nil {
		return rdsName(a.GetValue())
	}
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			if f.GetName() == hcmFilter {
				return rdsName(f.GetTypedConfig().GetValue())
			}
		}
	}
	return ""
}

// tcpProxyClusters are the clusters a listener's tcp_proxy filters send to.
func tcpProxyClusters(l *listenerv3.Listener) []string {
	var out []string
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			if f.GetName() != tcpProxyFilter {
				continue
			}
			var tp tcpproxy.TcpProxy
			if err := proto.Unmarshal(f.GetTypedConfig().GetValue(), &tp); err != nil {
				continue
			}
			if c := tp.GetCluster(); c != "" {
				out = append(out, c)
			}
			for _, w := range tp.GetWeightedClusters().GetClusters() {
				out = append(out, w.GetName())
			}
		}
	}
	return out
}

// rdsName is the route configuration an encoded HTTP connection manager
// takes over RDS.
func rdsName(encoded []byte) string {
	var m hcm.HttpConnectionManager
	if err := proto.Unmarshal(encoded, &m); err != nil {
		return ""
	}
	return m.GetRds().GetRouteConfigName()
}

func routeClusters(r *routev3.Route) []string {
	ra := r.GetRoute()
	if ra == nil {
		return nil
	}
	var out []string
	if c := ra.GetCluster(); c != "" {
		out = append(out, c)
	}
	for _, w := range ra.GetWeightedClusters().GetClusters() {
		out = append(out, w.GetName())
	}
	for _, m := range ra.GetRequestMirrorPolicies() {
		out = append(out, m.GetCluster())
	}
	return out
}

// outboundTrafficPolicy adds what Envoy does with captured traffic to a
// destination no listener or virtual host knows, as istiod builds it: the
// "virtualOutbound" listener (15001) whose fallback chain, and every
// outbound route configuration's last virtual host ("allow_any" or
// "block_all"), pass it through to its original destination
// (PassthroughCluster) for ALLOW_ANY, or refuse it (BlackHoleCluster, 502)
// for REGISTRY_ONLY. With an egressProxy (ALLOW_ANY only) that traffic
// goes to the egress proxy's cluster instead of its original destination.
func (t *translator) outboundTrafficPolicy(r *Resources, otp *networking.OutboundTrafficPolicy) error {
	allow := otp.GetMode() == networking.OutboundTrafficPolicy_ALLOW_ANY
	clusters := []*clusterv3.Cluster{
		{
			Name:                 passthroughCluster,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
			LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
			ConnectTimeout:       durationpb.New(defaultConnectTimeout),
		},
		{
			Name:                 blackHoleCluster,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			ConnectTimeout:       durationpb.New(defaultConnectTimeout),
			LoadAssignment:       &endpointv3.ClusterLoadAssignment{ClusterName: blackHoleCluster},
		},
	}
	fallback := blackHoleCluster
	if allow {
		fallback = passthroughCluster
		if ep := otp.GetEgressProxy(); ep != nil {
			// istiod's GetDestinationCluster(egressProxy, nil, 0).
			fallback = outboundName(ep.GetPort().GetNumber(), ep.GetSubset(), t.m.fqdn(ep.GetHost(), t.sidecarScope().o.Meta.Namespace))
		}
	}
	tp := &tcpproxy.TcpProxy{StatPrefix: fallback, ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: fallback}}
	l := &listenerv3.Listener{
		Name:             virtualOutbound,
		Address:          socketAddress("0.0.0.0", envoyOutboundPort),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		UseOriginalDst:   wrapperspb.Bool(true),
		FilterChains: []*listenerv3.FilterChain{{
			Name:    "PassthroughFilterChain",
			Filters: []*listenerv3.Filter{{Name: tcpProxyFilter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(tp)}}},
		}},
	}
	var vh *routev3.VirtualHost
	if allow {
		vh = &routev3.VirtualHost{Name: "allow_any", Domains: []string{"*"}, Routes: []*routev3.Route{{
			Name:   "allow_any",
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: fallback}, Timeout: durationpb.New(0)}},
		}}}
	} else {
		vh = &routev3.VirtualHost{Name: "block_all", Domains: []string{"*"}, Routes: []*routev3.Route{{
			Name:   "block_all",
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 502}},
		}}}
	}
	for i, rc := range r.Routes {
		if strings.HasPrefix(rc.Name, "inbound|") || slices.ContainsFunc(rc.VirtualHosts, func(v *routev3.VirtualHost) bool { return slices.Contains(v.Domains, "*") }) {
			continue
		}
		cp := proto.Clone(rc).(*routev3.RouteConfiguration)
		cp.VirtualHosts = append(cp.VirtualHosts, proto.Clone(vh).(*routev3.VirtualHost))
		r.Routes[i] = cp
	}
	if err := validateAll("cluster", clusters); err != nil {
		return err
	}
	if err := validateAll("listener", []*listenerv3.Listener{l}); err != nil {
		return err
	}
	if err := validateAll("route configuration", r.Routes); err != nil {
		return err
	}
	r.Clusters = append(r.Clusters, clusters...)
	r.Listeners = append(r.Listeners, l)
	return nil
}

// envoyInboundPorts are the ports an Envoy sidecar serves inbound, with
// the application address of each: its workload's service ports on
// 127.0.0.1, or, when its Sidecar lists ingress listeners, exactly those
// ports, each to its defaultEndpoint (127.0.0.1:PORT, 0.0.0.0:PORT or
// unix://PATH), as istiod builds them: captureMode NONE binds a listener
// of its own on bind:port (meshlens' sidecars are otherwise captured by
// iptables: DEFAULT is IPTABLES), tls terminates the user's certificate.
// As in Istio, ingress ports are served only by a workload that some
// service selects.
func (t *translator) envoyInboundPorts() ([]inboundPort, map[uint32]*corev3.Address) {
	ins := t.inboundPorts()
	scope := t.sidecarScope()
	if scope.o == nil || len(scope.sc.Ingress) == 0 || len(ins) == 0 {
		return ins, nil
	}
	w := ins[0].w
	var out []inboundPort
	apps := map[uint32]*corev3.Address{}
	for _, in := range scope.sc.Ingress {
		port := in.GetPort().GetNumber()
		if port == 0 {
			continue
		}
		out = append(out, inboundPort{w: w, servicePort: port, port: port, bind: in.Bind,
			bindToPort: in.CaptureMode == networking.CaptureMode_NONE, tls: in.Tls})
		apps[port] = ingressEndpoint(in.DefaultEndpoint, port, w.address)
	}
	return out, apps
}

// ingressEndpoint is the application address of a Sidecar ingress
// listener's defaultEndpoint; "" or an unreadable one is 127.0.0.1:port,
// 0.0.0.0 is the workload's own address.
func ingressEndpoint(ep string, port uint32, own string) *corev3.Address {
	if path, ok := strings.CutPrefix(ep, "unix://"); ok {
		return &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: path}}}
	}
	host, p, err := net.SplitHostPort(ep)
	if err != nil {
		return socketAddress("127.0.0.1", port)
	}
	n, err := strconv.ParseUint(p, 10, 32)
	if err != nil || n == 0 || n > 65535 {
		return socketAddress("127.0.0.1", port)
	}
	if host == "0.0.0.0" || host == "::" {
		host = own
	}
	return socketAddress(host, uint32(n))
}
