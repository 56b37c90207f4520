package listeners

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"
)

// TLSFiles are a listener's certificate files: its certificate chain and
// key, and optionally the CA bundle client certificates must chain to
// (mutual TLS: a client without such a certificate is refused).
type TLSFiles struct {
	Cert     string `json:"tls-cert"`
	Key      string `json:"tls-key"`
	ClientCA string `json:"tls-client-ca"`
}

// Enabled says whether the files turn TLS on.
func (f TLSFiles) Enabled() bool { return f.Cert != "" }

// Validate checks the flags go together.
func (f TLSFiles) Validate() error {
	switch {
	case (f.Cert == "") != (f.Key == ""):
		return errors.New("--tls-cert and --tls-key go together")
	case f.ClientCA != "" && f.Cert == "":
		return errors.New("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)")
	}
	return nil
}

// TLS serves the current certificate and client CA of TLSFiles, read again
// whenever the files change (cert-manager and Kubernetes rotate them in
// place): new connections get the new ones, open connections keep theirs.
type TLS struct {
	files  TLSFiles
	logger *slog.Logger

	mu   sync.RWMutex
	cert *tls.Certificate
	cas  *x509.CertPool
	sum  [32]byte // of the files' contents, to see a change
}

// NewTLS loads the files; an error names the file at fault.
func NewTLS(files TLSFiles, logger *slog.Logger) (*TLS, error) {
	if err := files.Validate(); err != nil {
		return nil, err
	}
	t := &TLS{files: files, logger: logger}
	if _, err := t.reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// MutualTLS says whether clients must present a certificate.
func (t *TLS) MutualTLS() bool { return t.files.ClientCA != "" }

// reload reads the files and takes them if they changed and are valid.
func (t *TLS) reload() (changed bool, err error) {
	var all []byte
	read := func(flag, path string) ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		all = append(append(all, b...), 0)
		return b, nil
	}
	certPEM, err := read("--tls-cert", t.files.Cert)
	if err != nil {
		return false, err
	}
	keyPEM, err := read("--tls-key", t.files.Key)
	if err != nil {
		return false, err
	}
	var caPEM []byte
	if t.files.ClientCA != "" {
		if caPEM, err = read("--tls-client-ca", t.files.ClientCA); err != nil {
			return false, err
		}
	}
	sum := sha256.Sum256(all)
	t.mu.RLock()
	same := bytes.Equal(sum[:], t.sum[:])
	t.mu.RUnlock()
	if same {
		return false, nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("--tls-cert %s and --tls-key %s: %w", t.files.Cert, t.files.Key, err)
	}
	var cas *x509.CertPool
	if caPEM != nil {
		cas = x509.NewCertPool()
		if !cas.AppendCertsFromPEM(caPEM) {
			return false, fmt.Errorf("--tls-client-ca %s: no PEM certificate in it", t.files.ClientCA)
		}
	}
	t.mu.Lock()
	t.cert, t.cas, t.sum = &cert, cas, sum
	t.mu.Unlock()
	return true, nil
}

// Watch reads the files every interval until ctx ends and takes changes. A
// change that does not load (a key written before its certificate) is
// logged and the previous certificate stays until the files are whole.
func (t *TLS) Watch(ctx context.Context, interval time.Duration) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		changed, err := t.reload()
		switch {
		case err != nil && err.Error() != lastErr:
			t.logger.Error("TLS files changed but do not load; serving the previous certificate", "err", err)
		case changed:
			t.logger.Info("TLS certificate reloaded", "cert", t.files.Cert, "client_ca", t.files.ClientCA)
		}
		lastErr = ""
		if err != nil {
			lastErr = err.Error()
		}
	}
}

// ServerConfig is a tls.Config that hands out the current certificate and
// client CAs to every new connection; with a client CA, a client without a
// certificate it signed is refused in the handshake.
func (t *TLS) ServerConfig() *tls.Config { return t.serverConfig(tls.RequireAndVerifyClientCert) }

// HTTPServerConfig is ServerConfig for an HTTP server that lets clients
// without a certificate finish the handshake (verified if they show one),
// so that RequireClientCert can answer them in HTTP, and leave the probes
// of Kubernetes, which have none, their /healthz and /readyz.
func (t *TLS) HTTPServerConfig() *tls.Config { return t.serverConfig(tls.VerifyClientCertIfGiven) }

// RequireClientCert refuses with 401 a request without a verified client
// certificate, except on the open paths, when the TLS has a client CA.
func (t *TLS) RequireClientCert(h http.Handler, open ...string) http.Handler {
	if !t.MutualTLS() {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 || slices.Contains(open, r.URL.Path) {
			h.ServeHTTP(w, r)
			return
		}
		http.Error(w, "a client certificate signed by --tls-client-ca is required (mutual TLS)", http.StatusUnauthorized)
	})
}

// ClientCertificate hands the current certificate to a TLS client's
// handshake (tls.Config.GetClientCertificate): a replica shows it to the
// replicas it reads, which ask for it under mutual TLS.
func (t *TLS) ClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.cert, nil
}

func (t *TLS) serverConfig(auth tls.ClientAuthType) *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		t.mu.RLock()
		defer t.mu.RUnlock()
		c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*t.cert},
			NextProtos: []string{"h2", "http/1.1"}}
		if t.cas != nil {
			c.ClientCAs, c.ClientAuth = t.cas, auth
		}
		return c, nil
	}
	return base
}
