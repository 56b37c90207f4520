package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshlens/meshlens/internal/kubetest"
	"github.com/meshlens/meshlens/internal/meshtest"
)

// reviewsIstioRoutes are reviews' subsets by version and a VirtualService
// sending all of it to v1: what an istio-provider Rollout takes over.
const reviewsIstioRoutes = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v1}}]}]
`

// meshlens serve --traffic-provider istio writes the rollouts' routes to the
// API server: a Rollout that names no provider moves the VirtualService
// kubectl shows, and examples/rollout-gateway-api.yaml (which names its own)
// moves the HTTPRoute's weights.
func TestServeTrafficProviderWritesRoutesToTheAPIServer(t *testing.T) {
	c := kubetest.Shared(t)
	ctx := context.Background()
	istioNS, gwNS := c.Namespace(t, "serve-istio"), c.Namespace(t, "serve-gw")
	// Other tests' meshlens read the whole shared cluster: the Rollouts go
	// when this test ends, after its meshlens stopped.
	rollouts := schema.GroupVersionResource{Group: "meshlens.io", Version: "v1alpha1", Resource: "rollouts"}
	t.Cleanup(func() {
		for _, ns := range []string{istioNS, gwNS} {
			_ = c.Dynamic.Resource(rollouts).Namespace(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		}
	})
	for _, s := range []struct{ ns, name string }{{istioNS, "reviews"}, {gwNS, "reviews-v1"}, {gwNS, "reviews-v2"}} {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.ns},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "reviews"}, Ports: []corev1.ServicePort{{Name: "http", Port: 9080, TargetPort: intstr.FromInt32(9080)}}}}
		if _, err := c.Client.CoreV1().Services(s.ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	apply := func(ns, yaml string) {
		t.Helper()
		if err := c.Apply(ctx, ns, []byte(yaml)); err != nil {
			t.Fatal(err)
		}
	}
	apply(istioNS, reviewsIstioRoutes)
	apply(gwNS, `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews-v1, port: 9080}]
  rules: [{backendRefs: [{name: reviews-v1, port: 9080}]}]
`)
	data := t.TempDir()
	startMeshlens(t, "--kubeconfig", c.Kubeconfig, "--data-dir", data, "--clickhouse", "clickhouse://127.0.0.1:1/x", "--clickhouse-wait", "0s",
		"--traffic-provider", "istio")

	apply(istioNS, `apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: reviews}
spec:
  service: reviews
  stable: v1
  candidate: v2
  strategy: {canary: {steps: [30, 100], minDuration: 1h}}
`)
	if out, err := c.Kubectl(ctx, "apply", "-n", gwNS, "-f", filepath.Join(repoRoot(t), "examples", "rollout-gateway-api.yaml")); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	get := func(gvr schema.GroupVersionResource, ns, name string, path ...string) string {
		u, err := c.Dynamic.Resource(gvr).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		v, _, _ := unstructured.NestedFieldNoCopy(u.Object, path...)
		return fmt.Sprint(v)
	}
	vsGVR := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}
	hrGVR := schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
	meshtest.Eventually(t, 60*time.Second, "the VirtualService in the API server holds the first step", func() error {
		if got := get(vsGVR, istioNS, "reviews", "spec", "http"); !strings.Contains(got, "subset:v1] weight:70") || !strings.Contains(got, "subset:v2] weight:30") {
			return fmt.Errorf("http %s", got)
		}
		return nil
	})
	meshtest.Eventually(t, 30*time.Second, "the HTTPRoute in the API server holds the example's first step", func() error {
		if got := get(hrGVR, gwNS, "reviews", "spec", "rules"); !strings.Contains(got, "name:reviews-v1 port:9080 weight:90") || !strings.Contains(got, "name:reviews-v2 port:9080 weight:10") {
			return fmt.Errorf("rules %s", got)
		}
		return nil
	})
	meshtest.Eventually(t, 30*time.Second, "kubectl shows the rollouts progressing with their routes applied", func() error {
		for _, ns := range []string{istioNS, gwNS} {
			out, err := c.Kubectl(ctx, "get", "rollouts.meshlens.io", "-n", ns, "reviews",
				"-o", `jsonpath={.status.phase} {.status.conditions[?(@.type=="RoutesApplied")].status}`)
			if err != nil || strings.TrimSpace(out) != "progressing True" {
				return fmt.Errorf("%s: %q %v", ns, out, err)
			}
		}
		return nil
	})
}
