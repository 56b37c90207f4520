package kube

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	networking "istio.io/api/networking/v1"
	clientnetworking "istio.io/client-go/pkg/apis/networking/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"

	"github.com/meshlens/meshlens/internal/kubetest"
	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/rollout"
)

// The VirtualService of reviews as a user keeps it: a debug route the
// rollout must keep, and the default route, which the rollout takes over.
const reviewsRoutes = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: debug
    match: [{headers: {x-debug: {exact: "1"}}}]
    route: [{destination: {host: reviews, subset: v1}}]
  - route: [{destination: {host: reviews, subset: v1}}]
`

// istioRollout is a canary of reviews v2 over v1 judged every 200ms.
func istioRollout(name, extra, steps, minDuration string) string {
	return fmt.Sprintf(`apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: %s}
spec:
  service: reviews
  stable: v1
  candidate: v2
%s  strategy:
    canary: {steps: %s, minDuration: %s, minRequests: 30}
  analysis: {interval: 200ms, window: 3s, minSamples: 30}
`, name, extra, steps, minDuration)
}

type istioEnv struct {
	c       *kubetest.Cluster
	ns      string
	istio   istioclient.Interface
	reviews *reviews
	cp      *controlPlane
	dataDir string
}

// newIstioEnv starts reviews v1 and v2 as Pods, applies its routes (unless
// routes is empty) and starts meshlens with --traffic-provider istio.
func newIstioEnv(t *testing.T, routes string) *istioEnv {
	t.Helper()
	c := kubetest.Shared(t)
	pn := kubetest.NewPodNetwork(t)
	e := &istioEnv{c: c, ns: c.Namespace(t, "ro-istio"), dataDir: t.TempDir()}
	forgetRollouts(t, c, e.ns)
	e.reviews = newReviews(t, c, pn, e.ns)
	if routes != "" {
		if err := c.Apply(context.Background(), e.ns, []byte(routes)); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if e.istio, err = istioclient.NewForConfig(c.Config); err != nil {
		t.Fatal(err)
	}
	e.cp = startControlPlane(t, c, cpOptions{rollouts: true, provider: rollout.ProviderIstio, dataDir: e.dataDir})
	return e
}

func (e *istioEnv) apply(t *testing.T, yaml string) {
	t.Helper()
	if err := e.c.Apply(context.Background(), e.ns, []byte(yaml)); err != nil {
		t.Fatal(err)
	}
}

func (e *istioEnv) vs(t *testing.T, name string) *clientnetworking.VirtualService {
	t.Helper()
	vs, err := e.istio.NetworkingV1().VirtualServices(e.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// split is the weights of the VirtualService's route named "split", by
// subset, as the API server holds it ("" when there is none).
func split(vs *clientnetworking.VirtualService) string {
	for _, r := range vs.Spec.GetHttp() {
		if r.GetName() != "split" {
			continue
		}
		var out []string
		for _, d := range r.GetRoute() {
			out = append(out, fmt.Sprintf("%s=%d", d.GetDestination().GetSubset(), d.GetWeight()))
		}
		return strings.Join(out, ",")
	}
	return ""
}

// rolloutStatus reads the Rollout custom resource's status.
func (e *istioEnv) rolloutStatus(t *testing.T, name string) map[string]any {
	t.Helper()
	u, err := e.c.Dynamic.Resource(rolloutGVR).Namespace(e.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, _, _ := unstructured.NestedMap(u.Object, "status")
	return st
}

// condition finds a status condition of the Rollout custom resource.
func condition(st map[string]any, typ string) map[string]any {
	conds, _ := st["conditions"].([]any)
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == typ {
			return m
		}
	}
	return nil
}

// waitSplit waits until the VirtualService name splits traffic as want
// (split's form: "v1=50,v2=50").
func (e *istioEnv) waitSplit(t *testing.T, name, want string, d time.Duration, what string) {
	t.Helper()
	meshtest.Eventually(t, d, what, func() error {
		if got := split(e.vs(t, name)); got != want {
			return fmt.Errorf("split %q, want %q", got, want)
		}
		return nil
	})
}

// waitCondition waits for the Rollout's RoutesApplied condition in the
// API server to have status and reason.
func (e *istioEnv) waitCondition(t *testing.T, name, status, reason string) map[string]any {
	t.Helper()
	var cond map[string]any
	meshtest.Eventually(t, 15*time.Second, "Rollout condition RoutesApplied "+status+" "+reason, func() error {
		cond = condition(e.rolloutStatus(t, name), rollout.ConditionRoutesApplied)
		if cond == nil || cond["status"] != status || cond["reason"] != reason {
			return fmt.Errorf("condition %v", cond)
		}
		return nil
	})
	return cond
}

// A failing candidate: the VirtualService the API server holds is back on
// stable within 10s of the first bad response, the clients of meshlens'
// own xDS (reading the same API server) see only stable, and the routes
// the rollout does not own are as they were.
func TestIstioProviderRollsBackFailingCanaryInTheAPIServer(t *testing.T) {
	e := newIstioEnv(t, reviewsRoutes)
	l := e.reviews.load(t, e.cp)
	meshtest.Eventually(t, 20*time.Second, "clients reach v1 only", func() error {
		if got := l.Since(time.Now().Add(-500 * time.Millisecond)); got["v1"] < 20 || got["v2"]+got["error"] > 0 {
			return fmt.Errorf("clients saw %v", got)
		}
		return nil
	})
	debugBefore := e.vs(t, "reviews").Spec.GetHttp()[0]

	e.apply(t, istioRollout("reviews", "", "[50, 100]", "1h"))
	e.waitSplit(t, "reviews", "v1=50,v2=50", 20*time.Second, "the VirtualService in the API server splits 50/50")
	start := time.Now()
	meshtest.Eventually(t, 20*time.Second, "clients reach the candidate", func() error {
		if got := l.Since(start); got["v2"] < 20 {
			return fmt.Errorf("clients saw %v", got)
		}
		return nil
	})
	vs := e.vs(t, "reviews")
	if got := vs.Annotations[rollout.OwnerAnnotation]; got != e.ns+"/reviews" {
		t.Errorf("annotation %s = %q", rollout.OwnerAnnotation, got)
	}

	e.reviews.breakCandidate(t, l, "VirtualService", func() error {
		if got := split(e.vs(t, "reviews")); got != "v1=0" {
			return fmt.Errorf("split %q", got)
		}
		return nil
	})
	st := waitRollout(t, e.cp, e.ns, "reviews", 10*time.Second, "rolled back", inState(rollout.RolledBack))
	meshtest.Eventually(t, 30*time.Second, "clients see only stable", func() error {
		if last := l.LastNot("v1"); time.Since(last) < time.Second {
			return fmt.Errorf("last non-stable response at %v", last.Format("15:04:05.000"))
		}
		return nil
	})
	vs = e.vs(t, "reviews")
	if http := vs.Spec.GetHttp(); len(http) != 2 || !routeEqual(debugBefore, http[0]) || http[1].GetName() != "split" {
		t.Errorf("routes after the rollback: %v; want the debug route kept, then the rollout's split", http)
	}
	if len(vs.Spec.GetHosts()) != 1 || vs.Spec.GetHosts()[0] != "reviews" {
		t.Errorf("hosts changed: %v", vs.Spec.GetHosts())
	}
	for _, h := range st.History {
		if h.Type == "push" && h.Error == "" && h.Revision == "" {
			t.Errorf("a push without the resourceVersion it wrote: %+v", h)
		}
	}
	meshtest.Eventually(t, 10*time.Second, "the Rollout's status says rolled back", func() error {
		s := e.rolloutStatus(t, "reviews")
		if s["phase"] != string(rollout.RolledBack) || condition(s, rollout.ConditionRoutesApplied)["status"] != "True" || condition(s, "Accepted") == nil {
			return fmt.Errorf("status %v", s)
		}
		return nil
	})
}

func routeEqual(a, b *networking.HTTPRoute) bool {
	return routesEqual([]*networking.HTTPRoute{a}, []*networking.HTTPRoute{b})
}

// A healthy candidate ends with all traffic on it. The host had no
// DestinationRule: the rollout created the subsets, owned by the Rollout.
func TestIstioProviderPromotesHealthyCanaryAndCreatesMissingSubsets(t *testing.T) {
	e := newIstioEnv(t, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
`)
	l := e.reviews.load(t, e.cp)
	e.apply(t, istioRollout("reviews", "", "[20, 50, 100]", "600ms"))
	_, pushed := waitSucceeded(t, e.cp, e.ns, "reviews", 60*time.Second)
	if pushed != "[20 50 100]" {
		t.Errorf("pushed candidate weights %s, want [20 50 100]", pushed)
	}
	if got := split(e.vs(t, "reviews")); got != "v2=0" {
		t.Errorf("split %q, want all on v2", got)
	}
	meshtest.Eventually(t, 30*time.Second, "clients see only the candidate", func() error {
		last := l.LastNot("v2")
		if got := l.Since(last.Add(time.Nanosecond)); time.Since(last) < 500*time.Millisecond || got["v2"] < 50 {
			return fmt.Errorf("last response not from the candidate at %s; since then %v", last.Format("15:04:05.000"), got)
		}
		return nil
	})
	dr, err := e.istio.NetworkingV1().DestinationRules(e.ns).Get(context.Background(), "reviews-subsets", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the rollout did not create the subsets: %v", err)
	}
	ro, err := e.c.Dynamic.Resource(rolloutGVR).Namespace(e.ns).Get(context.Background(), "reviews", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if refs := dr.OwnerReferences; len(refs) != 1 || refs[0].UID != ro.GetUID() || refs[0].Kind != "Rollout" {
		t.Errorf("DestinationRule owners %+v, want the Rollout %s", refs, ro.GetUID())
	}
	if n := len(dr.Spec.GetSubsets()); n != 2 || dr.Spec.GetSubsets()[1].GetLabels()["version"] != "v2" {
		t.Errorf("subsets %v", dr.Spec.GetSubsets())
	}
}

