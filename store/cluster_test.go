package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/meshlens/meshlens/internal/chcluster"
	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/store"
	"github.com/meshlens/meshlens/store/storetest"
)

// TestClusterSchemaIsReplicatedAndDistributedOnEveryServer checks the engines
// on each server: rows in Replicated*MergeTree tables, the plain names
// Distributed, the views on the local tables.
func TestClusterSchemaIsReplicatedAndDistributedOnEveryServer(t *testing.T) {
	s := storetest.OpenCluster(t)
	ctx := context.Background()
	want := map[string]string{
		"access_logs_local": "ReplicatedMergeTree", "access_logs": "Distributed",
		"access_logs_ingest_local": "Null", "access_logs_ingest": "Distributed", "access_logs_mv": "MaterializedView",
		"spans_local": "ReplicatedMergeTree", "spans": "Distributed",
		"metric_points_local": "ReplicatedMergeTree", "metric_points": "Distributed",
		"logs_local": "ReplicatedMergeTree", "logs": "Distributed",
		"edges_1m_local": "ReplicatedAggregatingMergeTree", "edges_1m": "Distributed",
		"edges_1h_local": "ReplicatedAggregatingMergeTree", "edges_1h": "Distributed",
		"edges_1m_mv": "MaterializedView", "edges_1h_mv": "MaterializedView",
		"config_log_local": "ReplicatedReplacingMergeTree", "config_log": "Distributed",
		"rollout_state_local": "ReplicatedReplacingMergeTree", "rollout_state": "Distributed",
	}
	c := chcluster.Shared(t)
	for _, n := range c.Nodes() {
		node := connect(t, n)
		rows, err := node.Query(ctx, "SELECT name, engine FROM system.tables WHERE database = ?", s.Database())
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for rows.Next() {
			var name, engine string
			if err := rows.Scan(&name, &engine); err != nil {
				t.Fatal(err)
			}
			got[name] = engine
		}
		rows.Close()
		for table, engine := range want {
			if got[table] != engine {
				t.Errorf("%s: %s is %q, want %s", n, table, got[table], engine)
			}
		}
	}
}

