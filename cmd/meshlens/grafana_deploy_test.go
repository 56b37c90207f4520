package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// grafanaDatasources is Grafana's datasource provisioning file.
type grafanaDatasources struct {
	APIVersion  int `json:"apiVersion"`
	Datasources []struct {
		Name           string            `json:"name"`
		UID            string            `json:"uid"`
		Type           string            `json:"type"`
		URL            string            `json:"url"`
		JSONData       map[string]any    `json:"jsonData"`
		SecureJSONData map[string]string `json:"secureJsonData"`
	} `json:"datasources"`
}

// meshlensQueryTypes are the query types of the meshlens datasource plugin (ui/grafana/pkg/plugin).
var meshlensQueryTypes = []string{"topology", "series", "logs", "trace", "traceSearch", "annotations"}

func checkMeshlensDatasource(t *testing.T, where string, raw []byte, wantURL string) {
	t.Helper()
	var p grafanaDatasources
	if err := yaml.Unmarshal(raw, &p); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	for _, d := range p.Datasources {
		if d.Type != "meshlens-datasource" {
			continue
		}
		if d.UID != "meshlens" || d.URL != wantURL || d.SecureJSONData["token"] != "$MESHLENS_TOKEN" {
			t.Errorf("%s: meshlens datasource %+v, want uid meshlens, url %s, the token from $MESHLENS_TOKEN in secureJsonData", where, d, wantURL)
		}
		return
	}
	t.Errorf("%s provisions no meshlens-datasource", where)
}

// TestGrafanaDashboardsAskTheMeshlensDatasourceWhatItAnswers checks the
// provisioning of deploy/grafana and the topology dashboard: every panel,
// variable and annotation of it uses the provisioned meshlens datasource
// with a query type the plugin has.
func TestGrafanaDashboardsAskTheMeshlensDatasourceWhatItAnswers(t *testing.T) {
	root := repoRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, "deploy/grafana/provisioning/datasources/meshlens.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	checkMeshlensDatasource(t, "deploy/grafana/provisioning", raw, "http://meshlens.meshlens-system.svc:8080")

	b, err := os.ReadFile(filepath.Join(root, "deploy/grafana/dashboards/meshlens-topology.json"))
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		QueryType  string `json:"queryType"`
		Kind       string `json:"kind"`
		Datasource struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
	}
	var d struct {
		Title       string `json:"title"`
		Annotations struct {
			List []struct {
				Name   string  `json:"name"`
				Target *target `json:"target"`
			} `json:"list"`
		} `json:"annotations"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query target `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Type    string   `json:"type"`
			Title   string   `json:"title"`
			Targets []target `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.Title != "meshlens: topology" {
		t.Errorf("title %q", d.Title)
	}
	types := map[string]bool{}
	for _, p := range d.Panels {
		for _, q := range p.Targets {
			if q.Datasource.UID != "meshlens" || !slices.Contains(meshlensQueryTypes, q.QueryType) {
				t.Errorf("panel %q asks %+v", p.Title, q)
			}
			types[p.Type+":"+q.QueryType] = true
		}
	}
	for _, want := range []string{"nodeGraph:topology", "timeseries:series", "logs:logs", "table:traceSearch"} {
		if !types[want] {
			t.Errorf("no %s panel (have %v)", want, types)
		}
	}
	rollouts := false
	for _, a := range d.Annotations.List {
		if a.Target != nil && a.Target.QueryType == "annotations" && a.Target.Datasource.UID == "meshlens" {
			rollouts = true
		}
	}
	if !rollouts {
		t.Error("no rollout annotations of the meshlens datasource")
	}
	for _, v := range d.Templating.List {
		if !slices.Contains([]string{"namespaces", "services", "versions"}, v.Query.Kind) {
			t.Errorf("variable %s asks %+v", v.Name, v.Query)
		}
	}
}

// TestHelmChartMountsGrafanaDashboardsAndDatasource renders the chart with
// its Grafana ConfigMaps: the dashboards are deploy/grafana's, and the
// datasource points at the release's own Service.
func TestHelmChartMountsGrafanaDashboardsAndDatasource(t *testing.T) {
	root := repoRoot(t)
	m, _, err := renderChart(t, "meshlens", deployNamespace, "", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	for key := range m {
		if strings.Contains(key, "grafana") {
			t.Errorf("%s rendered by default", key)
		}
	}
	m, _, err = renderChart(t, "meshlens", deployNamespace, "grafana: {dashboards: {enabled: true}, datasource: {enabled: true}}", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	dash := m.get(t, "ConfigMap/meshlens-grafana-dashboards")
	if dig(dash, "metadata", "labels", "grafana_dashboard") != "1" || dig(dash, "metadata", "annotations", "grafana_folder") != "meshlens" {
		t.Errorf("dashboards ConfigMap metadata %v", dash["metadata"])
	}
	files, _ := filepath.Glob(filepath.Join(root, "deploy/grafana/dashboards/*.json"))
	data, _ := dash["data"].(map[string]any)
	if len(files) == 0 || len(data) != len(files) {
		t.Errorf("the ConfigMap has %d dashboards, deploy/grafana/dashboards %d", len(data), len(files))
	}
	for _, f := range files {
		want, _ := os.ReadFile(f)
		if got, _ := data[filepath.Base(f)].(string); strings.TrimSpace(got) != strings.TrimSpace(string(want)) {
			t.Errorf("dashboard %s in the chart differs from deploy/grafana/dashboards (copy it to deploy/helm/meshlens/files/grafana)", filepath.Base(f))
		}
	}
	ds := m.get(t, "ConfigMap/meshlens-grafana-datasource")
	if dig(ds, "metadata", "labels", "grafana_datasource") != "1" {
		t.Errorf("datasource ConfigMap labels %v", dig(ds, "metadata", "labels"))
	}
	raw, _ := dig(ds, "data", "meshlens-datasource.yaml").(string)
	checkMeshlensDatasource(t, "the chart's datasource ConfigMap", []byte(raw), "http://meshlens.meshlens-system.svc.cluster.local:8080")
}
