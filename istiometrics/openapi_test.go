package istiometrics

import (
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/query/apidoc"
)

func TestOpenAPIDocumentsTheRoute(t *testing.T) {
	for _, x := range []*Exporter{nil, newTestExporter(t, Config{})} {
		e := echo.New()
		RegisterRoutes(e, x)
		missing, err := apidoc.Undocumented("../query/openapi.yaml", e)
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) > 0 {
			t.Fatalf("routes missing from query/openapi.yaml: %v", missing)
		}
	}
}