// An Alertmanager webhook naming the rollout rolls it back: one write of
// the VirtualService.
func TestIstioProviderAlertmanagerWebhookRollsBackInOneWrite(t *testing.T) {
	e := newIstioEnv(t, reviewsRoutes)
	e.reviews.load(t, e.cp)
	e.apply(t, istioRollout("reviews", "", "[50, 100]", "1h"))
	waitRollout(t, e.cp, e.ns, "reviews", 20*time.Second, "progressing with its routes written", func(st rollout.Status) error {
		if st.State != rollout.Progressing || st.Applied == nil || *st.Applied != st.Weights {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	gen := e.vs(t, "reviews").Generation
	body := fmt.Sprintf(`{"version":"4","status":"firing","receiver":"meshlens","groupKey":"k","alerts":[{"status":"firing",
"labels":{"alertname":"ReviewsErrors","rollout":"reviews","namespace":%q},"annotations":{},"startsAt":"2026-01-01T00:00:00Z","fingerprint":"f1"}]}`, e.ns)
	if code, resp := meshtest.HTTP(t, http.MethodPost, e.cp.api+"/alerts/alertmanager", operatorToken, body); code != http.StatusOK {
		t.Fatalf("webhook: %d %s", code, resp)
	}
	st := waitRollout(t, e.cp, e.ns, "reviews", 10*time.Second, "rolled back", inState(rollout.RolledBack))
	vs := e.vs(t, "reviews")
	if got := split(vs); got != "v1=0" {
		t.Errorf("split %q after the alert", got)
	}
	if vs.Generation != gen+1 {
		t.Errorf("the rollback took %d writes of the VirtualService, want one", vs.Generation-gen)
	}
	if st.History[len(st.History)-1].Event != rollout.EvPushed {
		t.Errorf("history ends with %+v", st.History[len(st.History)-1])
	}
}

// meshlens restarted mid-canary resumes at the same step with the same
// weights and writes nothing; then it carries on to the end.
func TestIstioProviderRestartMidCanaryResumesAndWritesNothing(t *testing.T) {
	e := newIstioEnv(t, reviewsRoutes)
	l := e.reviews.load(t, e.cp)
	e.apply(t, istioRollout("reviews", "", "[30, 60, 100]", "600ms"))
	before := waitRollout(t, e.cp, e.ns, "reviews", 30*time.Second, "step 1", func(st rollout.Status) error {
		if st.State != rollout.Progressing || st.Step != 1 || st.Applied == nil || *st.Applied != st.Weights {
			return fmt.Errorf("not at step 1 yet")
		}
		return nil
	})
	// meshlens goes away; traffic stops so that nothing could move on.
	e.cp.stop()
	l.Stop()
	before, _ = e.cp.engine.Get(e.ns, "reviews")
	vsBefore := e.vs(t, "reviews")

	e.cp = startControlPlane(t, e.c, cpOptions{rollouts: true, provider: rollout.ProviderIstio, dataDir: e.dataDir})
	after := waitRollout(t, e.cp, e.ns, "reviews", 10*time.Second, "resumed and judged again", func(st rollout.Status) error {
		if st.State != before.State || st.Step != before.Step || st.Weights != before.Weights {
			return fmt.Errorf("resumed as %s step %d %+v, want %s step %d %+v", st.State, st.Step, st.Weights, before.State, before.Step, before.Weights)
		}
		if n, m := verdicts(st), verdicts(before); n < m+5 {
			return fmt.Errorf("%d verdicts since the restart, want 5 (ticks that could have written)", n-m)
		}
		return nil
	})
	vsAfter := e.vs(t, "reviews")
	if vsAfter.Generation != vsBefore.Generation || !routesEqual(vsAfter.Spec.GetHttp(), vsBefore.Spec.GetHttp()) {
		t.Errorf("the VirtualService was written across the restart: generation %d -> %d", vsBefore.Generation, vsAfter.Generation)
	}
	if pushes(after) != pushes(before) || !after.StepStartedAt.Equal(before.StepStartedAt) {
		t.Errorf("pushes %d -> %d, step start %v -> %v", pushes(before), pushes(after), before.StepStartedAt, after.StepStartedAt)
	}
	e.reviews.load(t, e.cp)
	waitRollout(t, e.cp, e.ns, "reviews", 30*time.Second, "succeeded", inState(rollout.Succeeded))
}

func verdicts(st rollout.Status) int {
	n := 0
	for _, h := range st.History {
		if h.Type == "verdict" {
			n++
		}
	}
	return n
}

func pushes(st rollout.Status) int {
	n := 0
	for _, h := range st.History {
		if h.Type == "push" {
			n++
		}
	}
	return n
}

// Someone edits the weights mid-canary: the rollout pauses with a condition
// saying so and does not fight the change; resume writes its routes again.
func TestIstioProviderHumanEditPausesTheRollout(t *testing.T) {
	e := newIstioEnv(t, reviewsRoutes)
	e.reviews.load(t, e.cp)
	e.apply(t, istioRollout("reviews", "", "[50, 100]", "1h"))
	e.waitSplit(t, "reviews", "v1=50,v2=50", 20*time.Second, "split 50/50")
	// kubectl edit: the split goes 90/10 (read again if meshlens wrote the
	// status in between, as kubectl does).
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		vs := e.vs(t, "reviews").DeepCopy()
		for _, r := range vs.Spec.Http {
			if r.GetName() == "split" {
				r.Route[0].Weight, r.Route[1].Weight = 90, 10
			}
		}
		_, err := e.istio.NetworkingV1().VirtualServices(e.ns).Update(context.Background(), vs, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	st := waitRollout(t, e.cp, e.ns, "reviews", 10*time.Second, "paused", inState(rollout.Paused))
	if !st.RoutesEdited || !strings.Contains(st.Message, "no longer holds") {
		t.Errorf("paused without saying why: %q", st.Message)
	}
	cond := e.waitCondition(t, "reviews", "False", rollout.ReasonEdited)
	if msg, _ := cond["message"].(string); !strings.Contains(msg, "v1 90") || !strings.Contains(msg, "v2 10") {
		t.Errorf("condition message %q does not say what the routes hold now", msg)
	}
	// The rollout keeps its hands off while the judge would have run.
	paused, _ := e.cp.engine.Get(e.ns, "reviews")
	waitRollout(t, e.cp, e.ns, "reviews", 10*time.Second, "ticks pass", func(st rollout.Status) error {
		if time.Since(paused.UpdatedAt) < time.Second {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	if got := split(e.vs(t, "reviews")); got != "v1=90,v2=10" {
		t.Fatalf("the rollout fought the edit: split %q", got)
	}
	if _, err := e.cp.engine.Do(context.Background(), e.ns, "reviews", rollout.EvResume, "operator", "operator: resume"); err != nil {
		t.Fatal(err)
	}
	e.waitSplit(t, "reviews", "v1=50,v2=50", 10*time.Second, "resume writes the rollout's routes")
	e.waitCondition(t, "reviews", "True", rollout.ReasonApplied)
}

// A Rollout naming a VirtualService that does not exist waits with a
// condition, and takes it over when it appears.
func TestIstioProviderWaitsForAMissingVirtualService(t *testing.T) {
	e := newIstioEnv(t, "")
	e.apply(t, istioRollout("reviews", "  virtualService: reviews-routes\n", "[50, 100]", "1h"))
	cond := e.waitCondition(t, "reviews", "False", rollout.ReasonNotFound)
	if msg, _ := cond["message"].(string); !strings.Contains(msg, "VirtualService "+e.ns+"/reviews-routes") {
		t.Errorf("condition message %q does not name the VirtualService", msg)
	}
	st, _ := e.cp.engine.Get(e.ns, "reviews")
	if st.State != rollout.Progressing || st.Applied != nil {
		t.Errorf("state %s applied %+v while the VirtualService is missing", st.State, st.Applied)
	}
	e.apply(t, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-routes}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v1}}]}]
`)
	e.waitSplit(t, "reviews-routes", "v1=50,v2=50", 15*time.Second, "the rollout writes it once it exists")
	e.waitCondition(t, "reviews", "True", rollout.ReasonApplied)
}

// A VirtualService that Flagger, Argo Rollouts or another Rollout manages
// is refused with a condition naming the manager; nothing is written.
func TestIstioProviderRefusesAVirtualServiceAnotherControllerManages(t *testing.T) {
	c := kubetest.Shared(t)
	cp := startControlPlane(t, c, cpOptions{rollouts: true, provider: rollout.ProviderIstio})
	ic, err := istioclient.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, meta, want string
	}{
		{"flagger", "ownerReferences: [{apiVersion: flagger.app/v1beta1, kind: Canary, name: reviews, uid: 0b2a7c4e-1111-4c1a-9c55-2b7a6f0f0001}]", "Flagger"},
		{"argo", "annotations: {argo-rollouts.argoproj.io/managed-by-rollouts: reviews}", "Argo Rollouts"},
		{"meshlens", "annotations: {meshlens.io/rollout: elsewhere/reviews}", "meshlens Rollout elsewhere/reviews"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := c.Namespace(t, "ro-managed")
			forgetRollouts(t, c, ns)
			e := &istioEnv{c: c, ns: ns, istio: ic, cp: cp}
			e.apply(t, fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  %s
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v1}}]}]
`, tc.meta))
			gen := e.vs(t, "reviews").Generation
			e.apply(t, istioRollout("reviews", "", "[50, 100]", "1h"))
			cond := e.waitCondition(t, "reviews", "False", rollout.ReasonManaged)
			if msg, _ := cond["message"].(string); !strings.Contains(msg, tc.want) {
				t.Errorf("condition message %q does not name %s", msg, tc.want)
			}
			waitRollout(t, cp, ns, "reviews", 10*time.Second, "refused", inState(rollout.Refused))
			meshtest.Eventually(t, 10*time.Second, "the Rollout's phase is refused", func() error {
				if s := e.rolloutStatus(t, "reviews"); s["phase"] != string(rollout.Refused) {
					return fmt.Errorf("phase %v", s["phase"])
				}
				return nil
			})
			vs := e.vs(t, "reviews")
			if vs.Generation != gen || split(vs) != "" {
				t.Errorf("the VirtualService was written: generation %d -> %d, routes %v", gen, vs.Generation, vs.Spec.GetHttp())
			}
		})
	}
}

