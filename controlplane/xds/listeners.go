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
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	origdst "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
)

const (
	// ServerListenerTemplate is grpc-go's default server listener resource
	// name template; meshlens' generated bootstraps use it.
	ServerListenerTemplate = "grpc/server?xds.resource.listening_address=%s"
	routerFilter           = "envoy.filters.http.router"
	hcmFilter              = "envoy.filters.network.http_connection_manager"
	// envoyInboundPort is Istio's virtualInbound capture port.
	envoyInboundPort = 15006
)

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		// Only fails for messages without a registered type, a programming error.
		panic(fmt.Sprintf("pack %T: %v", m, err))
	}
	return a
}

func httpFilter(name string, cfg proto.Message) *hcm.HttpFilter {
	return &hcm.HttpFilter{Name: name, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(cfg)}}
}

// clientFilters are the outbound HTTP filters: for Envoy CORS (configured
// per route; grpc-go refuses filters it does not implement), fault
// (configured per route) and the router, which must be last.
func (t *translator) clientFilters() []*hcm.HttpFilter {
	out := []*hcm.HttpFilter{httpFilter(faultFilter, &faultv3.HTTPFault{}), httpFilter(routerFilter, &routerv3.Router{})}
	if t.node.Flavour != FlavourGRPC {
		out = append([]*hcm.HttpFilter{httpFilter(corsFilter, &corsv3.Cors{})}, out...)
	}
	return out
}

func rdsManager(statPrefix, routeName string, filters []*hcm.HttpFilter) *hcm.HttpConnectionManager {
	return &hcm.HttpConnectionManager{
		CodecType:  hcm.HttpConnectionManager_AUTO,
		StatPrefix: statPrefix,
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{
			ConfigSource: ads(), RouteConfigName: routeName,
		}},
		HttpFilters: filters,
	}
}

// grpcClientListeners are API listeners named "host:port", one per HTTP
// service port, each with its own route configuration of the same name: what
// grpc-go's resolver asks for when dialling xds:///host:port.
func (t *translator) grpcClientListeners() ([]*listenerv3.Listener, []*routev3.RouteConfiguration, error) {
	var ls []*listenerv3.Listener
	var rs []*routev3.RouteConfiguration
	scope := t.sidecarScope()
	for _, h := range t.m.hosts {
		if strings.HasPrefix(h, "*") {
			continue // no wildcard targets for grpc-go
		}
		svc := t.m.services[h]
		for _, p := range svc.ports {
			if !isHTTP(p.Protocol) || !scope.visibleOn(h, p.Number) {
				continue // out of the Sidecar's egress hosts for this port
			}
			name := net.JoinHostPort(h, strconv.FormatUint(uint64(p.Number), 10))
			vh, err := t.virtualHost(svc, p)
			if err != nil {
				return nil, nil, err
			}
			rs = append(rs, &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{vh}})
			ls = append(ls, &listenerv3.Listener{
				Name: name,
				ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(
					rdsManager("outbound_"+name, name, t.clientFilters()),
				)},
			})
		}
	}
	return ls, rs, nil
}

// inboundPort is one port of one workload that serves a service.
type inboundPort struct {
	w           *workload
	servicePort uint32
	port        uint32
	// Of a Sidecar ingress listener: bindToPort (captureMode NONE) makes it
	// a listener of its own on bind (default the workload's address)
	// instead of a chain of the captured virtualInbound; tls terminates the
	// user's TLS instead of the mesh's mTLS.
	bind       string
	bindToPort bool
	tls        *networking.ServerTLSSettings
}

