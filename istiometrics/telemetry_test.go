package istiometrics

import (
	"testing"
	"time"

	telemetry "istio.io/api/telemetry/v1alpha1"
	"sigs.k8s.io/yaml"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/mesh"
)

// telemetrySnapshot is a config snapshot of Telemetries given as
// namespace, name and spec YAML.
func telemetrySnapshot(t testing.TB, objs ...[3]string) *config.Snapshot {
	t.Helper()
	sn := &config.Snapshot{Version: 1}
	for _, o := range objs {
		js, err := yaml.YAMLToJSON([]byte(o[2]))
		if err != nil {
			t.Fatal(err)
		}
		tm := &telemetry.Telemetry{}
		if err := config.DecodeProto(js, tm); err != nil {
			t.Fatalf("Telemetry %s/%s: %v", o[0], o[1], err)
		}
		sn.Objects = append(sn.Objects, &config.Object{APIVersion: "telemetry.istio.io/v1", Kind: config.KindTelemetry,
			Meta: config.Meta{Namespace: o[0], Name: o[1]}, Spec: tm})
	}
	return sn
}

var (
	peerNA1 = mesh.Peer{Namespace: "a", Service: "front", Workload: "front-v1", Version: "v1"}
	peerNA2 = mesh.Peer{Namespace: "a", Service: "cart", Workload: "cart-v1", Version: "v1"}
	peerNB  = mesh.Peer{Namespace: "b", Service: "db", Workload: "db-v1", Version: "v1"}
)

// scrapeCounted consumes recs and scrapes twice (a new series is first
// exposed at zero), returning the second scrape.
func scrapeCounted(t *testing.T, x *Exporter, recs ...mesh.Record) map[string][]scraped {
	t.Helper()
	consume(t, x, recs...)
	scrape(t, x)
	return scrape(t, x)
}

func TestTelemetryDisablesClientRequestCountOfANamespace(t *testing.T) {
	x := newTestExporter(t, Config{})
	x.UpdateConfig(telemetrySnapshot(t, [3]string{"a", "no-client-count", `
metrics:
- overrides:
  - match: {metric: REQUEST_COUNT, mode: CLIENT}
    disabled: true
`}))
	got := scrapeCounted(t, x,
		record(peerNA1, peerNA2, "http", 200, -1, time.Millisecond, true), // a → a
		record(peerNA1, peerNB, "http", 200, -1, time.Millisecond, true),  // a → b
		record(peerNB, peerNA2, "http", 200, -1, time.Millisecond, true),  // b → a
	)
	if s := find(got, "istio_requests_total", map[string]string{"reporter": "source", "source_workload_namespace": "a"}); len(s) != 0 {
		t.Errorf("reporter=source series of namespace a's workloads still exported: %v", s)
	}
	if s := find(got, "istio_requests_total", map[string]string{"reporter": "source", "source_workload_namespace": "b"}); len(s) != 1 || s[0].value != 1 {
		t.Errorf("reporter=source series of namespace b: %+v, want one of value 1", s)
	}
	if s := find(got, "istio_requests_total", map[string]string{"reporter": "destination"}); len(s) != 3 {
		t.Errorf("reporter=destination series: %d, want 3 (SERVER mode untouched)", len(s))
	}
	if s := find(got, "istio_request_duration_milliseconds", map[string]string{"reporter": "source", "source_workload_namespace": "a"}); len(s) != 2 {
		t.Errorf("client durations of namespace a: %d series, want 2 (only REQUEST_COUNT disabled)", len(s))
	}

	// Deleting the Telemetry brings the series back on the next scrape.
	x.UpdateConfig(&config.Snapshot{Version: 2})
	if s := find(scrape(t, x), "istio_requests_total", map[string]string{"reporter": "source", "source_workload_namespace": "a"}); len(s) != 2 {
		t.Errorf("after the Telemetry is deleted: %d client series of namespace a, want 2", len(s))
	}
}

func TestTelemetryTagRemoveMergesSeries(t *testing.T) {
	x := newTestExporter(t, Config{})
	x.UpdateConfig(telemetrySnapshot(t, [3]string{"istio-system", "mesh", `
metrics:
- providers: [{name: prometheus}]
  overrides:
  - match: {metric: ALL_METRICS}
    tagOverrides:
      request_protocol: {operation: REMOVE}
  - match: {metric: REQUEST_COUNT, mode: SERVER}
    tagOverrides:
      team: {value: "'shop'"}
      code_again: {value: response.code}
`}))
	got := scrapeCounted(t, x,
		record(peerNA1, peerNB, "http", 200, -1, time.Millisecond, true),
		record(peerNA1, peerNB, "grpc", 200, 0, time.Millisecond, true),
		record(peerNA1, peerNB, "http", 200, -1, time.Millisecond, true),
	)
	// http and grpc differ in grpc_response_status too; make the two http
	// records and a third protocol of the same labels: h2 counts as http.
	src := find(got, "istio_requests_total", map[string]string{"reporter": "source", "grpc_response_status": ""})
	if len(src) != 1 || src[0].value != 2 {
		t.Fatalf("client series without gRPC status: %+v, want one of value 2", src)
	}
	if _, ok := src[0].labels["request_protocol"]; ok {
		t.Errorf("request_protocol still a label: %v", src[0].labels)
	}
	dst := find(got, "istio_requests_total", map[string]string{"reporter": "destination", "grpc_response_status": "", "team": "shop", "code_again": "200"})
	if len(dst) != 1 {
		t.Errorf("server series with team=shop and code_again=200: %+v, want one", got["istio_requests_total"])
	}

	// Two protocols of otherwise equal labels become one series, summed.
	x2 := newTestExporter(t, Config{})
	x2.UpdateConfig(telemetrySnapshot(t, [3]string{"istio-system", "mesh", `
metrics:
- overrides:
  - tagOverrides:
      request_protocol: {operation: REMOVE}
`}))
	got = scrapeCounted(t, x2,
		record(peerNA1, peerNB, "http", 200, -1, time.Millisecond, false),
		record(peerNA1, peerNB, "http2", 200, -1, 3*time.Millisecond, false),
	)
	for _, rep := range []string{"source", "destination"} {
		s := find(got, "istio_requests_total", map[string]string{"reporter": rep})
		if len(s) != 1 || s[0].value != 2 {
			t.Errorf("reporter=%s: %+v, want the http and http2 series merged into one of value 2", rep, s)
		}
		h := find(got, "istio_request_duration_milliseconds", map[string]string{"reporter": rep})
		if len(h) != 1 || h[0].count != 2 || h[0].sum != 4 {
			t.Errorf("reporter=%s durations: %+v, want one histogram of 2 observations summing 4ms", rep, h)
		}
	}
}

