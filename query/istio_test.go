package query

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/promtest"
	"github.com/meshlens/meshlens/istiometrics"
	"github.com/meshlens/meshlens/mesh"
)

// newIstioMetrics is meshlens' own exporter of Istio's standard metrics, so
// the Prometheus source is proven on what meshlens itself exports: fed the
// same records, source=prometheus must give the live graph.
func newIstioMetrics(t testing.TB) *istiometrics.Exporter {
	t.Helper()
	x, err := istiometrics.New(istiometrics.Config{MaxSeries: 1 << 22}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// consume feeds records to an exporter.
func consume(t testing.TB, x *istiometrics.Exporter, recs []mesh.Record) {
	t.Helper()
	if err := x.ConsumeRecords(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
}

// serveIstioMetrics exposes x on a loopback port.
func serveIstioMetrics(t testing.TB, x *istiometrics.Exporter) string {
	var p atomic.Pointer[istiometrics.Exporter]
	p.Store(x)
	return serveMetrics(t, &p)
}

// serveMetrics exposes whichever exporter p holds at scrape time, so a test
// can swap it for a fresh one: meshlens restarted, its counters at zero.
func serveMetrics(t testing.TB, p *atomic.Pointer[istiometrics.Exporter]) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.Load().Handler().ServeHTTP(w, r) })
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// startPrometheus runs the Debian prometheus on loopback scraping target's
// /metrics every second and returns its URL.
func startPrometheus(t testing.TB, target string) string {
	t.Helper()
	return startPrometheusEvery(t, target, time.Second)
}

// startPrometheusEvery is startPrometheus with a scrape interval and
// metric_relabel_configs items.
func startPrometheusEvery(t testing.TB, target string, every time.Duration, relabel ...string) string {
	t.Helper()
	return promtest.Start(t, promtest.Config{Targets: []string{target}, Interval: every, MetricRelabel: relabel})
}

// lastScrapeAfter waits for a scrape after the given time and returns the
// newest scrape time, in milliseconds as Prometheus keeps it.
func lastScrapeAfter(t testing.TB, p *Prometheus, after time.Time, timeout time.Duration) time.Time {
	t.Helper()
	return promtest.LastScrapeAfter(t, p.api, after, timeout)
}

// scrapedTwice waits for two scrapes after now: the first exposes new series
// at zero, the second their counts; it returns the time of the second.
func scrapedTwice(t testing.TB, p *Prometheus) time.Time {
	t.Helper()
	first := lastScrapeAfter(t, p, time.Now(), 30*time.Second)
	return lastScrapeAfter(t, p, first.Add(time.Millisecond), 30*time.Second)
}
