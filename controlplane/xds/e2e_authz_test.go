package xds

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// AuthorizationPolicy `when` conditions, request principals and the AUDIT
// and CUSTOM actions, enforced by a grpc-go xDS server's RBAC: a header
// condition allows only the callers that send it; an ALLOW by request
// principal cannot be evaluated without JWT authentication and allows
// nothing (fails closed); AUDIT decides nothing; CUSTOM, with no ext_authz
// provider, denies what its rules match.
func TestAuthorizationPolicyConditionsAndActionsOnGRPCServer(t *testing.T) {
	pki := newTestPKI(t)
	for _, tc := range []struct {
		name    string
		policy  string
		allowed [][]string // metadata of calls that must succeed
		denied  [][]string
	}{
		{name: "ALLOW when request header", policy: `action: ALLOW
  rules: [{when: [{key: "request.headers[x-user]", values: [alice]}]}]`,
			allowed: [][]string{{"x-user", "alice"}}, denied: [][]string{{"x-user", "bob"}, nil}},
		{name: "ALLOW when header notValues", policy: `action: ALLOW
  rules: [{when: [{key: "request.headers[x-user]", notValues: [bob]}]}]`,
			allowed: [][]string{{"x-user", "alice"}}, denied: [][]string{{"x-user", "bob"}}},
		{name: "DENY when source namespace and header", policy: `action: DENY
  rules: [{when: [{key: source.namespace, values: [default]}, {key: "request.headers[x-debug]", values: ["1"]}]}]`,
			allowed: [][]string{nil, {"x-debug", "0"}}, denied: [][]string{{"x-debug", "1"}}},
		{name: "ALLOW by request principal fails closed", policy: `action: ALLOW
  rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]`,
			denied: [][]string{nil, {"authorization", "Bearer x"}}},
		{name: "AUDIT decides nothing", policy: `action: AUDIT
  rules: [{}]`,
			allowed: [][]string{nil}},
		{name: "CUSTOM without a provider denies what it matches", policy: `action: CUSTOM
  provider: {name: opa}
  rules: [{when: [{key: "request.headers[x-user]", values: [mallory]}]}]`,
			allowed: [][]string{{"x-user", "alice"}}, denied: [][]string{{"x-user", "mallory"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := securedMesh(t, pki, peerAuthYAML("STRICT")+`---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo, namespace: default}
spec:
  selector: {matchLabels: {app: echo}}
  `+tc.policy+"\n")
			c := m.client(echoTarget, xdsClientCreds(t), pki.issue(t, "default", "client"))
			do := func(c testgrpc.TestServiceClient, md []string) error {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if len(md) > 0 {
					ctx = metadata.AppendToOutgoingContext(ctx, md...)
				}
				_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
				return err
			}
			for _, md := range tc.allowed {
				if err := do(c, md); err != nil {
					t.Errorf("a call with %v must be allowed: %v", md, err)
				}
			}
			for _, md := range tc.denied {
				if err := do(c, md); status.Code(err) != codes.PermissionDenied {
					t.Errorf("a call with %v must be denied with PermissionDenied, got %v", md, err)
				}
			}
		})
	}
}
