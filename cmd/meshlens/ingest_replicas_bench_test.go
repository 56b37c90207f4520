package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshlens/meshlens/internal/chcluster"
	"github.com/meshlens/meshlens/internal/meshtest"
)

// BenchmarkIngestReplicas sends the same OTLP span pairs to 1, 2 and 3
// `meshlens serve` replicas (batches spread over them as a load balancer
// would, each pair in one batch) writing into the 2-shard × 2-replica
// ClickHouse cluster, in the same run, and reports spans/s end to end (sent
// until every span is stored) for each and the ratio to one replica. All of
// it shares this machine's two cores, so the figures say what the replicas
// cost here, not what more machines would give.
func BenchmarkIngestReplicas(b *testing.B) {
	const batches, pairs = 100, 1000 // 200,000 spans
	data := meshtest.SpanPairs(batches, pairs)
	spans := uint64(batches * pairs * 2)
	c := chcluster.Use(b)
	rates := map[int]float64{}
	b.ResetTimer()
	for n := 1; n <= 3; n++ {
		db := fmt.Sprintf("bench_replicas%d_%d", n, os.Getpid())
		b.Cleanup(func() {
			conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{c.Nodes()[0].Addr}})
			if err == nil {
				_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db+" ON CLUSTER "+c.Name)
				conn.Close()
			}
		})
		var otlps []string
		var procs []*meshlensProcess
		for range n {
			otlp := freeAddr(b)
			otlps = append(otlps, otlp)
			procs = append(procs, startMeshlens(b, "--clickhouse", c.DSN(db), "--clickhouse-cluster", c.Name,
				"--data-dir", b.TempDir(), "--otlp-grpc", otlp, "--clickhouse-wait", "60s"))
		}
		rates[n] = sendToAndWait(b, otlps, c.DSN(db), data, spans)
		for _, p := range procs {
			p.Stop(b)
		}
		b.Logf("%d replica(s): %.0f spans/s end to end", n, rates[n])
	}
	b.StopTimer()
	for n := 1; n <= 3; n++ {
		b.ReportMetric(rates[n], fmt.Sprintf("replicas%d-spans/s", n))
		b.ReportMetric(rates[n]/rates[1], fmt.Sprintf("replicas%d/1", n))
	}
	b.Logf("%d spans into 2 shards x 2 replicas: 1 meshlens %.0f spans/s; 2: %.0f (%.2fx); 3: %.0f (%.2fx), all on this machine",
		spans, rates[1], rates[2], rates[2]/rates[1], rates[3], rates[3]/rates[1])
}

// sendToAndWait exports data over OTLP/gRPC, batch i to otlps[i % n], from
// four senders per replica, and returns spans/s until the spans table of
// the database dsn names holds want rows.
func sendToAndWait(b *testing.B, otlps []string, dsn string, data []ptrace.Traces, want uint64) float64 {
	b.Helper()
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		b.Fatal(err)
	}
	db := opts.Auth.Database
	opts.Auth.Database = "default"
	ch, err := clickhouse.Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	defer ch.Close()
	start := time.Now()
	var wg sync.WaitGroup
	for r, otlp := range otlps {
		conn, err := grpc.NewClient(otlp, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		client := ptraceotlp.NewGRPCClient(conn)
		work := make(chan ptrace.Traces, len(data))
		for i := r; i < len(data); i += len(otlps) {
			work <- data[i]
		}
		close(work)
		for range 4 {
			wg.Go(func() {
				for td := range work {
					for {
						if _, err := client.Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(td)); err == nil {
							break
						}
						time.Sleep(10 * time.Millisecond) // pushed back: retry like an SDK
					}
				}
			})
		}
	}
	wg.Wait()
	for {
		var got uint64
		_ = ch.QueryRow(context.Background(), "SELECT count() FROM "+db+".spans").Scan(&got)
		if got >= want {
			return float64(want) / time.Since(start).Seconds()
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("only %d of %d spans after 5 minutes", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
