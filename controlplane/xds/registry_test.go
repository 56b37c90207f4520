package xds

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/meshlens/meshlens/controlplane/registry"
)

// registrySnapshot is a small Kubernetes registry: reviews with a ready v1
// and a draining v2 Pod, and an ExternalName Service.
func registrySnapshot() *registry.Snapshot {
	pod := func(name, ip, version, zone string) *registry.Workload {
		return &registry.Workload{Pod: name, Namespace: "bookinfo", Name: "reviews-" + version, App: "reviews", Version: version,
			Labels: map[string]string{"app": "reviews", "version": version}, ServiceAccount: "bookinfo-reviews", Locality: "eu/" + zone, Address: ip}
	}
	v1, v2 := pod("reviews-v1-abc", "10.1.0.1", "v1", "a"), pod("reviews-v2-def", "10.1.0.2", "v2", "b")
	return registry.New(7, map[string]*registry.Service{
		"reviews.bookinfo.svc.cluster.local": {
			Hostname: "reviews.bookinfo.svc.cluster.local", Name: "reviews", Namespace: "bookinfo",
			Ports: []registry.Port{{Name: "http", Port: 9080, Protocol: "HTTP"}},
			Endpoints: []*registry.Endpoint{
				{Address: v1.Address, Ports: map[string]uint32{"http": 19080}, Health: registry.Healthy, Workload: v1},
				{Address: v2.Address, Ports: map[string]uint32{"http": 19080}, Health: registry.Draining, Workload: v2},
			},
		},
		"payments.bookinfo.svc.cluster.local": {
			Hostname: "payments.bookinfo.svc.cluster.local", Name: "payments", Namespace: "bookinfo",
			ExternalName: "payments.example.com", Ports: []registry.Port{{Name: "https", Port: 443, Protocol: "HTTPS"}},
		},
	}, []*registry.Workload{v1, v2})
}

func TestRegistryServicesBecomeClustersAndEndpoints(t *testing.T) {
	cfg := parseSnapshot(t, 1, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
# A ServiceEntry for the same host: the Kubernetes Service wins, as in istiod.
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews-shadow, namespace: bookinfo}
spec:
  hosts: [reviews.bookinfo.svc.cluster.local]
  ports: [{number: 7777, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.9.9.9}]
`)
	for _, flavour := range []Flavour{FlavourGRPC, FlavourEnvoy} {
		res, err := Translate(Input{Config: cfg, Services: registrySnapshot()}, Node{ID: "n", Flavour: flavour, Namespace: "bookinfo"}, DefaultOptions())
		if err != nil {
			t.Fatalf("%s: %v", flavour, err)
		}
		clusters := map[string]*clusterv3.Cluster{}
		for _, c := range res.Clusters {
			clusters[c.Name] = c
		}
		loads := map[string]*endpointv3.ClusterLoadAssignment{}
		for _, e := range res.Endpoints {
			loads[e.ClusterName] = e
		}
		for _, name := range []string{"outbound|9080||reviews.bookinfo.svc.cluster.local", "outbound|9080|v1|reviews.bookinfo.svc.cluster.local", "outbound|9080|v2|reviews.bookinfo.svc.cluster.local"} {
			if clusters[name] == nil || loads[name] == nil {
				t.Errorf("%s: no cluster or endpoints %s", flavour, name)
			}
		}
		if clusters["outbound|7777||reviews.bookinfo.svc.cluster.local"] != nil {
			t.Errorf("%s: the ServiceEntry's port made a cluster; the Kubernetes Service should win", flavour)
		}
		got := map[string]corev3.HealthStatus{}
		for _, l := range loads["outbound|9080||reviews.bookinfo.svc.cluster.local"].GetEndpoints() {
			for _, e := range l.LbEndpoints {
				sa := e.GetEndpoint().GetAddress().GetSocketAddress()
				if sa.GetPortValue() != 19080 {
					t.Errorf("%s: endpoint %s port %d, want the EndpointSlice's 19080", flavour, sa.GetAddress(), sa.GetPortValue())
				}
				got[sa.GetAddress()] = e.HealthStatus
			}
			if l.Locality.GetRegion() != "eu" {
				t.Errorf("%s: locality %v, want region eu from the Node", flavour, l.Locality)
			}
		}
		if got["10.1.0.1"] != corev3.HealthStatus_HEALTHY || got["10.1.0.2"] != corev3.HealthStatus_DRAINING {
			t.Errorf("%s: health %v, want v1 healthy and v2 draining", flavour, got)
		}
		v1 := loads["outbound|9080|v1|reviews.bookinfo.svc.cluster.local"].GetEndpoints()
		if len(v1) != 1 || len(v1[0].LbEndpoints) != 1 || v1[0].LbEndpoints[0].GetEndpoint().GetAddress().GetSocketAddress().GetAddress() != "10.1.0.1" {
			t.Errorf("%s: subset v1 endpoints %v, want only the v1 Pod (selected by its label)", flavour, v1)
		}
		ext := clusters["outbound|443||payments.bookinfo.svc.cluster.local"]
		if ext.GetType() != clusterv3.Cluster_LOGICAL_DNS || ext.GetLoadAssignment().GetEndpoints()[0].LbEndpoints[0].GetEndpoint().GetAddress().GetSocketAddress().GetAddress() != "payments.example.com" {
			t.Errorf("%s: ExternalName cluster %v, want LOGICAL_DNS to payments.example.com", flavour, ext)
		}
	}
}

// A Pod's gRPC xDS server names its address (INSTANCE_IPS) and gets its
// server listener; a node that names none (a client) does not carry the
// listeners of every Pod in the cluster.
func TestServerListenersOfPodsGoOnlyToTheirOwnNodes(t *testing.T) {
	count := func(ips ...string) (n int, names []string) {
		res, err := Translate(Input{Services: registrySnapshot()}, Node{ID: "n", Flavour: FlavourGRPC, Namespace: "bookinfo", IPs: ips}, DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range res.Listeners {
			if l.GetAddress() != nil { // server listeners have an address; API listeners do not
				n++
				names = append(names, l.Name)
			}
		}
		return n, names
	}
	if n, names := count(); n != 0 {
		t.Errorf("a client-only node got %d server listeners: %v", n, names)
	}
	if n, names := count("10.1.0.1"); n != 1 || names[0] != "grpc/server?xds.resource.listening_address=10.1.0.1:19080" {
		t.Errorf("the v1 Pod's node got %v, want its own server listener only", names)
	}
}
