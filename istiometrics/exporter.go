// Package istiometrics turns meshlens' request records into Istio's standard
// metrics — istio_requests_total, istio_request_duration_milliseconds,
// istio_request_bytes, istio_response_bytes and istio_tcp_* — with Istio's
// names, types, label names, label values and histogram buckets, so that
// Kiali, Istio's Grafana dashboards and Prometheus alerts written for Istio
// work on what meshlens sees, also where no Envoy reports them (proxyless
// gRPC, telemetry that reaches meshlens as OTel traces or access logs).
//
// The Exporter is a mesh.RecordSink with a Prometheus registry of its own,
// served on /metrics/istio, apart from meshlens' own /metrics.
//
// Reporter. meshlens counts each request once, from whichever side reported
// it (an Envoy access log of the caller's or the callee's proxy, a client and
// server span pair). The exporter reports it as Istio's two sidecars would:
// reporter="destination" always, and reporter="source" as well when the
// caller is known (Istio has no source report for a caller outside the mesh).
// Both carry the record's own duration and sizes, so a query of either
// reporter sees every request, and one summing both counts each twice —
// as with Istio, every query of its add-ons picks one reporter. As in Istio,
// connection_security_policy is mutual_tls or none on destination reports
// and unknown on source reports.
//
// Counting. Series are counters and histograms that only grow while meshlens
// runs and start again at zero when it restarts, as Envoy's do when a proxy
// restarts; Prometheus' rate() and increase() take resets in their stride.
// A new series is first exposed at zero, and its counts from the next scrape
// on, so Prometheus sees it start from zero and rate() loses none of its
// first requests (with Envoy's stats it loses those before the first scrape).
//
// Bounds. Each metric has at most Config.MaxSeries series; a record whose
// series would exceed it is dropped and counted
// (meshlens_istio_metrics_dropped_total). Series not updated for
// Config.Expiry are removed (meshlens_istio_metrics_expired_total). Label
// values that are not valid UTF-8 or longer than 256 bytes are repaired and
// cut (meshlens_istio_metrics_sanitized_total).
package istiometrics

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/mesh"
)

// Config tunes the exporter. Zero values take the defaults of DefaultConfig,
// except MaxSeries, where 0 turns the exporter off (see Enabled).
type Config struct {
	// MaxSeries is the most series any one metric has (counting both
	// reporters), e.g. istio_requests_total; each histogram has as many
	// label sets. Default 100,000: 10,000 services with about ten series
	// each (callers, versions and response codes, both reporters).
	MaxSeries int
	// Expiry removes series not updated for this long. Default 10m.
	Expiry time.Duration
	// Cluster is source_cluster and destination_cluster of known peers
	// (Istio's CLUSTER_ID, "Kubernetes" unless the mesh names it).
	Cluster string
	// DomainSuffix qualifies destination_service: NAME.NAMESPACE.svc.SUFFIX.
	DomainSuffix string
	// Now is the clock; default time.Now.
	Now func() time.Time
	// RootNamespace is the mesh root namespace, whose namespace-wide
	// Telemetry applies to every workload (default istio-system).
	RootNamespace string
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{MaxSeries: 100_000, Expiry: 10 * time.Minute, Cluster: "Kubernetes", DomainSuffix: "cluster.local"}
}

// Enabled reports whether the configuration keeps any series.
func (c Config) Enabled() bool { return c.MaxSeries > 0 }

// Validate names the first bad setting by its flag.
func (c Config) Validate() error {
	switch {
	case c.MaxSeries < 0:
		return fmt.Errorf("--istio-metrics-max-series %d: must be 0 (off) or positive", c.MaxSeries)
	case c.Expiry < 10*time.Second:
		return fmt.Errorf("--istio-metrics-expiry %s: must be at least 10s", c.Expiry)
	case c.Cluster == "" || !utf8.ValidString(c.Cluster) || len(c.Cluster) > maxLabelBytes:
		return fmt.Errorf("--istio-metrics-cluster %q: must be a name of 1 to %d bytes", c.Cluster, maxLabelBytes)
	case c.DomainSuffix == "":
		return errors.New("--domain-suffix: must not be empty")
	}
	return nil
}

// Exporter keeps Istio's standard metrics of the records it consumes.
type Exporter struct {
	cfg    Config
	reg    *prometheus.Registry
	m      *selfMetrics
	expiry int64 // ns

	mu              sync.Mutex
	http            family[httpKey, httpCounts]
	tcp             family[tcpKey, tcpCounts]
	nextSweep       int64 // ns
	nextForcedSweep int64 // ns

	telemetry atomic.Pointer[telemetryView]
}

