package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	rungroup "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"sigs.k8s.io/yaml"

	"github.com/meshlens/meshlens/alerting"
	"github.com/meshlens/meshlens/audit"
	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/collector"
	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/controlplane/registry"
	"github.com/meshlens/meshlens/controlplane/xds"
	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/istiometrics"
	"github.com/meshlens/meshlens/listeners"
	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/query"
	"github.com/meshlens/meshlens/rollout"
	"github.com/meshlens/meshlens/store"
	"github.com/meshlens/meshlens/ui"
	"github.com/meshlens/meshlens/views"
)

// serveConfig is everything `meshlens serve` can be told, by flag or by the
// YAML file given with --config, whose keys are the flag names (flags win).
type serveConfig struct {
	ClickHouse     string
	ClickHouseWait time.Duration
	HTTP           string
	DataDir        string
	LogLevel       string
	XDS            string
	ConfigDir      string
	Tokens         string
	Prometheus     string
	Kubeconfig     string
	DomainSuffix   string
	// GatewayCredentialDir holds Gateway servers' credentialName files.
	GatewayCredentialDir string
	// TrafficProvider is where rollouts that name none write their routes.
	TrafficProvider string
	Collector       collector.Config
	IstioMetrics    istiometrics.Config
	// Replicas is how this replica finds the others and who acts.
	Replicas replicaConfig
	// ClickHouseCluster names the ClickHouse cluster (a remote_servers
	// entry) the schema lives on; empty for one server.
	ClickHouseCluster string
	// ProxyReceivers are meshlens' receivers as Envoy proxies reach them.
	ProxyReceivers proxyReceivers
	// OIDC accepts an SSO issuer's JWTs beside the tokens file.
	OIDC auth.OIDCConfig
}

func defaultServeConfig() serveConfig {
	return serveConfig{
		ClickHouse:      store.DefaultDSN,
		ClickHouseWait:  10 * time.Second,
		HTTP:            "127.0.0.1:8080",
		DataDir:         ".run/data",
		LogLevel:        "info",
		XDS:             "127.0.0.1:15010",
		DomainSuffix:    config.DefaultDomainSuffix,
		TrafficProvider: rollout.ProviderMeshlens,
		Collector:       collector.DefaultConfig(),
		IstioMetrics:    istiometrics.DefaultConfig(),
		Replicas:        defaultReplicaConfig(),
		OIDC:            auth.DefaultOIDCConfig(),
	}
}

