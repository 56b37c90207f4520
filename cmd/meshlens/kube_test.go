package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/internal/kubetest"
	"github.com/meshlens/meshlens/internal/meshtest"
)

// The user's path in a cluster: meshlens serve --kubeconfig, Istio's YAML and
// meshlens' own kinds applied with kubectl, kubectl showing their status.
func TestServeWithKubeconfigReadsTheClusterAndWritesStatus(t *testing.T) {
	c := kubetest.Shared(t)
	ctx := context.Background()
	ensureNamespaces(t, c, "bookinfo") // other tests of the shared cluster use it too
	for _, name := range []string{"productpage", "details", "reviews", "ratings"} {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "bookinfo"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{{Name: "http", Port: 9080, TargetPort: intstr.FromInt32(9080)}}}}
		if _, err := c.Client.CoreV1().Services("bookinfo").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	data := t.TempDir()
	// meshlens runs with exactly the rights deploy/ gives it: every read,
	// status write and event below must be allowed by them.
	p := startMeshlens(t, "--kubeconfig", deployIdentity(t, c), "--data-dir", data, "--clickhouse", "clickhouse://127.0.0.1:1/x", "--clickhouse-wait", "0s")
	token := readToken(t, data)

	// Istio's kinds and meshlens' own, exactly as kept in examples/. (The
	// canary owns reviews' routes, so reviews' VirtualService is left out:
	// with the meshlens traffic provider it writes its own.)
	root := repoRoot(t)
	kubectl := func(args ...string) {
		t.Helper()
		if out, err := c.Kubectl(ctx, args...); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	kubectl("apply", "-f", filepath.Join(root, "examples/istio/destinationrule.yaml"), "-f", filepath.Join(root, "examples/istio/virtualservice.yaml"))
	kubectl("delete", "virtualservice", "reviews", "-n", "bookinfo")
	kubectl("apply", "-f", filepath.Join(root, "examples/rollout-canary.yaml"), "-f", filepath.Join(root, "examples/alertrule-error-rate.yaml"))
	meshtest.Eventually(t, 30*time.Second, "the cluster's objects in GET /api/v1/config, from Kubernetes", func() error {
		code, body := meshtest.HTTP(t, "GET", "http://"+p.http+"/api/v1/config", token, "")
		if code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		for _, key := range []string{"VirtualService/bookinfo/ratings", "DestinationRule/bookinfo/reviews", "Rollout/bookinfo/reviews", "AlertRule/bookinfo/reviews-v3-errors"} {
			if !strings.Contains(body, `"`+key+`":"kube:`+key+`"`) {
				return fmt.Errorf("%s not listed with source kube: %.600s", key, body)
			}
		}
		return nil
	})
	// kubectl shows the rollout's state from its status.
	meshtest.Eventually(t, 30*time.Second, "kubectl get rollouts -A shows the phase", func() error {
		out, err := c.Kubectl(ctx, "get", "rollouts.meshlens.io", "-A")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "reviews") || !strings.Contains(out, "progressing") && !strings.Contains(out, "pending") {
			return fmt.Errorf("kubectl get rollouts -A:\n%s", out)
		}
		return nil
	})
	// The API cannot change what the cluster owns.
	code, body := meshtest.HTTP(t, "DELETE", "http://"+p.http+"/api/v1/config/DestinationRule/bookinfo/reviews", token, "")
	if code == 200 || !strings.Contains(body, "Kubernetes") {
		t.Errorf("DELETE of a cluster-owned DestinationRule: %d %s, want a refusal naming Kubernetes", code, body)
	}

	// An invalid change to ratings' VirtualService (weights summing to 90)
	// is refused alone: a condition and an event on it, the version accepted
	// before stays in force, everything else is still served.
	bad := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: bookinfo}
spec:
  hosts: [ratings]
  http:
  - route:
    - {destination: {host: ratings}, weight: 50}
    - {destination: {host: ratings}, weight: 40}
