package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// Config is the demo's configuration.
type Config struct {
	// Namespace of the demo's services and Istio objects.
	Namespace string
	// ServicePort is the mesh port every service is dialled on
	// (xds:///reviews.bookinfo.svc.cluster.local:9080); the workloads
	// themselves listen on their own loopback ports.
	ServicePort int
	// BasePort is the first workload port; instance i listens on
	// BasePort+i. 0 picks free ports.
	BasePort int
	// XDS is the control plane's ADS address (host:port).
	XDS string
	// Collector is the OTLP/gRPC trace endpoint (host:port); empty turns
	// tracing off.
	Collector string
	// Server is meshlens' HTTP base URL for applying the demo's config;
	// empty skips applying (the config is then the user's business).
	Server    string
	Token     string
	TokenFile string
	// Rate is the load generator's initial rate in requests per second.
	Rate float64
	// Control is the address of the control HTTP endpoint; empty turns it off.
	Control string
	// Faults injected from the start.
	Faults map[VersionKey]Fault
	// ReviewsSplit is the VirtualService's traffic split over reviews
	// versions (version → percent).
	ReviewsSplit map[string]uint32
	// StatusEvery is the period of the status line written to Status.
	StatusEvery time.Duration
	Status      io.Writer
	// RequestTimeout bounds each load generator request.
	RequestTimeout time.Duration
	// TraceBatchTimeout is how long spans wait before export.
	TraceBatchTimeout time.Duration
	// ApplyRetryEvery is the pause between attempts to reach meshlens.
	ApplyRetryEvery time.Duration
	// XDSServers makes every workload an xDS-managed gRPC server, so
	// PeerAuthentication (mTLS) and AuthorizationPolicy (RBAC) apply to
	// its inbound calls. Off, workloads are plain gRPC servers and only
	// the outbound side (routing, retries, faults, LB) follows xDS.
	XDSServers bool
}

// DefaultConfig returns the defaults `meshlens demo` starts with.
func DefaultConfig() Config {
	return Config{
		Namespace:         "bookinfo",
		ServicePort:       9080,
		BasePort:          9081,
		XDS:               "127.0.0.1:15010",
		Collector:         "127.0.0.1:4317",
		Server:            "http://127.0.0.1:8080",
		TokenFile:         ".run/data/operator.token",
		Rate:              20,
		Control:           "127.0.0.1:8090",
		ReviewsSplit:      map[string]uint32{"v1": 50, "v2": 30, "v3": 20},
		StatusEvery:       5 * time.Second,
		RequestTimeout:    5 * time.Second,
		TraceBatchTimeout: time.Second,
		ApplyRetryEvery:   time.Second,
	}
}

// Validate checks the configuration, naming the field at fault.
func (c *Config) Validate() error {
	var errs []error
	if c.Namespace == "" {
		errs = append(errs, errors.New("namespace: must not be empty"))
	}
	if c.ServicePort <= 0 || c.ServicePort > 65535 {
		errs = append(errs, fmt.Errorf("service port %d: must be 1..65535", c.ServicePort))
	}
	if c.BasePort < 0 || c.BasePort+len(Bookinfo()) > 65536 {
		errs = append(errs, fmt.Errorf("base port %d: must be 0 (any free port) or leave room for %d workloads", c.BasePort, len(Bookinfo())))
	}
	if c.XDS == "" {
		errs = append(errs, errors.New("xds: the control plane address must not be empty"))
	}
	if !(c.Rate >= 0 && c.Rate <= 100000) {
		errs = append(errs, fmt.Errorf("rate %v: must be between 0 and 100000 requests per second", c.Rate))
	}
	if c.RequestTimeout <= 0 {
		errs = append(errs, fmt.Errorf("request timeout %v: must be positive", c.RequestTimeout))
	}
	known := map[VersionKey]bool{}
	for _, in := range Bookinfo() {
		known[VersionKey{in.Service, in.Version}] = true
	}
	for k, f := range c.Faults {
		if !known[k] {
			errs = append(errs, fmt.Errorf("fault %s: no such service version in the demo", k))
		}
		if err := f.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("fault %s: %w", k, err))
		}
	}
	return errors.Join(errs...)
}

