package app

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/meshlens/meshlens/collector"
	"github.com/meshlens/meshlens/controlplane/xds"
	"github.com/meshlens/meshlens/listeners"
)

// registerLimitFlags adds the flags of the listeners' limits (one set for
// every listener; see package listeners).
func (c *Config) registerLimitFlags(fs *flag.FlagSet) {
	c.registerTLSFlags(fs)
	l := &c.Collector.Limits
	fs.Int64Var(&l.MaxBodyBytes, "http-max-body-bytes", l.MaxBodyBytes, "largest HTTP API request body; larger ones get 413")
	fs.IntVar(&l.MaxHeaderBytes, "http-max-header-bytes", l.MaxHeaderBytes, "largest HTTP API request header; larger ones get 431 (OTLP/HTTP: Go's 1 MiB)")
	fs.DurationVar(&l.ReadTimeout, "http-read-timeout", l.ReadTimeout, "time to read one HTTP request, header and body (API and OTLP/HTTP): slow clients are cut")
	fs.DurationVar(&l.WriteTimeout, "http-write-timeout", l.WriteTimeout, "time to write one HTTP response (API and OTLP/HTTP)")
	fs.DurationVar(&l.IdleTimeout, "http-idle-timeout", l.IdleTimeout, "idle kept-alive HTTP connections are closed after this long")
	fs.IntVar(&c.Collector.ALSMaxEntriesPerSecond, "als-max-entries-per-second", c.Collector.ALSMaxEntriesPerSecond,
		"most access-log entries one ALS stream may send per second (burst as many); past it the stream is read more slowly (flow control holds the proxy back); 0: no bound")
	fs.IntVar(&l.MaxMessageBytes, "grpc-max-message-bytes", l.MaxMessageBytes, "largest gRPC message (OTLP, ALS, xDS) and OTLP/HTTP request body")
	fs.Func("grpc-max-concurrent-streams", "most concurrent gRPC streams and calls per connection (OTLP, ALS, xDS) (default 1000)", func(v string) error {
		var n uint32
		if _, err := fmt.Sscan(v, &n); err != nil {
			return err
		}
		l.MaxConcurrentStreams = n
		return nil
	})
}

// registerTLSFlags adds the TLS flags: one certificate for every listener.
func (c *Config) registerTLSFlags(fs *flag.FlagSet) {
	t := &c.Collector.TLS
	fs.StringVar(&t.Cert, "tls-cert", t.Cert, "PEM certificate chain: every listener (HTTP API and UI, OTLP gRPC and HTTP, ALS, xDS) serves TLS; empty: plaintext")
	fs.StringVar(&t.Key, "tls-key", t.Key, "PEM private key of --tls-cert")
	fs.StringVar(&t.ClientCA, "tls-client-ca", t.ClientCA,
		"PEM CA bundle: clients of every listener must present a certificate it signed (mutual TLS); xDS nodes must claim their certificate's SPIFFE namespace and service account")
	fs.DurationVar(&c.Collector.TLSReload, "tls-reload-interval", c.Collector.TLSReload, "how often the TLS files are read again (rotated certificates are taken without a restart)")
}

// listenerTLS loads the TLS files, if any: the listeners' certificate, and
// the one replicas show each other. watchTLS reads them again.
func listenerTLS(cfg collector.Config, logger *slog.Logger) (*listeners.TLS, error) {
	if !cfg.TLS.Enabled() {
		return nil, nil
	}
	return listeners.NewTLS(cfg.TLS, logger)
}

// watchTLS takes changes of the TLS files, as a component.
func watchTLS(component func(func(context.Context) error), t *listeners.TLS, cfg collector.Config) {
	if t != nil {
		component(func(ctx context.Context) error { return t.Watch(ctx, cfg.TLSReload) })
	}
}

// xdsServerOptions are the xDS server's limits and, with TLS, credentials;
// with mutual TLS nodes must prove their identity.
func xdsServerOptions(s *xds.Server, lm *listeners.Metrics, l listeners.Limits, t *listeners.TLS) []grpc.ServerOption {
	opts := lm.GRPCServerOptions("xds", l)
	if t != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(t.ServerConfig())))
		if t.MutualTLS() {
			s.RequireIdentity()
		}
	}
	return opts
}

// httpListener is the API's listener: timeouts counted, TLS when set.
func httpListener(lm *listeners.Metrics, ln net.Listener, t *listeners.TLS) net.Listener {
	ln = lm.Listener("http", ln)
	if t != nil {
		ln = tls.NewListener(ln, t.HTTPServerConfig())
	}
	return ln
}

func httpScheme(t listeners.TLSFiles) string {
	if t.Enabled() {
		return "https"
	}
	return "http"
}

// httpServer is the API's server: limits, and with mutual TLS a client
// certificate everywhere but on the probes' paths. Its own errors (a TLS
// handshake that failed) are logged through meshlens' logger, at debug:
// a client's mistake, not meshlens'.
func httpServer(lm *listeners.Metrics, l listeners.Limits, h http.Handler, t *listeners.TLS, logger *slog.Logger) *http.Server {
	if t != nil {
		h = t.RequireClientCert(h, "/healthz", "/readyz")
	}
	srv := lm.HTTPServer("http", l, h)
	srv.ErrorLog = slog.NewLogLogger(logger.With("server", "http").Handler(), slog.LevelDebug)
	return srv
}
