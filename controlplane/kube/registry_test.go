package kube

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshlens/meshlens/controlplane/registry"
	"github.com/meshlens/meshlens/internal/kubetest"
	"github.com/meshlens/meshlens/internal/meshtest"
)

// startRegistry runs a Registry on the shared test cluster until the test ends.
func startRegistry(t *testing.T, c *kubetest.Cluster) *Registry {
	t.Helper()
	health, err := NewHealth(c.Client, meshtest.Logger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRegistry(c.Client, health, RegistryOptions{Debounce: 10 * time.Millisecond}, meshtest.Logger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	meshtest.Background(t, r.Run)
	meshtest.Eventually(t, 30*time.Second, "registry ready", func() error {
		if !r.Ready() {
			return fmt.Errorf("not ready")
		}
		return nil
	})
	return r
}

func service(ns, name string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name}, Ports: ports}}
}

func port(name string, n int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: n, TargetPort: intstr.FromInt32(n + 1000), Protocol: corev1.ProtocolTCP}
}

func TestRegistryReadsServicesEndpointSlicesPodsAndNodes(t *testing.T) {
	c := kubetest.Shared(t)
	ctx := context.Background()
	ns := c.Namespace(t, "registry")
	if err := kubetest.Node(ctx, c.Client, "node-eu-a", "eu-west1", "eu-west1-a"); err != nil {
		t.Fatal(err)
	}
	r := startRegistry(t, c)

	grpcApp := "grpc"
	web := port("http-web", 9080)
	api := port("tcp-admin", 9090)
	api.AppProtocol = &grpcApp // appProtocol wins over the name
	svc, err := c.Client.CoreV1().Services(ns).Create(ctx, service(ns, "reviews", web, api), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var pods []*corev1.Pod
	for i, v := range []string{"v1", "v2", "v3"} {
		p, err := kubetest.RunPod(ctx, c.Client, ns, "reviews-"+v, "node-eu-a", fmt.Sprintf("10.250.0.%d", 10+i),
			map[string]string{"app": "reviews", "version": v}, true)
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, p)
	}
	// v1 ready, v2 terminating but serving (drains), v3 not ready (left out).
	if err := kubetest.WriteSlice(ctx, c.Client, svc, map[string]int32{"http-web": 19080, "tcp-admin": 19090}, []kubetest.Endpoint{
		{Pod: pods[0], Ready: true}, {Pod: pods[1], Terminating: true}, {Pod: pods[2]},
	}); err != nil {
		t.Fatal(err)
	}
	host := "reviews." + ns + ".svc.cluster.local"
	meshtest.Eventually(t, 10*time.Second, "reviews with two endpoints", func() error {
		s := r.Snapshot().Service(host)
		if s == nil || len(s.Endpoints) != 2 {
			return fmt.Errorf("service %s: %+v", host, s)
		}
		return nil
	})
	s := r.Snapshot().Service(host)
	if got := s.Ports; !slices.Equal(got, []registry.Port{{Name: "http-web", Port: 9080, Protocol: "HTTP"}, {Name: "tcp-admin", Port: 9090, Protocol: "GRPC"}}) {
		t.Errorf("ports = %+v", got)
	}
	e1, e2 := s.Endpoints[0], s.Endpoints[1]
	if e1.Address != "10.250.0.10" || e1.Health != registry.Healthy || e1.Ports["http-web"] != 19080 || e1.Labels["version"] != "v1" {
		t.Errorf("first endpoint = %+v %+v", e1, e1.Workload)
	}
	if e1.Locality != "eu-west1/eu-west1-a" || e1.Pod != "reviews-v1" || e1.ServiceAccount != "default" {
		t.Errorf("first endpoint's workload = %+v", e1.Workload)
	}
	if e2.Address != "10.250.0.11" || e2.Health != registry.Draining {
		t.Errorf("second endpoint = %+v, want 10.250.0.11 draining", e2)
	}
	if w := r.Snapshot().WorkloadAt("10.250.0.12:19080"); w == nil || w.App != "reviews" || w.Version != "v3" {
		t.Errorf("WorkloadAt(v3's address) = %+v, want reviews v3 (a not-ready pod still names its workload)", w)
	}

	// A label change reaches the registry.
	p := pods[0].DeepCopy()
	p.Labels["version"] = "v1b"
	if _, err := c.Client.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	meshtest.Eventually(t, 10*time.Second, "relabelled pod", func() error {
		if got := r.Snapshot().Service(host).Endpoints[0].Labels["version"]; got != "v1b" {
			return fmt.Errorf("version label %q", got)
		}
		return nil
	})
}

