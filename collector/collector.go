// Package collector is meshlens' telemetry intake: an OpenTelemetry collector
// assembled in-process from collector components. OTLP (gRPC and HTTP, from
// go.opentelemetry.io/collector) and Envoy's gRPC Access Log Service (our
// alsreceiver) feed a memory limiter and meshlens' exporter, which derives
// mesh request records, feeds the live graph, and queues every row on disk;
// the Writer drains that queue into ClickHouse in large batches.
//
// There is deliberately no batch processor in the pipelines: it would
// acknowledge data before it is durable and hide ClickHouse back-pressure from
// senders. Batching happens after the durable queue, in the Writer.
package collector

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/memorylimiterprocessor"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/meshlens/meshlens/collector/alsreceiver"
	"github.com/meshlens/meshlens/collector/meshexporter"
	"github.com/meshlens/meshlens/collector/normalize"
	"github.com/meshlens/meshlens/collector/spool"
	"github.com/meshlens/meshlens/listeners"
	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/store"
)

// Config is the collector's part of meshlens' configuration.
type Config struct {
	OTLPGRPC       string        `json:"otlp-grpc"`        // OTLP/gRPC listen address; empty disables
	OTLPHTTP       string        `json:"otlp-http"`        // OTLP/HTTP listen address; empty disables
	ALS            string        `json:"als"`              // Envoy ALS listen address; empty disables
	QueueMaxBytes  int64         `json:"queue-max-bytes"`  // bound of the on-disk queue
	PairWait       time.Duration `json:"pair-wait"`        // how long a span waits for its other half
	MemoryLimitMiB int           `json:"memory-limit-mib"` // memory limiter hard limit
	// DeadLetterMaxBytes bounds the file of rows ClickHouse refused.
	DeadLetterMaxBytes int64 `json:"dead-letter-max-bytes"`
	// Limits bound the receivers' clients (message sizes, streams,
	// OTLP/HTTP timeouts and headers).
	Limits listeners.Limits `json:"-"`
	// TLS, when its files are set, makes every receiver TLS (mutual TLS
	// with a client CA); the files are read again every TLSReload.
	TLS       listeners.TLSFiles `json:"-"`
	TLSReload time.Duration      `json:"-"`
	// ALSMaxEntriesPerSecond bounds what one ALS stream may send (0: no
	// bound); past it the stream is read more slowly.
	ALSMaxEntriesPerSecond int `json:"als-max-entries-per-second"`
	// InboundAccessLogs says which inbound access-log entries (written by
	// the callee's proxy) become request records: InboundOutsideMesh or
	// InboundAll.
	InboundAccessLogs string `json:"inbound-access-logs"`
}

// Values of Config.InboundAccessLogs.
const (
	// InboundOutsideMesh counts a request between mesh workloads once, from
	// the caller's proxy (its outbound entry); inbound entries count only
	// for callers outside the mesh. Right when every workload has a proxy.
	InboundOutsideMesh = "outside-mesh"
	// InboundAll counts every inbound entry too: for meshes whose callers
	// report no access logs of their own (proxyless gRPC clients calling
	// services behind sidecars). Where both sides have proxies it counts
	// their requests twice.
	InboundAll = "all"
)

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		OTLPGRPC:       "127.0.0.1:4317",
		OTLPHTTP:       "127.0.0.1:4318",
		ALS:            "127.0.0.1:19001",
		QueueMaxBytes:  1 << 30,
		PairWait:       10 * time.Second,
		MemoryLimitMiB: 2048,

		DeadLetterMaxBytes: 256 << 20,
		Limits:             listeners.DefaultLimits(),
		TLSReload:          10 * time.Second,

		ALSMaxEntriesPerSecond: 20_000,

		InboundAccessLogs: InboundOutsideMesh,
	}
}

