package kube

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/controlplane/registry"
	"github.com/meshlens/meshlens/controlplane/xds"
	"github.com/meshlens/meshlens/internal/kubetest"
	"github.com/meshlens/meshlens/internal/meshtest"
)

// controlPlane is meshlens' control plane on a test cluster: the registry and
// the custom-resource config source feeding a config store and an xDS server.
type controlPlane struct {
	store    *config.Store
	registry *Registry
	source   *ConfigSource
	xdsAddr  string
}

func startControlPlane(t *testing.T, c *kubetest.Cluster) *controlPlane {
	t.Helper()
	logger := meshtest.Logger(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wait []chan struct{}
	run := func(f func(context.Context) error) {
		done := make(chan struct{})
		wait = append(wait, done)
		go func() { defer close(done); _ = f(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		for _, d := range wait {
			<-d
		}
	})
	health, err := NewHealth(c.Client, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := NewRegistry(c.Client, health, RegistryOptions{Debounce: 10 * time.Millisecond}, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	kinds, err := config.NewKinds(config.IstioKinds(config.IstioOptions{KnownHost: func(h string) bool { return reg.Snapshot().Has(h) }})...)
	if err != nil {
		t.Fatal(err)
	}
	store, err := config.Open(t.TempDir(), kinds, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	ic, err := istioclient.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewConfigSource(c.Client, ic, c.Dynamic, store, health, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := xds.NewServer(ctx, logger, nil, xds.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Subscribe(func(sn *config.Snapshot) { _ = srv.Update(sn) }))
	t.Cleanup(reg.Subscribe(func(sn *registry.Snapshot) { _ = srv.UpdateServices(sn) }))
	lis := meshtest.Listen(t)
	run(func(ctx context.Context) error { return srv.ServeListener(ctx, lis) })
	run(health.Run)
	run(reg.Run)
	run(src.Run)
	select {
	case <-src.Ready():
	case <-time.After(60 * time.Second):
		t.Fatal("config source did not sync")
	}
	return &controlPlane{store: store, registry: reg, source: src, xdsAddr: lis.Addr().String()}
}

func (cp *controlPlane) client(t *testing.T, ns, target string) testgrpc.TestServiceClient {
	t.Helper()
	bs, err := xds.GRPCBootstrap{ServerAddr: cp.xdsAddr, NodeID: "client-" + target, Metadata: map[string]string{xds.MetaNamespace: ns}}.JSON()
	if err != nil {
		t.Fatal(err)
	}
	return meshtest.XDSClient(t, bs, target, nil)
}

// podBackend serves a test backend inside the pod network on ip:port.
func podBackend(t *testing.T, pn *kubetest.PodNetwork, ip string, port int, name, version string) *meshtest.Backend {
	t.Helper()
	lis, err := pn.Listen(ip, port)
	if err != nil {
		t.Fatal(err)
	}
	b := meshtest.NewBackend(name, version, lis.Addr().(*net.TCPAddr).Port)
	s := grpc.NewServer()
	b.Register(s)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return b
}

// share calls target n times and returns the share of answers per backend.
func share(t *testing.T, c testgrpc.TestServiceClient, n int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		cancel()
		if err != nil {
			out["error"]++
			continue
		}
		out[resp.GetHostname()]++
	}
	return out
}

// The Bookinfo flow as a user runs it: Services and Pods in the cluster,
// Istio's own routing YAML applied with kubectl, grpc-go xDS clients
// following it; then pods change and the clients follow the EndpointSlices.
func TestKubectlAppliedIstioRoutingMovesXDSClients(t *testing.T) {
	c := kubetest.Shared(t)
	pn := kubetest.NewPodNetwork(t)
	ctx := context.Background()
	ns := c.Namespace(t, "bookinfo")
	cp := startControlPlane(t, c)

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

	// Istio's Bookinfo files, as users keep them (short hosts, subsets by
	// the version label), applied by kubectl.
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dr := write("destination-rule-reviews.yaml", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
  - name: v3
    labels:
      version: v3
`)
	vs := write("virtual-service-reviews-v3.yaml", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
    - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v3
`)
	for _, f := range []string{dr, vs} {
		if out, err := c.Kubectl(ctx, "apply", "-n", ns, "-f", f); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
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
	if out, err := c.Kubectl(ctx, "delete", "-n", ns, "-f", vs); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	meshtest.Eventually(t, 20*time.Second, "v1 serves again once the VirtualService is gone", func() error {
		if got := share(t, client, 30); got["reviews-v1"] == 0 {
			return fmt.Errorf("share %v", got)
		}
		return nil
	})
}
