package xds

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
)

// Envoy sidecars proxy the non-HTTP ports of services too, as istiod does:
// a listener "0.0.0.0_<port>" per port no HTTP service uses, with
//
//   - for TLS (and HTTPS) ports, a filter chain per host matched by SNI
//     (the host, or the sniHosts of its VirtualService's tls routes),
//     forwarding the still-encrypted stream with tcp_proxy;
//   - for TCP ports (TCP, MONGO, REDIS, MYSQL...), a filter chain per
//     service with `addresses` (its VIPs), and one catch-all chain for the
//     first service without (a sidecar cannot tell two of them apart).
//
// The destination is the first matching tls or tcp route of the host's
// VirtualService (port, sourceLabels, gateways), else the host's cluster.
// grpc-go has no TCP proxying: proxyless nodes get none of this.

// isTLSPort reports whether a service port carries TLS that a sidecar
// routes by SNI without terminating it.
func isTLSPort(protocol string) bool {
	switch strings.ToUpper(protocol) {
	case "TLS", "HTTPS":
		return true
	}
	return false
}

// envoyOutboundL4 builds the TCP and TLS listeners for the ports that
// httpPorts (the HTTP listeners' ports) leave free.
func (t *translator) envoyOutboundL4(httpPorts map[uint32]bool) ([]*listenerv3.Listener, error) {
	type chain struct {
		fc   *listenerv3.FilterChain
		tls  bool
		host string
	}
	byPort := map[uint32][]chain{}
	catchAll := map[uint32]bool{}
	sni := map[uint32]map[string]bool{}
	scope := t.sidecarScope()
	for _, h := range t.m.hosts {
		svc := t.m.services[h]
		for _, p := range svc.ports {
			if isHTTP(p.Protocol) || httpPorts[p.Number] || !scope.visibleOn(h, p.Number) {
				continue
			}
			if isTLSPort(p.Protocol) {
				if sni[p.Number] == nil {
					sni[p.Number] = map[string]bool{}
				}
				fcs, err := t.tlsChains(svc, p, sni[p.Number])
				if err != nil {
					return nil, err
				}
				for _, fc := range fcs {
					byPort[p.Number] = append(byPort[p.Number], chain{fc: fc, tls: true, host: h})
				}
				continue
			}
			match := &listenerv3.FilterChainMatch{}
			for _, a := range svc.addresses {
				if pfx, err := netip.ParsePrefix(a); err == nil {
					match.PrefixRanges = append(match.PrefixRanges, &corev3.CidrRange{AddressPrefix: pfx.Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(pfx.Bits()))})
				} else if addr, err := netip.ParseAddr(a); err == nil {
					match.PrefixRanges = append(match.PrefixRanges, &corev3.CidrRange{AddressPrefix: addr.String(), PrefixLen: wrapperspb.UInt32(uint32(addr.BitLen()))})
				}
			}
			if len(match.PrefixRanges) == 0 {
				if catchAll[p.Number] {
					continue // a second service without addresses on this port: unreachable, as in Istio
				}
				catchAll[p.Number] = true
				match = nil
			}
			f, err := t.tcpProxy(fmt.Sprintf("outbound|%d||%s", p.Number, h), t.l4Route(svc, p, nil), svc.namespace, p.Number)
			if err != nil {
				return nil, fmt.Errorf("host %s port %d: %w", h, p.Number, err)
			}
			byPort[p.Number] = append(byPort[p.Number], chain{fc: &listenerv3.FilterChain{
				Name: fmt.Sprintf("outbound|%d||%s", p.Number, h), FilterChainMatch: match, Filters: []*listenerv3.Filter{f},
			}, host: h})
		}
	}
	var out []*listenerv3.Listener
	for _, port := range sortedPorts(byPort) {
		bind, bindToPort := scope.egressBind(port)
		bind = cmp.Or(bind, "0.0.0.0")
		l := &listenerv3.Listener{
			Name:             fmt.Sprintf("%s_%d", bind, port),
			Address:          socketAddress(bind, port),
			TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		}
		if !bindToPort {
			l.BindToPort = wrapperspb.Bool(false)
		}
		for _, c := range byPort[port] {
			if bind != "0.0.0.0" && !c.tls {
				// Traffic to bind:port has no service VIP to tell TCP
				// services apart: the first one takes the port.
				if slices.ContainsFunc(l.FilterChains, func(fc *listenerv3.FilterChain) bool { return fc.FilterChainMatch == nil }) {
					continue
				}
				c.fc = proto.Clone(c.fc).(*listenerv3.FilterChain)
				c.fc.FilterChainMatch = nil
			}
			l.FilterChains = append(l.FilterChains, c.fc)
			if c.tls && l.ListenerFilters == nil {
				l.ListenerFilters = []*listenerv3.ListenerFilter{{Name: "envoy.filters.listener.tls_inspector", ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspector.TlsInspector{})}}}
			}
		}
		out = append(out, l)
	}
	return out, nil
}

