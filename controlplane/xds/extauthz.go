package xds

import (
	"fmt"
	"slices"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	rbacfilter "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/controlplane/meshconfig"
)

// AuthorizationPolicy action CUSTOM delegates the requests its rules
// match to an external authorization service of Options.ExtensionProviders
// (Istio's MeshConfig extensionProviders, --mesh-config), as istiod does:
// per provider, an RBAC filter in shadow mode marks the requests a CUSTOM
// rule matches (dynamic metadata istio_ext_authz_shadow_effective_policy_id
// = "istio-ext-authz-PROVIDER-..."), and an ext_authz filter enabled only
// for requests so marked asks the service (envoyExtAuthzHttp: an HTTP
// check; envoyExtAuthzGrpc: Envoy's gRPC Authorization API), ahead of the
// DENY and ALLOW filters. A provider that does not exist, is not an
// ext_authz one, or whose service no ServiceEntry or Kubernetes Service
// defines fails closed: its rules deny. grpc-go cannot call an ext_authz
// service (its filter is experimental and incomplete): proxyless servers
// deny what CUSTOM rules match.

const (
	extAuthzFilter       = "envoy.filters.http.ext_authz"
	extAuthzPolicyPrefix = "istio-ext-authz"
	extAuthzStatPrefix   = "istio_ext_authz_"
	// extAuthzDefaultTimeout is Istio's default for a provider's timeout.
	extAuthzDefaultTimeout = 600
)

// extAuthzProvider is the provider CUSTOM policies name, resolved to its
// cluster; nil when the node cannot use it (the rules then deny).
func (t *translator) extAuthzProvider(name string) (*meshconfig.ExtAuthz, string) {
	if t.node.Flavour == FlavourGRPC {
		return nil, ""
	}
	p, ok, err := t.opts.ExtensionProviders.ExtAuthzProvider(name)
	if !ok || err != nil {
		return nil, ""
	}
	ns := p.Namespace
	if ns == "" {
		ns = t.opts.RootNamespace
	}
	host := config.FQDN(p.Host, ns, t.opts.DomainSuffix)
	svc := t.m.services[host]
	if svc == nil || !slices.ContainsFunc(svc.ports, func(sp *networking.ServicePort) bool { return sp.Number == p.Port }) {
		return nil, ""
	}
	return p, host
}

// extAuthzFilters are the shadow RBAC and ext_authz filters of each
// provider in custom (provider -> policies), in provider order.
func (t *translator) extAuthzFilters(custom map[string]map[string]*rbacv3.Policy, hosts map[string]string, providers map[string]*meshconfig.ExtAuthz) ([]*hcm.HttpFilter, error) {
	names := make([]string, 0, len(custom))
	for n := range custom {
		names = append(names, n)
	}
	slices.Sort(names)
	var out []*hcm.HttpFilter
	for _, name := range names {
		p, host := providers[name], hosts[name]
		marker := &matcherv3.MetadataMatcher{
			Filter: rbacFilter,
			Path:   []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: extAuthzStatPrefix + "shadow_effective_policy_id"}}},
			Value: &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: extAuthzPolicyPrefix + "-" + name + "-"}}}},
		}
		cfg, err := extAuthzConfig(p, host)
		if err != nil {
			return nil, fmt.Errorf("extension provider %s: %w", name, err)
		}
		cfg.FilterEnabledMetadata = marker
		out = append(out,
			// Named exactly as the RBAC filter, as istiod names it: the
			// filter's dynamic metadata is read under that name.
			httpFilter(rbacFilter, &rbacfilter.RBAC{
				ShadowRules:           &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: custom[name]},
				ShadowRulesStatPrefix: extAuthzStatPrefix,
			}),
			httpFilter(extAuthzFilter+"."+name, cfg))
	}
	return out, nil
}

