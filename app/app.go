// Package app builds meshlens from its configuration: every component (the
// collector, the live graph, the config store, the xDS server, rollouts,
// alerting, replicas, Kubernetes) and the HTTP router that serves them.
// `meshlens serve` is LoadConfig, New and Run; every test that needs a
// whole meshlens builds it the same way (package apptest), so the wiring
// exists once.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/labstack/echo/v4"
	rungroup "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshlens/meshlens/alerting"
	"github.com/meshlens/meshlens/audit"
	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/collector"
	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/controlplane/credentials"
	"github.com/meshlens/meshlens/controlplane/jwks"
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

// App is one meshlens replica, built and not yet running.
type App struct {
	cfg    Config
	logger *slog.Logger
	lm     *listeners.Metrics
	tls    *listeners.TLS
	router *echo.Echo
	config *config.Store
	// components run until their context is cancelled (Run).
	components []func(context.Context) error
	// closers release what New opened, last first (Close).
	closers []func()
}

// New builds every component of meshlens from cfg and the HTTP router
// that serves them. It opens the store (waiting up to --clickhouse-wait
// for ClickHouse) and the data dir; nothing listens until Run. Close
// releases what New opened.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (_ *App, err error) {
	a := &App{cfg: cfg, logger: logger}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if a.lm, err = listeners.NewMetrics(reg); err != nil {
		return nil, err
	}

	st, err := openStore(ctx, cfg.ClickHouse, cfg.ClickHouseCluster, cfg.ClickHouseWait, logger)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func() { _ = st.Close() })

	live, err := graph.New(graph.Config{}, logger, reg)
	if err != nil {
		return nil, err
	}
	cluster, err := newCluster(cfg.Kubeconfig, cfg.DomainSuffix, cfg.GatewayCredentials == GatewayCredentialsAuto, logger, reg)
	if err != nil {
		return nil, err
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
		cfg.IstioMetrics.RootNamespace = xds.DefaultOptions().RootNamespace
		if istio, err = istiometrics.New(cfg.IstioMetrics, reg); err != nil {
			return nil, err
		}
		sinks = append(sinks, istio)
	}
	col, err := collector.New(cfg.Collector, cfg.DataDir, st, sinks, peers, reg, logger, a.lm)
	if err != nil {
		return nil, err
	}
	var prom *query.Prometheus
	if cfg.Prometheus != "" {
		if prom, err = query.NewPrometheus(cfg.Prometheus, nil); err != nil {
			return nil, fmt.Errorf("--prometheus: %w", err)
		}
	}

	// Istio's MeshConfig: the ext_authz providers CUSTOM policies name.
	providers, ignored, err := cfg.MeshConfig.Load()
	if err != nil {
		return nil, err
	}
	if len(ignored) > 0 {
		logger.Info("--mesh-config: meshlens uses only extensionProviders; these fields are ignored", "fields", ignored)
	}
	// Analysis names the RequestAuthentication issuers whose keys the
	// resolver (below) cannot fetch, for as long as it cannot.
	var keys *jwks.Resolver
	jwksUnavailable := func(issuer, uri string) (string, string, bool) {
		if keys == nil {
			return "", "", false
		}
		return keys.Keys().Unavailable(issuer, uri)
	}
	kinds, err := Kinds(config.IstioOptions{KnownHost: cluster.knownHost, DomainSuffix: cfg.DomainSuffix, ExtAuthzProvider: providers.CheckExtAuthz, JWKSUnavailable: jwksUnavailable,
		GatewayCredential: cluster.gatewayCredential})
	if err != nil {
		return nil, err
	}
	cfgStore, err := config.Open(cfg.DataDir, kinds, logger, reg)
	if err != nil {
		return nil, err
	}
	// Every accepted change, from any source, goes to the audit trail.
	auditLog, err := audit.New(st, logger, reg)
	if err != nil {
		return nil, err
	}
	cfgStore.SetAuditor(auditLog.ConfigChange)
	// Outside Kubernetes (whose CRDs every replica reads), replicas share
	// the config applied through the API through ClickHouse.
	var sharing *config.Sharing
	if cluster == nil && cfg.Replicas.Peers != "" {
		if sharing, err = config.NewSharing(cfgStore, st, config.SharingOptions{DataDir: cfg.DataDir, Replica: cfg.Replicas.Advertise}, logger, reg); err != nil {
			return nil, err
		}
		a.add(sharing.Run)
	}
	xdsOpts := xds.DefaultOptions()
	xdsOpts.DomainSuffix = cfg.DomainSuffix
	xdsOpts.GatewayCredentialDir = cfg.GatewayCredentialDir
	xdsOpts.TelemetryALSAddress, xdsOpts.TelemetryOTLPAddress = cfg.ProxyReceivers.ALS, cfg.ProxyReceivers.OTLP
	cfg.ProxyReceivers.warnUnset(logger, cfg.Collector.ALS, cfg.Collector.OTLPGRPC)
	xdsOpts.ExtensionProviders = providers
	if xdsOpts.TelemetryTLS, err = cfg.ReceiverTLS.Resolve(cfg.Collector.TLS.Cert != "", cfg.Collector.TLS.ClientCA != ""); err != nil {
		return nil, err
	}
	xdsServer, err := xds.NewServer(ctx, logger, reg, xdsOpts)
	if err != nil {
		return nil, err
	}
	// RequestAuthentications' key sets, fetched as istiod does and sent to
	// proxies inline; a set never fetched fails closed.
	keys, err = jwks.New(jwks.Config{Logger: logger, Registerer: reg, OnChange: func(k *jwks.Keys) {
		if err := xdsServer.UpdateJWKS(k); err != nil {
			logger.Warn("xds push of fetched JWT keys: some nodes keep their previous config", "err", err)
		}
		// The analysis changed: the RequestAuthentications' status too.
		cluster.resyncStatus()
	}})
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, cfgStore.Subscribe(keys.Update))
	if istio != nil {
		// Telemetries' metrics settings (disabled metrics, tag overrides)
		// apply to /metrics/istio.
		a.closers = append(a.closers, cfgStore.Subscribe(istio.UpdateConfig))
	}
	a.add(keys.Run)
	// Accepted config is durable before it is published; every published
	// snapshot becomes one xDS push.
	a.closers = append(a.closers, cfgStore.Subscribe(func(snap *config.Snapshot) {
		if err := xdsServer.Update(snap); err != nil {
			logger.Warn("xds push: some nodes keep their previous config", "version", snap.Version, "err", err)
		}
	}))
	if cluster != nil && cluster.credentials != nil {
		// Gateway servers' certificates: the cluster's Secrets, over SDS;
		// a rotated Secret is one push. Until they have listed, no
		// credentialName is served (rather than as files).
		if err := xdsServer.UpdateCredentials(cluster.credentials.Snapshot()); err != nil {
			return nil, err
		}
		cluster.credentials.Subscribe(func(c *credentials.Snapshot) {
			if err := xdsServer.UpdateCredentials(c); err != nil {
				logger.Warn("xds push of gateway credentials: some nodes keep their previous config", "credentials", c.Version(), "err", err)
			}
			// Gateways' analysis names missing and invalid Secrets.
			cluster.resyncStatus()
		})
	}
	if cluster != nil {
		// Every registry snapshot (a Pod turning ready, a Service scaled) is
		// one push too.
		a.closers = append(a.closers, cluster.registry.Subscribe(func(sn *registry.Snapshot) {
			if err := xdsServer.UpdateServices(sn); err != nil {
				logger.Warn("xds push: some nodes keep their previous endpoints", "registry", sn.Version, "err", err)
			}
		}))
	}

	if cluster == nil && cfg.TrafficProvider != rollout.ProviderMeshlens {
		return nil, fmt.Errorf("--traffic-provider %s writes routes to the Kubernetes API: it needs the cluster (--kubeconfig, or meshlens running in a pod)", cfg.TrafficProvider)
	}
	authz, err := auth.Load(auth.Config{Tokens: cfg.Tokens, DataDir: cfg.DataDir, OIDC: cfg.OIDC, RootNamespace: xdsOpts.RootNamespace}, logger)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	// The listeners' TLS, which replicas also read each other with.
	if a.tls, err = listenerTLS(cfg.Collector, logger); err != nil {
		return nil, err
	}
	// The live graphs of every replica, added up: what the API, the rollout
	// judge and alert rules read (this replica's alone without --peers).
	reps, err := newReplicas(cfg.Replicas, live, cluster, authz, cfg.Collector.TLS, a.tls, cfg.Collector.TLSReload, logger, reg)
	if err != nil {
		return nil, err
	}
	// Rollouts write their routes to meshlens' own config store, or through
	// the Kubernetes API for istiod or a Gateway API implementation.
	rollouts, err := rollout.New(cfgStore, reps, rollout.Options{DataDir: cfg.DataDir, DomainSuffix: cfg.DomainSuffix,
		TrafficProvider: cfg.TrafficProvider, Traffic: cluster.trafficProviders(cfg.DomainSuffix, logger),
		Audit: auditLog.RolloutTransition}, logger, reg)
	if err != nil {
		return nil, err
	}
	alerts, err := alerting.New(cfgStore, reps, rollouts, alerting.Options{ExternalURL: httpScheme(cfg.Collector.TLS) + "://" + cfg.HTTP,
		Peers: alertPeers(cfg.Replicas, reps)}, logger, reg)
	if err != nil {
		return nil, err
	}

	// Ready means telemetry and proxies are served. ClickHouse being down
	// does not make meshlens unready: ingest queues on disk; /readyz says so.
	e := newRouter(reg, readiness{col: col, st: st, xds: xdsServer, cluster: cluster, sharing: sharing}.check)
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
	a.router, a.config = e, cfgStore

	a.add(col.Run)
	a.add(auditLog.Run)
	watchTLS(a.add, a.tls, cfg.Collector)
	a.add(func(ctx context.Context) error { return store.DefaultRetention().Run(ctx, st) })
	a.add(func(ctx context.Context) error {
		return xdsServer.Serve(ctx, cfg.XDS, xdsServerOptions(xdsServer, a.lm, cfg.Collector.Limits, a.tls)...)
	})
	if cfg.ConfigDir != "" {
		a.add(config.NewDirSource(cfg.ConfigDir, cfgStore, logger).Run)
	}
	if cluster != nil {
		if err := cluster.start(a.add, cfgStore, rollouts, alerts, logger, reg); err != nil {
			return nil, err
		}
	}
	// Exactly one replica runs rollouts and alert rules.
	// Outside Kubernetes the followers show the acting replica's rollouts.
	restoreRollouts := shareRollouts(a.add, cfg.Replicas, cluster, st, cfgStore, sharing, rollouts, logger)
	if err := acting(a.add, cfg.Replicas, cluster, reps, rollouts, alerts, restoreRollouts, logger, reg); err != nil {
		return nil, err
	}
	return a, nil
}

