package alerting

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"sigs.k8s.io/yaml"
)

// The rollout and alerting routes are documented in the API's one OpenAPI
// file.
func TestOpenAPIDocumentsRolloutAndAlertRoutes(t *testing.T) {
	data, err := os.ReadFile("../query/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	env := newEnv(t, Options{})
	e := echo.New()
	noop := func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	env.al.RegisterRoutes(e.Group("/api/v1"), noop)
	env.engine.RegisterRoutes(e.Group("/api/v1"), noop)
	param := regexp.MustCompile(`:([A-Za-z]+)`)
	for _, r := range e.Routes() {
		p := param.ReplaceAllString(strings.TrimPrefix(r.Path, "/api/v1"), "{$1}")
		p = strings.ReplaceAll(strings.ReplaceAll(p, "{namespace}", "{ns}"), "//", "/")
		if _, ok := doc.Paths[p][strings.ToLower(r.Method)]; !ok {
			t.Errorf("%s %s is not in openapi.yaml", r.Method, p)
		}
	}
}
