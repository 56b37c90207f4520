package graph

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/meshlens/meshlens/mesh"
)

// BenchmarkLiveGraphQuery fills the live graph with an hour of a synthetic
// mesh (1,000 services × 3 versions, 10,000 edges, one record per edge every
// 10 s) and times version-graph queries (Traffic + Build) over 5 m and 1 h.
// Query counts are fixed inside, so `-benchtime 1x` gives stable figures.
func BenchmarkLiveGraphQuery(b *testing.B) {
	const nodes, edges = 3000, 10000
	peer := func(n int) mesh.Peer {
		svc := fmt.Sprintf("svc%d", n/3)
		ver := fmt.Sprintf("v%d", n%3+1)
		return mesh.Peer{Namespace: fmt.Sprintf("ns%d", (n/3)%10), Service: svc, Workload: svc + "-" + ver, Version: ver}
	}
	type pair struct{ src, dst mesh.Peer }
	pairs := make([]pair, edges)
	for e := range pairs {
		s := e % nodes
		pairs[e] = pair{peer(s), peer((s + 1 + (e/nodes)*997 + (s*13)%500) % nodes)}
	}
	end := time.Now()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	l, err := New(Config{Now: func() time.Time { return end }}, discardLogger(), nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	batch := make([]mesh.Record, edges)
	var ingest time.Duration
	n := 0
	for step := 0; step < 360; step++ {
		at := end.Add(-time.Hour + time.Duration(step+1)*10*time.Second)
		for e, p := range pairs {
			code := uint16(200)
			if e%10 == 0 && step%2 == 0 {
				code = 503
			}
			batch[e] = mesh.Record{Time: at, Source: p.src, Destination: p.dst, Protocol: "http", Code: code, GRPCStatus: -1,
				Flags: "-", Duration: time.Duration(1+(e+step)%200) * time.Millisecond, BytesIn: 200, BytesOut: 2000, MTLS: e%4 != 0}
		}
		start := time.Now()
		_ = l.ConsumeRecords(ctx, batch)
		ingest += time.Since(start)
		n += edges
	}
	l.Refresh()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	l.mu.Lock()
	estimate := l.memoryEstimateLocked(int(valueOf(l.m.cells)))
	l.mu.Unlock()

	b.ResetTimer()
	// Cold: every query on a fresh snapshot, so nothing is reused.
	// Graph keeps each graph for good; UseGraph, as the HTTP API reads the
	// live graph, builds in the memory of the graph before (recycle.go).
	measure := func(window time.Duration, n int, use bool) (p50, p99, cpu, alloc float64) {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		cpu0 := cpuTime()
		ds := make([]time.Duration, n)
		check := func(g *Graph) error {
			if len(g.Edges) != edges {
				return fmt.Errorf("%d edges", len(g.Edges))
			}
			return nil
		}
		for i := range ds {
			start := time.Now()
			var err error
			if use {
				err = l.Refresh().UseGraph(window, Options{View: ViewVersion}, check)
			} else {
				var g *Graph
				if g, err = l.Refresh().Graph(window, Options{View: ViewVersion}); err == nil {
					err = check(g)
				}
			}
			if err != nil {
				b.Fatal(err)
			}
			ds[i] = time.Since(start)
		}
		cpu = float64(cpuTime()-cpu0) / 1e6 / float64(n)
		runtime.ReadMemStats(&m1)
		return pct(ds, 0.5), pct(ds, 0.99), cpu, float64(m1.TotalAlloc-m0.TotalAlloc) / (1 << 20) / float64(n)
	}
	p50, p99, cpu5, alloc5 := measure(5*time.Minute, 100, false)
	h50, h99, cpu1h, alloc1h := measure(time.Hour, 30, false)
	u50, u99, cpuUse, allocUse := measure(5*time.Minute, 100, true)
	b.StopTimer()
	b.ReportMetric(u50, "5m-use-p50-ms")
	b.ReportMetric(u99, "5m-use-p99-ms")
	b.ReportMetric(cpuUse, "5m-use-cpu-ms/query")
	b.ReportMetric(allocUse, "5m-use-alloc-MB/query")
	heap := float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
	b.ReportMetric(p50, "5m-p50-ms")
	b.ReportMetric(p99, "5m-p99-ms")
	b.ReportMetric(h50, "1h-p50-ms")
	b.ReportMetric(h99, "1h-p99-ms")
	b.ReportMetric(cpu5, "5m-cpu-ms/query")
	b.ReportMetric(cpu1h, "1h-cpu-ms/query")
	b.ReportMetric(alloc5, "5m-alloc-MB/query")
	b.ReportMetric(alloc1h, "1h-alloc-MB/query")
	b.ReportMetric(heap, "heap-MB")
	b.ReportMetric(float64(estimate)/(1<<20), "estimate-MB")
	b.ReportMetric(float64(n)/ingest.Seconds(), "ingest-records/s")
	b.Logf("live graph, %d edges, 1h of traffic: 5m cold query p50 %.1f ms p99 %.1f ms (%.1f CPU-ms, %.1f MB allocated); 1h cold query p50 %.1f ms p99 %.1f ms (%.1f CPU-ms, %.1f MB allocated); 5m cold query through UseGraph p50 %.1f ms p99 %.1f ms (%.1f CPU-ms, %.1f MB allocated); heap %.0f MB (gauge estimate %.0f MB); ingest %.0f records/s",
		edges, p50, p99, cpu5, alloc5, h50, h99, cpu1h, alloc1h, u50, u99, cpuUse, allocUse, heap, float64(estimate)/(1<<20), float64(n)/ingest.Seconds())
}

func pct(ds []time.Duration, q float64) float64 {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return float64(s[int(q*float64(len(s)-1))]) / 1e6
}

// cpuTime is the process's user+system CPU time in nanoseconds: wall-clock
// latencies swing with other load on a shared machine, CPU per query does not.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
