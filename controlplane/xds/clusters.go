package xds

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlens/meshlens/mesh"
)

// defaultConnectTimeout is Istio's default upstream connect timeout.
const defaultConnectTimeout = 10 * time.Second

func outboundName(port uint32, subset, host string) string {
	return mesh.Cluster{Direction: "outbound", Port: port, Subset: subset, Host: host}.String()
}

// serviceClusters builds one host's CDS and EDS: per service port a
// subset-less cluster "outbound|port||host" and one per DestinationRule
// subset.
func (t *translator) serviceClusters(h string, svc *service) ([]*clusterv3.Cluster, []*endpointv3.ClusterLoadAssignment, error) {
	var cs []*clusterv3.Cluster
	var eps []*endpointv3.ClusterLoadAssignment
	if svc.wildcard() && t.node.Flavour == FlavourGRPC {
		return nil, nil, nil // grpc-go has no ORIGINAL_DST clusters (and no wildcard targets)
	}
	dr := t.m.destinationRule(h)
	for _, p := range svc.ports {
		subsets := []*networking.Subset{{}}
		if dr != nil {
			subsets = append(subsets, dr.Subsets...)
		}
		for _, ss := range subsets {
			name := outboundName(p.Number, ss.Name, h)
			c, cla, err := t.cluster(name, svc, p, ss)
			if err != nil {
				return nil, nil, fmt.Errorf("cluster %s: %w", name, err)
			}
			cs = append(cs, c)
			if cla != nil {
				eps = append(eps, cla)
			}
		}
	}
	return cs, eps, nil
}

func (t *translator) cluster(name string, svc *service, p *networking.ServicePort, ss *networking.Subset) (*clusterv3.Cluster, *endpointv3.ClusterLoadAssignment, error) {
	var members []*workload
	for _, w := range svc.endpoints {
		if selects(ss.Labels, w.labels) {
			members = append(members, w)
		}
	}
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads(), ServiceName: name},
		ConnectTimeout:       durationpb.New(defaultConnectTimeout),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
	}
	if t.node.Flavour != FlavourGRPC && isHTTP2(p.Protocol) {
		if err := setProtocolOptions(c, &corev3.HttpProtocolOptions{}, true); err != nil {
			return nil, nil, err
		}
	}
	if svc.externalName != "" {
		// A Kubernetes ExternalName Service: the cluster resolves the name
		// itself (Envoy and grpc-go both implement LOGICAL_DNS).
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_LOGICAL_DNS}
		c.EdsClusterConfig = nil
		c.LoadAssignment = &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: socketAddress(svc.externalName, p.Number)}}}},
		}}}
	}
	if svc.resolvesDNS() {
		t.dnsCluster(c, svc, p, members)
	}
	if svc.wildcard() {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
		c.EdsClusterConfig = nil
		c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
	}
	tp := t.m.trafficPolicy(svc.host, p.Number, ss.Name)
	if err := t.applyTrafficPolicy(c, tp, p); err != nil {
		return nil, nil, err
	}
	ts, err := t.upstreamTLS(svc, p, tp, members)
	if err != nil {
		return nil, nil, err
	}
	c.TransportSocket = ts
	if svc.externalName != "" || svc.resolvesDNS() || svc.wildcard() {
		return c, nil, nil
	}
	return c, t.loadAssignment(name, p, members), nil
}

