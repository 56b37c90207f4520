package kubetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Namespace creates a fresh namespace for one test (nothing deletes
// namespaces without a controller-manager, so each test has its own).
func (c *Cluster) Namespace(t testing.TB, prefix string) string {
	t.Helper()
	name := prefix + "-" + strconv.FormatUint(rand.Uint64()%0xffffff, 36)
	_, err := c.Client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: create namespace: %v", err)
	}
	return name
}

// Node creates (or keeps) a Node with topology labels.
func Node(ctx context.Context, client kubernetes.Interface, name, region, zone string) error {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		"topology.kubernetes.io/region": region, "topology.kubernetes.io/zone": zone}}}
	_, err := client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// RunPod creates a Pod on node and, as a kubelet would, marks it Running
// with ip and Ready as given.
func RunPod(ctx context.Context, client kubernetes.Interface, ns, name, node, ip string, labels map[string]string, ready bool) (*corev1.Pod, error) {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: "default",
			Containers: []corev1.Container{{Name: "app", Image: "meshlens/test"}}},
	}
	p, err := client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create pod %s/%s: %w", ns, name, err)
	}
	return SetPodStatus(ctx, client, p, ip, ready)
}

// SetPodStatus writes a Running status with ip and the Ready condition.
func SetPodStatus(ctx context.Context, client kubernetes.Interface, p *corev1.Pod, ip string, ready bool) (*corev1.Pod, error) {
	cond := corev1.ConditionFalse
	if ready {
		cond = corev1.ConditionTrue
	}
	p = p.DeepCopy()
	p.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: cond}},
	}
	out, err := client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s status: %w", p.Namespace, p.Name, err)
	}
	return out, nil
}

// Endpoint is one address of an EndpointSlice written by WriteSlice.
type Endpoint struct {
	Pod         *corev1.Pod // the target; its IP, node and namespace
	Ready       bool
	Terminating bool // serving but terminating, when Ready is false
}

// WriteSlice writes (creates or replaces) the EndpointSlice "SERVICE-kubetest"
// of a Service as the endpoint controller would: one port per Service port,
// resolved to ports (Service port name -> endpoint port), and the given
// endpoints with their conditions.
func WriteSlice(ctx context.Context, client kubernetes.Interface, svc *corev1.Service, ports map[string]int32, eps []Endpoint) error {
	s := Slice(svc, ports, eps)
	api := client.DiscoveryV1().EndpointSlices(svc.Namespace)
	old, err := api.Get(ctx, s.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(ctx, s, metav1.CreateOptions{})
	case err == nil:
		s.ResourceVersion = old.ResourceVersion
		_, err = api.Update(ctx, s, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("endpointslice %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}

// Slice is the EndpointSlice WriteSlice writes, for a caller that keeps
// its resourceVersion and updates it in one request, as the endpoint
// controller does from its cache.
func Slice(svc *corev1.Service, ports map[string]int32, eps []Endpoint) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: svc.Name + "-kubetest", Namespace: svc.Namespace, Labels: map[string]string{
			discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: "kubetest"}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, p := range svc.Spec.Ports {
		name, port, proto := p.Name, ports[p.Name], p.Protocol
		if port == 0 {
			port = p.TargetPort.IntVal
		}
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: &name, Port: &port, Protocol: &proto})
	}
	for _, e := range eps {
		ready, serving, terminating := e.Ready, e.Ready || e.Terminating, e.Terminating
		ep := discoveryv1.Endpoint{
			Addresses:  []string{e.Pod.Status.PodIP},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: e.Pod.Namespace, Name: e.Pod.Name, UID: e.Pod.UID},
		}
		if node := e.Pod.Spec.NodeName; node != "" {
			ep.NodeName = &node
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	return s
}
