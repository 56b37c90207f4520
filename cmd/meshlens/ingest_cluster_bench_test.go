package main

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/internal/chcluster"
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
	data := spanPairs(batches, pairs)
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

// spanPairs builds batches of client/server span pairs, each pair its own
// trace: frontend calls three versions of backend.
func spanPairs(batches, pairs int) []ptrace.Traces {
	out := make([]ptrace.Traces, batches)
	start := time.Now().Add(-time.Minute)
	var id uint64
	for b := range out {
		td := ptrace.NewTraces()
		client := td.ResourceSpans().AppendEmpty()
		client.Resource().Attributes().PutStr("service.name", "frontend")
		cs := client.ScopeSpans().AppendEmpty().Spans()
		servers := make([]ptrace.SpanSlice, 3)
		for v := range servers {
			rs := td.ResourceSpans().AppendEmpty()
			rs.Resource().Attributes().PutStr("service.name", "backend")
			rs.Resource().Attributes().PutStr("service.version", fmt.Sprintf("v%d", v+1))
			servers[v] = rs.ScopeSpans().AppendEmpty().Spans()
		}
		for i := 0; i < pairs; i++ {
			id++
			var tid pcommon.TraceID
			tid[0], tid[1], tid[2], tid[3], tid[15] = byte(id>>24), byte(id>>16), byte(id>>8), byte(id), 1
			c := cs.AppendEmpty()
			c.SetKind(ptrace.SpanKindClient)
			c.SetName("GET /items")
			c.SetTraceID(tid)
			c.SetSpanID(pcommon.SpanID{1, byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)})
			c.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
			c.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Duration(id%50) * time.Millisecond)))
			s := servers[id%3].AppendEmpty()
			s.SetKind(ptrace.SpanKindServer)
			s.SetName("GET /items")
			s.SetTraceID(tid)
			s.SetSpanID(pcommon.SpanID{2, byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)})
			s.SetParentSpanID(c.SpanID())
			s.SetStartTimestamp(c.StartTimestamp())
			s.SetEndTimestamp(c.EndTimestamp())
		}
		out[b] = td
	}
	return out
}
