package query

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/store/storetest"
)

// The benchmark mesh: 1,000 services × 3 versions = 3,000 version nodes and
// 10,000 distinct version-to-version edges. Node n is service n/3, version
// n%3+1, namespace (n/3)%10. Edge e calls from node e%3000 to a node offset
// by one of four distinct offsets. benchEdgeSQL computes the same in SQL.
const (
	benchServices = 1000
	benchNodes    = benchServices * 3
	benchEdges    = 10000
)

func benchPeer(n int) mesh.Peer {
	svc := fmt.Sprintf("svc%d", n/3)
	ver := fmt.Sprintf("v%d", n%3+1)
	return mesh.Peer{Namespace: fmt.Sprintf("ns%d", (n/3)%10), Service: svc, Workload: svc + "-" + ver, Version: ver}
}

func benchEdge(e int) (src, dst mesh.Peer) {
	s := e % benchNodes
	k := e / benchNodes
	d := (s + 1 + k*997 + (s*13)%500) % benchNodes
	return benchPeer(s), benchPeer(d)
}

// benchStep is one record per edge at time at, for the step'th step; one
// edge in ten answers 503 every other step.
func benchStep(at time.Time, step int) []mesh.Record {
	recs := make([]mesh.Record, 0, benchEdges)
	for e := 0; e < benchEdges; e++ {
		src, dst := benchEdge(e)
		code := uint16(200)
		if e%10 == 0 && step%2 == 0 {
			code = 503
		}
		recs = append(recs, mesh.Record{Time: at, Source: src, Destination: dst, Protocol: "http", Code: code, GRPCStatus: -1,
			Flags: "-", Duration: time.Duration(1+(e+step)%200) * time.Millisecond, BytesIn: 200, BytesOut: 2000, MTLS: e%4 != 0})
	}
	return recs
}

// benchTraffic calls fn with one step of records every step over span ending at end.
func benchTraffic(end time.Time, span, step time.Duration, fn func([]mesh.Record)) (n int) {
	i := 0
	for at := end.Add(-span + step); !at.After(end); at = at.Add(step) {
		fn(benchStep(at, i))
		i++
		n += benchEdges
	}
	return n
}

func percentile(ds []time.Duration, q float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(q*float64(len(s))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func timeIt(n int, fn func()) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		start := time.Now()
		fn()
		out[i] = time.Since(start)
	}
	return out
}

func heapMB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

