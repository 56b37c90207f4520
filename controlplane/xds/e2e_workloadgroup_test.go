package xds

import (
	"fmt"
	"testing"

	"github.com/meshlens/meshlens/internal/meshtest"
)

// A WorkloadEntry that names its WorkloadGroup and gives only its address
// takes the template's labels and port: the ServiceEntry selects it, the
// v2 subset routes to it, and proxyless clients reach it on the
// template's port.
func TestWorkloadGroupTemplateCompletesItsWorkloadEntries(t *testing.T) {
	m := newTestMesh(t)
	v1, v2 := meshtest.StartBackend(t, "v1", "v1"), meshtest.StartBackend(t, "vm", "v2")
	m.apply(serviceYAML(echoHost, v1) + subsetsYAML("", "v1", "v2") + fmt.Sprintf(`---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: echo-vms, namespace: default}
spec:
  metadata: {labels: {app: echo}}
  template:
    labels: {version: v2}
    ports: {grpc: %d}
    serviceAccount: echo-vm
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: echo-vms-1
  namespace: default
  annotations: {istio.io/autoRegistrationGroup: echo-vms}
spec: {address: 127.0.0.1}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - route: [{destination: {host: echo, subset: v2}}]
`, v2.Port))
	c := m.client(echoTarget, nil, nil)
	if got := distribution(t, c, 20, 2); got["vm"] != 20 {
		t.Fatalf("want 20 RPCs on the group's member (v2 from the template), got %v", got)
	}
}
