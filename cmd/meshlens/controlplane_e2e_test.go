package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/meshlens/meshlens/controlplane/xds"
	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/store/storetest"
)

const echoConfig = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: shop}
spec:
  hosts: [echo.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{name: grpc, number: 9080, protocol: GRPC}]
  workloadSelector: {labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v1, namespace: shop}
spec: {address: 127.0.0.1, ports: {grpc: %d}, labels: {app: echo, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v2, namespace: shop}
spec: {address: 127.0.0.1, ports: {grpc: %d}, labels: {app: echo, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: shop}
spec:
  host: echo
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`

func routeTo(v1, v2 int) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: shop}
spec:
  hosts: [echo]
  http:
  - route:
    - {destination: {host: echo, subset: v1}, weight: %d}
    - {destination: {host: echo, subset: v2}, weight: %d}
`, v1, v2)
}

// TestBadConfigIsRefusedAndClientsKeepTheOldRoutes runs meshlens serve with
// a proxyless gRPC client routed by it: a bad VirtualService, through the API
// or the config dir, is refused naming the field, and the client keeps
// going where the old config sent it; a good change then moves it.
func TestBadConfigIsRefusedAndClientsKeepTheOldRoutes(t *testing.T) {
	// Each version's backend answers with its version as the hostname.
	v1, v2 := meshtest.StartBackend(t, "v1", "v1").Port, meshtest.StartBackend(t, "v2", "v2").Port
	const token = "operator-token-0123456789abcdef"
	tokens := filepath.Join(t.TempDir(), "tokens")
	_ = os.WriteFile(tokens, []byte(token+" operator\n"), 0o600)
	configDir := t.TempDir()
	xdsAddr := freeAddr(t)
	p := startMeshlens(t, "--tokens", tokens, "--config-dir", configDir, "--xds", xdsAddr, "--data-dir", t.TempDir(), "--clickhouse", storetest.DSN(t))

	apply := func(body string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+p.http+"/api/v1/config", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := apply(fmt.Sprintf(echoConfig, v1, v2) + "---\n" + routeTo(100, 0)); code != http.StatusOK {
		t.Fatalf("apply: %d %s", code, body)
	}

	boot, err := xds.GRPCBootstrap{ServerAddr: xdsAddr, NodeID: "sidecar~127.0.0.1~client.shop~shop.svc.cluster.local", Cluster: "client",
		Metadata: map[string]string{"NAMESPACE": "shop"}}.JSON()
	if err != nil {
		t.Fatal(err)
	}
	client := meshtest.XDSClient(t, boot, "echo.shop.svc.cluster.local:9080", nil)
	versions := func(n int) map[string]int {
		got := map[string]int{}
		for i := 0; i < n; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := client.UnaryCall(ctx, &testpb.SimpleRequest{})
			cancel()
			if err != nil {
				got["error: "+err.Error()]++
				continue
			}
			got[resp.GetHostname()]++
		}
		return got
	}
	waitFor := func(want string) {
		t.Helper()
		meshtest.Eventually(t, 30*time.Second, "calls reach "+want, func() error {
			if got := versions(20); got[want] != 20 {
				return fmt.Errorf("calls went to %v, want all to %s", got, want)
			}
			return nil
		})
	}
	waitFor("v1")

	// Through the API: 400 naming the object and the field.
	code, body := apply(routeTo(50, 60))
	if code != http.StatusBadRequest || !strings.Contains(body, "VirtualService/shop/echo") || !strings.Contains(body, "weight") {
		t.Fatalf("bad weights through the API: %d %s", code, body)
	}
	// Through the config dir: refused, logged with the file.
	if err := os.WriteFile(filepath.Join(configDir, "echo-vs.yaml"), []byte(routeTo(10, 10)), 0o600); err != nil {
		t.Fatal(err)
	}
	meshtest.Eventually(t, 20*time.Second, "the bad file in --config-dir is reported", func() error {
		if l := p.Log(); !strings.Contains(l, "echo-vs.yaml") {
			return fmt.Errorf("not in the log:\n%s", l)
		}
		return nil
	})
	if got := versions(50); got["v1"] != 50 {
		t.Fatalf("after refused config, calls went to %v, want all 50 to v1", got)
	}
	_ = os.Remove(filepath.Join(configDir, "echo-vs.yaml"))

	// A good change moves the client.
	if code, body := apply(routeTo(0, 100)); code != http.StatusOK {
		t.Fatalf("apply good route: %d %s", code, body)
	}
	waitFor("v2")
}
