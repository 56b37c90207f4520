package kube

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshlens/meshlens/internal/kubetest"
)

// BenchmarkRegistryBuild is one registry snapshot after one endpoint change
// (a Pod's readiness and its Service's EndpointSlice) in a cluster of 1,000
// Services × 5 Pods: the registry's share of BenchmarkRegistryEndpointChurn,
// fed straight into the informer caches (no API server). The reference,
// in the same run, is the same build with nothing kept from the last one.
func BenchmarkRegistryBuild(b *testing.B) {
	const nSvc = 1000
	client, err := kubernetes.NewForConfig(&rest.Config{Host: "http://127.0.0.1:1"}) // never dialled
	if err != nil {
		b.Fatal(err)
	}
	health, err := NewHealth(client, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	r, err := NewRegistry(client, health, RegistryOptions{}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	core := r.factory.Core().V1()
	pods, svcs, sliceIdx := core.Pods().Informer().GetIndexer(), core.Services().Informer().GetIndexer(), r.factory.Discovery().V1().EndpointSlices().Informer().GetIndexer()
	type svcState struct {
		svc  *corev1.Service
		pods []*corev1.Pod
	}
	state := make([]svcState, nSvc)
	for k := range nSvc {
		name := fmt.Sprintf("svc-%d", k)
		s := service("churn", name, corev1.ServicePort{Name: "grpc", Port: 9080, Protocol: corev1.ProtocolTCP})
		s.ResourceVersion = "1"
		state[k].svc = s
		if err := svcs.Add(s); err != nil {
			b.Fatal(err)
		}
		var eps []kubetest.Endpoint
		for j := range 5 {
			p := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", name, j), Namespace: "churn", Labels: podLabels(name, "v1")},
				Spec:       corev1.PodSpec{NodeName: fmt.Sprintf("node-%d", k%10)},
				Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: fmt.Sprintf("10.%d.%d.%d", 1+k/250, k%250, j+1),
					Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
			}
			if err := pods.Add(p); err != nil {
				b.Fatal(err)
			}
			state[k].pods = append(state[k].pods, p)
			eps = append(eps, kubetest.Endpoint{Pod: p, Ready: true})
		}
		if err := sliceIdx.Add(kubetest.Slice(s, map[string]int32{"grpc": 9080}, eps)); err != nil {
			b.Fatal(err)
		}
	}
	if sn := r.build(1); len(sn.Services) != nSvc {
		b.Fatalf("%d services, want %d", len(sn.Services), nSvc)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		st := &state[(i*37)%nSvc]
		j := i % 5
		p := st.pods[j].DeepCopy()
		ready := p.Status.Conditions[0].Status != corev1.ConditionTrue
		p.Status.Conditions[0].Status = map[bool]corev1.ConditionStatus{true: corev1.ConditionTrue, false: corev1.ConditionFalse}[ready]
		st.pods[j] = p
		var eps []kubetest.Endpoint
		for _, q := range st.pods {
			eps = append(eps, kubetest.Endpoint{Pod: q, Ready: q.Status.Conditions[0].Status == corev1.ConditionTrue})
		}
		if err := pods.Update(p); err != nil {
			b.Fatal(err)
		}
		if err := sliceIdx.Update(kubetest.Slice(st.svc, map[string]int32{"grpc": 9080}, eps)); err != nil {
			b.Fatal(err)
		}
		r.build(uint64(i + 2))
	}
	incremental := time.Since(start) / time.Duration(b.N)
	b.StopTimer()
	start = time.Now()
	for i := range b.N {
		r.memo = buildMemo{}
		r.build(uint64(b.N + i + 2))
	}
	full := time.Since(start) / time.Duration(b.N)
	b.ReportMetric(float64(incremental.Microseconds())/1000, "ms/build")
	b.ReportMetric(float64(full.Microseconds())/1000, "ms/full-build")
	b.ReportMetric(float64(incremental)/float64(full), "build/full")
}
