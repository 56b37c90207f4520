package replicas

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"
)

// TLSOptions make replicas read each other over HTTPS, as they serve their
// API when meshlens runs with --tls-cert.
type TLSOptions struct {
	// CAFile is the PEM bundle peers' server certificates must chain to
	// (--peer-ca); empty: the system's roots. Read again when it changes.
	CAFile string
	// CAFlag names the setting CAFile came from, for errors.
	CAFlag string
	// ServerName, when set, is the name checked in every peer's certificate
	// instead of the address dialled: peers found through a headless
	// Service are pod IPs, their certificates name the Service.
	ServerName string
	// ClientCertificate gives this replica's current certificate to a peer
	// that asks for one (mutual TLS): listeners.TLS.ClientCertificate, so
	// a rotated certificate is shown from the next connection on.
	ClientCertificate func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	// Reload is how often CAFile is looked at again; default 10 s.
	Reload time.Duration
}

// peerClient is the HTTP client for peers. With TLS it is rebuilt when the
// CA bundle changes, so that a rotated CA is trusted without a restart and
// the standard verification (names, IP SANs, chains) stays Go's own.
type peerClient struct {
	tls *TLSOptions // nil: plain HTTP

	mu      sync.Mutex
	client  *http.Client
	sum     [32]byte
	checked time.Time
	lastErr string
}

func newPeerClient(client *http.Client, opts *TLSOptions) (*peerClient, error) {
	pc := &peerClient{tls: opts, client: client}
	if opts == nil {
		if client == nil {
			pc.client = &http.Client{Transport: newTransport(nil)}
		}
		return pc, nil
	}
	pc.client = nil // built from the options
	if opts.Reload <= 0 {
		opts.Reload = 10 * time.Second
	}
	if opts.CAFlag == "" {
		opts.CAFlag = "--peer-ca"
	}
	if _, err := pc.reload(time.Now()); err != nil {
		return nil, err
	}
	return pc, nil
}

func newTransport(cfg *tls.Config) *http.Transport {
	return &http.Transport{MaxIdleConnsPerHost: 8, IdleConnTimeout: time.Minute, DisableCompression: true,
		TLSClientConfig: cfg, ForceAttemptHTTP2: cfg != nil, TLSHandshakeTimeout: 10 * time.Second}
}

func (pc *peerClient) scheme() string {
	if pc.tls != nil {
		return "https"
	}
	return "http"
}

// get is the client to use now, the CA read again when due. A CA that
// changed but does not load is logged by the caller (through err) and the
// previous one kept.
func (pc *peerClient) get(now time.Time) (*http.Client, error) {
	if pc.tls == nil {
		return pc.client, nil
	}
	pc.mu.Lock()
	due := now.Sub(pc.checked) >= pc.tls.Reload
	pc.mu.Unlock()
	var err error
	if due {
		_, err = pc.reload(now)
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if err != nil && err.Error() == pc.lastErr {
		err = nil // said once
	} else if err != nil {
		pc.lastErr = err.Error()
	}
	return pc.client, err
}

// reload reads the CA bundle and, when it changed, builds a new client.
func (pc *peerClient) reload(now time.Time) (bool, error) {
	o := pc.tls
	pc.mu.Lock()
	pc.checked = now
	pc.mu.Unlock()
	var pem []byte
	if o.CAFile != "" {
		b, err := os.ReadFile(o.CAFile)
		if err != nil {
			return false, fmt.Errorf("%s: %w", o.CAFlag, err)
		}
		pem = b
	}
	sum := sha256.Sum256(pem)
	pc.mu.Lock()
	same := pc.client != nil && bytes.Equal(sum[:], pc.sum[:])
	pc.mu.Unlock()
	if same {
		return false, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName, GetClientCertificate: o.ClientCertificate}
	if pem != nil {
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return false, fmt.Errorf("%s %s: no PEM certificate in it", o.CAFlag, o.CAFile)
		}
	}
	client := &http.Client{Transport: newTransport(cfg)}
	pc.mu.Lock()
	old := pc.client
	pc.client, pc.sum, pc.lastErr = client, sum, ""
	pc.mu.Unlock()
	if old != nil {
		old.CloseIdleConnections()
	}
	return true, nil
}
