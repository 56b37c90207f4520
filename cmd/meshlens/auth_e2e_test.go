package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshlens/meshlens/store/storetest"
)

// TestEveryMutatingRouteNeedsAnOperatorToken drives the real server with no
// token, an unknown token, a viewer's and an operator's, on every route that
// changes something; reads stay open on a loopback listener.
func TestEveryMutatingRouteNeedsAnOperatorToken(t *testing.T) {
	const viewer, operator = "viewer-token-0123456789abcdef", "operator-token-0123456789abcdef"
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("# role per token\n"+viewer+" viewer\n"+operator+" operator\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startMeshlens(t, "--tokens", tokens, "--data-dir", t.TempDir(), "--clickhouse", storetest.DSN(t))

	do := func(method, path, token, body string) int {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+p.http+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("Content-Type", "application/yaml")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	mutating := []struct{ method, path, body string }{
		{"POST", "/api/v1/config", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: x}\nspec: {hosts: [x.example.com], ports: [{number: 80, name: http, protocol: HTTP}]}\n"},
		{"DELETE", "/api/v1/config/ServiceEntry/default/x", ""},
		{"POST", "/api/v1/rollouts", "apiVersion: meshlens.io/v1alpha1\nkind: Rollout\nmetadata: {name: r}\nspec: {}\n"},
		{"POST", "/api/v1/rollouts/default/r/pause", ""},
		{"POST", "/api/v1/rollouts/default/r/resume", ""},
		{"POST", "/api/v1/rollouts/default/r/promote", ""},
		{"POST", "/api/v1/rollouts/default/r/abort", ""},
		{"POST", "/api/v1/alerts/alertmanager", `{"version":"4","status":"firing","alerts":[]}`},
		{"POST", "/api/v1/views", `{"name": "auth check"}`},
		{"PUT", "/api/v1/views/auth%20check", `{"graph": "service"}`},
		{"DELETE", "/api/v1/views/auth%20check", ""},
	}
	for _, r := range mutating {
		for _, tc := range []struct {
			who, token string
			want       func(int) bool
		}{
			{"no token", "", func(c int) bool { return c == http.StatusUnauthorized }},
			{"unknown token", "not-a-token-at-all-0123456789", func(c int) bool { return c == http.StatusUnauthorized }},
			{"viewer", viewer, func(c int) bool { return c == http.StatusForbidden }},
			{"operator", operator, func(c int) bool { return c != http.StatusUnauthorized && c != http.StatusForbidden }},
		} {
			if got := do(r.method, r.path, tc.token, r.body); !tc.want(got) {
				t.Errorf("%s %s with %s: %d", r.method, r.path, tc.who, got)
			}
		}
	}
	for _, path := range []string{"/api/v1/graph", "/api/v1/config", "/api/v1/rollouts", "/api/v1/alerts", "/api/v1/proxies", "/api/v1/services", "/api/v1/views"} {
		if got := do("GET", path, "", ""); got != http.StatusOK {
			t.Errorf("GET %s without a token on loopback: %d, want 200", path, got)
		}
		if got := do("GET", path, "not-a-token-at-all-0123456789", ""); got != http.StatusUnauthorized {
			t.Errorf("GET %s with an unknown token: %d, want 401", path, got)
		}
	}
}
