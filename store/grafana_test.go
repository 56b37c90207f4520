package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/store"
	"github.com/meshlens/meshlens/store/storetest"
)

// The Grafana dashboard in deploy/grafana is SQL against meshlens' tables; a
// renamed column or a function 18.16 lacks would only show up as an empty
// panel. These tests run every query of the dashboard on the test server.

const grafanaDir = "../deploy/grafana"

type grafanaDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type grafanaTarget struct {
	Datasource grafanaDatasource `json:"datasource"`
	RawSQL     string            `json:"rawSql"`
	Format     *int              `json:"format"`
}

type grafanaDashboard struct {
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name       string            `json:"name"`
			Datasource grafanaDatasource `json:"datasource"`
			Query      grafanaTarget     `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		Title      string            `json:"title"`
		Datasource grafanaDatasource `json:"datasource"`
		Targets    []grafanaTarget   `json:"targets"`
	} `json:"panels"`
}

func loadDashboard(t *testing.T) grafanaDashboard {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(grafanaDir, "dashboards", "meshlens-mesh.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("meshlens-mesh.json: %v", err)
	}
	return d
}

// grafanaQuery is one SQL text of the dashboard and where it comes from.
type grafanaQuery struct {
	name string // "panel <title>" or "variable <name>"
	sql  string
	ds   string // datasource uid
}

func dashboardQueries(t *testing.T, d grafanaDashboard) []grafanaQuery {
	t.Helper()
	var qs []grafanaQuery
	for _, v := range d.Templating.List {
		qs = append(qs, grafanaQuery{"variable " + v.Name, v.Query.RawSQL, v.Datasource.UID})
	}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource != p.Datasource {
				t.Errorf("panel %q: target datasource %+v, panel datasource %+v", p.Title, tg.Datasource, p.Datasource)
			}
			qs = append(qs, grafanaQuery{"panel " + p.Title, tg.RawSQL, tg.Datasource.UID})
		}
	}
	return qs
}

// grafanaSQL does what Grafana and the ClickHouse plugin do to a query
// before ClickHouse sees it: the plugin's $__timeFilter(col) expansion (its
// exact text, unparenthesized, so operator precedence is tested too), the
// template variables, and the database named by the datasource — here the
// test's own database instead of meshlens.
func grafanaSQL(sql string, s *store.Store, from, to time.Time, vars map[string]string) (string, error) {
	sql = regexp.MustCompile(`\$__timeFilter\(([^)]+)\)`).ReplaceAllStringFunc(sql, func(m string) string {
		col := strings.TrimSpace(m[len("$__timeFilter(") : len(m)-1])
		return fmt.Sprintf("%s >= toDateTime(%d) AND %s <= toDateTime(%d)", col, from.Unix(), col, to.Unix())
	})
	for k, v := range vars {
		sql = strings.ReplaceAll(sql, "${"+k+"}", v)
	}
	if i := strings.Index(sql, "$"); i >= 0 {
		return "", fmt.Errorf("unsupported macro or variable left at %q", sql[i:])
	}
	return regexp.MustCompile(`\bmeshlens\.`).ReplaceAllString(sql, s.Database()+"."), nil
}

// queryRows runs sql and returns each row as column name → value.
func queryRows(ctx context.Context, t *testing.T, s *store.Store, sql string) ([]map[string]any, error) {
	t.Helper()
	rows, err := s.Conn().Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	var out []map[string]any
	for rows.Next() {
		ptrs := make([]any, len(types))
		for i, ct := range types {
			ptrs[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := map[string]any{}
		for i, ct := range types {
			row[ct.Name()] = reflect.ValueOf(ptrs[i]).Elem().Interface()
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

func toFloat(v any) float64 {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(rv.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return float64(rv.Uint())
	case reflect.Float32, reflect.Float64:
		return rv.Float()
	}
	return math.NaN()
}

// dashboardRecords is a small mesh in namespace shop — HTTP 503s on checkout
// v2, gRPC UNAVAILABLE from payments, one request without a response — and
// one failure in another namespace that shop's panels must not show.
func dashboardRecords(at time.Time) []mesh.Record {
	frontend := mesh.Peer{Namespace: "shop", Service: "frontend", Workload: "frontend-v1", Version: "v1"}
	checkout := func(v string) mesh.Peer {
		return mesh.Peer{Namespace: "shop", Service: "checkout", Workload: "checkout-" + v, Version: v}
	}
	payments := mesh.Peer{Namespace: "shop", Service: "payments", Workload: "payments-v1", Version: "v1"}
	var recs []mesh.Record
	add := func(src, dst mesh.Peer, proto string, code uint16, grpc int16, ms int) {
		r := mesh.Record{
			Time: at.Add(time.Duration(len(recs)) * time.Millisecond), Source: src, Destination: dst,
			Protocol: proto, Method: "GET", Path: "/cart", Authority: dst.Service, Code: code, GRPCStatus: grpc,
			Flags: "-", Duration: time.Duration(ms) * time.Millisecond, TraceID: fmt.Sprintf("%032x", len(recs)+1),
			Origin: mesh.OriginALS,
		}
		if proto == "grpc" {
			r.Method, r.Path = "POST", "/pay.Payments/Charge"
		}
		recs = append(recs, r)
	}
	for i := 0; i < 6; i++ {
		add(frontend, checkout("v1"), "http", 200, -1, 10+i)
	}
	for i := 0; i < 4; i++ {
		code := uint16(200)
		if i%2 == 0 {
			code = 503
		}
		add(frontend, checkout("v2"), "http", code, -1, 40+i)
	}
	add(frontend, checkout("v2"), "http", 0, -1, 1000) // no response
	add(checkout("v1"), payments, "grpc", 200, 0, 5)
	add(checkout("v1"), payments, "grpc", 200, 14, 7)
	add(checkout("v2"), payments, "grpc", 200, 0, 6)
	other := mesh.Peer{Namespace: "other", Service: "batch", Workload: "batch-v1", Version: "v1"}
	add(other, mesh.Peer{Namespace: "other", Service: "db", Workload: "db-v1", Version: "v1"}, "http", 500, -1, 3)
	return recs
}

func TestGrafanaDashboardQueriesRunOnClickHouseAndShowTheInsertedMesh(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) { testGrafanaDashboardQueries(t, b.Open(t)) })
	}
}

func testGrafanaDashboardQueries(t *testing.T, s *store.Store) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	now := time.Now().Truncate(time.Second)
	recs := dashboardRecords(now.Add(-30 * time.Second))
	if err := s.InsertRecords(ctx, recs); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"namespace": "shop", "service": "checkout"}

	// What the panels must show, from the records and mesh.Record.IsError,
	// meshlens' own definition of a failed request.
	wantFailed := map[string]bool{}
	requests, failed := map[string]float64{}, map[string]float64{}
	for i := range recs {
		r := &recs[i]
		if r.Destination.Namespace != "shop" {
			continue
		}
		key := r.Destination.Service + " " + r.Destination.Version
		requests[key]++
		if r.IsError() {
			failed[key]++
			wantFailed[r.TraceID] = true
		}
	}
	if len(wantFailed) < 4 {
		t.Fatalf("fixture has %d failed requests in shop; the failed-requests check needs several", len(wantFailed))
	}

	// Extra checks by panel title prefix, beyond "returns rows".
	checks := map[string]func(rows []map[string]any) error{
		"panel Error rate": func(rows []map[string]any) error {
			got := map[string]float64{}
			for _, r := range rows {
				got[fmt.Sprint(r["destination"])] = toFloat(r["error_rate"])
			}
			for key, n := range requests {
				if want := failed[key] / n; math.Abs(got[key]-want) > 1e-9 {
					return fmt.Errorf("error rate of %s = %v, want %v (all: %v)", key, got[key], want, got)
				}
			}
			return nil
		},
		"panel Requests/s": func(rows []map[string]any) error {
			got := map[string]float64{}
			for _, r := range rows {
				got[fmt.Sprint(r["dst_service"])] += toFloat(r["rps"]) * 60
			}
			want := map[string]float64{}
			for key, n := range requests {
				want[strings.Fields(key)[0]] += n
			}
			for svc, n := range want {
				if math.Abs(got[svc]-n) > 1e-9 {
					return fmt.Errorf("requests of %s = %v, want %v", svc, got[svc], n)
				}
			}
			return nil
		},
		"panel Recent failed requests": func(rows []map[string]any) error {
			var got []string
			for _, r := range rows {
				got = append(got, fmt.Sprint(r["trace_id"]))
				if !wantFailed[fmt.Sprint(r["trace_id"])] {
					return fmt.Errorf("row %v is not a failed request of namespace shop", r)
				}
			}
			if len(got) != len(wantFailed) {
				sort.Strings(got)
				return fmt.Errorf("got %d failed requests %v, want %d", len(got), got, len(wantFailed))
			}
			return nil
		},
		"variable namespace": func(rows []map[string]any) error {
			var got []string
			for _, r := range rows {
				got = append(got, fmt.Sprint(r["dst_namespace"]))
			}
			if strings.Join(got, ",") != "other,shop" {
				return fmt.Errorf("namespaces %v, want [other shop]", got)
			}
			return nil
		},
	}

	queries := dashboardQueries(t, loadDashboard(t))
	for _, q := range queries {
		t.Run(q.name, func(t *testing.T) {
			if strings.TrimSpace(q.sql) == "" {
				t.Fatal("no SQL")
			}
			sql, err := grafanaSQL(q.sql, s, now.Add(-time.Hour), now, vars)
			if err != nil {
				t.Fatal(err)
			}
			rows, err := queryRows(ctx, t, s, sql)
			if err != nil {
				t.Fatalf("ClickHouse %s refuses it: %v\n%s", s.Version(), err, sql)
			}
			if len(rows) == 0 {
				t.Fatalf("no rows from\n%s", sql)
			}
			for prefix, check := range checks {
				if strings.HasPrefix(q.name, prefix) {
					if err := check(rows); err != nil {
						t.Errorf("%v\n%s", err, sql)
					}
				}
			}
		})
	}
	for prefix := range checks {
		found := false
		for _, q := range queries {
			found = found || strings.HasPrefix(q.name, prefix)
		}
		if !found {
			t.Errorf("the dashboard has no %s… (the check for it never ran)", prefix)
		}
	}
}

// TestGrafanaProvisioningPointsTheDashboardAtItsDatasource checks the files
// Grafana reads at start agree with each other and with the dashboard.
func TestGrafanaProvisioningPointsTheDashboardAtItsDatasource(t *testing.T) {
	readYAML := func(p string) map[string]any {
		data, err := os.ReadFile(filepath.Join(grafanaDir, "provisioning", p))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(data, &m); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		return m
	}
	dsFile := readYAML("datasources/meshlens.yaml")
	sources, _ := dsFile["datasources"].([]any)
	// One datasource of each type: the ClickHouse plugin's (these SQL
	// panels) and meshlens' own plugin's (ui/grafana, tested there).
	byType := map[any]map[string]any{}
	for _, s := range sources {
		d, _ := s.(map[string]any)
		if byType[d["type"]] != nil {
			t.Errorf("datasources/meshlens.yaml: two datasources of type %v", d["type"])
		}
		byType[d["type"]] = d
	}
	if len(sources) != 2 || byType["grafana-clickhouse-datasource"] == nil || byType["meshlens-datasource"] == nil {
		t.Fatalf("datasources/meshlens.yaml: %d datasources of types %v, want grafana-clickhouse-datasource and meshlens-datasource", len(sources), slices.Collect(maps.Keys(byType)))
	}
	ds := byType["grafana-clickhouse-datasource"]
	jd, _ := ds["jsonData"].(map[string]any)
	if jd["defaultDatabase"] != "meshlens" || jd["host"] != "clickhouse.meshlens-system.svc" || jd["port"] != float64(9000) || jd["protocol"] != "native" {
		t.Errorf("datasource jsonData %v: want the clickhouse Service of deploy/kubernetes, native port 9000, database meshlens", jd)
	}
	for _, q := range dashboardQueries(t, loadDashboard(t)) {
		if q.ds != ds["uid"] {
			t.Errorf("%s uses datasource %q, provisioning defines %q", q.name, q.ds, ds["uid"])
		}
	}

	dbFile := readYAML("dashboards/meshlens.yaml")
	providers, _ := dbFile["providers"].([]any)
	if len(providers) != 1 {
		t.Fatalf("dashboards/meshlens.yaml: %d providers, want 1", len(providers))
	}
	p, _ := providers[0].(map[string]any)
	if p["type"] != "file" {
		t.Errorf("dashboard provider type %v, want file", p["type"])
	}
	if path, _ := p["options"].(map[string]any)["path"].(string); !strings.HasPrefix(path, "/") {
		t.Errorf("dashboard provider path %q, want an absolute path", path)
	}
	if dsFile["apiVersion"] != float64(1) || dbFile["apiVersion"] != float64(1) {
		t.Errorf("provisioning apiVersion %v / %v, want 1", dsFile["apiVersion"], dbFile["apiVersion"])
	}
}
