package rollout

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	networking "istio.io/api/networking/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshlens/meshlens/controlplane/config"
)

// APIVersion and Kind of the Rollout object.
const (
	APIVersion = "meshlens.io/v1alpha1"
	Kind       = "Rollout"
)

// Spec is a Rollout's spec as users write it.
type Spec struct {
	// Service is the host whose routes the rollout owns, as written in a
	// VirtualService ("reviews", or a full name). Its short name is the
	// service name the live graph knows.
	Service string `json:"service"`
	// VirtualService is the name of the VirtualService the rollout writes;
	// default: the one that already routes the host, else the service's
	// short name.
	VirtualService string `json:"virtualService,omitempty"`
	// TrafficProvider is where the routes are written: "meshlens" (meshlens'
	// own config store and xDS server), "istio" (the VirtualService held by
	// the Kubernetes API server, for istiod) or "gatewayAPI" (the
	// backendRefs weights of a Gateway API HTTPRoute). Default: meshlens
	// serve --traffic-provider.
	TrafficProvider string `json:"trafficProvider,omitempty"`
	// HTTPRoute is the name of the HTTPRoute a gatewayAPI rollout writes
	// (in the rollout's namespace).
	HTTPRoute string `json:"httpRoute,omitempty"`
	// StableService and CandidateService are the Kubernetes Services of the
	// two versions, the HTTPRoute's backends (gatewayAPI only, as Flagger
	// and Argo Rollouts split traffic for Gateway API).
	StableService    string `json:"stableService,omitempty"`
	CandidateService string `json:"candidateService,omitempty"`
	// Stable and Candidate are DestinationRule subsets of the service (for
	// gatewayAPI, the version labels of the two Services' pods, which the
	// judge compares).
	Stable    string   `json:"stable"`
	Candidate string   `json:"candidate"`
	Strategy  Strategy `json:"strategy"`
	Analysis  Analysis `json:"analysis,omitzero"`
}

// Strategy holds exactly one of its fields.
type Strategy struct {
	Canary    *Canary    `json:"canary,omitempty"`
	BlueGreen *BlueGreen `json:"blueGreen,omitempty"`
	AB        *AB        `json:"ab,omitempty"`
}

// Canary moves weight to the candidate in steps.
type Canary struct {
	// Steps are candidate weights in percent, increasing, ending at 100.
	Steps []int32 `json:"steps"`
	// MinDuration is how long each step lasts at least.
	MinDuration Duration `json:"minDuration"`
	// MinRequests is how many candidate requests a step needs before it
	// may pass.
	MinRequests uint64 `json:"minRequests,omitempty"`
	// Match: requests matching any of these always reach the candidate.
	Match []Match `json:"match,omitempty"`
}

// BlueGreen sends only preview traffic to the candidate until promoted,
// then switches everything at once.
type BlueGreen struct {
	Preview []Match `json:"preview"`
	// AutoPromote promotes once the preview traffic passed the judge for
	// MinDuration and MinRequests; otherwise promotion is manual.
	AutoPromote bool     `json:"autoPromote,omitempty"`
	MinDuration Duration `json:"minDuration,omitzero"`
	MinRequests uint64   `json:"minRequests,omitempty"`
}

// AB sends matching traffic to the candidate for a duration or a request
// count (whichever comes first); if the judge passed, the candidate is then
// promoted.
type AB struct {
	Match    []Match  `json:"match"`
	Duration Duration `json:"duration,omitzero"`
	Requests uint64   `json:"requests,omitempty"`
}

// Match selects requests by one header or one cookie.
type Match struct {
	Header string `json:"header,omitempty"`
	Cookie string `json:"cookie,omitempty"`
	// Exact value; for a header, Regex may be given instead.
	Exact string `json:"exact,omitempty"`
	Regex string `json:"regex,omitempty"`
}