// New builds an exporter. Its own metrics (series, drops, expiries,
// sanitised values) go to reg, meshlens' registry; the Istio metrics to a
// registry of its own (Registry, Handler).
func New(cfg Config, reg prometheus.Registerer) (*Exporter, error) {
	def := DefaultConfig()
	if cfg.Expiry == 0 {
		cfg.Expiry = def.Expiry
	}
	if cfg.Cluster == "" {
		cfg.Cluster = def.Cluster
	}
	if cfg.DomainSuffix == "" {
		cfg.DomainSuffix = def.DomainSuffix
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RootNamespace == "" {
		cfg.RootNamespace = "istio-system"
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	x := &Exporter{cfg: cfg, reg: prometheus.NewRegistry(), expiry: int64(cfg.Expiry)}
	x.http.init()
	x.tcp.init()
	var err error
	if x.m, err = newSelfMetrics(reg, x); err != nil {
		return nil, err
	}
	if err := x.reg.Register(collector{x}); err != nil {
		return nil, err
	}
	return x, nil
}

// UpdateConfig applies the metrics settings of snap's Telemetries from the
// next scrape on. It is a config.Store subscriber.
func (x *Exporter) UpdateConfig(snap *config.Snapshot) {
	x.telemetry.Store(newTelemetryView(x.cfg.RootNamespace, snap))
}

// Registry is the registry of the Istio metrics.
func (x *Exporter) Registry() *prometheus.Registry { return x.reg }

// ConsumeRecords counts every record. It never fails: records beyond the
// series limit are dropped and counted.
func (x *Exporter) ConsumeRecords(_ context.Context, recs []mesh.Record) error {
	if x.cfg.MaxSeries == 0 || len(recs) == 0 {
		return nil
	}
	now := x.cfg.Now().UnixNano()
	var st ingestStats
	x.mu.Lock()
	for i := range recs {
		r := &recs[i]
		if r.Protocol == "tcp" {
			x.addTCP(r, now, &st)
		} else {
			x.addHTTP(r, now, &st)
		}
	}
	if now >= x.nextSweep {
		x.sweepLocked(now)
	}
	x.mu.Unlock()
	x.m.add(&st)
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (x *Exporter) addHTTP(r *mesh.Record, now int64, st *ingestStats) {
	k := httpKey{src: r.Source, dst: r.Destination, protocol: r.Protocol, flags: r.Flags, code: r.Code, grpc: r.GRPCStatus}
	s := x.http.keys[k]
	if s == nil {
		if a, ok := x.http.dirty[k]; ok {
			s = a.s
			st.sanitized(a.invalidUTF8, a.tooLong)
		} else if s = newSeries(x, &x.http, k, now, st); s == nil {
			return
		}
	}
	m := s.modes[b2i(r.MTLS)].Load()
	if m == nil {
		if m = addMode(x, &x.http, s, r.MTLS, now, st); m == nil {
			return
		}
	}
	s.lastSeen = now
	c := &m.c
	c.requests.Add(1)
	us := uint64(0)
	if r.Duration > 0 {
		us = uint64(r.Duration / time.Microsecond)
	}
	c.duration.observe(us, &durationBoundsUs)
	c.requestBytes.observe(r.BytesIn, &bytesBounds)
	c.responseBytes.observe(r.BytesOut, &bytesBounds)
}

func (x *Exporter) addTCP(r *mesh.Record, now int64, st *ingestStats) {
	k := tcpKey{src: r.Source, dst: r.Destination, flags: r.Flags}
	s := x.tcp.keys[k]
	if s == nil {
		if a, ok := x.tcp.dirty[k]; ok {
			s = a.s
			st.sanitized(a.invalidUTF8, a.tooLong)
		} else if s = newSeries(x, &x.tcp, k, now, st); s == nil {
			return
		}
	}
	m := s.modes[b2i(r.MTLS)].Load()
	if m == nil {
		if m = addMode(x, &x.tcp, s, r.MTLS, now, st); m == nil {
			return
		}
	}
	s.lastSeen = now
	// A TCP record is one connection: opened and closed, with its bytes.
	c := &m.c
	c.opened.Add(1)
	c.closed.Add(1)
	c.received.Add(r.BytesIn)
	c.sent.Add(r.BytesOut)
}
