package kube

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/internal/kubetest"
	"github.com/meshlens/meshlens/internal/meshtest"
)

// examples/gateway-api applied with kubectl as written (namespace store):
// meshlens reads the Gateway, HTTPRoutes and GRPCRoute from the API server,
// grpc-go clients calling the Service cart follow the HTTPRoute attached to
// it (GAMMA: 90/10 to cart-v1 and cart-v2, x-canary: true to cart-v2), and
// each route's status says, for meshlens' controller, whether its parents
// take it and its backends resolve.
func TestKubectlAppliedGatewayAPIRoutesMoveXDSClients(t *testing.T) {
	c := kubetest.Shared(t)
	pn := kubetest.NewPodNetwork(t)
	ctx := context.Background()
	const ns = "store" // the examples' namespace
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	cp := startControlPlane(t, c, cpOptions{})

	pods := map[string]*corev1.Pod{}
	for _, v := range []string{"v1", "v2"} {
		ip := pn.NewIP(t)
		podBackend(t, pn, ip, 8080, "cart-"+v, v)
		p, err := kubetest.RunPod(ctx, c.Client, ns, "cart-"+v, "", ip, map[string]string{"app": "cart", "version": v}, true)
		if err != nil {
			t.Fatal(err)
		}
		pods[v] = p
	}
	for name, sel := range map[string]map[string]string{
		"cart": {"app": "cart"}, "cart-v1": {"app": "cart", "version": "v1"}, "cart-v2": {"app": "cart", "version": "v2"}} {
		svc, err := c.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.ServiceSpec{Selector: sel, Ports: []corev1.ServicePort{
				{Name: "grpc", Port: 8080, TargetPort: intstr.FromInt32(8080)}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var eps []kubetest.Endpoint
		for v, p := range pods {
			if sel["version"] == "" || sel["version"] == v {
				eps = append(eps, kubetest.Endpoint{Pod: p, Ready: true})
			}
		}
		if err := kubetest.WriteSlice(ctx, c.Client, svc, nil, eps); err != nil {
			t.Fatal(err)
		}
	}

	examples := filepath.Join("..", "..", "examples", "gateway-api")
	for _, f := range []string{"gateway.yaml", "httproute.yaml", "grpcroute.yaml"} {
		if out, err := c.Kubectl(ctx, "apply", "-f", filepath.Join(examples, f)); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	meshtest.Eventually(t, 30*time.Second, "the Gateway API objects in the config store, from Kubernetes", func() error {
		for _, k := range []struct{ kind, name string }{{config.KindKubernetesGateway, "store"}, {config.KindHTTPRoute, "storefront"}, {config.KindHTTPRoute, "cart"}, {config.KindGRPCRoute, "pricing"}} {
			if _, ok := cp.store.Get(k.kind, ns, k.name); !ok {
				return fmt.Errorf("%s %s/%s missing", k.kind, ns, k.name)
			}
			if o := cp.store.Origin(k.kind, ns, k.name); o != "kube:"+k.kind+"/"+ns+"/"+k.name {
				return fmt.Errorf("%s origin %q", k.name, o)
			}
		}
		return nil
	})

	client := cp.client(t, ns, "cart."+ns+".svc.cluster.local:8080")
	meshtest.Eventually(t, 30*time.Second, "a 90/10 split of cart-v1 and cart-v2 by the HTTPRoute", func() error {
		got := share(t, client, 300)
		if got["error"] != 0 || got["cart-v1"] < 240 || got["cart-v2"] < 10 || got["cart-v2"] > 60 {
			return fmt.Errorf("share %v", got)
		}
		return nil
	})
	canary := metadata.AppendToOutgoingContext(ctx, "x-canary", "true")
	for range 20 {
		cctx, cancel := context.WithTimeout(canary, 5*time.Second)
		resp, err := client.UnaryCall(cctx, &testgrpc.SimpleRequest{})
		cancel()
		if err != nil || resp.GetHostname() != "cart-v2" {
			t.Fatalf("x-canary: true must reach cart-v2, got %q, %v", resp.GetHostname(), err)
		}
	}

	// Status as a Gateway API user reads it: per parent, meshlens' verdict.
	status := func(resource, name string) (accepted, resolved string, err error) {
		u, err := c.Dynamic.Resource(schema.GroupVersionResource{Group: config.GatewayAPIGroup, Version: "v1", Resource: resource}).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", "", err
		}
		parents, _, _ := unstructured.NestedSlice(u.Object, "status", "parents")
		for _, p := range parents {
			m := p.(map[string]any)
			if m["controllerName"] != ControllerName {
				continue
			}
			conds, _, _ := unstructured.NestedSlice(m, "conditions")
			for _, cd := range conds {
				cm := cd.(map[string]any)
				switch cm["type"] {
				case "Accepted":
					accepted = fmt.Sprintf("%v/%v", cm["status"], cm["reason"])
				case "ResolvedRefs":
					resolved = fmt.Sprintf("%v/%v", cm["status"], cm["reason"])
				}
			}
			return accepted, resolved, nil
		}
		return "", "", fmt.Errorf("%s %s: no status.parents entry of %s", resource, name, ControllerName)
	}
	for _, want := range []struct{ resource, name, accepted, resolved string }{
		{"httproutes", "cart", "True/Accepted", "True/ResolvedRefs"},
		{"httproutes", "storefront", "True/Accepted", "False/BackendNotFound"}, // no Service storefront
		{"grpcroutes", "pricing", "False/NoMatchingParent", "False/BackendNotFound"},
	} {
		meshtest.Eventually(t, 20*time.Second, "status of "+want.name, func() error {
			a, r, err := status(want.resource, want.name)
			if err != nil {
				return err
			}
			if a != want.accepted || r != want.resolved {
				return fmt.Errorf("%s: Accepted %s, ResolvedRefs %s; want %s, %s", want.name, a, r, want.accepted, want.resolved)
			}
			return nil
		})
	}

	meshtest.Eventually(t, 20*time.Second, "a warning event on the GRPCRoute naming its missing parent", func() error {
		evs, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=pricing,involvedObject.kind=GRPCRoute"})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Type == corev1.EventTypeWarning && e.Reason == "ReferencedResourceNotFound" && strings.Contains(e.Message, `Referenced Service not found: "store/pricing"`) {
				return nil
			}
		}
		return fmt.Errorf("no such event among %d", len(evs.Items))
	})

	// Deleting the route with kubectl returns the Service to its own
	// endpoints: both versions, no canary rule.
	if out, err := c.Kubectl(ctx, "delete", "-f", filepath.Join(examples, "httproute.yaml")); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	meshtest.Eventually(t, 20*time.Second, "the Service's own endpoints once the HTTPRoute is gone", func() error {
		got := share(t, client, 60)
		if got["cart-v1"] < 15 || got["cart-v2"] < 15 {
			return fmt.Errorf("share %v", got)
		}
		return nil
	})
}
