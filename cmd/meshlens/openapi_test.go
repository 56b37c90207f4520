package main

import (
	"context"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"sigs.k8s.io/yaml"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/controlplane/xds"
	"github.com/meshlens/meshlens/query"
)

// TestOpenAPIDocumentsTheConfigAndProxyRoutes checks the routes serve mounts
// from the control plane are in query/openapi.yaml, the one API document
// (the query, rollout and alerting packages check their own).
func TestOpenAPIDocumentsTheConfigAndProxyRoutes(t *testing.T) {
	data, err := os.ReadFile("../../query/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	e := echo.New()
	api := e.Group("/api/v1")
	query.RegisterRoutes(api, query.Deps{})
	config.RegisterRoutes(api, nil, func(next echo.HandlerFunc) echo.HandlerFunc { return next })
	srv, err := xds.NewServer(context.Background(), nil, nil, xds.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	srv.RegisterRoutes(api)
	param := regexp.MustCompile(`:([A-Za-z]+)`)
	var missing []string
	for _, r := range e.Routes() {
		p := param.ReplaceAllString(strings.TrimPrefix(r.Path, "/api/v1"), "{$1}")
		if _, ok := doc.Paths[p][strings.ToLower(r.Method)]; !ok {
			missing = append(missing, r.Method+" "+p)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("routes missing from query/openapi.yaml: %v", missing)
	}
}
