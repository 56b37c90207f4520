package kube

import (
	"testing"

	"github.com/meshlens/meshlens/controlplane/registry"
	"github.com/meshlens/meshlens/mesh"
)

// TestRegistryPeerAtReadsTheCurrentSnapshot needs no cluster: the snapshot
// is set as Run would publish it.
func TestRegistryPeerAtReadsTheCurrentSnapshot(t *testing.T) {
	var r Registry
	var _ mesh.PeerResolver = &r
	reviews := &registry.Workload{Pod: "reviews-v2-5d8f-x2x9q", Namespace: "bookinfo", Name: "reviews-v2", App: "reviews", Version: "v2", Address: "10.0.0.3"}
	r.cur.Store(registry.New(1, nil, nil))
	if p, ok := r.PeerAt("10.0.0.3:9080"); ok {
		t.Fatalf("empty registry: PeerAt = %+v", p)
	}
	r.cur.Store(registry.New(2, map[string]*registry.Service{"reviews.bookinfo.svc.cluster.local": {
		Hostname: "reviews.bookinfo.svc.cluster.local", Name: "reviews", Namespace: "bookinfo",
		Endpoints: []*registry.Endpoint{{Address: "10.0.0.3", Workload: reviews}},
	}}, []*registry.Workload{reviews}))
	want := mesh.Peer{Namespace: "bookinfo", Service: "reviews", Workload: "reviews-v2", Version: "v2"}
	if p, ok := r.PeerAt("10.0.0.3:9080"); !ok || p != want {
		t.Fatalf("PeerAt(reviews-v2's address) = %+v, %v; want %+v", p, ok, want)
	}
}
