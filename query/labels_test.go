package query

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
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

	// The answer, written by the graph's own encoder with the labels
	// appended, is byte for byte what echo's c.JSON (encoding/json) writes
	// for the same graph and labels; ?pretty still indents.
	for _, view := range []string{"version", "service"} {
		resp, err := http.Get(srv.URL + "/api/v1/graph?view=" + view)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("view %s: Content-Type %q", view, ct)
		}
		g, err := live.Graph(5*time.Minute, graph.Options{View: graph.View(view), Source: "live", Now: now})
		if err != nil {
			t.Fatal(err)
		}
		h := &handlers{Deps: Deps{Registry: func() *registry.Snapshot { return reg }}}
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(h.labeled(g)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(want.Bytes(), []byte(`"nodeLabels":{`)) {
			t.Fatalf("view %s: no labels to compare", view)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("view %s: answer differs from encoding/json's:\n got %.300s\nwant %.300s", view, got, want.Bytes())
		}
	}
	var pretty bytes.Buffer
	resp, err := http.Get(srv.URL + "/api/v1/graph?view=version&pretty")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(&pretty, resp.Body)
	resp.Body.Close()
	if !bytes.HasPrefix(pretty.Bytes(), []byte("{\n  \"view\": \"version\"")) {
		t.Errorf("?pretty: %.60q", pretty.Bytes())
	}
}