// Validate checks the configuration, naming the offending setting.
func (c Config) Validate() error {
	for name, addr := range map[string]string{"--otlp-grpc": c.OTLPGRPC, "--otlp-http": c.OTLPHTTP, "--als": c.ALS} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s %q: want host:port", name, addr)
		}
	}
	if c.QueueMaxBytes < 1<<20 {
		return fmt.Errorf("--queue-max-bytes %d: must be at least 1 MiB", c.QueueMaxBytes)
	}
	if c.PairWait <= 0 {
		return fmt.Errorf("--pair-wait %s: must be positive", c.PairWait)
	}
	if c.MemoryLimitMiB < 64 {
		return fmt.Errorf("--memory-limit-mib %d: must be at least 64", c.MemoryLimitMiB)
	}
	if c.DeadLetterMaxBytes < 1<<20 {
		return fmt.Errorf("--dead-letter-max-bytes %d: must be at least 1 MiB", c.DeadLetterMaxBytes)
	}
	if err := c.Limits.Validate(); err != nil {
		return err
	}
	if err := c.TLS.Validate(); err != nil {
		return err
	}
	if c.ALSMaxEntriesPerSecond < 0 {
		return fmt.Errorf("--als-max-entries-per-second %d: must not be negative", c.ALSMaxEntriesPerSecond)
	}
	if c.TLSReload <= 0 {
		return fmt.Errorf("--tls-reload-interval %s: must be positive", c.TLSReload)
	}
	if c.InboundAccessLogs != InboundOutsideMesh && c.InboundAccessLogs != InboundAll {
		return fmt.Errorf("--inbound-access-logs %q: want %q or %q", c.InboundAccessLogs, InboundOutsideMesh, InboundAll)
	}
	return nil
}

// Collector runs the OpenTelemetry pipelines and the ClickHouse writer.
type Collector struct {
	cfg       Config
	listeners *listeners.Metrics
	tls       *listeners.TLS // the ALS server's; nil without TLS
	logger    *slog.Logger
	spool     *spool.Spool
	writer    *Writer
	deps      meshexporter.Deps
	running   atomic.Bool

	httpMu      sync.Mutex
	httpServers []*http.Server // --otlp-http's (serveOTLPHTTP)
}

// New builds a collector writing to st and feeding sinks; its queue lives in
// dataDir/queue. peers, when not nil, names the workloads behind addresses
// in the telemetry (a Kubernetes registry: Pod IPs) where the telemetry
// itself does not.
//
// Its listeners count the limits that bite in lm (meshlens' one set of
// listener metrics); nil makes and registers its own.
func New(cfg Config, dataDir string, st *store.Store, sinks []mesh.RecordSink, peers mesh.PeerResolver, reg prometheus.Registerer, logger *slog.Logger, lm *listeners.Metrics) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if lm == nil {
		var err error
		if lm, err = listeners.NewMetrics(reg); err != nil {
			return nil, err
		}
	}
	sp, err := spool.Open(filepath.Join(dataDir, "queue"), cfg.QueueMaxBytes)
	if err != nil {
		return nil, err
	}
	if n, bytes := sp.Depth(); n > 0 {
		logger.Info("ingest queue holds data from the previous run; writing it first", "batches", n, "mib", bytes>>20)
	}
	var tlsSrc *listeners.TLS
	if cfg.TLS.Enabled() {
		var err error
		if tlsSrc, err = listeners.NewTLS(cfg.TLS, logger); err != nil {
			return nil, err
		}
	}
	dead, err := OpenDeadLetter(dataDir, cfg.DeadLetterMaxBytes)
	if err != nil {
		sp.Close()
		return nil, err
	}
	m := meshexporter.NewMetrics(reg)
	diskFull := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "meshlens_ingest_disk_full",
		Help: "1 while the data dir's disk has less free space than the ingest queue keeps in reserve: new telemetry is refused (retryably) until there is room."},
		func() float64 {
			if sp.DiskFull() {
				return 1
			}
			return 0
		})
	if err := reg.Register(diskFull); err != nil {
		sp.Close()
		return nil, fmt.Errorf("collector metrics: %w", err)
	}
	pairer := normalize.NewPairer(cfg.PairWait, 500_000)
	pairer.Peers = peers
	c := &Collector{
		cfg:       cfg,
		listeners: lm,
		tls:       tlsSrc,
		logger:    logger,
		spool:     sp,
		deps: meshexporter.Deps{
			Spool:   sp,
			Pairer:  pairer,
			Logs:    normalize.LogOptions{InboundFromMesh: cfg.InboundAccessLogs == InboundAll, Peers: peers},
			Sinks:   sinks,
			Metrics: m,
		},
	}
	c.writer = &Writer{Spool: sp, Store: st, Metrics: m, Logger: logger, DeadLetter: dead}
	return c, nil
}

