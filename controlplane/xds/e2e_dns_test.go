package xds

import (
	"fmt"
	"testing"

	"github.com/meshlens/meshlens/internal/meshtest"
)

// A ServiceEntry with resolution DNS gives proxyless clients a LOGICAL_DNS
// cluster: grpc-go resolves the endpoint's name itself ("localhost") and
// reaches the backend, with no EDS involved.
func TestServiceEntryDNSResolutionReachesBackendByName(t *testing.T) {
	m := newTestMesh(t)
	be := meshtest.StartBackend(t, "dns", "v1")
	m.apply(fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [%s]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 9000, name: grpc, protocol: GRPC}]
  endpoints: [{address: localhost, ports: {grpc: %d}}]
`, echoHost, be.Port))
	c := m.client(echoTarget, nil, nil)
	if got := distribution(t, c, 10, 2); got["dns"] != 10 {
		t.Fatalf("want 10 RPCs on the backend named by DNS, got %v", got)
	}
}
