package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshlens/meshlens/rollout"
)

// gatewayTraffic is the "gatewayAPI" provider: the rollout moves the
// backendRefs weights of a gateway.networking.k8s.io/v1 HTTPRoute between
// two Services (spec.stableService, spec.candidateService), as Flagger and
// Argo Rollouts do for Gateway API.
//
// Which rules it owns: every rule whose backends are only those two
// Services (their matches, filters and timeouts are kept; their
// backendRefs become stable and candidate with the rollout's weights), and
// the rule named "candidate-match" it adds for header/cookie matches (a
// cookie is matched as a regular expression on the cookie header). Other
// rules, hostnames and parentRefs are kept as they are.
type gatewayTraffic struct{ *Traffic }

const gatewayMatchRule = "candidate-match"

func (p *gatewayTraffic) routeName(t rollout.Target) string {
	return "HTTPRoute " + t.Namespace + "/" + t.Spec.HTTPRoute
}

func (p *gatewayTraffic) Apply(ctx context.Context, t rollout.Target, prev *rollout.Weights, w rollout.Weights) (rollout.Written, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	// The Services must exist where traffic goes (a backend whose Service
	// is missing fails its share of requests); a rollback to stable never
	// waits for the candidate's.
	for _, s := range []struct{ field, name string }{
		{"stableService", t.Spec.StableService}, {"candidateService", t.Spec.CandidateService}} {
		sendsTo := (s.field == "stableService" && w.Stable > 0) || (s.field == "candidateService" && (w.Candidate > 0 || w.Matched))
		if !sendsTo {
			continue
		}
		if _, err := p.client.CoreV1().Services(t.Namespace).Get(ctx, s.name, metav1.GetOptions{}); err != nil {
			return rollout.Written{}, apiErr(fmt.Sprintf("Service %s/%s (spec.%s), a backend of %s", t.Namespace, s.name, s.field, p.routeName(t)), err)
		}
	}
	api := p.gateway.GatewayV1().HTTPRoutes(t.Namespace)
	for attempt := 1; ; attempt++ {
		hr, err := api.Get(ctx, t.Spec.HTTPRoute, metav1.GetOptions{})
		if err != nil {
			return rollout.Written{}, apiErr("read "+p.routeName(t), err)
		}
		if err := managedElsewhere(p.routeName(t), hr, t.Owner()); err != nil {
			return rollout.Written{}, err
		}
		cur := hr.Spec.Rules
		want, err := p.merge(cur, t, w)
		if err != nil {
			return rollout.Written{}, err
		}
		if prev != nil && !rulesEqual(want, cur) {
			if was, err := p.merge(cur, t, *prev); err != nil || !rulesEqual(was, cur) {
				return rollout.Written{}, p.edited(t, cur, *prev)
			}
		}
		if rulesEqual(want, cur) && hr.Annotations[rollout.OwnerAnnotation] == t.Owner() {
			return rollout.Written{Revision: hr.ResourceVersion}, nil
		}
		hr = hr.DeepCopy()
		hr.Spec.Rules = want
		markOwned(hr, t.Owner())
		out, err := api.Update(ctx, hr, metav1.UpdateOptions{FieldManager: "meshlens"})
		if apierrors.IsConflict(err) && attempt < maxConflicts {
			continue
		}
		if err != nil {
			return rollout.Written{}, apiErr(fmt.Sprintf("update %s to %s", p.routeName(t), weightsText(w)), err)
		}
		return rollout.Written{Changed: true, Revision: out.ResourceVersion}, nil
	}
}

func (p *gatewayTraffic) Check(ctx context.Context, t rollout.Target, applied rollout.Weights) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	hr, err := p.gateway.GatewayV1().HTTPRoutes(t.Namespace).Get(ctx, t.Spec.HTTPRoute, metav1.GetOptions{})
	if err != nil {
		return apiErr("read "+p.routeName(t), err)
	}
	if err := managedElsewhere(p.routeName(t), hr, t.Owner()); err != nil {
		return err
	}
	if was, err := p.merge(hr.Spec.Rules, t, applied); err != nil || !rulesEqual(was, hr.Spec.Rules) {
		return p.edited(t, hr.Spec.Rules, applied)
	}
	return nil
}

func (p *gatewayTraffic) Release(ctx context.Context, t rollout.Target, prev *rollout.Weights, toStable bool) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	api := p.gateway.GatewayV1().HTTPRoutes(t.Namespace)
	for attempt := 1; ; attempt++ {
		hr, err := api.Get(ctx, t.Spec.HTTPRoute, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return apiErr("read "+p.routeName(t), err)
		}
		if hr.Annotations[rollout.OwnerAnnotation] != t.Owner() {
			return nil
		}
		hr = hr.DeepCopy()
		if toStable && prev != nil {
			if was, err := p.merge(hr.Spec.Rules, t, *prev); err == nil && rulesEqual(was, hr.Spec.Rules) {
				hr.Spec.Rules, _ = p.merge(hr.Spec.Rules, t, rollout.Weights{Stable: 100})
			}
		}
		delete(hr.Annotations, rollout.OwnerAnnotation)
		_, err = api.Update(ctx, hr, metav1.UpdateOptions{FieldManager: "meshlens"})
		if apierrors.IsConflict(err) && attempt < maxConflicts {
			continue
		}
		if err != nil {
			return apiErr("release "+p.routeName(t), err)
		}
		return nil
	}
}