// dnsCluster makes c resolve a ServiceEntry's names as Istio does: its
// endpoints' addresses, or the host itself when it lists none. DNS is
// STRICT_DNS (every address of every name) for Envoy; DNS_ROUND_ROBIN, and
// anything for grpc-go, which implements only LOGICAL_DNS, is LOGICAL_DNS
// of the first name (one connection target, re-resolved).
func (t *translator) dnsCluster(c *clusterv3.Cluster, svc *service, p *networking.ServicePort, members []*workload) {
	type target struct {
		name string
		port uint32
	}
	var targets []target
	for _, w := range members {
		targets = append(targets, target{w.address, w.targetPort(p)})
	}
	if len(svc.endpoints) == 0 {
		targets = append(targets, target{svc.host, cmp.Or(p.TargetPort, p.Number)})
	}
	typ := clusterv3.Cluster_STRICT_DNS
	if svc.resolution == networking.ServiceEntry_DNS_ROUND_ROBIN || t.node.Flavour == FlavourGRPC {
		typ = clusterv3.Cluster_LOGICAL_DNS
		targets = targets[:min(len(targets), 1)]
	}
	c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: typ}
	c.EdsClusterConfig = nil
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: c.Name}
	if len(targets) > 0 {
		l := &endpointv3.LocalityLbEndpoints{}
		for _, tg := range targets {
			l.LbEndpoints = append(l.LbEndpoints, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: socketAddress(tg.name, tg.port)}}})
		}
		cla.Endpoints = []*endpointv3.LocalityLbEndpoints{l}
	}
	c.LoadAssignment = cla
}

// loadAssignment groups endpoints by locality. Locality weight is the sum of
// its endpoint weights: grpc-go ignores localities without a weight.
func (t *translator) loadAssignment(name string, p *networking.ServicePort, members []*workload) *endpointv3.ClusterLoadAssignment {
	byLocality := map[string][]*workload{}
	for _, w := range members {
		byLocality[w.locality] = append(byLocality[w.locality], w)
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	for _, loc := range slices.Sorted(maps.Keys(byLocality)) {
		l := &endpointv3.LocalityLbEndpoints{Locality: localityOf(loc)}
		var total uint32
		for _, w := range byLocality[loc] {
			weight := max(w.weight, 1)
			total += weight
			l.LbEndpoints = append(l.LbEndpoints, &endpointv3.LbEndpoint{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: socketAddress(w.address, w.targetPort(p)),
				}},
				HealthStatus:        healthOf(w),
				LoadBalancingWeight: wrapperspb.UInt32(weight),
			})
		}
		l.LoadBalancingWeight = wrapperspb.UInt32(total)
		cla.Endpoints = append(cla.Endpoints, l)
	}
	return cla
}

// healthOf is an endpoint's EDS health: a draining (terminating) Pod gets
// no new requests, from Envoy and grpc-go alike.
func healthOf(w *workload) corev3.HealthStatus {
	if w.draining {
		return corev3.HealthStatus_DRAINING
	}
	return corev3.HealthStatus_HEALTHY
}

func localityOf(s string) *corev3.Locality {
	var parts [3]string
	i := 0
	start := 0
	for j := 0; j <= len(s) && i < 3; j++ {
		if j == len(s) || s[j] == '/' {
			parts[i] = s[start:j]
			i++
			start = j + 1
		}
	}
	return &corev3.Locality{Region: parts[0], Zone: parts[1], SubZone: parts[2]}
}