func TestRegistryServiceShapes(t *testing.T) {
	c := kubetest.Shared(t)
	ctx := context.Background()
	r := startRegistry(t, c)
	// A namespace created after the registry started.
	ns := c.Namespace(t, "later")

	headless := service(ns, "db", port("tcp", 5432))
	headless.Spec.ClusterIP = corev1.ClusterIPNone
	external := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "payments", Namespace: ns},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "payments.example.com", Ports: []corev1.ServicePort{port("https", 443)}}}
	noSelector := service(ns, "legacy", port("http", 80))
	noSelector.Spec.Selector = nil
	for _, s := range []*corev1.Service{headless, external, noSelector} {
		if _, err := c.Client.CoreV1().Services(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// A pod without labels behind the selector-less Service, in a slice
	// written by hand; and a slice of a Service that does not exist.
	bare, err := kubetest.RunPod(ctx, c.Client, ns, "bare", "", "10.250.1.5", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := kubetest.WriteSlice(ctx, c.Client, noSelector, nil, []kubetest.Endpoint{{Pod: bare, Ready: true}}); err != nil {
		t.Fatal(err)
	}
	orphan := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "ghost-1", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: "ghost"}},
		AddressType: discoveryv1.AddressTypeIPv4, Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.250.1.9"}}}}
	if _, err := c.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, orphan, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	meshtest.Eventually(t, 10*time.Second, "three services", func() error {
		sn := r.Snapshot()
		for _, n := range []string{"db", "payments", "legacy"} {
			if !sn.Has(n + "." + ns + ".svc.cluster.local") {
				return fmt.Errorf("%s missing", n)
			}
		}
		if len(sn.Service("legacy."+ns+".svc.cluster.local").Endpoints) != 1 {
			return fmt.Errorf("legacy has no endpoint yet")
		}
		return nil
	})
	sn := r.Snapshot()
	if s := sn.Service("db." + ns + ".svc.cluster.local"); !s.Headless || s.Ports[0].Protocol != "TCP" {
		t.Errorf("db = %+v, want headless TCP", s)
	}
	if s := sn.Service("payments." + ns + ".svc.cluster.local"); s.ExternalName != "payments.example.com" || s.Ports[0].Protocol != "HTTPS" {
		t.Errorf("payments = %+v, want ExternalName payments.example.com, HTTPS", s)
	}
	if sn.Has("ghost." + ns + ".svc.cluster.local") {
		t.Error("an EndpointSlice without its Service made a service")
	}
	if e := sn.Service("legacy." + ns + ".svc.cluster.local").Endpoints[0]; e.Workload == nil || e.Workload.Name != "bare" || e.Workload.App != "" {
		t.Errorf("legacy's endpoint = %+v, want the unlabelled pod bare", e.Workload)
	}
}

