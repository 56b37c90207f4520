package kube

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/meshlens/meshlens/internal/kubetest"
	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/rollout"
)

// The HTTPRoute of reviews as a mesh (GAMMA) user keeps it: a debug rule to
// the main Service, which the rollout must keep, and the rule to the stable
// version's Service, whose weights the rollout moves.
const reviewsHTTPRoute = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - matches: [{headers: [{name: x-debug, value: "1"}]}]
    backendRefs: [{name: reviews, port: 9080}]
  - backendRefs: [{name: reviews-v1, port: 9080}]
`

func gatewayRollout(name, steps, minDuration string) string {
	return fmt.Sprintf(`apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: %s}
spec:
  trafficProvider: gatewayAPI
  httpRoute: reviews
  stableService: reviews-v1
  candidateService: reviews-v2
  service: reviews
  stable: v1
  candidate: v2
  strategy:
    canary: {steps: %s, minDuration: %s, minRequests: 30, match: [{header: x-canary, exact: "yes"}]}
  analysis: {interval: 200ms, window: 3s, minSamples: 30}
`, name, steps, minDuration)
}

type gatewayEnv struct {
	*istioEnv
	gateway gatewayclient.Interface
}

// newGatewayEnv starts reviews v1 and v2 as Pods, the Services of each
// version (those named in services) and the HTTPRoute (unless route is
// empty), and meshlens (its default provider stays meshlens: the rollouts
// name theirs).
func newGatewayEnv(t *testing.T, route string, services ...string) *gatewayEnv {
	t.Helper()
	c := kubetest.Shared(t)
	pn := kubetest.NewPodNetwork(t)
	e := &gatewayEnv{istioEnv: &istioEnv{c: c, ns: c.Namespace(t, "ro-gw"), dataDir: t.TempDir()}}
	forgetRollouts(t, c, e.ns)
	e.reviews = newReviews(t, c, pn, e.ns)
	for _, s := range services {
		e.service(t, s)
	}
	if route != "" {
		e.apply(t, route)
	}
	var err error
	if e.gateway, err = gatewayclient.NewForConfig(c.Config); err != nil {
		t.Fatal(err)
	}
	e.cp = startControlPlane(t, c, cpOptions{rollouts: true, dataDir: e.dataDir})
	e.reviews.live.Store(e.cp.live)
	return e
}

// service creates the Service reviews-vN selecting the pods of vN.
func (e *gatewayEnv) service(t *testing.T, name string) {
	t.Helper()
	version := strings.TrimPrefix(name, "reviews-")
	_, err := e.c.Client.CoreV1().Services(e.ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "reviews", "version": version}, Ports: []corev1.ServicePort{
			{Name: "grpc", Port: 9080, TargetPort: intstr.FromInt32(9080)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

func (e *gatewayEnv) route(t *testing.T) *gatewayv1.HTTPRoute {
	t.Helper()
	hr, err := e.gateway.GatewayV1().HTTPRoutes(e.ns).Get(context.Background(), "reviews", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return hr
}

// backends is the weights of the HTTPRoute's rule to the two versions'
// Services, as the API server holds it: "reviews-v1=90,reviews-v2=10".
func backends(hr *gatewayv1.HTTPRoute) string {
	for _, r := range hr.Spec.Rules {
		if r.Name != nil || len(r.BackendRefs) == 0 || !strings.HasPrefix(string(r.BackendRefs[0].Name), "reviews-") {
			continue
		}
		var out []string
		for _, b := range r.BackendRefs {
			w := int32(1)
			if b.Weight != nil {
				w = *b.Weight
			}
			out = append(out, fmt.Sprintf("%s=%d", b.Name, w))
		}
		return strings.Join(out, ",")
	}
	return ""
}

func matchRule(hr *gatewayv1.HTTPRoute) *gatewayv1.HTTPRouteRule {
	for i, r := range hr.Spec.Rules {
		if r.Name != nil && *r.Name == "candidate-match" {
			return &hr.Spec.Rules[i]
		}
	}
	return nil
}

// load stands in for the Gateway API implementation, which meshlens does
// not run: callers pick v1 or v2 by the weights the HTTPRoute in the API
// server holds (read every 100ms) and call that version's pod directly.
func (e *gatewayEnv) load(t *testing.T) *meshtest.Load {
	t.Helper()
	dial := func(v string) testgrpc.TestServiceClient {
		cc, err := grpc.NewClient(net.JoinHostPort(e.reviews.pods[v].Status.PodIP, "9080"), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return testgrpc.NewTestServiceClient(cc)
	}
	v1, v2 := dial("v1"), dial("v2")
	var candidate atomic.Int32 // percent
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if hr, err := e.gateway.GatewayV1().HTTPRoutes(e.ns).Get(ctx, "reviews", metav1.GetOptions{}); err == nil {
				var w1, w2 int32
				fmt.Sscanf(backends(hr), "reviews-v1=%d,reviews-v2=%d", &w1, &w2)
				if w1+w2 > 0 {
					candidate.Store(100 * w2 / (w1 + w2))
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return meshtest.StartLoad(t, 4, 5*time.Millisecond, func(ctx context.Context) (string, error) {
		c := v1
		if rand.Int32N(100) < candidate.Load() {
			c = v2
		}
		resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		return resp.GetHostname(), err
	})
}

// A healthy canary moves the HTTPRoute's weights step by step to 100% on
// the candidate; the header match rule lives while the rollout runs; the
// route's other rule and its parents are kept.
func TestGatewayAPIProviderPromotesHealthyCanaryInTheHTTPRoute(t *testing.T) {
	e := newGatewayEnv(t, reviewsHTTPRoute, "reviews-v1", "reviews-v2")
	e.load(t)
	before := e.route(t)
	e.apply(t, gatewayRollout("reviews", "[25, 50, 100]", "600ms"))
	meshtest.Eventually(t, 20*time.Second, "the first step in the HTTPRoute", func() error {
		hr := e.route(t)
		if got := backends(hr); got != "reviews-v1=75,reviews-v2=25" {
			return fmt.Errorf("backends %q", got)
		}
		m := matchRule(hr)
		if m == nil || len(m.Matches) != 1 || m.Matches[0].Headers[0].Name != "x-canary" || m.BackendRefs[0].Name != "reviews-v2" {
			return fmt.Errorf("no candidate-match rule to reviews-v2: %+v", m)
		}
		if hr.Annotations[rollout.OwnerAnnotation] != e.ns+"/reviews" {
			return fmt.Errorf("annotations %v", hr.Annotations)
		}
		return nil
	})
	_, pushed := waitSucceeded(t, e.cp, e.ns, "reviews", 60*time.Second)
	if pushed != "[25 50 100]" {
		t.Errorf("pushed candidate weights %s, want [25 50 100]", pushed)
	}
	hr := e.route(t)
	if got := backends(hr); got != "reviews-v1=0,reviews-v2=100" {
		t.Errorf("backends %q at the end", got)
	}
	if m := matchRule(hr); m != nil {
		t.Errorf("the candidate-match rule outlived the rollout: %+v", m)
	}
	if !rulesEqual(hr.Spec.Rules[:1], before.Spec.Rules[:1]) || len(hr.Spec.ParentRefs) != 1 || hr.Spec.ParentRefs[0].Name != "reviews" {
		t.Errorf("the rule and parents the rollout does not own changed: %+v %+v", hr.Spec.Rules[0], hr.Spec.ParentRefs)
	}
}

// A failing candidate: the HTTPRoute held by the API server is back on the
// stable Service within 10s of the first bad response.
func TestGatewayAPIProviderRollsBackFailingCanaryInTheHTTPRoute(t *testing.T) {
	e := newGatewayEnv(t, reviewsHTTPRoute, "reviews-v1", "reviews-v2")
	l := e.load(t)
	e.apply(t, gatewayRollout("reviews", "[50, 100]", "1h"))
	start := time.Now()
	meshtest.Eventually(t, 20*time.Second, "callers reach the candidate", func() error {
		if got := l.Since(start); got["v2"] < 20 {
			return fmt.Errorf("callers saw %v", got)
		}
		return nil
	})
	e.reviews.breakCandidate(t, l, "HTTPRoute", func() error {
		if got := backends(e.route(t)); got != "reviews-v1=100,reviews-v2=0" {
			return fmt.Errorf("backends %q", got)
		}
		return nil
	})
	waitRollout(t, e.cp, e.ns, "reviews", 10*time.Second, "rolled back", inState(rollout.RolledBack))
	if m := matchRule(e.route(t)); m != nil {
		t.Errorf("the candidate-match rule outlived the rollback: %+v", m)
	}
}

// A Rollout whose HTTPRoute, then candidate Service, does not exist waits
// with a condition naming what is missing, and goes on once it exists.
func TestGatewayAPIProviderWaitsForItsHTTPRouteAndServices(t *testing.T) {
	e := newGatewayEnv(t, "", "reviews-v1")
	e.apply(t, gatewayRollout("reviews", "[50, 100]", "1h"))
	cond := e.waitCondition(t, "reviews", "False", rollout.ReasonNotFound)
	if msg, _ := cond["message"].(string); !strings.Contains(msg, "Service "+e.ns+"/reviews-v2 (spec.candidateService)") {
		t.Errorf("condition message %q does not name the missing Service", msg)
	}
	e.service(t, "reviews-v2")
	meshtest.Eventually(t, 15*time.Second, "the condition names the missing HTTPRoute", func() error {
		cond := condition(e.rolloutStatus(t, "reviews"), rollout.ConditionRoutesApplied)
		if msg, _ := cond["message"].(string); !strings.Contains(msg, "HTTPRoute "+e.ns+"/reviews") || !strings.Contains(msg, "not found") {
			return fmt.Errorf("condition %v", cond)
		}
		return nil
	})
	e.apply(t, reviewsHTTPRoute)
	meshtest.Eventually(t, 15*time.Second, "the rollout writes the HTTPRoute once it exists", func() error {
		if got := backends(e.route(t)); got != "reviews-v1=50,reviews-v2=50" {
			return fmt.Errorf("backends %q", got)
		}
		return nil
	})
	e.waitCondition(t, "reviews", "True", rollout.ReasonApplied)
	st, _ := e.cp.engine.Get(e.ns, "reviews")
	if st.State != rollout.Progressing || st.Step != 0 {
		t.Errorf("state %s step %d after the wait, want progressing at step 0", st.State, st.Step)
	}
}

// examples/rollout-istio.yaml and examples/rollout-gateway-api.yaml, applied
// as written next to what they say they need, start moving traffic.
func TestTrafficProviderExamplesApplyAsWritten(t *testing.T) {
	c := kubetest.Shared(t)
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	example := func(name string) string {
		b, err := os.ReadFile(filepath.Join(root, "examples", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	cp := startControlPlane(t, c, cpOptions{rollouts: true})
	ic, err := newIstioClient(c)
	if err != nil {
		t.Fatal(err)
	}
	gc, err := gatewayclient.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("istio", func(t *testing.T) {
		e := &istioEnv{c: c, ns: c.Namespace(t, "ex-istio"), istio: ic, cp: cp}
		forgetRollouts(t, c, e.ns)
		e.apply(t, reviewsRoutes)
		e.apply(t, example("rollout-istio.yaml"))
		meshtest.Eventually(t, 20*time.Second, "the first step in the VirtualService", func() error {
			vs := e.vs(t, "reviews")
			if got := split(vs); got != "v1=90,v2=10" {
				return fmt.Errorf("split %q", got)
			}
			if names := routeNames(vs.Spec.GetHttp()); !slices.Equal(names, []string{"debug", "candidate-match", "split"}) {
				return fmt.Errorf("routes %v", names)
			}
			return nil
		})
	})
	t.Run("gatewayAPI", func(t *testing.T) {
		e := &gatewayEnv{istioEnv: &istioEnv{c: c, ns: c.Namespace(t, "ex-gw"), cp: cp}, gateway: gc}
		forgetRollouts(t, c, e.ns)
		e.service(t, "reviews-v1")
		e.service(t, "reviews-v2")
		e.apply(t, reviewsHTTPRoute)
		e.apply(t, example("rollout-gateway-api.yaml"))
		meshtest.Eventually(t, 20*time.Second, "the first step in the HTTPRoute", func() error {
			hr := e.route(t)
			if got := backends(hr); got != "reviews-v1=90,reviews-v2=10" {
				return fmt.Errorf("backends %q", got)
			}
			if m := matchRule(hr); m == nil || m.Matches[0].Headers[0].Name != "end-user" {
				return fmt.Errorf("no end-user match rule: %+v", m)
			}
			return nil
		})
	})
}