func socketAddress(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// applyTrafficPolicy sets load balancing, connection pool and outlier
// detection from a merged DestinationRule policy.
func (t *translator) applyTrafficPolicy(c *clusterv3.Cluster, tp *networking.TrafficPolicy, p *networking.ServicePort) error {
	if tp == nil {
		return nil
	}
	t.applyLB(c, tp.LoadBalancer)
	if err := t.applyPool(c, tp.ConnectionPool, p); err != nil {
		return err
	}
	t.applyOutlier(c, tp.OutlierDetection)
	return nil
}

func (t *translator) applyLB(c *clusterv3.Cluster, lb *networking.LoadBalancerSettings) {
	if lb == nil {
		return
	}
	grpc := t.node.Flavour == FlavourGRPC
	switch x := lb.LbPolicy.(type) {
	case *networking.LoadBalancerSettings_Simple:
		switch x.Simple {
		//lint:ignore SA1019 LEAST_CONN is Istio's deprecated alias of LEAST_REQUEST; configs still use it
		case networking.LoadBalancerSettings_LEAST_REQUEST, networking.LoadBalancerSettings_LEAST_CONN:
			c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
			c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{
				ChoiceCount: wrapperspb.UInt32(2),
			}}
		case networking.LoadBalancerSettings_RANDOM:
			if grpc {
				// grpc-go has no RANDOM policy (it NACKs the enum). A ring hash
				// without a hash policy hashes each RPC with a random key, which
				// is a uniformly random pick.
				c.LbPolicy = clusterv3.Cluster_RING_HASH
				c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{}}
			} else {
				c.LbPolicy = clusterv3.Cluster_RANDOM
			}
		case networking.LoadBalancerSettings_ROUND_ROBIN:
			c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
		case networking.LoadBalancerSettings_PASSTHROUGH:
			if !grpc {
				c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
			}
		}
	case *networking.LoadBalancerSettings_ConsistentHash:
		ch := x.ConsistentHash
		if mg, ok := ch.HashAlgorithm.(*networking.LoadBalancerSettings_ConsistentHashLB_Maglev); ok && !grpc {
			c.LbPolicy = clusterv3.Cluster_MAGLEV
			cfg := &clusterv3.Cluster_MaglevLbConfig{}
			if mg.Maglev.TableSize != 0 {
				cfg.TableSize = wrapperspb.UInt64(mg.Maglev.TableSize)
			}
			c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: cfg}
			return
		}
		c.LbPolicy = clusterv3.Cluster_RING_HASH
		cfg := &clusterv3.Cluster_RingHashLbConfig{}
		//lint:ignore SA1019 the deprecated field is still honoured, as Istio does
		ring := ch.MinimumRingSize
		if rh, ok := ch.HashAlgorithm.(*networking.LoadBalancerSettings_ConsistentHashLB_RingHash_); ok && rh.RingHash.MinimumRingSize != 0 {
			ring = rh.RingHash.MinimumRingSize
		}
		if ring != 0 {
			cfg.MinimumRingSize = wrapperspb.UInt64(ring)
		}
		c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: cfg}
	}
}

func (t *translator) applyPool(c *clusterv3.Cluster, cp *networking.ConnectionPoolSettings, p *networking.ServicePort) error {
	if cp == nil {
		return nil
	}
	th := &clusterv3.CircuitBreakers_Thresholds{}
	set := false
	if tcp := cp.Tcp; tcp != nil {
		if tcp.MaxConnections > 0 {
			th.MaxConnections, set = wrapperspb.UInt32(uint32(tcp.MaxConnections)), true
		}
		if tcp.ConnectTimeout != nil {
			c.ConnectTimeout = tcp.ConnectTimeout
		}
		if ka := tcp.TcpKeepalive; ka != nil {
			k := &corev3.TcpKeepalive{}
			if ka.Probes > 0 {
				k.KeepaliveProbes = wrapperspb.UInt32(ka.Probes)
			}
			if ka.Time != nil {
				k.KeepaliveTime = wrapperspb.UInt32(uint32(ka.Time.AsDuration().Seconds()))
			}
			if ka.Interval != nil {
				k.KeepaliveInterval = wrapperspb.UInt32(uint32(ka.Interval.AsDuration().Seconds()))
			}
			c.UpstreamConnectionOptions = &clusterv3.UpstreamConnectionOptions{TcpKeepalive: k}
		}
	}
	if h := cp.Http; h != nil {
		if h.Http1MaxPendingRequests > 0 {
			th.MaxPendingRequests, set = wrapperspb.UInt32(uint32(h.Http1MaxPendingRequests)), true
		}
		if h.Http2MaxRequests > 0 {
			th.MaxRequests, set = wrapperspb.UInt32(uint32(h.Http2MaxRequests)), true
		}
		if h.MaxRetries > 0 {
			th.MaxRetries, set = wrapperspb.UInt32(uint32(h.MaxRetries)), true
		}
		common := &corev3.HttpProtocolOptions{}
		commonSet := false
		if h.MaxRequestsPerConnection > 0 {
			common.MaxRequestsPerConnection, commonSet = wrapperspb.UInt32(uint32(h.MaxRequestsPerConnection)), true
		}
		if h.IdleTimeout != nil {
			common.IdleTimeout, commonSet = h.IdleTimeout, true
		}
		if commonSet {
			if err := setProtocolOptions(c, common, isHTTP2(p.Protocol)); err != nil {
				return err
			}
		}
	}
	if set {
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{th}}
	}
	return nil
}