// inboundPorts lists, once each, the (address, target port) pairs of the
// node's workloads.
func (t *translator) inboundPorts() []inboundPort {
	if t.node.Gateway {
		return nil // a gateway proxy serves its Gateways' ports only
	}
	seen := map[string]bool{}
	var out []inboundPort
	for _, h := range t.m.hosts {
		svc := t.m.services[h]
		if svc.resolvesDNS() {
			continue // names resolved by clients, not mesh workloads
		}
		for _, w := range svc.endpoints {
			if len(t.node.IPs) > 0 && !slices.Contains(t.node.IPs, w.address) {
				continue
			}
			// A node that names no address of its own gets the server
			// listeners of config-defined workloads (a gRPC client only asks
			// for those it serves), but not of every Pod in the cluster: a
			// Pod's xDS server sends its INSTANCE_IPS, as Istio's bootstrap
			// does, and a client-only node would otherwise carry thousands.
			if len(t.node.IPs) == 0 && w.pod {
				continue
			}
			for _, p := range svc.ports {
				if !isHTTP(p.Protocol) {
					continue
				}
				tp := w.targetPort(p)
				key := net.JoinHostPort(w.address, strconv.FormatUint(uint64(tp), 10))
				if seen[key] {
					continue
				}
				seen[key] = true
				out = append(out, inboundPort{w: w, servicePort: p.Number, port: tp})
			}
		}
	}
	return out
}

// inboundManager is the server-side HTTP connection manager: RBAC from
// AuthorizationPolicy, then the router, with routes built by the caller.
func (t *translator) inboundManager(in inboundPort, rc *routev3.RouteConfiguration) (*hcm.HttpConnectionManager, error) {
	filters, err := t.rbacFilters(in.w, in.port)
	if err != nil {
		return nil, fmt.Errorf("workload %s/%s: %w", in.w.namespace, in.w.name, err)
	}
	jwt, err := t.jwtFilter(in.w)
	if err != nil {
		return nil, fmt.Errorf("workload %s/%s: %w", in.w.namespace, in.w.name, err)
	}
	if jwt != nil {
		filters = append([]*hcm.HttpFilter{jwt}, filters...)
	}
	filters = append(filters, httpFilter(routerFilter, &routerv3.Router{}))
	return t.inboundTelemetry(&hcm.HttpConnectionManager{
		CodecType:      hcm.HttpConnectionManager_AUTO,
		StatPrefix:     fmt.Sprintf("inbound_%d", in.port),
		RouteSpecifier: &hcm.HttpConnectionManager_RouteConfig{RouteConfig: rc},
		HttpFilters:    filters,
	}, in.w), nil
}

// grpcServerListeners are the listeners grpc-go xDS servers ask for, one per
// workload address:port. grpc-go matches filter chains only on
// transport_protocol "raw_buffer", so it cannot sniff TLS: STRICT gets an
// mTLS-only chain, PERMISSIVE and DISABLE a plaintext chain (Istio's grpcgen
// does the same).
func (t *translator) grpcServerListeners() ([]*listenerv3.Listener, error) {
	var out []*listenerv3.Listener
	for _, in := range t.inboundPorts() {
		addr := net.JoinHostPort(in.w.address, strconv.FormatUint(uint64(in.port), 10))
		rc := &routev3.RouteConfiguration{
			Name: fmt.Sprintf("inbound|%d", in.port),
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    fmt.Sprintf("inbound|http|%d", in.port),
				Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
				}},
			}},
		}
		m, err := t.inboundManager(in, rc)
		if err != nil {
			return nil, err
		}
		fc := &listenerv3.FilterChain{
			Name:    "inbound|" + addr,
			Filters: []*listenerv3.Filter{{Name: hcmFilter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(m)}}},
		}
		if t.m.peerMode(in.w, in.port) == security.PeerAuthentication_MutualTLS_STRICT {
			ts, err := t.downstreamTLS()
			if err != nil {
				return nil, err
			}
			fc.TransportSocket = ts
		}
		out = append(out, &listenerv3.Listener{
			Name:             fmt.Sprintf(ServerListenerTemplate, addr),
			Address:          socketAddress(in.w.address, in.port),
			TrafficDirection: corev3.TrafficDirection_INBOUND,
			FilterChains:     []*listenerv3.FilterChain{fc},
		})
	}
	return out, nil
}