// RBAC refusing the write stops the rollout in state refused, with a
// condition naming the refusal; the VirtualService is not written.
func TestIstioProviderStopsWhenRBACRefusesTheWrite(t *testing.T) {
	c := kubetest.Shared(t)
	ctx := context.Background()
	ns := c.Namespace(t, "ro-rbac")
	forgetRollouts(t, c, ns)
	ic, err := istioclient.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	e := &istioEnv{c: c, ns: ns, istio: ic}
	e.apply(t, reviewsRoutes)
	// The limited user may read what the provider reads, in this namespace
	// only, and write nothing.
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "rollout-read-only", Namespace: ns}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"networking.istio.io"}, Resources: []string{"virtualservices", "destinationrules"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"meshlens.io"}, Resources: []string{"rollouts"}, Verbs: []string{"get"}},
	}}
	if _, err := c.Client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "rollout-read-only", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: kubetest.LimitedUser}}}
	if _, err := c.Client.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.cp = startControlPlane(t, c, cpOptions{rollouts: true, provider: rollout.ProviderIstio, writer: c.RESTConfig(kubetest.LimitedToken)})
	gen := e.vs(t, "reviews").Generation
	e.apply(t, istioRollout("reviews", "", "[50, 100]", "1h"))
	cond := e.waitCondition(t, "reviews", "False", rollout.ReasonRefused)
	if msg, _ := cond["message"].(string); !strings.Contains(msg, "update VirtualService "+ns+"/reviews") || !strings.Contains(msg, "forbidden") {
		t.Errorf("condition message %q does not name the refused write", msg)
	}
	st := waitRollout(t, e.cp, ns, "reviews", 10*time.Second, "refused", inState(rollout.Refused))
	if st.Applied != nil {
		t.Errorf("refused rollout claims applied weights %+v", st.Applied)
	}
	meshtest.Eventually(t, 10*time.Second, "the Rollout's phase is refused", func() error {
		if s := e.rolloutStatus(t, "reviews"); s["phase"] != string(rollout.Refused) {
			return fmt.Errorf("phase %v", s["phase"])
		}
		return nil
	})
	if vs := e.vs(t, "reviews"); vs.Generation != gen || split(vs) != "" {
		t.Errorf("the VirtualService was written: generation %d -> %d", gen, vs.Generation)
	}

	// RBAC fixed, the operator resumes: the rollout writes its routes.
	role.Rules = append(role.Rules, rbacv1.PolicyRule{APIGroups: []string{"networking.istio.io"}, Resources: []string{"virtualservices"}, Verbs: []string{"update"}})
	if _, err := c.Client.RbacV1().Roles(ns).Update(ctx, role, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cp.engine.Do(ctx, ns, "reviews", rollout.EvResume, "operator", "operator: resume"); err != nil {
		t.Fatal(err)
	}
	e.waitSplit(t, "reviews", "v1=50,v2=50", 15*time.Second, "the resumed rollout writes its routes")
	e.waitCondition(t, "reviews", "True", rollout.ReasonApplied)
}

