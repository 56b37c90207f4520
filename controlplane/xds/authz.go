package xds

import (
	"strconv"
	"strings"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	security "istio.io/api/security/v1beta1"
)

// What Istio's RBAC builder does with `when` conditions and request
// principals, and what meshlens can enforce of them:
//
//   - request.headers[NAME], source.ip, remote.ip, source.namespace,
//     source.principal, destination.ip, destination.port, connection.sni
//     are matchers Envoy and grpc-go both evaluate (grpc-go: gRFC A41's
//     header, IP and port matchers; SNI is Envoy's only);
//   - requestPrincipals / notRequestPrincipals and request.auth.* keys
//     read the token jwt_authn verified (RequestAuthentication, jwt.go):
//     for Envoy, matchers on jwt_authn's payload metadata under each
//     issuer that applies to the workload (none: they never match).
//     grpc-go verifies no token.
//
// What a node cannot evaluate fails closed, as in Istio: an ALLOW rule
// that needs it is dropped (it allows nothing), a DENY rule applies without
// it (it denies more).

// whenPrincipal is the principal a condition key matches on, ok false when
// the node cannot evaluate the key.
func (t *translator) whenPrincipal(key, value string, issuers []string) (p *rbacv3.Principal, ok bool) {
	grpc := t.node.Flavour == FlavourGRPC
	switch {
	case strings.HasPrefix(key, "request.headers[") && strings.HasSuffix(key, "]"):
		name := strings.ToLower(key[len("request.headers[") : len(key)-1])
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_Header{Header: headerMatcher(name, istioString(value), false)}}, true
	case key == "source.ip":
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: cidr(value)}}, true
	case key == "remote.ip":
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_RemoteIp{RemoteIp: cidr(value)}}, true
	case key == "source.namespace":
		return t.sourcePrincipal(&security.Source{Namespaces: []string{value}}), true
	case key == "source.principal":
		return t.sourcePrincipal(&security.Source{Principals: []string{value}}), true
	case key == "request.auth.principal":
		if grpc {
			return nil, false
		}
		return jwtPrincipal(issuers, value), true
	case key == "request.auth.audiences", key == "request.auth.presenter":
		if grpc {
			return nil, false
		}
		claim := map[string]string{"request.auth.audiences": "aud", "request.auth.presenter": "azp"}[key]
		return jwtClaim(issuers, []string{claim}, value), true
	case strings.HasPrefix(key, "request.auth.claims[") && strings.HasSuffix(key, "]"):
		if grpc {
			return nil, false
		}
		// request.auth.claims[groups] or [a][b]: a path into the claims.
		path := strings.Split(strings.TrimSuffix(strings.TrimPrefix(key, "request.auth.claims["), "]"), "][")
		return jwtClaim(issuers, path, value), true
	}
	return nil, false
}

// whenPermission is the permission a condition key matches on, ok false
// when it is not a permission key or the node cannot evaluate it.
func (t *translator) whenPermission(key, value string) (p *rbacv3.Permission, ok bool) {
	switch key {
	case "destination.ip":
		return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationIp{DestinationIp: cidr(value)}}, true
	case "destination.port":
		n, err := strconv.ParseUint(value, 10, 32)
		if err != nil {
			return nil, false
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: uint32(n)}}, true
	case "connection.sni":
		if t.node.Flavour == FlavourGRPC {
			return nil, false
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_RequestedServerName{RequestedServerName: istioString(value)}}, true
	}
	return nil, false
}

func isPermissionKey(key string) bool {
	switch key {
	case "destination.ip", "destination.port", "connection.sni":
		return true
	}
	return false
}

// jwtPrincipal matches the request principal (ISSUER/SUBJECT) of a token
// that the workload's jwt_authn verified: its payload is in jwt_authn's
// dynamic metadata under the issuer (payload_in_metadata), so a principal
// pattern is split into the issuers it can name and a subject pattern.
// A pattern no issuer of the workload can produce never matches.
func jwtPrincipal(issuers []string, pattern string) *rbacv3.Principal {
	var ids []*rbacv3.Principal
	for _, iss := range issuers {
		switch {
		case pattern == "*":
			ids = append(ids, jwtMetadata(iss, []string{"sub"}, presentValue()))
		case strings.HasPrefix(pattern, iss+"/"):
			ids = append(ids, jwtMetadata(iss, []string{"sub"}, stringOrList(istioString(strings.TrimPrefix(pattern, iss+"/")))))
		case strings.HasSuffix(pattern, "*") && strings.HasPrefix(iss+"/", strings.TrimSuffix(pattern, "*")):
			ids = append(ids, jwtMetadata(iss, []string{"sub"}, presentValue()))
		case strings.HasPrefix(pattern, "*/"):
			ids = append(ids, jwtMetadata(iss, []string{"sub"}, stringOrList(istioString(strings.TrimPrefix(pattern, "*/")))))
		}
	}
	if len(ids) == 0 {
		return notID(anyPrincipal())
	}
	return orIDs(ids)
}