// envoyOutbound builds Istio's sidecar shape: one listener per HTTP port
// "0.0.0.0_<port>" whose HTTP connection manager takes route configuration
// "<port>" over RDS, holding one virtual host per service on that port.
func (t *translator) envoyOutbound() ([]*listenerv3.Listener, []*routev3.RouteConfiguration, error) {
	byPort := map[uint32]*routev3.RouteConfiguration{}
	// Envoy rejects a domain that appears in two virtual hosts of one route
	// configuration; the first (sorted) host keeps a contested short name.
	used := map[uint32]map[string]bool{}
	scope := t.sidecarScope()
	for _, h := range t.m.hosts {
		svc := t.m.services[h]
		for _, p := range svc.ports {
			if !isHTTP(p.Protocol) || !scope.visibleOn(h, p.Number) {
				continue // out of the Sidecar's egress hosts for this port
			}
			vh, err := t.virtualHost(svc, p)
			if err != nil {
				return nil, nil, err
			}
			rc := byPort[p.Number]
			if rc == nil {
				rc = &routev3.RouteConfiguration{Name: strconv.FormatUint(uint64(p.Number), 10), ValidateClusters: wrapperspb.Bool(false)}
				byPort[p.Number] = rc
			}
			if used[p.Number] == nil {
				used[p.Number] = map[string]bool{}
			}
			vh.Domains = slices.DeleteFunc(vh.Domains, func(d string) bool { return used[p.Number][d] })
			for _, d := range vh.Domains {
				used[p.Number][d] = true
			}
			rc.VirtualHosts = append(rc.VirtualHosts, vh)
		}
	}
	var ls []*listenerv3.Listener
	var rs []*routev3.RouteConfiguration
	httpPorts := map[uint32]bool{}
	for port := range byPort {
		httpPorts[port] = true
	}
	l4, err := t.envoyOutboundL4(httpPorts)
	if err != nil {
		return nil, nil, err
	}
	ls = append(ls, l4...)
	for _, port := range sortedPorts(byPort) {
		rc := byPort[port]
		rs = append(rs, rc)
		// A Sidecar egress listener of this port may bind it elsewhere
		// (istiod's listener "BIND_PORT"); otherwise traffic arrives
		// through the iptables capture.
		bind, bindToPort := scope.egressBind(port)
		bind = cmp.Or(bind, "0.0.0.0")
		m := t.outboundTelemetry(rdsManager(fmt.Sprintf("outbound_%s_%d", bind, port), rc.Name, t.clientFilters()))
		l := &listenerv3.Listener{
			Name:             fmt.Sprintf("%s_%d", bind, port),
			Address:          socketAddress(bind, port),
			TrafficDirection: corev3.TrafficDirection_OUTBOUND,
			FilterChains: []*listenerv3.FilterChain{{
				Filters: []*listenerv3.Filter{{Name: hcmFilter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(m)}}},
			}},
		}
		if !bindToPort {
			l.BindToPort = wrapperspb.Bool(false)
		}
		ls = append(ls, l)
	}
	return ls, rs, nil
}

func sortedPorts[V any](m map[uint32]V) []uint32 {
	out := make([]uint32, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

func inboundClusterName(port uint32) string { return fmt.Sprintf("inbound|%d||", port) }

// envoyInbound is Istio's "virtualInbound" listener: captured inbound
// connections, one filter chain per workload port and transport (Envoy can
// sniff TLS, so PERMISSIVE really accepts both), RBAC, then a static
// cluster to the application on localhost.
func (t *translator) envoyInbound() ([]*listenerv3.Listener, error) {
	ins, _ := t.envoyInboundPorts()
	if len(ins) == 0 || len(t.node.IPs) == 0 {
		return nil, nil
	}
	l := &listenerv3.Listener{
		Name:             "virtualInbound",
		Address:          socketAddress("0.0.0.0", envoyInboundPort),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		ListenerFilters: []*listenerv3.ListenerFilter{
			{Name: "envoy.filters.listener.original_dst", ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&origdst.OriginalDst{})}},
			{Name: "envoy.filters.listener.tls_inspector", ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspector.TlsInspector{})}},
		},
	}
	var out []*listenerv3.Listener
	for _, in := range ins {
		chains, err := t.envoyInboundChains(in)
		if err != nil {
			return nil, err
		}
		if !in.bindToPort {
			l.FilterChains = append(l.FilterChains, chains...)
			continue
		}
		// captureMode NONE: the application's clients connect to the
		// sidecar itself, on bind:port, as istiod builds it.
		bind := cmp.Or(in.bind, in.w.address)
		out = append(out, &listenerv3.Listener{
			Name:             fmt.Sprintf("%s_%d", bind, in.port), // istiod's name of a bound listener
			Address:          socketAddress(bind, in.port),
			TrafficDirection: corev3.TrafficDirection_INBOUND,
			ListenerFilters: []*listenerv3.ListenerFilter{
				{Name: "envoy.filters.listener.tls_inspector", ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspector.TlsInspector{})}},
			},
			FilterChains: chains,
		})
	}
	if len(l.FilterChains) > 0 {
		out = append([]*listenerv3.Listener{l}, out...)
	}
	return out, nil
}

