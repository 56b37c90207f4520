package xds

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacfilter "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"

	"github.com/meshlens/meshlens/controlplane/meshconfig"
)

const (
	tlsSocketName = "envoy.transport_sockets.tls"
	rbacFilter    = "envoy.filters.http.rbac"
	// Certificate names inside the grpc-go provider instance; the
	// file_watcher plugin ignores them, other plugins may not.
	identityCertName = "default"
	rootCertName     = "ROOTCA"
)

type mtlsMode = security.PeerAuthentication_MutualTLS_Mode

// peerMode is the effective PeerAuthentication mode of a workload port:
// workload-selected policy (port-level first), then the namespace policy,
// then the mesh-wide policy in the root namespace; UNSET inherits from the
// next level and the mesh default is PERMISSIVE.
func (m *model) peerMode(w *workload, port uint32) mtlsMode {
	var workloadPA, nsPA, meshPA *security.PeerAuthentication
	for _, o := range m.peers {
		pa := o.Spec.(*security.PeerAuthentication)
		hasSelector := pa.Selector != nil && len(pa.Selector.MatchLabels) > 0
		switch {
		case o.Meta.Namespace == w.namespace && hasSelector && selects(pa.Selector.MatchLabels, w.labels):
			if workloadPA == nil {
				workloadPA = pa
			}
		case o.Meta.Namespace == w.namespace && !hasSelector && o.Meta.Namespace != m.opts.RootNamespace:
			if nsPA == nil {
				nsPA = pa
			}
		case o.Meta.Namespace == m.opts.RootNamespace && !hasSelector:
			if meshPA == nil {
				meshPA = pa
			}
		}
	}
	if workloadPA != nil {
		if pl, ok := workloadPA.PortLevelMtls[port]; ok && pl.GetMode() != security.PeerAuthentication_MutualTLS_UNSET {
			return pl.GetMode()
		}
		if mode := workloadPA.GetMtls().GetMode(); mode != security.PeerAuthentication_MutualTLS_UNSET {
			return mode
		}
	}
	for _, pa := range []*security.PeerAuthentication{nsPA, meshPA} {
		if mode := pa.GetMtls().GetMode(); mode != security.PeerAuthentication_MutualTLS_UNSET {
			return mode
		}
	}
	return security.PeerAuthentication_MutualTLS_PERMISSIVE
}

// upstreamTLS decides the client side of a cluster. ISTIO_MUTUAL and DISABLE
// are explicit; without a DestinationRule TLS setting meshlens does Istio's
// auto-mTLS at cluster granularity: mTLS when every endpoint is STRICT.
// (Per-endpoint auto-mTLS needs transport_socket_matches, which grpc-go
// rejects.)
func (t *translator) upstreamTLS(svc *service, p *networking.ServicePort, tp *networking.TrafficPolicy, members []*workload) (*corev3.TransportSocket, error) {
	mode := networking.ClientTLSSettings_DISABLE
	if tls := tp.GetTls(); tls != nil {
		mode = tls.Mode
	} else if len(members) > 0 {
		strict := true
		for _, w := range members {
			if t.m.peerMode(w, w.targetPort(p)) != security.PeerAuthentication_MutualTLS_STRICT {
				strict = false
				break
			}
		}
		if strict {
			mode = networking.ClientTLSSettings_ISTIO_MUTUAL
		}
	}
	var ctx *tlsv3.UpstreamTlsContext
	switch mode {
	case networking.ClientTLSSettings_DISABLE:
		return nil, nil
	case networking.ClientTLSSettings_ISTIO_MUTUAL:
		ctx = &tlsv3.UpstreamTlsContext{CommonTlsContext: t.meshTLS(t.peerSANs(svc, members))}
	case networking.ClientTLSSettings_SIMPLE, networking.ClientTLSSettings_MUTUAL:
		if t.node.Flavour == FlavourGRPC {
			// grpc-go accepts only certificate-provider instances, never
			// file names, so user-supplied certificates cannot be expressed.
			return nil, nil
		}
		tls := tp.GetTls()
		common := &tlsv3.CommonTlsContext{}
		if tls.CaCertificates != "" {
			common.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa:                 fileSource(tls.CaCertificates),
				MatchTypedSubjectAltNames: sanMatchers(tls.SubjectAltNames),
			}}
		}
		if mode == networking.ClientTLSSettings_MUTUAL {
			common.TlsCertificates = []*tlsv3.TlsCertificate{{
				CertificateChain: fileSource(tls.ClientCertificate),
				PrivateKey:       fileSource(tls.PrivateKey),
			}}
		}
		ctx = &tlsv3.UpstreamTlsContext{CommonTlsContext: common, Sni: tls.Sni}
	}
	if ctx == nil {
		return nil, nil
	}
	return transportSocket(ctx)
}

