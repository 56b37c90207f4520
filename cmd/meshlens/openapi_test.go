package main

import (
	"context"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/controlplane/xds"
	"github.com/meshlens/meshlens/query/apidoc"
)

// TestOpenAPIDocumentsTheConfigAndProxyRoutes checks the routes serve mounts
// from the control plane are in query/openapi.yaml, the one API document
// (the query, rollout and alerting packages check their own).
func TestOpenAPIDocumentsTheConfigAndProxyRoutes(t *testing.T) {
	e := echo.New()
	api := e.Group("/api/v1")
	config.RegisterRoutes(api, nil, func(next echo.HandlerFunc) echo.HandlerFunc { return next })
	srv, err := xds.NewServer(context.Background(), nil, nil, xds.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	srv.RegisterRoutes(api)
	missing, err := apidoc.Undocumented("../../query/openapi.yaml", e)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Fatalf("routes missing from query/openapi.yaml: %v", missing)
	}
}