// envoyInboundChains are an inbound port's filter chains: mTLS and/or
// plaintext by the port's PeerAuthentication mode, or, for a Sidecar
// ingress listener with tls, that TLS terminated.
func (t *translator) envoyInboundChains(in inboundPort) ([]*listenerv3.FilterChain, error) {
	var chains []*listenerv3.FilterChain
	rc := &routev3.RouteConfiguration{
		Name: fmt.Sprintf("inbound|%d", in.port),
		VirtualHosts: []*routev3.VirtualHost{{
			Name: fmt.Sprintf("inbound|http|%d", in.port), Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: inboundClusterName(in.port)},
					Timeout:          durationpb.New(0),
				}},
			}},
		}},
	}
	m, err := t.inboundManager(in, rc)
	if err != nil {
		return nil, err
	}
	filters := []*listenerv3.Filter{{Name: hcmFilter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(m)}}}
	if in.tls != nil {
		ts, err := t.gatewayServerTLS(gatewayServer{server: &networking.Server{Port: &networking.Port{Number: in.port, Name: fmt.Sprintf("sidecar ingress %d", in.port)}, Tls: in.tls}})
		if err != nil {
			return nil, err
		}
		return []*listenerv3.FilterChain{{
			Name:             fmt.Sprintf("inbound|%d|ingress-tls", in.port),
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(in.port), TransportProtocol: "tls"},
			Filters:          filters,
			TransportSocket:  ts,
		}}, nil
	}
	mode := t.m.peerMode(in.w, in.port)
	if mode != security.PeerAuthentication_MutualTLS_DISABLE {
		ts, err := t.downstreamTLS()
		if err != nil {
			return nil, err
		}
		chains = append(chains, &listenerv3.FilterChain{
			Name:             fmt.Sprintf("inbound|%d|tls", in.port),
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(in.port), TransportProtocol: "tls"},
			Filters:          filters,
			TransportSocket:  ts,
		})
	}
	if mode != security.PeerAuthentication_MutualTLS_STRICT {
		chains = append(chains, &listenerv3.FilterChain{
			Name:             fmt.Sprintf("inbound|%d|plaintext", in.port),
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(in.port), TransportProtocol: "raw_buffer"},
			Filters:          filters,
		})
	}
	return chains, nil
}

// envoyInboundClusters are the static clusters from the sidecar to the
// application on localhost, with the connection pool its Sidecar sets for
// the port (inboundConnectionPool, or the ingress listener's own).
func (t *translator) envoyInboundClusters() ([]*clusterv3.Cluster, error) {
	if len(t.node.IPs) == 0 {
		return nil, nil
	}
	var out []*clusterv3.Cluster
	scope := t.sidecarScope()
	ins, apps := t.envoyInboundPorts()
	for _, in := range ins {
		name := inboundClusterName(in.port)
		app := apps[in.port]
		if app == nil {
			app = socketAddress("127.0.0.1", in.port)
		}
		c := &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			ConnectTimeout:       durationpb.New(defaultConnectTimeout),
			LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: app,
				}}}},
			}}},
		}
		// The application's protocol is the downstream one: no port
		// protocol forces HTTP/2.
		if err := t.applyPool(c, scope.inboundPool(in.port), &networking.ServicePort{Number: in.port}); err != nil {
			return nil, fmt.Errorf("node %s: Sidecar %s/%s inbound connection pool of port %d: %w", t.node.ID, scope.o.Meta.Namespace, scope.o.Meta.Name, in.port, err)
		}
		out = append(out, c)
	}
	return out, nil
}
