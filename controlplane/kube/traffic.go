package kube

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/meshlens/meshlens/rollout"
)

// Markers of the other controllers that move traffic by writing routing
// objects: meshlens never writes an object one of them manages.
const (
	// ArgoManagedAnnotation is set by Argo Rollouts on the VirtualServices
	// and HTTPRoutes it manages.
	ArgoManagedAnnotation = "argo-rollouts.argoproj.io/managed-by-rollouts"
	// flaggerGroup: Flagger's Canary owns the objects it generates.
	flaggerGroup = "flagger.app"
)

// maxConflicts bounds how often one move re-reads the object after a
// conflicting write before it is reported as not written (and retried by
// the engine).
const maxConflicts = 5

// callTimeout bounds one API call of a move: the engine must not hang on
// an API server that does not answer.
const callTimeout = 10 * time.Second

// Traffic writes rollouts' routes to the Kubernetes API, where the mesh's
// own control plane (istiod, a Gateway API implementation) pushes them, as
// Flagger and Argo Rollouts do: the rollout.Traffic providers "istio"
// (VirtualService, DestinationRule subsets) and "gatewayAPI" (HTTPRoute
// backendRefs weights). Every move is one update carrying the
// resourceVersion it read; a conflict re-reads. Routes the rollout does not
// own are kept; objects another controller manages are never written.
type Traffic struct {
	client  kubernetes.Interface
	istio   istioclient.Interface
	gateway gatewayclient.Interface
	dyn     dynamic.Interface
	domain  string
	logger  *slog.Logger
}

// NewTraffic builds the providers. gateway may be nil (no Gateway API).
func NewTraffic(client kubernetes.Interface, istio istioclient.Interface, gateway gatewayclient.Interface, dyn dynamic.Interface, domainSuffix string, logger *slog.Logger) *Traffic {
	if domainSuffix == "" {
		domainSuffix = "cluster.local"
	}
	return &Traffic{client: client, istio: istio, gateway: gateway, dyn: dyn, domain: domainSuffix, logger: logger}
}

// Providers are the providers for rollout.Options.Traffic.
func (t *Traffic) Providers() map[string]rollout.Traffic {
	out := map[string]rollout.Traffic{rollout.ProviderIstio: &istioTraffic{t}}
	if t.gateway != nil {
		out[rollout.ProviderGatewayAPI] = &gatewayTraffic{t}
	}
	return out
}

// managedElsewhere refuses an object that another controller manages:
// Flagger (owned by a flagger.app Canary), Argo Rollouts (its annotation)
// or another meshlens Rollout (OwnerAnnotation naming it).
func managedElsewhere(what string, m metav1.Object, owner string) error {
	for _, ref := range m.GetOwnerReferences() {
		if ref.Kind == "Canary" && strings.HasPrefix(ref.APIVersion, flaggerGroup+"/") {
			return fmt.Errorf("%s is managed by Flagger (owned by Canary %s): %w; nothing is written", what, ref.Name, rollout.ErrManaged)
		}
	}
	if v, ok := m.GetAnnotations()[ArgoManagedAnnotation]; ok {
		return fmt.Errorf("%s is managed by Argo Rollouts (%s=%s): %w; nothing is written", what, ArgoManagedAnnotation, v, rollout.ErrManaged)
	}
	if v := m.GetAnnotations()[rollout.OwnerAnnotation]; v != "" && v != owner {
		return fmt.Errorf("%s is managed by meshlens Rollout %s (%s): %w; nothing is written", what, v, rollout.OwnerAnnotation, rollout.ErrManaged)
	}
	return nil
}

// apiErr tells the engine what an API error means: missing (retried when
// it appears), refused (RBAC, admission, validation: the rollout stops), or
// unavailable (retried until it lands).
func apiErr(what string, err error) error {
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%s: %w: %v", what, rollout.ErrMissing, err)
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err), apierrors.IsInvalid(err), apierrors.IsBadRequest(err),
		apierrors.IsMethodNotSupported(err), apierrors.IsNotAcceptable(err), apierrors.IsUnsupportedMediaType(err),
		apierrors.IsRequestEntityTooLargeError(err):
		return fmt.Errorf("%s: %w: %v", what, rollout.ErrRefused, err)
	}
	return fmt.Errorf("%s: %w: %v", what, rollout.ErrUnavailable, err)
}

// markOwned sets the owner annotation on an object's annotations.
func markOwned(m metav1.Object, owner string) {
	a := m.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[rollout.OwnerAnnotation] = owner
	m.SetAnnotations(a)
}

// rolloutOwnerRef is an ownerReference to the Rollout object, when it is a
// cluster object (a Rollout applied through meshlens' API has none).
func (t *Traffic) rolloutOwnerRef(ctx context.Context, ns, name string) []metav1.OwnerReference {
	u, err := t.dyn.Resource(rolloutGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return []metav1.OwnerReference{{APIVersion: rollout.APIVersion, Kind: rollout.Kind, Name: name, UID: u.GetUID()}}
}

func weightsText(w rollout.Weights) string {
	s := fmt.Sprintf("stable %d%%, candidate %d%%", w.Stable, w.Candidate)
	if w.Matched {
		s += ", matched requests to the candidate"
	}
	return s
}
