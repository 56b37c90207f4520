package alerting

import (
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/query/apidoc"
)

// The rollout and alerting routes are documented in the API's one OpenAPI
// file.
func TestOpenAPIDocumentsRolloutAndAlertRoutes(t *testing.T) {
	env := newEnv(t, Options{})
	e := echo.New()
	noop := func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	env.al.RegisterRoutes(e.Group("/api/v1"), noop)
	env.engine.RegisterRoutes(e.Group("/api/v1"), noop)
	missing, err := apidoc.Undocumented("../query/openapi.yaml", e)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Fatalf("routes missing from query/openapi.yaml: %v", missing)
	}
}
