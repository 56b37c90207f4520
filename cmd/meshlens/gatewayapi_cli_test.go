package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Gateway API objects through the CLI and REST API as users handle them:
// applied from examples/gateway-api, listed by their kubectl names
// (httproute, grpcroute, gatewayclass/gc, referencegrant/refgrant; gtw or
// gateway.gateway.networking.k8s.io beside
// Istio's gateway), shown as "kind: Gateway" of their group, re-applied
// unchanged, deleted.
func TestCLIGatewayAPIKindsApplyGetDelete(t *testing.T) {
	t.Setenv("MESHLENS_TOKEN", "")
	t.Setenv("MESHLENS_SERVER", "")
	url, dataDir, store := configServer(t)
	common := []string{"--server", url, "--data-dir", dataDir}
	dir := filepath.Join("..", "..", "examples", "gateway-api")

	out, stderr, err := run(t, runApply, append([]string{"-f", dir}, common...)...)
	if err != nil || !strings.Contains(out, "HTTPRoute/store/cart applied") || !strings.Contains(out, "GRPCRoute/store/pricing applied") ||
		!strings.Contains(out, "Gateway.gateway.networking.k8s.io/store/store applied") || !strings.Contains(out, "GatewayClass/default/meshlens applied") ||
		!strings.Contains(out, "ReferenceGrant/payments/store-routes applied") {
		t.Fatalf("apply: %v\n%s%s", err, out, stderr)
	}
	for _, name := range []string{"httproute", "httproutes", "grpcroute", "gtw", "gateway.gateway.networking.k8s.io", "gateways.gateway.networking.k8s.io"} {
		out, _, err := run(t, runGet, append([]string{name, "-n", "store"}, common...)...)
		if err != nil || strings.Count(out, "\n") < 2 {
			t.Fatalf("get %s: %v\n%s", name, err, out)
		}
	}
	for _, q := range [][]string{{"gatewayclasses"}, {"gc", "meshlens"}, {"referencegrants", "-n", "payments"}, {"refgrant", "store-routes", "-n", "payments"}} {
		out, _, err := run(t, runGet, append(q, common...)...)
		if err != nil || (!strings.Contains(out, "meshlens") && !strings.Contains(out, "store-routes")) {
			t.Fatalf("get %v: %v\n%s", q, err, out)
		}
	}
	// Istio's Gateway kind stays Istio's: none in namespace store.
	if out, _, err := run(t, runGet, append([]string{"gw", "-n", "store"}, common...)...); err != nil || strings.Contains(out, "store ") {
		t.Fatalf("get gw (Istio's) -n store: %v\n%s", err, out)
	}

	out, _, err = run(t, runGet, append([]string{"gtw", "store", "-n", "store", "-o", "yaml"}, common...)...)
	if err != nil || !strings.Contains(out, "kind: Gateway\n") || !strings.Contains(out, "apiVersion: gateway.networking.k8s.io/v1") || !strings.Contains(out, "name: store-cert") {
		t.Fatalf("get gtw -o yaml: %v\n%s", err, out)
	}
	f := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(f, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	v := store.Snapshot().Version
	if _, stderr, err := run(t, runApply, append([]string{"-f", f}, common...)...); err != nil {
		t.Fatalf("re-apply get output: %v\n%s", err, stderr)
	}
	if store.Snapshot().Version != v {
		t.Fatalf("re-applying the unchanged Gateway made a new config version")
	}

	// A broken route is refused naming the field.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: bad, namespace: store}\nspec:\n  parentRefs: [{name: store}]\n  rules: [{backendRefs: [{name: cart}]}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := run(t, runApply, append([]string{"-f", bad}, common...)...); err == nil || !strings.Contains(stderr, "HTTPRoute/store/bad rules[0].backendRefs[0].port: required for a Service backend") {
		t.Fatalf("invalid route: err %v, stderr:\n%s", err, stderr)
	}

	out, _, err = run(t, runDelete, append([]string{"gateway.gateway.networking.k8s.io", "store", "-n", "store"}, common...)...)
	if err != nil || !strings.Contains(out, "Gateway.gateway.networking.k8s.io/store/store deleted") {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	if _, ok := store.Get("gtw", "store", "store"); ok {
		t.Fatal("the Gateway is still in the store")
	}
}
