package xds

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/meshlens/meshlens/internal/meshtest"
)

// A Sidecar's egress hosts scope what a proxyless client of its namespace
// receives: a service outside them has no listener for the client, whose
// RPCs fail; added to the egress hosts, it is reachable again.
// A Sidecar of another namespace changes nothing for this client.
func TestSidecarEgressScopesWhatAProxylessClientReaches(t *testing.T) {
	m := newTestMesh(t)
	v1 := meshtest.StartBackend(t, "v1", "v1")
	base := serviceYAML(echoHost, v1) + `---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: other}
spec:
  egress:
  - hosts: ["~/*"]
`
	sidecar := func(hosts string) string {
		return fmt.Sprintf(`---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress:
  - hosts: [%s]
`, hosts)
	}
	m.apply(base + sidecar(`"./ratings.default.svc.cluster.local"`))
	c := m.client(echoTarget, nil, nil)
	meshtest.Eventually(t, 20*time.Second, "echo is out of the client's scope", func() error { return failsForWantOfListener(c, echoTarget) })

	m.apply(base + sidecar(`"./ratings.default.svc.cluster.local", "./echo.default.svc.cluster.local"`))
	meshtest.Eventually(t, 20*time.Second, "echo is reachable once in the egress hosts", func() error {
		if got := distribution(t, c, 10, 1); got["v1"] != 10 {
			return fmt.Errorf("want 10 RPCs on v1, got %v", got)
		}
		return nil
	})
}

// A Sidecar egress listener with a port decides alone what a proxyless
// client reaches on that port, as istiod scopes it: with port 9000's
// listener naming only ratings, echo:9000 has no listener for the client
// although the catch-all listener names every host of the namespace,
// while alt:9100 (no listener of its own port) is reachable through the
// catch-all. Naming echo on port 9000's listener makes it reachable.
func TestSidecarEgressPortScopesWhatAProxylessClientReaches(t *testing.T) {
	m := newTestMesh(t)
	v1 := meshtest.StartBackend(t, "v1", "v1")
	alt := meshtest.StartBackend(t, "alt", "v2")
	base := serviceYAML(echoHost, v1) + fmt.Sprintf(`---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: alt, namespace: default}
spec:
  hosts: [alt.default.svc.cluster.local]
  ports: [{number: 9100, name: grpc, protocol: GRPC}]
  workloadSelector: {labels: {app: alt}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: alt, namespace: default}
spec: {address: 127.0.0.1, ports: {grpc: %d}, labels: {app: alt, version: v2}, serviceAccount: alt}
`, alt.Port)
	sidecar := func(hosts string) string {
		return fmt.Sprintf(`---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress:
  - port: {number: 9000, name: grpc, protocol: GRPC}
    hosts: [%s]
  - hosts: ["./*"]
`, hosts)
	}
	m.apply(base + sidecar(`"./ratings.default.svc.cluster.local"`))
	altClient := m.client("alt.default.svc.cluster.local:9100", nil, nil)
	meshtest.Eventually(t, 20*time.Second, "alt:9100 is reachable through the catch-all egress listener", func() error {
		if got := distribution(t, altClient, 10, 1); got["alt"] != 10 {
			return fmt.Errorf("want 10 RPCs on alt, got %v", got)
		}
		return nil
	})
	c := m.client(echoTarget, nil, nil)
	meshtest.Eventually(t, 20*time.Second, "echo:9000 is out of port 9000's egress hosts", func() error { return failsForWantOfListener(c, echoTarget) })

	m.apply(base + sidecar(`"./ratings.default.svc.cluster.local", "./echo.default.svc.cluster.local"`))
	meshtest.Eventually(t, 20*time.Second, "echo:9000 is reachable once port 9000's listener names it", func() error {
		if got := distribution(t, c, 10, 1); got["v1"] != 10 {
			return fmt.Errorf("want 10 RPCs on v1, got %v", got)
		}
		return nil
	})
}

// failsForWantOfListener calls target through c and says why unless the
// call fails as grpc-go fails for a listener resource it does not get
// (UNAVAILABLE, or at the deadline while it keeps resolving, naming the
// target and saying the resource was removed or does not exist).
func failsForWantOfListener(c testgrpc.TestServiceClient, target string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := call(ctx, c)
	if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded || !strings.Contains(err.Error(), `"`+target+`"`) ||
		!strings.Contains(err.Error(), "removed") && !strings.Contains(err.Error(), "does not exist") {
		return fmt.Errorf("want the RPC to fail for want of listener %s, got %v", target, err)
	}
	return nil
}
