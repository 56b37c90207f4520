package views_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/internal/chcluster"
	"github.com/meshlens/meshlens/query/apidoc"
	"github.com/meshlens/meshlens/store"
	"github.com/meshlens/meshlens/store/storetest"
	"github.com/meshlens/meshlens/views"
)

// The tests run on one server and on the cluster; Main stops the cluster if
// they started it.
func TestMain(m *testing.M) { os.Exit(chcluster.Main(m)) }

const (
	operatorToken = "operator-token-0123456789"
	viewerToken   = "viewer-token-0123456789ab"
)

// serve mounts the views API as serve does: reads need a token (as on a
// non-loopback address), changes an operator token.
func serve(t *testing.T, st *store.Store) *httptest.Server {
	t.Helper()
	authz := auth.New([]auth.Token{{Value: operatorToken, Role: auth.Operator}, {Value: viewerToken, Role: auth.Viewer}})
	e := echo.New()
	api := e.Group("/api/v1", authz.Viewer(true))
	views.New(st, nil).RegisterRoutes(api, authz.Operator())
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv
}

type answer struct {
	status int
	body   map[string]any
}

func call(t *testing.T, srv *httptest.Server, method, path, token, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+"/api/v1"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: resp.StatusCode}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			t.Fatalf("%s %s: answer is not a JSON object: %v: %s", method, path, err, raw)
		}
	}
	return a
}

const checkout = `{
  "name": "checkout team",
  "graph": "workload",
  "namespace": "shop",
  "window": "15m",
  "filters": {"search": "cart"},
  "groupBy": "label:app.kubernetes.io/part-of",
  "collapsed": ["payments"],
  "pinned": {"shop/cart/v1": {"x": 120.5, "y": -40}, "shop/gone/v9": {"x": 10, "y": 10}},
  "selected": "shop/cart/v1"
}`

func TestSavedViewsCRUD(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			st := b.Open(t)
			srv := serve(t, st)

			if a := call(t, srv, "GET", "/views", viewerToken, ""); a.status != 200 || len(a.body["views"].([]any)) != 0 {
				t.Fatalf("list before any save: %d %v, want 200 and no views", a.status, a.body)
			}
			a := call(t, srv, "POST", "/views", operatorToken, checkout)
			if a.status != http.StatusCreated {
				t.Fatalf("create: %d %v, want 201", a.status, a.body)
			}
			if !strings.HasPrefix(a.body["owner"].(string), "token:") || !strings.HasSuffix(a.body["owner"].(string), "(operator)") {
				t.Fatalf("owner %q: want the operator token's fingerprint", a.body["owner"])
			}
			// A second store on the same database is another replica: it
			// reads the view the first one saved.
			other := serve(t, storetest.Reopen(t, st))
			got := call(t, other, "GET", "/views/checkout%20team", viewerToken, "")
			if got.status != 200 {
				t.Fatalf("get from another replica: %d %v", got.status, got.body)
			}
			pinned := got.body["pinned"].(map[string]any)
			if p := pinned["shop/cart/v1"].(map[string]any); p["x"] != 120.5 || p["y"] != -40.0 {
				t.Fatalf("pinned position of shop/cart/v1 = %v, want (120.5, -40)", p)
			}
			if got.body["groupBy"] != "label:app.kubernetes.io/part-of" || got.body["graph"] != "workload" || got.body["window"] != "15m" ||
				got.body["selected"] != "shop/cart/v1" || got.body["filters"].(map[string]any)["search"] != "cart" {
				t.Fatalf("view read back differs from the one saved: %v", got.body)
			}

			if a := call(t, srv, "POST", "/views", operatorToken, checkout); a.status != http.StatusConflict || a.body["field"] != "name" {
				t.Fatalf("create again: %d %v, want 409 naming the name", a.status, a.body)
			}
			replaced := strings.Replace(checkout, `"window": "15m"`, `"window": "1h"`, 1)
			if a := call(t, srv, "PUT", "/views/checkout%20team", operatorToken, replaced); a.status != 200 || a.body["window"] != "1h" {
				t.Fatalf("replace: %d %v, want 200 with window 1h", a.status, a.body)
			}
			if a := call(t, other, "GET", "/views/checkout%20team", viewerToken, ""); a.body["window"] != "1h" {
				t.Fatalf("after replace, window %v, want 1h", a.body["window"])
			}
			if a := call(t, srv, "PUT", "/views/ops", operatorToken, `{"graph": "service"}`); a.status != http.StatusCreated || a.body["name"] != "ops" || a.body["window"] != "5m" {
				t.Fatalf("PUT of a new view named by its path: %d %v, want 201, name ops, default window 5m", a.status, a.body)
			}
			list := call(t, other, "GET", "/views", viewerToken, "")
			var names []string
			for _, v := range list.body["views"].([]any) {
				names = append(names, v.(map[string]any)["name"].(string))
			}
			if strings.Join(names, ",") != "checkout team,ops" {
				t.Fatalf("list = %v, want [checkout team ops]", names)
			}

			if a := call(t, srv, "DELETE", "/views/ops", operatorToken, ""); a.status != http.StatusNoContent {
				t.Fatalf("delete: %d %v, want 204", a.status, a.body)
			}
			if a := call(t, other, "GET", "/views/ops", viewerToken, ""); a.status != http.StatusNotFound {
				t.Fatalf("get after delete: %d %v, want 404", a.status, a.body)
			}
			if a := call(t, srv, "DELETE", "/views/ops", operatorToken, ""); a.status != http.StatusNotFound {
				t.Fatalf("delete again: %d %v, want 404", a.status, a.body)
			}
			// A deleted name can be saved again.
			if a := call(t, srv, "POST", "/views", operatorToken, `{"name": "ops"}`); a.status != http.StatusCreated {
				t.Fatalf("create after delete: %d %v, want 201", a.status, a.body)
			}
		})
	}
}

