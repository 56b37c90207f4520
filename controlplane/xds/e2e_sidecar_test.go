package xds

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
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
	meshtest.Eventually(t, 20*time.Second, "echo is out of the client's scope", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := call(ctx, c)
		// grpc-go fails (UNAVAILABLE, or at the deadline while it keeps
		// resolving) saying the listener resource does not exist.
		if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded || !strings.Contains(err.Error(), `"`+echoTarget+`"`) ||
			!strings.Contains(err.Error(), "removed") && !strings.Contains(err.Error(), "does not exist") {
			return fmt.Errorf("want the RPC to fail for want of listener %s, got %v", echoTarget, err)
		}
		return nil
	})

	m.apply(base + sidecar(`"./ratings.default.svc.cluster.local", "./echo.default.svc.cluster.local"`))
	meshtest.Eventually(t, 20*time.Second, "echo is reachable once in the egress hosts", func() error {
		if got := distribution(t, c, 10, 1); got["v1"] != 10 {
			return fmt.Errorf("want 10 RPCs on v1, got %v", got)
		}
		return nil
	})
}
