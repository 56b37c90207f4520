package config

import (
	"sync"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1"
	security "istio.io/api/security/v1"
	telemetry "istio.io/api/telemetry/v1alpha1"
)

// Istio API versions meshlens accepts. The spec types are the same across
// them (istio.io/api aliases v1 to v1alpha3/v1beta1), so Object.Spec is
// always the networking/v1 or security/v1 type whatever version was written.
var (
	networkingVersions = []string{"networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"}
	securityVersions   = []string{"security.istio.io/v1", "security.istio.io/v1beta1"}
)

// Istio kind names.
const (
	KindVirtualService      = "VirtualService"
	KindDestinationRule     = "DestinationRule"
	KindServiceEntry        = "ServiceEntry"
	KindWorkloadEntry       = "WorkloadEntry"
	KindPeerAuthentication  = "PeerAuthentication"
	KindAuthorizationPolicy = "AuthorizationPolicy"
)

// IstioOptions tune Istio validation.
type IstioOptions struct {
	// KnownHost reports whether a fully qualified host (e.g.
	// "reviews.default.svc.cluster.local") exists outside the config, for
	// example in a Kubernetes registry. References to hosts that no
	// ServiceEntry or WorkloadEntry defines and that are not known here
	// are analysis warnings (IST0101, IST0174). Nil knows no host.
	KnownHost func(fqdn string) bool
	// DomainSuffix qualifies short hosts ("reviews" is
	// "reviews.NS.svc.DOMAIN"); "" means DefaultDomainSuffix. It must match
	// the xDS translator's.
	DomainSuffix string
	// ExtAuthzProvider says why AuthorizationPolicy action CUSTOM cannot
	// use the named ext_authz provider of the mesh config (nil: it can);
	// its rules then deny what they match, which analysis reports (IST0101).
	// Nil leaves CUSTOM policies unanalysed (the providers are not known,
	// as in an offline `meshlens validate`).
	ExtAuthzProvider func(name string) error
	// JWKSUnavailable says why the keys of a RequestAuthentication issuer
	// (with its jwksUri, "" for OpenID discovery) were never fetched:
	// the URL tried and the last error; ok is false once they were
	// fetched (or before the first try). Analysis then reports the
	// issuer (CodeJWKSUnavailable): its tokens are refused. Nil: not
	// known (an offline `meshlens validate`).
	JWKSUnavailable func(issuer, jwksURI string) (url, lastErr string, ok bool)
	// GatewayCredential says why the Secret of a Gateway server's
	// credentialName (or a Gateway API listener's certificateRef) cannot be
	// served to the gateway proxies the Gateway selects: code
	// CodeReferencedResourceNotFound (no such Secret) or
	// CodeInvalidGatewayCredential (no certificate, key or CA in it); ok is
	// false when it can. Analysis reports it on the server: its filter
	// chain is not served. Nil: not known (no cluster, or certificates
	// are files on the proxies).
	GatewayCredential func(GatewayCredentialRef) (code, message string, ok bool)
}

// GatewayCredentialRef is the Secret a Gateway server names, as analysis
// asks IstioOptions.GatewayCredential about it.
type GatewayCredentialRef struct {
	// GatewayNamespace and Selector are the Gateway's: its gateway proxies
	// are the workloads Selector selects.
	GatewayNamespace string
	Selector         map[string]string
	// Namespace is the Secret's namespace when the reference names one (a
	// Gateway API certificateRef); "" is the gateway proxies' own (an
	// Istio Gateway's credentialName, as istiod reads it).
	Namespace, Name string
	// NeedCA: the server verifies client certificates (MUTUAL).
	NeedCA bool
}