func TestSavedViewsNeedTheOperatorRoleToChange(t *testing.T) {
	srv := serve(t, storetest.Open(t))
	for _, c := range []struct {
		method, path, token, body string
		want                      int
	}{
		{"POST", "/views", "", checkout, http.StatusUnauthorized},
		{"POST", "/views", viewerToken, checkout, http.StatusForbidden},
		{"PUT", "/views/checkout%20team", viewerToken, checkout, http.StatusForbidden},
		{"PUT", "/views/checkout%20team", "not-a-token-at-all-000", checkout, http.StatusUnauthorized},
		{"DELETE", "/views/checkout%20team", "", "", http.StatusUnauthorized},
		{"DELETE", "/views/checkout%20team", viewerToken, "", http.StatusForbidden},
		{"GET", "/views", "", "", http.StatusUnauthorized},
		{"GET", "/views/checkout%20team", "", "", http.StatusUnauthorized},
	} {
		if a := call(t, srv, c.method, c.path, c.token, c.body); a.status != c.want {
			t.Errorf("%s %s with token %q: %d %v, want %d", c.method, c.path, c.token, a.status, a.body, c.want)
		}
	}
	// Nothing was saved by the refused calls.
	if a := call(t, srv, "GET", "/views", viewerToken, ""); len(a.body["views"].([]any)) != 0 {
		t.Fatalf("views after refused saves: %v, want none", a.body["views"])
	}
}

