package meshexporter

import "github.com/prometheus/client_golang/prometheus"

// Signals, as the metrics label them.
const (
	SignalTraces  = "traces"
	SignalLogs    = "logs"
	SignalMetrics = "metrics"
	SignalRecords = "records" // mesh request records derived from the above
)

// Metrics is the ingestion accounting that /metrics exposes.
type Metrics struct {
	Received *prometheus.CounterVec // items accepted into the pipeline, by signal
	Refused  *prometheus.CounterVec // items pushed back because the queue was full, by signal
	Written  *prometheus.CounterVec // rows written to ClickHouse, by signal
	Dropped  *prometheus.CounterVec // rows given up on, by signal and reason
	// DeadLettered counts rows ClickHouse refused, set aside in the
	// dead-letter file, by signal.
	DeadLettered *prometheus.CounterVec
	Malformed    *prometheus.CounterVec // payloads refused as invalid, by receiver
	Retries      prometheus.Counter     // failed ClickHouse writes that will be retried
	QueuedBytes  prometheus.Gauge
	QueuedBatch  prometheus.Gauge
	Pending      prometheus.Gauge // span halves waiting for their other half
}

// NewMetrics creates and registers the metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_ingest_received_total", Help: "Items accepted by the collector: spans, log records, metric points, and the request records derived from them.",
		}, []string{"signal"}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_ingest_refused_total", Help: "Items refused with a retryable error because the on-disk queue was full or its disk had no room (see meshlens_ingest_disk_full).",
		}, []string{"signal"}),
		Written: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_ingest_written_total", Help: "Rows written to ClickHouse.",
		}, []string{"signal"}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_ingest_dropped_total", Help: "Rows given up on, with the reason.",
		}, []string{"signal", "reason"}),
		DeadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_ingest_dead_letter_rows_total", Help: "Rows ClickHouse refused for a reason retrying cannot fix, set aside in the data dir's dead-letter file.",
		}, []string{"signal"}),
		Malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_ingest_malformed_total", Help: "Payloads refused with a protocol error because they were invalid, by receiver.",
		}, []string{"receiver"}),
		Retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_ingest_retries_total", Help: "ClickHouse writes that failed and will be retried.",
		}),
		QueuedBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_ingest_queued_bytes", Help: "Bytes waiting in the on-disk queue for ClickHouse.",
		}),
		QueuedBatch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_ingest_queued_batches", Help: "Batches waiting in the on-disk queue for ClickHouse.",
		}),
		Pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_ingest_span_halves_pending", Help: "Client or server spans waiting for their other half.",
		}),
	}
	for _, s := range []string{SignalTraces, SignalLogs, SignalMetrics, SignalRecords} {
		m.Received.WithLabelValues(s)
		m.Refused.WithLabelValues(s)
		m.Written.WithLabelValues(s)
		m.DeadLettered.WithLabelValues(s)
	}
	reg.MustRegister(m.Received, m.Refused, m.Written, m.Dropped, m.DeadLettered, m.Malformed, m.Retries, m.QueuedBytes, m.QueuedBatch, m.Pending)
	return m
}
