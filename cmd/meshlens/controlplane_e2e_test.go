package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/meshlens/meshlens/controlplane/xds"
	"github.com/meshlens/meshlens/store/storetest"
)

// versionServer answers every UnaryCall with its version as the hostname.
type versionServer struct {
	testpb.UnimplementedTestServiceServer
	version string
}

func (s versionServer) UnaryCall(context.Context, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Hostname: s.version}, nil
}

func startVersion(t *testing.T, version string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	testpb.RegisterTestServiceServer(s, versionServer{version: version})
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().(*net.TCPAddr).Port
}

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
	v1, v2 := startVersion(t, "v1"), startVersion(t, "v2")
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
	res, err := grpcxds.NewXDSResolverWithConfigForTesting(boot)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///echo.shop.svc.cluster.local:9080", grpc.WithResolvers(res), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testpb.NewTestServiceClient(conn)
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
		deadline := time.Now().Add(30 * time.Second)
		for {
			got := versions(20)
			if got[want] == 20 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("calls went to %v, want all to %s", got, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
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
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.Log(), "echo-vs.yaml") {
		if time.Now().After(deadline) {
			t.Fatalf("the bad file in --config-dir was not reported:\n%s", p.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
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