// peerSANs are the identities a client accepts from a service's endpoints:
// the ServiceEntry's subjectAltNames, else the endpoints' service accounts.
func (t *translator) peerSANs(svc *service, members []*workload) []string {
	if len(svc.sans) > 0 {
		return svc.sans
	}
	set := map[string]bool{}
	for _, w := range members {
		if w.serviceAccount == "" {
			return nil // an endpoint without identity: do not pin
		}
		set[t.spiffe(w.namespace, w.serviceAccount)] = true
	}
	return slices.Sorted(maps.Keys(set))
}

func (t *translator) spiffe(ns, sa string) string {
	return "spiffe://" + t.opts.TrustDomain + "/ns/" + ns + "/sa/" + sa
}

func sanMatchers(sans []string) []*tlsv3.SubjectAltNameMatcher {
	var out []*tlsv3.SubjectAltNameMatcher
	for _, s := range sans {
		typ := tlsv3.SubjectAltNameMatcher_DNS
		if strings.Contains(s, "://") {
			typ = tlsv3.SubjectAltNameMatcher_URI
		}
		out = append(out, &tlsv3.SubjectAltNameMatcher{SanType: typ, Matcher: exact(s)})
	}
	return out
}

// meshTLS is the workload-identity TLS context (ISTIO_MUTUAL): grpc-go nodes
// reference the bootstrap's certificate provider instance, Envoy nodes read
// the certificate files.
func (t *translator) meshTLS(sans []string) *tlsv3.CommonTlsContext {
	if t.node.Flavour == FlavourGRPC {
		vc := &tlsv3.CertificateValidationContext{
			CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: t.opts.CertProviderInstance, CertificateName: rootCertName},
		}
		var ms []*matcherv3.StringMatcher
		for _, s := range sans {
			ms = append(ms, exact(s))
		}
		//lint:ignore SA1019 grpc-go reads only this field, not match_typed_subject_alt_names
		vc.MatchSubjectAltNames = ms
		return &tlsv3.CommonTlsContext{
			TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: t.opts.CertProviderInstance, CertificateName: identityCertName},
			ValidationContextType:          &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc},
		}
	}
	chain, key, ca := t.certPaths()
	return &tlsv3.CommonTlsContext{
		TlsCertificates: []*tlsv3.TlsCertificate{{CertificateChain: fileSource(chain), PrivateKey: fileSource(key)}},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: fileSource(ca), MatchTypedSubjectAltNames: sanMatchers(sans),
		}},
	}
}

func (t *translator) certPaths() (chain, key, ca string) {
	chain, key, ca = t.node.CertChainPath, t.node.PrivateKeyPath, t.node.RootCAPath
	if chain == "" {
		chain = t.opts.CertChainPath
	}
	if key == "" {
		key = t.opts.PrivateKeyPath
	}
	if ca == "" {
		ca = t.opts.RootCAPath
	}
	return chain, key, ca
}

