package xds

import (
	"errors"
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/controlplane/credentials"
)

// With a cluster (Input.Credentials set), Gateway servers' credentialName
// is served as istiod serves it: over SDS on the ADS stream, from the
// Kubernetes Secret of that name.
//
//   - An Istio Gateway's credentialName NAME is the Secret NAME of the
//     gateway proxy's namespace (its node metadata NAMESPACE, checked
//     against its SPIFFE identity when --xds-client-ca makes the xDS server
//     require one): the SDS secret "kubernetes://NAME", and for MUTUAL
//     "kubernetes://NAME-cacert", the CA of Secret NAME-cacert or NAME.
//   - A Gateway API listener's certificateRef is "kubernetes-gateway://NS/NAME"
//     (as istiod names it): NS is the ref's namespace, the Gateway's by
//     default; one of another namespace is converted only when a
//     ReferenceGrant there allows it, and served to proxies of the
//     Gateway's namespace or the Secret's.
//   - A proxy of another namespace than the Secret's gets neither the
//     secret nor the filter chain using it; nor does any proxy when the
//     Secret is missing or lacks a key. The other servers are served;
//     analysis says which Secret and why
//     (config.IstioOptions.GatewayCredential, kube.Credentials).
//
// Without a cluster, credentialName names files on the proxy
// (Options.GatewayCredentialDir).

const (
	sdsPrefix        = "kubernetes://"
	sdsGatewayPrefix = "kubernetes-gateway://"
)

// GatewayAPICredentialName is the credentialName a Gateway API listener's
// certificateRef to Secret ns/name becomes.
func GatewayAPICredentialName(ns, name string) string { return sdsGatewayPrefix + ns + "/" + name }

// credential is a server's credentialName resolved for one proxy.
type credential struct {
	ref credentials.Ref
	sds string // the SDS secret name
	// gatewayAPI: a Gateway API certificateRef, which names its namespace.
	gatewayAPI bool
}

// resolveCredential resolves credentialName for a proxy in proxyNS.
func resolveCredential(name, proxyNS string) credential {
	if rest, ok := strings.CutPrefix(name, sdsGatewayPrefix); ok {
		ns, n, _ := strings.Cut(rest, "/")
		return credential{ref: credentials.Ref{Namespace: ns, Name: n}, sds: name, gatewayAPI: true}
	}
	name = strings.TrimPrefix(name, sdsPrefix)
	return credential{ref: credentials.Ref{Namespace: proxyNS, Name: name}, sds: sdsPrefix + name}
}

// fileCredentialName is the directory name of a credentialName in file mode.
func fileCredentialName(name string) string {
	if rest, ok := strings.CutPrefix(name, sdsGatewayPrefix); ok {
		_, n, _ := strings.Cut(rest, "/")
		return n
	}
	return strings.TrimPrefix(name, sdsPrefix)
}

// credentialError is a server whose credential cannot be served: its
// filter chain is left out, the rest of the listener served.
type credentialError struct{ err error }

func (e *credentialError) Error() string { return e.err.Error() }
func (e *credentialError) Unwrap() error { return e.err }

// credentialFor checks that the gateway proxy may have server s's
// credential and that its Secret holds what the server's mode needs, and
// returns its SDS secrets.
func credentialFor(creds *credentials.Snapshot, gw *config.Object, tls *networking.ServerTLSSettings, proxyNS string) (credential, []*tlsv3.Secret, error) {
	c := resolveCredential(tls.GetCredentialName(), proxyNS)
	switch {
	case c.ref.Namespace == "":
		return c, nil, &credentialError{fmt.Errorf("credentialName %s: the gateway proxy names no namespace (node metadata NAMESPACE), so no Secret is served to it", c.ref.Name)}
	case c.ref.Namespace != proxyNS && !(c.gatewayAPI && proxyNS == gw.Meta.Namespace):
		return c, nil, &credentialError{fmt.Errorf("secret %s is not served to a gateway proxy of namespace %s", c.ref, proxyNS)}
	}
	cert, key, _, err := creds.Certificate(c.ref)
	if err != nil {
		return c, nil, &credentialError{err}
	}
	secrets := []*tlsv3.Secret{{Name: c.sds, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: inlineBytes(cert), PrivateKey: inlineBytes(key),
	}}}}
	if m := tls.GetMode(); m == networking.ServerTLSSettings_MUTUAL || m == networking.ServerTLSSettings_OPTIONAL_MUTUAL {
		ca, _, err := creds.CA(c.ref)
		if err != nil {
			return c, nil, &credentialError{fmt.Errorf("%s needs a CA: %w", m, err)}
		}
		secrets = append(secrets, &tlsv3.Secret{Name: c.sds + credentials.CASuffix, Type: &tlsv3.Secret_ValidationContext{
			ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: inlineBytes(ca)},
		}})
	}
	return c, secrets, nil
}

// sdsServerTLS is the TLS of a server whose credentialName is served over
// SDS; it records the secrets the node gets.
func (t *translator) sdsServerTLS(s gatewayServer) (*corev3.TransportSocket, error) {
	tls := s.server.GetTls()
	c, secrets, err := credentialFor(t.m.creds, s.gw, tls, t.node.Namespace)
	if err != nil {
		return nil, err
	}
	common := &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: c.sds, SdsConfig: ads()}},
		AlpnProtocols:                  []string{"h2", "http/1.1"},
	}
	if p := tlsParams(tls); p != nil {
		common.TlsParams = p
	}
	ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: common}
	if len(secrets) > 1 {
		common.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sanMatchers(tls.GetSubjectAltNames())},
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: secrets[1].Name, SdsConfig: ads()},
		}}
		ctx.RequireClientCertificate = wrapperspb.Bool(tls.GetMode() == networking.ServerTLSSettings_MUTUAL)
	}
	if err := validateAll("secret", secrets); err != nil {
		return nil, err
	}
	if t.secrets == nil {
		t.secrets = map[string]*tlsv3.Secret{}
	}
	for _, sec := range secrets {
		t.secrets[sec.Name] = sec
	}
	return transportSocket(ctx)
}

func inlineBytes(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

// skipServer reports whether err says a server's credential cannot be
// served: its filter chain is left out, not the node's whole config.
func skipServer(err error) bool {
	var ce *credentialError
	return errors.As(err, &ce)
}
