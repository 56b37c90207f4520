package xds

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// ReceiverTLS is how Envoy proxies speak TLS to meshlens' own receivers
// (the clusters meshlens_als and meshlens_otlp of Telemetry's providers)
// when meshlens serves TLS on them (--tls-cert). Every path is a file on
// the proxy, which Envoy reads: meshlens never reads them.
type ReceiverTLS struct {
	// CAFile is the PEM bundle the receivers' certificate chains to.
	// Empty: the proxy's mesh root (the node's TLS_ROOT_CA, else
	// Options.RootCAPath), right when meshlens' certificate is issued by
	// the mesh CA.
	CAFile string
	// SNI is the server name the proxy sends and requires among the
	// certificate's DNS SANs. Empty: the host of the receiver's address
	// when it is a name; an IP address is required among the IP SANs.
	SNI string
	// CertFile and KeyFile are the proxy's client certificate, for a
	// meshlens that requires one (--tls-client-ca). ClientCert with both
	// empty uses the proxy's workload certificate (the node's
	// TLS_CERT_CHAIN / TLS_PRIVATE_KEY, else Options' files), right when
	// --tls-client-ca is the mesh root.
	CertFile, KeyFile string
	ClientCert        bool
}

// receiverTLS gives cl, a cluster to a receiver at addr (host:port), the
// TLS of Options.TelemetryTLS; nothing when that is nil (plaintext).
func (t *translator) receiverTLS(cl *clusterv3.Cluster, addr string) error {
	rt := t.opts.TelemetryTLS
	if rt == nil {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("cluster %s: address %q: %w", cl.Name, addr, err)
	}
	chain, key, ca := t.certPaths()
	if rt.CAFile != "" {
		ca = rt.CAFile
	}
	vc := &tlsv3.CertificateValidationContext{TrustedCa: fileSource(ca)}
	sni := rt.SNI
	ip, ipErr := netip.ParseAddr(host)
	switch {
	case sni != "":
		vc.MatchTypedSubjectAltNames = []*tlsv3.SubjectAltNameMatcher{{SanType: tlsv3.SubjectAltNameMatcher_DNS, Matcher: exact(sni)}}
	case ipErr == nil:
		vc.MatchTypedSubjectAltNames = []*tlsv3.SubjectAltNameMatcher{{SanType: tlsv3.SubjectAltNameMatcher_IP_ADDRESS, Matcher: exact(ip.String())}}
	default:
		sni = host
		vc.MatchTypedSubjectAltNames = []*tlsv3.SubjectAltNameMatcher{{SanType: tlsv3.SubjectAltNameMatcher_DNS, Matcher: exact(host)}}
	}
	common := &tlsv3.CommonTlsContext{
		// gRPC over TLS needs ALPN h2 (grpc-go servers refuse a
		// handshake without it).
		AlpnProtocols:         []string{"h2"},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc},
	}
	if rt.ClientCert {
		if rt.CertFile != "" {
			chain, key = rt.CertFile, rt.KeyFile
		}
		common.TlsCertificates = []*tlsv3.TlsCertificate{{CertificateChain: fileSource(chain), PrivateKey: fileSource(key)}}
	}
	ts, err := transportSocket(&tlsv3.UpstreamTlsContext{CommonTlsContext: common, Sni: sni})
	if err != nil {
		return fmt.Errorf("cluster %s: %w", cl.Name, err)
	}
	cl.TransportSocket = ts
	return nil
}

// ReceiverTLSFlags are the flags of ReceiverTLS, for `meshlens serve`.
type ReceiverTLSFlags struct {
	CAFile, SNI, CertFile, KeyFile string
}

// RegisterFlags adds --proxy-receiver-ca, --proxy-receiver-sni,
// --proxy-receiver-cert and --proxy-receiver-key to fs.
func (f *ReceiverTLSFlags) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&f.CAFile, "proxy-receiver-ca", f.CAFile,
		"with --tls-cert: path, on the Envoy proxies, of the PEM bundle that meshlens' certificate chains to, trusted by the meshlens_als and meshlens_otlp clusters; default the proxy's mesh root (its TLS_ROOT_CA, else /etc/certs/root-cert.pem)")
	fs.StringVar(&f.SNI, "proxy-receiver-sni", f.SNI,
		"with --tls-cert: server name the proxies send to meshlens' receivers and require in its certificate's DNS SANs; default the host of --proxy-als-address / --proxy-otlp-address (an IP address is required among the IP SANs)")
	fs.StringVar(&f.CertFile, "proxy-receiver-cert", f.CertFile,
		"with --tls-client-ca: path, on the proxies, of the client certificate they present to meshlens' receivers; default the proxy's workload certificate (TLS_CERT_CHAIN, else /etc/certs/cert-chain.pem)")
	fs.StringVar(&f.KeyFile, "proxy-receiver-key", f.KeyFile,
		"with --proxy-receiver-cert: path, on the proxies, of its private key")
}

// Resolve is the ReceiverTLS for Options.TelemetryTLS: nil when meshlens'
// receivers speak plaintext (serverTLS false: no --tls-cert), with a
// client certificate when they require one (clientCA: --tls-client-ca).
// Flags that mean nothing without TLS are errors naming them.
func (f ReceiverTLSFlags) Resolve(serverTLS, clientCA bool) (*ReceiverTLS, error) {
	if !serverTLS {
		for _, x := range []struct{ name, v string }{{"--proxy-receiver-ca", f.CAFile}, {"--proxy-receiver-sni", f.SNI}, {"--proxy-receiver-cert", f.CertFile}, {"--proxy-receiver-key", f.KeyFile}} {
			if x.v != "" {
				return nil, fmt.Errorf("%s %q: meshlens' receivers speak plaintext without --tls-cert, so proxies reach them without TLS", x.name, x.v)
			}
		}
		return nil, nil
	}
	if (f.CertFile == "") != (f.KeyFile == "") {
		return nil, errors.New("--proxy-receiver-cert and --proxy-receiver-key go together")
	}
	if f.CertFile != "" && !clientCA {
		return nil, fmt.Errorf("--proxy-receiver-cert %q: meshlens asks for no client certificate without --tls-client-ca", f.CertFile)
	}
	if f.SNI != "" {
		if _, err := netip.ParseAddr(f.SNI); err == nil {
			return nil, fmt.Errorf("--proxy-receiver-sni %q: a server name, not an IP address (an IP address of --proxy-*-address is checked among the IP SANs without it)", f.SNI)
		}
	}
	return &ReceiverTLS{CAFile: f.CAFile, SNI: f.SNI, CertFile: f.CertFile, KeyFile: f.KeyFile, ClientCert: clientCA}, nil
}
