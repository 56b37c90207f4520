package rollout

import (
	"strings"
	"testing"

	"github.com/meshlens/meshlens/controlplane/config"
)

// A gatewayAPI rollout's HTTPRoute is config meshlens serves too (read from
// the same cluster): analysis checks the rollout against it, and not
// against DestinationRule subsets, which it does not use.
func TestGatewayAPIRolloutIsAnalysedAgainstItsHTTPRoute(t *testing.T) {
	kinds, err := config.NewKinds(append(config.IstioKinds(config.IstioOptions{}), KindSpec(""))...)
	if err != nil {
		t.Fatal(err)
	}
	const route = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews.bookinfo.svc.cluster.local, reviews-v1.bookinfo.svc.cluster.local, reviews-v2.bookinfo.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.0.0.1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: bookinfo}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules:
  - backendRefs: [{name: reviews-v1, port: 9080}]
---
`
	rollout := func(httpRoute, stable, candidate string) string {
		return `apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: reviews, namespace: bookinfo}
spec:
  trafficProvider: gatewayAPI
  httpRoute: ` + httpRoute + `
  stableService: ` + stable + `
  candidateService: ` + candidate + `
  service: reviews
  stable: v1
  candidate: v2
  strategy: {canary: {steps: [50, 100]}}
`
	}
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"its route with its Services: nothing to report", route + rollout("reviews", "reviews-v1", "reviews-v2"), ""},
		{"a route that does not exist", route + rollout("nope", "reviews-v1", "reviews-v2"), `[IST0101] Rollout/bookinfo/reviews httpRoute: Referenced HTTPRoute not found: "bookinfo/nope"`},
		{"a route without the Services", route + rollout("reviews", "ratings-v1", "ratings-v2"), "[IST0101] Rollout/bookinfo/reviews httpRoute: HTTPRoute bookinfo/reviews has no rule whose backendRefs name the Services ratings-v1 or ratings-v2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := kinds.Parse([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			ws, err := kinds.Validate(nil, objs)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range ws {
				if strings.HasPrefix(w.Object, "Rollout/") {
					got = append(got, w.String())
				}
			}
			switch {
			case tc.want == "" && len(got) > 0:
				t.Fatalf("want no finding on the rollout, got %v", got)
			case tc.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], tc.want)):
				t.Fatalf("want one finding %q, got %v", tc.want, got)
			}
		})
	}
}