// TestClusterKeepsEachTraceOnOneShard writes request records and spans of
// many traces through the Distributed tables: each shard holds whole traces,
// in both tables, and both shards get some.
func TestClusterKeepsEachTraceOnOneShard(t *testing.T) {
	s := storetest.OpenCluster(t)
	ctx := context.Background()
	now := time.Now().UTC()
	var recs []mesh.Record
	var spans []store.Span
	for i := 0; i < 200; i++ {
		tid := fmt.Sprintf("%032x", i+1)
		recs = append(recs, mesh.Record{Time: now, Destination: mesh.Peer{Service: "b"}, Code: 200, TraceID: tid, SpanID: "01"})
		for j := 0; j < 3; j++ {
			spans = append(spans, store.Span{Start: now.Add(time.Duration(j) * time.Millisecond), TraceID: tid, SpanID: fmt.Sprintf("%016x", j+1), Kind: "server"})
		}
	}
	// Records without a trace id spread too.
	for i := 0; i < 200; i++ {
		recs = append(recs, mesh.Record{Time: now.Add(time.Duration(i) * time.Microsecond), Destination: mesh.Peer{Service: "c"}, Code: 200})
	}
	if err := s.InsertRecords(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertSpans(ctx, spans); err != nil {
		t.Fatal(err)
	}
	c := chcluster.Shared(t)
	shards := map[int]bool{}
	for _, n := range c.Nodes() {
		if n.Replica != 1 {
			continue // replicas hold the same rows
		}
		shards[n.Shard] = true
		node := connect(t, n)
		traces := func(table string, extra string) []string {
			var ids []string
			if err := node.QueryRow(ctx, "SELECT groupUniqArray(trace_id) FROM "+s.LocalTable(table)+" WHERE trace_id != ''"+extra).Scan(&ids); err != nil {
				t.Fatal(err)
			}
			return ids
		}
		var perTrace uint64
		if err := node.QueryRow(ctx, "SELECT min(n) FROM (SELECT count() AS n FROM "+s.LocalTable(store.TableSpans)+" GROUP BY trace_id)").Scan(&perTrace); err != nil {
			t.Fatal(err)
		}
		var untraced uint64
		if err := node.QueryRow(ctx, "SELECT count() FROM "+s.LocalTable(store.TableAccessLogs)+" WHERE trace_id = ''").Scan(&untraced); err != nil {
			t.Fatal(err)
		}
		spanTraces, recTraces := traces(store.TableSpans, ""), traces(store.TableAccessLogs, "")
		if len(spanTraces) < 50 || untraced < 50 {
			t.Errorf("shard %d has %d of 200 traces and %d of 200 untraced records: the sharding key does not spread", n.Shard, len(spanTraces), untraced)
		}
		if perTrace != 3 {
			t.Errorf("shard %d has a trace with %d of its 3 spans", n.Shard, perTrace)
		}
		slices.Sort(spanTraces)
		slices.Sort(recTraces)
		if !slices.Equal(spanTraces, recTraces) {
			t.Errorf("shard %d: the traces of its spans and of its request records differ", n.Shard)
		}
	}
	if len(shards) != 2 {
		t.Fatalf("nodes of %d shards, want 2", len(shards))
	}
}

// TestClusterRetriedWriteIsStoredOnce sends the same tagged rows twice, as
// the writer does after a write whose outcome it does not know: the shards'
// replicated tables keep one copy, and so do the rollups.
func TestClusterRetriedWriteIsStoredOnce(t *testing.T) {
	s := storetest.OpenCluster(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Minute)
	var recs []mesh.Record
	var ids []uint64
	for i := 0; i < 500; i++ {
		recs = append(recs, mesh.Record{Time: now.Add(time.Duration(i) * time.Millisecond), Destination: mesh.Peer{Service: "b"}, Code: 200,
			TraceID: fmt.Sprintf("%032x", i+1)})
		ids = append(ids, 7)
	}
	for try := 0; try < 2; try++ {
		if err := s.InsertRecordsTagged(ctx, recs, ids); err != nil {
			t.Fatal(err)
		}
	}
	if landed, err := s.LandedBatches(ctx, store.TableAccessLogs, []uint64{7}); err != nil || len(landed) != 0 {
		t.Fatalf("LandedBatches on a cluster = %v, %v; want none: the retry relies on deduplication", landed, err)
	}
	var rows, rolled uint64
	if err := s.Conn().QueryRow(ctx, "SELECT count() FROM "+s.Table(store.TableAccessLogs)).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if err := s.Conn().QueryRow(ctx, "SELECT countMerge(requests) FROM "+s.Table(store.TableEdges1m)).Scan(&rolled); err != nil {
		t.Fatal(err)
	}
	if rows != 500 || rolled != 500 {
		t.Fatalf("after writing 500 rows twice: %d rows, %d in the rollup; want 500 and 500", rows, rolled)
	}
}

// connect opens a connection to one server of the cluster, closed when the
// test ends.
func connect(t *testing.T, n chcluster.Node) driver.Conn {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{n.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestClusterRetryCompletesARollupThatMissedAWrite stands in for a write
// that stored the raw rows but failed before the per-minute rollup got them
// (ZooKeeper lost in between): the retry of the same rows must complete the
// rollup without doubling the raw rows or the other rollup.
func TestClusterRetryCompletesARollupThatMissedAWrite(t *testing.T) {
	s := storetest.OpenCluster(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Minute)
	var recs []mesh.Record
	var ids []uint64
	for i := 0; i < 300; i++ {
		recs = append(recs, mesh.Record{Time: now.Add(time.Duration(i) * time.Millisecond), Destination: mesh.Peer{Service: "b"}, Code: 200,
			TraceID: fmt.Sprintf("%032x", i+1)})
		ids = append(ids, 9)
	}
	exec := func(sql string) {
		t.Helper()
		if err := s.Conn().Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec("DROP TABLE " + s.Table("edges_1m_mv") + " ON CLUSTER " + s.Cluster())
	if err := s.InsertRecordsTagged(ctx, recs, ids); err != nil {
		t.Fatal(err)
	}
	// Put the view back: forget the migration here, and migrate again.
	exec("TRUNCATE TABLE " + s.Table("schema_migrations"))
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertRecordsTagged(ctx, recs, ids); err != nil {
		t.Fatal(err)
	}
	count := func(q string) uint64 {
		var n uint64
		if err := s.Conn().QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	raw := count("SELECT count() FROM " + s.Table(store.TableAccessLogs))
	m := count("SELECT countMerge(requests) FROM " + s.Table(store.TableEdges1m))
	h := count("SELECT countMerge(requests) FROM " + s.Table(store.TableEdges1h))
	if raw != 300 || m != 300 || h != 300 {
		t.Fatalf("after the retry: %d raw rows, %d in edges_1m, %d in edges_1h; want 300 each", raw, m, h)
	}
}

// TestClusterRollupKeepsWritesOfTheSameShape writes two different batches of
// request records that roll up to the same states (same minute, edge, codes
// and latencies; only trace ids and times differ): a replicated rollup table
// must count both, not take the second for a retry of the first.
func TestClusterRollupKeepsWritesOfTheSameShape(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			s := b.Open(t)
			ctx := context.Background()
			minute := time.Now().UTC().Truncate(time.Minute)
			for batch := uint64(1); batch <= 10; batch++ {
				var recs []mesh.Record
				var ids []uint64
				for i := 0; i < 1; i++ {
					recs = append(recs, mesh.Record{Time: minute.Add(time.Duration(batch*100+uint64(i)) * time.Millisecond),
						Source: mesh.Peer{Service: "a"}, Destination: mesh.Peer{Service: "b"}, Code: 200,
						TraceID: fmt.Sprintf("%016x%016x", batch, i+1)})
					ids = append(ids, batch)
				}
				if err := s.InsertRecordsTagged(ctx, recs, ids); err != nil {
					t.Fatal(err)
				}
			}
			for _, table := range []string{store.TableAccessLogs, store.TableEdges1m, store.TableEdges1h} {
				q := "SELECT count() FROM " + s.Table(table)
				if table != store.TableAccessLogs {
					q = "SELECT countMerge(requests) FROM " + s.Table(table)
				}
				var n uint64
				if err := s.Conn().QueryRow(ctx, q).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != 10 {
					t.Errorf("%s counts %d requests, want 10 (10 writes of one)", table, n)
				}
			}
		})
	}
}
