package istiometrics

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/auth"
)

// TestRouteIsGuardedLikeAPIReads: beyond loopback the metrics, which show
// the mesh's topology as the graph API does, need a viewer token.
func TestRouteIsGuardedLikeAPIReads(t *testing.T) {
	authz := auth.New([]auth.Token{{Value: "v", Role: auth.Viewer}})
	for _, tc := range []struct {
		x     *Exporter
		token string
		want  int
	}{
		{newTestExporter(t, Config{}), "", http.StatusUnauthorized},
		{newTestExporter(t, Config{}), "wrong", http.StatusUnauthorized},
		{newTestExporter(t, Config{}), "v", http.StatusOK},
		{nil, "v", http.StatusNotFound}, // turned off
	} {
		e := echo.New()
		RegisterRoutes(e, tc.x, authz.Viewer(true))
		req := httptest.NewRequest(http.MethodGet, Path, nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("exporter %v, token %q: %d, want %d", tc.x != nil, tc.token, rec.Code, tc.want)
		}
	}
}