// downstreamTLS is the server side of ISTIO_MUTUAL: the workload identity,
// and a client certificate signed by the mesh CA is required.
func (t *translator) downstreamTLS() (*corev3.TransportSocket, error) {
	common := t.meshTLS(nil)
	if t.node.Flavour == FlavourGRPC {
		//lint:ignore SA1019 grpc-go servers reject SAN matching in this field
		common.GetValidationContext().MatchSubjectAltNames = nil
	}
	return transportSocket(&tlsv3.DownstreamTlsContext{CommonTlsContext: common, RequireClientCertificate: wrapperspb.Bool(true)})
}

func transportSocket(ctx proto.Message) (*corev3.TransportSocket, error) {
	a, err := anypb.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("pack TLS context: %w", err)
	}
	return &corev3.TransportSocket{Name: tlsSocketName, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}, nil
}

func fileSource(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

// istioString maps Istio's authorization string syntax ("*", "prefix*",
// "*suffix", exact) to an Envoy string matcher.
func istioString(v string) *matcherv3.StringMatcher {
	switch {
	case v == "*":
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".+"}}}
	case strings.HasSuffix(v, "*"):
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: strings.TrimSuffix(v, "*")}}
	case strings.HasPrefix(v, "*"):
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: strings.TrimPrefix(v, "*")}}
	}
	return exact(v)
}

// authorizationPolicies returns the policies that apply to a workload: those
// in its namespace selecting it (or selecting everything) and root-namespace
// ones, in key order.
func (m *model) authorizationPolicies(w *workload) []*security.AuthorizationPolicy {
	var out []*security.AuthorizationPolicy
	for _, o := range m.authz {
		ap := o.Spec.(*security.AuthorizationPolicy)
		if o.Meta.Namespace != w.namespace && o.Meta.Namespace != m.opts.RootNamespace {
			continue
		}
		if ap.Selector != nil && !selects(ap.Selector.MatchLabels, w.labels) {
			continue
		}
		out = append(out, ap)
	}
	return out
}

