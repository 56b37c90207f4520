package query

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshlens/meshlens/mesh"
)

// istioMetrics exposes mesh records as Istio's standard metrics, labelled as
// an Istio sidecar reporting as the destination would label them.
type istioMetrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	reqBytes *prometheus.HistogramVec
	resBytes *prometheus.HistogramVec
}

func newIstioMetrics() *istioMetrics {
	m := &istioMetrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_requests_total", Help: "Istio requests."},
			requestLabels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "istio_request_duration_milliseconds", Help: "Istio request duration.",
			Buckets: mesh.LatencyBucketsMs}, edgeLabels),
		reqBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "istio_request_bytes", Help: "Istio request bytes.",
			Buckets: []float64{1024}}, edgeLabels),
		resBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "istio_response_bytes", Help: "Istio response bytes.",
			Buckets: []float64{1024}}, edgeLabels),
	}
	m.reg.MustRegister(m.requests, m.duration, m.reqBytes, m.resBytes)
	return m
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// labelsOf returns the edge and request label values of a record, in the
// order of edgeLabels and requestLabels.
func labelsOf(r *mesh.Record) (edge, req []string) {
	src, dst := r.Source, r.Destination
	rev := func(v string) string {
		if v == "" {
			return "latest"
		}
		return v
	}
	edge = []string{"destination", r.Protocol,
		orUnknown(src.Namespace), orUnknown(src.Service), orUnknown(src.Service), orUnknown(src.Workload), orUnknown(src.Version), rev(src.Version),
		orUnknown(dst.Namespace), orUnknown(dst.Service), orUnknown(dst.Service), orUnknown(dst.Workload), orUnknown(dst.Version), rev(dst.Version),
	}
	grpc := ""
	if r.GRPCStatus >= 0 {
		grpc = strconv.Itoa(int(r.GRPCStatus))
	}
	sec := "none"
	if r.MTLS {
		sec = "mutual_tls"
	}
	flags := r.Flags
	if flags == "" {
		flags = "-"
	}
	req = append(append([]string(nil), edge...), strconv.Itoa(int(r.Code)), grpc, sec, flags)
	return edge, req
}

// declare creates every series the records will touch, at zero, so that
// Prometheus sees each start from 0 and increase() is exact.
func (m *istioMetrics) declare(recs []mesh.Record) {
	for i := range recs {
		edge, req := labelsOf(&recs[i])
		m.requests.WithLabelValues(req...)
		m.duration.WithLabelValues(edge...)
		m.reqBytes.WithLabelValues(edge...)
		m.resBytes.WithLabelValues(edge...)
	}
}

func (m *istioMetrics) observe(recs []mesh.Record) {
	for i := range recs {
		r := &recs[i]
		edge, req := labelsOf(r)
		m.requests.WithLabelValues(req...).Inc()
		m.duration.WithLabelValues(edge...).Observe(float64(r.Duration/time.Microsecond) / 1000)
		m.reqBytes.WithLabelValues(edge...).Observe(float64(r.BytesIn))
		m.resBytes.WithLabelValues(edge...).Observe(float64(r.BytesOut))
	}
}

// serve exposes the registry on a loopback port.
func (m *istioMetrics) serve(t testing.TB) string {
	var p atomic.Pointer[istioMetrics]
	p.Store(m)
	return serveMetrics(t, &p)
}

// serveMetrics exposes whichever registry p holds at scrape time, so a test
// can swap it for a fresh one: a restarted sidecar whose counters reset.
func serveMetrics(t testing.TB, p *atomic.Pointer[istioMetrics]) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		promhttp.HandlerFor(p.Load().reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// startPrometheus runs the Debian prometheus on loopback with a temporary
// data directory, scraping target every second, and returns its URL.
func startPrometheus(t testing.TB, target string) string {
	t.Helper()
	return startPrometheusEvery(t, target, time.Second)
}

// startPrometheusEvery is startPrometheus with a scrape interval.
func startPrometheusEvery(t testing.TB, target string, every time.Duration) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus binary not found (Debian package prometheus): %v", err)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: %s
  scrape_timeout: %s
  evaluation_interval: %s
scrape_configs:
  - job_name: mesh
    static_configs:
      - targets: [%q]
`, every, every, every, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// Prometheus cannot report a port it picked; take a free one and hand it over.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn")
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Logf("prometheus log:\n%s", log)
		}
	})
	u := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(u + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return u
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
	t.Fatalf("prometheus at %s not ready within 30s:\n%s", u, log)
	return ""
}

// lastScrapeAfter waits until Prometheus has a sample of istio_requests_total
// taken after t and returns the newest sample time, in milliseconds as
// Prometheus keeps it.
func lastScrapeAfter(t testing.TB, p *Prometheus, after time.Time, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		v, err := p.vector(context.Background(), `max(timestamp(istio_requests_total))`, time.Now())
		if err == nil && len(v) == 1 {
			ts := time.UnixMilli(int64(float64(v[0].Value)*1000 + 0.5))
			if ts.After(after) {
				return ts
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no scrape after %v within %v", after, timeout)
	return time.Time{}
}
