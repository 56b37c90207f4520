package main

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/meshlens/meshlens/internal/chcluster"
	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/store/storetest"
)

// BenchmarkIngestClusterVsSingle sends the same OTLP span pairs to `meshlens
// serve` on one ClickHouse server and on the 2-shard × 2-replica cluster, in
// the same run, and reports spans/s end to end (sent until every span is
// stored) for each and their ratio. All the servers share this machine, so
// the cluster's figure says what replication and the Distributed hop cost
// here, not what more machines would give.
func BenchmarkIngestClusterVsSingle(b *testing.B) {
	const batches, pairs = 100, 1000 // 200,000 spans
	data := meshtest.SpanPairs(batches, pairs)
	spans := uint64(batches * pairs * 2)

	c := chcluster.Use(b)
	db := fmt.Sprintf("bench_%d", os.Getpid())
	b.Cleanup(func() {
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{c.Nodes()[0].Addr}})
		if err == nil {
			_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db+" ON CLUSTER "+c.Name)
			conn.Close()
		}
	})
	targets := []struct {
		name string
		args []string
	}{
		{"single", []string{"--clickhouse", storetest.DSN(b)}},
		{"cluster", []string{"--clickhouse", c.DSN(db), "--clickhouse-cluster", c.Name}},
	}
	rates := map[string]float64{}
	b.ResetTimer()
	for _, tg := range targets {
		otlp := freeAddr(b)
		ml := startMeshlens(b, append(tg.args, "--data-dir", b.TempDir(), "--otlp-grpc", otlp, "--clickhouse-wait", "60s")...)
		rates[tg.name] = sendToAndWait(b, []string{otlp}, tg.args[1], data, spans)
		ml.Stop(b)
		b.Logf("%s: %.0f spans/s end to end", tg.name, rates[tg.name])
	}
	b.StopTimer()
	b.ReportMetric(rates["single"], "single-spans/s")
	b.ReportMetric(rates["cluster"], "cluster-spans/s")
	b.ReportMetric(rates["cluster"]/rates["single"], "cluster/single")
	b.Logf("%d spans: one server %.0f spans/s; 2 shards x 2 replicas %.0f spans/s (%.2fx), all on this machine",
		spans, rates["single"], rates["cluster"], rates["cluster"]/rates["single"])
}
