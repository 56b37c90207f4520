package xds

import (
	"maps"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// A route may name a host no registry defines or a subset no
// DestinationRule defines: config validation only warns about it, as
// Istio does, because the service may appear later. Istio still sends the
// route to the cluster name "outbound|port|subset|host", behind which no
// endpoint answers, so those requests fail with 503 (Envoy) or UNAVAILABLE
// (grpc-go) while the rest of the config works. meshlens does the same and
// makes that cluster explicit, an EDS cluster with an empty load
// assignment: with no cluster at all, grpc-go would wait for a CDS
// resource that never comes before failing the RPC.

// routeTo records a cluster a route sends traffic to.
func (t *translator) routeTo(cluster string) {
	if t.routed == nil {
		t.routed = map[string]bool{}
	}
	t.routed[cluster] = true
}

// unresolvedClusters are the empty clusters, and their empty load
// assignments, for every routed cluster that is not in have.
func (t *translator) unresolvedClusters(have []*clusterv3.Cluster) ([]*clusterv3.Cluster, []*endpointv3.ClusterLoadAssignment) {
	exists := make(map[string]bool, len(have))
	for _, c := range have {
		exists[c.Name] = true
	}
	var cs []*clusterv3.Cluster
	var eps []*endpointv3.ClusterLoadAssignment
	for _, name := range slices.Sorted(maps.Keys(t.routed)) {
		if exists[name] {
			continue
		}
		cs = append(cs, &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads(), ServiceName: name},
			ConnectTimeout:       durationpb.New(defaultConnectTimeout),
			LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		})
		eps = append(eps, &endpointv3.ClusterLoadAssignment{ClusterName: name})
	}
	return cs, eps
}
