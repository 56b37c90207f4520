package istiometrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshlens/meshlens/mesh"
)

// benchRecords is a batch over edges label sets: callers × destinations ×
// a few codes, the shape of a mesh's traffic.
func benchRecords(edges, n int) []mesh.Record {
	recs := make([]mesh.Record, n)
	for i := range recs {
		e := i % edges
		src := mesh.Peer{Namespace: "ns" + strconv.Itoa(e%10), Service: "svc" + strconv.Itoa(e/3), Workload: "svc" + strconv.Itoa(e/3) + "-v1", Version: "v1"}
		dst := mesh.Peer{Namespace: "ns" + strconv.Itoa((e+1)%10), Service: "svc" + strconv.Itoa(e/3+1), Workload: "svc" + strconv.Itoa(e/3+1) + "-v" + strconv.Itoa(e%3+1), Version: "v" + strconv.Itoa(e%3+1)}
		code := uint16(200)
		if i%50 == 0 {
			code = 503
		}
		recs[i] = mesh.Record{Time: time.Now(), Source: src, Destination: dst, Protocol: "http", Code: code, GRPCStatus: -1, Flags: "-",
			Duration: time.Duration(1+i%300) * time.Millisecond, BytesIn: uint64(100 + i%1000), BytesOut: uint64(1000 + i%5000), MTLS: true}
	}
	return recs
}

// recordSink is what the benchmarks compare.
type recordSink interface {
	mesh.RecordSink
	registry() *prometheus.Registry
}

type exporterSink struct{ *Exporter }

func (s exporterSink) registry() *prometheus.Registry { return s.reg }

// vecSink is the straightforward alternative: client_golang vectors, label
// values computed per record, WithLabelValues per metric and reporter.
type vecSink struct {
	reg                                   *prometheus.Registry
	requests                              *prometheus.CounterVec
	duration, requestBytes, responseBytes *prometheus.HistogramVec
	cached                                bool
	children                              map[httpKey]*vecChildren
}

// vecChildren caches a label set's children: the vectors' lookup is paid
// once per label set instead of once per record.
type vecChildren struct {
	requests                              [2]prometheus.Counter
	duration, requestBytes, responseBytes [2]prometheus.Observer
}

func newVecSink(cached bool) *vecSink {
	s := &vecSink{reg: prometheus.NewRegistry(), cached: cached, children: map[httpKey]*vecChildren{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_requests_total", Help: "h"}, httpLabelNames)}
	hist := func(name string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: "h", Buckets: mesh.LatencyBucketsMs}, httpLabelNames)
	}
	s.duration, s.requestBytes, s.responseBytes = hist("istio_request_duration_milliseconds"), hist("istio_request_bytes"), hist("istio_response_bytes")
	s.reg.MustRegister(s.requests, s.duration, s.requestBytes, s.responseBytes)
	return s
}

func (s *vecSink) registry() *prometheus.Registry { return s.reg }

func (s *vecSink) labels(r *mesh.Record, reporter string) []string {
	v := make([]string, nLabels)
	sp, dp := canonicalPeer(r.Source, &cleaner{}), canonicalPeer(r.Destination, &cleaner{})
	policy := "unknown"
	if reporter == "destination" {
		policy = "none"
		if r.MTLS {
			policy = "mutual_tls"
		}
	}
	v[lConnectionSecurityPolicy], v[lReporter] = policy, reporter
	v[lDestinationApp], v[lDestinationCanonicalService], v[lDestinationServiceName] = dp.Service, dp.Service, dp.Service
	v[lDestinationCanonicalRevision], v[lDestinationVersion] = *revisionLabel(&dp), *versionLabel(&dp)
	v[lDestinationCluster], v[lDestinationPrincipal], v[lDestinationService] = "Kubernetes", "unknown", serviceFQDN(&dp, "cluster.local")
	v[lDestinationServiceNamespace], v[lDestinationWorkloadNamespace], v[lDestinationWorkload] = dp.Namespace, dp.Namespace, dp.Workload
	v[lGRPCResponseStatus], v[lRequestProtocol], v[lResponseCode], v[lResponseFlags] = grpcLabel(r.GRPCStatus), r.Protocol, codeLabel(r.Code), r.Flags
	v[lSourceApp], v[lSourceCanonicalService], v[lSourceCanonicalRevision], v[lSourceVersion] = sp.Service, sp.Service, *revisionLabel(&sp), *versionLabel(&sp)
	v[lSourceCluster], v[lSourcePrincipal], v[lSourceWorkload], v[lSourceWorkloadNamespace] = "Kubernetes", "unknown", sp.Workload, sp.Namespace
	return v
}

