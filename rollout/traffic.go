package rollout

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	networking "istio.io/api/networking/v1"

	"github.com/meshlens/meshlens/controlplane/config"
)

// Traffic providers: where a rollout's routes take effect.
const (
	// ProviderMeshlens writes the VirtualService into meshlens' own config
	// store, which its xDS server pushes (proxyless gRPC, sidecars pointed
	// at meshlens).
	ProviderMeshlens = "meshlens"
	// ProviderIstio writes the networking.istio.io/v1 VirtualService held
	// by the Kubernetes API server, which istiod pushes.
	ProviderIstio = "istio"
	// ProviderGatewayAPI writes the backendRefs weights of a
	// gateway.networking.k8s.io/v1 HTTPRoute held by the API server.
	ProviderGatewayAPI = "gatewayAPI"
)

// Providers lists the valid values of spec.trafficProvider.
var Providers = []string{ProviderMeshlens, ProviderIstio, ProviderGatewayAPI}

// What a Traffic provider's errors mean to the engine (wrapped with %w, so
// errors.Is tells them apart).
var (
	// ErrUnavailable: the write did not land (API server down, timeouts,
	// conflicts that kept coming back). Retried until it lands.
	ErrUnavailable = errors.New("routes not written: the API server is unavailable")
	// ErrMissing: the routing object (or a Service or subset it needs) does
	// not exist yet. Nothing is written; retried until it appears.
	ErrMissing = errors.New("routing object not found")
	// ErrRefused: the API server refused the write (RBAC, admission,
	// validation). The rollout stops in state "refused".
	ErrRefused = errors.New("the API server refused the write")
	// ErrManaged: another controller (Flagger, Argo Rollouts, another
	// Rollout) manages the object. Nothing is written; the rollout stops in
	// state "refused".
	ErrManaged = errors.New("the routing object is managed by another controller")
	// ErrEdited: the object no longer holds what the rollout last wrote
	// (someone changed it). Nothing is written; the rollout pauses until an
	// operator resumes (which writes the rollout's routes over the change),
	// promotes or aborts.
	ErrEdited = errors.New("the routes were changed by someone else")
)

// Target is what a provider needs to know of one rollout.
type Target struct {
	// Namespace and Name of the Rollout.
	Namespace, Name string
	Spec            *Spec
	// VirtualService is the name of the VirtualService the rollout writes
	// (meshlens and istio providers).
	VirtualService string
}

// Owner is the value of OwnerAnnotation on the objects the rollout writes.
func (t Target) Owner() string { return t.Namespace + "/" + t.Name }

// Written says what Apply did.
type Written struct {
	// Changed is false when the routes already said what was asked:
	// nothing was written.
	Changed bool
	// Revision names the routes now in force: the config store's version
	// (meshlens) or the object's resourceVersion (Kubernetes).
	Revision string
}

// Traffic moves a rollout's traffic: it makes the routes the rollout owns
// say w. Implementations: the config store (meshlens, in this package) and
// the Kubernetes API (istio, gatewayAPI, in controlplane/kube).
type Traffic interface {
	// Apply writes the routes for w in one write. prev is what the rollout
	// last wrote there; when the routes no longer hold it, Apply writes
	// nothing and returns ErrEdited. prev nil takes the routes over as they
	// are (the first write, or after an operator decided).
	Apply(ctx context.Context, t Target, prev *Weights, w Weights) (Written, error)
	// Check reports whether the routes still hold applied (ErrEdited if
	// not, ErrMissing if the object is gone); nil when they do or when the
	// provider cannot be changed behind the rollout's back.
	Check(ctx context.Context, t Target, applied Weights) error
	// Release lets go of the routes of a deleted rollout: when toStable,
	// they are put on stable unless someone else changed them since prev;
	// the owner mark is removed.
	Release(ctx context.Context, t Target, prev *Weights, toStable bool) error
}

// storeTraffic is the meshlens provider: the rollout's VirtualService goes
// through config.Store.Apply (validated, persisted, then one xDS push).
type storeTraffic struct {
	e *Engine
}

