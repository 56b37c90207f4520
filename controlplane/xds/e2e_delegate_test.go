package xds

import (
	"testing"

	"github.com/meshlens/meshlens/internal/meshtest"
)

// A root VirtualService hands the gRPC service's paths to a delegate
// VirtualService of another namespace, whose header match routes to v2
// under the root's match; the rest goes to v1.
func TestVirtualServiceDelegateRoutesProxylessClients(t *testing.T) {
	m := newTestMesh(t)
	v1, v2 := meshtest.StartBackend(t, "v1", "v1"), meshtest.StartBackend(t, "v2", "v2")
	m.apply(serviceYAML(echoHost, v1, v2) + subsetsYAML("", "v1", "v2") + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - match: [{uri: {prefix: /grpc.testing.TestService/}}]
    delegate: {name: echo-team, namespace: team}
  - route: [{destination: {host: echo, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo-team, namespace: team}
spec:
  http:
  - match: [{headers: {x-beta: {exact: "1"}}}]
    route: [{destination: {host: echo.default.svc.cluster.local, subset: v2}}]
  - route: [{destination: {host: echo.default.svc.cluster.local, subset: v1}}]
`)
	c := m.client(echoTarget, nil, nil)
	if got := distribution(t, c, 20, 2, "x-beta", "1"); got["v2"] != 20 {
		t.Fatalf("the delegate's header route: want 20 RPCs on v2, got %v", got)
	}
	if got := distribution(t, c, 20, 2); got["v1"] != 20 {
		t.Fatalf("the delegate's catch-all: want 20 RPCs on v1, got %v", got)
	}
}