func TestInvalidViewsAreRefusedNamingTheField(t *testing.T) {
	srv := serve(t, storetest.Open(t))
	for _, c := range []struct {
		name, path, body, field string
	}{
		{"not JSON", "/views", `{"name": "a",`, "body"},
		{"syntax error", "/views", `{"name": "a" "graph": "service"}`, "body"},
		{"empty body", "/views", ``, "body"},
		{"unknown field", "/views", `{"name": "a", "colour": "red"}`, "colour"},
		{"wrong type", "/views", `{"name": "a", "window": 5}`, "window"},
		{"wrong type nested", "/views", `{"name": "a", "pinned": {"x": {"x": "left"}}}`, "pinned.x"},
		{"no name", "/views", `{"graph": "service"}`, "name"},
		{"bad name", "/views", `{"name": "../etc"}`, "name"},
		{"bad graph", "/views", `{"name": "a", "graph": "pods"}`, "graph"},
		{"bad window", "/views", `{"name": "a", "window": "fortnight"}`, "window"},
		{"negative window", "/views", `{"name": "a", "window": "-5m"}`, "window"},
		{"bad end", "/views", `{"name": "a", "end": "yesterday"}`, "end"},
		{"bad source", "/views", `{"name": "a", "source": "graphite"}`, "source"},
		{"bad namespace", "/views", `{"name": "a", "namespace": "Shop_1"}`, "namespace"},
		{"bad grouping", "/views", `{"name": "a", "groupBy": "colour"}`, "groupBy"},
		{"bad label key", "/views", `{"name": "a", "groupBy": "label:-bad-"}`, "groupBy"},
		{"collapsed without grouping", "/views", `{"name": "a", "collapsed": ["x"]}`, "collapsed"},
		{"empty collapsed group", "/views", `{"name": "a", "groupBy": "app", "collapsed": [""]}`, "collapsed[0]"},
		{"position off the canvas", "/views", `{"name": "a", "pinned": {"shop/a/v1": {"x": 1e12, "y": 0}}}`, "pinned[shop/a/v1]"},
		{"path and body disagree", "/views/a", `{"name": "b"}`, "name"},
		{"bad name in path", "/views/%20a", `{}`, "name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			method := "POST"
			if c.path != "/views" {
				method = "PUT"
			}
			a := call(t, srv, method, c.path, operatorToken, c.body)
			if a.status != http.StatusBadRequest || a.body["field"] != c.field {
				t.Fatalf("%s %s %s: %d %v, want 400 naming field %q", method, c.path, c.body, a.status, a.body, c.field)
			}
			if msg, _ := a.body["error"].(string); !strings.HasPrefix(msg, c.field+": ") {
				t.Fatalf("error %q does not start with the field %q", msg, c.field)
			}
		})
	}
	big := `{"name": "a", "filters": {"search": "` + strings.Repeat("x", views.MaxBodyBytes) + `"}}`
	if a := call(t, srv, "POST", "/views", operatorToken, big); a.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("a view over %d bytes: %d %v, want 413", views.MaxBodyBytes, a.status, a.body)
	}
	if a := call(t, srv, "GET", "/views", viewerToken, ""); len(a.body["views"].([]any)) != 0 {
		t.Fatalf("views after refused saves: %v, want none", a.body["views"])
	}
}

func TestWithoutClickHouseViewsAnswer503(t *testing.T) {
	srv := serve(t, nil)
	a := call(t, srv, "GET", "/views", viewerToken, "")
	if a.status != http.StatusServiceUnavailable || !strings.Contains(a.body["error"].(string), "--clickhouse") {
		t.Fatalf("list without ClickHouse: %d %v, want 503 naming --clickhouse", a.status, a.body)
	}
}

func TestOpenAPIDocumentsTheViewRoutes(t *testing.T) {
	e := echo.New()
	views.New(nil, nil).RegisterRoutes(e.Group("/api/v1"), func(next echo.HandlerFunc) echo.HandlerFunc { return next })
	missing, err := apidoc.Undocumented("../query/openapi.yaml", e)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Fatalf("routes missing from query/openapi.yaml: %v", missing)
	}
}

func TestTheExampleViewSavesAsWritten(t *testing.T) {
	example, err := os.ReadFile("../examples/views/checkout-team.json")
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, storetest.Open(t))
	if a := call(t, srv, "POST", "/views", operatorToken, string(example)); a.status != http.StatusCreated {
		t.Fatalf("examples/views/checkout-team.json: %d %v, want 201", a.status, a.body)
	}
	a := call(t, srv, "GET", "/views/checkout%20team", viewerToken, "")
	if a.status != 200 || a.body["groupBy"] != "app" || len(a.body["pinned"].(map[string]any)) != 2 {
		t.Fatalf("the example read back: %d %v", a.status, a.body)
	}
}
