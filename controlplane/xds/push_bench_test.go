package xds

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/controlplane/registry"
)

// churnRegistry is a registry of n Services with five Pods each, as
// BenchmarkRegistryEndpointChurn in controlplane/kube builds on a real API
// server.
func churnRegistry(n int) map[string]*registry.Service {
	out := make(map[string]*registry.Service, n)
	for k := range n {
		host := fmt.Sprintf("svc-%d.churn.svc.cluster.local", k)
		s := &registry.Service{Hostname: host, Name: fmt.Sprintf("svc-%d", k), Namespace: "churn",
			Ports: []registry.Port{{Name: "grpc", Port: 9080, Protocol: "GRPC"}}}
		for j := range 5 {
			version := "v1"
			if j >= 3 {
				version = "v2"
			}
			w := &registry.Workload{Pod: fmt.Sprintf("svc-%d-%d", k, j), Namespace: "churn", App: s.Name, Version: version,
				Labels: map[string]string{"app": s.Name, "version": version}, Locality: "bench/zone", Address: fmt.Sprintf("10.%d.%d.%d", 1+k/250, k%250, j+1)}
			s.Endpoints = append(s.Endpoints, &registry.Endpoint{Address: w.Address, Ports: map[string]uint32{"grpc": 9080}, Workload: w})
		}
		out[host] = s
	}
	return out
}

// BenchmarkRegistryPush is one registry change (a Pod of one Service turns
// draining) pushed to 20 proxyless nodes sharing one class, with 1,000
// Services of 5 Pods and 100 DestinationRules with two subsets: the control
// plane's share of BenchmarkRegistryEndpointChurn, without an API server.
// The reference, measured in the same run on the same changes, is a fresh
// translation of everything for that class (what every push cost before
// pushes were incremental).
func BenchmarkRegistryPush(b *testing.B) {
	const nSvc, nNodes = 1000, 20
	var cfg strings.Builder
	for k := range 100 {
		fmt.Fprintf(&cfg, "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: svc-%d, namespace: churn}\n"+
			"spec:\n  host: svc-%d\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n---\n", k, k)
	}
	srv, err := NewServer(context.Background(), nil, nil, Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Update(parseSnapshot(b, 1, cfg.String())); err != nil {
		b.Fatal(err)
	}
	svcs := churnRegistry(nSvc)
	for i := range nNodes {
		srv.addNode(Node{ID: fmt.Sprintf("node-%d", i), Flavour: FlavourGRPC, Namespace: "churn"})
	}
	if err := srv.UpdateServices(registry.New(1, svcs, nil)); err != nil {
		b.Fatal(err)
	}
	change := func(i int) *registry.Snapshot {
		host := fmt.Sprintf("svc-%d.churn.svc.cluster.local", (i*37)%nSvc)
		old := svcs[host]
		s := *old
		s.Endpoints = append([]*registry.Endpoint(nil), old.Endpoints...)
		e := *s.Endpoints[i%5]
		e.Health = registry.Draining - e.Health
		s.Endpoints[i%5] = &e
		svcs[host] = &s
		return registry.New(uint64(i+2), maps.Clone(svcs), nil)
	}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if err := srv.UpdateServices(change(i)); err != nil {
			b.Fatal(err)
		}
	}
	push := time.Since(start) / time.Duration(b.N)
	b.StopTimer()
	node := Node{ID: "reference", Flavour: FlavourGRPC, Namespace: "churn"}
	start = time.Now()
	for i := range b.N {
		if _, err := Translate(Input{Config: srv.config, Services: change(b.N + i)}, node, Options{}); err != nil {
			b.Fatal(err)
		}
	}
	fresh := time.Since(start) / time.Duration(b.N)
	b.ReportMetric(float64(push.Microseconds())/1000, "ms/push")
	b.ReportMetric(float64(fresh.Microseconds())/1000, "ms/fresh-translation")
	b.ReportMetric(float64(push)/float64(fresh), "push/fresh")
}

// addNode connects a node without a stream, as its first request would.
func (s *Server) addNode(n Node) {
	s.mu.Lock()
	s.nodes[n.ID] = newNodeState(n, "")
	s.mu.Unlock()
}
