package app

import (
	"slices"
	"testing"

	"github.com/meshlens/meshlens/controlplane/registry"
)

// --peers-service: the replicas are the Service's ready endpoints on their
// port named http; draining ones and other Services are not.
func TestPeersServiceListsTheReadyEndpointsOnPortHTTP(t *testing.T) {
	svc := func(ns, name string, eps ...*registry.Endpoint) *registry.Service {
		return &registry.Service{Hostname: name + "." + ns + ".svc.cluster.local", Name: name, Namespace: ns, Headless: true, Endpoints: eps}
	}
	ep := func(addr string, port uint32, h registry.Health) *registry.Endpoint {
		return &registry.Endpoint{Address: addr, Ports: map[string]uint32{"http": port, "grpc-otlp": 4317}, Health: h}
	}
	sn := registry.New(1, map[string]*registry.Service{
		"meshlens-peers.obs.svc.cluster.local": svc("obs", "meshlens-peers", ep("10.1.0.4", 8080, registry.Healthy),
			ep("10.1.0.5", 8080, registry.Draining), ep("fd00::7", 8080, registry.Healthy)),
		"meshlens.obs.svc.cluster.local":         svc("obs", "meshlens", ep("10.1.0.9", 8080, registry.Healthy)),
		"meshlens-peers.other.svc.cluster.local": svc("other", "meshlens-peers", ep("10.2.0.4", 8080, registry.Healthy)),
	}, nil)
	got := serviceAddresses(sn, "obs", "meshlens-peers")
	want := []string{"10.1.0.4:8080", "[fd00::7]:8080"}
	if !slices.Equal(got, want) {
		t.Fatalf("peers %v, want %v", got, want)
	}
	if got := serviceAddresses(nil, "obs", "meshlens-peers"); got != nil {
		t.Fatalf("before the first registry snapshot: %v", got)
	}
}
