package rollout

import (
	"regexp"

	networking "istio.io/api/networking/v1"

	"github.com/meshlens/meshlens/controlplane/config"
)

// OwnerAnnotation marks a VirtualService the rollout engine writes, naming
// the rollout ("namespace/name").
const OwnerAnnotation = "meshlens.io/rollout"

// Weights is the traffic split a rollout's routes give plain requests;
// matched requests (canary match, blue-green preview, A/B match) always reach
// the candidate while the rollout progresses.
type Weights struct {
	Stable    int32 `json:"stable"`
	Candidate int32 `json:"candidate"`
	// Matched says whether header/cookie matches route to the candidate.
	Matched bool `json:"matched"`
}

// desiredWeights are the routes of a rollout in a state at a step.
func desiredWeights(s *Spec, st State, step int) Weights {
	switch {
	case st.servesCandidateFully():
		return Weights{Candidate: 100}
	case st.servesStableOnly():
		return Weights{Stable: 100}
	}
	switch {
	case s.Strategy.Canary != nil:
		c := s.Strategy.Canary
		w := int32(0)
		if step >= 0 && step < len(c.Steps) {
			w = c.Steps[step]
		}
		return Weights{Stable: 100 - w, Candidate: w, Matched: len(c.Match) > 0}
	default: // blue-green preview and A/B: only matched traffic
		return Weights{Stable: 100, Matched: true}
	}
}

func (s *Spec) matches() []Match {
	switch {
	case s.Strategy.Canary != nil:
		return s.Strategy.Canary.Match
	case s.Strategy.BlueGreen != nil:
		return s.Strategy.BlueGreen.Preview
	case s.Strategy.AB != nil:
		return s.Strategy.AB.Match
	}
	return nil
}

// virtualService renders the routes the rollout owns: one VirtualService for
// the service's host, so one apply (one xDS push) moves all of its traffic.
func virtualService(ns, name, vsName string, s *Spec, w Weights) *config.Object {
	dest := func(subset string, weight int32) *networking.HTTPRouteDestination {
		return &networking.HTTPRouteDestination{Destination: &networking.Destination{Host: s.Service, Subset: subset}, Weight: weight}
	}
	vs := &networking.VirtualService{Hosts: []string{s.Service}}
	if w.Matched {
		var ms []*networking.HTTPMatchRequest
		for _, m := range s.matches() {
			ms = append(ms, matchRequest(m))
		}
		if len(ms) > 0 {
			vs.Http = append(vs.Http, &networking.HTTPRoute{Name: routeMatch, Match: ms,
				Route: []*networking.HTTPRouteDestination{dest(s.Candidate, 0)}})
		}
	}
	var route []*networking.HTTPRouteDestination
	if w.Stable > 0 {
		route = append(route, dest(s.Stable, w.Stable))
	}
	if w.Candidate > 0 {
		route = append(route, dest(s.Candidate, w.Candidate))
	}
	if len(route) == 1 {
		route[0].Weight = 0 // a single destination takes everything
	}
	vs.Http = append(vs.Http, &networking.HTTPRoute{Name: routeSplit, Route: route})
	return &config.Object{
		APIVersion: "networking.istio.io/v1",
		Kind:       config.KindVirtualService,
		Meta: config.Meta{Name: vsName, Namespace: ns,
			Annotations: map[string]string{OwnerAnnotation: ns + "/" + name}},
		Spec: vs,
	}
}

func matchRequest(m Match) *networking.HTTPMatchRequest {
	if m.Cookie != "" {
		return &networking.HTTPMatchRequest{Headers: map[string]*networking.StringMatch{
			"cookie": {MatchType: &networking.StringMatch_Regex{Regex: cookieRegex(m)}}}}
	}
	sm := &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: m.Exact}}
	if m.Regex != "" {
		sm = &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: m.Regex}}
	}
	return &networking.HTTPMatchRequest{Headers: map[string]*networking.StringMatch{m.Header: sm}}
}

// cookieRegex: gRPC and Envoy see cookies as one "cookie" header: match the
// pair anywhere in it, as Istio users write it.
func cookieRegex(m Match) string {
	return `^(.*;\s*)?` + regexp.QuoteMeta(m.Cookie) + `=` + regexp.QuoteMeta(m.Exact) + `(;.*)?$`
}
