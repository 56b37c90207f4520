package main

import (
	"context"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// TestClickHouseOutageAndRestartLoseNothing sends spans steadily while
// ClickHouse is stopped for 30 s and meshlens itself is restarted in the
// middle of the outage; afterwards every span sent is in ClickHouse.
func TestClickHouseOutageAndRestartLoseNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("the outage lasts 30s")
	}
	ch := startClickHouse(t)
	dataDir := t.TempDir()
	otlp := freeAddr(t)
	args := []string{"--clickhouse", ch.DSN(), "--data-dir", dataDir, "--otlp-grpc", otlp, "--otlp-http", "", "--als", "", "--clickhouse-wait", "2s"}
	ml := startMeshlens(t, args...)

	load := startSpanLoad(t, otlp)

	time.Sleep(5 * time.Second)
	ch.Stop()
	t.Logf("ClickHouse stopped after %d spans", load.sent.Load())
	time.Sleep(15 * time.Second)
	if !ml.Running() {
		t.Fatalf("meshlens died during the outage:\n%s", ml.Log())
	}
	if ml.metric(t, "meshlens_ingest_retries_total") == 0 {
		t.Errorf("no retries counted during the outage")
	}
	if ml.metric(t, "meshlens_ingest_queued_batches") == 0 {
		t.Errorf("nothing queued during the outage")
	}
	// Restart meshlens mid-outage: the queue on disk must survive it.
	ml.Stop(t)
	ml = startMeshlens(t, args...)
	time.Sleep(15 * time.Second)
	ch.Start()
	t.Logf("ClickHouse restarted after %d spans", load.sent.Load())
	time.Sleep(5 * time.Second)
	want := uint64(load.Stop(t))

	opts, _ := clickhouse.ParseDSN("clickhouse://127.0.0.1:" + ch.port + "/meshlens")
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var spans, records uint64
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		_ = conn.QueryRow(context.Background(), "SELECT count() FROM meshlens.spans").Scan(&spans)
		_ = conn.QueryRow(context.Background(), "SELECT count() FROM meshlens.access_logs").Scan(&records)
		if spans >= want && records >= want {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if spans != want || records != want {
		t.Fatalf("after the outage: %d spans and %d request records in ClickHouse, %d sent", spans, records, want)
	}
	if !ml.Running() {
		t.Fatalf("meshlens died:\n%s", ml.Log())
	}
	t.Logf("all %d spans arrived", want)
}