func (c *serveConfig) registerFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.ClickHouse, "clickhouse", c.ClickHouse, "ClickHouse DSN, clickhouse://host:port/database")
	fs.StringVar(&c.ClickHouseCluster, "clickhouse-cluster", c.ClickHouseCluster,
		"ClickHouse cluster name: schema ON CLUSTER in Replicated tables, reads and writes through Distributed tables; empty: one server")
	fs.DurationVar(&c.ClickHouseWait, "clickhouse-wait", c.ClickHouseWait, "how long to wait for ClickHouse at start before starting without it (ingest queues on disk)")
	fs.StringVar(&c.HTTP, "http", c.HTTP, "listen address of the HTTP API, UI, /healthz, /readyz and /metrics")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the ingest queue, accepted config and tokens")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.XDS, "xds", c.XDS, "listen address of the xDS (ADS) server")
	fs.StringVar(&c.ConfigDir, "config-dir", c.ConfigDir, "directory of Istio YAML to apply and watch (GitOps); empty disables")
	fs.StringVar(&c.Tokens, "tokens", c.Tokens, "file of API tokens, lines `TOKEN ROLES` (viewer, operator, operator:NAMESPACE (comma-separated, several), admin); default: DATA_DIR/operator.token is created")
	fs.StringVar(&c.OIDC.Issuer, "oidc-issuer", c.OIDC.Issuer, "also accept JWTs of this OpenID Connect issuer (its URL, the tokens' iss) as bearer tokens; keys from its discovery document's JWKS")
	fs.StringVar(&c.OIDC.Audience, "oidc-audience", c.OIDC.Audience, "the audience (aud) OIDC tokens for meshlens carry, often the client ID; required with --oidc-issuer")
	fs.StringVar(&c.OIDC.RoleClaim, "oidc-role-claim", c.OIDC.RoleClaim, "the OIDC token claim holding the caller's roles (as in --tokens), a string or list; a dotted path reaches into objects")
	fs.StringVar(&c.OIDC.RolePrefix, "oidc-role-prefix", c.OIDC.RolePrefix, "only values of the role claim starting with this count, the prefix removed (e.g. meshlens: with a groups claim)")
	fs.DurationVar(&c.OIDC.KeysMaxAge, "oidc-keys-max-age", c.OIDC.KeysMaxAge, "the OIDC issuer's keys are fetched again after this long (an unknown key id fetches them at once)")
	fs.StringVar(&c.Prometheus, "prometheus", c.Prometheus, "URL of a Prometheus with Istio standard metrics, a graph source (?source=prometheus)")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig,
		`kubeconfig of the cluster to read (Services, EndpointSlices, Pods, Istio's and meshlens' custom resources); default: the in-cluster config inside a pod, else $KUBECONFIG, else none; "none" turns Kubernetes off`)
	fs.StringVar(&c.DomainSuffix, "domain-suffix", c.DomainSuffix, "the cluster's DNS domain: short hosts are NAME.NAMESPACE.svc.DOMAIN")
	fs.StringVar(&c.GatewayCredentialDir, "gateway-credential-dir", c.GatewayCredentialDir,
		"directory, on the gateway proxies, of Gateway servers' credentialName certificates: DIR/NAME/tls.crt, tls.key, ca.crt; default "+xds.DefaultGatewayCredentialDir)
	fs.StringVar(&c.TrafficProvider, "traffic-provider", c.TrafficProvider,
		`where rollouts that name no spec.trafficProvider write their routes: "meshlens" (meshlens' own config and xDS server), "istio" (VirtualServices in the Kubernetes API, for istiod) or "gatewayAPI" (HTTPRoute backendRefs weights); the last two need --kubeconfig`)
	c.registerLimitFlags(fs)
	fs.StringVar(&c.Collector.OTLPGRPC, "otlp-grpc", c.Collector.OTLPGRPC, "OTLP/gRPC listen address (empty disables)")
	fs.StringVar(&c.Collector.OTLPHTTP, "otlp-http", c.Collector.OTLPHTTP, "OTLP/HTTP listen address (empty disables)")
	fs.StringVar(&c.Collector.ALS, "als", c.Collector.ALS, "Envoy gRPC access log service listen address (empty disables)")
	fs.Int64Var(&c.Collector.QueueMaxBytes, "queue-max-bytes", c.Collector.QueueMaxBytes, "bound of the on-disk ingest queue; when full, receivers push back")
	fs.DurationVar(&c.Collector.PairWait, "pair-wait", c.Collector.PairWait, "how long a client or server span waits for its other half")
	fs.StringVar(&c.Collector.InboundAccessLogs, "inbound-access-logs", c.Collector.InboundAccessLogs,
		`inbound access-log entries that count as requests: "outside-mesh" (callers without a proxy of their own) or "all" (proxyless callers of sidecar services)`)
	fs.IntVar(&c.Collector.MemoryLimitMiB, "memory-limit-mib", c.Collector.MemoryLimitMiB, "collector memory limiter hard limit")
	fs.Int64Var(&c.Collector.DeadLetterMaxBytes, "dead-letter-max-bytes", c.Collector.DeadLetterMaxBytes,
		"bound of DATA_DIR/dead-letter.jsonl, where rows ClickHouse refuses are set aside; past it they are dropped and counted")
	fs.IntVar(&c.IstioMetrics.MaxSeries, "istio-metrics-max-series", c.IstioMetrics.MaxSeries,
		"most series of each of Istio's standard metrics on /metrics/istio (records beyond are dropped and counted); 0 turns them off")
	fs.DurationVar(&c.IstioMetrics.Expiry, "istio-metrics-expiry", c.IstioMetrics.Expiry, "series of /metrics/istio without a record for this long are removed")
	fs.StringVar(&c.IstioMetrics.Cluster, "istio-metrics-cluster", c.IstioMetrics.Cluster, "source_cluster and destination_cluster of known peers on /metrics/istio (Istio's CLUSTER_ID)")
	c.Replicas.registerFlags(fs)
	c.ProxyReceivers.registerFlags(fs)
}

