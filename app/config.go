package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/collector"
	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/controlplane/meshconfig"
	"github.com/meshlens/meshlens/controlplane/xds"
	"github.com/meshlens/meshlens/istiometrics"
	"github.com/meshlens/meshlens/rollout"
	"github.com/meshlens/meshlens/store"
)

// ErrUsage is a command-line error the flag package has already explained
// on the stderr LoadConfig was given.
var ErrUsage = errors.New("usage")

// Config is everything `meshlens serve` can be told, by flag or by the
// YAML file given with --config, whose keys are the flag names (flags win).
type Config struct {
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
	// GatewayCredentials is where credentialName is read: "auto" (the
	// cluster's Secrets over SDS with a cluster, else files) or "files".
	GatewayCredentials string
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
	// MeshConfig is Istio's MeshConfig file: the ext_authz providers of
	// AuthorizationPolicy action CUSTOM.
	MeshConfig meshconfig.Flags
	// ReceiverTLS is how proxies reach meshlens' receivers over TLS (the
	// meshlens_als and meshlens_otlp clusters) when --tls-cert is set.
	ReceiverTLS xds.ReceiverTLSFlags
}

// --gateway-credentials values.
const (
	GatewayCredentialsAuto  = "auto"
	GatewayCredentialsFiles = "files"
)

// DefaultConfig is the configuration of `meshlens serve` without flags.
func DefaultConfig() Config {
	return Config{
		ClickHouse:         store.DefaultDSN,
		ClickHouseWait:     10 * time.Second,
		HTTP:               "127.0.0.1:8080",
		DataDir:            ".run/data",
		LogLevel:           "info",
		XDS:                "127.0.0.1:15010",
		DomainSuffix:       config.DefaultDomainSuffix,
		GatewayCredentials: GatewayCredentialsAuto,
		TrafficProvider:    rollout.ProviderMeshlens,
		Collector:          collector.DefaultConfig(),
		IstioMetrics:       istiometrics.DefaultConfig(),
		Replicas:           defaultReplicaConfig(),
		OIDC:               auth.DefaultOIDCConfig(),
	}
}

// RegisterFlags adds the flags of `meshlens serve`, each defaulting to
// its field's current value, to fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
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
	fs.StringVar(&c.GatewayCredentials, "gateway-credentials", c.GatewayCredentials,
		`where Gateway servers' credentialName (and Gateway API certificateRefs) are read: "auto" is the cluster's Secrets, served to gateway proxies over SDS, when meshlens reads a cluster (it then needs get, list and watch on secrets), else files under --gateway-credential-dir; "files" is always files`)
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
	c.MeshConfig.RegisterFlags(fs)
	c.ReceiverTLS.RegisterFlags(fs)
	c.Replicas.registerFlags(fs)
	c.ProxyReceivers.registerFlags(fs)
}

// LoadConfig applies --config (if any) over the defaults, then the flags
// over it. The file's keys are the flag names and its values are parsed by
// the flags themselves, so the two can never disagree.
func LoadConfig(args []string, stderr io.Writer) (Config, error) {
	cfg := DefaultConfig()
	var path string
	pre := flag.NewFlagSet("serve", flag.ContinueOnError)
	pre.SetOutput(io.Discard)
	pre.StringVar(&path, "config", "", "")
	cfg.RegisterFlags(pre)
	_ = pre.Parse(args) // real errors are reported by the second parse

	cfg = DefaultConfig()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&path, "config", path, "YAML file with the same settings as the flags, by flag name (flags win)")
	cfg.RegisterFlags(fs)
	if path != "" {
		if err := applyConfigFile(fs, path); err != nil {
			return cfg, err
		}
	}
	if err := fs.Parse(args); err != nil {
		return cfg, ErrUsage
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
	if cfg.GatewayCredentials != GatewayCredentialsAuto && cfg.GatewayCredentials != GatewayCredentialsFiles {
		return cfg, fmt.Errorf("--gateway-credentials %q: want %s or %s", cfg.GatewayCredentials, GatewayCredentialsAuto, GatewayCredentialsFiles)
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
	if _, err := cfg.ReceiverTLS.Resolve(cfg.Collector.TLS.Cert != "", cfg.Collector.TLS.ClientCA != ""); err != nil {
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

// NewLogger is the structured logger of --log-level, writing text to w.
func NewLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
