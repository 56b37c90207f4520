package config

import (
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/query/apidoc"
)

// The config and analysis routes are documented in the API's one OpenAPI
// file.
func TestOpenAPIDocumentsConfigRoutes(t *testing.T) {
	e := echo.New()
	noop := func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	RegisterRoutes(e.Group("/api/v1"), openStore(t, t.TempDir()), noop)
	missing, err := apidoc.Undocumented("../../query/openapi.yaml", e)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Fatalf("routes missing from query/openapi.yaml: %v", missing)
	}
}