// loadServeConfig applies --config (if any) over the defaults, then the flags
// over it. The file's keys are the flag names and its values are parsed by
// the flags themselves, so the two can never disagree.
func loadServeConfig(args []string, stderr io.Writer) (serveConfig, error) {
	cfg := defaultServeConfig()
	var path string
	pre := flag.NewFlagSet("serve", flag.ContinueOnError)
	pre.SetOutput(io.Discard)
	pre.StringVar(&path, "config", "", "")
	cfg.registerFlags(pre)
	_ = pre.Parse(args) // real errors are reported by the second parse

	cfg = defaultServeConfig()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&path, "config", path, "YAML file with the same settings as the flags, by flag name (flags win)")
	cfg.registerFlags(fs)
	if path != "" {
		if err := applyConfigFile(fs, path); err != nil {
			return cfg, err
		}
	}
	if err := fs.Parse(args); err != nil {
		return cfg, errUsage
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if _, _, err := net.SplitHostPort(cfg.HTTP); err != nil {
		return cfg, fmt.Errorf("--http %q: want host:port", cfg.HTTP)
	}
	if _, _, err := net.SplitHostPort(cfg.XDS); err != nil {
		return cfg, fmt.Errorf("--xds %q: want host:port", cfg.XDS)
	}
	if !slices.Contains(rollout.Providers, cfg.TrafficProvider) {
		return cfg, fmt.Errorf("--traffic-provider %q: want one of %s", cfg.TrafficProvider, strings.Join(rollout.Providers, ", "))
	}
	cfg.IstioMetrics.DomainSuffix = cfg.DomainSuffix
	if err := cfg.IstioMetrics.Validate(); err != nil {
		return cfg, err
	}
	if err := cfg.Replicas.validate(cfg.HTTP, cfg.Collector.TLS); err != nil {
		return cfg, err
	}
	if err := cfg.ProxyReceivers.resolve(cfg.Collector.ALS, cfg.Collector.OTLPGRPC, cfg.Replicas.Advertise); err != nil {
		return cfg, err
	}
	return cfg, cfg.Collector.Validate()
}