// QueueFill is how many bytes the on-disk queue holds, and its bound.
func (c *Collector) QueueFill() (bytes, max int64) {
	_, bytes = c.spool.Depth()
	return bytes, c.cfg.QueueMaxBytes
}

// DiskFull reports whether new telemetry is refused because the data dir's
// disk has less free space than the queue keeps in reserve.
func (c *Collector) DiskFull() bool { return c.spool.DiskFull() }

// Ready reports whether the receivers are up.
func (c *Collector) Ready() bool { return c.running.Load() }

// Run serves until ctx ends. On the way out, the receivers stop first, span
// halves still waiting are queued, and the writer gets a few seconds to drain;
// whatever it cannot write stays on disk for the next start.
func (c *Collector) Run(ctx context.Context) error {
	wctx, stopWriter := context.WithCancel(context.Background())
	writerDone := make(chan error, 1)
	go func() { writerDone <- c.writer.Run(wctx) }()
	if c.tls != nil {
		go func() { _ = c.tls.Watch(ctx, c.cfg.TLSReload) }()
	}

	col, err := c.newOtelcol()
	if err != nil {
		stopWriter()
		<-writerDone
		c.spool.Close()
		return err
	}
	go c.watchState(ctx, col)
	// --otlp-http's server stops before the receivers and pipelines do.
	colCtx, stopCol := context.WithCancel(context.WithoutCancel(ctx))
	colDone := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-colDone:
		}
		c.closeOTLPHTTP()
		stopCol()
	}()
	runErr := col.Run(colCtx)
	close(colDone)
	c.closeOTLPHTTP()
	c.running.Store(false)

	// Drain what is queued while the writer makes progress, for at most 5s.
	deadline := time.Now().Add(5 * time.Second)
	lastN, lastProgress := -1, time.Now()
	for time.Now().Before(deadline) && time.Since(lastProgress) < time.Second {
		n, _ := c.spool.Depth()
		if n == 0 {
			break
		}
		if n != lastN {
			lastN, lastProgress = n, time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopWriter()
	werr := <-writerDone
	if n, bytes := c.spool.Depth(); n > 0 {
		c.logger.Info("ingest queue kept on disk for the next start", "batches", n, "mib", bytes>>20)
	}
	return errors.Join(runErr, werr, c.spool.Close())
}

func (c *Collector) watchState(ctx context.Context, col *otelcol.Collector) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if col.GetState() == otelcol.StateRunning {
				c.running.Store(true)
				return
			}
		}
	}
}

// The listener extension's instances, named as the metrics name the
// listeners.
var (
	otlpGRPCExt = listenerExtType.String() + "/otlp_grpc"
	otlpHTTPExt = listenerExtType.String() + "/otlp_http"
)

// otlpHTTPUnused is where the OTLP receiver's own HTTP server listens.
const otlpHTTPUnused = "127.0.0.1:0"

// otlpHTTPConfig is the OTLP/HTTP server's confighttp configuration, as the
// collector's YAML, listening on endpoint.
func (c *Collector) otlpHTTPConfig(endpoint string) map[string]any {
	l := c.cfg.Limits
	m := map[string]any{"endpoint": endpoint,
		// One byte over the middleware's bound, so that it is the one
		// that refuses, and counts.
		"max_request_body_size": l.MaxMessageBytes + 1,
		"read_header_timeout":   l.ReadTimeout.String(),
		"read_timeout":          l.ReadTimeout.String(),
		"write_timeout":         l.WriteTimeout.String(),
		"keepalive":             map[string]any{"idle_timeout": l.IdleTimeout.String()},
		"middlewares":           []any{map[string]any{"id": otlpHTTPExt}}}
	if c.cfg.TLS.Enabled() {
		m["tls"] = c.tlsConfig()
	}
	return m
}

// tlsConfig is the OTLP servers' configtls configuration.
func (c *Collector) tlsConfig() map[string]any {
	tls := map[string]any{"cert_file": c.cfg.TLS.Cert, "key_file": c.cfg.TLS.Key, "min_version": "1.2",
		"reload_interval": c.cfg.TLSReload.String()}
	if c.cfg.TLS.ClientCA != "" {
		tls["client_ca_file"], tls["client_ca_file_reload"] = c.cfg.TLS.ClientCA, true
	}
	return tls
}

