package query

import (
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/query/apidoc"
)

func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	e := echo.New()
	RegisterRoutes(e.Group("/api/v1"), Deps{})
	missing, err := apidoc.Undocumented("openapi.yaml", e)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Fatalf("routes missing from openapi.yaml: %v", missing)
	}
}
