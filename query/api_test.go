package query

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/store"
	"github.com/meshlens/meshlens/store/storetest"
)

type apiFixture struct {
	srv  *httptest.Server
	st   *store.Store
	live *graph.Live
	now  time.Time
	recs []mesh.Record
}

// newAPI serves the routes over real HTTP on a real ClickHouse with the
// test traffic in both the live graph and the store.
func newAPI(t *testing.T) *apiFixture {
	t.Helper()
	return newAPIOn(t, storetest.Open(t))
}

// newAPIOn is newAPI on a store of the caller's choice (one server or the
// cluster).
func newAPIOn(t *testing.T, st *store.Store) *apiFixture {
	t.Helper()
	now := time.Now().Truncate(time.Second)
	clock := func() time.Time { return now }
	live, err := graph.New(graph.Config{Now: clock}, discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	recs := testTraffic(now.Add(-2 * time.Second))
	for i := range recs {
		recs[i].TraceID = fmt.Sprintf("%032x", i+1)
		recs[i].SpanID = fmt.Sprintf("%016x", i+1)
	}
	ctx := context.Background()
	if err := live.ConsumeRecords(ctx, recs); err != nil {
		t.Fatal(err)
	}
	live.Refresh()
	if err := st.InsertRecords(ctx, recs); err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	RegisterRoutes(e.Group("/api/v1"), Deps{Live: live, Store: st, Logger: discard(), Now: clock})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return &apiFixture{srv: srv, st: st, live: live, now: now, recs: recs}
}

func (f *apiFixture) get(t *testing.T, path string, out any) int {
	t.Helper()
	resp, err := http.Get(f.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("GET %s: decode: %v", path, err)
		}
	}
	return resp.StatusCode
}

func TestGraphRouteKeepsTheDocumentedJSONNames(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) { testGraphRouteKeepsTheDocumentedJSONNames(t, newAPIOn(t, b.Open(t))) })
	}
}

func testGraphRouteKeepsTheDocumentedJSONNames(t *testing.T, f *apiFixture) {
	for _, q := range []string{
		"/api/v1/graph?window=5m&view=version",
		"/api/v1/graph?window=5m&view=version&source=clickhouse",
		"/api/v1/graph?window=5m&view=version&end=" + url.QueryEscape(f.now.Format(time.RFC3339)),
	} {
		var body map[string]any
		if code := f.get(t, q, &body); code != http.StatusOK {
			t.Fatalf("GET %s = %d %v", q, code, body)
		}
		nodes, _ := body["nodes"].([]any)
		edges, _ := body["edges"].([]any)
		if len(nodes) != 6 || len(edges) != 6 {
			t.Fatalf("GET %s: %d nodes, %d edges; want 6, 6", q, len(nodes), len(edges))
		}
		for _, k := range []string{"id", "namespace", "service", "version", "workload"} {
			if _, ok := nodes[0].(map[string]any)[k]; !ok {
				t.Errorf("GET %s: node has no %q", q, k)
			}
		}
		for _, k := range []string{"source", "target", "requests", "rps", "errorRate", "p50Ms", "p90Ms", "p99Ms", "codes", "mtls"} {
			if _, ok := edges[0].(map[string]any)[k]; !ok {
				t.Errorf("GET %s: edge has no %q", q, k)
			}
		}
	}
	var g graph.Graph
	f.get(t, "/api/v1/graph?window=1m&view=version&namespace=shop", &g)
	for _, e := range g.Edges {
		if e.Source == "shop/a/v1" && e.Target == "shop/b/v1" && (e.Requests != 93 || e.Codes["503"] != 3) {
			t.Fatalf("a -> b v1 = %+v", e)
		}
	}
}