`
	if err := c.Apply(ctx, "bookinfo", []byte(bad)); err != nil {
		t.Fatal(err)
	}
	vsGVR := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}
	meshtest.Eventually(t, 30*time.Second, "the invalid VirtualService has Accepted=False", func() error {
		u, err := c.Dynamic.Resource(vsGVR).Namespace("bookinfo").Get(ctx, "ratings", metav1.GetOptions{})
		if err != nil {
			return err
		}
		b, _ := json.Marshal(u.Object["status"])
		if !strings.Contains(string(b), `"status":"False"`) || !strings.Contains(string(b), "sum to 90") {
			return fmt.Errorf("status %s", b)
		}
		return nil
	})
	meshtest.Eventually(t, 30*time.Second, "a Warning event names the refusal", func() error {
		evs, err := c.Client.CoreV1().Events("bookinfo").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == "ratings" && e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, "sum to 90") {
				return nil
			}
		}
		return fmt.Errorf("%d events, none for ratings", len(evs.Items))
	})
	if _, body := meshtest.HTTP(t, "GET", "http://"+p.http+"/api/v1/config/VirtualService/bookinfo/ratings", token, ""); !strings.Contains(body, "^/ratings/[0-9]+$") || strings.Contains(body, `"weight":40`) {
		t.Errorf("after an invalid change: ratings should keep its accepted version: %.500s", body)
	}

	// The API server goes away: meshlens stays ready on the last config and
	// says so; when it is back, changes flow again.
	c.StopAPIServer()
	meshtest.Eventually(t, 30*time.Second, "/readyz names the unreachable API server", func() error {
		code, body := meshtest.HTTP(t, "GET", "http://"+p.http+"/readyz", "", "")
		if code != 200 || !strings.Contains(body, "kubernetes API server") {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	if v := p.metric(t, "meshlens_kube_apiserver_up"); v != 0 {
		t.Errorf("meshlens_kube_apiserver_up = %v while the API server is down", v)
	}
	if err := c.RestartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Kubectl(ctx, "delete", "-f", filepath.Join(root, "examples/alertrule-error-rate.yaml")); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	meshtest.Eventually(t, 60*time.Second, "the deletion made after the outage reaches meshlens", func() error {
		code, body := meshtest.HTTP(t, "GET", "http://"+p.http+"/api/v1/config", token, "")
		if code != 200 || strings.Contains(body, `"AlertRule/`) {
			return fmt.Errorf("%d %.300s", code, body)
		}
		if code, rz := meshtest.HTTP(t, "GET", "http://"+p.http+"/readyz", "", ""); code != 200 || strings.Contains(rz, "kubernetes") {
			return fmt.Errorf("readyz %d %s", code, rz)
		}
		return nil
	})
}

// deployIdentity applies deploy/kubernetes/rbac.yaml's ServiceAccount,
// roles and bindings, their rules as written but their names this test's
// own (a namespace of its own; the chart's tests install a ClusterRole
// named meshlens too), and returns a kubeconfig with a token of that
// ServiceAccount.
func deployIdentity(t *testing.T, c *kubetest.Cluster) string {
	t.Helper()
	ctx := context.Background()
	ns := c.Namespace(t, "ml-rbac")
	var docs []string
	for _, obj := range loadManifests(t, "deploy/kubernetes/rbac.yaml") {
		meta := obj["metadata"].(map[string]any)
		if meta["namespace"] != nil {
			meta["namespace"] = ns
		} else {
			meta["name"] = ns // cluster-scoped: a name of this test's
			t.Cleanup(func() {
				_, _ = c.Kubectl(context.Background(), "delete", strings.ToLower(obj["kind"].(string)), ns, "--ignore-not-found")
			})
		}
		if ref, ok := obj["roleRef"].(map[string]any); ok && ref["kind"] == "ClusterRole" {
			ref["name"] = ns
		}
		for _, s := range yamlList(obj["subjects"]) {
			s["namespace"] = ns
		}
		b, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	if err := c.Apply(ctx, ns, []byte(strings.Join(docs, "\n---\n"))); err != nil {
		t.Fatal(err)
	}
	tok, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "meshlens",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path, err := c.WriteKubeconfig(ns, tok.Status.Token)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// readToken is the operator token serve generated in its data dir.
func readToken(t testing.TB, dataDir string) string {
	t.Helper()
	b, err := os.ReadFile(auth.TokenPath(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