func TestTelemetryPrecedenceWorkloadOverNamespaceOverRoot(t *testing.T) {
	x := newTestExporter(t, Config{})
	x.UpdateConfig(telemetrySnapshot(t,
		[3]string{"istio-system", "mesh", `
metrics:
- overrides:
  - match: {metric: REQUEST_COUNT}
    disabled: true
`},
		[3]string{"a", "namespace", `
metrics:
- overrides:
  - match: {metric: REQUEST_COUNT}
    disabled: false
  - match: {metric: REQUEST_COUNT}
    tagOverrides:
      level: {value: "'namespace'"}
`},
		[3]string{"a", "front", `
selector: {matchLabels: {app: front}}
metrics:
- overrides:
  - match: {metric: REQUEST_COUNT, mode: CLIENT_AND_SERVER}
    tagOverrides:
      level: {value: "'workload'"}
`},
		[3]string{"a", "cart-other-label", `
selector: {matchLabels: {app: cart, team: x}}
metrics:
- overrides:
  - match: {metric: REQUEST_COUNT}
    disabled: true
`},
	))
	got := scrapeCounted(t, x,
		record(peerNA1, peerNA2, "http", 200, -1, time.Millisecond, true), // front → cart, in a
		record(peerNB, peerNB, "http", 200, -1, time.Millisecond, true),   // db → db, in b
	)
	for _, c := range []struct {
		reporter, workload, level string
	}{
		{"source", "front-v1", "workload"},      // the workload's Telemetry
		{"destination", "cart-v1", "namespace"}, // a selector with a label meshlens does not know does not match
	} {
		wl := "source_workload"
		if c.reporter == "destination" {
			wl = "destination_workload"
		}
		s := find(got, "istio_requests_total", map[string]string{"reporter": c.reporter, wl: c.workload})
		if len(s) != 1 || s[0].labels["level"] != c.level {
			t.Errorf("reporter=%s of %s: %+v, want one series with level=%q", c.reporter, c.workload, s, c.level)
		}
	}
	if s := find(got, "istio_requests_total", map[string]string{"source_workload": "db-v1"}); len(s) != 0 {
		t.Errorf("namespace b has only the root's Telemetry, which disables REQUEST_COUNT: %+v", s)
	}
	if s := find(got, "istio_request_bytes", map[string]string{"source_workload": "db-v1"}); len(s) != 2 {
		t.Errorf("namespace b's request sizes: %d series, want 2", len(s))
	}
}

func TestTelemetryProvidersWithoutPrometheusStopTheSeries(t *testing.T) {
	x := newTestExporter(t, Config{})
	x.UpdateConfig(telemetrySnapshot(t, [3]string{"b", "elsewhere", `
metrics:
- providers: [{name: stackdriver}]
`}))
	got := scrapeCounted(t, x, record(peerNA1, peerNB, "http", 200, -1, time.Millisecond, true))
	if s := find(got, "istio_requests_total", map[string]string{"reporter": "destination"}); len(s) != 0 {
		t.Errorf("server reports of namespace b, whose Telemetry names no prometheus provider: %+v", s)
	}
	if s := find(got, "istio_requests_total", map[string]string{"reporter": "source"}); len(s) != 1 {
		t.Errorf("client reports of namespace a: %d, want 1", len(s))
	}
}

// BenchmarkGatherWithTelemetry is a scrape's collection (no encoding) of
// 6,000 series per metric without Telemetry and with one that removes a
// label mesh-wide: the cost of applying the settings.
func BenchmarkGatherWithTelemetry(b *testing.B) {
	recs := benchRecords(3000, 30000)
	for _, tc := range []struct {
		name string
		snap *config.Snapshot
	}{
		{"none", &config.Snapshot{}},
		{"remove-request_protocol", telemetrySnapshot(b, [3]string{"istio-system", "mesh", "metrics: [{overrides: [{tagOverrides: {request_protocol: {operation: REMOVE}}}]}]"})},
	} {
		b.Run(tc.name, func(b *testing.B) {
			x := newTestExporter(b, Config{})
			consume(b, x, recs...)
			x.UpdateConfig(tc.snap)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := x.Registry().Gather(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