// tlsChains are the SNI filter chains of one TLS host port: one per tls
// route match of its VirtualService (sniHosts), and one for the host name
// itself to its cluster. Names another chain of the port took are left out.
func (t *translator) tlsChains(svc *service, p *networking.ServicePort, taken map[string]bool) ([]*listenerv3.FilterChain, error) {
	var out []*listenerv3.FilterChain
	add := func(names []string, route []*networking.RouteDestination, ns string) error {
		var free []string
		for _, n := range names {
			if !taken[n] {
				taken[n] = true
				free = append(free, n)
			}
		}
		if len(free) == 0 {
			return nil
		}
		slices.Sort(free)
		f, err := t.tcpProxy(fmt.Sprintf("outbound|%d||%s", p.Number, svc.host), route, ns, p.Number)
		if err != nil {
			return fmt.Errorf("host %s port %d: %w", svc.host, p.Number, err)
		}
		out = append(out, &listenerv3.FilterChain{
			Name:             fmt.Sprintf("outbound|%d||%s|%s", p.Number, svc.host, strings.Join(free, ",")),
			FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: free, TransportProtocol: "tls"},
			Filters:          []*listenerv3.Filter{f},
		})
		return nil
	}
	if o := t.m.vss[svc.host]; o != nil {
		vs := o.Spec.(*networking.VirtualService)
		for _, tr := range vs.Tls {
			for _, m := range tr.Match {
				if !t.l4MatchApplies(m.Port, m.SourceLabels, m.Gateways, p.Number, o.Meta.Namespace) {
					continue
				}
				if err := add(m.SniHosts, tr.Route, o.Meta.Namespace); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := add([]string{svc.host}, t.defaultL4Route(svc, p), svc.namespace); err != nil {
		return nil, err
	}
	return out, nil
}

// l4Route is the destinations of a TCP host port: its VirtualService's
// first tcp route whose match applies to this node and port, else the
// host's own cluster.
func (t *translator) l4Route(svc *service, p *networking.ServicePort, _ []string) []*networking.RouteDestination {
	if o := t.m.vss[svc.host]; o != nil {
		vs := o.Spec.(*networking.VirtualService)
		for _, tr := range vs.Tcp {
			if len(tr.Match) == 0 {
				return tr.Route
			}
			for _, m := range tr.Match {
				if t.l4MatchApplies(m.Port, m.SourceLabels, m.Gateways, p.Number, o.Meta.Namespace) {
					return tr.Route
				}
			}
		}
	}
	return t.defaultL4Route(svc, p)
}

func (t *translator) defaultL4Route(svc *service, p *networking.ServicePort) []*networking.RouteDestination {
	return []*networking.RouteDestination{{Destination: &networking.Destination{Host: svc.host, Port: &networking.PortSelector{Number: p.Number}}}}
}

// l4MatchApplies reports whether a tcp or tls route match applies to this
// node on port: its port, source labels and gateways (the mesh).
func (t *translator) l4MatchApplies(port uint32, sourceLabels map[string]string, gateways []string, onPort uint32, ns string) bool {
	if port != 0 && port != onPort {
		return false
	}
	if len(sourceLabels) > 0 && !selects(sourceLabels, t.node.Labels) {
		return false
	}
	return len(gateways) == 0 || t.matchesGateway(gateways, ns)
}
