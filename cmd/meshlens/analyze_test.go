package main

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func bookinfoSamples(names ...string) []string {
	var args []string
	for _, n := range names {
		args = append(args, "-f", filepath.Join("..", "..", "controlplane", "config", "testdata", "conformance", "bookinfo", n))
	}
	return args
}

// Istio's own Bookinfo routing files: their hosts are Kubernetes Services,
// so offline they are analysis warnings, not errors.
func TestCLIValidateAcceptsIstioBookinfoWithWarnings(t *testing.T) {
	out, _, err := run(t, runValidate, bookinfoSamples("destination-rule-all.yaml", "virtual-service-reviews-90-10.yaml")...)
	if err != nil {
		t.Fatalf("validate: %v\n%s", err, out)
	}
	for _, want := range []string{
		"Warning [IST0174]", // DestinationRule for a host nothing defines
		"Warning [IST0101]", // route to it
		"No errors in 5 objects (2 files);",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
	// Bookinfo's gateway file (a Gateway and a VirtualService bound to
	// it) is accepted; its route to productpage, a Kubernetes Service, is
	// a warning offline.
	out, _, err = run(t, runValidate, bookinfoSamples("bookinfo-gateway.yaml")...)
	if err != nil || !strings.Contains(out, "No errors in 2 objects (1 files); 1 analysis warnings.") || !strings.Contains(out, "Warning [IST0101]") {
		t.Fatalf("validate of bookinfo-gateway.yaml: %v\n%s", err, out)
	}
	// EnvoyFilter is valid Istio config that meshlens does not serve.
	out, _, err = run(t, runValidate, "-f", filepath.Join("..", "..", "examples", "unsupported", "mixed-kinds.yaml"))
	if !errors.Is(err, errInvalid) || !strings.Contains(out, `unsupported kind "EnvoyFilter"`) {
		t.Fatalf("validate of an EnvoyFilter: %v\n%s", err, out)
	}
}

// `meshlens analyze` lists the findings of files offline, or of the
// running config through GET /api/v1/analysis; --strict fails on them.
func TestCLIAnalyzeFilesAndServer(t *testing.T) {
	t.Setenv("MESHLENS_TOKEN", "")
	t.Setenv("MESHLENS_SERVER", "")
	files := bookinfoSamples("virtual-service-reviews-90-10.yaml")
	out, _, err := run(t, runAnalyze, files...)
	if err != nil || !strings.Contains(out, "Warning [IST0101]") || !strings.Contains(out, "2 analysis findings in 1 objects (1 files).") {
		t.Fatalf("analyze -f: %v\n%s", err, out)
	}
	if _, _, err := run(t, runAnalyze, append(files, "--strict")...); !errors.Is(err, errWarnings) {
		t.Fatalf("analyze --strict: err = %v", err)
	}

	url, dataDir, store := configServer(t)
	common := []string{"--server", url, "--data-dir", dataDir}
	out, _, err = run(t, runAnalyze, common...)
	if err != nil || !strings.Contains(out, "No analysis findings in the running config (version 0).") {
		t.Fatalf("analyze an empty server: %v\n%s", err, out)
	}
	// apply accepts the route, prints its warnings, and says it applied.
	out, stderr, err := run(t, runApply, append(files, common...)...)
	if err != nil || !strings.Contains(out, "VirtualService/default/reviews applied") || !strings.Contains(stderr, "Warning [IST0101] VirtualService/default/reviews http[0].route[0].destination.host") {
		t.Fatalf("apply: %v\n%s%s", err, out, stderr)
	}
	out, _, err = run(t, runAnalyze, common...)
	if err != nil || !strings.Contains(out, "2 analysis findings in the running config (version 1).") || store.Snapshot().Version != 1 {
		t.Fatalf("analyze the server: %v\n%s", err, out)
	}
}