// applyConfigFile sets every flag the YAML file names.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	var settings map[string]any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&settings); err != nil {
		return fmt.Errorf("--config %s: want a mapping of setting: value: %w", path, err)
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "config" || fs.Lookup(k) == nil {
			return fmt.Errorf("--config %s: unknown setting %q (settings are the flags of `meshlens serve -h`)", path, k)
		}
		v := settings[k]
		if v == nil {
			v = ""
		}
		if err := fs.Set(k, fmt.Sprint(v)); err != nil {
			return fmt.Errorf("--config %s: %s: %w", path, k, err)
		}
	}
	return nil
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// runServe is the wiring diagram of meshlens: every component is built from
// the config, then all run together in one group and stop together.
func runServe(ctx context.Context, args []string, _, stderr io.Writer) error {
	cfg, err := loadServeConfig(args, stderr)
	if err != nil {
		return err
	}
	logger, err := newLogger(stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	lm, err := listeners.NewMetrics(reg)
	if err != nil {
		return err
	}

	st, err := openStore(ctx, cfg.ClickHouse, cfg.ClickHouseCluster, cfg.ClickHouseWait, logger)
	if err != nil {
		return err
	}
	defer st.Close()

	live, err := graph.New(graph.Config{}, logger, reg)
	if err != nil {
		return err
	}
	cluster, err := newCluster(cfg.Kubeconfig, cfg.DomainSuffix, logger, reg)
	if err != nil {
		return err
	}
	// With Kubernetes, a Pod's IP in the telemetry names its workload,
	// service and version where the telemetry does not.
	var peers mesh.PeerResolver
	if cluster != nil {
		peers = cluster.registry
	}
	// Istio's standard metrics of the same records, for Kiali, Istio's
	// dashboards and alerts, on /metrics/istio.
	sinks := []mesh.RecordSink{live}
	var istio *istiometrics.Exporter
	if cfg.IstioMetrics.Enabled() {
		if istio, err = istiometrics.New(cfg.IstioMetrics, reg); err != nil {
			return err
		}
		sinks = append(sinks, istio)
	}
	col, err := collector.New(cfg.Collector, cfg.DataDir, st, sinks, peers, reg, logger, lm)
	if err != nil {
		return err
	}
	var prom *query.Prometheus
	if cfg.Prometheus != "" {
		if prom, err = query.NewPrometheus(cfg.Prometheus, nil); err != nil {
			return fmt.Errorf("--prometheus: %w", err)
		}
	}

	kinds, err := configKinds(config.IstioOptions{KnownHost: cluster.knownHost, DomainSuffix: cfg.DomainSuffix})
	if err != nil {
		return err
	}
	cfgStore, err := config.Open(cfg.DataDir, kinds, logger, reg)
	if err != nil {
		return err
	}
	// Every accepted change, from any source, goes to the audit trail.
	auditLog, err := audit.New(st, logger, reg)
	if err != nil {
		return err
	}
	cfgStore.SetAuditor(auditLog.ConfigChange)
	xdsOpts := xds.DefaultOptions()
	xdsOpts.DomainSuffix = cfg.DomainSuffix
	xdsOpts.GatewayCredentialDir = cfg.GatewayCredentialDir
	xdsOpts.TelemetryALSAddress, xdsOpts.TelemetryOTLPAddress = cfg.ProxyReceivers.ALS, cfg.ProxyReceivers.OTLP
	cfg.ProxyReceivers.warnUnset(logger, cfg.Collector.ALS, cfg.Collector.OTLPGRPC)
	xdsServer, err := xds.NewServer(ctx, logger, reg, xdsOpts)
	if err != nil {
		return err
	}
	// Accepted config is durable before it is published; every published
	// snapshot becomes one xDS push.
	unsubscribe := cfgStore.Subscribe(func(snap *config.Snapshot) {
		if err := xdsServer.Update(snap); err != nil {
			logger.Warn("xds push: some nodes keep their previous config", "version", snap.Version, "err", err)
		}
	})
	defer unsubscribe()
	if cluster != nil {
		// Every registry snapshot (a Pod turning ready, a Service scaled) is
		// one push too.
		defer cluster.registry.Subscribe(func(sn *registry.Snapshot) {
			if err := xdsServer.UpdateServices(sn); err != nil {
				logger.Warn("xds push: some nodes keep their previous endpoints", "registry", sn.Version, "err", err)
			}
		})()
	}

	if cluster == nil && cfg.TrafficProvider != rollout.ProviderMeshlens {
		return fmt.Errorf("--traffic-provider %s writes routes to the Kubernetes API: it needs the cluster (--kubeconfig, or meshlens running in a pod)", cfg.TrafficProvider)
	}
	authz, err := auth.Load(auth.Config{Tokens: cfg.Tokens, DataDir: cfg.DataDir, OIDC: cfg.OIDC, RootNamespace: xdsOpts.RootNamespace}, logger)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	// The live graphs of every replica, added up: what the API, the rollout
	// judge and alert rules read (this replica's alone without --peers).
	// The listeners' TLS, which replicas also read each other with.
	tlsSrc, err := listenerTLS(cfg.Collector, logger)
	if err != nil {
		return err
	}
	reps, err := newReplicas(cfg.Replicas, live, cluster, authz, cfg.Collector.TLS, tlsSrc, cfg.Collector.TLSReload, logger, reg)
	if err != nil {
		return err
	}
	// Rollouts write their routes to meshlens' own config store, or through
	// the Kubernetes API for istiod or a Gateway API implementation.
	rollouts, err := rollout.New(cfgStore, reps, rollout.Options{DataDir: cfg.DataDir, DomainSuffix: cfg.DomainSuffix,
		TrafficProvider: cfg.TrafficProvider, Traffic: cluster.trafficProviders(cfg.DomainSuffix, logger),
		Audit: auditLog.RolloutTransition}, logger, reg)
	if err != nil {
		return err
	}
	alerts, err := alerting.New(cfgStore, reps, rollouts, alerting.Options{ExternalURL: httpScheme(cfg.Collector.TLS) + "://" + cfg.HTTP,
		Peers: alertPeers(cfg.Replicas, reps)}, logger, reg)
	if err != nil {
		return err
	}

	// Ready means telemetry and proxies are served. ClickHouse being down
	// does not make meshlens unready: ingest queues on disk; /readyz says so.
	e := newHTTP(reg, readiness{col: col, st: st, xds: xdsServer, cluster: cluster}.check)
	api := e.Group("/api/v1", authz.Viewer(auth.RequireForReads(cfg.HTTP)))
	query.RegisterRoutes(api, query.Deps{Live: live, Store: st, Prometheus: prom, Logger: logger, Replicas: mergedReads(cfg.Replicas, reps), Registry: cluster.registrySnapshot})
	reps.RegisterRoutes(api)
	config.RegisterRoutes(api, cfgStore, authz.Operator())
	xdsServer.RegisterRoutes(api)
	rollouts.RegisterRoutes(api, authz.Operator())
	auditLog.RegisterRoutes(api)
	views.New(st, logger).RegisterRoutes(api, authz.Operator())
	// An alert may name any namespace's rollout.
	alerts.RegisterRoutes(api, authz.ClusterOperator())
	istiometrics.RegisterRoutes(e, istio, authz.Viewer(auth.RequireForReads(cfg.HTTP)))
	e.GET("/*", echo.WrapHandler(ui.Handler()))

	var g rungroup.Group
	{
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { <-ctx.Done(); return nil }, func(error) { cancel() })
	}
	// component adds something that runs until its context is cancelled.
	component := func(run func(context.Context) error) {
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return run(ctx) }, func(error) { cancel() })
	}
	component(col.Run)
	component(auditLog.Run)
	watchTLS(component, tlsSrc, cfg.Collector)
	component(func(ctx context.Context) error { return store.DefaultRetention().Run(ctx, st) })
	component(func(ctx context.Context) error {
		return xdsServer.Serve(ctx, cfg.XDS, xdsServerOptions(xdsServer, lm, cfg.Collector.Limits, tlsSrc)...)
	})
	if cfg.ConfigDir != "" {
		component(config.NewDirSource(cfg.ConfigDir, cfgStore, logger).Run)
	}
	if cluster != nil {
		if err := cluster.start(component, cfgStore, rollouts, alerts, logger, reg); err != nil {
			return err
		}
	}
	// Exactly one replica runs rollouts and alert rules.
	if err := acting(component, cfg.Replicas, cluster, reps, rollouts, alerts, logger, reg); err != nil {
		return err
	}
	{
		ln, err := net.Listen("tcp", cfg.HTTP)
		if err != nil {
			return fmt.Errorf("--http %s: %w", cfg.HTTP, err)
		}
		srv := httpServer(lm, cfg.Collector.Limits, e, tlsSrc, logger)
		g.Add(func() error {
			logger.Info("meshlens serving", "http", httpScheme(cfg.Collector.TLS)+"://"+ln.Addr().String(), "otlp-grpc", cfg.Collector.OTLPGRPC,
				"otlp-http", cfg.Collector.OTLPHTTP, "als", cfg.Collector.ALS, "xds", cfg.XDS)
			if err := srv.Serve(httpListener(lm, ln, tlsSrc)); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		}, func(error) {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		})
	}
	err = g.Run()
	logger.Info("meshlens stopped")
	return err
}