// rbacFilters builds Istio's evaluation order: for Envoy an AUDIT filter
// (action LOG: it marks matching requests for the access log and decides
// nothing), then a DENY filter, then an ALLOW filter (present only if some
// ALLOW policy applies, since then anything not allowed is denied). A
// CUSTOM policy delegates to an ext_authz provider of Istio's mesh config
// (extauthz.go: its filters go after AUDIT, before DENY); with no usable
// provider it fails closed, its rules deny (Istio does the same with a
// provider it cannot find). grpc-go implements neither LOG nor a usable
// ext_authz: AUDIT is not sent to it, CUSTOM rules deny.
func (t *translator) rbacFilters(w *workload, port uint32) ([]*hcm.HttpFilter, error) {
	deny := map[string]*rbacv3.Policy{}
	allow := map[string]*rbacv3.Policy{}
	audit := map[string]*rbacv3.Policy{}
	custom := map[string]map[string]*rbacv3.Policy{} // provider -> policies
	customHosts := map[string]string{}
	customProviders := map[string]*meshconfig.ExtAuthz{}
	haveAllow := false
	issuers := t.jwtIssuers(w)
	for i, ap := range t.m.authorizationPolicies(w) {
		if ap.Action == security.AuthorizationPolicy_CUSTOM {
			name := ap.GetProvider().GetName()
			if p, host := t.extAuthzProvider(name); p != nil {
				if custom[name] == nil {
					custom[name] = map[string]*rbacv3.Policy{}
				}
				customHosts[name], customProviders[name] = host, p
				for j, r := range ap.Rules {
					// As a DENY rule: what the node cannot evaluate is
					// left out, so the check runs for more requests.
					if p := t.rbacPolicy(r, false, issuers); p != nil {
						custom[name][fmt.Sprintf("%s-%s-%d-%d", extAuthzPolicyPrefix, name, i, j)] = p
					}
				}
				continue
			}
		}
		switch ap.Action {
		case security.AuthorizationPolicy_DENY, security.AuthorizationPolicy_CUSTOM:
			kind := "deny"
			if ap.Action == security.AuthorizationPolicy_CUSTOM {
				kind = "custom-" + ap.GetProvider().GetName() // no usable provider: fails closed
			}
			for j, r := range ap.Rules {
				if p := t.rbacPolicy(r, false, issuers); p != nil {
					deny[fmt.Sprintf("%s-%d-%d", kind, i, j)] = p
				}
			}
		case security.AuthorizationPolicy_AUDIT:
			if t.node.Flavour == FlavourGRPC {
				continue
			}
			for j, r := range ap.Rules {
				if p := t.rbacPolicy(r, false, issuers); p != nil {
					audit[fmt.Sprintf("audit-%d-%d", i, j)] = p
				}
			}
		case security.AuthorizationPolicy_ALLOW:
			haveAllow = true
			for j, r := range ap.Rules {
				if p := t.rbacPolicy(r, true, issuers); p != nil {
					allow[fmt.Sprintf("allow-%d-%d", i, j)] = p
				}
			}
		}
	}
	var out []*hcm.HttpFilter
	add := func(name string, action rbacv3.RBAC_Action, policies map[string]*rbacv3.Policy) error {
		a, err := anypb.New(&rbacfilter.RBAC{Rules: &rbacv3.RBAC{Action: action, Policies: policies}})
		if err != nil {
			return fmt.Errorf("pack RBAC: %w", err)
		}
		out = append(out, &hcm.HttpFilter{Name: name, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: a}})
		return nil
	}
	if len(audit) > 0 {
		if err := add(rbacFilter+".audit", rbacv3.RBAC_LOG, audit); err != nil {
			return nil, err
		}
	}
	ext, err := t.extAuthzFilters(custom, customHosts, customProviders)
	if err != nil {
		return nil, err
	}
	out = append(out, ext...)
	if len(deny) > 0 {
		if err := add(rbacFilter+".deny", rbacv3.RBAC_DENY, deny); err != nil {
			return nil, err
		}
	}
	if haveAllow {
		if err := add(rbacFilter+".allow", rbacv3.RBAC_ALLOW, allow); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// rbacPolicy translates one rule, with its `when` conditions and request
// principals (authz.go). What the node cannot evaluate fails closed, as in
// Istio: an ALLOW rule that needs it is dropped, a DENY rule applies
// without it.
func (t *translator) rbacPolicy(r *security.Rule, allow bool, issuers []string) *rbacv3.Policy {
	condPrincipals, condPermissions, complete := t.ruleConditions(r, issuers)
	p, fromComplete := t.rbacRule(r, issuers)
	if allow && !(complete && fromComplete) {
		return nil
	}
	if len(condPrincipals) > 0 {
		p.Principals = []*rbacv3.Principal{andPrincipals(append([]*rbacv3.Principal{p.Principals[0]}, condPrincipals...))}
	}
	if len(condPermissions) > 0 {
		p.Permissions = []*rbacv3.Permission{andPermissions(append([]*rbacv3.Permission{p.Permissions[0]}, condPermissions...))}
	}
	return p
}

// rbacRule is a rule's from (with each source's request principals) and
// to, without conditions; complete is false when the node cannot evaluate
// some request principals (left out).
func (t *translator) rbacRule(r *security.Rule, issuers []string) (p *rbacv3.Policy, complete bool) {
	p, complete = &rbacv3.Policy{}, true
	if len(r.From) == 0 {
		p.Principals = []*rbacv3.Principal{anyPrincipal()}
	} else {
		var ids []*rbacv3.Principal
		for _, f := range r.From {
			id := t.sourcePrincipal(f.Source)
			rps, ok := t.requestPrincipals(f.Source, issuers)
			complete = complete && ok
			if len(rps) > 0 {
				id = andPrincipals(append([]*rbacv3.Principal{id}, rps...))
			}
			ids = append(ids, id)
		}
		p.Principals = []*rbacv3.Principal{orIDs(ids)}
	}
	if len(r.To) == 0 {
		p.Permissions = []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}}
	} else {
		var rules []*rbacv3.Permission
		for _, to := range r.To {
			rules = append(rules, operationPermission(to.Operation))
		}
		p.Permissions = []*rbacv3.Permission{{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: rules}}}}
	}
	return p, complete
}

