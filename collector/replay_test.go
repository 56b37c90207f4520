package collector_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/collector"
	"github.com/meshlens/meshlens/collector/meshexporter"
	"github.com/meshlens/meshlens/collector/spool"
	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/store"
	"github.com/meshlens/meshlens/store/storetest"
)

// TestQueueEntriesOfAKilledRunAreNotWrittenTwice is meshlens killed after
// its insert reached ClickHouse and before it removed the entry from the
// queue: the next run finds the entry, sees that its rows landed, and
// writes nothing twice.
func TestQueueEntriesOfAKilledRunAreNotWrittenTwice(t *testing.T) {
	st := storetest.Open(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sp, err := spool.Open(filepath.Join(dir, "queue"), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	var spans []store.Span
	for _, id := range []string{"01", "02", "03"} {
		spans = append(spans, store.Span{Start: now, TraceID: "aa" + id, SpanID: "bb" + id, Name: "GET /", Kind: "server", StatusCode: "unset"})
	}
	if err := sp.Append(&spool.Batch{Spans: spans}); err != nil {
		t.Fatal(err)
	}
	// The killed run's insert, tagged as the writer tags it; no commit.
	entries, err := sp.Next(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	ids := []uint64{entries[0].ID, entries[0].ID, entries[0].ID}
	if err := st.InsertSpansTagged(ctx, entries[0].Batch.Spans, ids); err != nil {
		t.Fatal(err)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}

	sp, err = spool.Open(filepath.Join(dir, "queue"), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	dead, err := collector.OpenDeadLetter(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	w := &collector.Writer{Spool: sp, Store: st, Metrics: meshexporter.NewMetrics(prometheus.NewRegistry()), Logger: meshtest.Logger(t), DeadLetter: dead}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	for n, _ := sp.Depth(); n > 0; n, _ = sp.Depth() {
		if ctx.Err() != nil {
			t.Fatal("the writer did not take the entry the killed run left")
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := st.Conn().QueryRow(ctx, "SELECT count() FROM "+st.Table("spans")).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("%d span rows after the restart, want the 3 the killed run wrote, once", n)
	}
}
