package app_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshlens/meshlens/app"
	"github.com/meshlens/meshlens/app/apptest"
	"github.com/meshlens/meshlens/query/apidoc"
)

// Every route of the router `meshlens serve` runs is in query/openapi.yaml,
// the one API document the UI's types are generated from.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	s := apptest.Start(t)
	missing, err := apidoc.Undocumented("../query/openapi.yaml", s.App.Router())
	if err != nil {
		t.Fatal(err)
	}
	// Every other GET is the web app's (its client-side routes).
	missing = slices.DeleteFunc(missing, func(r string) bool { return r == "GET /*" })
	if len(missing) > 0 {
		t.Fatalf("routes missing from query/openapi.yaml: %v", missing)
	}
}

// The printed URL's page, health, metrics and the API answer from the one
// router; a mutation without the operator token is refused, with it it is
// accepted.
func TestAppServesTheUIAPIAndHealth(t *testing.T) {
	s := apptest.Start(t)
	for _, tc := range []struct {
		path, want string
	}{
		{"/", "<title>meshlens</title>"}, // the web app, or the page saying how to build it
		{"/healthz", "ok"},
		{"/readyz", "ready"},
		{"/metrics", "meshlens_"},
		{"/api/v1/config", "\"version\""},
	} {
		resp, err := http.Get(s.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), tc.want) {
			t.Errorf("GET %s: %d, want 200 with %q:\n%.300s", tc.path, resp.StatusCode, tc.want, body)
		}
	}
	const vs = `{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"r","namespace":"default"},"spec":{"hosts":["reviews"],"http":[{"route":[{"destination":{"host":"reviews"}}]}]}}`
	for _, tc := range []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {s.Token(t), http.StatusOK}} {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/api/v1/config", strings.NewReader(vs))
		req.Header.Set("Content-Type", "application/json")
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("POST /api/v1/config with token %t: %d, want %d: %s", tc.token != "", resp.StatusCode, tc.want, body)
		}
	}
	if got := s.App.ConfigStore().Snapshot().Get("VirtualService", "default", "r"); got == nil {
		t.Error("the accepted VirtualService is not in the config store")
	}
}

// A RequestAuthentication's key set is fetched by meshlens (as istiod does)
// once the object is accepted; --mesh-config's providers are loaded, and a
// bad file is refused naming the flag.
func TestServeFetchesJWKSAndReadsTheMeshConfig(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	set := fmt.Sprintf(`{"keys":[{"kty":"RSA","kid":"k1","alg":"RS256","use":"sig","n":%q,"e":%q}]}`,
		b64(key.N.Bytes()), b64(big.NewInt(int64(key.E)).Bytes()))
	var fetched atomic.Int64
	issuer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetched.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, set)
	}))
	defer issuer.Close()

	s := apptest.Start(t, "--mesh-config", "../examples/meshconfig/extension-providers.yaml")
	ra := fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules: [{issuer: "https://issuer.test", jwksUri: %q}]
`, issuer.URL+"/jwks.json")
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/api/v1/config", strings.NewReader(ra))
	req.Header.Set("Content-Type", "application/yaml")
	req.Header.Set("Authorization", "Bearer "+s.Token(t))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("apply RequestAuthentication: %d %s", resp.StatusCode, body)
	}
	const series = `meshlens_jwks_fetches_total{result="ok"}`
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(get(t, s.URL+"/metrics"), series+" 1"); {
		if time.Now().After(deadline) {
			t.Fatalf("the issuer's key set was not fetched (%d requests to it); /metrics has no %s 1", fetched.Load(), series)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// CUSTOM policies are analysed against --mesh-config's providers: the
	// example's are defined, another name is warned about.
	example, err := os.ReadFile("../examples/istio/authorizationpolicy-custom.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if w := applyWarnings(t, s, string(example)); strings.Contains(w, "extension provider") {
		t.Errorf("the example's providers are in --mesh-config, yet: %s", w)
	}
	unknown := `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: opa, namespace: default}
spec: {action: CUSTOM, provider: {name: opa}, rules: [{}]}
`
	if w := applyWarnings(t, s, unknown); !strings.Contains(w, `extension provider \"opa\" is not in --mesh-config's extensionProviders`) {
		t.Errorf("a CUSTOM policy naming an undefined provider: warnings %s", w)
	}

	// The proxies' TLS to meshlens' receivers means nothing without TLS.
	if _, err := app.LoadConfig([]string{"--proxy-receiver-ca", "/etc/ca.pem"}, io.Discard); err == nil || !strings.Contains(err.Error(), "--proxy-receiver-ca") {
		t.Errorf("--proxy-receiver-ca without --tls-cert: %v", err)
	}

	bad := filepath.Join(t.TempDir(), "mesh.yaml")
	if err := os.WriteFile(bad, []byte("extensionProviders:\n- name: authz\n  envoyExtAuthzHttp: {port: 9000}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := app.LoadConfig([]string{"--mesh-config", bad, "--data-dir", t.TempDir(), "--kubeconfig", "none",
		"--clickhouse", "clickhouse://127.0.0.1:1/x", "--clickhouse-wait", "1ms"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		a.Close()
		t.Fatal("a MeshConfig provider without a service was accepted")
	}
	if !strings.Contains(err.Error(), "--mesh-config "+bad) || !strings.Contains(err.Error(), "service") {
		t.Fatalf("error %q does not name --mesh-config, the file and the missing service", err)
	}
}

// applyWarnings applies YAML as the operator and returns the answer's
// warnings, as JSON.
func applyWarnings(t *testing.T, s *apptest.Server, yaml string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/api/v1/config", strings.NewReader(yaml))
	req.Header.Set("Content-Type", "application/yaml")
	req.Header.Set("Authorization", "Bearer "+s.Token(t))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Warnings json.RawMessage `json:"warnings"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("apply: %d %v", resp.StatusCode, err)
	}
	return string(out.Warnings)
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}
