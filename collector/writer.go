package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/meshlens/meshlens/collector/meshexporter"
	"github.com/meshlens/meshlens/collector/spool"
	"github.com/meshlens/meshlens/store"
)

// Writer drains the spool into ClickHouse in large batches. It retries a
// failed write with back-off until it succeeds, so that the spool, not the
// writer, decides how much waits; only data ClickHouse rejects as invalid,
// again and again, is set aside and counted as dropped.
type Writer struct {
	Spool    *spool.Spool
	Store    *store.Store
	Metrics  *meshexporter.Metrics
	Logger   *slog.Logger
	MaxRows  int           // rows per insert
	Linger   time.Duration // wait this long for a small batch to grow
	MaxDelay time.Duration // cap on the retry back-off
}

// maxRejections is how often ClickHouse may reject the same batch before it is
// given up on.
const maxRejections = 5

// Run writes until ctx ends, then returns after a last drain attempt bounded
// by the caller's deadline on ctx's parent.
func (w *Writer) Run(ctx context.Context) error {
	if w.MaxRows <= 0 {
		w.MaxRows = 100_000
	}
	if w.Linger <= 0 {
		w.Linger = 200 * time.Millisecond
	}
	if w.MaxDelay <= 0 {
		w.MaxDelay = 5 * time.Second
	}
	for {
		entries, err := w.take(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
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

// take collects entries until MaxRows or the linger time.
func (w *Writer) take(ctx context.Context) ([]spool.Entry, error) {
	entries, err := w.Spool.Next(ctx, 256)
	if err != nil {
		return nil, err
	}
	rows := countRows(entries)
	deadline := time.Now().Add(w.Linger)
	for rows < w.MaxRows && time.Now().Before(deadline) {
		lctx, cancel := context.WithDeadline(ctx, deadline)
		more, err := w.Spool.Next(lctx, 256)
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

// write inserts the entries' rows table by table, remembering which tables
// are done so that a retry after a partial failure writes nothing twice.
func (w *Writer) write(ctx context.Context, entries []spool.Entry) error {
	var merged spool.Batch
	for _, e := range entries {
		if e.Batch == nil {
			w.Metrics.Dropped.WithLabelValues("unknown", "undecodable_queue_entry").Inc()
			w.Logger.Error("ingest queue entry could not be decoded; skipped", "index", e.Index, "bytes", e.Size)
			continue
		}
		merged.Merge(e.Batch)
	}
	type part struct {
		signal string
		rows   int
		insert func(context.Context) error
	}
	parts := []part{
		{meshexporter.SignalRecords, len(merged.Records), func(ctx context.Context) error { return w.Store.InsertRecords(ctx, merged.Records) }},
		{meshexporter.SignalTraces, len(merged.Spans), func(ctx context.Context) error { return w.Store.InsertSpans(ctx, merged.Spans) }},
		{meshexporter.SignalMetrics, len(merged.Points), func(ctx context.Context) error { return w.Store.InsertMetricPoints(ctx, merged.Points) }},
		{meshexporter.SignalLogs, len(merged.Logs), func(ctx context.Context) error { return w.Store.InsertLogs(ctx, merged.Logs) }},
	}
	for _, p := range parts {
		if p.rows == 0 {
			continue
		}
		delay, rejections, since := 100*time.Millisecond, 0, time.Now()
		for {
			ictx, cancel := context.WithTimeout(ctx, 60*time.Second)
			err := w.Store.EnsureSchema(ictx) // after a cold start with ClickHouse down
			if err == nil {
				err = p.insert(ictx)
			}
			cancel()
			if err == nil {
				w.Metrics.Written.WithLabelValues(p.signal).Add(float64(p.rows))
				if rejections > 0 || time.Since(since) > 2*delay {
					w.Logger.Info("clickhouse write recovered", "signal", p.signal, "rows", p.rows, "after", time.Since(since).Round(time.Millisecond))
				}
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			w.Metrics.Retries.Inc()
			if !store.IsUnavailable(err) {
				rejections++
				if rejections >= maxRejections {
					w.Metrics.Dropped.WithLabelValues(p.signal, "rejected_by_clickhouse").Add(float64(p.rows))
					w.Logger.Error("clickhouse rejected a batch repeatedly; dropping it", "signal", p.signal, "rows", p.rows, "err", err)
					break
				}
			}
			n, bytes := w.Spool.Depth()
			w.Logger.Warn("clickhouse write failed; data stays queued on disk and will be retried",
				"signal", p.signal, "rows", p.rows, "queued_batches", n, "queued_mib", fmt.Sprintf("%.1f", float64(bytes)/(1<<20)),
				"retry_in", delay, "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(delay):
			}
			delay = min(delay*2, w.MaxDelay)
			w.report()
		}
	}
	if len(entries) == 0 {
		return nil
	}
	if err := w.Spool.Commit(entries[len(entries)-1].Index); err != nil {
		return errors.Join(errors.New("ingest queue commit failed"), err)
	}
	return nil
}

func (w *Writer) report() {
	n, bytes := w.Spool.Depth()
	w.Metrics.QueuedBatch.Set(float64(n))
	w.Metrics.QueuedBytes.Set(float64(bytes))
}
