package replicas

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/query"
)

// The benchmark mesh of query's and graph's benchmarks: 1,000 services × 3
// versions, 10,000 version-to-version edges.
const benchNodes, benchEdges = 3000, 10000

func benchPeer(n int) mesh.Peer {
	svc := fmt.Sprintf("svc%d", n/3)
	ver := fmt.Sprintf("v%d", n%3+1)
	return mesh.Peer{Namespace: fmt.Sprintf("ns%d", (n/3)%10), Service: svc, Workload: svc + "-" + ver, Version: ver}
}

// BenchmarkMergedGraphQuery times GET /api/v1/graph?window=5m&view=version
// (HTTP and JSON included, until the answer's last byte) on one of three replicas that each saw a third of
// ten minutes of the benchmark mesh (every edge on every replica, as behind
// a load balancer), against the same query on one replica that saw it all,
// in the same run. Every query is cold: all live graphs publish a new
// snapshot before it, so no sum or graph of an earlier query is reused (a
// busy mesh publishes every second). Query counts are fixed inside.
func BenchmarkMergedGraphQuery(b *testing.B) {
	ctx := context.Background()
	end := time.Now()
	now := func() time.Time { return end }
	logger := slog.New(slog.DiscardHandler)
	var addrs []string
	var lives []*graph.Live
	var servers []*httptest.Server
	for range 3 {
		live, err := graph.New(graph.Config{Now: now}, logger, nil)
		if err != nil {
			b.Fatal(err)
		}
		reps, err := New(live, Options{Peers: func() []string { return addrs }, Timeout: 5 * time.Second}, logger, nil)
		if err != nil {
			b.Fatal(err)
		}
		e := echo.New()
		api := e.Group("/api/v1")
		query.RegisterRoutes(api, query.Deps{Live: live, Now: now, Replicas: reps})
		reps.RegisterRoutes(api)
		srv := httptest.NewServer(e)
		defer srv.Close()
		addrs = append(addrs, strings.TrimPrefix(srv.URL, "http://"))
		lives = append(lives, live)
		servers = append(servers, srv)
	}
	single, err := graph.New(graph.Config{Now: now}, logger, nil)
	if err != nil {
		b.Fatal(err)
	}
	e := echo.New()
	query.RegisterRoutes(e.Group("/api/v1"), query.Deps{Live: single, Now: now})
	singleSrv := httptest.NewServer(e)
	defer singleSrv.Close()

	batch := make([]mesh.Record, benchEdges)
	for step := range 60 {
		at := end.Add(-10*time.Minute + time.Duration(step+1)*10*time.Second)
		for i := range batch {
			s := i % benchNodes
			code := uint16(200)
			if i%10 == 0 && step%2 == 0 {
				code = 503
			}
			batch[i] = mesh.Record{Time: at, Source: benchPeer(s), Destination: benchPeer((s + 1 + (i/benchNodes)*997 + (s*13)%500) % benchNodes),
				Protocol: "http", Code: code, GRPCStatus: -1, Flags: "-", Duration: time.Duration(1+(i+step)%200) * time.Millisecond,
				BytesIn: 200, BytesOut: 2000, MTLS: i%4 != 0}
		}
		_ = lives[step%3].ConsumeRecords(ctx, batch)
		_ = single.ConsumeRecords(ctx, batch)
	}
	// get times the query as a client sees it: until the last byte of the
	// answer has arrived (what curl's time_total says). The answer is then
	// decoded and checked, off the clock. The client reads into one buffer
	// and counts the edges without keeping them: a real client is another
	// process, whose garbage is not the replicas' to collect, and here every
	// byte it allocates is (io.ReadAll and decoding every edge were 13 MB
	// per query, as much as a merged query's own).
	var body bytes.Buffer
	get := func(url string) (took, cpu time.Duration, faults int64) {
		c0, f0 := usage()
		start := time.Now()
		resp, err := http.Get(url + "/api/v1/graph?window=5m&view=version")
		if err != nil {
			b.Fatal(err)
		}
		body.Reset()
		_, err = body.ReadFrom(resp.Body)
		took = time.Since(start)
		c1, f1 := usage()
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		var g struct {
			Edges   []struct{}
			Partial bool
			Missing any
		}
		err = json.Unmarshal(body.Bytes(), &g)
		if err != nil || len(g.Edges) != benchEdges || g.Partial {
			b.Fatalf("graph: %s: %d edges, partial %v %v, %v: %.300s", resp.Status, len(g.Edges), g.Partial, g.Missing, err, body.Bytes())
		}
		return took, c1 - c0, f1 - f0
	}
	// cold also returns the CPU the process spent per query until its last
	// byte (servers, peers and the client's reading; not the snapshots'
	// publishing nor the check), which the machine's other load moves far
	// less than the latencies, and the page faults (memory new to the
	// process, first touched: ~15 µs each here).
	//
	// It also returns the MB the process allocated per query (servers, peers
	// and the client, the check included) and the garbage collections that
	// ended while the queries ran: the three replicas and the client share
	// one heap here, so every collection lands on some query's latency.
	// MESHLENS_GRAPHQUERY_TRACE=1 prints each query's figures to stderr.
	trace := os.Getenv("MESHLENS_GRAPHQUERY_TRACE") != ""
	type phase struct {
		took            []time.Duration
		cpu, mb, faults float64
		gcs             uint64
	}
	cold := func(name string, n int, url string) phase {
		p := phase{took: make([]time.Duration, n)}
		var cpu time.Duration
		var faults int64
		a0, gc0 := heapAllocs()
		for i := range p.took {
			for _, l := range append(lives, single) {
				l.Refresh()
			}
			_, g0 := heapAllocs()
			took, c, f := get(url)
			p.took[i], cpu, faults = took, cpu+c, faults+f
			if trace {
				_, g1 := heapAllocs()
				fmt.Fprintf(os.Stderr, "%s query %d: %.1f ms, %.1f CPU-ms, %d page faults, %d GCs\n", name, i, ms(took), ms(c), f, g1-g0)
			}
		}
		a1, gc1 := heapAllocs()
		p.cpu, p.mb, p.faults, p.gcs = ms(cpu)/float64(n), float64(a1-a0)/(1<<20)/float64(n), float64(faults)/float64(n), gc1-gc0
		return p
	}
	for _, l := range append(lives, single) {
		l.Refresh()
	}
	get(servers[0].URL) // connections up
	get(singleSrv.URL)
	if path := os.Getenv("MESHLENS_GRAPHQUERY_PROFILE"); path != "" {
		// A CPU profile of the queries alone, not of filling the graphs.
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	b.ResetTimer()
	merged := cold("merged", 40, servers[0].URL)
	one := cold("single", 40, singleSrv.URL)
	b.StopTimer()
	b.ReportMetric(merged.cpu, "merged3-cpu-ms/query")
	b.ReportMetric(one.cpu, "single-cpu-ms/query")
	b.ReportMetric(merged.mb, "merged3-alloc-MB/query")
	b.ReportMetric(one.mb, "single-alloc-MB/query")
	b.ReportMetric(merged.faults, "merged3-faults/query")
	b.ReportMetric(one.faults, "single-faults/query")
	b.ReportMetric(float64(merged.gcs), "merged3-gcs")
	b.ReportMetric(float64(one.gcs), "single-gcs")
	b.ReportMetric(ms(pct(merged.took, 0.5)), "merged3-p50-ms")
	b.ReportMetric(ms(pct(merged.took, 0.99)), "merged3-p99-ms")
	b.ReportMetric(ms(pct(one.took, 0.5)), "single-p50-ms")
	b.ReportMetric(ms(pct(one.took, 0.99)), "single-p99-ms")
	b.ReportMetric(float64(pct(merged.took, 0.99))/float64(pct(one.took, 0.99)), "merged/single-p99")
	load, _ := os.ReadFile("/proc/loadavg")
	b.Logf("graph 5m, version view, %d edges, HTTP+JSON, cold: 3 replicas merged p50 %.1f ms p99 %.1f ms, %.1f CPU-ms, %.1f MB and %.0f page faults/query, %d GCs; one replica p50 %.1f ms p99 %.1f ms, %.1f CPU-ms, %.1f MB and %.0f page faults/query, %d GCs; ratio p99 %.2f; load average %s",
		benchEdges, ms(pct(merged.took, 0.5)), ms(pct(merged.took, 0.99)), merged.cpu, merged.mb, merged.faults, merged.gcs,
		ms(pct(one.took, 0.5)), ms(pct(one.took, 0.99)), one.cpu, one.mb, one.faults, one.gcs,
		float64(pct(merged.took, 0.99))/float64(pct(one.took, 0.99)), strings.Join(strings.Fields(string(load))[:3], " "))
}

// heapAllocs are the bytes the process has allocated on the heap and the
// garbage collections it has finished.
func heapAllocs() (bytes, gcs uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

// usage is the CPU (user and system) the process has used and the page
// faults it took without I/O (memory touched for the first time).
func usage() (time.Duration, int64) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Minflt
}

func pct(ds []time.Duration, q float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := min(max(int(q*float64(len(s))+0.5)-1, 0), len(s)-1)
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
