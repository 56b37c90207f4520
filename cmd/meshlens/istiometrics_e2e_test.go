package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/meshlens/meshlens/app"
	"github.com/meshlens/meshlens/demo"
	"github.com/meshlens/meshlens/internal/promtest"
	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/store/storetest"
)

// e2eGraph is /api/v1/graph's answer, with what the add-ons' queries show.
type e2eGraph struct {
	Nodes []struct {
		ID       string `json:"id"`
		Workload string `json:"workload"`
	} `json:"nodes"`
	Edges []e2eEdge `json:"edges"`
}

type e2eEdge struct {
	// TargetWorkload is the target node's workload, empty when unknown.
	TargetWorkload string `json:"-"`

	Source    string            `json:"source"`
	Target    string            `json:"target"`
	Protocol  string            `json:"protocol"`
	Requests  uint64            `json:"requests"`
	Errors    uint64            `json:"errors"`
	RPS       float64           `json:"rps"`
	ErrorRate float64           `json:"errorRate"`
	P50Ms     float64           `json:"p50Ms"`
	P90Ms     float64           `json:"p90Ms"`
	P99Ms     float64           `json:"p99Ms"`
	MTLS      float64           `json:"mtls"`
	Codes     map[string]uint64 `json:"codes"`
	GRPC      map[string]uint64 `json:"grpc"`
}

func apiGraphOf(t *testing.T, ml *meshlensProcess, q url.Values) map[string]e2eEdge {
	t.Helper()
	resp, err := http.Get("http://" + ml.http + "/api/v1/graph?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/graph?%s: %s %s", q.Encode(), resp.Status, body)
	}
	var g e2eGraph
	if err := json.Unmarshal(body, &g); err != nil {
		t.Fatal(err)
	}
	workload := map[string]string{}
	for _, n := range g.Nodes {
		workload[n.ID] = n.Workload
	}
	out := map[string]e2eEdge{}
	for _, e := range g.Edges {
		e.TargetWorkload = workload[e.Target]
		out[e.Source+" -> "+e.Target] = e
	}
	return out
}

// nonFiveXX is the share of requests whose HTTP code is not 5xx: what
// Istio's dashboards call success (a gRPC error rides on HTTP 200).
func (e e2eEdge) nonFiveXX() uint64 {
	n := e.Requests
	for c, k := range e.Codes {
		if strings.HasPrefix(c, "5") {
			n -= k
		}
	}
	return n
}

func within(got, want, rel float64) bool {
	return math.Abs(got-want) <= rel*math.Abs(want)+1e-9
}

// sameBucket: two latencies at most one histogram bucket apart.
func sameBucket(a, b float64) bool {
	d := mesh.BucketIndex(a) - mesh.BucketIndex(b)
	return d >= -1 && d <= 1
}

func promQuery(t *testing.T, p promv1.API, q string, at time.Time) model.Vector {
	t.Helper()
	v, _, _, err := p.Query(context.Background(), q, at)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		t.Fatalf("%s: got %s", q, v.Type())
	}
	return vec
}

func promRange(t *testing.T, p promv1.API, q string, r promv1.Range) model.Matrix {
	t.Helper()
	v, _, _, err := p.QueryRange(context.Background(), q, r)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	m, ok := v.(model.Matrix)
	if !ok {
		t.Fatalf("%s: got %s", q, v.Type())
	}
	return m
}

// expand substitutes a dashboard's template variables as Grafana would.
func expand(q string, vars map[string]string) string {
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) }) // $srcwl before $s...
	for _, k := range keys {
		q = strings.ReplaceAll(q, "$"+k, vars[k])
	}
	return q
}