func newIstioClient(c *kubetest.Cluster) (istioclient.Interface, error) {
	return istioclient.NewForConfig(c.Config)
}

func routeNames(rs []*networking.HTTPRoute) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.GetName())
	}
	return out
}

// Deleting the Rollout mid-canary leaves the routes on stable and lets go
// of the VirtualService (the owner annotation goes).
func TestIstioProviderDeletedRolloutLeavesRoutesOnStable(t *testing.T) {
	e := newIstioEnv(t, reviewsRoutes)
	e.apply(t, istioRollout("reviews", "", "[50, 100]", "1h"))
	e.waitSplit(t, "reviews", "v1=50,v2=50", 20*time.Second, "split 50/50")
	if err := e.c.Dynamic.Resource(rolloutGVR).Namespace(e.ns).Delete(context.Background(), "reviews", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	meshtest.Eventually(t, 15*time.Second, "the routes are back on stable and released", func() error {
		vs := e.vs(t, "reviews")
		if got := split(vs); got != "v1=0" {
			return fmt.Errorf("split %q", got)
		}
		if a, ok := vs.Annotations[rollout.OwnerAnnotation]; ok {
			return fmt.Errorf("still annotated %s=%s", rollout.OwnerAnnotation, a)
		}
		return nil
	})
	if names := routeNames(e.vs(t, "reviews").Spec.GetHttp()); !slices.Equal(names, []string{"debug", "split"}) {
		t.Errorf("routes %v after the release", names)
	}
}

// The API server goes away while a rollback is to be written: the rollout
// stays rolling back, says why in its status and metrics, retries, and
// lands the rollback once the API server is back.
func TestIstioProviderRetriesARollbackUntilTheAPIServerIsBack(t *testing.T) {
	e := newIstioEnv(t, reviewsRoutes)
	e.apply(t, istioRollout("reviews", "", "[50, 100]", "1h"))
	e.waitSplit(t, "reviews", "v1=50,v2=50", 20*time.Second, "split 50/50")
	e.c.StopAPIServer()
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = e.c.RestartAPIServer(context.Background())
		}
	})
	if _, err := e.cp.engine.Do(context.Background(), e.ns, "reviews", rollout.EvAbort, "operator", "operator: abort"); err != nil {
		t.Fatal(err)
	}
	waitRollout(t, e.cp, e.ns, "reviews", 20*time.Second, "the rollback is retried and says so", func(st rollout.Status) error {
		if st.State != rollout.RollingBack {
			return fmt.Errorf("state %s", st.State)
		}
		failed := 0
		for _, h := range st.History {
			if h.Type == "push" && h.Error != "" {
				failed++
			}
		}
		c := st.Conditions[0]
		if failed < 3 || c.Reason != rollout.ReasonUnavailable || !strings.Contains(c.Message, "rollback not written yet") || !strings.Contains(c.Message, "retrying until it lands") {
			return fmt.Errorf("%d failed writes, condition %+v", failed, c)
		}
		return nil
	})
	if v := metricValue(t, e.cp.reg, "meshlens_rollout_routes_unapplied", nil); v != 1 {
		t.Errorf("meshlens_rollout_routes_unapplied = %v during the outage, want 1", v)
	}
	if v := metricValue(t, e.cp.reg, "meshlens_rollout_pushes_total", map[string]string{"result": "unavailable"}); v < 3 {
		t.Errorf(`meshlens_rollout_pushes_total{result="unavailable"} = %v, want >= 3`, v)
	}
	if err := e.c.RestartAPIServer(context.Background()); err != nil {
		t.Fatal(err)
	}
	restarted = true
	waitRollout(t, e.cp, e.ns, "reviews", 30*time.Second, "rolled back once the API server is back", inState(rollout.RolledBack))
	if got := split(e.vs(t, "reviews")); got != "v1=0" {
		t.Errorf("split %q after the rollback", got)
	}
	e.waitCondition(t, "reviews", "True", rollout.ReasonApplied)
}