// add adds a component that runs until its context is cancelled.
func (a *App) add(run func(context.Context) error) { a.components = append(a.components, run) }

// Router is the HTTP API, the UI, /healthz, /readyz and the metrics, as
// Run serves them on --http.
func (a *App) Router() *echo.Echo { return a.router }

// ConfigStore is the accepted config (Istio objects, Rollouts,
// AlertRules) from every source, as the API and the xDS server see it.
func (a *App) ConfigStore() *config.Store { return a.config }

// Run listens on --http and runs every component until ctx is cancelled or
// one of them fails; then all stop together.
func (a *App) Run(ctx context.Context) error {
	cfg := a.cfg
	ln, err := net.Listen("tcp", cfg.HTTP)
	if err != nil {
		return fmt.Errorf("--http %s: %w", cfg.HTTP, err)
	}
	var g rungroup.Group
	{
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { <-ctx.Done(); return nil }, func(error) { cancel() })
	}
	for _, run := range a.components {
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return run(ctx) }, func(error) { cancel() })
	}
	srv := httpServer(a.lm, cfg.Collector.Limits, a.router, a.tls, a.logger)
	g.Add(func() error {
		a.logger.Info("meshlens serving", "http", httpScheme(cfg.Collector.TLS)+"://"+ln.Addr().String(), "otlp-grpc", cfg.Collector.OTLPGRPC,
			"otlp-http", cfg.Collector.OTLPHTTP, "als", cfg.Collector.ALS, "xds", cfg.XDS)
		if err := srv.Serve(httpListener(a.lm, ln, a.tls)); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}, func(error) {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	err = g.Run()
	a.logger.Info("meshlens stopped")
	return err
}

// Close releases what New opened (the store, the subscriptions), last
// first. Call it after Run returns.
func (a *App) Close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
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

// newRouter builds the HTTP server: health, readiness and metrics here; the API
// and the UI are added by their owners.
func newRouter(reg *prometheus.Registry, ready func(context.Context) (warning string, err error)) *echo.Echo {
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
