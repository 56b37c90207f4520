// Package meshexporter is meshlens' own collector exporter: it normalises
// spans, logs and metrics into meshlens rows (mesh request records, span,
// metric and log rows), hands the records to the live sinks (the graph), and
// queues every row on disk for the ClickHouse writer.
package meshexporter

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/collector/normalize"
	"github.com/meshlens/meshlens/collector/spool"
	"github.com/meshlens/meshlens/mesh"
)

// Type is the component type name used in collector configuration.
var Type = component.MustNewType("meshlens")

// Config has no user settings: the exporter's dependencies are wired in code.
type Config struct{}

// Deps are what the exporter writes to.
type Deps struct {
	Spool   *spool.Spool
	Pairer  *normalize.Pairer
	Logs    normalize.LogOptions
	Sinks   []mesh.RecordSink // live consumers of records, e.g. the graph
	Metrics *Metrics
	Now     func() time.Time
}

// NewFactory returns a factory whose three signals share one exporter, so
// span pairing and the queue see everything.
func NewFactory(deps Deps) exporter.Factory {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	e := &meshExporter{deps: deps}
	return exporter.NewFactory(Type, func() component.Config { return &Config{} },
		exporter.WithTraces(func(context.Context, exporter.Settings, component.Config) (exporter.Traces, error) { return e, nil }, component.StabilityLevelBeta),
		exporter.WithLogs(func(context.Context, exporter.Settings, component.Config) (exporter.Logs, error) { return e, nil }, component.StabilityLevelBeta),
		exporter.WithMetrics(func(context.Context, exporter.Settings, component.Config) (exporter.Metrics, error) { return e, nil }, component.StabilityLevelBeta),
	)
}

type meshExporter struct {
	deps Deps

	mu      sync.Mutex
	starts  int
	stop    chan struct{}
	stopped chan struct{}
}

var (
	_ exporter.Traces  = (*meshExporter)(nil)
	_ exporter.Logs    = (*meshExporter)(nil)
	_ exporter.Metrics = (*meshExporter)(nil)
)

func (e *meshExporter) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }

// Start is called once per pipeline; the first call starts the expiry loop.
func (e *meshExporter) Start(context.Context, component.Host) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.starts++
	if e.starts > 1 {
		return nil
	}
	e.stop, e.stopped = make(chan struct{}), make(chan struct{})
	go e.expireLoop()
	return nil
}

// Shutdown is called once per pipeline; the last call releases every span
// half still waiting, so that a clean stop loses no record.
func (e *meshExporter) Shutdown(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.starts == 0 {
		return nil
	}
	e.starts--
	if e.starts > 0 {
		return nil
	}
	close(e.stop)
	<-e.stopped
	e.emit(context.Background(), e.deps.Pairer.Expire(time.Unix(1<<40, 0)), nil)
	return nil
}

func (e *meshExporter) expireLoop() {
	defer close(e.stopped)
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			e.emit(context.Background(), e.deps.Pairer.Expire(e.deps.Now()), nil)
			e.deps.Metrics.Pending.Set(float64(e.deps.Pairer.Pending()))
		}
	}
}

// admit refuses new data, retryably, while the queue is full. It runs before
// any processing so that data once accepted is never refused later.
func (e *meshExporter) admit(signal string, n int) error {
	if err := e.deps.Spool.Full(); err != nil {
		e.deps.Metrics.Refused.WithLabelValues(signal).Add(float64(n))
		return err // not permanent: OTLP answers "unavailable, retry"
	}
	e.deps.Metrics.Received.WithLabelValues(signal).Add(float64(n))
	return nil
}

func (e *meshExporter) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	if err := e.admit(SignalTraces, td.SpanCount()); err != nil {
		return err
	}
	recs := e.deps.Pairer.Add(td, e.deps.Now())
	// Span rows name their service as the records do.
	return e.emit(ctx, recs, &spool.Batch{Spans: normalize.Spans(td, e.deps.Pairer.Peers)})
}

func (e *meshExporter) ConsumeLogs(ctx context.Context, ld plog.Logs) error {
	if err := e.admit(SignalLogs, ld.LogRecordCount()); err != nil {
		return err
	}
	recs, rows := normalize.Logs(ld, e.deps.Logs)
	return e.emit(ctx, recs, &spool.Batch{Logs: rows})
}

func (e *meshExporter) ConsumeMetrics(ctx context.Context, md pmetric.Metrics) error {
	if err := e.admit(SignalMetrics, md.DataPointCount()); err != nil {
		return err
	}
	return e.emit(ctx, nil, &spool.Batch{Points: normalize.Metrics(md)})
}

// emit hands records to the live sinks and queues records and rows for
// ClickHouse.
func (e *meshExporter) emit(ctx context.Context, recs []mesh.Record, b *spool.Batch) error {
	if b == nil {
		b = &spool.Batch{}
	}
	b.Records = recs
	if len(recs) > 0 {
		e.deps.Metrics.Received.WithLabelValues(SignalRecords).Add(float64(len(recs)))
		for _, s := range e.deps.Sinks {
			// Sinks are in-memory and never refuse; an error is a bug worth
			// surfacing but not a reason to lose the rows.
			_ = s.ConsumeRecords(ctx, recs)
		}
	}
	if b.Rows() == 0 {
		return nil
	}
	return e.deps.Spool.Append(b)
}
