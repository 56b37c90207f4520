package xds

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/meshlens/meshlens/internal/meshtest"
)

func peerAuthYAML(mode string) string {
	if mode == "" {
		return ""
	}
	return fmt.Sprintf(`---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: %s}}
`, mode)
}

// securedMesh runs one grpc-go xDS server "srv" (identity
// spiffe://cluster.local/ns/default/sa/srv) under the given extra config and
// waits until it serves.
func securedMesh(t *testing.T, pki *testPKI, extra string) (*testMesh, *meshtest.Backend) {
	t.Helper()
	m := newTestMesh(t)
	srv, serving := m.startXDSBackend("srv", "v1", pki.issue(t, "default", "srv"))
	m.apply(serviceYAML(echoHost, srv) + extra)
	select {
	case <-serving:
	case <-time.After(15 * time.Second):
		t.Fatal("xDS server never started serving")
	}
	return m, srv
}

// callOnce is one RPC that fails fast instead of waiting for a connection.
func callOnce(c testgrpc.TestServiceClient) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	return err
}

// untilOK retries an RPC while the client connects (the first attempts may
// race the server's listener update).
func untilOK(t *testing.T, c testgrpc.TestServiceClient) {
	t.Helper()
	meshtest.Eventually(t, 10*time.Second, "RPC succeeds", func() error { return callOnce(c) })
}

func TestPeerAuthenticationModes(t *testing.T) {
	pki := newTestPKI(t)
	for _, tc := range []struct {
		mode           string
		plaintextOK    bool
		wantMeshClient string // how the mesh (xDS credentials) client arrives
	}{
		{mode: "STRICT", plaintextOK: false, wantMeshClient: "tls:spiffe://cluster.local/ns/default/sa/client"},
		// grpc-go servers match filter chains only on "raw_buffer", so
		// PERMISSIVE serves plaintext and auto-mTLS clients use plaintext.
		{mode: "PERMISSIVE", plaintextOK: true, wantMeshClient: "insecure"},
		{mode: "UNSET", plaintextOK: true, wantMeshClient: "insecure"},
		{mode: "", plaintextOK: true, wantMeshClient: "insecure"}, // no policy at all
	} {
		t.Run("mode "+tc.mode, func(t *testing.T) {
			m, srv := securedMesh(t, pki, peerAuthYAML(tc.mode))

			mesh := m.client(echoTarget, xdsClientCreds(t), pki.issue(t, "default", "client"))
			untilOK(t, mesh)
			if got := srv.LastAuth(); got != tc.wantMeshClient {
				t.Fatalf("mesh client arrived as %v, want %s", got, tc.wantMeshClient)
			}

			plain := m.client(echoTarget, nil, nil)
			if tc.plaintextOK {
				untilOK(t, plain)
				if got := srv.LastAuth(); got != "insecure" {
					t.Fatalf("plaintext client arrived as %v", got)
				}
				return
			}
			for range 3 {
				if err := callOnce(plain); err == nil {
					t.Fatal("STRICT must reject a plaintext client")
				}
			}
		})
	}
}

func TestDestinationRuleIstioMutualForcesClientTLS(t *testing.T) {
	pki := newTestPKI(t)
	// The server is STRICT; the DestinationRule turns mTLS on explicitly
	// (auto-mTLS would too), and a DISABLE rule turns it off, which the
	// STRICT server then refuses.
	for _, tc := range []struct {
		tls  string
		want bool
	}{{"ISTIO_MUTUAL", true}, {"DISABLE", false}} {
		t.Run(tc.tls, func(t *testing.T) {
			m, srv := securedMesh(t, pki, peerAuthYAML("STRICT")+subsetsYAML("    tls: {mode: "+tc.tls+"}\n"))
			c := m.client(echoTarget, xdsClientCreds(t), pki.issue(t, "default", "client"))
			if !tc.want {
				if err := callOnce(c); err == nil {
					t.Fatal("a plaintext cluster must not reach a STRICT server")
				}
				return
			}
			untilOK(t, c)
			if got := srv.LastAuth(); got != "tls:spiffe://cluster.local/ns/default/sa/client" {
				t.Fatalf("client arrived as %v", got)
			}
		})
	}
}

func TestAuthorizationPolicyEnforcedByServerRBAC(t *testing.T) {
	pki := newTestPKI(t)
	type caller struct{ ns, sa string }
	friend, stranger := caller{"default", "client"}, caller{"other", "intruder"}
	for _, tc := range []struct {
		name    string
		policy  string
		allowed []caller
		denied  []caller
		method  string // "Unary" (default) or "Empty"
	}{
		{name: "ALLOW by principal", policy: `action: ALLOW
  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/client]}}]}]`,
			allowed: []caller{friend}, denied: []caller{stranger}},
		{name: "ALLOW by namespace", policy: `action: ALLOW
  rules: [{from: [{source: {namespaces: [other]}}]}]`,
			allowed: []caller{stranger}, denied: []caller{friend}},
		{name: "DENY by principal", policy: `action: DENY
  rules: [{from: [{source: {principals: [cluster.local/ns/other/sa/intruder]}}]}]`,
			allowed: []caller{friend}, denied: []caller{stranger}},
		{name: "DENY by path denies that method", policy: `action: DENY
  rules: [{to: [{operation: {paths: [/grpc.testing.TestService/EmptyCall]}}]}]`,
			denied: []caller{friend}, method: "Empty"},
		{name: "DENY by path leaves other paths", policy: `action: DENY
  rules: [{to: [{operation: {paths: [/grpc.testing.TestService/EmptyCall]}}]}]`,
			allowed: []caller{friend}},
		{name: "ALLOW by path prefix", policy: `action: ALLOW
  rules: [{to: [{operation: {paths: ["/grpc.testing.TestService/*"]}}]}]`,
			allowed: []caller{friend, stranger}},
		{name: "ALLOW by method GET denies gRPC POST", policy: `action: ALLOW
  rules: [{to: [{operation: {methods: [GET]}}]}]`,
			denied: []caller{friend}},
		{name: "ALLOW by method POST", policy: `action: ALLOW
  rules: [{to: [{operation: {methods: [POST]}}]}]`,
			allowed: []caller{friend}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := securedMesh(t, pki, peerAuthYAML("STRICT")+`---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo, namespace: default}
spec:
  selector: {matchLabels: {app: echo}}
  `+tc.policy+"\n")
			do := func(c testgrpc.TestServiceClient) error {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if tc.method == "Empty" {
					_, err := c.EmptyCall(ctx, &testgrpc.Empty{}, grpc.WaitForReady(true))
					return err
				}
				_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
				return err
			}
			for _, who := range tc.allowed {
				c := m.client(echoTarget, xdsClientCreds(t), pki.issue(t, who.ns, who.sa))
				if err := do(c); err != nil {
					t.Errorf("%s/%s must be allowed: %v", who.ns, who.sa, err)
				}
			}
			for _, who := range tc.denied {
				c := m.client(echoTarget, xdsClientCreds(t), pki.issue(t, who.ns, who.sa))
				if err := do(c); status.Code(err) != codes.PermissionDenied {
					t.Errorf("%s/%s must be denied with PermissionDenied, got %v", who.ns, who.sa, err)
				}
			}
		})
	}
}
