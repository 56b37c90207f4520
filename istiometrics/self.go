package istiometrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// selfMetrics are the exporter's own metrics, on meshlens' /metrics.
type selfMetrics struct {
	dropped     prometheus.Counter
	invalidUTF8 prometheus.Counter
	tooLong     prometheus.Counter
	expired     prometheus.Counter
}

// ingestStats collects one batch's counts, added to the metrics once.
type ingestStats struct {
	dropped, invalidUTF8, tooLong int
}

func (st *ingestStats) sanitized(invalidUTF8, tooLong int) {
	st.invalidUTF8 += invalidUTF8
	st.tooLong += tooLong
}

const seriesHelp = `Series of each of Istio's metrics on /metrics/istio: metrics="requests" counts those of istio_requests_total (and the label sets of each HTTP histogram), metrics="tcp" those of each istio_tcp_* metric.`

func newSelfMetrics(reg prometheus.Registerer, x *Exporter) (*selfMetrics, error) {
	sanitized := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshlens_istio_metrics_sanitized_total",
		Help: "Label values of records that were not valid UTF-8 (repaired) or longer than 256 bytes (cut) for Istio's metrics, by reason.",
	}, []string{"reason"})
	m := &selfMetrics{
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_istio_metrics_dropped_total",
			Help: "Records not counted in Istio's metrics because their series would exceed --istio-metrics-max-series.",
		}),
		invalidUTF8: sanitized.WithLabelValues("invalid_utf8"),
		tooLong:     sanitized.WithLabelValues("too_long"),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_istio_metrics_expired_total",
			Help: "Label sets of Istio's metrics removed after --istio-metrics-expiry without a record.",
		}),
	}
	series := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "meshlens_istio_metrics_series",
		Help:        seriesHelp,
		ConstLabels: prometheus.Labels{"metrics": "requests"},
	}, func() float64 { return float64(x.Series().HTTP) })
	tcpSeries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "meshlens_istio_metrics_series",
		Help:        seriesHelp,
		ConstLabels: prometheus.Labels{"metrics": "tcp"},
	}, func() float64 { return float64(x.Series().TCP) })
	if reg != nil {
		for _, c := range []prometheus.Collector{m.dropped, sanitized, m.expired, series, tcpSeries} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *selfMetrics) add(st *ingestStats) {
	if st.dropped > 0 {
		m.dropped.Add(float64(st.dropped))
	}
	if st.invalidUTF8 > 0 {
		m.invalidUTF8.Add(float64(st.invalidUTF8))
	}
	if st.tooLong > 0 {
		m.tooLong.Add(float64(st.tooLong))
	}
}

// SeriesCount is how many series each metric has.
type SeriesCount struct {
	HTTP int // of istio_requests_total, and label sets of each HTTP histogram
	TCP  int // of each istio_tcp_* metric
}

// Series reports how many series each metric has.
func (x *Exporter) Series() SeriesCount {
	x.mu.Lock()
	defer x.mu.Unlock()
	return SeriesCount{HTTP: x.http.count, TCP: x.tcp.count}
}
