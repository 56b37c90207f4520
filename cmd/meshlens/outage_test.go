package main

import (
	"testing"
	"time"
)

// TestClickHouseOutageUnderOTLPAndALSLoadWithMeshlensKilledLosesNothing
// sends spans over OTLP/gRPC and access logs over ALS steadily while
// ClickHouse (a server of the test's own) is stopped for 60 s, meshlens is
// killed with SIGKILL in the middle of the outage and started again on
// the same data dir, and killed again while it writes the backlog (rows
// inserted but not yet removed from the queue). Afterwards every span and
// access-log entry acknowledged to a sender is in ClickHouse exactly once.
// It runs in parallel with the other fault tests that mostly wait (their
// own servers and ports), so the minute of outage costs make test little.
func TestClickHouseOutageUnderOTLPAndALSLoadWithMeshlensKilledLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("the outage lasts 60s")
	}
	t.Parallel()
	ch := startClickHouse(t)
	dataDir := t.TempDir()
	httpAddr, otlp, als := freeAddr(t), freeAddr(t), freeAddr(t)
	args := []string{"--clickhouse", ch.DSN(), "--data-dir", dataDir, "--otlp-grpc", otlp, "--otlp-http", "", "--als", als, "--clickhouse-wait", "2s"}
	ml := startMeshlensAt(t, httpAddr, args...)

	spans := startOTLPSender(t, otlp, 50, 20*time.Millisecond)
	logs := startALSSender(t, als, 5, 20, 20*time.Millisecond)
	progress := func(when string) {
		sOK, sSent, _ := spans.counts()
		lOK, lSent, _ := logs.counts()
		t.Logf("%s: spans %d acknowledged of %d sent; access logs %d of %d", when, sOK, sSent, lOK, lSent)
	}

	time.Sleep(3 * time.Second)
	ch.Stop()
	outage := time.Now()
	progress("ClickHouse stopped")
	time.Sleep(30 * time.Second)
	stillRunning(t, ml, "during the outage")
	if ml.metric(t, "meshlens_ingest_retries_total") == 0 {
		t.Errorf("no retries counted during the outage")
	}
	queued := ml.metric(t, "meshlens_ingest_queued_batches")
	if queued == 0 {
		t.Errorf("nothing queued during the outage")
	}
	t.Logf("%v into the outage: %.0f batches queued on disk", time.Since(outage).Round(time.Second), queued)
	ml.Kill()
	progress("meshlens killed (SIGKILL)")
	ml = startMeshlensAt(t, httpAddr, args...)
	progress("meshlens started again on the same data dir")
	time.Sleep(time.Until(outage.Add(60 * time.Second)))
	ch.Start()
	t.Logf("ClickHouse started again after an outage of %v", time.Since(outage).Round(time.Second))
	// Killed again as soon as the backlog is being written: some rows are
	// in ClickHouse and their queue entries not yet committed.
	waitFor(t, "the backlog being written", 60*time.Second, func() bool { return written(t, ml) > 0 })
	ml.Kill()
	progress("meshlens killed (SIGKILL) while writing the backlog")
	ml = startMeshlensAt(t, httpAddr, args...)
	time.Sleep(3 * time.Second)
	spans.Stop()
	logs.Stop()
	progress("senders stopped")

	addr := "127.0.0.1:" + ch.port
	exactlyOnce(t, "OTLP spans", spans.acked, func() map[string]uint64 {
		return chCount(t, addr, "SELECT span_id, count() FROM meshlens.spans GROUP BY span_id")
	}, 2*time.Minute)
	exactlyOnce(t, "ALS access-log entries", logs.acked, func() map[string]uint64 {
		return chCount(t, addr, "SELECT path, count() FROM meshlens.access_logs WHERE path LIKE '/fault-als/%' GROUP BY path")
	}, 2*time.Minute)
	stillRunning(t, ml, "after the outage")
}