// An A/B test through the API server: requests with the cookie reach the
// candidate (meshlens' xDS clients follow the VirtualService istiod would
// push), the others stay on stable; after enough candidate requests the
// candidate is promoted.
func TestIstioProviderABCookieReachesTheCandidateThenPromotes(t *testing.T) {
	e := newIstioEnv(t, reviewsRoutes)
	e.reviews.live.Store(e.cp.live)
	c := e.cp.client(t, e.ns, e.reviews.target())
	e.apply(t, `apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: reviews}
spec:
  service: reviews
  stable: v1
  candidate: v2
  strategy: {ab: {match: [{cookie: user, exact: beta}], requests: 60}}
  analysis: {interval: 200ms, window: 3s, minSamples: 20}
`)
	call := func(cookie string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if cookie != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "cookie", cookie)
		}
		resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
		return resp.GetHostname(), err
	}
	only := func(want, cookie string) error {
		for range 20 {
			got, err := call(cookie)
			if err != nil || got != want {
				return fmt.Errorf("cookie %q reached %q (%v), want %s", cookie, got, err, want)
			}
		}
		return nil
	}
	meshtest.Eventually(t, 20*time.Second, "the beta cookie reaches the candidate", func() error { return only("v2", "theme=dark; user=beta") })
	if err := only("v1", "user=betamax"); err != nil {
		t.Fatalf("another cookie value: %v", err)
	}
	if err := only("v1", ""); err != nil {
		t.Fatalf("plain requests: %v", err)
	}
	if names := routeNames(e.vs(t, "reviews").Spec.GetHttp()); !slices.Equal(names, []string{"debug", "candidate-match", "split"}) {
		t.Errorf("routes %v during the A/B test", names)
	}
	e.reviews.load(t, e.cp) // plain traffic alongside, on stable: the judge compares
	done := make(chan struct{})
	go func() {
		defer close(done)
		for st, _ := e.cp.engine.Get(e.ns, "reviews"); st.State == rollout.Progressing; st, _ = e.cp.engine.Get(e.ns, "reviews") {
			_, _ = call("user=beta")
		}
	}()
	waitRollout(t, e.cp, e.ns, "reviews", 30*time.Second, "promoted", inState(rollout.Succeeded))
	<-done
	if got := split(e.vs(t, "reviews")); got != "v2=0" {
		t.Errorf("split %q after the promotion", got)
	}
	meshtest.Eventually(t, 10*time.Second, "everyone on the candidate", func() error { return only("v2", "") })
}