func anyPrincipal() *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
}

func orIDs(ids []*rbacv3.Principal) *rbacv3.Principal {
	if len(ids) == 1 {
		return ids[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ids}}}
}

func notID(p *rbacv3.Principal) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: p}}
}

func authenticated(m *matcherv3.StringMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m}}}
}

func (t *translator) sourcePrincipal(s *security.Source) *rbacv3.Principal {
	if s == nil {
		return anyPrincipal()
	}
	var and []*rbacv3.Principal
	field := func(values []string, mk func(string) *rbacv3.Principal, negate bool) {
		if len(values) == 0 {
			return
		}
		var ids []*rbacv3.Principal
		for _, v := range values {
			ids = append(ids, mk(v))
		}
		p := orIDs(ids)
		if negate {
			p = notID(p)
		}
		and = append(and, p)
	}
	principal := func(v string) *rbacv3.Principal {
		if v == "*" {
			return authenticated(istioString(v))
		}
		return authenticated(istioString("spiffe://" + v))
	}
	namespace := func(v string) *rbacv3.Principal {
		if v == "*" {
			return authenticated(istioString(v))
		}
		return authenticated(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{
			SafeRegex: &matcherv3.RegexMatcher{Regex: ".*/ns/" + regexpQuote(v) + "/.*"},
		}})
	}
	ip := func(v string) *rbacv3.Principal {
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: cidr(v)}}
	}
	field(s.Principals, principal, false)
	field(s.NotPrincipals, principal, true)
	field(s.Namespaces, namespace, false)
	field(s.NotNamespaces, namespace, true)
	field(s.IpBlocks, ip, false)
	field(s.NotIpBlocks, ip, true)
	if len(and) == 0 {
		return anyPrincipal()
	}
	if len(and) == 1 {
		return and[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: and}}}
}

func operationPermission(o *security.Operation) *rbacv3.Permission {
	if o == nil {
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
	}
	var and []*rbacv3.Permission
	field := func(values []string, mk func(string) *rbacv3.Permission, negate bool) {
		if len(values) == 0 {
			return
		}
		var rules []*rbacv3.Permission
		for _, v := range values {
			rules = append(rules, mk(v))
		}
		p := rules[0]
		if len(rules) > 1 {
			p = &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: rules}}}
		}
		if negate {
			p = &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: p}}
		}
		and = append(and, p)
	}
	path := func(v string) *rbacv3.Permission {
		return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{Path: istioString(v)}}}}
	}
	header := func(name string) func(string) *rbacv3.Permission {
		return func(v string) *rbacv3.Permission {
			return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: headerMatcher(name, istioString(v), false)}}
		}
	}
	port := func(v string) *rbacv3.Permission {
		var n uint32
		fmt.Sscanf(v, "%d", &n)
		return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: n}}
	}
	field(o.Paths, path, false)
	field(o.NotPaths, path, true)
	field(o.Methods, header(":method"), false)
	field(o.NotMethods, header(":method"), true)
	field(o.Hosts, header(":authority"), false)
	field(o.NotHosts, header(":authority"), true)
	field(o.Ports, port, false)
	field(o.NotPorts, port, true)
	switch len(and) {
	case 0:
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
	case 1:
		return and[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: and}}}
}

func cidr(v string) *corev3.CidrRange {
	addr, bits := v, -1
	if i := strings.IndexByte(v, '/'); i >= 0 {
		addr = v[:i]
		fmt.Sscanf(v[i+1:], "%d", &bits)
	}
	if bits < 0 {
		bits = 32
		if strings.Contains(addr, ":") {
			bits = 128
		}
	}
	return &corev3.CidrRange{AddressPrefix: addr, PrefixLen: wrapperspb.UInt32(uint32(bits))}
}