// serveOTLPHTTP serves h, the OTLP receiver's HTTP routes behind meshlens'
// middleware, on --otlp-http: an http.Server confighttp makes from the
// receiver's configuration (decompression, body bound, instrumentation,
// TLS), served on listeners' Listener so that a request cut by a timeout,
// the header's included, is counted as the API's are. The collector's
// middleware extension calls it when the receiver builds its server.
func (c *Collector) serveOTLPHTTP(ctx context.Context, tel component.TelemetrySettings, h http.Handler) error {
	m := c.otlpHTTPConfig(c.cfg.OTLPHTTP)
	delete(m, "middlewares")
	cfg := confighttp.NewDefaultServerConfig()
	if err := confmap.NewFromStringMap(m).Unmarshal(&cfg); err != nil {
		return fmt.Errorf("--otlp-http server configuration: %w", err)
	}
	srv, err := cfg.ToServer(ctx, nil, tel, h, confighttp.WithErrorHandler(otlpHTTPError))
	if err != nil {
		return fmt.Errorf("--otlp-http server: %w", err)
	}
	srv.ConnState = listeners.ConnState
	srv.IdleTimeout = c.cfg.Limits.IdleTimeout
	ln, err := cfg.NetAddr.Listen(ctx)
	if err != nil {
		return fmt.Errorf("--otlp-http %s: %w", c.cfg.OTLPHTTP, err)
	}
	sln := c.listeners.Listener("otlp_http", ln)
	if cfg.TLS.HasValue() {
		tlsCfg, err := cfg.TLS.Get().LoadTLSConfig(ctx)
		if err != nil {
			ln.Close()
			return fmt.Errorf("--otlp-http TLS: %w", err)
		}
		tlsCfg.NextProtos = []string{"h2", "http/1.1"}
		sln = tls.NewListener(sln, tlsCfg)
	}
	c.httpMu.Lock()
	c.httpServers = append(c.httpServers, srv)
	c.httpMu.Unlock()
	go func() {
		if err := srv.Serve(sln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.logger.Error("OTLP/HTTP server stopped", "addr", c.cfg.OTLPHTTP, "err", err)
		}
	}()
	return nil
}