// BenchmarkGraphQueryLiveVsPrometheus builds the benchmark mesh in the live
// graph (an hour of traffic, one record per edge every 10 s) and in a real
// Prometheus (Istio metrics scraped from an exporter), then times the same
// 5 m version-graph query on both. `make bench` runs it once (-benchtime 1x);
// the query counts inside are fixed.
func BenchmarkGraphQueryLiveVsPrometheus(b *testing.B) {
	ctx := context.Background()
	end := time.Now()
	now := func() time.Time { return end }

	before := heapMB()
	live, err := graph.New(graph.Config{Now: now}, discard(), nil)
	if err != nil {
		b.Fatal(err)
	}
	var ingestTime time.Duration
	n := benchTraffic(end, time.Hour, 10*time.Second, func(recs []mesh.Record) {
		start := time.Now()
		_ = live.ConsumeRecords(ctx, recs)
		ingestTime += time.Since(start)
	})
	ingestRate := float64(n) / ingestTime.Seconds()
	live.Refresh()
	liveMB := heapMB() - before

	opts := graph.Options{View: graph.ViewVersion}
	// Cold queries: each on a freshly published snapshot, so no result of
	// an earlier query is reused.
	query := func(window time.Duration) func() {
		return func() {
			g, err := live.Refresh().Graph(window, opts)
			if err != nil {
				b.Fatal(err)
			}
			if len(g.Edges) != benchEdges {
				b.Fatalf("live graph has %d edges, want %d", len(g.Edges), benchEdges)
			}
		}
	}
	b.ResetTimer()
	live5m := timeIt(50, query(5*time.Minute))
	live1h := timeIt(20, query(time.Hour))

	// The HTTP route, JSON encoding included.
	e := echo.New()
	RegisterRoutes(e.Group("/api/v1"), Deps{Live: live, Now: now})
	srv := httptest.NewServer(e)
	defer srv.Close()
	httpT := timeIt(30, func() {
		resp, err := http.Get(srv.URL + "/api/v1/graph?window=5m&view=version")
		if err != nil {
			b.Fatal(err)
		}
		var g struct{ Edges []json.RawMessage }
		err = json.NewDecoder(resp.Body).Decode(&g)
		resp.Body.Close()
		if err != nil || len(g.Edges) != benchEdges {
			b.Fatalf("http graph: %d edges, %v", len(g.Edges), err)
		}
	})
	b.StopTimer()

	// The same mesh in Prometheus, as meshlens exports it: five minutes'
	// worth of traffic (30 records per edge), then two scrapes (new series
	// are exposed at zero first).
	im := newIstioMetrics(b)
	benchTraffic(end, 5*time.Minute, 10*time.Second, func(recs []mesh.Record) { consume(b, im, recs) })
	b.Logf("live graph, %d edges, 1h of traffic: heap %.0f MB; 5m query p50 %.1f ms p99 %.1f ms; 1h query p99 %.1f ms; HTTP+JSON p99 %.1f ms; ingest %.0f records/s",
		benchEdges, liveMB, ms(percentile(live5m, 0.5)), ms(percentile(live5m, 0.99)), ms(percentile(live1h, 0.99)), ms(percentile(httpT, 0.99)), ingestRate)
	// Istio's label set and both reporters make ~22k series per metric and
	// a scrape of about a gigabyte: scrape slowly. Prometheus keeps the
	// destination reports only, which the Prometheus source reads (with
	// both, its bucket query takes over 5 minutes on this machine).
	prom, err := NewPrometheus(startPrometheusEvery(b, serveIstioMetrics(b, im), time.Minute,
		`{source_labels: [reporter], regex: source, action: drop}`), nil)
	if err != nil {
		b.Fatal(err)
	}
	prom.timeout = 5 * time.Minute
	first := lastScrapeAfter(b, prom, time.Now(), 5*time.Minute)
	promEnd := lastScrapeAfter(b, prom, first.Add(time.Millisecond), 5*time.Minute)
	b.StartTimer()
	// Each Prometheus query takes seconds to minutes: three are enough.
	promT := timeIt(3, func() {
		t, err := prom.Traffic(ctx, promEnd, 5*time.Minute, "")
		if err != nil {
			b.Fatal(err)
		}
		if g := graph.Build(t, opts); len(g.Edges) != benchEdges {
			b.Fatalf("prometheus graph has %d edges, want %d", len(g.Edges), benchEdges)
		}
	})
	b.StopTimer()

	b.ReportMetric(ms(percentile(live5m, 0.5)), "live-5m-p50-ms")
	b.ReportMetric(ms(percentile(live5m, 0.99)), "live-5m-p99-ms")
	b.ReportMetric(ms(percentile(live1h, 0.99)), "live-1h-p99-ms")
	b.ReportMetric(ms(percentile(httpT, 0.99)), "http-5m-p99-ms")
	b.ReportMetric(ms(percentile(promT, 0.5)), "prom-5m-p50-ms")
	b.ReportMetric(ms(percentile(promT, 0.99)), "prom-5m-p99-ms")
	b.ReportMetric(float64(percentile(promT, 0.99))/float64(percentile(live5m, 0.99)), "prom/live-p99")
	b.ReportMetric(liveMB, "live-heap-MB")
	b.ReportMetric(ingestRate, "ingest-records/s")
	b.Logf("prometheus source, same mesh: 5m query p50 %.0f ms p99 %.0f ms; ratio to live p99 %.0fx",
		ms(percentile(promT, 0.5)), ms(percentile(promT, 0.99)), float64(percentile(promT, 0.99))/float64(percentile(live5m, 0.99)))
}

