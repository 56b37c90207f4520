package kube

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/internal/kubetest"
	"github.com/meshlens/meshlens/internal/meshtest"
)

// With RBAC that forbids Pods, the registry names the denial once and still
// serves Services and their endpoints.
func TestRegistryWithoutPodAccessLogsTheDenialAndServesTheRest(t *testing.T) {
	c := kubetest.Shared(t)
	ctx := context.Background()
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "registry-no-pods"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services", "nodes", "namespaces"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
	}}
	if _, err := c.Client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "registry-no-pods"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: kubetest.LimitedUser}}}
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	limited, err := kubernetes.NewForConfig(c.RESTConfig(kubetest.LimitedToken))
	if err != nil {
		t.Fatal(err)
	}
	logs := &meshtest.LogBuffer{}
	logger := meshtest.Logger(t)
	health, err := NewHealth(limited, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	health.logger = newTeeLogger(logger, logs)
	r, err := NewRegistry(limited, health, RegistryOptions{Debounce: 10 * time.Millisecond, SyncTimeout: 3 * time.Second}, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })

	ns := c.Namespace(t, "rbac")
	svc, err := c.Client.CoreV1().Services(ns).Create(ctx, service(ns, "ratings", port("http", 9080)), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := kubetest.RunPod(ctx, c.Client, ns, "ratings-v1", "", "10.250.2.10", map[string]string{"app": "ratings", "version": "v1"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := kubetest.WriteSlice(ctx, c.Client, svc, nil, []kubetest.Endpoint{{Pod: p, Ready: true}}); err != nil {
		t.Fatal(err)
	}
	host := "ratings." + ns + ".svc.cluster.local"
	meshtest.Eventually(t, 20*time.Second, "ratings served without pod access", func() error {
		s := r.Snapshot().Service(host)
		if s == nil || len(s.Endpoints) != 1 || s.Endpoints[0].Address != "10.250.2.10" {
			return fmt.Errorf("service %+v", s)
		}
		return nil
	})
	meshtest.Eventually(t, 10*time.Second, "the denial is named", func() error {
		if _, ok := health.Forbidden()["pods"]; !ok {
			return fmt.Errorf("forbidden = %v", health.Forbidden())
		}
		if log := logs.String(); !strings.Contains(log, "resource=pods") || !strings.Contains(log, "verb=list,watch") {
			return fmt.Errorf("log: %s", log)
		}
		return nil
	})
	if n := strings.Count(logs.String(), "RBAC forbids"); n != 1 {
		t.Errorf("the denial was logged %d times, want once", n)
	}
	// Without its Pod the endpoint has no labels: subsets cannot select it,
	// but it still serves the Service.
	if e := r.Snapshot().Service(host).Endpoints[0]; e.Workload == nil || len(e.Labels) != 0 {
		t.Errorf("endpoint workload %+v, want one without pod labels", e.Workload)
	}
}

// Without RBAC for Istio's kinds (the Helm chart's istio.enabled=false), the
// config source does not wait for them: it is ready at once, and says why.
func TestConfigSourceWithoutIstioAccessIsReadyAtOnce(t *testing.T) {
	c := kubetest.Shared(t)
	ctx := context.Background()
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "config-no-istio"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"meshlens.io"}, Resources: []string{"rollouts", "alertrules"}, Verbs: []string{"list", "watch"}},
	}}
	if _, err := c.Client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "config-no-istio"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: kubetest.LimitedUser}}}
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := c.RESTConfig(kubetest.LimitedToken)
	limited, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ic, err := istioclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	logger := meshtest.Logger(t)
	health, err := NewHealth(limited, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	kinds, err := config.NewKinds(config.IstioKinds(config.IstioOptions{})...)
	if err != nil {
		t.Fatal(err)
	}
	store, err := config.Open(t.TempDir(), kinds, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewConfigSource(limited, ic, dyn, store, health, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = src.Run(sctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-src.Ready():
	case <-time.After(15 * time.Second):
		t.Fatalf("not ready after 15s; forbidden: %v", health.Forbidden())
	}
	for _, r := range []string{"virtualservices", "gateways", "gateways.gateway.networking.k8s.io", "httproutes.gateway.networking.k8s.io", "grpcroutes.gateway.networking.k8s.io",
		"gatewayclasses.gateway.networking.k8s.io", "referencegrants.gateway.networking.k8s.io"} {
		if _, ok := health.Forbidden()[r]; !ok {
			t.Errorf("forbidden = %v, want %s named", health.Forbidden(), r)
		}
	}
}