func (p storeTraffic) Apply(ctx context.Context, t Target, _ *Weights, w Weights) (Written, error) {
	vs := virtualService(t.Namespace, t.Name, t.VirtualService, t.Spec, w)
	before := p.e.store.Snapshot().Version
	sn, ws, err := p.e.store.Apply(ctx, []*config.Object{vs})
	for _, w := range ws {
		// Accepted, as Istio would, but traffic to a missing subset fails:
		// the judge sees it; the log says why.
		p.e.logger.Warn("rollout routes have an analysis finding", "rollout", t.Owner(), "code", w.Code, "field", w.Field, "message", w.Message)
	}
	if err != nil {
		return Written{}, err
	}
	return Written{Changed: sn.Version != before, Revision: strconv.FormatUint(sn.Version, 10)}, nil
}

// Check: the store refuses changes of the rollout's VirtualService from
// other sources only by precedence, and the rollout re-applies its routes
// whenever they differ, so there is nothing to detect.
func (storeTraffic) Check(context.Context, Target, Weights) error { return nil }

// Release leaves the VirtualService as it is: in meshlens' own store it is
// config like any other, which the operator edits or deletes.
func (storeTraffic) Release(context.Context, Target, *Weights, bool) error { return nil }

// HTTPRoutes are the routes of the rollout's host that a rollout owns in a
// VirtualService for weights w: a "candidate-match" route when matched
// traffic goes to the candidate, then the "split" route. Providers that
// merge them into a VirtualService they do not wholly own replace the
// routes of these names (RouteNames).
func HTTPRoutes(s *Spec, w Weights) []*networking.HTTPRoute {
	return virtualService("", "", "", s, w).Spec.(*networking.VirtualService).GetHttp()
}

// RouteNames are the names of the routes HTTPRoutes renders.
var RouteNames = []string{routeMatch, routeSplit}

const (
	routeMatch = "candidate-match"
	routeSplit = "split"
)

// Matches are the header/cookie matches that send requests to the
// candidate while the rollout runs (canary match, blue-green preview, A/B).
func (s *Spec) Matches() []Match { return s.matches() }

// CookieRegex is the regular expression a "cookie" header is matched with
// for a cookie match, as Istio users write it.
func CookieRegex(m Match) string { return cookieRegex(m) }

// providerOf is the provider a rollout uses.
func (e *Engine) providerOf(s *Spec) (Traffic, string, error) {
	name := s.TrafficProvider
	if name == "" {
		name = e.opts.TrafficProvider
	}
	if name == "" {
		name = ProviderMeshlens
	}
	if name == ProviderMeshlens {
		return storeTraffic{e}, name, nil
	}
	if p, ok := e.opts.Traffic[name]; ok && p != nil {
		return p, name, nil
	}
	return nil, name, fmt.Errorf("traffic provider %q needs the Kubernetes cluster: run meshlens serve with --kubeconfig (or in a pod)", name)
}

// Condition is one of a rollout's status conditions, as metav1.Condition.
type Condition struct {
	Type               string    `json:"type"`
	Status             string    `json:"status"` // "True", "False", "Unknown"
	Reason             string    `json:"reason"`
	Message            string    `json:"message"`
	LastTransitionTime time.Time `json:"lastTransitionTime"`
}

// ConditionRoutesApplied says whether the routes hold the rollout's weights
// and, when not, why.
const ConditionRoutesApplied = "RoutesApplied"

// Reasons of ConditionRoutesApplied.
const (
	ReasonApplied     = "Applied"
	ReasonUnavailable = "APIServerUnavailable" // retried until it lands
	ReasonNotFound    = "NotFound"             // the object, a Service or a subset is missing; retried
	ReasonRefused     = "WriteRefused"         // RBAC or admission refused the write; the rollout is refused
	ReasonManaged     = "ManagedByOtherController"
	ReasonEdited      = "RoutesEdited" // someone else changed the routes; the rollout is paused
	ReasonNoProvider  = "NoProvider"   // the traffic provider is not available or the spec lacks its fields
	ReasonError       = "Error"
)

// setCondition sets the RoutesApplied condition; its transition time moves
// only when its status does.
func (e *Engine) setCondition(r *run, status, reason, msg string) {
	now := e.opts.Now()
	for i := range r.st.Conditions {
		c := &r.st.Conditions[i]
		if c.Type != ConditionRoutesApplied {
			continue
		}
		if c.Status != status {
			c.LastTransitionTime = now
		}
		c.Status, c.Reason, c.Message = status, reason, msg
		return
	}
	r.st.Conditions = append(r.st.Conditions, Condition{Type: ConditionRoutesApplied, Status: status, Reason: reason, Message: msg, LastTransitionTime: now})
}