// IstioKinds returns the specs of the Istio kinds meshlens serves:
// VirtualService, DestinationRule, ServiceEntry, WorkloadEntry,
// WorkloadGroup, Gateway, Sidecar (networking.istio.io) and PeerAuthentication,
// RequestAuthentication, AuthorizationPolicy (security.istio.io) and
// Telemetry (telemetry.istio.io).
//
// It also returns the Gateway API kinds that Istio serves too: Gateway,
// HTTPRoute and GRPCRoute (gateway.networking.k8s.io, see gatewayapi.go).
func IstioKinds(opts IstioOptions) []KindSpec {
	v := &istioValidator{opts: opts}
	return append([]KindSpec{
		{APIVersions: networkingVersions, Kind: KindVirtualService, ShortNames: []string{"vs"},
			Decode: decodeAs(func() proto.Message { return &networking.VirtualService{} }), Validate: v.virtualService, Analyze: v.analyzeVirtualService},
		{APIVersions: networkingVersions, Kind: KindDestinationRule, ShortNames: []string{"dr"},
			Decode: decodeAs(func() proto.Message { return &networking.DestinationRule{} }), Validate: v.destinationRule, Analyze: v.analyzeDestinationRule},
		{APIVersions: networkingVersions, Kind: KindServiceEntry, ShortNames: []string{"se"},
			Decode: decodeAs(func() proto.Message { return &networking.ServiceEntry{} }), Validate: v.serviceEntry, Analyze: v.analyzeServiceEntry},
		{APIVersions: networkingVersions, Kind: KindWorkloadEntry, ShortNames: []string{"we"},
			Decode: decodeAs(func() proto.Message { return &networking.WorkloadEntry{} }), Validate: v.workloadEntry, Analyze: v.analyzeWorkloadEntry},
		{APIVersions: networkingVersions, Kind: KindWorkloadGroup, ShortNames: []string{"wg"},
			Decode: decodeAs(func() proto.Message { return &networking.WorkloadGroup{} }), Validate: v.workloadGroup},
		{APIVersions: networkingVersions, Kind: KindGateway, ShortNames: []string{"gw"},
			Decode: decodeAs(func() proto.Message { return &networking.Gateway{} }), Validate: v.gateway, Analyze: v.analyzeGateway},
		{APIVersions: networkingVersions, Kind: KindSidecar,
			Decode: decodeAs(func() proto.Message { return &networking.Sidecar{} }), Validate: v.sidecar, Analyze: v.analyzeSidecar},
		{APIVersions: securityVersions, Kind: KindPeerAuthentication, ShortNames: []string{"pa"},
			Decode: decodeAs(func() proto.Message { return &security.PeerAuthentication{} }), Validate: v.peerAuthentication},
		{APIVersions: securityVersions, Kind: KindRequestAuthentication, ShortNames: []string{"ra"},
			Decode: decodeAs(func() proto.Message { return &security.RequestAuthentication{} }), Validate: v.requestAuthentication, Analyze: v.analyzeRequestAuthentication},
		{APIVersions: securityVersions, Kind: KindAuthorizationPolicy, ShortNames: []string{"ap"},
			Decode: decodeAs(func() proto.Message { return &security.AuthorizationPolicy{} }), Validate: v.authorizationPolicy, Analyze: v.analyzeAuthorizationPolicy},
		{APIVersions: telemetryVersions, Kind: KindTelemetry,
			Decode: decodeAs(func() proto.Message { return &telemetry.Telemetry{} }), Validate: v.telemetry, Analyze: v.analyzeTelemetry},
	}, gatewayAPIKinds(v)...)
}

func decodeAs(newMsg func() proto.Message) func([]byte) (any, error) {
	return func(js []byte) (any, error) {
		m := newMsg()
		if err := DecodeProto(js, m); err != nil {
			return nil, err
		}
		return m, nil
	}
}

// istioValidator validates and analyses Istio objects. It caches the host
// index of the last snapshot it saw, because a batch analyses many objects
// against one snapshot.
type istioValidator struct {
	opts IstioOptions
	cel  celParser

	mu      sync.Mutex
	lastSn  *Snapshot
	lastIdx *hostIndex
}

func (v *istioValidator) index(sn *Snapshot) *hostIndex {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.lastSn != sn || v.lastIdx == nil {
		v.lastSn, v.lastIdx = sn, newHostIndex(sn, v.opts.DomainSuffix)
	}
	return v.lastIdx
}
