package registry

import (
	"fmt"
	"slices"
	"testing"

	"github.com/meshlens/meshlens/mesh"
)

func TestPeerAtNamesThePodBehindAnAddress(t *testing.T) {
	w := func(pod, ns, name, app, version, ip string) *Workload {
		return &Workload{Pod: pod, Namespace: ns, Name: name, App: app, Version: version, Address: ip}
	}
	reviews := w("reviews-v2-5d8f-x2x9q", "shop", "reviews-v2", "reviews", "v2", "10.0.0.3")
	ratings := w("ratings-v1-7c9d-qq8z1", "shop", "ratings-v1", "stars", "v1", "10.0.0.4")
	batch := w("report-29811", "shop", "report", "report", "", "10.0.0.5") // a Job's Pod: no Service
	bare := w("debug", "tools", "debug", "", "", "10.0.0.6")               // no labels at all
	dual := w("api-0", "shop", "api", "api", "v1", "fd00::7")
	svc := func(name string, pods ...*Workload) *Service {
		s := &Service{Hostname: name + ".shop.svc.cluster.local", Name: name, Namespace: "shop"}
		for _, p := range pods {
			s.Endpoints = append(s.Endpoints, &Endpoint{Address: p.Address, Workload: p})
		}
		return s
	}
	services := map[string]*Service{}
	for _, s := range []*Service{
		svc("reviews", reviews), svc("reviews-preview", reviews), // blue-green: two Services, one Pod
		svc("ratings", ratings), svc("ratings-canary", ratings), svc("api", dual),
	} {
		services[s.Hostname] = s
	}
	sn := New(1, services, []*Workload{reviews, ratings, batch, bare, dual})
	var _ mesh.PeerResolver = sn

	for _, tc := range []struct {
		addr string
		want mesh.Peer
		ok   bool
	}{
		// The Service a Pod serves names it, as the cluster names in the
		// same traffic do: of several, the one named like its app, else
		// the first.
		{"10.0.0.3", mesh.Peer{Namespace: "shop", Service: "reviews", Workload: "reviews-v2", Version: "v2"}, true},
		{"10.0.0.4", mesh.Peer{Namespace: "shop", Service: "ratings", Workload: "ratings-v1", Version: "v1"}, true},
		{"10.0.0.3:9080", mesh.Peer{Namespace: "shop", Service: "reviews", Workload: "reviews-v2", Version: "v2"}, true},
		// No Service: its app label; no label either: its workload.
		{"10.0.0.5:8080", mesh.Peer{Namespace: "shop", Service: "report", Workload: "report"}, true},
		{"10.0.0.6", mesh.Peer{Namespace: "tools", Service: "debug", Workload: "debug"}, true},
		{"[fd00::7]:80", mesh.Peer{Namespace: "shop", Service: "api", Workload: "api", Version: "v1"}, true},
		{"10.9.9.9:80", mesh.Peer{}, false},
		{"reviews.shop.svc.cluster.local:9080", mesh.Peer{}, false},
		{"", mesh.Peer{}, false},
	} {
		got, ok := sn.PeerAt(tc.addr)
		if got != tc.want || ok != tc.ok {
			t.Errorf("PeerAt(%q) = %+v, %v; want %+v, %v", tc.addr, got, ok, tc.want, tc.ok)
		}
	}
	if got := sn.ServicesOf("10.0.0.3:9080"); !slices.Equal(got, []string{"reviews-preview.shop.svc.cluster.local", "reviews.shop.svc.cluster.local"}) {
		t.Errorf("ServicesOf(reviews' address) = %v", got)
	}
	var empty *Snapshot
	if _, ok := empty.PeerAt("10.0.0.3"); ok {
		t.Error("a nil snapshot knows an address")
	}
}

// BenchmarkPeerAt is the collector's cost per address it resolves, in a
// registry of 1,000 Services × 5 Pods.
func BenchmarkPeerAt(b *testing.B) {
	services := map[string]*Service{}
	var workloads []*Workload
	var addrs []string
	for s := range 1000 {
		svc := &Service{Hostname: fmt.Sprintf("svc-%d.bench.svc.cluster.local", s), Name: fmt.Sprintf("svc-%d", s), Namespace: "bench"}
		for p := range 5 {
			n := s*5 + p
			w := &Workload{Pod: fmt.Sprintf("svc-%d-%d", s, p), Namespace: "bench", Name: svc.Name, App: svc.Name, Version: "v1",
				Address: fmt.Sprintf("10.%d.%d.%d", n>>16&255, n>>8&255, n&255)}
			workloads = append(workloads, w)
			svc.Endpoints = append(svc.Endpoints, &Endpoint{Address: w.Address, Workload: w})
			addrs = append(addrs, w.Address+":9080")
		}
		services[svc.Hostname] = svc
	}
	sn := New(1, services, workloads)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := sn.PeerAt(addrs[i%len(addrs)]); !ok {
			b.Fatal("unknown address")
		}
		i++
	}
}