// Demo is a running demo mesh.
type Demo struct {
	cfg       Config
	logger    *slog.Logger
	faults    *Faults
	instances []*instance
	providers []*sdktrace.TracerProvider
	load      *loadGen
	loadConn  interface{ Close() error }
	control   *http.Server
	controlLn net.Listener

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start starts the demo's workloads, applies its Istio config through
// meshlens' API (waiting for meshlens to answer), then starts the load
// generator, the control endpoint and the status line. Stop ends it.
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (_ *Demo, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("demo config: %w", err)
	}
	d := &Demo{cfg: cfg, logger: logger, faults: NewFaults(cfg.Faults)}
	defer func() {
		if err != nil {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			d.Stop(sctx)
		}
	}()

	var endpoints []Endpoint
	for i, def := range Bookinfo() {
		id := peerIdentity{Service: def.Service, Version: def.Version, Namespace: cfg.Namespace, Workload: def.Workload()}
		tp, err := d.tracerProvider(ctx, id)
		if err != nil {
			return nil, err
		}
		addr := "127.0.0.1:0"
		if cfg.BasePort > 0 {
			addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.BasePort+i))
		}
		in, err := startInstance(def, addr, &cfg, tp, d.faults, logger)
		if err != nil {
			return nil, err
		}
		d.instances = append(d.instances, in)
		endpoints = append(endpoints, Endpoint{Instance: def, Port: in.Port()})
	}
	for _, e := range endpoints {
		logger.Info("workload listening", "workload", e.Instance.Workload(), "addr", fmt.Sprintf("127.0.0.1:%d", e.Port))
	}

	if cfg.Server != "" {
		body, err := IstioConfig(cfg.Namespace, cfg.ServicePort, endpoints, cfg.ReviewsSplit)
		if err != nil {
			return nil, err
		}
		a := &Applier{Server: cfg.Server, Token: cfg.Token, TokenFile: cfg.TokenFile, Logger: logger, RetryEvery: cfg.ApplyRetryEvery}
		logger.Info("applying demo config", "server", cfg.Server, "services", 4, "workloads", len(endpoints))
		if err := a.Apply(ctx, body); err != nil {
			return nil, err
		}
		logger.Info("demo config applied", "server", cfg.Server)
	}

	if err := d.waitServing(ctx, 30*time.Second); err != nil {
		return nil, err
	}

	// The load generator is a workload of its own, so the graph shows who
	// calls productpage.
	lgID := peerIdentity{Service: "loadgen", Version: "v1", Namespace: cfg.Namespace, Workload: "loadgen"}
	tp, err := d.tracerProvider(ctx, lgID)
	if err != nil {
		return nil, err
	}
	r, err := xdsResolver(cfg.XDS, lgID)
	if err != nil {
		return nil, err
	}
	conn, err := dialXDS("productpage", &cfg, r, tp)
	if err != nil {
		return nil, fmt.Errorf("load generator: %w", err)
	}
	d.loadConn = conn
	d.load = newLoadGen(testpb.NewTestServiceClient(conn), cfg.Rate, cfg.RequestTimeout)

	if cfg.Control != "" {
		ln, err := net.Listen("tcp", cfg.Control)
		if err != nil {
			return nil, fmt.Errorf("control endpoint: listen on %s: %w", cfg.Control, err)
		}
		d.controlLn = ln
		d.control = &http.Server{Handler: d.ControlHandler(), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := d.control.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("control endpoint stopped", "err", err)
			}
		}()
		logger.Info("control endpoint listening", "url", "http://"+ln.Addr().String()+"/")
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.cancel = cancel
	d.wg.Go(func() { d.load.run(runCtx) })
	if cfg.Status != nil && cfg.StatusEvery > 0 {
		d.wg.Go(func() { d.statusLoop(runCtx) })
	}
	logger.Info("demo running", "rate", cfg.Rate, "faults", d.faults.String(), "front", Target("productpage", cfg.Namespace, cfg.ServicePort))
	return d, nil
}

