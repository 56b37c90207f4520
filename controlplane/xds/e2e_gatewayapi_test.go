package xds

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/meshlens/meshlens/internal/meshtest"
)

// Gateway API mesh routing (GAMMA) with proxyless grpc-go clients: routes
// attached to the Service echo apply to every client dialling
// xds:///echo...:9000, and send to the Services echo-v1 and echo-v2.

// gammaServices are echo (the routed Service, no endpoints of its own),
// echo-v1 and echo-v2.
func gammaServices(v1, v2 *meshtest.Backend) string {
	return serviceYAML(echoHost) + "---\n" + serviceYAML("echo-v1.default.svc.cluster.local", v1) + "---\n" + serviceYAML("echo-v2.default.svc.cluster.local", v2)
}

func httpRouteYAML(w1, w2 int) string {
	return fmt.Sprintf(`---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 9000}]
  rules:
  - matches: [{headers: [{name: end-user, value: jason}]}]
    backendRefs: [{name: echo-v2, port: 9000}]
  - backendRefs:
    - {name: echo-v1, port: 9000, weight: %d}
    - {name: echo-v2, port: 9000, weight: %d}
`, w1, w2)
}

func TestHTTPRouteForAServiceSplitsAndMatchesHeadersForGRPCClients(t *testing.T) {
	m := newTestMesh(t)
	v1, v2 := meshtest.StartBackend(t, "v1", "v1"), meshtest.StartBackend(t, "v2", "v2")
	m.apply(gammaServices(v1, v2) + httpRouteYAML(90, 10))
	c := m.client(echoTarget, nil, nil)

	const n = 2000
	got := distribution(t, c, n, 8)
	if got["v1"]+got["v2"] != n {
		t.Fatalf("want %d successful RPCs, got %v", n, got)
	}
	// Binomial sd of the v2 share is ~0.67%; 3% is > 4 sd.
	if share := float64(got["v2"]) / n; share < 0.07 || share > 0.13 {
		t.Fatalf("v2 share %.3f, want 0.10 ± 0.03 (%v)", share, got)
	}
	if got := distribution(t, c, 20, 2, "end-user", "jason"); got["v2"] != 20 {
		t.Fatalf("end-user jason: want 20 RPCs on v2, got %v", got)
	}
	if got := distribution(t, c, 20, 2, "end-user", "mary"); got["v2"] == 20 {
		t.Fatalf("end-user mary must take the weighted rule, got all on v2: %v", got)
	}

	// What a rollout does to the route's weights: the clients follow.
	m.apply(gammaServices(v1, v2) + httpRouteYAML(0, 100))
	meshtest.Eventually(t, 10*time.Second, "clients follow the HTTPRoute's new weights", func() error {
		if got := distribution(t, c, 50, 4); got["v2"] != 50 {
			return fmt.Errorf("want all 50 RPCs on v2, got %v", got)
		}
		return nil
	})
}

func TestGRPCRouteForAServiceRoutesByMethodHeaderAndWeight(t *testing.T) {
	m := newTestMesh(t)
	v1, v2 := meshtest.StartBackend(t, "v1", "v1"), meshtest.StartBackend(t, "v2", "v2")
	m.apply(gammaServices(v1, v2) + `---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: echo, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: echo}]
  rules:
  - matches:
    - method: {service: grpc.testing.TestService, method: EmptyCall}
    backendRefs: [{name: echo-v2, port: 9000}]
  - matches:
    - method: {service: grpc.testing.TestService}
      headers: [{name: x-canary, value: "true"}]
    backendRefs: [{name: echo-v2, port: 9000}]
  - matches:
    - method: {service: grpc.testing.TestService}
    backendRefs:
    - {name: echo-v1, port: 9000, weight: 3}
    - {name: echo-v2, port: 9000, weight: 1}
`)
	c := m.client(echoTarget, nil, nil)

	const n = 2000
	got := distribution(t, c, n, 8) // UnaryCall
	if got["v1"]+got["v2"] != n {
		t.Fatalf("want %d successful RPCs, got %v", n, got)
	}
	// Binomial sd of the v2 share is ~0.97%; 4% is > 4 sd.
	if share := float64(got["v2"]) / n; share < 0.21 || share > 0.29 {
		t.Fatalf("UnaryCall v2 share %.3f, want 0.25 ± 0.04 (weights 3:1) (%v)", share, got)
	}
	if got := distribution(t, c, 20, 2, "x-canary", "true"); got["v2"] != 20 {
		t.Fatalf("x-canary: true: want 20 RPCs on v2, got %v", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before1, before2 := v1.Calls.Load(), v2.Calls.Load()
	for range 10 {
		if _, err := c.EmptyCall(ctx, &testgrpc.Empty{}, grpc.WaitForReady(true)); err != nil {
			t.Fatal(err)
		}
	}
	if d1, d2 := v1.Calls.Load()-before1, v2.Calls.Load()-before2; d2 != 10 || d1 != 0 {
		t.Fatalf("EmptyCall must go to v2 by its method match: v1 saw %d calls, v2 %d", d1, d2)
	}
}
