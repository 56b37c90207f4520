package kube

import (
	"strings"
	"testing"

	networking "istio.io/api/networking/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshlens/meshlens/rollout"
)

// The routes a rollout writes into a VirtualService it shares with others:
// which routes it takes over, and what it keeps. Pure functions, no cluster.
func TestIstioMergeKeepsRoutesTheRolloutDoesNotOwn(t *testing.T) {
	spec := &rollout.Spec{Service: "reviews", Stable: "v1", Candidate: "v2",
		Strategy: rollout.Strategy{Canary: &rollout.Canary{Steps: []int32{20, 100}, Match: []rollout.Match{{Header: "end-user", Exact: "jason"}}}}}
	tgt := rollout.Target{Namespace: "bookinfo", Name: "reviews", Spec: spec, VirtualService: "reviews"}
	p := &istioTraffic{NewTraffic(nil, nil, nil, nil, "", nil)}
	route := func(name, match, host, subset string) *networking.HTTPRoute {
		r := &networking.HTTPRoute{Name: name, Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: host, Subset: subset}}}}
		if match != "" {
			r.Match = []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{match: {MatchType: &networking.StringMatch_Exact{Exact: "1"}}}}}
		}
		return r
	}
	w := rollout.Weights{Stable: 80, Candidate: 20, Matched: true}
	for _, tc := range []struct {
		name string
		cur  []*networking.HTTPRoute
		want string // route names after the merge
	}{
		{"takes over the host's default route in place", []*networking.HTTPRoute{
			route("debug", "x-debug", "reviews", "v1"), route("", "", "reviews.bookinfo.svc.cluster.local", "v1"), route("tail", "x-tail", "reviews", "v1")},
			"debug candidate-match split tail"},
		{"a default route to another host is not the rollout's", []*networking.HTTPRoute{
			route("other", "", "ratings", "v1")}, "other candidate-match split"},
		{"its own routes are replaced where they are", []*networking.HTTPRoute{
			route("debug", "x-debug", "reviews", "v1"), route("candidate-match", "end-user", "reviews", "v2"), route("split", "", "reviews", "v1"), route("", "", "reviews", "v1")},
			"debug candidate-match split "},
		{"an empty VirtualService gets the routes", nil, "candidate-match split"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := p.merge(tc.cur, tgt, w)
			var names []string
			for _, r := range got {
				names = append(names, r.GetName())
			}
			if strings.Join(names, " ") != tc.want {
				t.Fatalf("routes %q, want %q", strings.Join(names, " "), tc.want)
			}
			if again := p.merge(got, tgt, w); !routesEqual(again, got) {
				t.Errorf("merging twice changes the routes: %v", again)
			}
			for _, r := range tc.cur {
				if r.GetName() == "debug" || r.GetName() == "tail" || r.GetName() == "other" {
					found := false
					for _, g := range got {
						found = found || routeEqual(g, r)
					}
					if !found {
						t.Errorf("route %q was changed", r.GetName())
					}
				}
			}
		})
	}
}

// The rules a rollout writes into an HTTPRoute: weights on every rule to the
// two Services (a rule with only the stable one gains the candidate, same
// port), the candidate-match rule before them, other rules untouched.
func TestGatewayMergeSetsWeightsOfTheRulesToTheTwoServices(t *testing.T) {
	spec := &rollout.Spec{Service: "reviews", Stable: "v1", Candidate: "v2", HTTPRoute: "reviews", StableService: "reviews-v1", CandidateService: "reviews-v2",
		Strategy: rollout.Strategy{Canary: &rollout.Canary{Steps: []int32{20, 100}, Match: []rollout.Match{{Cookie: "canary", Exact: "yes"}}}}}
	tgt := rollout.Target{Namespace: "bookinfo", Name: "reviews", Spec: spec}
	p := &gatewayTraffic{NewTraffic(nil, nil, nil, nil, "", nil)}
	var cur []gatewayv1.HTTPRouteRule
	if err := yaml.Unmarshal([]byte(`
- matches: [{path: {type: PathPrefix, value: /admin}}]
  backendRefs: [{name: admin, port: 80}]
- matches: [{path: {type: PathPrefix, value: /}}]
  backendRefs: [{name: reviews-v1, port: 9080}]
  timeouts: {request: 5s}
`), &cur); err != nil {
		t.Fatal(err)
	}
	got, err := p.merge(cur, tgt, rollout.Weights{Stable: 80, Candidate: 20, Matched: true})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := yaml.Marshal(got)
	if len(got) != 3 || !rulesEqual(got[:1], cur[:1]) {
		t.Fatalf("rules:\n%s", out)
	}
	m, split := got[1], got[2]
	if m.Name == nil || *m.Name != "candidate-match" || *m.Matches[0].Headers[0].Type != gatewayv1.HeaderMatchRegularExpression ||
		m.Matches[0].Headers[0].Name != "cookie" || m.BackendRefs[0].Name != "reviews-v2" || *m.BackendRefs[0].Port != 9080 {
		t.Errorf("candidate-match rule:\n%s", out)
	}
	if len(split.BackendRefs) != 2 || *split.BackendRefs[0].Weight != 80 || *split.BackendRefs[1].Weight != 20 ||
		split.BackendRefs[1].Name != "reviews-v2" || *split.BackendRefs[1].Port != 9080 || split.Timeouts == nil {
		t.Errorf("split rule:\n%s", out)
	}
	back, err := p.merge(got, tgt, rollout.Weights{Stable: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != 2 || *back[1].BackendRefs[0].Weight != 100 || *back[1].BackendRefs[1].Weight != 0 {
		out, _ := yaml.Marshal(back)
		t.Errorf("back on stable:\n%s", out)
	}
	if _, err := p.merge(cur[:1], tgt, rollout.Weights{Stable: 100}); err == nil || !strings.Contains(err.Error(), "no rule whose backendRefs are the Services reviews-v1") {
		t.Errorf("a route without a rule to the Services: %v", err)
	}
}
