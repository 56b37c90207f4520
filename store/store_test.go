package store_test

import (
	"context"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/store"
	"github.com/meshlens/meshlens/store/storetest"
)

func TestMigrateIsIdempotent(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			s := b.Open(t)
			ctx := context.Background()
			for i := 0; i < 2; i++ {
				if err := s.Migrate(ctx); err != nil {
					t.Fatalf("migrate again (%d): %v", i, err)
				}
			}
			var n uint64
			if err := s.Conn().QueryRow(ctx, "SELECT count() FROM "+s.Table("schema_migrations")).Scan(&n); err != nil {
				t.Fatal(err)
			}
			// One row per migration (the baseline tables, the audit log,
			// the rollups' digest, saved views, shared config, shared rollout
			// state), however often they ran.
			if n != 6 {
				t.Fatalf("schema_migrations has %d rows after migrating three times, want 6", n)
			}
		})
	}
}

func TestRecordsRollUpIntoPerMinuteEdges(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) { testRecordsRollUpIntoPerMinuteEdges(t, b.Open(t)) })
	}
}

func testRecordsRollUpIntoPerMinuteEdges(t *testing.T, s *store.Store) {
	ctx := context.Background()
	minute := time.Now().UTC().Truncate(time.Minute).Add(-2 * time.Minute)
	a := mesh.Peer{Namespace: "shop", Service: "a", Version: "v1"}
	b1 := mesh.Peer{Namespace: "shop", Service: "b", Version: "v1"}
	b2 := mesh.Peer{Namespace: "shop", Service: "b", Version: "v2"}
	var recs []mesh.Record
	for i := 0; i < 30; i++ {
		recs = append(recs, mesh.Record{Time: minute.Add(time.Duration(i) * time.Second), Source: a, Destination: b1,
			Protocol: "http", Code: 200, GRPCStatus: -1, Duration: 20 * time.Millisecond, MTLS: true, Origin: mesh.OriginALS})
	}
	for i := 0; i < 10; i++ {
		code := uint16(200)
		if i < 4 {
			code = 503
		}
		recs = append(recs, mesh.Record{Time: minute.Add(time.Duration(i) * time.Second), Source: a, Destination: b2,
			Protocol: "http", Code: code, GRPCStatus: -1, Duration: 200 * time.Millisecond, Origin: mesh.OriginALS})
	}
	// An unknown caller is kept, as "unknown".
	recs = append(recs, mesh.Record{Time: minute, Destination: b1, Protocol: "http", Code: 200, GRPCStatus: -1, Duration: time.Millisecond})
	if err := s.InsertRecords(ctx, recs); err != nil {
		t.Fatal(err)
	}

	rows, err := s.Conn().Query(ctx, `SELECT src_service, dst_version, code, countMerge(requests), sumMerge(mtls), sumForEachMerge(latency)
FROM `+s.Table("edges_1m")+` GROUP BY src_service, dst_version, code ORDER BY src_service, dst_version, code`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	type row struct {
		src, ver string
		code     uint16
		n, mtls  uint64
		p50      float64
	}
	var got []row
	for rows.Next() {
		var r row
		var lat []uint64
		if err := rows.Scan(&r.src, &r.ver, &r.code, &r.n, &r.mtls, &lat); err != nil {
			t.Fatal(err)
		}
		if len(lat) != len(mesh.LatencyBucketsMs)+1 {
			t.Fatalf("latency buckets: %d, want %d", len(lat), len(mesh.LatencyBucketsMs)+1)
		}
		r.p50 = mesh.Quantile(0.5, lat)
		got = append(got, r)
	}
	want := []row{
		{"a", "v1", 200, 30, 30, 17.5}, // 20ms is in (10, 25]
		{"a", "v2", 200, 6, 0, 175},    // 200ms is in (100, 250]
		{"a", "v2", 503, 4, 0, 175},
		{"unknown", "v1", 200, 1, 0, 0.75},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d rollup rows %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.src != w.src || g.ver != w.ver || g.code != w.code || g.n != w.n || g.mtls != w.mtls || math.Abs(g.p50-w.p50) > 1e-9 {
			t.Errorf("row %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestRetentionDropsOnlyExpiredDays(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) { testRetentionDropsOnlyExpiredDays(t, b.Open(t)) })
	}
}

func testRetentionDropsOnlyExpiredDays(t *testing.T, s *store.Store) {
	ctx := context.Background()
	now := time.Now().UTC()
	old := now.Add(-10 * 24 * time.Hour)
	recs := []mesh.Record{
		{Time: old, Destination: mesh.Peer{Service: "b"}, Code: 200},
		{Time: now, Destination: mesh.Peer{Service: "b"}, Code: 200},
	}
	if err := s.InsertRecords(ctx, recs); err != nil {
		t.Fatal(err)
	}
	dropped, err := s.DropPartitionsBefore(ctx, store.TableAccessLogs, now.Add(-7*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 1 {
		t.Fatalf("dropped %v, want the one old day", dropped)
	}
	// On a cluster the drop runs on one replica of each shard and reaches
	// the other through replication, a moment later (a minute at most here:
	// a loaded machine replicates slowly; this only catches a drop that
	// never arrives).
	var n uint64
	deadline := time.Now().Add(time.Minute)
	for {
		if err := s.Conn().QueryRow(ctx, "SELECT count() FROM "+s.Table(store.TableAccessLogs)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n != 1 {
		t.Fatalf("%d rows left, want 1 (today's)", n)
	}
}

func TestOpenExplainsUnreachableServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := store.Open(ctx, "clickhouse://127.0.0.1:1/meshlens", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		t.Fatal("open of a closed port succeeded")
	}
	if !store.IsUnavailable(err) {
		t.Fatalf("IsUnavailable(%v) = false", err)
	}
}

func TestOpenRejectsBadDSN(t *testing.T) {
	for _, dsn := range []string{"http://x/y", "clickhouse:///db", "clickhouse://h:9000/bad-name;drop"} {
		_, err := store.Open(context.Background(), dsn, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err == nil {
			t.Errorf("Open(%q) succeeded", dsn)
		}
	}
}
