package config

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// exampleFiles are the Istio examples in dependency order: a file's
// references resolve against the files before it.
var exampleFiles = []string{
	"serviceentry.yaml", "workloadentry.yaml", "destinationrule.yaml",
	"virtualservice.yaml", "peerauthentication.yaml", "authorizationpolicy.yaml", "authorizationpolicy-custom.yaml", "gateway.yaml", "sidecar.yaml", "requestauthentication.yaml", "workloadgroup.yaml", "telemetry.yaml",
	"../gateway-api/services.yaml", "../gateway-api/gatewayclass.yaml", "../gateway-api/referencegrant.yaml", "../gateway-api/gateway.yaml", "../gateway-api/httproute.yaml", "../gateway-api/grpcroute.yaml",
}

func testKinds(t testing.TB) *Kinds {
	t.Helper()
	k, err := NewKinds(IstioKinds(IstioOptions{})...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func readExample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "istio", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func openStore(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, testKinds(t), testLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