// Analysis tunes the judge. Zero values take the defaults.
type Analysis struct {
	// Interval between verdicts. Default 2s: a verdict reads the in-memory
	// graph, and with failureLimit 2 the interval is most of the time a
	// broken candidate keeps its traffic.
	Interval Duration `json:"interval,omitzero"`
	// Window of live stats a verdict reads, capped at the time since the
	// step started. Default 30s.
	Window Duration `json:"window,omitzero"`
	// MinSamples: below this many requests of the candidate (and, for the
	// comparisons, of the stable version) a verdict is inconclusive: low
	// traffic never decides. Default 50.
	MinSamples uint64 `json:"minSamples,omitempty"`
	// MaxErrorRate of the candidate (0..1). Default 0.05. Tested, not
	// compared: a verdict fails when an exact binomial test puts the
	// candidate's true error rate above it at significance Alpha.
	MaxErrorRate *float64 `json:"maxErrorRate,omitempty"`
	// MaxP99Ms is the candidate's p99 latency limit; 0 means none. A
	// verdict fails when more than 1% of its latency samples are above it,
	// by the same binomial test.
	MaxP99Ms float64 `json:"maxP99Ms,omitempty"`
	// MinSuccess is how many successful candidate requests a step needs
	// before it may pass. Default 0.
	MinSuccess uint64 `json:"minSuccess,omitempty"`
	// Alpha is the significance level of the comparisons. Default 0.01.
	Alpha float64 `json:"alpha,omitempty"`
	// MaxErrorRateIncrease is the increase of the candidate's error rate
	// over stable's (absolute) that the comparison must be confident of: it
	// fails when Fisher's test is significant and the lower 1-Alpha bound of
	// the increase is above this. Default 0.02.
	MaxErrorRateIncrease *float64 `json:"maxErrorRateIncrease,omitempty"`
	// MaxLatencyIncrease is the smallest relative increase of the
	// candidate's median latency over stable's that the rank test may fail
	// on (0.2 = 20%); the increase must also exceed MinLatencyDeltaMs.
	// Defaults 0.2 and 2 ms.
	MaxLatencyIncrease float64 `json:"maxLatencyIncrease,omitempty"`
	MinLatencyDeltaMs  float64 `json:"minLatencyDeltaMs,omitempty"`
	// FailureLimit is how many failing verdicts in a row roll back.
	// Default 2.
	FailureLimit int `json:"failureLimit,omitempty"`
}

func (a Analysis) withDefaults() Analysis {
	if a.Interval.Duration <= 0 {
		a.Interval.Duration = 2 * time.Second
	}
	if a.Window.Duration <= 0 {
		a.Window.Duration = 30 * time.Second
	}
	if a.MinSamples == 0 {
		a.MinSamples = 50
	}
	if a.MaxErrorRate == nil {
		v := 0.05
		a.MaxErrorRate = &v
	}
	if a.Alpha == 0 {
		a.Alpha = 0.01
	}
	if a.MaxErrorRateIncrease == nil {
		v := 0.02
		a.MaxErrorRateIncrease = &v
	}
	if a.MaxLatencyIncrease == 0 {
		a.MaxLatencyIncrease = 0.2
	}
	if a.MinLatencyDeltaMs == 0 {
		a.MinLatencyDeltaMs = 2
	}
	if a.FailureLimit <= 0 {
		a.FailureLimit = 2
	}
	return a
}

// Duration is a time.Duration written as "30s" in YAML and JSON.
type Duration struct{ time.Duration }

// MarshalJSON writes "30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads "30s" (or a number of seconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var secs float64
		if err2 := json.Unmarshal(b, &secs); err2 != nil {
			return fmt.Errorf("want a duration such as \"30s\", got %s", b)
		}
		d.Duration = time.Duration(secs * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as \"30s\": %w", err)
	}
	d.Duration = v
	return nil
}

// KindSpec plugs Rollout into the config registry. domain is the cluster
// domain suffix ("" = cluster.local), as given to config.IstioOptions.
func KindSpec(domain string) config.KindSpec {
	return config.KindSpec{
		APIVersions: []string{APIVersion},
		Kind:        Kind,
		ShortNames:  []string{"ro"},
		Decode: func(js []byte) (any, error) {
			var s Spec
			if err := config.DecodeJSON(js, &s); err != nil {
				return nil, err
			}
			return &s, nil
		},
		Validate: validate,
		Analyze: func(o *config.Object, sn *config.Snapshot) []config.Warning {
			return analyze(o, sn, domain)
		},
	}
}

