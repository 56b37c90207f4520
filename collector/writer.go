package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/meshlens/meshlens/collector/meshexporter"
	"github.com/meshlens/meshlens/collector/spool"
	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/store"
)

// Writer drains the spool into ClickHouse in large batches. It retries a
// failed write with back-off until it succeeds, so that the spool, not the
// writer, decides how much waits. Rows ClickHouse refuses (IsUnavailable is
// false: retrying cannot help) are narrowed down to the queue entries that
// carry them; those entries are set aside in the dead-letter file and the
// writer goes on with the rest.
type Writer struct {
	Spool      *spool.Spool
	Store      *store.Store
	Metrics    *meshexporter.Metrics
	Logger     *slog.Logger
	DeadLetter *DeadLetter
	MaxRows    int           // rows per insert
	Linger     time.Duration // wait this long for a small batch to grow
	MaxDelay   time.Duration // cap on the retry back-off
}

// DefaultWriteRows is how many rows the writer puts in one insert unless
// MaxRows says otherwise: large enough that ClickHouse makes few parts.
const DefaultWriteRows = 100_000

// Run writes until ctx ends, then returns after a last drain attempt bounded
// by the caller's deadline on ctx's parent.
func (w *Writer) Run(ctx context.Context) error {
	if w.MaxRows <= 0 {
		w.MaxRows = DefaultWriteRows
	}
	if w.Linger <= 0 {
		w.Linger = 200 * time.Millisecond
	}
	if w.MaxDelay <= 0 {
		w.MaxDelay = 5 * time.Second
	}
	// The next entries are read and decoded while the last are written:
	// ClickHouse works on one insert while the writer prepares the next.
	// Entries taken and not written when ctx ends stay in the queue.
	taken := make(chan []spool.Entry)
	failed := make(chan error, 1)
	go func() {
		for {
			entries, err := w.take(ctx)
			if err != nil {
				failed <- err
				return
			}
			select {
			case taken <- entries:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		var entries []spool.Entry
		select {
		case entries = <-taken:
		case err := <-failed:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case <-ctx.Done():
			return nil
		}
		if err := w.Spool.Sync(); err != nil {
			w.Logger.Warn("ingest queue: fsync failed", "err", err)
		}
		if err := w.write(ctx, entries); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		w.report()
	}
}

// takeStep is how many queue entries take reads at a time: few enough that
// a backlog does not make one insert many times MaxRows (a memory spike the
// memory limiter answers by refusing telemetry), enough to fill an insert
// quickly.
const takeStep = 8

// take collects entries until MaxRows or the linger time.
func (w *Writer) take(ctx context.Context) ([]spool.Entry, error) {
	entries, err := w.Spool.Next(ctx, takeStep)
	if err != nil {
		return nil, err
	}
	rows := countRows(entries)
	deadline := time.Now().Add(w.Linger)
	for rows < w.MaxRows && time.Now().Before(deadline) {
		lctx, cancel := context.WithDeadline(ctx, deadline)
		more, err := w.Spool.Next(lctx, takeStep)
		cancel()
		if err != nil {
			break
		}
		entries = append(entries, more...)
		rows += countRows(more)
	}
	return entries, nil
}

func countRows(es []spool.Entry) int {
	n := 0
	for _, e := range es {
		if e.Batch != nil {
			n += e.Batch.Rows()
		}
	}
	return n
}

// tagged is one table's rows from several queue entries, each row tagged with
// the id of its entry.
type tagged[T any] struct {
	rows []T
	ids  []uint64
}

// reserve makes room for n rows, so that adding them copies each row once.
func (t *tagged[T]) reserve(n int) {
	t.rows = slices.Grow(t.rows, n)
	t.ids = slices.Grow(t.ids, n)
}

func (t *tagged[T]) add(rows []T, id uint64) {
	t.rows = append(t.rows, rows...)
	for range rows {
		t.ids = append(t.ids, id)
	}
}

// without drops the rows of the given entries.
func (t *tagged[T]) without(landed map[uint64]bool) {
	keep := 0
	for i := range t.rows {
		if !landed[t.ids[i]] {
			t.rows[keep], t.ids[keep] = t.rows[i], t.ids[i]
			keep++
		}
	}
	t.rows, t.ids = t.rows[:keep], t.ids[:keep]
}

// distinct returns the entry ids present.
func (t *tagged[T]) distinct() []uint64 {
	var out []uint64
	for i, id := range t.ids {
		if i == 0 || id != t.ids[i-1] {
			out = append(out, id)
		}
	}
	return out
}

// byEntry splits the rows into one tagged per queue entry (an entry's rows
// are contiguous: they were added together).
func (t *tagged[T]) byEntry() []*tagged[T] {
	var out []*tagged[T]
	for i := 0; i < len(t.ids); {
		j := i + 1
		for j < len(t.ids) && t.ids[j] == t.ids[i] {
			j++
		}
		out = append(out, &tagged[T]{rows: t.rows[i:j:j], ids: t.ids[i:j:j]})
		i = j
	}
	return out
}

// part is one table's share of a write.
type part struct {
	signal  string
	table   string
	rows    func() int
	insert  func(context.Context) error
	ids     func() []uint64
	without func(map[uint64]bool)
	split   func() []part // one part per queue entry
	data    func() any    // the rows, for the dead-letter file
}

func partOf[T any](signal, table string, t *tagged[T], insert func(context.Context, []T, []uint64) error) part {
	return part{
		signal:  signal,
		table:   table,
		rows:    func() int { return len(t.rows) },
		insert:  func(ctx context.Context) error { return insert(ctx, t.rows, t.ids) },
		ids:     t.distinct,
		without: t.without,
		split: func() []part {
			var out []part
			for _, e := range t.byEntry() {
				out = append(out, partOf(signal, table, e, insert))
			}
			return out
		},
		data: func() any { return t.rows },
	}
}

// write inserts the entries' rows table by table. Rows carry the id of their
// queue entry; after a failed insert, whose outcome is unknown when the
// connection broke mid-way, the rows of entries that did land are removed
// before the retry, so that nothing is written twice and nothing is lost.
// Entries a previous run left in the queue are treated so from the start:
// that run may have written them and stopped (killed) before its commit.
func (w *Writer) write(ctx context.Context, entries []spool.Entry) error {
	replayed := len(entries) > 0 && entries[0].Index <= w.Spool.Recovered()
	var (
		recs   tagged[mesh.Record]
		spans  tagged[store.Span]
		points tagged[store.MetricPoint]
		logs   tagged[store.LogRow]
	)
	var nRecs, nSpans, nPoints, nLogs int
	for _, e := range entries {
		if e.Batch != nil {
			nRecs += len(e.Batch.Records)
			nSpans += len(e.Batch.Spans)
			nPoints += len(e.Batch.Points)
			nLogs += len(e.Batch.Logs)
		}
	}
	recs.reserve(nRecs)
	spans.reserve(nSpans)
	points.reserve(nPoints)
	logs.reserve(nLogs)
	for _, e := range entries {
		if e.Batch == nil {
			w.Metrics.Dropped.WithLabelValues("unknown", "undecodable_queue_entry").Inc()
			w.Logger.Error("ingest queue entry could not be decoded; skipped", "index", e.Index, "bytes", e.Size)
			continue
		}
		recs.add(e.Batch.Records, e.ID)
		spans.add(e.Batch.Spans, e.ID)
		points.add(e.Batch.Points, e.ID)
		logs.add(e.Batch.Logs, e.ID)
	}
	parts := []part{
		partOf(meshexporter.SignalRecords, store.TableAccessLogs, &recs, w.Store.InsertRecordsTagged),
		partOf(meshexporter.SignalTraces, store.TableSpans, &spans, w.Store.InsertSpansTagged),
		partOf(meshexporter.SignalMetrics, store.TableMetricPoints, &points, w.Store.InsertMetricPointsTagged),
		partOf(meshexporter.SignalLogs, store.TableLogs, &logs, w.Store.InsertLogsTagged),
	}
	// The tables are written concurrently: ClickHouse inserts into different
	// tables in parallel, and the slowest table, not their sum, sets the pace.
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.writePart(ctx, p, replayed)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if len(entries) == 0 {
		return nil
	}
	return w.commit(ctx, entries[len(entries)-1].Index)
}

// commit removes the written entries from the queue, retrying while it
// cannot (a full disk: a commit rewrites the rest of a segment). Entries
// never committed are written again by the next run, which skips the rows
// that landed.
func (w *Writer) commit(ctx context.Context, index uint64) error {
	delay := 100 * time.Millisecond
	for {
		err := w.Spool.Commit(index)
		if err == nil {
			return nil
		}
		w.Logger.Warn("ingest queue: written entries not removed from the queue yet; retrying", "index", index, "retry_in", delay, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, w.MaxDelay)
	}
}

// writePart writes p. When ClickHouse refuses it, each queue entry's rows
// are written on their own, so that one bad entry does not hold back the
// others, and the entries refused again are set aside.
func (w *Writer) writePart(ctx context.Context, p part, replayed bool) error {
	err := w.writeRetrying(ctx, p, replayed)
	if !errors.As(err, new(*rejection)) {
		return err
	}
	subs := p.split()
	if len(subs) == 1 {
		return w.setAside(p, err)
	}
	w.Logger.Warn("clickhouse refused a batch; writing its queue entries one by one to find the rows it refuses",
		"signal", p.signal, "rows", p.rows(), "entries", len(subs), "err", err)
	for _, sub := range subs {
		// A refused insert may have landed in part: skip what did.
		err := w.writeRetrying(ctx, sub, true)
		if errors.As(err, new(*rejection)) {
			err = w.setAside(sub, err)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// rejection is an insert ClickHouse refused for a reason retrying cannot fix.
type rejection struct{ err error }

func (r *rejection) Error() string { return r.err.Error() }
func (r *rejection) Unwrap() error { return r.err }

// setAside moves a refused part to the dead-letter file; it is then done
// with, as if written.
func (w *Writer) setAside(p part, why error) error {
	ids := p.ids()
	if err := w.DeadLetter.Add(p.signal, p.table, ids, p.rows(), why, p.data()); err != nil {
		w.Metrics.Dropped.WithLabelValues(p.signal, "dead_letter_unwritable").Add(float64(p.rows()))
		w.Logger.Error("clickhouse refused rows and the dead-letter file cannot take them; dropped",
			"signal", p.signal, "table", p.table, "rows", p.rows(), "refused", why, "err", err)
		return nil
	}
	w.Metrics.DeadLettered.WithLabelValues(p.signal).Add(float64(p.rows()))
	w.Logger.Error("clickhouse refused rows; set aside in the dead-letter file, the writer goes on",
		"signal", p.signal, "table", p.table, "rows", p.rows(), "queue_entries", len(ids), "file", w.DeadLetter.Path(), "err", why)
	return nil
}

// writeRetrying writes p, retrying while ClickHouse is unavailable; it
// returns a *rejection when ClickHouse refuses the rows. failed says an
// earlier attempt may have landed some of them.
func (w *Writer) writeRetrying(ctx context.Context, p part, failed bool) error {
	delay, since, retried := 100*time.Millisecond, time.Now(), false
	for p.rows() > 0 {
		ictx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err := w.Store.EnsureSchema(ictx) // after a cold start with ClickHouse down
		if err == nil && failed {
			err = w.skipLanded(ictx, p)
		}
		inserting := err == nil && p.rows() > 0
		if inserting {
			err = p.insert(ictx)
		}
		cancel()
		if err == nil {
			w.Metrics.Written.WithLabelValues(p.signal).Add(float64(p.rows()))
			if retried {
				w.Logger.Info("clickhouse write recovered", "signal", p.signal, "rows", p.rows(), "after", time.Since(since).Round(time.Millisecond))
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		failed = true
		if inserting && !store.IsUnavailable(err) {
			return &rejection{err}
		}
		w.Metrics.Retries.Inc()
		retried = true
		n, bytes := w.Spool.Depth()
		w.Logger.Warn("clickhouse write failed; data stays queued on disk and will be retried",
			"signal", p.signal, "rows", p.rows(), "queued_batches", n, "queued_mib", fmt.Sprintf("%.1f", float64(bytes)/(1<<20)),
			"retry_in", delay, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, w.MaxDelay)
		w.report()
	}
	return nil
}

// skipLanded removes from p the rows of entries already in ClickHouse.
func (w *Writer) skipLanded(ctx context.Context, p part) error {
	landed, err := w.Store.LandedBatches(ctx, p.table, p.ids())
	if err != nil {
		return err
	}
	if len(landed) > 0 {
		before := p.rows()
		p.without(landed)
		w.Metrics.Written.WithLabelValues(p.signal).Add(float64(before - p.rows()))
		w.Logger.Info("part of a failed write had landed; not writing it again", "signal", p.signal, "rows", before-p.rows())
	}
	return nil
}

func (w *Writer) report() {
	n, bytes := w.Spool.Depth()
	w.Metrics.QueuedBatch.Set(float64(n))
	w.Metrics.QueuedBytes.Set(float64(bytes))
}
