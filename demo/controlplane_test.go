package demo

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// controlPlane is a real go-control-plane ADS server serving hand-built
// proxyless gRPC resources (API listeners with inline routes, EDS clusters
// named outbound|port|subset|host) for the demo's topology. Every node gets
// the same snapshot; the nodes that connect are recorded.
type controlPlane struct {
	addr    string
	cache   cachev3.SnapshotCache
	version int

	mu    sync.Mutex
	nodes map[string]*corev3.Node
}

// sameNode gives every node one snapshot. The cache is not in ADS mode:
// that mode answers only requests naming every resource of the snapshot,
// and each client here asks for the listeners it dials only.
type sameNode struct{}

func (sameNode) ID(*corev3.Node) string { return "all" }

func startControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	cp := &controlPlane{cache: cachev3.NewSnapshotCache(false, sameNode{}, nil), nodes: map[string]*corev3.Node{}}
	ctx, cancel := context.WithCancel(context.Background())
	srv := serverv3.NewServer(ctx, cp.cache, serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, req *discoveryv3.DiscoveryRequest) error {
			if n := req.GetNode(); n != nil {
				cp.mu.Lock()
				cp.nodes[n.GetId()] = n
				cp.mu.Unlock()
			}
			return nil
		},
	})
	gs := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(func() {
		gs.Stop()
		cancel()
	})
	cp.addr = lis.Addr().String()
	return cp
}

// Nodes returns the nodes that have sent a discovery request, by ID.
func (cp *controlPlane) Nodes() map[string]*corev3.Node {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return maps.Clone(cp.nodes)
}

// push publishes routes for the demo's services at servicePort: each
// service's traffic goes to its v1 subset, except reviews, split by weights
// (version → weight).
func (cp *controlPlane) push(t *testing.T, namespace string, servicePort int, endpoints []Endpoint, reviews map[string]uint32) {
	t.Helper()
	instances := make([]Instance, len(endpoints))
	for i, e := range endpoints {
		instances[i] = e.Instance
	}
	names, versions := services(instances)
	var listeners, clusters, assignments []types.Resource
	for _, svc := range names {
		host := Host(svc, namespace)
		for _, v := range versions[svc] {
			name := fmt.Sprintf("outbound|%d|%s|%s", servicePort, v, host)
			clusters = append(clusters, &clusterv3.Cluster{
				Name:                 name,
				ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
				EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
					ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
					ResourceApiVersion:    corev3.ApiVersion_V3,
				}},
				LbPolicy: clusterv3.Cluster_ROUND_ROBIN,
			})
			cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
			for _, e := range endpoints {
				if e.Instance.Service == svc && e.Instance.Version == v {
					cla.Endpoints = append(cla.Endpoints, &endpointv3.LocalityLbEndpoints{
						Locality:            &corev3.Locality{}, // grpc-go refuses a locality without one
						LoadBalancingWeight: wrapperspb.UInt32(1),
						LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
							Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
								Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(e.Port)},
							}}},
						}}}},
					})
				}
			}
			assignments = append(assignments, cla)
		}
		action := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{
			Cluster: fmt.Sprintf("outbound|%d|v1|%s", servicePort, host),
		}}
		if svc == "reviews" {
			wc := &routev3.WeightedCluster{}
			for _, v := range slices.Sorted(maps.Keys(reviews)) {
				if reviews[v] == 0 {
					continue
				}
				wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
					Name:   fmt.Sprintf("outbound|%d|%s|%s", servicePort, v, host),
					Weight: wrapperspb.UInt32(reviews[v]),
				})
			}
			action.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
		}
		lname := host + ":" + strconv.Itoa(servicePort)
		hcm := &hcmv3.HttpConnectionManager{
			RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
				Name: lname,
				VirtualHosts: []*routev3.VirtualHost{{
					Name:    lname,
					Domains: []string{"*"},
					Routes: []*routev3.Route{{
						Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
						Action: &routev3.Route_Route{Route: action},
					}},
				}},
			}},
			HttpFilters: []*hcmv3.HttpFilter{{
				Name:       "envoy.filters.http.router",
				ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})},
			}},
		}
		listeners = append(listeners, &listenerv3.Listener{
			Name:        lname,
			ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(t, hcm)},
		})
	}
	cp.version++
	snap, err := cachev3.NewSnapshot(strconv.Itoa(cp.version), map[resourcev3.Type][]types.Resource{
		resourcev3.ListenerType: listeners,
		resourcev3.ClusterType:  clusters,
		resourcev3.EndpointType: assignments,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err != nil {
		t.Fatal(err)
	}
	if err := cp.cache.SetSnapshot(context.Background(), "all", snap); err != nil {
		t.Fatal(err)
	}
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
