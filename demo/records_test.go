package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/collector"
	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/store/storetest"
)

// recordSink remembers the records meshlens' collector makes.
type recordSink struct {
	mu   sync.Mutex
	recs []mesh.Record
}

func (s *recordSink) ConsumeRecords(_ context.Context, recs []mesh.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs = append(s.recs, recs...)
	return nil
}

func (s *recordSink) Records() []mesh.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mesh.Record(nil), s.recs...)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestDemoTracesBecomeMeshRecords sends the demo's traces to meshlens' own
// collector (OTLP receiver, span pairing, ClickHouse writer) and checks the
// mesh request records it makes: who called whom, at which version and
// workload, and that the injected fault shows as a gRPC error of reviews v3.
func TestDemoTracesBecomeMeshRecords(t *testing.T) {
	sink := &recordSink{}
	ccfg := collector.DefaultConfig()
	ccfg.OTLPGRPC, ccfg.OTLPHTTP, ccfg.ALS = freeAddr(t), "", ""
	// Halves pair as soon as both arrive; the wait only bounds how late
	// one may be, which on a loaded machine (or under -race) is seconds.
	ccfg.PairWait = 10 * time.Second
	c, err := collector.New(ccfg, t.TempDir(), storetest.Open(t), []mesh.RecordSink{sink}, nil, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("collector: %v", err)
		}
	}()
	for deadline := time.Now().Add(30 * time.Second); !c.Ready(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("collector not ready after 30s")
		}
	}

	f := startDemo(t, func(cfg *Config) {
		cfg.Collector = ccfg.OTLPGRPC
		cfg.Rate = 50
		cfg.ReviewsSplit = map[string]uint32{"v1": 34, "v2": 33, "v3": 33}
		cfg.Faults = map[VersionKey]Fault{{"reviews", "v3"}: {ErrorRate: 1}}
	})
	waitStats(t, f.demo, "successes and v3 failures", func(s Stats) bool {
		return s.ByReview["v1"] >= 10 && s.ByReview["v2"] >= 10 && s.Errors >= 20
	})
	f.stop(t)

	type edge struct {
		src, dst mesh.Peer
		grpc     int16
	}
	want := []edge{
		{mesh.Peer{Namespace: "bookinfo", Service: "loadgen", Workload: "loadgen", Version: "v1"}, mesh.Peer{Namespace: "bookinfo", Service: "productpage", Workload: "productpage-v1", Version: "v1"}, 0},
		{mesh.Peer{Namespace: "bookinfo", Service: "productpage", Workload: "productpage-v1", Version: "v1"}, mesh.Peer{Namespace: "bookinfo", Service: "details", Workload: "details-v1", Version: "v1"}, 0},
		{mesh.Peer{Namespace: "bookinfo", Service: "productpage", Workload: "productpage-v1", Version: "v1"}, mesh.Peer{Namespace: "bookinfo", Service: "reviews", Workload: "reviews-v1", Version: "v1"}, 0},
		{mesh.Peer{Namespace: "bookinfo", Service: "productpage", Workload: "productpage-v1", Version: "v1"}, mesh.Peer{Namespace: "bookinfo", Service: "reviews", Workload: "reviews-v3", Version: "v3"}, 14},
		{mesh.Peer{Namespace: "bookinfo", Service: "reviews", Workload: "reviews-v2", Version: "v2"}, mesh.Peer{Namespace: "bookinfo", Service: "ratings", Workload: "ratings-v1", Version: "v1"}, 0},
		{mesh.Peer{Namespace: "bookinfo", Service: "loadgen", Workload: "loadgen", Version: "v1"}, mesh.Peer{Namespace: "bookinfo", Service: "productpage", Workload: "productpage-v1", Version: "v1"}, 14},
	}
	var seen map[edge]int
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		seen = map[edge]int{}
		for _, r := range sink.Records() {
			if r.Origin != mesh.OriginSpanPair || r.Protocol != "grpc" {
				continue
			}
			seen[edge{r.Source, r.Destination, r.GRPCStatus}]++
		}
		missing := 0
		for _, e := range want {
			if seen[e] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, e := range want {
				if seen[e] == 0 {
					t.Errorf("no gRPC span-pair record %s -> %s with status %d", e.src, e.dst, e.grpc)
				}
			}
			var got []string
			for e, n := range seen {
				got = append(got, fmt.Sprintf("%v -> %v status %d: %d", e.src, e.dst, e.grpc, n))
			}
			t.Fatalf("records seen: %v (all records: %d)", got, len(sink.Records()))
		}
	}
	for e := range seen {
		if e.dst.Service == "reviews" && e.dst.Version == "v3" && e.grpc == 0 {
			t.Errorf("a record shows reviews v3 succeeding although it fails every request")
		}
	}
}