// setProtocolOptions sets the upstream HTTP protocol options extension, the
// non-deprecated home of max_requests_per_connection and idle_timeout.
func setProtocolOptions(c *clusterv3.Cluster, common *corev3.HttpProtocolOptions, http2 bool) error {
	opts := &httpv3.HttpProtocolOptions{CommonHttpProtocolOptions: common}
	if http2 {
		opts.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
		}}
	} else {
		opts.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{UseDownstreamProtocolConfig: &httpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
			HttpProtocolOptions: &corev3.Http1ProtocolOptions{}, Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
		}}
	}
	a, err := anypb.New(opts)
	if err != nil {
		return fmt.Errorf("pack HttpProtocolOptions: %w", err)
	}
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": a}
	return nil
}

// applyOutlier maps Istio outlier detection. Envoy gets Istio's own mapping
// (consecutive 5xx / gateway errors). grpc-go implements only the success-rate
// and failure-percentage algorithms (gRFC A50), so for gRPC nodes
// consecutive5xxErrors N becomes "eject an endpoint that failed at least
// failurePercentageThreshold% (default 50) of at least N requests in an
// interval".
func (t *translator) applyOutlier(c *clusterv3.Cluster, od *networking.OutlierDetection) {
	if od == nil {
		return
	}
	out := &clusterv3.OutlierDetection{
		Interval:         od.Interval,
		BaseEjectionTime: od.BaseEjectionTime,
	}
	if od.MaxEjectionPercent > 0 {
		out.MaxEjectionPercent = wrapperspb.UInt32(uint32(min(od.MaxEjectionPercent, 100)))
	}
	consecutive := od.Consecutive_5XxErrors
	//lint:ignore SA1019 the deprecated field is still honoured, as Istio does
	if legacy := od.ConsecutiveErrors; consecutive == nil && legacy > 0 {
		consecutive = wrapperspb.UInt32(uint32(legacy))
	}
	if t.node.Flavour == FlavourGRPC {
		out.EnforcingSuccessRate = wrapperspb.UInt32(0)
		volume := uint32(5)
		if consecutive != nil && consecutive.Value > 0 {
			volume = consecutive.Value
		}
		threshold := uint32(50)
		if od.FailurePercentageThreshold != nil {
			threshold = min(od.FailurePercentageThreshold.Value, 100)
		}
		out.FailurePercentageThreshold = wrapperspb.UInt32(threshold)
		out.EnforcingFailurePercentage = wrapperspb.UInt32(100)
		out.FailurePercentageRequestVolume = wrapperspb.UInt32(volume)
		out.FailurePercentageMinimumHosts = wrapperspb.UInt32(1)
		c.OutlierDetection = out
		return
	}
	if consecutive != nil {
		out.Consecutive_5Xx = consecutive
		if consecutive.Value == 0 {
			out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(0)
		}
	}
	if od.ConsecutiveGatewayErrors != nil {
		out.ConsecutiveGatewayFailure = od.ConsecutiveGatewayErrors
		out.EnforcingConsecutiveGatewayFailure = wrapperspb.UInt32(100)
	}
	if od.ConsecutiveLocalOriginFailures != nil {
		out.SplitExternalLocalOriginErrors = true
		out.ConsecutiveLocalOriginFailure = od.ConsecutiveLocalOriginFailures
	}
	if od.FailurePercentageThreshold != nil {
		out.FailurePercentageThreshold = od.FailurePercentageThreshold
		out.EnforcingFailurePercentage = wrapperspb.UInt32(100)
	}
	c.OutlierDetection = out
	if od.MinHealthPercent > 0 {
		c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: float64(od.MinHealthPercent)}}
	}
}