func TestBadParametersGet400NamingTheParameter(t *testing.T) {
	f := newAPI(t)
	tests := []struct{ path, param string }{
		{"/api/v1/graph?window=forever", "window"},
		{"/api/v1/graph?window=1s", "window"},
		{"/api/v1/graph?window=2h&source=live", "window"},
		{"/api/v1/graph?view=pods", "view"},
		{"/api/v1/graph?end=yesterday", "end"},
		{"/api/v1/graph?namespace=a%20b", "namespace"},
		{"/api/v1/graph?source=graphite", "source"},
		{"/api/v1/graph?source=prometheus", "source"},
		{"/api/v1/graph/paths?to=x", "from"},
		{"/api/v1/services/shop/b?range=-1h", "range"},
		{"/api/v1/logs?limit=0", "limit"},
		{"/api/v1/logs?code=abc", "code"},
		{"/api/v1/logs?traceId=xyz", "traceId"},
		{"/api/v1/logs?cursor=!!", "cursor"},
		{"/api/v1/logs?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "since"},
		{"/api/v1/traces?minDurationMs=-3", "minDurationMs"},
		{"/api/v1/traces/not-hex", "traceId"},
		{"/api/v1/services/shop/b/versions/v1/stats?window=1y", "window"},
	}
	for _, tt := range tests {
		var body apiError
		if code := f.get(t, tt.path, &body); code != http.StatusBadRequest || body.Parameter != tt.param || body.Error == "" {
			t.Errorf("GET %s = %d %+v, want 400 naming %q", tt.path, code, body, tt.param)
		}
	}
}

func TestImpactAndPathRoutes(t *testing.T) {
	f := newAPI(t)
	var imp graph.Impact
	if code := f.get(t, "/api/v1/graph/nodes/"+url.PathEscape("shop/b")+"/impact?window=5m", &imp); code != http.StatusOK {
		t.Fatalf("impact = %d", code)
	}
	if imp.BlastRadius != 3 || imp.DependencyDepth != 1 || strings.Join(imp.AffectedCallers, ",") != "edge/gateway,shop/a,unknown" {
		t.Fatalf("impact = %+v", imp)
	}
	var body apiError
	if code := f.get(t, "/api/v1/graph/nodes/nope/impact", &body); code != http.StatusNotFound {
		t.Fatalf("impact of missing node = %d", code)
	}
	var p struct{ Path []string }
	f.get(t, "/api/v1/graph/paths?from=edge/gateway&to=shop/c", &p)
	if strings.Join(p.Path, ",") != "edge/gateway,shop/a,shop/b,shop/c" {
		t.Fatalf("path = %v", p.Path)
	}
}

func TestServiceSeriesPerVersionFromLiveAndHistory(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) { testServiceSeriesPerVersionFromLiveAndHistory(t, newAPIOn(t, b.Open(t))) })
	}
}

func testServiceSeriesPerVersionFromLiveAndHistory(t *testing.T, f *apiFixture) {
	for _, src := range []string{"live", "clickhouse"} {
		var body struct {
			Step     string
			Versions []graph.Series
		}
		if code := f.get(t, "/api/v1/services/shop/b?range=10m&source="+src, &body); code != http.StatusOK {
			var e apiError
			f.get(t, "/api/v1/services/shop/b?range=10m&source="+src, &e)
			t.Fatalf("%s: %d %+v", src, code, e)
		}
		if len(body.Versions) != 2 || body.Versions[0].Version != "v1" || body.Versions[1].Version != "v2" {
			t.Fatalf("%s: versions %+v", src, body.Versions)
		}
		var v2, errs float64
		for _, p := range body.Versions[1].Points {
			v2 += float64(p.Requests)
			errs += p.ErrorRate * float64(p.Requests)
		}
		if v2 != 60 || int(errs+0.5) != 20 {
			t.Fatalf("%s: v2 requests %v errors %v, want 60 and 20 (step %s)", src, v2, errs, body.Step)
		}
	}
	var svcs struct{ Services []graph.Service }
	f.get(t, "/api/v1/services?window=5m", &svcs)
	if len(svcs.Services) != 4 {
		t.Fatalf("services = %+v", svcs.Services)
	}
	var vs graph.VersionStats
	f.get(t, "/api/v1/services/shop/b/versions/v2/stats?window=1m", &vs)
	if vs.Requests != 60 || vs.Errors != 20 || len(vs.SamplesMs) != 60 {
		t.Fatalf("version stats = %+v", vs)
	}
}

func TestLogsPageNewestFirstWithAnOpaqueCursor(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) { testLogsPageNewestFirstWithAnOpaqueCursor(t, newAPIOn(t, b.Open(t))) })
	}
}

