package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/meshlens/meshlens/app/apptest"
	"github.com/meshlens/meshlens/controlplane/config"
)

// configServer is a whole meshlens (package app, as `meshlens serve` builds
// it) with its generated operator token in dataDir and reads open
// (loopback); store is its accepted config.
func configServer(t *testing.T) (url, dataDir string, store *config.Store) {
	t.Helper()
	s := apptest.Start(t)
	return s.URL, s.Config.DataDir, s.App.ConfigStore()
}

func run(t *testing.T, fn func(context.Context, []string, io.Writer, io.Writer) error, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := fn(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func examplesDir() string { return filepath.Join("..", "..", "examples", "istio") }

func TestCLIApplyGetDeleteAgainstServer(t *testing.T) {
	t.Setenv("MESHLENS_TOKEN", "")
	t.Setenv("MESHLENS_SERVER", "")
	url, dataDir, store := configServer(t)
	common := []string{"--server", url, "--data-dir", dataDir}

	// A directory is one batch: the files' references resolve together.
	out, stderr, err := run(t, runApply, append([]string{"-f", examplesDir(), "--dry-run"}, common...)...)
	if err != nil || !strings.Contains(out, "VirtualService/bookinfo/reviews valid (dry run)") || store.Snapshot().Version != 0 {
		t.Fatalf("apply --dry-run: %v (version %d)\n%s%s", err, store.Snapshot().Version, out, stderr)
	}
	out, stderr, err = run(t, runApply, append([]string{"-f", examplesDir()}, common...)...)
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, stderr)
	}
	if !strings.Contains(out, "VirtualService/bookinfo/reviews applied") || !strings.Contains(out, "config version 1") {
		t.Fatalf("apply output:\n%s", out)
	}

	out, _, err = run(t, runGet, append([]string{"vs", "-n", "bookinfo"}, common...)...)
	if err != nil || !strings.Contains(out, "VirtualService  bookinfo   reviews      api") || !strings.Contains(out, "SOURCE") {
		t.Fatalf("get vs: %v\n%s", err, out)
	}
	// -o yaml output is config that applies again, unchanged.
	out, _, err = run(t, runGet, append([]string{"virtualservice", "reviews", "-n", "bookinfo", "-o", "yaml"}, common...)...)
	if err != nil || !strings.Contains(out, "weight: 80") {
		t.Fatalf("get -o yaml: %v\n%s", err, out)
	}
	f := filepath.Join(t.TempDir(), "reviews.yaml")
	if err := os.WriteFile(f, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := run(t, runApply, append([]string{"-f", f}, common...)...); err != nil {
		t.Fatalf("re-apply get output: %v\n%s", err, stderr)
	}
	if v := store.Snapshot().Version; v != 1 {
		t.Fatalf("re-applying unchanged config made version %d", v)
	}

	// Invalid config: field errors on stderr, nothing applied.
	bad := strings.Replace(out, "weight: 80", "weight: 70", 1)
	if err := os.WriteFile(f, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err = run(t, runApply, append([]string{"-f", f}, common...)...)
	if !errors.Is(err, errInvalid) || !strings.Contains(stderr, "VirtualService/bookinfo/reviews http[1].route[1].weight: weights of http[1].route sum to 90, want 100") {
		t.Fatalf("invalid apply: err %v, stderr:\n%s", err, stderr)
	}

	out, _, err = run(t, runDelete, append([]string{"vs", "ratings", "-n", "bookinfo"}, common...)...)
	if err != nil || !strings.Contains(out, "VirtualService/bookinfo/ratings deleted") {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	_, _, err = run(t, runGet, append([]string{"vs", "ratings", "-n", "bookinfo"}, common...)...)
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("get deleted object: %v", err)
	}
}

func TestCLIWithoutTokenSaysWhatToDo(t *testing.T) {
	t.Setenv("MESHLENS_TOKEN", "")
	url, _, _ := configServer(t)
	_, _, err := run(t, runApply, "-f", filepath.Join(examplesDir(), "serviceentry.yaml"), "--server", url, "--data-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "--token") {
		t.Fatalf("err = %v, want a 401 that mentions --token", err)
	}
	_, _, err = run(t, runGet, "all", "--server", "http://127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "is `meshlens serve` running?") {
		t.Fatalf("unreachable server: err = %v", err)
	}
}

func TestCLIValidateOffline(t *testing.T) {
	out, _, err := run(t, runValidate, "-f", examplesDir())
	files, _ := filepath.Glob(filepath.Join(examplesDir(), "*.yaml"))
	ok := regexp.MustCompile(fmt.Sprintf(`No validation issues found in \d+ objects \(%d files\)`, len(files)))
	if err != nil || len(files) == 0 || !ok.MatchString(out) {
		t.Fatalf("validate examples: %v\n%s\nwant every one of the %d files valid", err, out, len(files))
	}
	// Routes to services the files do not define (Kubernetes Services,
	// say) are analysis warnings, as in Istio: printed with their code,
	// file, object and field, exit 0; --strict makes them fail.
	vs := filepath.Join(examplesDir(), "virtualservice.yaml")
	out, _, err = run(t, runValidate, "-f", vs)
	if err != nil {
		t.Fatalf("validate lone VirtualService: err = %v\n%s", err, out)
	}
	want := "Warning [IST0101] [" + vs + "] VirtualService/bookinfo/details http[0].route[0].destination.host: Referenced host not found: \"details.bookinfo.svc.cluster.local\""
	if !strings.Contains(out, want) || !strings.Contains(out, "No errors in 4 objects (1 files); 9 analysis warnings.") {
		t.Fatalf("output lacks %q and the summary:\n%s", want, out)
	}
	if _, _, err = run(t, runValidate, "-f", vs, "--strict"); !errors.Is(err, errWarnings) {
		t.Fatalf("validate --strict with warnings: err = %v, want errWarnings", err)
	}
	broken := filepath.Join(t.TempDir(), "broken.yaml")
	if err := os.WriteFile(broken, []byte("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: x}\nspec: {mtls: {mode: STRICTER}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err = run(t, runValidate, "-f", broken)
	if !errors.Is(err, errInvalid) || !strings.Contains(out, "Error ["+broken+"] PeerAuthentication/default/x mtls.mode: invalid value \"STRICTER\"") {
		t.Fatalf("validate broken: %v\n%s", err, out)
	}
}

func TestCLIValidateReadsStdin(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdin
	os.Stdin = r
	t.Cleanup(func() { os.Stdin = old; r.Close() })
	go func() {
		data, _ := os.ReadFile(filepath.Join(examplesDir(), "serviceentry.yaml"))
		w.Write(data)
		w.Close()
	}()
	out, _, err := run(t, runValidate, "-f", "-")
	if err != nil || !strings.Contains(out, "No validation issues found in 4 objects (1 files)") {
		t.Fatalf("validate stdin: %v\n%s", err, out)
	}
}

// `meshlens get` shows an AlertRule's webhook secret as <redacted>, and
// applying that output again keeps the real secret.
func TestCLIGetHidesAlertRuleSecretAndReapplyKeepsIt(t *testing.T) {
	t.Setenv("MESHLENS_TOKEN", "")
	t.Setenv("MESHLENS_SERVER", "")
	url, dataDir, store := configServer(t)
	common := []string{"--server", url, "--data-dir", dataDir}
	const secret = "cli-hmac-secret-5b2d"
	f := filepath.Join(t.TempDir(), "rule.yaml")
	rule := `apiVersion: meshlens.io/v1alpha1
kind: AlertRule
metadata: {name: slow, namespace: default}
spec:
  condition: {metric: latencyP99, service: echo, threshold: 250}
  receivers: [{name: ops, url: "http://127.0.0.1:9095/hook", secret: ` + secret + `}]
`
	if err := os.WriteFile(f, []byte(rule), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := run(t, runApply, append([]string{"-f", f}, common...)...); err != nil {
		t.Fatalf("apply: %v\n%s", err, stderr)
	}
	version := store.Snapshot().Version
	for _, args := range [][]string{{"ar", "slow", "-o", "yaml"}, {"alertrules", "-o", "json"}, {"all", "-o", "yaml"}} {
		out, _, err := run(t, runGet, append(args, common...)...)
		// JSON output escapes < and > as the API wrote them.
		shown := strings.Contains(out, config.Redacted) || strings.Contains(out, `"\u003credacted\u003e"`)
		if err != nil || strings.Contains(out, secret) || !shown {
			t.Fatalf("get %v: %v\n%s", args, err, out)
		}
		if args[0] == "ar" {
			if err := os.WriteFile(f, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, stderr, err := run(t, runApply, append([]string{"-f", f}, common...)...); err != nil {
		t.Fatalf("re-apply get output: %v\n%s", err, stderr)
	}
	o := store.Snapshot().Get("AlertRule", "default", "slow")
	if store.Snapshot().Version != version || !strings.Contains(mustJSON(t, o), secret) {
		t.Fatalf("re-applying the redacted rule changed it (version %d -> %d): %s", version, store.Snapshot().Version, mustJSON(t, o))
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A file mixing a served kind with EnvoyFilter, WasmPlugin and ProxyConfig
// is refused whole, each unsupported kind named; --skip-unsupported applies
// the rest and lists what it skipped.
func TestCLIApplySkipUnsupportedListsSkippedKinds(t *testing.T) {
	t.Setenv("MESHLENS_TOKEN", "")
	t.Setenv("MESHLENS_SERVER", "")
	url, dataDir, store := configServer(t)
	common := []string{"--server", url, "--data-dir", dataDir}
	file := filepath.Join("..", "..", "examples", "unsupported", "mixed-kinds.yaml")

	_, stderr, err := run(t, runApply, append([]string{"-f", file}, common...)...)
	if !errors.Is(err, errInvalid) {
		t.Fatalf("apply without --skip-unsupported: err %v, want invalid\n%s", err, stderr)
	}
	for _, kind := range []string{"EnvoyFilter", "WasmPlugin", "ProxyConfig"} {
		if want := `unsupported kind "` + kind + `": meshlens does not support ` + kind; !strings.Contains(stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr)
		}
	}
	if v := store.Snapshot().Version; v != 0 {
		t.Fatalf("a refused file changed the config (version %d)", v)
	}

	out, stderr, err := run(t, runApply, append([]string{"-f", file, "--skip-unsupported", "--dry-run"}, common...)...)
	if err != nil || !strings.Contains(out, "ServiceEntry/default/httpbin valid (dry run)") || store.Snapshot().Version != 0 {
		t.Fatalf("apply --skip-unsupported --dry-run: %v (version %d)\n%s%s", err, store.Snapshot().Version, out, stderr)
	}
	out, stderr, err = run(t, runApply, append([]string{"-f", file, "--skip-unsupported"}, common...)...)
	if err != nil {
		t.Fatalf("apply --skip-unsupported: %v\n%s", err, stderr)
	}
	for _, want := range []string{
		"ServiceEntry/default/httpbin applied",
		"EnvoyFilter/default/add-header skipped: meshlens does not support kind EnvoyFilter",
		"WasmPlugin/default/basic-auth skipped: meshlens does not support kind WasmPlugin",
		"ProxyConfig/default/concurrency skipped: meshlens does not support kind ProxyConfig",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if objs := store.Snapshot().Objects; len(objs) != 1 || objs[0].Key() != "ServiceEntry/default/httpbin" {
		t.Fatalf("stored %v, want only the ServiceEntry", objs)
	}

	// A kind that differs from a served one only in case is a typo, not
	// another product's kind: still refused.
	typo := filepath.Join(t.TempDir(), "typo.yaml")
	if err := os.WriteFile(typo, []byte("apiVersion: networking.istio.io/v1\nkind: virtualservice\nmetadata: {name: x}\nspec: {hosts: [x]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err = run(t, runApply, append([]string{"-f", typo, "--skip-unsupported"}, common...)...)
	if !errors.Is(err, errInvalid) || !strings.Contains(stderr, "did you mean VirtualService?") {
		t.Fatalf("typo with --skip-unsupported: err %v\n%s", err, stderr)
	}
}
