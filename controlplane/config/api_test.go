package config

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/internal/meshtest"
)

const (
	viewerToken   = "viewer-token-0123456789"
	operatorToken = "operator-token-0123456789"
)

// newAPI serves the config routes behind real auth middleware over real HTTP.
func newAPI(t *testing.T, s *Store, requireReads bool) string {
	t.Helper()
	a := auth.New([]auth.Token{{Value: viewerToken, Role: auth.Viewer}, {Value: operatorToken, Role: auth.Operator}})
	e := echo.New()
	RegisterRoutes(e.Group("/api/v1", a.Viewer(requireReads)), s, a.Operator())
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv.URL + "/api/v1"
}

// call is meshtest.HTTP with the body as bytes, for json.Unmarshal.
func call(t *testing.T, method, url, token, body string) (int, []byte) {
	t.Helper()
	code, b := meshtest.HTTP(t, method, url, token, body)
	return code, []byte(b)
}

func TestAPIApplyGetListDelete(t *testing.T) {
	s := openStore(t, t.TempDir())
	api := newAPI(t, s, false)
	var all []string
	for _, f := range exampleFiles {
		all = append(all, string(readExample(t, f)))
	}
	code, body := call(t, "POST", api+"/config", operatorToken, strings.Join(all, "\n---\n"))
	if code != 200 {
		t.Fatalf("apply examples: %d %s", code, body)
	}
	var ar ApplyResponse
	if err := json.Unmarshal(body, &ar); err != nil {
		t.Fatal(err)
	}
	if ar.Version != 1 || len(ar.Applied) != len(s.Snapshot().Objects) {
		t.Fatalf("apply response %+v", ar)
	}

	code, body = call(t, "GET", api+"/config/VIRTUALSERVICE/bookinfo/reviews", "", "")
	if code != 200 {
		t.Fatalf("get: %d %s", code, body)
	}
	// What GET returns can be applied again as is (JSON this time).
	code, body = call(t, "POST", api+"/config", operatorToken, string(body))
	if code != 200 {
		t.Fatalf("re-apply of GET output: %d %s", code, body)
	}
	if err := json.Unmarshal(body, &ar); err != nil || ar.Version != 1 {
		t.Fatalf("re-applying the same object changed the version: %s", body)
	}

	code, body = call(t, "GET", api+"/config?kind=dr", "", "")
	var lr struct {
		Version uint64            `json:"version"`
		Items   []json.RawMessage `json:"items"`
	}
	if code != 200 || json.Unmarshal(body, &lr) != nil || len(lr.Items) != 4 {
		t.Fatalf("list DestinationRules: %d %s", code, body)
	}

	bad := strings.Replace(string(readExample(t, "virtualservice.yaml")), "weight: 20", "weight: 25", 1)
	code, body = call(t, "POST", api+"/config", operatorToken, bad)
	var er struct {
		Errors []map[string]string `json:"errors"`
	}
	if code != 400 || json.Unmarshal(body, &er) != nil || len(er.Errors) != 1 {
		t.Fatalf("invalid apply: %d %s", code, body)
	}
	if e := er.Errors[0]; e["object"] != "VirtualService/bookinfo/reviews" || e["field"] != "http[1].route[1].weight" || !strings.Contains(e["message"], "sum to 105") {
		t.Fatalf("error %v", e)
	}
	if s.Snapshot().Version != 1 {
		t.Fatal("invalid apply changed the config")
	}

	// A dry run reports the same errors, and on success applies nothing.
	code, body = call(t, "POST", api+"/config?dryRun=true", operatorToken, bad)
	if code != 400 || !strings.Contains(string(body), "sum to 105") {
		t.Fatalf("dry run of invalid config: %d %s", code, body)
	}
	newSE := `{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"new","namespace":"shop"},"spec":{"hosts":["new"],"resolution":"DNS","ports":[{"number":80,"name":"http"}]}}`
	code, body = call(t, "POST", api+"/config?dryRun=true", operatorToken, newSE)
	if code != 200 || !strings.Contains(string(body), `"dryRun":true`) || s.Snapshot().Get("ServiceEntry", "shop", "new") != nil || s.Snapshot().Version != 1 {
		t.Fatalf("dry run of valid config: %d %s (version %d)", code, body, s.Snapshot().Version)
	}

	code, body = call(t, "DELETE", api+"/config/vs/bookinfo/ratings", operatorToken, "")
	if code != 200 {
		t.Fatalf("delete: %d %s", code, body)
	}
	for _, method := range []string{"GET", "DELETE"} {
		code, body = call(t, method, api+"/config/vs/bookinfo/ratings", operatorToken, "")
		if code != 404 || !strings.HasPrefix(string(body), `{"error":`) {
			t.Fatalf("%s missing object: %d %s", method, code, body)
		}
	}
	code, body = call(t, "POST", api+"/config", operatorToken, "# nothing here\n")
	if code != 400 {
		t.Fatalf("empty apply: %d %s", code, body)
	}
}

// The auth matrix on the config routes: no token, wrong token, viewer,
// operator, for reads and changes, with reads open and closed.
func TestAPIAuthMatrix(t *testing.T) {
	se := `{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"a","namespace":"shop"},"spec":{"hosts":["a"],"resolution":"DNS","ports":[{"number":80,"name":"http"}]}}`
	for _, requireReads := range []bool{false, true} {
		s := openStore(t, t.TempDir())
		api := newAPI(t, s, requireReads)
		type step struct {
			method, path, body string
		}
		read := step{"GET", "/config", ""}
		readOne := step{"GET", "/config/serviceentry/shop/a", ""}
		analysis := step{"GET", "/analysis", ""}
		write := step{"POST", "/config", se}
		del := step{"DELETE", "/config/serviceentry/shop/a", ""}
		openRead := map[bool]int{false: 200, true: 401}[requireReads]
		openReadOne := map[bool]int{false: 404, true: 401}[requireReads]
		tests := []struct {
			step  step
			token string
			want  int
		}{
			{read, "", openRead},
			{read, "wrong-token-0123456789", 401},
			{read, viewerToken, 200},
			{read, operatorToken, 200},
			{analysis, "", openRead},
			{analysis, viewerToken, 200},
			{readOne, "", openReadOne},
			{write, "", 401},
			{write, "wrong-token-0123456789", 401},
			{write, viewerToken, 403},
			{del, viewerToken, 403},
			{write, operatorToken, 200},
			{readOne, viewerToken, 200},
			{del, "", 401},
			{del, operatorToken, 200},
		}
		for _, tt := range tests {
			code, body := call(t, tt.step.method, api+tt.step.path, tt.token, tt.step.body)
			if code != tt.want {
				t.Errorf("requireReads=%v %s %s token=%q: %d, want %d (%s)", requireReads, tt.step.method, tt.step.path, tt.token, code, tt.want, body)
			}
		}
	}
}