// isBackend says whether a backendRef is the Service name in the route's
// namespace.
func isBackend(ref gatewayv1.HTTPBackendRef, ns, name string) bool {
	return (ref.Group == nil || *ref.Group == "") && (ref.Kind == nil || *ref.Kind == "Service") &&
		(ref.Namespace == nil || string(*ref.Namespace) == ns) && string(ref.Name) == name
}

// ownedRule says whether a rule is one whose weights the rollout sets: its
// backends are only the stable and candidate Services.
func ownedRule(r gatewayv1.HTTPRouteRule, t rollout.Target) bool {
	if r.Name != nil && *r.Name == gatewayMatchRule || len(r.BackendRefs) == 0 {
		return false
	}
	for _, ref := range r.BackendRefs {
		if !isBackend(ref, t.Namespace, t.Spec.StableService) && !isBackend(ref, t.Namespace, t.Spec.CandidateService) {
			return false
		}
	}
	return true
}

// merge sets the weights of the owned rules to w and adds (or removes) the
// candidate-match rule before the first of them.
func (p *gatewayTraffic) merge(cur []gatewayv1.HTTPRouteRule, t rollout.Target, w rollout.Weights) ([]gatewayv1.HTTPRouteRule, error) {
	out := make([]gatewayv1.HTTPRouteRule, 0, len(cur)+1)
	found := false
	for _, r := range cur {
		if r.Name != nil && *r.Name == gatewayMatchRule {
			continue // rendered again below
		}
		if !ownedRule(r, t) {
			out = append(out, r)
			continue
		}
		var stable, cand *gatewayv1.HTTPBackendRef
		for i := range r.BackendRefs {
			if isBackend(r.BackendRefs[i], t.Namespace, t.Spec.StableService) && stable == nil {
				stable = r.BackendRefs[i].DeepCopy()
			} else if isBackend(r.BackendRefs[i], t.Namespace, t.Spec.CandidateService) && cand == nil {
				cand = r.BackendRefs[i].DeepCopy()
			}
		}
		switch {
		case stable == nil:
			stable = cand.DeepCopy()
			stable.Name = gatewayv1.ObjectName(t.Spec.StableService)
		case cand == nil:
			cand = stable.DeepCopy()
			cand.Name = gatewayv1.ObjectName(t.Spec.CandidateService)
		}
		stable.Weight, cand.Weight = ptr(w.Stable), ptr(w.Candidate)
		if !found && w.Matched {
			if m := p.matchRule(t, *cand); m != nil {
				out = append(out, *m)
			}
		}
		found = true
		r = *r.DeepCopy()
		r.BackendRefs = []gatewayv1.HTTPBackendRef{*stable, *cand}
		out = append(out, r)
	}
	if !found {
		return nil, fmt.Errorf("%s has no rule whose backendRefs are the Services %s and/or %s: %w",
			p.routeName(t), t.Spec.StableService, t.Spec.CandidateService, rollout.ErrMissing)
	}
	return out, nil
}

// matchRule sends requests matching the rollout's header/cookie matches to
// the candidate. Written out in full (path, match types, weight) as the API
// server would default it, so that what is read back compares equal.
func (p *gatewayTraffic) matchRule(t rollout.Target, cand gatewayv1.HTTPBackendRef) *gatewayv1.HTTPRouteRule {
	ms := t.Spec.Matches()
	if len(ms) == 0 {
		return nil
	}
	r := gatewayv1.HTTPRouteRule{Name: ptr(gatewayv1.SectionName(gatewayMatchRule))}
	for _, m := range ms {
		h := gatewayv1.HTTPHeaderMatch{Type: ptr(gatewayv1.HeaderMatchExact), Name: gatewayv1.HTTPHeaderName(m.Header), Value: m.Exact}
		switch {
		case m.Cookie != "":
			h = gatewayv1.HTTPHeaderMatch{Type: ptr(gatewayv1.HeaderMatchRegularExpression), Name: "cookie", Value: rollout.CookieRegex(m)}
		case m.Regex != "":
			h.Type, h.Value = ptr(gatewayv1.HeaderMatchRegularExpression), m.Regex
		}
		r.Matches = append(r.Matches, gatewayv1.HTTPRouteMatch{
			Path:    &gatewayv1.HTTPPathMatch{Type: ptr(gatewayv1.PathMatchPathPrefix), Value: ptr("/")},
			Headers: []gatewayv1.HTTPHeaderMatch{h},
		})
	}
	cand.Weight = ptr(int32(1))
	r.BackendRefs = []gatewayv1.HTTPBackendRef{cand}
	return &r
}

func (p *gatewayTraffic) edited(t rollout.Target, cur []gatewayv1.HTTPRouteRule, prev rollout.Weights) error {
	var now []string
	for _, r := range cur {
		if !ownedRule(r, t) {
			continue
		}
		for _, ref := range r.BackendRefs {
			wt := int32(1)
			if ref.Weight != nil {
				wt = *ref.Weight
			}
			now = append(now, fmt.Sprintf("%s %d", ref.Name, wt))
		}
	}
	slices.Sort(now)
	return fmt.Errorf("%s no longer holds what the rollout wrote (%s); its backends are now %s: %w",
		p.routeName(t), weightsText(prev), strings.Join(now, ", "), rollout.ErrEdited)
}

// rulesEqual compares rules as the API server stores them (JSON: unset and
// empty are the same).
func rulesEqual(a, b []gatewayv1.HTTPRouteRule) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

func ptr[T any](v T) *T { return &v }
