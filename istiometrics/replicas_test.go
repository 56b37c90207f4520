package istiometrics

import (
	"context"
	"errors"
	"math"
	"net"
	"net/http"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/meshlens/meshlens/internal/promtest"
	"github.com/meshlens/meshlens/mesh"
)

// replica is one meshlens serving /metrics/istio on a fixed address, which
// can be stopped and started again (a restart: a fresh exporter).
type replica struct {
	t    testing.TB
	addr string
	x    *Exporter
	srv  *http.Server
}

func startReplica(t testing.TB, addr string) *replica {
	r := &replica{t: t, addr: addr, x: newTestExporter(t, Config{})}
	r.serve()
	t.Cleanup(func() { r.stop() })
	return r
}

func (r *replica) serve() {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.Handle(Path, r.x.Handler())
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := r.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			r.t.Error(err)
		}
	}()
}

func (r *replica) stop() {
	if r.srv != nil {
		_ = r.srv.Close()
		r.srv = nil
	}
}

func query(t testing.TB, p promv1.API, q string, at time.Time) model.Vector {
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

// scalar is the single value of an aggregation without grouping.
func scalar(t testing.TB, p promv1.API, q string, at time.Time) float64 {
	t.Helper()
	v := query(t, p, q, at)
	if len(v) != 1 {
		t.Fatalf("%s: %d results, want 1", q, len(v))
	}
	return float64(v[0].Value)
}

// split deals records to two replicas alternately, as a load balancer in
// front of meshlens' collectors does.
func split(recs []mesh.Record) (a, b []mesh.Record) {
	for i, r := range recs {
		if i%2 == 0 {
			a = append(a, r)
		} else {
			b = append(b, r)
		}
	}
	return a, b
}

func traffic(n int) []mesh.Record {
	var recs []mesh.Record
	for i := range n {
		code := uint16(200)
		if i%10 == 0 {
			code = 503
		}
		recs = append(recs, record(peerA, peerB, "http", code, -1, time.Duration(1+i%40)*time.Millisecond, i%3 != 0))
		recs = append(recs, record(mesh.Peer{}, peerA, "http", 200, -1, time.Duration(i%7)*time.Millisecond, false))
	}
	return recs
}

// TestTwoReplicasSumInPrometheus: two meshlens replicas, each exporting the
// requests it ingested, scraped by one Prometheus; sums over instances are
// the mesh's totals, also across a restart of one replica during which a
// scrape fails.
func TestTwoReplicasSumInPrometheus(t *testing.T) {
	a := startReplica(t, "127.0.0.1:0")
	b := startReplica(t, "127.0.0.1:0")
	const every = 250 * time.Millisecond
	p := promtest.API(t, promtest.Start(t, promtest.Config{Targets: []string{a.addr, b.addr}, Path: Path, Interval: every}))
	ctx := context.Background()

	first := traffic(200)
	fa, fb := split(first)
	_ = a.x.ConsumeRecords(ctx, fa)
	_ = b.x.ConsumeRecords(ctx, fb)
	s := promtest.LastScrapeAfter(t, p, time.Now(), 30*time.Second)
	end := promtest.LastScrapeAfter(t, p, s.Add(time.Millisecond), 30*time.Second)

	dest := `{reporter="destination"}`
	want := func(recs []mesh.Record, match func(*mesh.Record) bool) float64 {
		n := 0
		for i := range recs {
			if match(&recs[i]) {
				n++
			}
		}
		return float64(n)
	}
	all := func(*mesh.Record) bool { return true }
	toB := func(r *mesh.Record) bool { return r.Destination.Service == "b" }
	if got := len(query(t, p, `count by (instance) (istio_requests_total`+dest+`)`, end)); got != 2 {
		t.Fatalf("series from %d instances, want 2", got)
	}
	if got := scalar(t, p, `sum(istio_requests_total`+dest+`)`, end); got != want(first, all) {
		t.Fatalf("sum over replicas = %v, want %v", got, want(first, all))
	}
	if got := scalar(t, p, `sum(istio_request_duration_milliseconds_count{reporter="source"})`, end); got != want(first, toB) {
		t.Fatalf("source reports summed = %v, want %v", got, want(first, toB))
	}
	// Every bucket of the summed histogram is the records'.
	for _, le := range []float64{1, 5, 10, 25, 50} {
		n := want(first, func(r *mesh.Record) bool { return float64(r.Duration.Microseconds())/1000 <= le })
		q := `sum(istio_request_duration_milliseconds_bucket{reporter="destination",le="` + model.SampleValue(le).String() + `"})`
		if got := scalar(t, p, q, end); got != n {
			t.Fatalf("%s = %v, want %v", q, got, n)
		}
	}

	// Replica b restarts: down for a scrape or more, back with counters at
	// zero; both take more traffic.
	b.stop()
	deadline := time.Now().Add(30 * time.Second)
	for scalar(t, p, `up{instance="`+b.addr+`"}`, time.Now()) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("Prometheus never saw the replica down")
		}
		time.Sleep(every)
	}
	b.x = newTestExporter(t, Config{})
	b.serve()
	second := traffic(300)
	sa, sb := split(second)
	_ = a.x.ConsumeRecords(ctx, sa)
	_ = b.x.ConsumeRecords(ctx, sb)
	s = promtest.LastScrapeAfter(t, p, time.Now(), 30*time.Second)
	promtest.LastScrapeAfter(t, p, s.Add(time.Millisecond), 30*time.Second)
	// More scrapes without traffic, so increase() extrapolates little past
	// the last sample of the replica scraped before the evaluation time.
	time.Sleep(40 * every)
	end = promtest.LastScrapeAfter(t, p, time.Now(), 30*time.Second)

	// The counters: b counts only since its restart, as Envoy does.
	wantNow := float64(len(fa) + len(second))
	if got := scalar(t, p, `sum(istio_requests_total`+dest+`)`, end); got != wantNow {
		t.Fatalf("sum of counters after the restart = %v, want %v", got, wantNow)
	}
	// increase() over both replicas counts every request, the restart
	// notwithstanding.
	total := want(first, all) + want(second, all)
	for _, q := range []string{
		`sum(increase(istio_requests_total` + dest + `[5m]))`,
		`sum(increase(istio_request_duration_milliseconds_count` + dest + `[5m]))`,
	} {
		if got := scalar(t, p, q, end); math.Abs(got-total) > 0.05*total {
			t.Errorf("%s = %.1f, want %v within 5%%", q, got, total)
		} else {
			t.Logf("%s = %.1f, records %v", q, got, total)
		}
	}
	errs := want(first, func(r *mesh.Record) bool { return r.Code >= 500 }) + want(second, func(r *mesh.Record) bool { return r.Code >= 500 })
	q := `sum(increase(istio_requests_total{reporter="destination",response_code=~"5.."}[5m]))`
	if got := scalar(t, p, q, end); math.Abs(got-errs) > 0.05*errs {
		t.Errorf("%s = %.1f, want %v within 5%%", q, got, errs)
	}
}