// The registry rebuilds only the Services whose slices or Pods changed
// (registry.go's buildMemo): what it keeps must still follow every input.
func TestRegistryRebuildsWhatChangedAndKeepsTheRest(t *testing.T) {
	c := kubetest.Shared(t)
	ctx := context.Background()
	ns := c.Namespace(t, "memo")
	node := "node-" + ns
	if err := kubetest.Node(ctx, c.Client, node, "r1", "z1"); err != nil {
		t.Fatal(err)
	}
	r := startRegistry(t, c)
	host := func(name string) string { return name + "." + ns + ".svc.cluster.local" }
	create := func(s *corev1.Service) *corev1.Service {
		t.Helper()
		s, err := c.Client.CoreV1().Services(ns).Create(ctx, s, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := create(service(ns, "a", port("grpc", 9080))), create(service(ns, "b", port("grpc", 9080)))
	ext := create(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "ext", Namespace: ns},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "ext.example.com", Ports: []corev1.ServicePort{port("grpc", 9080)}}})
	pa, err := kubetest.RunPod(ctx, c.Client, ns, "a-1", node, "10.250.2.1", map[string]string{"app": "a"}, true)
	if err != nil {
		t.Fatal(err)
	}
	// b's and ext's slices name Pods that do not exist yet.
	notYet := func(name, ip string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: corev1.PodSpec{NodeName: node},
			Status: corev1.PodStatus{PodIP: ip}}
	}
	for _, w := range []struct {
		svc *corev1.Service
		pod *corev1.Pod
	}{{a, pa}, {b, notYet("b-1", "10.250.2.2")}, {ext, notYet("ext-1", "10.250.2.3")}} {
		if err := kubetest.WriteSlice(ctx, c.Client, w.svc, nil, []kubetest.Endpoint{{Pod: w.pod, Ready: true}}); err != nil {
			t.Fatal(err)
		}
	}
	endpoint := func(name string) (*registry.Endpoint, error) {
		s := r.Snapshot().Service(host(name))
		if s == nil || len(s.Endpoints) != 1 {
			return nil, fmt.Errorf("service %s: %+v", name, s)
		}
		return s.Endpoints[0], nil
	}
	meshtest.Eventually(t, 10*time.Second, "a and b with an endpoint each", func() error {
		for _, n := range []string{"a", "b"} {
			if _, err := endpoint(n); err != nil {
				return err
			}
		}
		return nil
	})
	if e, _ := endpoint("b"); e.Pod != "" || e.Locality != "r1/z1" {
		t.Errorf("b's endpoint before its Pod exists = %+v, want no Pod, the node's locality", e.Workload)
	}
	unchanged := r.Snapshot().Service(host("a"))

	// The Pod appears: b's endpoint names it; a is kept as it was.
	if _, err := kubetest.RunPod(ctx, c.Client, ns, "b-1", node, "10.250.2.2", map[string]string{"app": "b", "version": "v1"}, true); err != nil {
		t.Fatal(err)
	}
	meshtest.Eventually(t, 10*time.Second, "b's endpoint names its Pod", func() error {
		if e, err := endpoint("b"); err != nil || e.Pod != "b-1" || e.Version != "v1" {
			return fmt.Errorf("b's endpoint: %+v %v", e, err)
		}
		return nil
	})
	if r.Snapshot().Service(host("a")) != unchanged {
		t.Error("a Service whose slices and Pods did not change was rebuilt")
	}

	// ext turns from ExternalName into a Service with the slice it already has.
	ext.Spec.Type, ext.Spec.ExternalName = corev1.ServiceTypeClusterIP, ""
	if _, err := c.Client.CoreV1().Services(ns).Update(ctx, ext, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	meshtest.Eventually(t, 10*time.Second, "ext's endpoint", func() error {
		_, err := endpoint("ext")
		return err
	})
	// The node moves to another zone: every endpoint on it follows.
	n, err := c.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Labels["topology.kubernetes.io/zone"] = "z2"
	if _, err := c.Client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	meshtest.Eventually(t, 10*time.Second, "every locality r1/z2", func() error {
		for _, name := range []string{"a", "b", "ext"} {
			e, err := endpoint(name)
			if err != nil {
				return err
			}
			if e.Locality != "r1/z2" {
				return fmt.Errorf("%s's endpoint in %q", name, e.Locality)
			}
		}
		return nil
	})
}

func TestProtocolFollowsIstio(t *testing.T) {
	for _, tc := range []struct{ name, proto, app, want string }{
		{"http", "TCP", "", "HTTP"},
		{"http-web", "TCP", "", "HTTP"},
		{"http2-x", "TCP", "", "HTTP2"},
		{"grpc", "TCP", "", "GRPC"},
		{"grpc-web-ui", "TCP", "", "GRPC-Web"},
		{"tcp-db", "TCP", "", "TCP"},
		{"mongo", "TCP", "", "Mongo"},
		{"web", "TCP", "", ""},
		{"web", "TCP", "http", "HTTP"},
		{"tcp", "TCP", "kubernetes.io/h2c", "HTTP2"},
		{"http", "UDP", "", "UDP"},
	} {
		if got := registry.Protocol(tc.name, tc.proto, tc.app); got != tc.want {
			t.Errorf("Protocol(%q, %q, %q) = %q, want %q", tc.name, tc.proto, tc.app, got, tc.want)
		}
	}
}
