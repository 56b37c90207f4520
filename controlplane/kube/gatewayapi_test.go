package kube

import (
	"context"
	"fmt"
	"os"
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

// examples/gateway-api applied with kubectl as written (namespaces store
// and payments, the TLS Secret store-cert created): meshlens reads the GatewayClass, Gateway, HTTPRoutes,
// GRPCRoute and ReferenceGrant from the API server, grpc-go clients calling
// the Service cart follow the HTTPRoute attached to it (GAMMA: 90/10 to
// cart-v1 and cart-v2, x-canary: true to cart-v2), and the statuses say
// what a Gateway API controller says: the GatewayClass naming meshlens'
// controller is Accepted, its Gateway Accepted and Programmed with the
// routes attached per listener, each route's parents take it and its
// backends resolve, the storefront's backend in namespace payments
// RefNotPermitted until the ReferenceGrant is applied. A Gateway of
// istiod's class, and a route attached only to it, get nothing from
// meshlens.
func TestKubectlAppliedGatewayAPIRoutesMoveXDSClients(t *testing.T) {
	c := kubetest.Shared(t)
	pn := kubetest.NewPodNetwork(t)
	ctx := context.Background()
	const ns = "store" // the examples' namespace
	for _, n := range []string{ns, "payments"} {
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Client.CoreV1().Namespaces().Delete(context.Background(), n, metav1.DeleteOptions{}) })
	}
	if _, err := c.Client.CoreV1().Services("payments").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "checkout", Namespace: "payments"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "checkout"}, Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}},
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	// The HTTPS listener's certificate, as users create it (kubectl create
	// secret tls store-cert): without it the listener is not programmed.
	crt, key := selfSigned(t, "www.store.example.com")
	if _, err := c.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "store-cert", Namespace: ns},
		Type: corev1.SecretTypeTLS, Data: map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	cp := startControlPlane(t, c, cpOptions{})
	gwapi := func(resource string) schema.GroupVersionResource {
		return schema.GroupVersionResource{Group: config.GatewayAPIGroup, Version: "v1", Resource: resource}
	}

	// istiod's class, a Gateway of it and a route attached only to it.
	istioObjects := filepath.Join(t.TempDir(), "istiod.yaml")
	if err := os.WriteFile(istioObjects, []byte(`apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: istio-test}
spec: {controllerName: istio.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: istiod-owned, namespace: store}
spec:
  gatewayClassName: istio-test
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: istiod-route, namespace: store}
spec:
  parentRefs: [{name: istiod-owned}]
  rules: [{backendRefs: [{name: nowhere, port: 8080}]}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Kubectl(ctx, "apply", "-f", istioObjects); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Cleanup(func() { _, _ = c.Kubectl(context.Background(), "delete", "--ignore-not-found", "-f", istioObjects) })

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
	for _, f := range []string{"gatewayclass.yaml", "gateway.yaml", "httproute.yaml", "grpcroute.yaml"} {
		if out, err := c.Kubectl(ctx, "apply", "-f", filepath.Join(examples, f)); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	t.Cleanup(func() {
		_, _ = c.Kubectl(context.Background(), "delete", "--ignore-not-found", "-f", filepath.Join(examples, "gatewayclass.yaml"))
	})
	meshtest.Eventually(t, 30*time.Second, "the Gateway API objects in the config store, from Kubernetes", func() error {
		for _, k := range []struct{ kind, name string }{{config.KindKubernetesGateway, "store"}, {config.KindHTTPRoute, "storefront"}, {config.KindHTTPRoute, "cart"}, {config.KindGRPCRoute, "pricing"},
			{config.KindKubernetesGateway, "istiod-owned"}, {config.KindHTTPRoute, "istiod-route"}} {
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
		u, err := c.Dynamic.Resource(gwapi(resource)).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
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
		{"httproutes", "storefront", "True/Accepted", "False/RefNotPermitted"}, // payments/checkout, no ReferenceGrant yet
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

	// The ReferenceGrant lets storefront send to payments/checkout: what
	// is left is the Service storefront, which does not exist.
	if out, err := c.Kubectl(ctx, "apply", "-f", filepath.Join(examples, "referencegrant.yaml")); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	meshtest.Eventually(t, 20*time.Second, "storefront's backends permitted once the ReferenceGrant exists", func() error {
		a, r, err := status("httproutes", "storefront")
		if err != nil {
			return err
		}
		if a != "True/Accepted" || r != "False/BackendNotFound" {
			return fmt.Errorf("storefront: Accepted %s, ResolvedRefs %s; want True/Accepted, False/BackendNotFound", a, r)
		}
		return nil
	})

	// The class and Gateway of meshlens' controller, as Gateway API
	// controllers report them.
	conditions := func(obj map[string]any, path ...string) map[string]string {
		out := map[string]string{}
		conds, _, _ := unstructured.NestedSlice(obj, path...)
		for _, cd := range conds {
			cm := cd.(map[string]any)
			out[fmt.Sprint(cm["type"])] = fmt.Sprintf("%v/%v", cm["status"], cm["reason"])
		}
		return out
	}
	meshtest.Eventually(t, 20*time.Second, "GatewayClass meshlens Accepted", func() error {
		u, err := c.Dynamic.Resource(gwapi("gatewayclasses")).Get(ctx, "meshlens", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got := conditions(u.Object, "status", "conditions"); got["Accepted"] != "True/Accepted" {
			return fmt.Errorf("GatewayClass meshlens conditions %v", got)
		}
		return nil
	})
	meshtest.Eventually(t, 20*time.Second, "Gateway store Accepted and Programmed, routes attached per listener", func() error {
		u, err := c.Dynamic.Resource(gwapi("gateways")).Namespace(ns).Get(ctx, "store", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got := conditions(u.Object, "status", "conditions"); got["Accepted"] != "True/Accepted" || got["Programmed"] != "True/Programmed" {
			return fmt.Errorf("Gateway store conditions %v", got)
		}
		listeners, _, _ := unstructured.NestedSlice(u.Object, "status", "listeners")
		got := map[string]string{}
		for _, l := range listeners {
			lm := l.(map[string]any)
			cs := conditions(lm, "conditions")
			got[fmt.Sprint(lm["name"])] = fmt.Sprintf("%v %s %s %s", lm["attachedRoutes"], cs["Accepted"], cs["Programmed"], cs["ResolvedRefs"])
		}
		want := map[string]string{ // storefront on both; cart and pricing are GAMMA
			"http":  "1 True/Accepted True/Programmed True/ResolvedRefs",
			"https": "1 True/Accepted True/Programmed True/ResolvedRefs",
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("listeners %v, want %v", got, want)
		}
		return nil
	})
	// istiod's: no status written by meshlens, no meshlens entry on the
	// route attached to it (by now meshlens has written its statuses of
	// the same syncs, and the istiod objects were in the store before).
	for _, o := range []struct{ resource, ns, name string }{{"gatewayclasses", "", "istio-test"}, {"gateways", ns, "istiod-owned"}, {"httproutes", ns, "istiod-route"}} {
		u, err := c.Dynamic.Resource(gwapi(o.resource)).Namespace(o.ns).Get(ctx, o.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// The CRDs' defaults (Accepted/Programmed Unknown, Pending) stay.
		if st, ok := u.Object["status"].(map[string]any); ok {
			for k, v := range st {
				l, _ := v.([]any)
				for _, e := range l {
					if m, _ := e.(map[string]any); k != "conditions" || m["reason"] != "Pending" {
						t.Errorf("%s %s: meshlens wrote status.%s %v on an object of istiod's class", o.resource, o.name, k, l)
						break
					}
				}
			}
		}
	}
	if _, ok := cp.store.Get(config.KindGatewayClass, config.DefaultNamespace, "istio-test"); !ok {
		t.Errorf("GatewayClass istio-test not in the config store")
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