// otlpHTTPError answers a request confighttp refuses before the receiver
// sees it (a body it cannot decompress: 400) as the receiver answers its
// own refusals: a google.rpc.Status, protobuf or JSON as the request's
// Content-Type.
func otlpHTTPError(w http.ResponseWriter, r *http.Request, msg string, code int) {
	c := codes.Unknown
	switch code {
	case http.StatusBadRequest:
		c = codes.InvalidArgument
	case http.StatusUnauthorized:
		c = codes.Unauthenticated
	}
	st := status.New(c, msg).Proto()
	ct, body, err := "application/json", []byte(nil), error(nil)
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/x-protobuf" {
		ct = mt
		body, err = proto.Marshal(st)
	} else {
		body, err = protojson.Marshal(st)
	}
	if err != nil {
		ct, body, code = "text/plain", []byte(msg), http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// closeOTLPHTTP closes the servers serveOTLPHTTP started.
func (c *Collector) closeOTLPHTTP() {
	c.httpMu.Lock()
	defer c.httpMu.Unlock()
	for _, srv := range c.httpServers {
		_ = srv.Close()
	}
	c.httpServers = nil
}

// pipelineConfig is the collector configuration, as the collector's own YAML.
func (c *Collector) pipelineConfig() map[string]any {
	receivers := map[string]any{}
	var traceRx, logRx, metricRx []string
	if c.cfg.OTLPGRPC != "" || c.cfg.OTLPHTTP != "" {
		protocols := map[string]any{}
		if c.cfg.OTLPGRPC != "" {
			// Size and stream limits come with the middleware's options.
			protocols["grpc"] = map[string]any{"endpoint": c.cfg.OTLPGRPC,
				"middlewares": []any{map[string]any{"id": otlpGRPCExt}}}
		}
		if c.cfg.OTLPHTTP != "" {
			// The receiver's own server listens on a loopback port no one
			// is told of (with the same limits and TLS); --otlp-http is
			// served by serveOTLPHTTP.
			protocols["http"] = c.otlpHTTPConfig(otlpHTTPUnused)
		}
		if c.cfg.TLS.Enabled() && c.cfg.OTLPGRPC != "" {
			protocols["grpc"].(map[string]any)["tls"] = c.tlsConfig()
		}
		receivers["otlp"] = map[string]any{"protocols": protocols}
		traceRx, logRx, metricRx = []string{"otlp"}, []string{"otlp"}, []string{"otlp"}
	}
	if c.cfg.ALS != "" {
		receivers[alsreceiver.Type.String()] = map[string]any{"endpoint": c.cfg.ALS, "max_entries_per_second": c.cfg.ALSMaxEntriesPerSecond}
		logRx = append(logRx, alsreceiver.Type.String())
	}
	pipelines := map[string]any{}
	add := func(name string, rx []string) {
		if len(rx) > 0 {
			pipelines[name] = map[string]any{"receivers": rx, "processors": []string{"memory_limiter"}, "exporters": []string{meshexporter.Type.String()}}
		}
	}
	add("traces", traceRx)
	add("logs", logRx)
	add("metrics", metricRx)
	return map[string]any{
		"receivers": receivers,
		"processors": map[string]any{"memory_limiter": map[string]any{
			"check_interval":  "1s",
			"limit_mib":       c.cfg.MemoryLimitMiB,
			"spike_limit_mib": c.cfg.MemoryLimitMiB / 4,
		}},
		"exporters":  map[string]any{meshexporter.Type.String(): map[string]any{}},
		"extensions": map[string]any{otlpGRPCExt: map[string]any{}, otlpHTTPExt: map[string]any{}},
		"service":    map[string]any{"pipelines": pipelines, "extensions": []string{otlpGRPCExt, otlpHTTPExt}},
	}
}

func (c *Collector) newOtelcol() (*otelcol.Collector, error) {
	doc, err := yaml.Marshal(c.pipelineConfig())
	if err != nil {
		return nil, fmt.Errorf("collector config: %w", err)
	}
	factories := func() (otelcol.Factories, error) {
		var f otelcol.Factories
		var err error
		alsOpts := c.listeners.GRPCServerOptions("als", c.cfg.Limits)
		if c.tls != nil {
			alsOpts = append(alsOpts, grpc.Creds(credentials.NewTLS(c.tls.ServerConfig())))
		}
		als := alsreceiver.NewFactory(alsMetrics{c.deps.Metrics, c.listeners}, alsOpts...)
		if f.Receivers, err = otelcol.MakeFactoryMap[receiver.Factory](otlpreceiver.NewFactory(), als); err != nil {
			return f, err
		}
		if f.Extensions, err = otelcol.MakeFactoryMap[extension.Factory](newListenerExtFactory(c.listeners, c.cfg.Limits, c.serveOTLPHTTP)); err != nil {
			return f, err
		}
		if f.Processors, err = otelcol.MakeFactoryMap[processor.Factory](memorylimiterprocessor.NewFactory()); err != nil {
			return f, err
		}
		if f.Exporters, err = otelcol.MakeFactoryMap[exporter.Factory](meshexporter.NewFactory(c.deps)); err != nil {
			return f, err
		}
		f.Telemetry = telemetry.NewFactory(
			func() component.Config { return &struct{}{} },
			telemetry.WithCreateLogger(func(context.Context, telemetry.LoggerSettings, component.Config) (*zap.Logger, component.ShutdownFunc, error) {
				return zapLogger(c.logger.Handler()), nil, nil
			}),
		)
		return f, nil
	}
	return otelcol.NewCollector(otelcol.CollectorSettings{
		BuildInfo:               component.BuildInfo{Command: "meshlens", Description: "meshlens collector", Version: "dev"},
		Factories:               factories,
		DisableGracefulShutdown: true, // meshlens owns signals
		SkipSettingGRPCLogger:   true,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{ResolverSettings: confmap.ResolverSettings{
			URIs:              []string{"yaml:" + string(doc)},
			ProviderFactories: []confmap.ProviderFactory{yamlprovider.NewFactory()},
		}},
	})
}

// alsMetrics routes the ALS receiver's accounting into the ingest metrics.
type alsMetrics struct {
	m  *meshexporter.Metrics
	lm *listeners.Metrics
}

func (a alsMetrics) Malformed()   { a.m.Malformed.WithLabelValues("envoyals").Inc() }
func (a alsMetrics) RateLimited() { a.lm.Exceeded("als", listeners.LimitEntryRate) }