func validate(o *config.Object) []config.FieldError {
	s := o.Spec.(*Spec)
	var errs []config.FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, config.FieldError{Object: o.Key(), Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if s.Service == "" {
		add("service", "required")
	}
	if s.Stable == "" {
		add("stable", "required: the stable subset")
	}
	if s.Candidate == "" {
		add("candidate", "required: the candidate subset")
	}
	if s.Stable != "" && s.Stable == s.Candidate {
		add("candidate", "must differ from stable (%q)", s.Stable)
	}
	errs = append(errs, validateProvider(o.Key(), s)...)
	n := 0
	if c := s.Strategy.Canary; c != nil {
		n++
		if len(c.Steps) == 0 {
			add("strategy.canary.steps", "at least one step is required")
		}
		prev := int32(0)
		for i, w := range c.Steps {
			if w <= prev || w > 100 {
				add(fmt.Sprintf("strategy.canary.steps[%d]", i), "weights must increase, within 1..100 (got %d after %d)", w, prev)
			}
			prev = w
		}
		if len(c.Steps) > 0 && c.Steps[len(c.Steps)-1] != 100 {
			add("strategy.canary.steps", "the last step must be 100")
		}
		if c.MinDuration.Duration < 0 {
			add("strategy.canary.minDuration", "must not be negative")
		}
		validateMatches(c.Match, "strategy.canary.match", add)
	}
	if b := s.Strategy.BlueGreen; b != nil {
		n++
		if len(b.Preview) == 0 {
			add("strategy.blueGreen.preview", "at least one header or cookie match is required")
		}
		validateMatches(b.Preview, "strategy.blueGreen.preview", add)
	}
	if ab := s.Strategy.AB; ab != nil {
		n++
		if len(ab.Match) == 0 {
			add("strategy.ab.match", "at least one header or cookie match is required")
		}
		if ab.Duration.Duration <= 0 && ab.Requests == 0 {
			add("strategy.ab", "duration or requests is required")
		}
		validateMatches(ab.Match, "strategy.ab.match", add)
	}
	if n != 1 {
		add("strategy", "exactly one of canary, blueGreen, ab is required (got %d)", n)
	}
	a := s.Analysis
	if a.MaxErrorRate != nil && (*a.MaxErrorRate < 0 || *a.MaxErrorRate > 1) {
		add("analysis.maxErrorRate", "must be within 0..1")
	}
	if a.Alpha < 0 || a.Alpha >= 0.5 {
		add("analysis.alpha", "must be within 0..0.5")
	}
	if a.Interval.Duration < 0 || a.Window.Duration < 0 {
		add("analysis", "interval and window must not be negative")
	}
	return errs
}

// analyze reports the subsets a rollout moves traffic between that no
// DestinationRule defines: a warning, as for a VirtualService (the
// DestinationRule may come later, e.g. from the cluster), but until it
// does the rollout's routes fail and its judge rolls it back.
func analyze(o *config.Object, sn *config.Snapshot, domain string) []config.Warning {
	s, ok := o.Spec.(*Spec)
	if !ok {
		return nil
	}
	if s.TrafficProvider == ProviderGatewayAPI {
		return analyzeHTTPRoute(o, s, sn)
	}
	if s.Service == "" || s.Stable == "" || s.Candidate == "" {
		return nil
	}
	fqdn := config.FQDN(s.Service, o.Meta.Namespace, domain)
	subsets := subsetVersions(sn, o.Meta.Namespace, s.Service, domain)
	if subsets == nil {
		return []config.Warning{{Code: config.CodeReferencedResourceNotFound, Object: o.Key(), Field: "service",
			Message: fmt.Sprintf("Referenced destinationrule not found: %q: no DestinationRule defines subsets for host %s", fqdn, fqdn)}}
	}
	var out []config.Warning
	for _, f := range []struct{ field, subset string }{{"stable", s.Stable}, {"candidate", s.Candidate}} {
		if _, ok := subsets[f.subset]; !ok {
			out = append(out, config.Warning{Code: config.CodeReferencedResourceNotFound, Object: o.Key(), Field: f.field,
				Message: fmt.Sprintf("Referenced host+subset in destinationrule not found: %q: no subset %q in the DestinationRule of %s", fqdn+"+"+f.subset, f.subset, s.Service)})
		}
	}
	return out
}

// analyzeHTTPRoute reports, for a gatewayAPI rollout, an HTTPRoute that
// meshlens' config (read from the same cluster) does not hold, or one
// with no rule whose backends are the rollout's Services: the rollout
// would wait for it (NotFound). Subsets do not matter to it. Without
// Gateway API objects in the config (meshlens not reading the cluster's),
// nothing is reported.
func analyzeHTTPRoute(o *config.Object, s *Spec, sn *config.Snapshot) []config.Warning {
	if s.HTTPRoute == "" || len(sn.OfKind(config.KindHTTPRoute)) == 0 {
		return nil
	}
	hr := sn.Get(config.KindHTTPRoute, o.Meta.Namespace, s.HTTPRoute)
	if hr == nil {
		return []config.Warning{{Code: config.CodeReferencedResourceNotFound, Object: o.Key(), Field: "httpRoute",
			Message: fmt.Sprintf("Referenced HTTPRoute not found: %q: the rollout waits until it exists", o.Meta.Namespace+"/"+s.HTTPRoute)}}
	}
	spec, ok := hr.Spec.(*gatewayv1.HTTPRouteSpec)
	if !ok {
		return nil
	}
	for _, r := range spec.Rules {
		for _, b := range r.BackendRefs {
			if config.BackendKind(b.BackendObjectReference) == "Service" && (string(b.Name) == s.StableService || string(b.Name) == s.CandidateService) {
				return nil
			}
		}
	}
	return []config.Warning{{Code: config.CodeReferencedResourceNotFound, Object: o.Key(), Field: "httpRoute",
		Message: fmt.Sprintf("HTTPRoute %s/%s has no rule whose backendRefs name the Services %s or %s: the rollout has no weights to move", o.Meta.Namespace, s.HTTPRoute, s.StableService, s.CandidateService)}}
}

// validateProvider checks the fields of spec.trafficProvider. A rollout that
// names none gets the server's default, checked when the engine takes it on
// (providerFields).
func validateProvider(key string, s *Spec) []config.FieldError {
	if s.TrafficProvider != "" && !slices.Contains(Providers, s.TrafficProvider) {
		return []config.FieldError{{Object: key, Field: "trafficProvider",
			Message: fmt.Sprintf("unknown traffic provider %q: want one of %s", s.TrafficProvider, strings.Join(Providers, ", "))}}
	}
	if s.TrafficProvider == "" {
		return nil
	}
	var errs []config.FieldError
	for _, m := range providerFields(s, s.TrafficProvider) {
		errs = append(errs, config.FieldError{Object: key, Field: m[0], Message: m[1]})
	}
	return errs
}

// providerFields lists (field, message) pairs for the fields a provider
// needs or does not take.
func providerFields(s *Spec, provider string) [][2]string {
	var out [][2]string
	if provider == ProviderGatewayAPI {
		if s.HTTPRoute == "" {
			out = append(out, [2]string{"httpRoute", "required with trafficProvider gatewayAPI: the HTTPRoute whose backendRefs weights the rollout moves"})
		}
		if s.StableService == "" {
			out = append(out, [2]string{"stableService", "required with trafficProvider gatewayAPI: the Service of the stable version"})
		}
		if s.CandidateService == "" {
			out = append(out, [2]string{"candidateService", "required with trafficProvider gatewayAPI: the Service of the candidate version"})
		}
		if s.StableService != "" && s.StableService == s.CandidateService {
			out = append(out, [2]string{"candidateService", fmt.Sprintf("must differ from stableService (%q)", s.StableService)})
		}
		if s.VirtualService != "" {
			out = append(out, [2]string{"virtualService", "not used with trafficProvider gatewayAPI (the rollout writes spec.httpRoute)"})
		}
		return out
	}
	for _, f := range []struct{ field, value string }{{"httpRoute", s.HTTPRoute}, {"stableService", s.StableService}, {"candidateService", s.CandidateService}} {
		if f.value != "" {
			out = append(out, [2]string{f.field, "only used with trafficProvider gatewayAPI"})
		}
	}
	return out
}

func validateMatches(ms []Match, path string, add func(string, string, ...any)) {
	for i, m := range ms {
		p := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case (m.Header == "") == (m.Cookie == ""):
			add(p, "exactly one of header, cookie is required")
		case m.Cookie != "" && (m.Exact == "" || m.Regex != ""):
			add(p, "a cookie match needs exact (and no regex)")
		case m.Header != "" && (m.Exact == "") == (m.Regex == ""):
			add(p, "exactly one of exact, regex is required")
		}
	}
}

// subsetVersions maps the subsets of the DestinationRule for the service to
// the version label the live graph knows them by (the subset's "version"
// label, else its name). Nil when no DestinationRule covers the host.
func subsetVersions(sn *config.Snapshot, ns, service, domain string) map[string]string {
	fqdn := config.FQDN(service, ns, domain)
	for _, o := range sn.OfKind(config.KindDestinationRule) {
		dr, ok := o.Spec.(*networking.DestinationRule)
		if !ok || config.FQDN(dr.GetHost(), o.Meta.Namespace, domain) != fqdn {
			continue
		}
		out := map[string]string{}
		for _, s := range dr.GetSubsets() {
			v := s.GetLabels()["version"]
			if v == "" {
				v = s.GetName()
			}
			out[s.GetName()] = v
		}
		return out
	}
	return nil
}

// shortName is the service name the graph knows: the host's first label.
func shortName(host string) string {
	name, _, _ := strings.Cut(host, ".")
	return name
}

func (s *Spec) vsName() string {
	if s.VirtualService != "" {
		return s.VirtualService
	}
	return shortName(s.Service)
}