// jwtClaim matches a claim (a path into the payload) of a token of any of
// the workload's issuers: a string, or a list containing the value.
func jwtClaim(issuers []string, path []string, value string) *rbacv3.Principal {
	var ids []*rbacv3.Principal
	for _, iss := range issuers {
		ids = append(ids, jwtMetadata(iss, path, stringOrList(istioString(value))))
	}
	if len(ids) == 0 {
		return notID(anyPrincipal())
	}
	return orIDs(ids)
}

func jwtMetadata(issuer string, path []string, vm *matcherv3.ValueMatcher) *rbacv3.Principal {
	segs := []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: issuer}}}
	for _, k := range path {
		segs = append(segs, &matcherv3.MetadataMatcher_PathSegment{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: k}})
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_SourcedMetadata{SourcedMetadata: &rbacv3.SourcedMetadata{
		MetadataMatcher: &matcherv3.MetadataMatcher{Filter: jwtAuthnFilter, Path: segs, Value: vm},
		MetadataSource:  rbacv3.MetadataSource_DYNAMIC,
	}}}
}

func presentValue() *matcherv3.ValueMatcher {
	return &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_PresentMatch{PresentMatch: true}}
}

func stringOrList(sm *matcherv3.StringMatcher) *matcherv3.ValueMatcher {
	vm := &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: sm}}
	return &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_OrMatch{OrMatch: &matcherv3.OrMatcher{ValueMatchers: []*matcherv3.ValueMatcher{
		vm, {MatchPattern: &matcherv3.ValueMatcher_ListMatch{ListMatch: &matcherv3.ListMatcher{MatchPattern: &matcherv3.ListMatcher_OneOf{OneOf: vm}}}},
	}}}}
}

// requestPrincipals are the matchers of a source's requestPrincipals and
// notRequestPrincipals; ok is false when the node cannot evaluate them
// (they are left out).
func (t *translator) requestPrincipals(s *security.Source, issuers []string) (out []*rbacv3.Principal, ok bool) {
	ok = true
	for _, rp := range []struct {
		values []string
		negate bool
	}{{s.GetRequestPrincipals(), false}, {s.GetNotRequestPrincipals(), true}} {
		if len(rp.values) == 0 {
			continue
		}
		var ids []*rbacv3.Principal
		for _, v := range rp.values {
			p, can := t.whenPrincipal("request.auth.principal", v, issuers)
			if !can {
				ok, ids = false, nil
				break
			}
			ids = append(ids, p)
		}
		if ids == nil {
			continue
		}
		p := orIDs(ids)
		if rp.negate {
			p = notID(p)
		}
		out = append(out, p)
	}
	return out, ok
}

// ruleConditions translates a rule's `when` conditions into principals
// and permissions to AND with the rule's. complete is false when some of
// them cannot be evaluated by this node (and were left out).
func (t *translator) ruleConditions(r *security.Rule, issuers []string) (principals []*rbacv3.Principal, permissions []*rbacv3.Permission, complete bool) {
	complete = true
	for _, c := range r.When {
		for _, vals := range []struct {
			values []string
			negate bool
		}{{c.Values, false}, {c.NotValues, true}} {
			if len(vals.values) == 0 {
				continue
			}
			if isPermissionKey(c.Key) {
				var rules []*rbacv3.Permission
				for _, v := range vals.values {
					p, ok := t.whenPermission(c.Key, v)
					if !ok {
						complete, rules = false, nil
						break
					}
					rules = append(rules, p)
				}
				if rules == nil {
					continue
				}
				p := rules[0]
				if len(rules) > 1 {
					p = &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: rules}}}
				}
				if vals.negate {
					p = &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: p}}
				}
				permissions = append(permissions, p)
				continue
			}
			var ids []*rbacv3.Principal
			for _, v := range vals.values {
				p, ok := t.whenPrincipal(c.Key, v, issuers)
				if !ok {
					complete, ids = false, nil
					break
				}
				ids = append(ids, p)
			}
			if ids == nil {
				continue
			}
			p := orIDs(ids)
			if vals.negate {
				p = notID(p)
			}
			principals = append(principals, p)
		}
	}
	return principals, permissions, complete
}

// andPrincipals ANDs principals, keeping a single one as it is.
func andPrincipals(ps []*rbacv3.Principal) *rbacv3.Principal {
	if len(ps) == 1 {
		return ps[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: ps}}}
}

// andPermissions ANDs permissions, keeping a single one as it is.
func andPermissions(ps []*rbacv3.Permission) *rbacv3.Permission {
	if len(ps) == 1 {
		return ps[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: ps}}}
}
