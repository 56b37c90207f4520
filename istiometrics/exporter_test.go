package istiometrics

import (
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/meshlens/meshlens/mesh"
)

var (
	peerGW = mesh.Peer{Namespace: "edge", Service: "gateway", Workload: "gateway", Version: "v1"}
	peerA  = mesh.Peer{Namespace: "shop", Service: "a", Workload: "a-v1", Version: "v1"}
	peerB  = mesh.Peer{Namespace: "shop", Service: "b", Workload: "b-v2", Version: "v2"}
	peerC  = mesh.Peer{Namespace: "shop", Service: "c", Workload: "c"} // no version
)

func newTestExporter(t testing.TB, cfg Config) *Exporter {
	t.Helper()
	if cfg.MaxSeries == 0 {
		cfg.MaxSeries = DefaultConfig().MaxSeries
	}
	x, err := New(cfg, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func consume(t testing.TB, x *Exporter, recs ...mesh.Record) {
	t.Helper()
	if err := x.ConsumeRecords(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
}

// series is one scraped series: its labels and value(s).
type scraped struct {
	labels  map[string]string
	value   float64            // counter
	count   uint64             // histogram
	sum     float64            // histogram
	buckets map[float64]uint64 // histogram, cumulative
}

// scrape reads /metrics/istio as Prometheus does (text format) and returns
// the series by metric name.
func scrape(t testing.TB, x *Exporter) map[string][]scraped {
	t.Helper()
	rec := httptest.NewRecorder()
	x.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, Path, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", Path, rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	out := map[string][]scraped{}
	for name, f := range fams {
		for _, m := range f.Metric {
			s := scraped{labels: map[string]string{}}
			for _, l := range m.Label {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				s.value = m.Counter.GetValue()
			case dto.MetricType_HISTOGRAM:
				s.count, s.sum = m.Histogram.GetSampleCount(), m.Histogram.GetSampleSum()
				s.buckets = map[float64]uint64{}
				for _, b := range m.Histogram.Bucket {
					s.buckets[b.GetUpperBound()] = b.GetCumulativeCount()
				}
			default:
				t.Fatalf("%s is a %s", name, f.GetType())
			}
			out[name] = append(out[name], s)
		}
	}
	return out
}

// find returns the series of name whose labels include match.
func find(all map[string][]scraped, name string, match map[string]string) []scraped {
	var out []scraped
	for _, s := range all[name] {
		ok := true
		for k, v := range match {
			if s.labels[k] != v {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, s)
		}
	}
	return out
}

func record(src, dst mesh.Peer, proto string, code uint16, grpc int16, d time.Duration, mtls bool) mesh.Record {
	return mesh.Record{Time: time.Now(), Source: src, Destination: dst, Protocol: proto, Code: code, GRPCStatus: grpc,
		Flags: "-", Duration: d, BytesIn: 100, BytesOut: 1500, MTLS: mtls}
}

// TestLabelsAndValuesAreIstios checks every label of each kind of series
// against what an Istio sidecar writes (istio/proxy istio_stats.cc).
func TestLabelsAndValuesAreIstios(t *testing.T) {
	x := newTestExporter(t, Config{})
	ext := mesh.Peer{Service: "api.example.com"}
	consume(t, x,
		record(peerGW, peerA, "http", 200, -1, 3*time.Millisecond, true),
		mesh.Record{Source: mesh.Peer{}, Destination: peerA, Protocol: "http", Code: 404, GRPCStatus: -1, Flags: "NR", Duration: 700 * time.Microsecond},
		record(peerA, peerB, "grpc", 200, 14, 40*time.Millisecond, false),
		record(peerA, peerC, "http", 0, -1, 0, false), // no response
		record(peerA, ext, "http", 503, -1, 2*time.Second, false),
		mesh.Record{Source: peerB, Destination: peerC, Protocol: "tcp", Flags: "", BytesIn: 10, BytesOut: 20, MTLS: true},
	)
	if got := scrape(t, x); len(got) != 8 {
		t.Fatalf("first scrape has %d metrics, want 8", len(got))
	}
	got := scrape(t, x)

	srcGW := map[string]string{
		"source_workload": "gateway", "source_workload_namespace": "edge", "source_principal": "unknown", "source_app": "gateway",
		"source_version": "v1", "source_canonical_service": "gateway", "source_canonical_revision": "v1", "source_cluster": "Kubernetes",
	}
	srcA := map[string]string{
		"source_workload": "a-v1", "source_workload_namespace": "shop", "source_principal": "unknown", "source_app": "a",
		"source_version": "v1", "source_canonical_service": "a", "source_canonical_revision": "v1", "source_cluster": "Kubernetes",
	}
	srcUnknown := map[string]string{
		"source_workload": "unknown", "source_workload_namespace": "unknown", "source_principal": "unknown", "source_app": "unknown",
		"source_version": "unknown", "source_canonical_service": "unknown", "source_canonical_revision": "latest", "source_cluster": "unknown",
	}
	dstA := map[string]string{
		"destination_workload": "a-v1", "destination_workload_namespace": "shop", "destination_principal": "unknown", "destination_app": "a",
		"destination_version": "v1", "destination_service": "a.shop.svc.cluster.local", "destination_service_name": "a",
		"destination_service_namespace": "shop", "destination_canonical_service": "a", "destination_canonical_revision": "v1", "destination_cluster": "Kubernetes",
	}
	dstB := map[string]string{
		"destination_workload": "b-v2", "destination_workload_namespace": "shop", "destination_principal": "unknown", "destination_app": "b",
		"destination_version": "v2", "destination_service": "b.shop.svc.cluster.local", "destination_service_name": "b",
		"destination_service_namespace": "shop", "destination_canonical_service": "b", "destination_canonical_revision": "v2", "destination_cluster": "Kubernetes",
	}
	dstC := map[string]string{
		"destination_workload": "c", "destination_workload_namespace": "shop", "destination_principal": "unknown", "destination_app": "c",
		"destination_version": "unknown", "destination_service": "c.shop.svc.cluster.local", "destination_service_name": "c",
		"destination_service_namespace": "shop", "destination_canonical_service": "c", "destination_canonical_revision": "latest", "destination_cluster": "Kubernetes",
	}
	dstExt := map[string]string{
		"destination_workload": "unknown", "destination_workload_namespace": "unknown", "destination_principal": "unknown", "destination_app": "api.example.com",
		"destination_version": "unknown", "destination_service": "api.example.com", "destination_service_name": "api.example.com",
		"destination_service_namespace": "unknown", "destination_canonical_service": "api.example.com", "destination_canonical_revision": "latest", "destination_cluster": "Kubernetes",
	}
	merge := func(ms ...map[string]string) map[string]string {
		out := map[string]string{}
		for _, m := range ms {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	req := func(reporter, policy, proto, code, grpc, flags string) map[string]string {
		return map[string]string{"reporter": reporter, "connection_security_policy": policy, "request_protocol": proto,
			"response_code": code, "grpc_response_status": grpc, "response_flags": flags}
	}
	want := []map[string]string{
		merge(srcGW, dstA, req("destination", "mutual_tls", "http", "200", "", "-")),
		merge(srcGW, dstA, req("source", "unknown", "http", "200", "", "-")),
		merge(srcUnknown, dstA, req("destination", "none", "http", "404", "", "NR")), // no source report: the caller has no sidecar
		merge(srcA, dstB, req("destination", "none", "grpc", "200", "14", "-")),
		merge(srcA, dstB, req("source", "unknown", "grpc", "200", "14", "-")),
		merge(srcA, dstC, req("destination", "none", "http", "0", "", "-")),
		merge(srcA, dstC, req("source", "unknown", "http", "0", "", "-")),
		merge(srcA, dstExt, req("destination", "none", "http", "503", "", "-")),
		merge(srcA, dstExt, req("source", "unknown", "http", "503", "", "-")),
	}
	for _, name := range []string{"istio_requests_total", "istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes"} {
		var labels []map[string]string
		for _, s := range got[name] {
			if _, ok := s.labels["grpc_response_status"]; !ok {
				s.labels["grpc_response_status"] = "" // the text format drops empty labels
			}
			labels = append(labels, s.labels)
		}
		if !sameLabelSets(labels, want) {
			t.Errorf("%s label sets:\n%s\nwant:\n%s", name, fmtSets(labels), fmtSets(want))
		}
	}
	for _, s := range got["istio_requests_total"] {
		if s.value != 1 {
			t.Errorf("istio_requests_total%v = %v, want 1", s.labels, s.value)
		}
	}

	// Histograms: Istio's buckets, durations in ms.
	d := find(got, "istio_request_duration_milliseconds", map[string]string{"reporter": "destination", "destination_service_name": "b"})
	if len(d) != 1 {
		t.Fatalf("duration of a -> b: %d series", len(d))
	}
	var bounds []float64
	for b := range d[0].buckets {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	if !reflect.DeepEqual(bounds, append(append([]float64(nil), mesh.LatencyBucketsMs...), math.Inf(1))) {
		t.Errorf("buckets %v, want Istio's %v and +Inf", bounds, mesh.LatencyBucketsMs)
	}
	if d[0].count != 1 || d[0].sum != 40 || d[0].buckets[25] != 0 || d[0].buckets[50] != 1 {
		t.Errorf("duration of a -> b: count %d sum %v buckets %v, want one 40 ms request in le=50", d[0].count, d[0].sum, d[0].buckets)
	}
	rb := find(got, "istio_response_bytes", map[string]string{"reporter": "source", "destination_service_name": "b"})
	if len(rb) != 1 || rb[0].sum != 1500 || rb[0].buckets[1000] != 0 || rb[0].buckets[2500] != 1 {
		t.Errorf("response bytes of a -> b: %+v", rb)
	}
	qb := find(got, "istio_request_bytes", map[string]string{"reporter": "source", "destination_service_name": "b"})
	if len(qb) != 1 || qb[0].sum != 100 || qb[0].buckets[50] != 0 || qb[0].buckets[100] != 1 {
		t.Errorf("request bytes of a -> b: %+v", qb)
	}

	// TCP: one connection, opened and closed, with its bytes; no code labels.
	srcB := merge(srcA, map[string]string{"source_workload": "b-v2", "source_app": "b", "source_version": "v2", "source_canonical_service": "b", "source_canonical_revision": "v2"})
	tcpWant := []map[string]string{
		merge(srcB, dstC, map[string]string{"reporter": "destination", "connection_security_policy": "mutual_tls", "request_protocol": "tcp", "response_flags": "-"}),
		merge(srcB, dstC, map[string]string{"reporter": "source", "connection_security_policy": "unknown", "request_protocol": "tcp", "response_flags": "-"}),
	}
	for name, v := range map[string]float64{"istio_tcp_connections_opened_total": 1, "istio_tcp_connections_closed_total": 1, "istio_tcp_received_bytes_total": 10, "istio_tcp_sent_bytes_total": 20} {
		var labels []map[string]string
		for _, s := range got[name] {
			labels = append(labels, s.labels)
			if s.value != v {
				t.Errorf("%s%v = %v, want %v", name, s.labels, s.value, v)
			}
		}
		if !sameLabelSets(labels, tcpWant) {
			t.Errorf("%s label sets:\n%s\nwant:\n%s", name, fmtSets(labels), fmtSets(tcpWant))
		}
	}
}

func sameLabelSets(a, b []map[string]string) bool {
	return fmtSets(a) == fmtSets(b)
}

func fmtSets(sets []map[string]string) string {
	var lines []string
	for _, s := range sets {
		lines = append(lines, model.LabelSet(toLabelSet(s)).String())
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func toLabelSet(m map[string]string) model.LabelSet {
	ls := model.LabelSet{}
	for k, v := range m {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls
}

// TestNewSeriesAreFirstExposedAtZero: Prometheus must see a series start
// from zero, or rate() loses its first requests.
func TestNewSeriesAreFirstExposedAtZero(t *testing.T) {
	x := newTestExporter(t, Config{})
	consume(t, x, record(peerA, peerB, "http", 200, -1, time.Millisecond, false), record(peerA, peerB, "http", 200, -1, time.Millisecond, false))
	first := scrape(t, x)
	for _, s := range first["istio_requests_total"] {
		if s.value != 0 {
			t.Fatalf("first scrape: %v = %v, want 0", s.labels, s.value)
		}
	}
	if n := len(first["istio_requests_total"]); n != 2 {
		t.Fatalf("first scrape: %d series, want 2 (both reporters)", n)
	}
	consume(t, x, record(peerA, peerB, "http", 200, -1, time.Millisecond, false))
	// A new mTLS mode of an exposed label set: its destination series
	// starts at zero; the source series (the modes' sum) counts only the
	// exposed mode meanwhile, so it never goes down.
	consume(t, x, record(peerA, peerB, "http", 200, -1, time.Millisecond, true))
	second := scrape(t, x)
	check := func(all map[string][]scraped, policy string, want float64) {
		t.Helper()
		s := find(all, "istio_requests_total", map[string]string{"connection_security_policy": policy})
		if len(s) != 1 || s[0].value != want {
			t.Fatalf("policy %s: %+v, want one series = %v", policy, s, want)
		}
		h := find(all, "istio_request_duration_milliseconds", map[string]string{"connection_security_policy": policy})
		if len(h) != 1 || float64(h[0].count) != want {
			t.Fatalf("policy %s duration: %+v, want count %v", policy, h, want)
		}
	}
	check(second, "none", 3)
	check(second, "mutual_tls", 0)
	check(second, "unknown", 3)
	third := scrape(t, x)
	check(third, "none", 3)
	check(third, "mutual_tls", 1)
	check(third, "unknown", 4)
}

func TestHandlerServesProtobufAndText(t *testing.T) {
	x := newTestExporter(t, Config{})
	consume(t, x, record(peerA, peerB, "http", 200, -1, time.Millisecond, false))
	srv := httptest.NewServer(x.Handler())
	defer srv.Close()
	for _, accept := range []string{"", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited", "application/openmetrics-text; version=1.0.0"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Fatalf("Accept %q: %s, %d bytes", accept, resp.Status, len(body))
		}
	}
}

// TestConcurrentIngestAndScrapes: writers and scrapers at once; every
// counter only grows from scrape to scrape, and the last scrape has every
// record.
func TestConcurrentIngestAndScrapes(t *testing.T) {
	x := newTestExporter(t, Config{})
	const writers, batches, batch = 4, 50, 20
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for b := range batches {
					recs := make([]mesh.Record, batch)
					for i := range recs {
						recs[i] = record(peerA, peer((w*batches+b+i)%7), "http", 200, -1, time.Millisecond, i%2 == 0)
					}
					consume(t, x, recs...)
				}
			})
		}
		wg.Wait()
	}()
	last := map[string]float64{}
	check := func() {
		for _, s := range scrape(t, x)["istio_requests_total"] {
			k := model.LabelSet(toLabelSet(s.labels)).String()
			if s.value < last[k] {
				t.Fatalf("%s went down from %v to %v", k, last[k], s.value)
			}
			last[k] = s.value
		}
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		check()
	}
	check()
	var total float64
	for _, s := range scrape(t, x)["istio_requests_total"] {
		if s.labels["reporter"] == "destination" {
			total += s.value
		}
	}
	if total != writers*batches*batch {
		t.Fatalf("destination reports sum to %v, want %d", total, writers*batches*batch)
	}
}