// benchEdgeSQL computes benchEdge's source and destination columns from
// `number` (the edge index e), so ClickHouse can generate the mesh itself.
const benchEdgeSQL = `
  number % 3000 AS s,
  (s + 1 + intDiv(number, 3000) * 997 + (s * 13) % 500) % 3000 AS d,
  concat('ns', toString(intDiv(s, 3) % 10)) AS src_namespace, concat('svc', toString(intDiv(s, 3))) AS src_service,
  concat(src_service, '-v', toString(s % 3 + 1)) AS src_workload, concat('v', toString(s % 3 + 1)) AS src_version,
  concat('ns', toString(intDiv(d, 3) % 10)) AS dst_namespace, concat('svc', toString(intDiv(d, 3))) AS dst_service,
  concat(dst_service, '-v', toString(d % 3 + 1)) AS dst_workload, concat('v', toString(d % 3 + 1)) AS dst_version`

// BenchmarkHistoryQuery24h fills the rollups with 24 h of the benchmark mesh
// (edges_1h: 24 × 10,000 edges, plus 503 rows on a tenth of them; edges_1m:
// the last hour per minute) and times the 24 h graph (hourly rollup) and the
// 1 h graph (minute rollup).
func BenchmarkHistoryQuery24h(b *testing.B) {
	st := storetest.Open(b)
	ctx := context.Background()
	end := time.Now().UTC().Truncate(time.Hour)
	fill := func(table string, from time.Time, n int, step time.Duration) {
		q := fmt.Sprintf(`INSERT INTO %s
SELECT t, src_namespace, src_service, src_workload, src_version, dst_namespace, dst_service, dst_workload, dst_version,
  'http' AS protocol, code, toInt16(-1) AS grpc_status,
  countState() AS requests, sumState(toUInt8(1)) AS mtls, sumState(toUInt64(200)) AS bytes_in, sumState(toUInt64(2000)) AS bytes_out,
  sumState(toUInt64(20000)) AS duration_sum_us,
  sumForEachState(arrayMap(i -> toUInt64(i = 4 + number %% 5), range(%d))) AS latency
FROM (SELECT toDateTime(%d + intDiv(n, %d) * %d) AS t, n %% %d AS number, if(number %% 10 = 0 AND intDiv(n, %d) %% 2 = 0, toUInt16(503), toUInt16(200)) AS code, %s
      FROM (SELECT number AS n FROM system.numbers LIMIT %d))
GROUP BY t, src_namespace, src_service, src_workload, src_version, dst_namespace, dst_service, dst_workload, dst_version, code, number`,
			st.Table(table), len(mesh.LatencyBucketsMs)+1, from.Unix(), benchEdges, int(step/time.Second), benchEdges, benchEdges, benchEdgeSQL, n*benchEdges)
		if err := st.Conn().Exec(ctx, q); err != nil {
			b.Fatalf("fill %s: %v", table, err)
		}
	}
	fill("edges_1h", end.Add(-24*time.Hour), 24, time.Hour)
	fill("edges_1m", end.Add(-time.Hour), 60, time.Minute)
	h := NewHistory(st, 0)
	opts := graph.Options{View: graph.ViewVersion}
	run := func(window time.Duration) func() {
		return func() {
			t, err := h.Traffic(ctx, end, window, "")
			if err != nil {
				b.Fatal(err)
			}
			if g := graph.Build(t, opts); len(g.Edges) != benchEdges {
				b.Fatalf("history graph has %d edges, want %d", len(g.Edges), benchEdges)
			}
		}
	}
	b.ResetTimer()
	d24 := timeIt(5, run(24*time.Hour))
	d1 := timeIt(5, run(time.Hour))
	b.StopTimer()
	b.ReportMetric(ms(percentile(d24, 0.5)), "24h-p50-ms")
	b.ReportMetric(ms(percentile(d24, 1)), "24h-max-ms")
	b.ReportMetric(ms(percentile(d1, 0.5)), "1h-p50-ms")
	b.ReportMetric(ms(percentile(d1, 1)), "1h-max-ms")
	b.Logf("history graph of %d edges: 24h (edges_1h) p50 %.0f ms max %.0f ms; 1h (edges_1m) p50 %.0f ms max %.0f ms",
		benchEdges, ms(percentile(d24, 0.5)), ms(percentile(d24, 1)), ms(percentile(d1, 0.5)), ms(percentile(d1, 1)))
}
