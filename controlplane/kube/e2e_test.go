package kube

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/internal/kubetest"
	"github.com/meshlens/meshlens/internal/meshtest"
)

// The Bookinfo flow as a user runs it: Services and Pods in the cluster,
// Istio's own routing YAML applied with kubectl, grpc-go xDS clients
// following it; then pods change and the clients follow the EndpointSlices.
func TestKubectlAppliedIstioRoutingMovesXDSClients(t *testing.T) {
	c := kubetest.Shared(t)
	pn := kubetest.NewPodNetwork(t)
	ctx := context.Background()
	ns := c.Namespace(t, "bookinfo")
	cp := startControlPlane(t, c, cpOptions{})

	svc, err := c.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: ns, Labels: map[string]string{"app": "reviews"}},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "reviews"}, Ports: []corev1.ServicePort{
			{Name: "grpc", Port: 9080, TargetPort: intstr.FromInt32(9080)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pods := map[string]*corev1.Pod{}
	backends := map[string]*meshtest.Backend{}
	for _, v := range []string{"v1", "v2", "v3"} {
		ip := pn.NewIP(t)
		backends[v] = podBackend(t, pn, ip, 9080, "reviews-"+v, v)
		p, err := kubetest.RunPod(ctx, c.Client, ns, "reviews-"+v, "", ip, map[string]string{"app": "reviews", "version": v}, true)
		if err != nil {
			t.Fatal(err)
		}
		pods[v] = p
	}
	ready := func(vs ...string) []kubetest.Endpoint {
		var eps []kubetest.Endpoint
		for _, v := range vs {
			eps = append(eps, kubetest.Endpoint{Pod: pods[v], Ready: true})
		}
		return eps
	}
	if err := kubetest.WriteSlice(ctx, c.Client, svc, nil, ready("v1", "v2", "v3")); err != nil {
		t.Fatal(err)
	}
	client := cp.client(t, ns, "reviews."+ns+".svc.cluster.local:9080")
	meshtest.Eventually(t, 30*time.Second, "calls reach every version with no routing config", func() error {
		got := share(t, client, 30)
		if got["reviews-v1"] == 0 || got["reviews-v2"] == 0 || got["reviews-v3"] == 0 {
			return fmt.Errorf("share %v", got)
		}
		return nil
	})

	// Istio's own Bookinfo files (samples/bookinfo/networking in
	// istio/istio, kept with their licence in controlplane/config/testdata),
	// applied by kubectl as users do: subsets by the version label, then a
	// 90/10 split, then everything to v3.
	sample := func(name string) string {
		return filepath.Join("..", "config", "testdata", "conformance", "bookinfo", name)
	}
	kubectl := func(args ...string) {
		t.Helper()
		if out, err := c.Kubectl(ctx, args...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	kubectl("apply", "-n", ns, "-f", sample("destination-rule-all.yaml"))
	kubectl("apply", "-n", ns, "-f", sample("virtual-service-reviews-90-10.yaml"))
	meshtest.Eventually(t, 20*time.Second, "a 90/10 split of v1 and v2", func() error {
		got := share(t, client, 200)
		if got["reviews-v3"] != 0 || got["error"] != 0 || got["reviews-v1"] < 160 || got["reviews-v2"] < 5 {
			return fmt.Errorf("share %v", got)
		}
		return nil
	})
	vs := sample("virtual-service-reviews-v3.yaml")
	kubectl("apply", "-n", ns, "-f", vs)
	meshtest.Eventually(t, 20*time.Second, "every call goes to v3", func() error {
		if got := share(t, client, 20); got["reviews-v3"] != 20 {
			return fmt.Errorf("share %v", got)
		}
		return nil
	})
	if o, ok := cp.store.Get(config.KindVirtualService, ns, "reviews"); !ok || cp.store.Origin(o.Kind, ns, "reviews") != "kube:VirtualService/"+ns+"/reviews" {
		t.Errorf("the VirtualService's origin = %q, want the cluster", cp.store.Origin(config.KindVirtualService, ns, "reviews"))
	}

	// v3 is replaced: the old pod terminates (still serving, draining) and
	// a new one turns ready. New calls go only to the new pod.
	ip := pn.NewIP(t)
	backends["v3b"] = podBackend(t, pn, ip, 9080, "reviews-v3b", "v3")
	p, err := kubetest.RunPod(ctx, c.Client, ns, "reviews-v3b", "", ip, map[string]string{"app": "reviews", "version": "v3"}, true)
	if err != nil {
		t.Fatal(err)
	}
	pods["v3b"] = p
	eps := append(ready("v1", "v2", "v3b"), kubetest.Endpoint{Pod: pods["v3"], Terminating: true})
	if err := kubetest.WriteSlice(ctx, c.Client, svc, nil, eps); err != nil {
		t.Fatal(err)
	}
	meshtest.Eventually(t, 20*time.Second, "calls go to the new v3 pod only", func() error {
		if got := share(t, client, 20); got["reviews-v3b"] != 20 {
			return fmt.Errorf("share %v", got)
		}
		return nil
	})

	// Deleting the VirtualService with kubectl returns to all versions.
	kubectl("delete", "-n", ns, "-f", vs)
	meshtest.Eventually(t, 20*time.Second, "v1 serves again once the VirtualService is gone", func() error {
		if got := share(t, client, 30); got["reviews-v1"] == 0 {
			return fmt.Errorf("share %v", got)
		}
		return nil
	})
}
