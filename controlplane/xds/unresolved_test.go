package xds

import (
	"context"
	"fmt"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/meshlens/meshlens/internal/meshtest"
)

// Config validation only warns about routes to a host no registry defines
// or a subset no DestinationRule defines (IST0101). Translation must not
// fail on them: such a route goes to an existing cluster without endpoints,
// every other route translates as usual.
func TestRouteToUnknownHostOrSubsetGoesToEmptyCluster(t *testing.T) {
	snap := parseSnapshot(t, 1, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.0.0.1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {x-ghost: {exact: "1"}}}]
    route: [{destination: {host: ghost, port: {number: 8080}}}]
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v9}, weight: 10}
`)
	for _, fl := range []Flavour{FlavourGRPC, FlavourEnvoy} {
		t.Run(string(fl), func(t *testing.T) {
			res, err := Translate(Input{Config: snap}, Node{ID: "n", Flavour: fl, Namespace: "default"}, DefaultOptions())
			if err != nil {
				t.Fatalf("Translate: %v", err)
			}
			clusters := map[string]*clusterv3.Cluster{}
			for _, c := range res.Clusters {
				clusters[c.Name] = c
			}
			endpoints := map[string]int{}
			for _, e := range res.Endpoints {
				n := 0
				for _, l := range e.Endpoints {
					n += len(l.LbEndpoints)
				}
				endpoints[e.ClusterName] = n
			}
			for name, want := range map[string]int{
				"outbound|9080|v1|reviews.default.svc.cluster.local": 1,
				"outbound|9080|v9|reviews.default.svc.cluster.local": 0, // subset no DestinationRule defines
				"outbound|8080||ghost.default.svc.cluster.local":     0, // host nothing defines
			} {
				if clusters[name] == nil {
					t.Errorf("no cluster %s", name)
				} else if got, ok := endpoints[name]; !ok || got != want {
					t.Errorf("cluster %s has %d endpoints (assignment present: %v), want %d", name, got, ok, want)
				}
			}
			for _, name := range routedClusters(t, res) {
				if clusters[name] == nil {
					t.Errorf("a route names cluster %s, which CDS does not hold", name)
				}
			}
		})
	}
}

// routedClusters lists the clusters the RDS route configurations of res
// name: the Envoy flavour's. The gRPC flavour's routes are inline in its
// listeners; TestRouteToUndefinedSubsetFailsUnavailable checks them with a
// real client.
func routedClusters(t *testing.T, res *Resources) []string {
	t.Helper()
	var out []string
	add := func(ra *routev3.RouteAction) {
		switch c := ra.GetClusterSpecifier().(type) {
		case *routev3.RouteAction_Cluster:
			out = append(out, c.Cluster)
		case *routev3.RouteAction_WeightedClusters:
			for _, w := range c.WeightedClusters.GetClusters() {
				out = append(out, w.GetName())
			}
		}
	}
	for _, rc := range res.Routes {
		for _, vh := range rc.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				add(r.GetRoute())
			}
		}
	}
	return out
}

// A proxyless gRPC client routed 50/50 between an existing subset and one
// no DestinationRule defines gets answers from the first and UNAVAILABLE
// for the rest, at once: not a failed translation, not a hang.
func TestRouteToUndefinedSubsetFailsUnavailable(t *testing.T) {
	m := newTestMesh(t)
	v1 := meshtest.StartBackend(t, "v1", "v1")
	m.apply(serviceYAML(echoHost, v1) + subsetsYAML("", "v1") + vsWeightsYAML(50, 50)) // v2 is not a subset
	c := m.client(echoTarget, nil, nil)
	meshtest.Eventually(t, 10*time.Second, "the client reaches v1", func() error {
		if h, err := callNow(c); h != "v1" {
			return fmt.Errorf("got %q, %v", h, err)
		}
		return nil
	})
	got := map[string]int{}
	for range 200 {
		h, err := callNow(c)
		if err != nil {
			h = status.Code(err).String()
		}
		got[h]++
	}
	if got["v1"] < 60 || got[codes.Unavailable.String()] < 60 || got["v1"]+got[codes.Unavailable.String()] != 200 {
		t.Fatalf("want about half v1 and half UNAVAILABLE, got %v", got)
	}
}

// callNow makes one RPC that fails at once when no endpoint can take it,
// as a client without wait-for-ready does.
func callNow(c testgrpc.TestServiceClient) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	if err != nil {
		return "", err
	}
	return r.GetHostname(), nil
}

// Istio accepts a WorkloadEntry without an address when it names its
// network (reached through that network's gateway). meshlens runs no such
// gateway: the endpoint is left out, and the rest translates.
func TestWorkloadEntryWithoutAddressIsLeftOut(t *testing.T) {
	snap := parseSnapshot(t, 1, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: foo, namespace: default}
spec:
  hosts: [foo]
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: foo}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: foo-remote, namespace: default}
spec: {network: net2, labels: {app: foo}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: foo-local, namespace: default}
spec: {address: 10.0.0.2, labels: {app: foo}}
`)
	for _, fl := range []Flavour{FlavourGRPC, FlavourEnvoy} {
		res, err := Translate(Input{Config: snap}, Node{ID: "n", Flavour: fl, Namespace: "default"}, DefaultOptions())
		if err != nil {
			t.Fatalf("%s: %v", fl, err)
		}
		for _, e := range res.Endpoints {
			if e.ClusterName == "outbound|80||foo.default.svc.cluster.local" && (len(e.Endpoints) != 1 || len(e.Endpoints[0].LbEndpoints) != 1) {
				t.Fatalf("%s: endpoints %v, want only foo-local", fl, e.Endpoints)
			}
		}
	}
}
