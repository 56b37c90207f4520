package query

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/controlplane/registry"
	"github.com/meshlens/meshlens/graph"
)

// TestGraphNodesCarryTheirPodsLabels: with a service registry, every node of
// the graph gets the Kubernetes labels its Pods share, and their locality,
// in each graph view, for the UI's grouping by any label.
func TestGraphNodesCarryTheirPodsLabels(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	clock := func() time.Time { return now }
	live, err := graph.New(graph.Config{Now: clock}, discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := live.ConsumeRecords(context.Background(), testTraffic(now.Add(-2*time.Second))); err != nil {
		t.Fatal(err)
	}
	live.Refresh()
	pod := func(ip, name, app, version, zone string, labels map[string]string) *registry.Workload {
		return &registry.Workload{Pod: name + "-" + ip, Namespace: "shop", Name: name, App: app, Version: version, Labels: labels,
			Locality: "eu-west/" + zone, Address: ip}
	}
	reg := registry.New(1, nil, []*registry.Workload{
		pod("10.0.0.1", "b-v1", "b", "v1", "a", map[string]string{"app": "b", "version": "v1", "team": "checkout", "pod-template-hash": "x1"}),
		pod("10.0.0.2", "b-v1", "b", "v1", "a", map[string]string{"app": "b", "version": "v1", "team": "checkout", "pod-template-hash": "x2"}),
		pod("10.0.0.3", "b-v2", "b", "v2", "b", map[string]string{"app": "b", "version": "v2", "team": "checkout"}),
		pod("10.0.0.4", "a-v1", "a", "v1", "a", map[string]string{"app": "a", "version": "v1", "team": "storefront"}),
	})
	e := echo.New()
	RegisterRoutes(e.Group("/api/v1"), Deps{Live: live, Logger: discard(), Now: clock, Registry: func() *registry.Snapshot { return reg }})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	f := &apiFixture{srv: srv}

	for _, c := range []struct {
		view, node string
		want       map[string]string
	}{
		// Labels that differ between the Pods (pod-template-hash) are left out.
		{"version", "shop/b/v1", map[string]string{"app": "b", "version": "v1", "team": "checkout", "locality": "eu-west/a"}},
		{"version", "shop/b/v2", map[string]string{"app": "b", "version": "v2", "team": "checkout", "locality": "eu-west/b"}},
		// The service's Pods are in two zones: no locality.
		{"service", "shop/b", map[string]string{"app": "b", "team": "checkout"}},
		{"workload", "shop/a-v1", map[string]string{"app": "a", "version": "v1", "team": "storefront", "locality": "eu-west/a"}},
	} {
		var g struct {
			Nodes      []struct{ ID string }        `json:"nodes"`
			NodeLabels map[string]map[string]string `json:"nodeLabels"`
		}
		if code := f.get(t, "/api/v1/graph?view="+c.view, &g); code != 200 {
			t.Fatalf("GET graph view %s: %d", c.view, code)
		}
		got := g.NodeLabels[c.node]
		if len(got) != len(c.want) {
			t.Errorf("view %s: labels of %s = %v, want %v", c.view, c.node, got, c.want)
			continue
		}
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("view %s: labels of %s = %v, want %v", c.view, c.node, got, c.want)
				break
			}
		}
		// Nodes the registry does not know (the gateway in edge, unknown
		// callers) have no labels, and are still in the graph.
		if _, ok := g.NodeLabels["unknown"]; ok {
			t.Errorf("view %s: the unknown node has labels", c.view)
		}
		if len(g.Nodes) < 4 {
			t.Errorf("view %s: %d nodes, want the whole graph", c.view, len(g.Nodes))
		}
	}
}
