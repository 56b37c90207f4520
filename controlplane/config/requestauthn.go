package config

import (
	"fmt"
	"net/url"
	"strings"

	security "istio.io/api/security/v1"
)

// KindRequestAuthentication is Istio's RequestAuthentication
// (security.istio.io): the JWTs a workload accepts (issuer, keys, where the
// token is, what to pass on). A request with an invalid token is refused;
// one without a token is let through, for AuthorizationPolicy to decide.
const KindRequestAuthentication = "RequestAuthentication"

func (v *istioValidator) requestAuthentication(o *Object) []FieldError {
	ra, ok := o.Spec.(*security.RequestAuthentication)
	if !ok {
		return []FieldError{{Object: o.Key(), Message: fmt.Sprintf("spec is %T, want RequestAuthentication", o.Spec)}}
	}
	fe := &fieldErrs{object: o.Key()}
	checkGeneric(ra, fe)
	if ra.GetSelector() != nil && (len(ra.GetTargetRef().GetName()) > 0 || len(ra.GetTargetRefs()) > 0) {
		fe.add("selector", "only one of selector or targetRefs can be set")
	}
	for k := range ra.GetSelector().GetMatchLabels() {
		if k == "" {
			fe.add("selector.matchLabels", "label keys must not be empty")
		}
	}
	issuers := map[string]int{}
	for i, r := range ra.GetJwtRules() {
		p := indexPath("jwtRules", i)
		if r.GetIssuer() == "" {
			fe.add(joinPath(p, "issuer"), "issuer must be set")
		} else if prev, dup := issuers[r.GetIssuer()]; dup {
			fe.add(joinPath(p, "issuer"), "issuer %q is also jwtRules[%d]'s", r.GetIssuer(), prev)
		} else {
			issuers[r.GetIssuer()] = i
		}
		if u := r.GetJwksUri(); u != "" {
			pu, err := url.Parse(u)
			if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
				fe.add(joinPath(p, "jwksUri"), "jwksUri %q must be an http or https URL with a host", u)
			}
		}
		for j, a := range r.GetAudiences() {
			if a == "" {
				fe.add(indexPath(joinPath(p, "audiences"), j), "audience must not be empty")
			}
		}
		for j, h := range r.GetFromHeaders() {
			if h.GetName() == "" {
				fe.add(indexPath(joinPath(p, "fromHeaders"), j)+".name", "location header name must be provided")
			}
		}
		for j, q := range r.GetFromParams() {
			if q == "" {
				fe.add(indexPath(joinPath(p, "fromParams"), j), "location query must be provided")
			}
		}
		if h := r.GetOutputPayloadToHeader(); h != "" && !validHeaderName(h) {
			fe.add(joinPath(p, "outputPayloadToHeader"), "%q is not a valid header name", h)
		}
		outHeaders := map[string]int{}
		for j, c := range r.GetOutputClaimToHeaders() {
			cp := indexPath(joinPath(p, "outputClaimToHeaders"), j)
			switch h := c.GetHeader(); {
			case h == "":
				fe.add(joinPath(cp, "header"), "header must be set: the request header the claim is copied to")
			case !validHeaderName(h):
				fe.add(joinPath(cp, "header"), "%q is not a valid header name: letters, digits, '-' and '_'", h)
			default:
				if prev, dup := outHeaders[strings.ToLower(h)]; dup {
					fe.add(joinPath(cp, "header"), "header %q is also outputClaimToHeaders[%d]'s", h, prev)
				}
				outHeaders[strings.ToLower(h)] = j
			}
			if c.GetClaim() == "" {
				fe.add(joinPath(cp, "claim"), "claim must be set: the name of the claim to copy (nested claims as a.b)")
			}
		}
		positive(r.GetTimeout(), joinPath(p, "timeout"), fe)
	}
	return fe.errs
}

func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for _, c := range h {
		if !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// analyzeRequestAuthentication reports a jwksUri whose host no
// ServiceEntry or Kubernetes Service defines: meshlens fetches the keys
// itself and sends them inline (package jwks), but until it has them the
// proxies would fetch them through the outbound cluster of that host,
// which does not exist, so tokens of that issuer are refused meanwhile, and
// for good if meshlens cannot reach the host either (fails closed); and an
// issuer whose keys meshlens tried and failed to fetch (JWKSUnavailable),
// with the URL and the last error, until they are fetched.
func (v *istioValidator) analyzeRequestAuthentication(o *Object, sn *Snapshot) []Warning {
	ra, ok := o.Spec.(*security.RequestAuthentication)
	if !ok {
		return nil
	}
	w := &warns{object: o.Key()}
	idx := v.index(sn)
	for i, r := range ra.GetJwtRules() {
		if r.GetJwks() != "" {
			continue
		}
		if v.opts.JWKSUnavailable != nil && r.GetIssuer() != "" {
			if at, why, ok := v.opts.JWKSUnavailable(r.GetIssuer(), r.GetJwksUri()); ok {
				field := indexPath("jwtRules", i) + ".issuer"
				if r.GetJwksUri() != "" {
					field = indexPath("jwtRules", i) + ".jwksUri"
				}
				w.add(CodeJWKSUnavailable, field,
					"The keys of issuer %q cannot be fetched from %s: %s; tokens of this issuer are refused until its keys are fetched", r.GetIssuer(), at, why)
			}
		}
		if r.GetJwksUri() == "" {
			continue
		}
		u, err := url.Parse(r.GetJwksUri())
		if err != nil || u.Hostname() == "" {
			continue
		}
		host := strings.ToLower(u.Hostname())
		if !idx.resolves(host, v.opts.KnownHost) {
			w.add(CodeReferencedResourceNotFound, indexPath("jwtRules", i)+".jwksUri",
				"Referenced host not found: %q: no ServiceEntry or Kubernetes Service defines the jwksUri host, so proxies cannot fetch the keys themselves: tokens of issuer %q are refused (fails closed) until meshlens has fetched them and sends them inline, and for good if meshlens cannot reach the host either (meshlens_jwks_unavailable)", host, r.GetIssuer())
		}
	}
	return w.out
}
