package plugin

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/experimental"
	"github.com/grafana/grafana-plugin-sdk-go/experimental/datasourcetest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/store/storetest"
)

var update = flag.Bool("update", false, "rewrite the golden frame files in testdata/")

// meshlensBin is cmd/meshlens of this repository, built once.
var meshlensBin string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "meshlens-grafana")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	root, _ := filepath.Abs(filepath.Join("..", "..", "..", ".."))
	meshlensBin, err = meshtest.BuildMeshlens(root, dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	viewerToken   = "viewer-token-0123456789abcdef"
	operatorToken = "operator-token-0123456789abcdef"
)

// rig is meshlens serve on its own ClickHouse database and the plugin
// served over the plugin protocol by the SDK's harness, as Grafana runs it.
type rig struct {
	ml     *meshtest.Serve
	plugin datasourcetest.TestPlugin
	// base is the minute the test's traffic starts in; the traffic spans its first 30 s.
	base time.Time
}

func startRig(t *testing.T) *rig {
	t.Helper()
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte(viewerToken+" viewer\n"+operatorToken+" operator\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ml := meshtest.StartServe(t, meshlensBin, "--clickhouse", storetest.DSN(t), "--data-dir", t.TempDir(), "--tokens", tokens, "--pair-wait", "1s", "--kubeconfig", "none")
	addr := meshtest.FreeAddr(t)
	tp, err := datasourcetest.Manage(NewDatasource, datasourcetest.ManageOpts{Address: addr})
	if err != nil {
		t.Fatalf("serve the plugin: %v", err)
	}
	t.Cleanup(func() { _ = tp.Shutdown() })
	return &rig{ml: ml, plugin: tp}
}

// settings are a datasource's settings as Grafana sends them; a distinct
// uid per settings keeps the SDK's instance cache apart.
func settings(uid, u, token string, timeoutSeconds int) *backend.DataSourceInstanceSettings {
	s := &backend.DataSourceInstanceSettings{UID: uid, Name: uid, URL: u, Updated: time.Unix(1, 0),
		JSONData: []byte(fmt.Sprintf(`{"timeoutSeconds":%d}`, timeoutSeconds))}
	if token != "" {
		s.DecryptedSecureJSONData = map[string]string{"token": token}
	}
	return s
}

func (r *rig) settings() *backend.DataSourceInstanceSettings {
	return settings("meshlens", r.ml.URL(), viewerToken, 0)
}

func pctx(s *backend.DataSourceInstanceSettings) backend.PluginContext {
	return backend.PluginContext{PluginID: ID, DataSourceInstanceSettings: s}
}

// query runs one query through the plugin protocol.
func (r *rig) query(t *testing.T, s *backend.DataSourceInstanceSettings, model map[string]any, from, to time.Time) backend.DataResponse {
	t.Helper()
	b, _ := json.Marshal(model)
	qt, _ := model["queryType"].(string)
	resp, err := r.plugin.Client.QueryData(context.Background(), &backend.QueryDataRequest{
		PluginContext: pctx(s),
		Queries:       []backend.DataQuery{{RefID: "A", QueryType: qt, JSON: b, TimeRange: backend.TimeRange{From: from, To: to}, MaxDataPoints: 1000, Interval: time.Second}},
	})
	if err != nil {
		t.Fatalf("QueryData over the plugin protocol: %v", err)
	}
	return resp.Responses["A"]
}

func (r *rig) api(t *testing.T, path string, q url.Values, out any) {
	t.Helper()
	code, body := meshtest.HTTP(t, http.MethodGet, r.ml.URL()+"/api/v1"+path+"?"+q.Encode(), viewerToken, "")
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal([]byte(body), out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// seqIDs gives trace and span ids in sequence, so the frames of a run are
// the same every time.
type seqIDs struct {
	mu sync.Mutex
	n  uint64
}

func (g *seqIDs) next() uint64 { g.mu.Lock(); defer g.mu.Unlock(); g.n++; return g.n }

func (g *seqIDs) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	var tid trace.TraceID
	binary.BigEndian.PutUint64(tid[8:], g.next())
	tid[0] = 0xab
	return tid, g.NewSpanID(context.Background(), tid)
}

func (g *seqIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	var sid trace.SpanID
	binary.BigEndian.PutUint64(sid[:], g.next())
	return sid
}

// feed sends 100 requests through OTel SDK services in namespace shop:
// frontend → reviews (60 to v1 at 20 ms, 40 to v2 at 40 ms of which 10 fail
// with 503) → ratings v1 (5 ms), starting at r.base, 300 ms apart.
func (r *rig) feed(t *testing.T) {
	t.Helper()
	// Three minutes back: a range ending two minutes after base is in the
	// past (history), and the live graph's last 15 minutes still hold it.
	r.base = time.Now().UTC().Truncate(time.Minute).Add(-3 * time.Minute)
	ids := &seqIDs{}
	provider := func(attrs ...attribute.KeyValue) *sdktrace.TracerProvider {
		exp, err := otlptracegrpc.New(context.Background(), otlptracegrpc.WithEndpoint(r.ml.OTLP), otlptracegrpc.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		attrs = append(attrs, attribute.String("k8s.namespace.name", "shop"))
		return sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithIDGenerator(ids), sdktrace.WithResource(resource.NewSchemaless(attrs...)))
	}
	fe := provider(attribute.String("service.name", "frontend"), attribute.String("service.version", "v1"))
	rv1 := provider(attribute.String("service.name", "reviews"), attribute.String("service.version", "v1"))
	rv2 := provider(attribute.String("service.name", "reviews"), attribute.String("service.version", "v2"))
	ra := provider(attribute.String("service.name", "ratings"), attribute.String("service.version", "v1"))
	call := func(ctx context.Context, from, to *sdktrace.TracerProvider, host, path string, code int, start time.Time, d time.Duration) context.Context {
		cctx, cs := from.Tracer("t").Start(ctx, "GET "+path, trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(start),
			trace.WithAttributes(attribute.String("server.address", host), attribute.String("http.request.method", "GET"), attribute.String("url.path", path)))
		sctx, ss := to.Tracer("t").Start(cctx, "GET "+path, trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start),
			trace.WithAttributes(attribute.Int("http.response.status_code", code), attribute.String("http.request.method", "GET"), attribute.String("url.path", path)))
		ss.End(trace.WithTimestamp(start.Add(d)))
		cs.End(trace.WithTimestamp(start.Add(d)))
		return sctx
	}
	for i := 0; i < 100; i++ {
		start := r.base.Add(time.Duration(i) * 300 * time.Millisecond)
		to, code, d := rv1, 200, 20*time.Millisecond
		if i%5 >= 3 {
			to, d = rv2, 40*time.Millisecond
			if i%20 >= 3 && i%20 <= 4 {
				code = 503
			}
		}
		rctx := call(context.Background(), fe, to, "reviews.shop.svc.cluster.local", "/reviews/1", code, start, d)
		call(rctx, to, ra, "ratings.shop.svc.cluster.local", "/ratings/1", 200, start.Add(time.Millisecond), 5*time.Millisecond)
	}
	for _, tp := range []*sdktrace.TracerProvider{ra, rv1, rv2, fe} {
		if err := tp.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// pastRange is a 10-minute dashboard range in the past holding all traffic.
func (r *rig) pastRange() (time.Time, time.Time) {
	return r.base.Add(-8 * time.Minute), r.base.Add(2 * time.Minute)
}

// normalize moves every time of the frames from the run's base minute to
// 2026-01-01T00:00:00Z, so golden files do not depend on when the test ran.
func normalize(dr backend.DataResponse, base time.Time) backend.DataResponse {
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, f := range dr.Frames {
		for _, fld := range f.Fields {
			for i := 0; i < fld.Len(); i++ {
				switch v := fld.At(i).(type) {
				case time.Time:
					fld.Set(i, epoch.Add(v.Sub(base)))
				case float64:
					if fld.Name == "startTime" {
						fld.Set(i, float64(epoch.Add(time.Duration(v*1e6)-time.Duration(base.UnixNano())).UnixNano())/1e6)
					}
				case string:
					if fld.Name == "id" && f.Name == "logs" {
						fld.Set(i, fmt.Sprintf("entry-%d", i))
					}
				}
			}
		}
	}
	return dr
}

func field(t *testing.T, f *data.Frame, name string) *data.Field {
	t.Helper()
	fld, _ := f.FieldByName(name)
	if fld == nil {
		t.Fatalf("frame %s has no field %s", f.Name, name)
	}
	return fld
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9+1e-6*math.Abs(b) }

// TestPluginGivesMeshlensNumbersInGrafanasFrames is the plugin end to end:
// CheckHealth before and after traffic, then each query type over the
// plugin protocol against meshlens serve + ClickHouse, its frames checked
// against golden files and against what meshlens' own API answers.
func TestPluginGivesMeshlensNumbersInGrafanasFrames(t *testing.T) {
	r := startRig(t)
	ctx := context.Background()

	health, err := r.plugin.Client.CheckHealth(ctx, &backend.CheckHealthRequest{PluginContext: pctx(r.settings())})
	if err != nil || health.Status != backend.HealthStatusOk || !strings.Contains(health.Message, "no traffic") {
		t.Fatalf("health before traffic = %+v, %v; want OK saying there is no traffic yet", health, err)
	}

	r.feed(t)
	from, to := r.pastRange()
	graphQ := url.Values{"window": {"10m0s"}, "end": {to.Format(time.RFC3339)}, "view": {"version"}, "namespace": {"shop"}}
	var g apiGraph
	meshtest.Eventually(t, 60*time.Second, "meshlens has the traffic in ClickHouse and in its live graph", func() error {
		r.api(t, "/graph", graphQ, &g)
		var total uint64
		for _, e := range g.Edges {
			total += e.Requests
		}
		if total != 200 {
			return fmt.Errorf("history graph has %d requests, want 200 (%+v)", total, g.Edges)
		}
		// The live graph's snapshot lags its writer by up to a second
		// (graph.Config.PublishInterval): ClickHouse can be quicker.
		var live apiGraph
		r.api(t, "/graph", url.Values{"window": {"15m"}, "view": {"version"}, "namespace": {"shop"}}, &live)
		total = 0
		for _, e := range live.Edges {
			total += e.Requests
		}
		if total != 200 {
			return fmt.Errorf("live graph has %d requests, want 200", total)
		}
		return nil
	})

	t.Run("health", func(t *testing.T) {
		h, err := r.plugin.Client.CheckHealth(ctx, &backend.CheckHealthRequest{PluginContext: pctx(r.settings())})
		if err != nil || h.Status != backend.HealthStatusOk || !strings.Contains(h.Message, "edges in the last 15 minutes") {
			t.Fatalf("health = %+v, %v", h, err)
		}
	})

	t.Run("topology history is the graph API's, for the Node Graph", func(t *testing.T) {
		dr := r.query(t, r.settings(), map[string]any{"queryType": "topology", "view": "version", "namespace": "shop"}, from, to)
		if dr.Error != nil {
			t.Fatal(dr.Error)
		}
		if len(dr.Frames) != 2 || dr.Frames[0].Name != "nodes" || dr.Frames[1].Name != "edges" || dr.Frames[0].Meta.PreferredVisualization != data.VisTypeNodeGraph {
			t.Fatalf("frames = %v", dr.Frames)
		}
		if src := dr.Frames[0].Meta.Custom.(map[string]any)["source"]; src != "clickhouse" {
			t.Errorf("a range in the past came from source %v, want clickhouse", src)
		}
		edges := dr.Frames[1]
		if edges.Rows() != len(g.Edges) {
			t.Fatalf("%d edge rows, the API has %d edges", edges.Rows(), len(g.Edges))
		}
		byID := map[string]apiEdge{}
		for _, e := range g.Edges {
			byID[e.Source+"->"+e.Target] = e
		}
		for i := 0; i < edges.Rows(); i++ {
			e, ok := byID[field(t, edges, "id").At(i).(string)]
			if !ok {
				t.Fatalf("edge %v is not in the API's graph", field(t, edges, "id").At(i))
			}
			if !near(field(t, edges, "mainstat").At(i).(float64), e.RPS) || !near(field(t, edges, "secondarystat").At(i).(float64), e.P99Ms) ||
				!near(field(t, edges, "detail__errorRate").At(i).(float64), e.ErrorRate) || field(t, edges, "detail__requests").At(i).(uint64) != e.Requests {
				t.Errorf("edge %s: frame differs from the API's %+v", e.Source+"->"+e.Target, e)
			}
		}
		// What an operator sees on the canary's edge.
		v2 := byID["shop/frontend/v1->shop/reviews/v2"]
		if v2.Requests != 40 || !near(v2.ErrorRate, 0.25) {
			t.Errorf("frontend → reviews v2 = %+v, want 40 requests, 25%% errors", v2)
		}
		experimental.CheckGoldenJSONResponse(t, "testdata", "topology_version_history", &dr, *update)
	})

	t.Run("topology live ends now", func(t *testing.T) {
		now := time.Now()
		// 15 minutes: the traffic, 2 to 4 minutes old when sent, stays in it however slow the machine.
		dr := r.query(t, r.settings(), map[string]any{"queryType": "topology", "view": "service", "namespace": "shop"}, now.Add(-15*time.Minute), now)
		if dr.Error != nil {
			t.Fatal(dr.Error)
		}
		if src := dr.Frames[0].Meta.Custom.(map[string]any)["source"]; src != "live" {
			t.Errorf("a range ending now came from source %v, want live", src)
		}
		var live apiGraph
		r.api(t, "/graph", url.Values{"window": {"15m0s"}, "view": {"service"}, "namespace": {"shop"}}, &live)
		nodes := dr.Frames[0]
		want := map[string]apiNode{}
		for _, n := range live.Nodes {
			want[n.ID] = n
		}
		for i := 0; i < nodes.Rows(); i++ {
			n := want[field(t, nodes, "id").At(i).(string)]
			if !near(field(t, nodes, "mainstat").At(i).(float64), n.RPS) || !near(field(t, nodes, "arc__failed").At(i).(float64), n.ErrorRate) {
				t.Errorf("node %s: frame differs from the live API's %+v", n.ID, n)
			}
		}
		if n := want["shop/reviews"]; n.Requests != 100 || !near(n.ErrorRate, 0.1) {
			t.Errorf("live reviews = %+v, want 100 requests, 10%% errors", n)
		}
	})

	t.Run("series per version, as alert rules read them", func(t *testing.T) {
		dr := r.query(t, r.settings(), map[string]any{"queryType": "series", "namespace": "shop", "service": "reviews"}, from, to)
		if dr.Error != nil {
			t.Fatal(dr.Error)
		}
		var s apiSeries
		r.api(t, "/services/shop/reviews", url.Values{"range": {"10m0s"}, "end": {to.Format(time.RFC3339)}}, &s)
		if len(dr.Frames) != 5*len(s.Versions) || len(s.Versions) != 2 {
			t.Fatalf("%d frames for %d versions", len(dr.Frames), len(s.Versions))
		}
		var sum = map[string]uint64{}
		for _, f := range dr.Frames {
			val := f.Fields[1]
			ver := val.Labels["version"]
			for _, v := range s.Versions {
				if v.Version != ver {
					continue
				}
				for i, p := range v.Points {
					got := val.At(i).(float64)
					want := map[string]float64{"rps": p.RPS, "errorRate": p.ErrorRate, "p50": p.P50Ms, "p90": p.P90Ms, "p99": p.P99Ms}[f.Name]
					if !near(got, want) || !f.Fields[0].At(i).(time.Time).Equal(p.T) {
						t.Errorf("%s %s point %d = %v, API says %v at %v", ver, f.Name, i, got, want, p.T)
					}
					if f.Name == "rps" {
						sum[ver] += p.Requests
					}
				}
			}
		}
		if sum["v1"] != 60 || sum["v2"] != 40 {
			t.Errorf("requests per version = %v, want v1 60, v2 40", sum)
		}
		dr = normalize(dr, r.base)
		experimental.CheckGoldenJSONResponse(t, "testdata", "series_reviews_history", &dr, *update)
	})

	t.Run("access logs", func(t *testing.T) {
		dr := r.query(t, r.settings(), map[string]any{"queryType": "logs", "namespace": "shop", "service": "reviews", "code": 503, "limit": 5}, from, to)
		if dr.Error != nil {
			t.Fatal(dr.Error)
		}
		var l apiLogs
		r.api(t, "/logs", url.Values{"namespace": {"shop"}, "service": {"reviews"}, "code": {"503"}, "limit": {"5"}, "since": {from.Format(time.RFC3339)}, "until": {to.Format(time.RFC3339)}}, &l)
		f := dr.Frames[0]
		if f.Meta.Type != data.FrameTypeLogLines || f.Rows() != 5 || len(l.Entries) != 5 {
			t.Fatalf("logs frame %s with %d rows; API has %d entries", f.Meta.Type, f.Rows(), len(l.Entries))
		}
		for i, e := range l.Entries {
			if body := field(t, f, "body").At(i).(string); !strings.Contains(body, "/reviews/1 503") || field(t, f, "severity").At(i) != "error" || field(t, f, "traceId").At(i) != e.TraceID {
				t.Errorf("log row %d = %q, API entry %+v", i, body, e)
			}
		}
		if len(f.Meta.Notices) == 0 || !strings.Contains(f.Meta.Notices[len(f.Meta.Notices)-1].Text, "more match") {
			t.Errorf("10 entries match and 5 are shown, but no notice says so: %+v", f.Meta.Notices)
		}
		dr = normalize(dr, r.base)
		experimental.CheckGoldenJSONResponse(t, "testdata", "logs_reviews_503", &dr, *update)
	})

	t.Run("trace search links to the trace view", func(t *testing.T) {
		dr := r.query(t, r.settings(), map[string]any{"queryType": "traceSearch", "service": "reviews", "minDurationMs": 30, "limit": 100}, from, to)
		if dr.Error != nil {
			t.Fatal(dr.Error)
		}
		f := dr.Frames[0]
		if f.Rows() != 40 {
			t.Errorf("%d traces with a reviews span of at least 30 ms, want the 40 to v2", f.Rows())
		}
		id := field(t, f, "traceId").At(0).(string)
		if l := field(t, f, "traceId").Config.Links; len(l) != 1 || l[0].Internal == nil || l[0].Internal.DatasourceUID != "meshlens" {
			t.Errorf("trace ids link %+v, want the trace query of this datasource", l)
		}

		dr = r.query(t, r.settings(), map[string]any{"queryType": "trace", "traceId": id}, from, to)
		if dr.Error != nil {
			t.Fatal(dr.Error)
		}
		tf := dr.Frames[0]
		var tr apiTrace
		r.api(t, "/traces/"+id, nil, &tr)
		if tf.Meta.PreferredVisualization != data.VisTypeTrace || tf.Rows() != tr.Spans || tf.Rows() != 4 {
			t.Fatalf("trace frame has %d spans, the API %d; want 4 (2 calls, client and server)", tf.Rows(), tr.Spans)
		}
		svc := map[string]bool{}
		for i := 0; i < tf.Rows(); i++ {
			svc[field(t, tf, "serviceName").At(i).(string)] = true
		}
		if !svc["frontend"] || !svc["reviews"] || !svc["ratings"] {
			t.Errorf("services in the trace: %v", svc)
		}
		dr = normalize(dr, r.base)
		experimental.CheckGoldenJSONResponse(t, "testdata", "trace_first_v2", &dr, *update)
	})

	t.Run("variables", func(t *testing.T) {
		for _, tc := range []struct {
			path string
			want []string
		}{
			{"namespaces", []string{"shop"}},
			{"services?namespace=shop", []string{"frontend", "ratings", "reviews"}},
			{"versions?namespace=shop&service=reviews", []string{"v1", "v2"}},
		} {
			status, body := r.resource(t, r.settings(), tc.path, from, to)
			var vals []Value
			_ = json.Unmarshal(body, &vals)
			var got []string
			for _, v := range vals {
				got = append(got, v.Value)
			}
			if status != 200 || strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("%s = %d %s, want %v", tc.path, status, body, tc.want)
			}
		}
	})

	t.Run("rollout annotations", func(t *testing.T) {
		code, body := meshtest.HTTP(t, http.MethodPost, r.ml.URL()+"/api/v1/config", operatorToken, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: shop}
spec: {hosts: [reviews.shop.svc.cluster.local], ports: [{number: 9080, name: http, protocol: HTTP}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec: {host: reviews.shop.svc.cluster.local, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
---
apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: reviews, namespace: shop}
spec: {service: reviews, stable: v1, candidate: v2, strategy: {canary: {steps: [10, 50, 100], minDuration: 1h}}}
`)
		if code != 200 {
			t.Fatalf("apply rollout: %d %s", code, body)
		}
		meshtest.Eventually(t, 20*time.Second, "rollout progressing", func() error {
			code, body := meshtest.HTTP(t, http.MethodPost, r.ml.URL()+"/api/v1/rollouts/shop/reviews/pause", operatorToken, "")
			if code != 200 {
				return fmt.Errorf("pause: %d %s", code, body)
			}
			return nil
		})
		now := time.Now()
		// The config change comes from the audit trail in ClickHouse, which
		// meshlens writes as it accepts the change.
		meshtest.Eventually(t, 20*time.Second, "annotations of the rollout and of the config change", func() error {
			dr := r.query(t, r.settings(), map[string]any{"queryType": "annotations", "namespace": "shop"}, now.Add(-10*time.Minute), time.Now())
			if dr.Error != nil {
				return dr.Error
			}
			f := dr.Frames[0]
			var lines []string
			for i := 0; i < f.Rows(); i++ {
				lines = append(lines, field(t, f, "title").At(i).(string)+" | "+field(t, f, "text").At(i).(string)+" | "+field(t, f, "tags").At(i).(string))
			}
			all := strings.Join(lines, "\n")
			for _, want := range []string{"rollout shop/reviews: progressing → paused | pause by operator", "rollout shop/reviews: weights pushed | by ", "v1 90%, v2 10%",
				"config: DestinationRule shop/reviews created | by token:", "(operator) from 127.0.0.1", "meshlens,config,DestinationRule,create,api"} {
				if !strings.Contains(all, want) {
					return fmt.Errorf("annotations lack %q:\n%s", want, all)
				}
			}
			return nil
		})
		dr := r.query(t, r.settings(), map[string]any{"queryType": "annotations", "namespace": "elsewhere"}, now.Add(-10*time.Minute), now)
		if dr.Error != nil || dr.Frames[0].Rows() != 0 {
			t.Errorf("annotations of another namespace: %v, %d rows", dr.Error, dr.Frames[0].Rows())
		}
	})

	t.Run("bad input gives a clear error frame", func(t *testing.T) {
		// A port that accepts connections and never answers: a hung meshlens.
		hung, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer hung.Close()
		var conns []net.Conn
		var mu sync.Mutex
		go func() {
			for {
				c, err := hung.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
		defer func() {
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				c.Close()
			}
		}()
		down := "http://" + meshtest.FreeAddr(t)
		topo := map[string]any{"queryType": "topology"}
		for _, tc := range []struct {
			name     string
			settings *backend.DataSourceInstanceSettings
			model    map[string]any
			from, to time.Time
			status   backend.Status
			want     string
		}{
			{"wrong token", settings("bad-token", r.ml.URL(), "not-a-token-of-meshlens", 0), topo, from, to, backend.StatusUnauthorized, "meshlens refused the token (HTTP 401)"},
			{"meshlens down", settings("down", down, viewerToken, 0), topo, from, to, backend.StatusBadGateway, "cannot reach meshlens at " + down},
			{"not a URL", settings("not-url", "meshlens:8080", viewerToken, 0), topo, from, to, backend.StatusBadRequest, "is not an http(s) URL"},
			{"no URL", settings("no-url", "", viewerToken, 0), topo, from, to, backend.StatusBadRequest, "the meshlens URL is not set"},
			{"a path that is not meshlens'", settings("wrong-path", r.ml.URL()+"/grafana", viewerToken, 0), topo, from, to, backend.StatusBadGateway, "is the URL meshlens' own"},
			{"timeout", settings("hung", "http://"+hung.Addr().String(), viewerToken, 1), topo, from, to, backend.StatusTimeout, "did not answer in time (1s)"},
			{"unknown service", r.settings(), map[string]any{"queryType": "series", "namespace": "shop", "service": "nosuch"}, from, to, backend.StatusNotFound, "no traffic to shop/nosuch"},
			{"unknown version", r.settings(), map[string]any{"queryType": "series", "namespace": "shop", "service": "reviews", "version": "v9"}, from, to, backend.StatusNotFound, "no traffic to shop/reviews version v9"},
			{"unknown trace", r.settings(), map[string]any{"queryType": "trace", "traceId": "ffff"}, from, to, backend.StatusNotFound, "not found"},
			{"not a trace id", r.settings(), map[string]any{"queryType": "trace", "traceId": "xyz"}, from, to, backend.StatusBadRequest, `"xyz" is not a trace id`},
			{"unknown view", r.settings(), map[string]any{"queryType": "topology", "view": "pods"}, from, to, backend.StatusBadRequest, `unknown view "pods"`},
			{"unknown query type", r.settings(), map[string]any{"queryType": "metrics"}, from, to, backend.StatusBadRequest, `unknown query type "metrics"`},
			{"live source in the past", r.settings(), map[string]any{"queryType": "series", "namespace": "shop", "service": "reviews", "source": "live"}, from, to, backend.StatusBadRequest, "meshlens refused parameter source"},
			{"empty range", r.settings(), topo, to, to, backend.StatusBadRequest, "is empty"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				start := time.Now()
				dr := r.query(t, tc.settings, tc.model, tc.from, tc.to)
				if dr.Error == nil || dr.Status != tc.status || !strings.Contains(dr.Error.Error(), tc.want) {
					t.Errorf("got status %d error %v, want %d and %q", dr.Status, dr.Error, tc.status, tc.want)
				}
				// A loose bound: it catches retries or waits that go on
				// (the hung case's own timeout is 1s, the others' 30s),
				// not a machine that is merely busy.
				if d := time.Since(start); d > time.Minute {
					t.Errorf("the error took %v", d)
				}
			})
		}
		for _, tc := range []struct {
			name     string
			settings *backend.DataSourceInstanceSettings
			want     string
		}{
			{"wrong token", settings("bad-token", r.ml.URL(), "not-a-token-of-meshlens", 0), "HTTP 401"},
			{"meshlens down", settings("down", down, viewerToken, 0), "cannot reach meshlens"},
			{"hung", settings("hung", "http://"+hung.Addr().String(), viewerToken, 1), "did not answer in time"},
		} {
			h, err := r.plugin.Client.CheckHealth(ctx, &backend.CheckHealthRequest{PluginContext: pctx(tc.settings)})
			if err != nil || h.Status != backend.HealthStatusError || !strings.Contains(h.Message, tc.want) {
				t.Errorf("health with %s = %+v, %v; want an error saying %q", tc.name, h, err, tc.want)
			}
		}
		status, body := r.resource(t, settings("bad-token", r.ml.URL(), "not-a-token-of-meshlens", 0), "namespaces", from, to)
		if status != 401 || !strings.Contains(string(body), "refused the token") {
			t.Errorf("variable values with a wrong token: %d %s", status, body)
		}
	})

	t.Run("a year-long range is capped to 31 days of rollups", func(t *testing.T) {
		now := time.Now()
		start := time.Now()
		dr := r.query(t, r.settings(), map[string]any{"queryType": "topology", "view": "version", "namespace": "shop"}, now.AddDate(-1, 0, 0), now)
		if dr.Error != nil {
			t.Fatal(dr.Error)
		}
		meta := dr.Frames[0].Meta
		if meta.Custom.(map[string]any)["window"] != "744h0m0s" || meta.Custom.(map[string]any)["source"] != "clickhouse" || len(meta.Notices) == 0 || !strings.Contains(meta.Notices[0].Text, "31 days") {
			t.Errorf("meta = %+v", meta)
		}
		var total uint64
		for i := 0; i < dr.Frames[1].Rows(); i++ {
			total += field(t, dr.Frames[1], "detail__requests").At(i).(uint64)
		}
		if total != 200 {
			t.Errorf("31 days hold %d requests, want 200", total)
		}
		dr = r.query(t, r.settings(), map[string]any{"queryType": "series", "namespace": "shop", "service": "reviews", "metrics": []string{"rps"}}, now.AddDate(-1, 0, 0), now)
		if dr.Error != nil {
			t.Fatal(dr.Error)
		}
		for _, f := range dr.Frames {
			if f.Rows() > 130 {
				t.Errorf("%s has %d points for a year", f.Name, f.Rows())
			}
		}
		t.Logf("a year-long topology and series took %v", time.Since(start))
	})
}

// resource calls a resource of the plugin and returns its status and body.
func (r *rig) resource(t *testing.T, s *backend.DataSourceInstanceSettings, path string, from, to time.Time) (int, []byte) {
	t.Helper()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	full := fmt.Sprintf("%s%sfrom=%d&to=%d", path, sep, from.UnixMilli(), to.UnixMilli())
	var (
		status int
		body   []byte
	)
	err := r.plugin.Client.CallResource(context.Background(), &backend.CallResourceRequest{
		PluginContext: pctx(s), Path: strings.SplitN(path, "?", 2)[0], Method: http.MethodGet, URL: full,
	}, backend.CallResourceResponseSenderFunc(func(res *backend.CallResourceResponse) error {
		if res.Status != 0 {
			status = res.Status
		}
		body = append(body, res.Body...)
		return nil
	}))
	if err != nil {
		t.Fatalf("CallResource %s: %v", path, err)
	}
	return status, body
}
