package app_test

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

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
		{"/", "<div id=\"app\""},
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
