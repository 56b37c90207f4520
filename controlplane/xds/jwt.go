package xds

import (
	"cmp"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	security "istio.io/api/security/v1beta1"

	"github.com/meshlens/meshlens/controlplane/jwks"
)

// RequestAuthentication becomes Envoy's jwt_authn filter on the inbound
// side of the workloads it selects, ahead of RBAC, as istiod writes it: a
// provider per jwtRule (issuer, audiences; inline jwks, or the keys
// meshlens fetched from the jwksUri or by OpenID discovery (package jwks),
// or without those the jwksUri fetched by Envoy through the outbound
// cluster of its host; token
// locations, forwarding, claims copied to headers), and one requirement for every request: any of
// the providers, or no token at all. A token that does not verify (bad
// signature, expired, wrong audience, keys that cannot be fetched) is
// refused with 401: it fails closed. grpc-go implements no JWT filter:
// proxyless servers do not verify tokens.

const jwtAuthnFilter = "envoy.filters.http.jwt_authn"

// jwksCacheDuration is how long Envoy keeps fetched keys (Istio's default).
const jwksCacheDuration = 5 * 60

// requestAuthentications are the RequestAuthentications that apply to a
// workload: its namespace's selecting it (or everything) and the root
// namespace's, in key order.
func (m *model) requestAuthentications(w *workload) []*security.RequestAuthentication {
	var out []*security.RequestAuthentication
	for _, o := range m.requestAuthn {
		ra := o.Spec.(*security.RequestAuthentication)
		if o.Meta.Namespace != w.namespace && o.Meta.Namespace != m.opts.RootNamespace {
			continue
		}
		if ra.Selector != nil && !selects(ra.Selector.MatchLabels, w.labels) {
			continue
		}
		out = append(out, ra)
	}
	return out
}

// jwtFilter is the workload's jwt_authn filter, nil when no
// RequestAuthentication applies or the node is proxyless.
func (t *translator) jwtFilter(w *workload) (*hcm.HttpFilter, error) {
	if t.node.Flavour == FlavourGRPC {
		return nil, nil
	}
	cfg := &jwtv3.JwtAuthentication{Providers: map[string]*jwtv3.JwtProvider{}}
	var any []*jwtv3.JwtRequirement
	seen := map[string]bool{}
	for _, ra := range t.m.requestAuthentications(w) {
		for _, r := range ra.JwtRules {
			if seen[r.Issuer] {
				continue // the first rule of an issuer wins
			}
			seen[r.Issuer] = true
			name := fmt.Sprintf("origins-%d", len(cfg.Providers))
			p, err := t.jwtProvider(r)
			if err != nil {
				return nil, fmt.Errorf("RequestAuthentication issuer %s: %w", r.Issuer, err)
			}
			cfg.Providers[name] = p
			any = append(any, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: name}})
		}
	}
	if len(cfg.Providers) == 0 {
		return nil, nil
	}
	any = append(any, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_AllowMissing{}})
	cfg.Rules = []*jwtv3.RequirementRule{{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		RequirementType: &jwtv3.RequirementRule_Requires{Requires: &jwtv3.JwtRequirement{
			RequiresType: &jwtv3.JwtRequirement_RequiresAny{RequiresAny: &jwtv3.JwtRequirementOrList{Requirements: any}},
		}},
	}}
	return httpFilter(jwtAuthnFilter, cfg), nil
}

func (t *translator) jwtProvider(r *security.JWTRule) (*jwtv3.JwtProvider, error) {
	p := &jwtv3.JwtProvider{
		Issuer:               r.Issuer,
		Audiences:            r.Audiences,
		Forward:              r.ForwardOriginalToken,
		FromParams:           r.FromParams,
		FromCookies:          r.FromCookies,
		ForwardPayloadHeader: r.OutputPayloadToHeader,
		PayloadInMetadata:    r.Issuer,
	}
	for _, h := range r.FromHeaders {
		p.FromHeaders = append(p.FromHeaders, &jwtv3.JwtHeader{Name: h.Name, ValuePrefix: h.Prefix})
	}
	// Copied from the verified token only, replacing what the request
	// carried under that name.
	for _, c := range r.OutputClaimToHeaders {
		p.ClaimToHeaders = append(p.ClaimToHeaders, &jwtv3.JwtClaimToHeader{HeaderName: c.Header, ClaimName: c.Claim})
	}
	inline := func(js string) {
		p.JwksSourceSpecifier = &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: js}}}
	}
	fetched, resolved := t.m.jwks.Lookup(r.Issuer, r.JwksUri)
	switch {
	case r.Jwks != "":
		inline(r.Jwks)
	case resolved:
		// meshlens fetched them (or OpenID discovery found them), as
		// istiod does; never fetched: no token verifies (fails closed).
		inline(cmp.Or(fetched.JWKS, jwks.PublicOnly))
	case r.JwksUri != "":
		u, err := url.Parse(r.JwksUri)
		if err != nil || u.Hostname() == "" {
			return nil, fmt.Errorf("jwksUri %q: not a URL with a host", r.JwksUri)
		}
		port := uint32(443)
		if u.Scheme == "http" {
			port = 80
		}
		if ps := u.Port(); ps != "" {
			n, err := strconv.ParseUint(ps, 10, 16)
			if err != nil {
				return nil, fmt.Errorf("jwksUri %q: port: %w", r.JwksUri, err)
			}
			port = uint32(n)
		}
		timeout := durationpb.New(5e9)
		if r.Timeout != nil {
			timeout = r.Timeout
		}
		p.JwksSourceSpecifier = &jwtv3.JwtProvider_RemoteJwks{RemoteJwks: &jwtv3.RemoteJwks{
			HttpUri: &corev3.HttpUri{
				Uri:              r.JwksUri,
				HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: outboundName(port, "", strings.ToLower(u.Hostname()))},
				Timeout:          timeout,
			},
			CacheDuration: durationpb.New(jwksCacheDuration * 1e9),
		}}
	default:
		// Neither keys nor a jwksUri, and no OpenID discovery (or not
		// yet): every token of this issuer is refused. Envoy refuses an
		// empty key set, hence one whose private key nobody has.
		inline(jwks.PublicOnly)
	}
	return p, nil
}

// jwtIssuers are the issuers whose tokens the workload's jwt_authn
// verifies, in provider order; none for proxyless nodes.
func (t *translator) jwtIssuers(w *workload) []string {
	if t.node.Flavour == FlavourGRPC {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, ra := range t.m.requestAuthentications(w) {
		for _, r := range ra.JwtRules {
			if !seen[r.Issuer] {
				seen[r.Issuer] = true
				out = append(out, r.Issuer)
			}
		}
	}
	return out
}