// extAuthzConfig is Envoy's ext_authz filter for a provider whose service
// is host.
func extAuthzConfig(p *meshconfig.ExtAuthz, host string) (*extauthzv3.ExtAuthz, error) {
	cluster := outboundName(p.Port, "", host)
	timeout := func(d *durationpb.Duration) *durationpb.Duration {
		if d == nil {
			return durationpb.New(extAuthzDefaultTimeout * 1e9)
		}
		return d
	}
	status := func(s string) (*typev3.HttpStatus, error) {
		if s == "" {
			return nil, nil
		}
		code, err := strconv.Atoi(s)
		if err != nil {
			return nil, fmt.Errorf("statusOnError %q: %w", s, err)
		}
		return &typev3.HttpStatus{Code: typev3.StatusCode(code)}, nil
	}
	body := func(b *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationRequestBody) *extauthzv3.BufferSettings {
		if b == nil {
			return nil
		}
		return &extauthzv3.BufferSettings{MaxRequestBytes: b.GetMaxRequestBytes(), AllowPartialMessage: b.GetAllowPartialMessage(), PackAsBytes: b.GetPackAsBytes()}
	}
	if g := p.GRPC; g != nil {
		st, err := status(g.GetStatusOnError())
		if err != nil {
			return nil, err
		}
		return &extauthzv3.ExtAuthz{
			Services: &extauthzv3.ExtAuthz_GrpcService{GrpcService: &corev3.GrpcService{
				TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: cluster, Authority: host}},
				Timeout:         timeout(g.GetTimeout()),
			}},
			TransportApiVersion: corev3.ApiVersion_V3,
			FailureModeAllow:    g.GetFailOpen(),
			ClearRouteCache:     g.GetClearRouteCache(),
			StatusOnError:       st,
			WithRequestBody:     body(g.GetIncludeRequestBodyInCheck()),
		}, nil
	}
	h := p.HTTP
	st, err := status(h.GetStatusOnError())
	if err != nil {
		return nil, err
	}
	svc := &extauthzv3.HttpService{
		ServerUri: &corev3.HttpUri{
			Uri:              "http://" + host, // required, unused: the cluster is
			HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: cluster},
			Timeout:          timeout(h.GetTimeout()),
		},
		PathPrefix: h.GetPathPrefix(),
	}
	var add []*corev3.HeaderValue
	for _, k := range sortedKeys(h.GetIncludeAdditionalHeadersInCheck()) {
		add = append(add, &corev3.HeaderValue{Key: k, Value: h.GetIncludeAdditionalHeadersInCheck()[k]})
	}
	if len(add) > 0 {
		svc.AuthorizationRequest = &extauthzv3.AuthorizationRequest{HeadersToAdd: add}
	}
	if len(h.GetHeadersToUpstreamOnAllow())+len(h.GetHeadersToDownstreamOnDeny())+len(h.GetHeadersToDownstreamOnAllow()) > 0 {
		svc.AuthorizationResponse = &extauthzv3.AuthorizationResponse{
			AllowedUpstreamHeaders:        headerPatterns(h.GetHeadersToUpstreamOnAllow()),
			AllowedClientHeaders:          headerPatterns(h.GetHeadersToDownstreamOnDeny()),
			AllowedClientHeadersOnSuccess: headerPatterns(h.GetHeadersToDownstreamOnAllow()),
		}
	}
	include := h.GetIncludeRequestHeadersInCheck()
	if len(include) == 0 {
		//lint:ignore SA1019 deprecated in Istio, still honoured when the new field is unset
		include = h.GetIncludeHeadersInCheck()
	}
	return &extauthzv3.ExtAuthz{
		Services:            &extauthzv3.ExtAuthz_HttpService{HttpService: svc},
		TransportApiVersion: corev3.ApiVersion_V3,
		FailureModeAllow:    h.GetFailOpen(),
		ClearRouteCache:     h.GetClearRouteCache(),
		StatusOnError:       st,
		WithRequestBody:     body(h.GetIncludeRequestBodyInCheck()),
		AllowedHeaders:      headerPatterns(include),
	}, nil
}

// headerPatterns are Istio's header patterns ("x-a", "prefix*", "*suffix")
// as Envoy string matchers, case-insensitive; nil for none.
func headerPatterns(hs []string) *matcherv3.ListStringMatcher {
	if len(hs) == 0 {
		return nil
	}
	l := &matcherv3.ListStringMatcher{}
	for _, h := range hs {
		m := istioString(h)
		m.IgnoreCase = true
		l.Patterns = append(l.Patterns, m)
	}
	return l
}