// openStore prepares the ClickHouse store and waits up to wait for it to
// answer. If it does not, meshlens starts anyway: the collector queues on disk
// and the writer creates the schema once ClickHouse is up.
func openStore(ctx context.Context, dsn, cluster string, wait time.Duration, logger *slog.Logger) (*store.Store, error) {
	st, err := store.New(dsn, logger, store.OnCluster(cluster))
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for attempt := 0; ; attempt++ {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := st.EnsureSchema(octx)
		cancel()
		switch {
		case err == nil:
			return st, nil
		case !store.IsUnavailable(err):
			st.Close()
			return nil, err
		case ctx.Err() != nil:
			st.Close()
			return nil, ctx.Err()
		case time.Now().After(deadline):
			logger.Warn("ClickHouse is not reachable; starting anyway: telemetry is queued on disk until it is", "dsn", dsn, "err", err)
			return st, nil
		}
		if attempt == 0 {
			logger.Warn("waiting for ClickHouse", "dsn", dsn, "for", wait, "err", err)
		}
		select {
		case <-ctx.Done():
			st.Close()
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// newHTTP builds the HTTP server: health, readiness and metrics here; the API
// and the UI are added by their owners.
func newHTTP(reg *prometheus.Registry, ready func(context.Context) (warning string, err error)) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", func(c echo.Context) error {
		warning, err := ready(c.Request().Context())
		if err != nil {
			return c.String(http.StatusServiceUnavailable, "not ready: "+err.Error()+"\n")
		}
		if warning != "" {
			return c.String(http.StatusOK, "ready; "+warning+"\n")
		}
		return c.String(http.StatusOK, "ready\n")
	})
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})))
	return e
}
