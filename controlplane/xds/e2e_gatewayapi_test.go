package xds

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/types/known/structpb"

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
    retry: {attempts: 2, codes: [503], backoff: 50ms}
    timeouts: {request: 5s, backendRequest: 2s}
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
	// grpc-go took every resource, retry policy and timeouts included.
	meshtest.Eventually(t, 20*time.Second, "the client is in sync without a NACK", func() error {
		for _, p := range m.srv.Proxies() {
			if !p.InSync || p.LastNack != nil {
				return fmt.Errorf("proxy %+v not in sync", p)
			}
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

// A GAMMA route's backendRef to a Service of another namespace is followed
// only while a ReferenceGrant in that namespace allows HTTPRoutes of the
// route's namespace: grpc-go clients reach it once the grant is applied,
// and fail again (the rule answers 500) once it is gone.
func TestReferenceGrantLetsARouteSendToAnotherNamespace(t *testing.T) {
	m := newTestMesh(t)
	v1, v2 := meshtest.StartBackend(t, "v1", "v1"), meshtest.StartBackend(t, "v2", "v2")
	services := gammaServices(v1, v1) + fmt.Sprintf(`---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: archive, namespace: other}
spec:
  hosts: [archive.other.svc.cluster.local]
  ports: [{number: 9000, name: grpc, protocol: GRPC}]
  workloadSelector: {labels: {app: archive}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: archive-v2, namespace: other}
spec: {address: 127.0.0.1, ports: {grpc: %d}, labels: {app: archive, version: v2}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 9000}]
  rules:
  - matches: [{headers: [{name: x-archive, value: "true"}]}]
    backendRefs: [{name: archive, namespace: other, port: 9000}]
  - backendRefs: [{name: echo-v1, port: 9000}]
`, v2.Port)
	grant := `---
apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: {name: echo-routes, namespace: other}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]
  to: [{group: "", kind: Service, name: archive}]
`
	m.apply(services)
	c := m.client(echoTarget, nil, nil)
	if got := distribution(t, c, 20, 2); got["v1"] != 20 {
		t.Fatalf("without x-archive: want 20 RPCs on echo-v1, got %v", got)
	}
	if got := distribution(t, c, 10, 2, "x-archive", "true"); got["v2"] != 0 || got["v1"] != 0 {
		t.Fatalf("without a ReferenceGrant the other namespace's Service must get nothing, got %v", got)
	}
	m.apply(services + grant)
	meshtest.Eventually(t, 10*time.Second, "x-archive: true reaches other/archive once the ReferenceGrant allows it", func() error {
		if got := distribution(t, c, 10, 2, "x-archive", "true"); got["v2"] != 10 {
			return fmt.Errorf("want 10 RPCs on archive (v2), got %v", got)
		}
		return nil
	})
	m.apply(services)
	meshtest.Eventually(t, 10*time.Second, "x-archive: true fails again once the ReferenceGrant is gone", func() error {
		if got := distribution(t, c, 10, 2, "x-archive", "true"); got["v2"] != 0 {
			return fmt.Errorf("want no RPC on archive, got %v", got)
		}
		return nil
	})
}

// Over ADS, the gateway proxies a Gateway API Gateway names (label
// gateway.networking.k8s.io/gateway-name) get its listener and the routes
// of the HTTPRoutes attached to it, when its GatewayClass is meshlens';
// another gateway's proxies do not, nor do the proxies of a Gateway of
// istiod's class (istio.io/gateway-controller), which istiod programs.
func TestGatewayAPIGatewayListenerReachesItsGatewayProxies(t *testing.T) {
	m := newTestMesh(t)
	m.apply(serviceYAML(echoHost, meshtest.NewBackend("v1", "v1", 7001)) + `---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: meshlens}
spec: {controllerName: meshlens.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: istio}
spec: {controllerName: istio.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: default}
spec:
  gatewayClassName: meshlens
  listeners: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: istio-web, namespace: default}
spec:
  gatewayClassName: istio
  listeners: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo-istio, namespace: default}
spec:
  parentRefs: [{name: istio-web}]
  hostnames: [echo.example.com]
  rules: [{backendRefs: [{name: echo, port: 9000}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: default}
spec:
  parentRefs: [{name: web}]
  hostnames: [echo.example.com]
  rules: [{backendRefs: [{name: echo, port: 9000}]}]
`)
	cc, err := grpc.NewClient(m.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name, gateway string
		listeners     []string
	}{
		{"the Gateway's proxy", "web", []string{"0.0.0.0_8080"}},
		{"another Gateway's proxy", "other", nil},
		{"the proxy of a Gateway istiod programs", "istio-web", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			md, err := structpb.NewStruct(map[string]any{MetaLabels: map[string]any{"gateway.networking.k8s.io/gateway-name": tc.gateway}, MetaNamespace: "default"})
			if err != nil {
				t.Fatal(err)
			}
			node := &corev3.Node{Id: "router~10.0.0.9~" + tc.gateway + "-1.default~default.svc.cluster.local", UserAgentName: "envoy", Metadata: md}
			a, err := newADSClientAs(ctx, cc, node, map[string][]string{resource.ListenerType: nil, resource.RouteType: {"http.8080"}})
			if err != nil {
				t.Fatal(err)
			}
			go a.run()
			meshtest.Eventually(t, 20*time.Second, "listeners and routes arrive", func() error {
				if got := a.resourceNames(resource.ListenerType); !slices.Equal(got, tc.listeners) {
					return fmt.Errorf("got listeners %v, want %v", got, tc.listeners)
				}
				if tc.listeners == nil {
					if v := a.ackedVersion(resource.ListenerType); v == "" {
						return fmt.Errorf("no listener response yet")
					}
					return nil
				}
				rc := lastRoute(t, a, "http.8080")
				if rc == nil || len(rc.VirtualHosts) != 1 || !slices.Contains(rc.VirtualHosts[0].Domains, "echo.example.com") ||
					rc.VirtualHosts[0].Routes[0].GetRoute().GetCluster() != "outbound|9000||"+echoHost {
					return fmt.Errorf("route http.8080 = %v, want echo.example.com to %s", rc, echoHost)
				}
				return nil
			})
		})
	}
}

// lastRoute is the named route configuration of a's last RDS response.
func lastRoute(t *testing.T, a *adsClient, name string) *routev3.RouteConfiguration {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.last[resource.RouteType].GetResources() {
		rc := &routev3.RouteConfiguration{}
		if err := r.UnmarshalTo(rc); err != nil {
			t.Fatal(err)
		}
		if rc.Name == name {
			return rc
		}
	}
	return nil
}