// waitServing waits until every workload accepts calls (xDS servers need
// their inbound listener from the control plane first), so the first
// requests do not fail for want of it. After limit it carries on with a
// warning: the graph will show what is wrong.
func (d *Demo) waitServing(ctx context.Context, limit time.Duration) error {
	start := time.Now()
	quiet := time.NewTimer(2 * time.Second) // a push normally takes milliseconds
	defer quiet.Stop()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for _, in := range d.instances {
		for waiting := true; waiting; {
			select {
			case <-in.serving:
				waiting = false
			case <-quiet.C:
				d.logger.Info("waiting for workloads' inbound listeners from meshlens", "workload", in.def.Workload(), "xds", d.cfg.XDS)
			case <-ctx.Done():
				return fmt.Errorf("waiting for %s to serve: %w", in.def.Workload(), ctx.Err())
			case <-deadline.C:
				d.logger.Warn("workloads not serving yet; starting the load anyway", "after", time.Since(start).Round(time.Second))
				return nil
			}
		}
	}
	return nil
}

func (d *Demo) tracerProvider(ctx context.Context, id peerIdentity) (trace.TracerProvider, error) {
	if d.cfg.Collector == "" {
		return noop.NewTracerProvider(), nil
	}
	tp, err := newTracerProvider(ctx, d.cfg.Collector, id, d.cfg.TraceBatchTimeout)
	if err != nil {
		return nil, err
	}
	d.providers = append(d.providers, tp)
	return tp, nil
}

// Stop stops the load, waits for requests in flight (until ctx ends), stops
// the workloads and flushes their traces.
func (d *Demo) Stop(ctx context.Context) error {
	if d.cancel != nil {
		d.cancel()
	}
	d.wg.Wait()
	if d.control != nil {
		d.control.Shutdown(ctx)
	} else if d.controlLn != nil {
		d.controlLn.Close()
	}
	if d.loadConn != nil {
		d.loadConn.Close()
	}
	for _, in := range d.instances {
		in.stop(ctx)
	}
	var errs []error
	for _, tp := range d.providers {
		if err := tp.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("flush demo traces: %w", err)
	}
	return nil
}

// Stats returns the load generator's counters.
func (d *Demo) Stats() Stats { return d.load.Stats() }

// SetRate changes the load generator's rate.
func (d *Demo) SetRate(rps float64) { d.load.SetRate(rps) }

// Faults is the live fault table.
func (d *Demo) Faults() *Faults { return d.faults }

// ControlAddr is the control endpoint's address ("" if off).
func (d *Demo) ControlAddr() string {
	if d.controlLn == nil {
		return ""
	}
	return d.controlLn.Addr().String()
}

// Endpoints lists where each workload listens.
func (d *Demo) Endpoints() []Endpoint {
	out := make([]Endpoint, len(d.instances))
	for i, in := range d.instances {
		out[i] = Endpoint{Instance: in.def, Port: in.Port()}
	}
	return out
}

func (d *Demo) statusLoop(ctx context.Context) {
	t := time.NewTicker(d.cfg.StatusEvery)
	defer t.Stop()
	prev := d.load.Stats()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur := d.load.Stats()
		fmt.Fprintln(d.cfg.Status, statusLine(prev, cur, d.cfg.StatusEvery, d.load.Rate(), d.faults.String()))
		prev = cur
	}
}

// statusLine summarises one period: "rate 20 rps | sent 100 ok 95 errors 5
// (Unavailable 5) | reviews v1 48 v2 29 v3 18 | faults reviews:v3 errors 50%".
func statusLine(prev, cur Stats, period time.Duration, rate float64, faults string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "demo: rate %g rps | last %s: sent %d ok %d errors %d",
		rate, period, cur.Sent-prev.Sent, cur.OK-prev.OK, cur.Errors-prev.Errors)
	var codes []string
	for _, c := range slices.Sorted(maps.Keys(cur.ByCode)) {
		if c == "OK" {
			continue
		}
		if n := cur.ByCode[c] - prev.ByCode[c]; n > 0 {
			codes = append(codes, fmt.Sprintf("%s %d", c, n))
		}
	}
	if len(codes) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(codes, ", "))
	}
	if skipped := cur.Skipped - prev.Skipped; skipped > 0 {
		fmt.Fprintf(&b, " skipped %d", skipped)
	}
	var versions []string
	for _, v := range slices.Sorted(maps.Keys(cur.ByReview)) {
		versions = append(versions, fmt.Sprintf("%s %d", v, cur.ByReview[v]-prev.ByReview[v]))
	}
	if len(versions) > 0 {
		fmt.Fprintf(&b, " | reviews %s", strings.Join(versions, " "))
	}
	fmt.Fprintf(&b, " | faults: %s", faults)
	return b.String()
}