func testLogsPageNewestFirstWithAnOpaqueCursor(t *testing.T, f *apiFixture) {
	var all []LogEntry
	seen := map[string]bool{}
	path := "/api/v1/logs?service=b&limit=30"
	for pages := 0; pages < 10; pages++ {
		var page LogPage
		if code := f.get(t, path, &page); code != http.StatusOK {
			t.Fatalf("GET %s = %d", path, code)
		}
		for _, e := range page.Entries {
			if seen[e.SpanID] {
				t.Fatalf("span %s on two pages", e.SpanID)
			}
			seen[e.SpanID] = true
		}
		all = append(all, page.Entries...)
		if page.Cursor == "" {
			break
		}
		path = "/api/v1/logs?service=b&limit=30&cursor=" + page.Cursor
	}
	if len(all) != 153 {
		t.Fatalf("%d entries for service b, want 153", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].Time.After(all[i-1].Time) {
			t.Fatalf("entry %d is newer than entry %d", i, i-1)
		}
	}
	var errs LogPage
	f.get(t, "/api/v1/logs?code=503&version=v1", &errs)
	if len(errs.Entries) != 3 || errs.Cursor != "" || errs.Entries[0].Flags != "UF" {
		t.Fatalf("503s of b v1 = %+v", errs)
	}
	var byTrace LogPage
	f.get(t, "/api/v1/logs?traceId="+f.recs[0].TraceID, &byTrace)
	if len(byTrace.Entries) != 1 || byTrace.Entries[0].TraceID != f.recs[0].TraceID {
		t.Fatalf("by trace = %+v", byTrace)
	}
}

func TestTraceRoutesBuildTheSpanTreeAndSearch(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) { testTraceRoutesBuildTheSpanTreeAndSearch(t, newAPIOn(t, b.Open(t))) })
	}
}

func testTraceRoutesBuildTheSpanTreeAndSearch(t *testing.T, f *apiFixture) {
	at := f.now.Add(-time.Second)
	tid := "4bf92f3577b34da6a3ce929d0e0e4736"
	spans := []store.Span{
		{Start: at, TraceID: tid, SpanID: "01", Name: "GET /", Kind: "server", Peer: peerGW, Duration: 50 * time.Millisecond, StatusCode: "ok"},
		{Start: at.Add(time.Millisecond), TraceID: tid, SpanID: "02", ParentSpanID: "01", Name: "a", Kind: "client", Peer: peerGW, Duration: 40 * time.Millisecond, StatusCode: "ok"},
		{Start: at.Add(2 * time.Millisecond), TraceID: tid, SpanID: "03", ParentSpanID: "02", Name: "a", Kind: "server", Peer: peerA, Duration: 30 * time.Millisecond, StatusCode: "error",
			AttrKeys: []string{"http.status_code"}, AttrValues: []string{"500"}},
		{Start: at, TraceID: "aa", SpanID: "11", Name: "quick", Kind: "server", Peer: peerA, Duration: time.Millisecond, StatusCode: "ok"},
	}
	if err := f.st.InsertSpans(context.Background(), spans); err != nil {
		t.Fatal(err)
	}
	var tr Trace
	if code := f.get(t, "/api/v1/traces/"+strings.ToUpper(tid), &tr); code != http.StatusOK {
		t.Fatalf("trace = %d", code)
	}
	if tr.Spans != 3 || len(tr.Roots) != 1 || tr.Roots[0].SpanID != "01" || len(tr.Roots[0].Children) != 1 ||
		tr.Roots[0].Children[0].Children[0].Attributes["http.status_code"] != "500" {
		t.Fatalf("trace tree = %+v", tr)
	}
	var body apiError
	if code := f.get(t, "/api/v1/traces/ffff", &body); code != http.StatusNotFound {
		t.Fatalf("missing trace = %d", code)
	}
	var found struct{ Traces []TraceSummary }
	f.get(t, "/api/v1/traces?service=a&minDurationMs=10", &found)
	if len(found.Traces) != 1 || found.Traces[0].TraceID != tid || found.Traces[0].Errors != 1 || found.Traces[0].RootName != "GET /" {
		t.Fatalf("search = %+v", found.Traces)
	}
}