func (s *vecSink) ConsumeRecords(_ context.Context, recs []mesh.Record) error {
	for i := range recs {
		r := &recs[i]
		var c *vecChildren
		if s.cached {
			k := httpKey{src: r.Source, dst: r.Destination, protocol: r.Protocol, flags: r.Flags, code: r.Code, grpc: r.GRPCStatus}
			c = s.children[k]
		}
		if c == nil {
			c = &vecChildren{}
			for i, rep := range []string{"destination", "source"} {
				l := s.labels(r, rep)
				c.requests[i] = s.requests.WithLabelValues(l...)
				c.duration[i] = s.duration.WithLabelValues(l...)
				c.requestBytes[i] = s.requestBytes.WithLabelValues(l...)
				c.responseBytes[i] = s.responseBytes.WithLabelValues(l...)
			}
			if s.cached {
				s.children[httpKey{src: r.Source, dst: r.Destination, protocol: r.Protocol, flags: r.Flags, code: r.Code, grpc: r.GRPCStatus}] = c
			}
		}
		ms := float64(r.Duration/time.Microsecond) / 1000
		for i := range 2 {
			c.requests[i].Inc()
			c.duration[i].Observe(ms)
			c.requestBytes[i].Observe(float64(r.BytesIn))
			c.responseBytes[i].Observe(float64(r.BytesOut))
		}
	}
	return nil
}

func benchSinks(b *testing.B) map[string]func() recordSink {
	return map[string]func() recordSink{
		"exporter": func() recordSink {
			x, err := New(DefaultConfig(), nil)
			if err != nil {
				b.Fatal(err)
			}
			return exporterSink{x}
		},
		"vec-per-record": func() recordSink { return newVecSink(false) },
		"vec-cached":     func() recordSink { return newVecSink(true) },
	}
}

// BenchmarkConsumeRecords is the hot path: every record the collector
// accepts goes through it. Reported per record.
func BenchmarkConsumeRecords(b *testing.B) {
	const edges, batch = 3000, 1000
	recs := benchRecords(edges, 30*batch)
	for _, name := range []string{"exporter", "vec-per-record", "vec-cached"} {
		b.Run(name, func(b *testing.B) {
			s := benchSinks(b)[name]()
			for i := 0; i < len(recs); i += batch { // every series exists
				_ = s.ConsumeRecords(context.Background(), recs[i:i+batch])
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				off := (i * batch) % len(recs)
				_ = s.ConsumeRecords(context.Background(), recs[off:off+batch])
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/record")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkScrape times one scrape of /metrics/istio (gather and encode,
// text format, uncompressed) of 3,000 label sets × 2 reporters = 6,000
// series per metric.
func BenchmarkScrape(b *testing.B) {
	recs := benchRecords(3000, 30000)
	for _, name := range []string{"exporter", "vec-cached"} {
		b.Run(name, func(b *testing.B) {
			s := benchSinks(b)[name]()
			_ = s.ConsumeRecords(context.Background(), recs)
			h := promhttp.HandlerFor(s.registry(), promhttp.HandlerOpts{DisableCompression: true})
			scrape := func() int {
				w := &countingWriter{header: http.Header{}}
				h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics/istio", nil))
				return w.n
			}
			size := scrape()
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				scrape()
			}
			b.StopTimer()
			if x, ok := s.(exporterSink); ok {
				b.ReportMetric(float64(x.Series().HTTP), "series/metric")
			}
			b.ReportMetric(float64(size)/(1<<20), "MiB/scrape")
			b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MiB")
		})
	}
}

// countingWriter is an http.ResponseWriter that only counts the body.
type countingWriter struct {
	header http.Header
	n      int
}

func (w *countingWriter) Header() http.Header         { return w.header }
func (w *countingWriter) WriteHeader(int)             {}
func (w *countingWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// TestHeapPerLabelSet reports what a label set costs the exporter, for the
// README's sizing of --istio-metrics-max-series.
func TestHeapPerLabelSet(t *testing.T) {
	if testing.Short() {
		t.Skip("measures memory")
	}
	const n = 20000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	x, err := New(Config{MaxSeries: 4 * n}, nil)
	if err != nil {
		t.Fatal(err)
	}
	recs := benchRecords(n, n)
	for i := range recs {
		recs[i].Destination.Workload += fmt.Sprint(i) // n distinct label sets
	}
	_ = x.ConsumeRecords(context.Background(), recs)
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%d label sets (%d series per metric): %.0f bytes per label set", n, x.Series().HTTP, per)
	if per > 4096 {
		t.Errorf("%.0f bytes per label set, want under 4 KiB", per)
	}
	runtime.KeepAlive(x)
	_ = io.Discard
}
