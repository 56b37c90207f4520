package xds

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/controlplane/registry"
)

// A Translator shares resources between nodes and reuses last push's;
// whatever the change, what it returns for each node must be exactly what
// a fresh translation of the same input gives. The test drives one
// registry and config through a few hundred random changes of every kind
// a cluster makes (readiness, scaling, relabels across subsets, Services
// and ports coming and going, ExternalName) and config changes between
// them, for one Translator serving gRPC clients, Pods' gRPC servers and
// Envoy sidecars of several namespaces and workloads.
func TestTranslatorMatchesAFreshTranslation(t *testing.T) {
	nodes := []Node{
		{ID: "client", Flavour: FlavourGRPC, Namespace: "churn"},
		{ID: "client-elsewhere", Flavour: FlavourGRPC, Namespace: "other"},
		{ID: "server", Flavour: FlavourGRPC, Namespace: "churn", IPs: []string{"10.1.0.1"}},
		{ID: "canary-client", Flavour: FlavourGRPC, Namespace: "churn", Labels: map[string]string{"app": "svc-1", "version": "v2"}},
		{ID: "sidecar", Flavour: FlavourEnvoy, Namespace: "churn", IPs: []string{"10.1.1.2"}, Labels: map[string]string{"app": "svc-1"}},
		{ID: "sidecar-2", Flavour: FlavourEnvoy, Namespace: "churn", IPs: []string{"10.1.1.3"}, Labels: map[string]string{"app": "svc-1"}},
		{ID: "sidecar-own-certs", Flavour: FlavourEnvoy, Namespace: "churn", IPs: []string{"10.1.2.1"}, CertChainPath: "/certs/chain.pem"},
		{ID: "ingress", Flavour: FlavourEnvoy, Gateway: true, Namespace: "istio-system", Labels: map[string]string{"istio": "ingressgateway"}},
		{ID: "same-labels-no-gateway", Flavour: FlavourEnvoy, Namespace: "istio-system", Labels: map[string]string{"istio": "ingressgateway"}},
	}
	configs := []string{
		"",
		`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc-0, namespace: churn}
spec:
  host: svc-0
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc-0, namespace: churn}
spec:
  hosts: [svc-0]
  http:
  - route:
    - {destination: {host: svc-0, subset: v1}, weight: 80}
    - {destination: {host: svc-0, subset: v2}, weight: 20}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc-2, namespace: churn}
spec:
  hosts: [svc-2]
  http:
  - match: [{sourceLabels: {version: v2}}]
    route:
    - destination: {host: svc-2, subset: v2}
  - match: [{sourceNamespace: other}]
    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
    route:
    - destination: {host: svc-2}
  - route:
    - destination: {host: svc-2}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress, namespace: churn}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc-1, namespace: churn}
spec:
  hosts: [svc-1]
  gateways: [mesh, ingress]
  http:
  - route:
    - destination: {host: svc-2}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: churn}
spec:
  mtls: {mode: STRICT}
`,
		`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: churn}
spec:
  hosts: [api.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.9.0.1}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc-3, namespace: churn}
spec:
  hosts: [svc-3]
  http:
  - route:
    - destination: {host: svc-4, subset: missing}
`,
	}
	svcs := churnRegistry(6)
	var cfg *config.Snapshot
	r := rand.New(rand.NewPCG(1, 2))
	tr := NewTranslator(DefaultOptions())
	for step := range 300 {
		what := mutate(r, svcs)
		if step%25 == 0 {
			cfg = parseSnapshot(t, uint64(step), configs[(step/25)%len(configs)])
			what += " and a new config snapshot"
		}
		in := Input{Config: cfg, Services: registry.New(uint64(step), maps.Clone(svcs), nil)}
		for _, n := range nodes {
			got, err := tr.Translate(in, n)
			if err != nil {
				t.Fatalf("step %d (%s), node %s: %v", step, what, n.ID, err)
			}
			want, err := Translate(in, n, DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			if diff := resourcesDiff(got, want); diff != "" {
				t.Fatalf("step %d (%s), node %s: the reusing Translator differs from a fresh translation: %s", step, what, n.ID, diff)
			}
		}
		if step%7 == 0 {
			tr.Sweep()
		}
	}
}

// mutate makes one random change to svcs the way the Kubernetes registry
// does: a changed Service is a new object, unchanged ones stay the same.
func mutate(r *rand.Rand, svcs map[string]*registry.Service) string {
	hosts := slices.Sorted(maps.Keys(svcs))
	h := hosts[r.IntN(len(hosts))]
	s := *svcs[h]
	s.Endpoints = slices.Clone(s.Endpoints)
	s.Ports = slices.Clone(s.Ports)
	var what string
	switch x := r.IntN(10); {
	case x < 3 && len(s.Endpoints) > 0: // readiness
		i := r.IntN(len(s.Endpoints))
		e := *s.Endpoints[i]
		e.Health = registry.Draining - e.Health
		s.Endpoints[i] = &e
		what = "health of " + e.Address
	case x < 5 && len(s.Endpoints) > 0: // relabel between subsets
		i := r.IntN(len(s.Endpoints))
		e, w := *s.Endpoints[i], *s.Endpoints[i].Workload
		w.Version = map[string]string{"v1": "v2", "v2": "v1"}[w.Version]
		w.Labels = map[string]string{"app": s.Name, "version": w.Version}
		e.Workload = &w
		s.Endpoints[i] = &e
		what = "relabel of " + e.Address
	case x < 6 && len(s.Endpoints) > 1: // scale down
		i := r.IntN(len(s.Endpoints))
		what = "scale down " + s.Endpoints[i].Address
		s.Endpoints = slices.Delete(s.Endpoints, i, i+1)
	case x < 7: // scale up
		w := &registry.Workload{Pod: fmt.Sprintf("%s-%d", s.Name, r.IntN(1000)), Namespace: s.Namespace, App: s.Name, Version: "v2",
			Labels: map[string]string{"app": s.Name, "version": "v2"}, Locality: "bench/zone", Address: fmt.Sprintf("10.2.%d.%d", len(hosts), r.IntN(250)+1)}
		ports := map[string]uint32{}
		for _, p := range s.Ports {
			ports[p.Name] = p.Port
		}
		s.Endpoints = append(s.Endpoints, &registry.Endpoint{Address: w.Address, Ports: ports, Workload: w})
		what = "scale up " + w.Address
	case x < 8: // a port comes or goes
		if len(s.Ports) > 1 {
			s.Ports = s.Ports[:1]
			what = "port removed from " + h
		} else {
			s.Ports = append(s.Ports, registry.Port{Name: "http-admin", Port: 8080, Protocol: "HTTP"})
			for i, e := range s.Endpoints {
				c := *e
				c.Ports = maps.Clone(e.Ports)
				c.Ports["http-admin"] = 18080
				s.Endpoints[i] = &c
			}
			what = "port added to " + h
		}
	case x < 9: // a Service comes or goes
		if len(hosts) > 3 && r.IntN(2) == 0 {
			delete(svcs, h)
			return "service " + h + " deleted"
		}
		n := churnRegistry(len(hosts) + 1)
		nh := fmt.Sprintf("svc-%d.churn.svc.cluster.local", len(hosts))
		if _, ok := svcs[nh]; !ok {
			svcs[nh] = n[nh]
			return "service " + nh + " created"
		}
		what = "nothing"
	default: // ExternalName and back
		if s.ExternalName == "" {
			s.ExternalName, s.Endpoints = "db.example.com", nil
		} else {
			s.ExternalName = ""
		}
		what = "external name of " + h
	}
	svcs[h] = &s
	return what
}

// resourcesDiff names the first difference between two translations.
func resourcesDiff(got, want *Resources) string {
	g, w := got.ByType(), want.ByType()
	for _, typ := range slices.Sorted(maps.Keys(w)) {
		gs, ws := g[typ], w[typ]
		for i := range max(len(gs), len(ws)) {
			switch {
			case i >= len(gs):
				return fmt.Sprintf("%s: %s is missing", typ, cachev3.GetResourceName(ws[i]))
			case i >= len(ws):
				return fmt.Sprintf("%s: %s is one too many", typ, cachev3.GetResourceName(gs[i]))
			case !proto.Equal(gs[i], ws[i]):
				return fmt.Sprintf("%s %s:\ngot  %v\nwant %v", typ, cachev3.GetResourceName(ws[i]), gs[i], ws[i])
			}
		}
	}
	return ""
}
