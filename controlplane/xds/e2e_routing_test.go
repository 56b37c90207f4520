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

func vsWeightsYAML(w1, w2 int) string {
	return fmt.Sprintf(`---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - route:
    - {destination: {host: echo, subset: v1}, weight: %d}
    - {destination: {host: echo, subset: v2}, weight: %d}
`, w1, w2)
}

func TestWeightedSplitSends90_10(t *testing.T) {
	m := newTestMesh(t)
	v1, v2 := meshtest.StartBackend(t, "v1", "v1"), meshtest.StartBackend(t, "v2", "v2")
	m.apply(serviceYAML(echoHost, v1, v2) + subsetsYAML("", "v1", "v2") + vsWeightsYAML(90, 10))
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
}

func TestWeightChangeIsPushedAndClientsFollow(t *testing.T) {
	m := newTestMesh(t)
	v1, v2 := meshtest.StartBackend(t, "v1", "v1"), meshtest.StartBackend(t, "v2", "v2")
	base := serviceYAML(echoHost, v1, v2) + subsetsYAML("", "v1", "v2")
	m.apply(base + vsWeightsYAML(100, 0))
	c := m.client(echoTarget, nil, nil)
	if got := distribution(t, c, 50, 4); got["v1"] != 50 {
		t.Fatalf("before the change all traffic goes to v1, got %v", got)
	}

	m.apply(base + vsWeightsYAML(0, 100))
	meshtest.Eventually(t, 10*time.Second, "clients follow the new weights", func() error {
		if got := distribution(t, c, 50, 4); got["v2"] != 50 {
			return fmt.Errorf("want all 50 RPCs on v2, got %v", got)
		}
		return nil
	})
	meshtest.Eventually(t, 20*time.Second, "the client reports the new version", func() error {
		for _, p := range m.srv.Proxies() {
			if !p.InSync || p.LastNack != nil {
				return fmt.Errorf("proxy %+v not in sync", p)
			}
		}
		return nil
	})
}

func TestHeaderAndCookieMatchRouteToVersion(t *testing.T) {
	m := newTestMesh(t)
	v1, v2 := meshtest.StartBackend(t, "v1", "v1"), meshtest.StartBackend(t, "v2", "v2")
	m.apply(serviceYAML(echoHost, v1, v2) + subsetsYAML("", "v1", "v2") + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - match:
    - headers: {end-user: {exact: jason}}
    - headers: {cookie: {regex: "^(.*;\\s*)?user=beta(;.*)?$"}}
    route: [{destination: {host: echo, subset: v2}}]
  - route: [{destination: {host: echo, subset: v1}}]
`)
	c := m.client(echoTarget, nil, nil)
	for _, tc := range []struct {
		name string
		md   []string
		want string
	}{
		{"no header goes to v1", nil, "v1"},
		{"end-user jason goes to v2", []string{"end-user", "jason"}, "v2"},
		{"another end-user goes to v1", []string{"end-user", "mary"}, "v1"},
		{"cookie user=beta goes to v2", []string{"cookie", "session=42; user=beta"}, "v2"},
		{"cookie user=beta first goes to v2", []string{"cookie", "user=beta; theme=dark"}, "v2"},
		{"cookie user=betamax goes to v1", []string{"cookie", "user=betamax"}, "v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := distribution(t, c, 20, 2, tc.md...)
			if got[tc.want] != 20 {
				t.Fatalf("want 20 RPCs on %s, got %v", tc.want, got)
			}
		})
	}
}

func TestURIMatchRoutesByGRPCMethod(t *testing.T) {
	for _, tc := range []struct {
		name, uri string
	}{
		{"exact", `{exact: /grpc.testing.TestService/EmptyCall}`},
		{"prefix", `{prefix: /grpc.testing.TestService/Empty}`},
		{"regex", `{regex: "/grpc\\.testing\\.TestService/Empty.*"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestMesh(t)
			v1, v2 := meshtest.StartBackend(t, "v1", "v1"), meshtest.StartBackend(t, "v2", "v2")
			m.apply(serviceYAML(echoHost, v1, v2) + subsetsYAML("", "v1", "v2") + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - match: [{uri: ` + tc.uri + `}]
    route: [{destination: {host: echo, subset: v2}}]
  - route: [{destination: {host: echo, subset: v1}}]
`)
			c := m.client(echoTarget, nil, nil)
			if got := distribution(t, c, 10, 1); got["v1"] != 10 {
				t.Fatalf("UnaryCall must stay on v1: %v", got)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for range 10 {
				if _, err := c.EmptyCall(ctx, &testgrpc.Empty{}, grpc.WaitForReady(true)); err != nil {
					t.Fatal(err)
				}
			}
			if v2.Calls.Load() != 10 {
				t.Fatalf("EmptyCall must go to v2: v1 saw %d calls, v2 %d", v1.Calls.Load()-10, v2.Calls.Load())
			}
		})
	}
}