// TestKialiAndIstioDashboardsAgreeWithTheGraph runs meshlens serve with the
// demo mesh (proxyless gRPC, OTel traces: no Envoy stats anywhere) while a
// real Prometheus scrapes /metrics/istio, then runs the queries Kiali's
// graph and Istio's Grafana dashboards run and compares them with
// meshlens' own graph API over the same window: rates within 5%, latency
// quantiles within one histogram bucket. Finally meshlens' own
// source=prometheus graph, reading those metrics back, must equal the live
// graph.
func TestKialiAndIstioDashboardsAgreeWithTheGraph(t *testing.T) {
	dsn := storetest.DSN(t)
	dataDir := t.TempDir()
	otlp, xdsAddr, promAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	ml := startMeshlens(t, "--clickhouse", dsn, "--data-dir", dataDir, "--otlp-grpc", otlp, "--xds", xdsAddr,
		"--pair-wait", "2s", "--prometheus", "http://"+promAddr)
	const every = time.Second
	p := promtest.API(t, promtest.Start(t, promtest.Config{Targets: []string{ml.http}, Path: "/metrics/istio", Interval: every, Listen: promAddr}))

	// The demo mesh: loadgen → productpage → details, reviews v1/v2/v3 →
	// ratings; reviews v3 fails a fifth of its calls, ratings is slow.
	ctx := context.Background()
	cfg := demo.DefaultConfig()
	cfg.XDS, cfg.Collector, cfg.Server, cfg.TokenFile = xdsAddr, otlp, "http://"+ml.http, filepath.Join(dataDir, "operator.token")
	cfg.BasePort, cfg.Control, cfg.Status, cfg.Rate = 0, "", nil, 30
	cfg.TraceBatchTimeout = 200 * time.Millisecond
	cfg.Faults = map[demo.VersionKey]demo.Fault{{Service: "reviews", Version: "v3"}: {ErrorRate: 0.2}, {Service: "ratings", Version: "v1"}: {Delay: 30 * time.Millisecond}}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	d, err := demo.Start(ctx, cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(ctx)
	trafficFrom := time.Now()
	time.Sleep(30 * time.Second)
	d.SetRate(0)
	trafficTo := time.Now()

	// Wait until every record is in (spans pair within --pair-wait) and
	// scraped: the graph stops changing; read it, let Prometheus scrape
	// twice, and take that only if no record came meanwhile (on a loaded
	// machine spans can still trickle in after a quiet spell).
	window := url.Values{"window": {"5m"}, "namespace": {"bookinfo"}}
	total := func() (n uint64) {
		for _, e := range apiGraphOf(t, ml, url.Values{"window": {"5m"}, "view": {"workload"}}) {
			n += e.Requests
		}
		return n
	}
	for prev := uint64(0); ; {
		time.Sleep(3 * time.Second)
		n := total()
		if n == prev && n > 0 {
			break
		}
		prev = n
	}
	byView := func(view string) map[string]e2eEdge {
		q := url.Values{"view": {view}}
		for k, v := range window {
			q[k] = v
		}
		return apiGraphOf(t, ml, q)
	}
	var workloads, versions, services map[string]e2eEdge
	var end time.Time
	for attempt := 1; ; attempt++ {
		n := total()
		workloads, versions, services = byView("workload"), byView("version"), byView("service")
		s := promtest.LastScrapeAfter(t, p, time.Now(), 30*time.Second)
		end = promtest.LastScrapeAfter(t, p, s.Add(time.Millisecond), 30*time.Second)
		if total() == n {
			break
		}
		if attempt == 10 {
			t.Fatal("records still arriving after 10 tries")
		}
		t.Logf("records arrived while reading the graph; again")
	}
	if len(workloads) < 6 {
		t.Fatalf("the graph has %d workload edges: %v", len(workloads), workloads)
	}
	st := d.Stats()
	t.Logf("demo: %d requests sent, %d errors; graph: %d workload edges", st.Sent, st.Errors, len(workloads))

	t.Run("kiali", func(t *testing.T) { checkKiali(t, p, end, workloads) })
	t.Run("mesh dashboard", func(t *testing.T) { checkMeshDashboard(t, p, end, workloads, services) })
	r := promv1.Range{Start: trafficFrom.Add(-5 * time.Second), End: trafficTo.Add(10 * time.Second), Step: every / 10}
	t.Run("service dashboard", func(t *testing.T) { checkServiceDashboard(t, p, r, services) })
	t.Run("workload dashboard", func(t *testing.T) { checkWorkloadDashboard(t, p, r, versions) })

	// The loop: meshlens reads its own metrics back through Prometheus.
	t.Run("source=prometheus", func(t *testing.T) {
		for view, live := range map[string]map[string]e2eEdge{"version": versions, "workload": workloads} {
			q := url.Values{"view": {view}, "source": {"prometheus"}, "end": {end.UTC().Format(time.RFC3339Nano)}}
			for k, v := range window {
				q[k] = v
			}
			prom := apiGraphOf(t, ml, q)
			if len(prom) != len(live) {
				t.Errorf("%s view: %d edges from Prometheus, %d live", view, len(prom), len(live))
			}
			for k, w := range live {
				g := prom[k]
				if g.Requests != w.Requests || g.Errors != w.Errors || !within(g.P50Ms, w.P50Ms, 1e-6) ||
					!within(g.P90Ms, w.P90Ms, 1e-6) || !within(g.P99Ms, w.P99Ms, 1e-6) || fmt.Sprint(g.Codes) != fmt.Sprint(w.Codes) || fmt.Sprint(g.GRPC) != fmt.Sprint(w.GRPC) {
					t.Errorf("%s view, edge %s:\nprometheus %+v\n      live %+v", view, k, g, w)
				}
			}
		}
	})
}

// Kiali's graph queries, as Kiali builds them for a namespace graph
// (kiali/kiali at d733a096e02e, graph/telemetry/istio/istio.go
// buildNamespaceTrafficMap: queries 0, 2 and 3 of istio_requests_total;
// appender/response_time.go with a quantile; appender/security_policy.go;
// the response code and node handling of util/util.go), for namespace
// bookinfo and a 300 s duration.
const (
	kialiGroupBy    = "source_cluster,source_workload_namespace,source_workload,source_canonical_service,source_canonical_revision,destination_cluster,destination_service_namespace,destination_service,destination_service_name,destination_workload_namespace,destination_workload,destination_canonical_service,destination_canonical_revision,request_protocol,response_code,grpc_response_status,response_flags"
	kialiRTGroupBy  = "le,source_cluster,source_workload_namespace,source_workload,source_canonical_service,source_canonical_revision,destination_cluster,destination_service_namespace,destination_service,destination_service_name,destination_workload_namespace,destination_workload,destination_canonical_service,destination_canonical_revision,request_protocol"
	kialiSecGroupBy = "source_cluster,source_workload_namespace,source_workload,source_canonical_service,source_canonical_revision,source_principal,destination_cluster,destination_service_namespace,destination_service_name,destination_workload_namespace,destination_workload,destination_canonical_service,destination_canonical_revision,destination_principal,connection_security_policy"
)

var kialiTraffic = []string{
	`sum(rate(istio_requests_total{reporter="source",source_workload_namespace!="bookinfo",destination_workload_namespace="unknown",destination_workload="unknown",destination_service=~"^.+\\.bookinfo\\..+$"} [300s])) by (` + kialiGroupBy + `) > 0`,
	`sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="bookinfo"} [300s])) by (` + kialiGroupBy + `) > 0`,
	`sum(rate(istio_requests_total{reporter="source",source_workload_namespace="bookinfo"} [300s])) by (` + kialiGroupBy + `) > 0`,
}

var kialiResponseTime = []string{
	`histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_service_namespace="bookinfo"}[300s])) by (` + kialiRTGroupBy + `)) > 0`,
	`histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="source",source_workload_namespace="bookinfo"}[300s])) by (` + kialiRTGroupBy + `)) > 0`,
}

var kialiSecurity = []string{
	`(sum(rate(istio_requests_total{reporter="destination",source_workload_namespace!="bookinfo",destination_service_namespace="bookinfo"}[300s])) by (` + kialiSecGroupBy + `) > 0)`,
	`(sum(rate(istio_requests_total{reporter="destination",source_workload_namespace="bookinfo"}[300s])) by (` + kialiSecGroupBy + `) > 0)`,
}

// kialiEdge is a workload graph edge as Kiali's traffic map builds it.
type kialiEdge struct {
	rps, errRPS, mtlsRPS, secRPS float64
	p99                          float64
	seen                         map[string]bool // Kiali's time-series hash: the same series from two queries counts once
}

func checkKiali(t *testing.T, p promv1.API, end time.Time, graph map[string]e2eEdge) {
	edges := map[string]*kialiEdge{}
	// A node is a workload; Kiali shows a destination whose workload is
	// unknown as its service, and so does meshlens' workload view.
	node := func(m model.Metric, side string) string {
		wl, ns := string(m[model.LabelName(side+"_workload")]), string(m[model.LabelName(side+"_workload_namespace")])
		switch {
		case side == "source" && wl == "unknown":
			return "unknown"
		case wl == "unknown":
			return string(m["destination_service_namespace"]) + "/" + string(m["destination_service_name"])
		}
		return ns + "/" + wl
	}
	edge := func(m model.Metric) *kialiEdge {
		k := node(m, "source") + " -> " + node(m, "destination")
		e := edges[k]
		if e == nil {
			e = &kialiEdge{seen: map[string]bool{}}
			edges[k] = e
		}
		return e
	}
	for _, q := range kialiTraffic {
		for _, s := range promQuery(t, p, q, end) {
			m := s.Metric
			e := edge(m)
			// Kiali's HandleResponseCode: "-" for no response, else the
			// gRPC status of a gRPC request without an HTTP error.
			code := string(m["response_code"])
			grpc, grpcOK := m["grpc_response_status"]
			isGRPCStatus := false
			switch {
			case code == "0":
				code = "-"
			case m["request_protocol"] == "grpc" && grpcOK && code < "400":
				code, isGRPCStatus = string(grpc), true
			}
			hash := strings.Join([]string{string(m["source_cluster"]), string(m["source_workload_namespace"]), string(m["source_workload"]), string(m["source_canonical_service"]), string(m["source_canonical_revision"]),
				string(m["destination_cluster"]), string(m["destination_service_namespace"]), string(m["destination_service_name"]), string(m["destination_workload_namespace"]), string(m["destination_workload"]),
				string(m["destination_canonical_service"]), string(m["destination_canonical_revision"]), code, string(m["response_flags"]), string(m["destination_service"])}, ":")
			if e.seen[hash] {
				continue
			}
			e.seen[hash] = true
			v := float64(s.Value)
			e.rps += v
			// Errors as meshlens counts them: no response, 5xx, a gRPC
			// status other than OK.
			if code == "-" || isGRPCStatus && code != "0" || !isGRPCStatus && strings.HasPrefix(code, "5") {
				e.errRPS += v
			}
		}
	}
	for _, q := range kialiResponseTime { // destination first: it wins
		for _, s := range promQuery(t, p, q, end) {
			if e := edge(s.Metric); e.p99 == 0 {
				e.p99 = float64(s.Value)
			}
		}
	}
	for _, q := range kialiSecurity {
		for _, s := range promQuery(t, p, q, end) {
			e := edge(s.Metric)
			e.secRPS += float64(s.Value)
			if s.Metric["connection_security_policy"] == "mutual_tls" {
				e.mtlsRPS += float64(s.Value)
			}
		}
	}
	if len(edges) != len(graph) {
		t.Errorf("Kiali's graph has %d edges, meshlens' %d", len(edges), len(graph))
	}
	for k, w := range graph {
		g := edges[k]
		if g == nil {
			t.Errorf("edge %s: not in Kiali's graph", k)
			continue
		}
		ok := within(g.rps, w.RPS, 0.05) && within(g.errRPS/g.rps, w.ErrorRate, 0.05) && sameBucket(g.p99, w.P99Ms) && within(g.mtlsRPS/g.secRPS, w.MTLS, 0.05)
		t.Logf("%-45s kiali rps %.3f err %.4f p99 %.1f mtls %.2f | meshlens rps %.3f err %.4f p99 %.1f mtls %.2f", k, g.rps, g.errRPS/g.rps, g.p99, g.mtlsRPS/g.secRPS, w.RPS, w.ErrorRate, w.P99Ms, w.MTLS)
		if !ok {
			t.Errorf("edge %s: Kiali rps %v, error rate %v, p99 %v ms, mTLS %v; meshlens %+v", k, g.rps, g.errRPS/g.rps, g.p99, g.mtlsRPS/g.secRPS, w)
		}
	}
}

// Istio's Mesh dashboard (istio/istio at 86c9f01fd735,
// manifests/addons/dashboards/istio-mesh-dashboard.gen.json, panels Traffic
// Volume, Success Rate, 5xxs and HTTP/gRPC Workloads), with
// $__rate_interval the graph's window.
var meshDashboard = struct {
	volume, success, fiveXX, workloadRPS, workloadP50, workloadP90, workloadP99, workloadSuccess string
}{
	volume:          `round(sum (rate(istio_requests_total{reporter=~"source|waypoint"}[$__rate_interval])), 0.01)`,
	success:         `sum (rate(istio_requests_total{reporter=~"source|waypoint",response_code!~"5.."}[$__rate_interval])) / sum (rate(istio_requests_total{reporter=~"source|waypoint"}[$__rate_interval]))`,
	fiveXX:          `round(sum (rate(istio_requests_total{reporter=~"source|waypoint",response_code=~"5.."}[$__rate_interval])), 0.01)or vector(0)`,
	workloadRPS:     `label_join(sum by (destination_workload,destination_workload_namespace,destination_service) (rate(istio_requests_total{reporter=~"source|waypoint"}[$__rate_interval])), "destination_workload_var", ".", "destination_workload", "destination_workload_namespace")`,
	workloadP50:     `label_join(histogram_quantile(0.5, sum by (le,destination_workload,destination_workload_namespace) (rate(istio_request_duration_milliseconds_bucket{reporter=~"source|waypoint"}[$__rate_interval]))), "destination_workload_var", ".", "destination_workload", "destination_workload_namespace")`,
	workloadP90:     `label_join(histogram_quantile(0.9, sum by (le,destination_workload,destination_workload_namespace) (rate(istio_request_duration_milliseconds_bucket{reporter=~"source|waypoint"}[$__rate_interval]))), "destination_workload_var", ".", "destination_workload", "destination_workload_namespace")`,
	workloadP99:     `label_join(histogram_quantile(0.99, sum by (le,destination_workload,destination_workload_namespace) (rate(istio_request_duration_milliseconds_bucket{reporter=~"source|waypoint"}[$__rate_interval]))), "destination_workload_var", ".", "destination_workload", "destination_workload_namespace")`,
	workloadSuccess: `label_join(sum by (destination_workload,destination_workload_namespace) (rate(istio_requests_total{reporter=~"source|waypoint",response_code!~"5.."}[$__rate_interval]))/sum by (destination_workload,destination_workload_namespace) (rate(istio_requests_total{reporter=~"source|waypoint"}[$__rate_interval])), "destination_workload_var", ".", "destination_workload", "destination_workload_namespace")`,
}

// toWorkload is each destination workload's inbound traffic from callers
// in the mesh (the dashboard reads source reports), as one edge: requests
// and rates summed over the workload view's edges; latency quantiles from
// the one edge, or, for a workload with several callers, from the service
// view edge that merges them (latency histograms included) when it holds
// exactly those requests.
func toWorkload(workloads, services map[string]e2eEdge) map[string]e2eEdge {
	out := map[string]e2eEdge{}
	callers := map[string]int{}
	for _, e := range workloads {
		wl := e.TargetWorkload
		if wl == "" {
			wl = "unknown" // the dashboard's row of destinations whose workload is unknown
		}
		if e.Source == "unknown" {
			continue
		}
		o := out[wl]
		if callers[wl] == 0 {
			o = e
			o.Codes = map[string]uint64{}
		} else {
			o.Requests += e.Requests
			o.Errors += e.Errors
			o.RPS += e.RPS
			o.P50Ms, o.P90Ms, o.P99Ms = math.NaN(), math.NaN(), math.NaN()
		}
		for c, n := range e.Codes {
			o.Codes[c] += n
		}
		callers[wl]++
		out[wl] = o
	}
	for wl, o := range out {
		if callers[wl] < 2 {
			continue
		}
		for _, e := range services {
			if e.Target == "bookinfo/"+strings.TrimSuffix(wl, "-v1") && e.Source != "unknown" && e.Requests == o.Requests {
				o.P50Ms, o.P90Ms, o.P99Ms = e.P50Ms, e.P90Ms, e.P99Ms
				out[wl] = o
			}
		}
	}
	return out
}

func checkMeshDashboard(t *testing.T, p promv1.API, end time.Time, workloads, services map[string]e2eEdge) {
	vars := map[string]string{"__rate_interval": "5m"}
	var rps, requests, nonFiveXX float64
	for _, e := range workloads {
		if e.Source != "unknown" { // source reports only: a caller outside the mesh has no sidecar
			rps += e.RPS
			requests += float64(e.Requests)
			nonFiveXX += float64(e.nonFiveXX())
		}
	}
	one := func(q string) float64 {
		v := promQuery(t, p, expand(q, vars), end)
		if len(v) != 1 {
			t.Fatalf("%s: %d results", q, len(v))
		}
		return float64(v[0].Value)
	}
	if got := one(meshDashboard.volume); !within(got, rps, 0.05) {
		t.Errorf("Traffic Volume %v, meshlens %v rps", got, rps)
	} else {
		t.Logf("Traffic Volume %v, meshlens %.3f rps", got, rps)
	}
	if got := one(meshDashboard.success); !within(got, nonFiveXX/requests, 0.05) {
		t.Errorf("Success Rate %v, meshlens %v", got, nonFiveXX/requests)
	}
	if got := one(meshDashboard.fiveXX); !within(got, (requests-nonFiveXX)/300, 0.05) {
		t.Errorf("5xxs %v, meshlens %v", got, (requests-nonFiveXX)/300)
	}
	want := toWorkload(workloads, services)
	// Rows by destination workload; the request rows are also by
	// destination service, so the "unknown" workload has one per service:
	// they add up.
	byWorkload := func(q string) map[string]float64 {
		out := map[string]float64{}
		for _, s := range promQuery(t, p, expand(q, vars), end) {
			out[string(s.Metric["destination_workload"])] += float64(s.Value)
		}
		return out
	}
	gotRPS, p50, p90, p99, success := byWorkload(meshDashboard.workloadRPS), byWorkload(meshDashboard.workloadP50), byWorkload(meshDashboard.workloadP90), byWorkload(meshDashboard.workloadP99), byWorkload(meshDashboard.workloadSuccess)
	if len(want) < 6 || len(gotRPS) != len(want) {
		t.Fatalf("meshlens' graph has inbound traffic from the mesh for %d workloads (want 6 or more), the dashboard %d rows: %v", len(want), len(gotRPS), want)
	}
	for wl, w := range want {
		ok := within(gotRPS[wl], w.RPS, 0.05) && within(success[wl], float64(w.nonFiveXX())/float64(w.Requests), 0.05) &&
			(math.IsNaN(w.P99Ms) || sameBucket(p50[wl], w.P50Ms) && sameBucket(p90[wl], w.P90Ms) && sameBucket(p99[wl], w.P99Ms))
		t.Logf("HTTP/gRPC Workloads %-15s rps %.3f p50 %.1f p90 %.1f p99 %.1f success %.3f | meshlens rps %.3f p50 %.1f p90 %.1f p99 %.1f",
			wl, gotRPS[wl], p50[wl], p90[wl], p99[wl], success[wl], w.RPS, w.P50Ms, w.P90Ms, w.P99Ms)
		if !ok {
			t.Errorf("HTTP/gRPC Workloads row %s disagrees with meshlens %+v", wl, w)
		}
	}
}

// Istio's Service dashboard (the same directory,
// istio-service-dashboard.json: Client and Server Request Volume, Success
// Rate and Duration, Incoming Requests By Source And Response Code):
// instantaneous rates (irate), as Grafana draws them over time, with
// $__rate_interval what Grafana makes of a 1 s scrape interval.
var serviceDashboard = struct {
	clientVolume, clientSuccess, clientP50, clientP99, serverVolume, serverP99, incomingBySource string
}{
	clientVolume:     `round(sum(irate(istio_requests_total{reporter=~"$qrep",destination_service="$service"}[$__rate_interval])), 0.001)`,
	clientSuccess:    `sum(irate(istio_requests_total{reporter=~"$qrep",destination_service="$service",response_code!~"5.*"}[$__rate_interval])) / (sum(irate(istio_requests_total{reporter=~"$qrep",destination_service="$service"}[$__rate_interval])) or on () vector(1))`,
	clientP50:        `(histogram_quantile(0.50, sum(irate(istio_request_duration_milliseconds_bucket{reporter=~"$qrep",destination_service="$service"}[$__rate_interval])) by (le)) / 1000) or histogram_quantile(0.50, sum(irate(istio_request_duration_seconds_bucket{reporter=~"$qrep",destination_service="$service"}[$__rate_interval])) by (le))`,
	clientP99:        `(histogram_quantile(0.99, sum(irate(istio_request_duration_milliseconds_bucket{reporter=~"$qrep",destination_service="$service"}[$__rate_interval])) by (le)) / 1000) or histogram_quantile(0.99, sum(irate(istio_request_duration_seconds_bucket{reporter=~"$qrep",destination_service="$service"}[$__rate_interval])) by (le))`,
	serverVolume:     `round(sum(irate(istio_requests_total{reporter="destination",destination_service="$service"}[$__rate_interval])), 0.001)`,
	serverP99:        `(histogram_quantile(0.99, sum(irate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_service="$service"}[$__rate_interval])) by (le)) / 1000) or histogram_quantile(0.99, sum(irate(istio_request_duration_seconds_bucket{reporter="destination",destination_service="$service"}[$__rate_interval])) by (le))`,
	incomingBySource: `round(sum(irate(istio_requests_total{connection_security_policy!="mutual_tls", destination_service="$service", reporter=~"$qrep", source_workload=~"$srcwl", source_workload_namespace=~"$srcns"}[$__rate_interval])) by (source_workload, source_workload_namespace, response_code), 0.001)`,
}

// integral is the requests a volume panel shows over its range (Σ rate ×
// step), and the request-weighted mean of a ratio panel drawn beside it.
func integral(m model.Matrix, step time.Duration) float64 {
	var n float64
	for _, s := range m {
		for _, v := range s.Values {
			n += float64(v.Value) * step.Seconds()
		}
	}
	return n
}

func weightedMean(ratio, volume model.Matrix) float64 {
	if len(ratio) != 1 || len(volume) != 1 {
		return math.NaN()
	}
	w := map[model.Time]float64{}
	for _, v := range volume[0].Values {
		w[v.Timestamp] = float64(v.Value)
	}
	var num, den float64
	for _, v := range ratio[0].Values {
		if math.IsNaN(float64(v.Value)) { // no requests at that step: 0/0
			continue
		}
		num += float64(v.Value) * w[v.Timestamp]
		den += w[v.Timestamp]
	}
	return num / den
}

// busyPoints are a latency panel's points (in ms) where its volume panel
// shows traffic, sorted.
func busyPoints(q, volume model.Matrix, scale float64) []float64 {
	if len(q) != 1 || len(volume) != 1 {
		return nil
	}
	busy := map[model.Time]bool{}
	for _, v := range volume[0].Values {
		busy[v.Timestamp] = v.Value > 0
	}
	var xs []float64
	for _, v := range q[0].Values {
		if busy[v.Timestamp] && !math.IsNaN(float64(v.Value)) {
			xs = append(xs, float64(v.Value)*scale)
		}
	}
	sort.Float64s(xs)
	return xs
}

// spans: the window's quantile lies within a bucket of the range an
// instantaneous latency panel draws while there is traffic. An irate()
// panel shows the last scrape interval only: a handful of requests, whose
// p50 jumps between the modes of a bimodal service (reviews: v1 fast, v2
// and v3 slow) and whose p99 is near their slowest, so its points scatter
// around the window's quantile rather than equal it. The rate() panels
// (Mesh dashboard, Kiali) are compared within a bucket exactly.
func spans(points []float64, want float64) bool {
	if len(points) == 0 {
		return false
	}
	b := mesh.BucketIndex(want)
	return b >= mesh.BucketIndex(points[0])-1 && b <= mesh.BucketIndex(points[len(points)-1])+1
}

func describe(points []float64) string {
	if len(points) == 0 {
		return "no points"
	}
	return fmt.Sprintf("min %.1f median %.1f max %.1f", points[0], points[len(points)/2], points[len(points)-1])
}

func checkServiceDashboard(t *testing.T, p promv1.API, r promv1.Range, services map[string]e2eEdge) {
	w := services["bookinfo/productpage -> bookinfo/reviews"] // every request to reviews
	if w.Requests == 0 {
		t.Fatalf("no productpage -> reviews in the graph: %v", services)
	}
	for _, qrep := range []string{"destination", "source"} {
		vars := map[string]string{"qrep": qrep, "service": "reviews.bookinfo.svc.cluster.local", "srcwl": "productpage-v1", "srcns": "bookinfo", "__rate_interval": "4s"}
		run := func(q string) model.Matrix { return promRange(t, p, expand(q, vars), r) }
		volume := run(serviceDashboard.clientVolume)
		got := integral(volume, r.Step)
		success := weightedMean(run(serviceDashboard.clientSuccess), volume)
		p50, p99 := busyPoints(run(serviceDashboard.clientP50), volume, 1000), busyPoints(run(serviceDashboard.clientP99), volume, 1000)
		t.Logf("reporter %s: Client Request Volume over the run %.1f requests, success %.3f, p50 %s, p99 %s ms | meshlens %d requests, success %.3f, p50 %.1f p99 %.1f ms",
			qrep, got, success, describe(p50), describe(p99), w.Requests, float64(w.nonFiveXX())/float64(w.Requests), w.P50Ms, w.P99Ms)
		if !within(got, float64(w.Requests), 0.05) || !within(success, float64(w.nonFiveXX())/float64(w.Requests), 0.05) || !spans(p50, w.P50Ms) || !spans(p99, w.P99Ms) {
			t.Errorf("Service dashboard (reporter %s) disagrees with meshlens", qrep)
		}
		if qrep == "destination" {
			sv := run(serviceDashboard.serverVolume)
			if got := integral(sv, r.Step); !within(got, float64(w.Requests), 0.05) {
				t.Errorf("Server Request Volume over the run %.1f, meshlens %d", got, w.Requests)
			}
			if got := busyPoints(run(serviceDashboard.serverP99), sv, 1000); !spans(got, w.P99Ms) {
				t.Errorf("Server Request Duration p99 %s ms, meshlens %.1f", describe(got), w.P99Ms)
			}
		}
		by := run(serviceDashboard.incomingBySource)
		var n float64
		for _, s := range by {
			if s.Metric["source_workload"] != "productpage-v1" {
				t.Errorf("Incoming Requests By Source: unexpected source %v", s.Metric)
			}
			n += integral(model.Matrix{s}, r.Step)
		}
		if !within(n, float64(w.Requests), 0.05) {
			t.Errorf("Incoming Requests By Source And Response Code: %.1f, meshlens %d", n, w.Requests)
		}
	}
}

// Istio's Workload dashboard (istio-workload-dashboard.json: Incoming
// Request Volume, Success Rate and Duration, Outgoing Requests By
// Destination And Response Code).
var workloadDashboard = struct {
	inVolume, inSuccess, inP99, outByDestination string
}{
	inVolume:         `round(sum(irate(istio_requests_total{reporter=~"$qrep",destination_workload_namespace=~"$namespace",destination_workload=~"$workload"}[$__rate_interval])), 0.001)`,
	inSuccess:        `sum(irate(istio_requests_total{reporter=~"$qrep",destination_workload_namespace=~"$namespace",destination_workload=~"$workload",response_code!~"5.*"}[$__rate_interval])) / sum(irate(istio_requests_total{reporter=~"$qrep",destination_workload_namespace=~"$namespace",destination_workload=~"$workload"}[$__rate_interval]))`,
	inP99:            `(histogram_quantile(0.99, sum(irate(istio_request_duration_milliseconds_bucket{reporter=~"$qrep",destination_workload=~"$workload", destination_workload_namespace=~"$namespace"}[$__rate_interval])) by (le)) / 1000) or histogram_quantile(0.99, sum(irate(istio_request_duration_seconds_bucket{reporter=~"$qrep",destination_workload=~"$workload", destination_workload_namespace=~"$namespace"}[$__rate_interval])) by (le))`,
	outByDestination: `round(sum(irate(istio_requests_total{destination_principal!~"spiffe.*", source_workload_namespace=~"$namespace", source_workload=~"$workload", reporter="source", destination_service=~"$dstsvc"}[$__rate_interval])) by (destination_service, response_code), 0.001)`,
}

func checkWorkloadDashboard(t *testing.T, p promv1.API, r promv1.Range, versions map[string]e2eEdge) {
	in := versions["bookinfo/productpage/v1 -> bookinfo/reviews/v3"]
	out := versions["bookinfo/reviews/v3 -> bookinfo/ratings/v1"]
	if in.Requests == 0 || out.Requests == 0 {
		t.Fatalf("reviews v3 has no traffic in the graph: %v", versions)
	}
	for _, qrep := range []string{"destination", "source"} {
		vars := map[string]string{"qrep": qrep, "namespace": "bookinfo", "workload": "reviews-v3", "dstsvc": "ratings.bookinfo.svc.cluster.local", "__rate_interval": "4s"}
		run := func(q string) model.Matrix { return promRange(t, p, expand(q, vars), r) }
		volume := run(workloadDashboard.inVolume)
		got := integral(volume, r.Step)
		success := weightedMean(run(workloadDashboard.inSuccess), volume)
		p99 := busyPoints(run(workloadDashboard.inP99), volume, 1000)
		t.Logf("reporter %s: reviews-v3 Incoming Request Volume %.1f requests, success %.3f, p99 %s ms | meshlens %d requests, p99 %.1f ms",
			qrep, got, success, describe(p99), in.Requests, in.P99Ms)
		if !within(got, float64(in.Requests), 0.05) || !within(success, float64(in.nonFiveXX())/float64(in.Requests), 0.05) || !spans(p99, in.P99Ms) {
			t.Errorf("Workload dashboard (reporter %s) disagrees with meshlens", qrep)
		}
	}
	vars := map[string]string{"namespace": "bookinfo", "workload": "reviews-v3", "dstsvc": "ratings.bookinfo.svc.cluster.local", "__rate_interval": "4s"}
	var n float64
	for _, s := range promRange(t, p, expand(workloadDashboard.outByDestination, vars), r) {
		n += integral(model.Matrix{s}, r.Step)
	}
	if !within(n, float64(out.Requests), 0.05) {
		t.Errorf("Outgoing Requests By Destination And Response Code: %.1f, meshlens %d", n, out.Requests)
	}
}

func TestServeIstioMetricsFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--istio-metrics-max-series", "-1"}, "--istio-metrics-max-series -1"},
		{[]string{"--istio-metrics-expiry", "1s"}, "--istio-metrics-expiry 1s: must be at least 10s"},
		{[]string{"--istio-metrics-cluster", ""}, "--istio-metrics-cluster"},
	} {
		if _, err := app.LoadConfig(append([]string{"--data-dir", t.TempDir()}, tc.args...), io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("serve %v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
	cfg, err := app.LoadConfig([]string{"--domain-suffix", "corp.example", "--istio-metrics-max-series", "0"}, io.Discard)
	if err != nil || cfg.IstioMetrics.Enabled() || cfg.IstioMetrics.DomainSuffix != "corp.example" {
		t.Fatalf("config %+v, %v", cfg.IstioMetrics, err)
	}
}
