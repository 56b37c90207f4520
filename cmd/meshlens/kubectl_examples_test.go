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

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/meshlens/meshlens/internal/kubetest"
	"github.com/meshlens/meshlens/internal/meshtest"
)

// exampleKeys lists the config keys (KIND/NAMESPACE/NAME) of the objects
// of an example file.
func exampleKeys(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, doc := range strings.Split(string(data), "\n---") {
		var o struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if o.Kind != "" {
			keys = append(keys, o.Kind+"/"+o.Metadata.Namespace+"/"+o.Metadata.Name)
		}
	}
	if len(keys) == 0 {
		t.Fatalf("%s: no objects", path)
	}
	return keys
}

// The kinds added after the first six (Gateway, Sidecar,
// RequestAuthentication, WorkloadGroup) from where most users keep them:
// every example of them applied with kubectl to a real API server is read
// by meshlens (with deploy/'s RBAC) and served; an invalid object of each,
// which the CRD's schema lets through, is refused alone with Accepted=False
// naming the field.
func TestKubectlAppliedExamplesOfTheNewerIstioKindsAreServedAndInvalidOnesRefused(t *testing.T) {
	c := kubetest.Shared(t)
	ctx := context.Background()
	ensureNamespaces(t, c, "bookinfo", "istio-system")
	data := t.TempDir()
	p := startMeshlens(t, "--kubeconfig", deployIdentity(t, c), "--data-dir", data, "--clickhouse", "clickhouse://127.0.0.1:1/x", "--clickhouse-wait", "0s")
	token := readToken(t, data)

	root := repoRoot(t)
	var keys []string
	for _, f := range []string{"gateway.yaml", "sidecar.yaml", "requestauthentication.yaml", "workloadgroup.yaml"} {
		path := filepath.Join(root, "examples/istio", f)
		keys = append(keys, exampleKeys(t, path)...)
		if out, err := c.Kubectl(ctx, "apply", "-f", path); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		t.Cleanup(func() { _, _ = c.Kubectl(context.Background(), "delete", "-f", path, "--ignore-not-found") })
	}
	meshtest.Eventually(t, 30*time.Second, "every example object in GET /api/v1/config, from Kubernetes", func() error {
		code, body := meshtest.HTTP(t, "GET", "http://"+p.http+"/api/v1/config", token, "")
		if code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		for _, key := range keys {
			if !strings.Contains(body, `"`+key+`":"kube:`+key+`"`) {
				return fmt.Errorf("%s not listed with source kube: %.600s", key, body)
			}
		}
		return nil
	})
	for _, key := range keys {
		if code, body := meshtest.HTTP(t, "GET", "http://"+p.http+"/api/v1/config/"+key, token, ""); code != 200 {
			t.Errorf("GET /api/v1/config/%s: %d %.300s", key, code, body)
		}
	}

	for _, bad := range []struct {
		resource, name, yaml, field string
	}{
		{"gateways", "invalid-gateway", `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: invalid-gateway, namespace: bookinfo}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: QUIC}
    hosts: ["*"]
`, "servers[0].port.protocol"},
		{"sidecars", "invalid-sidecar", `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: invalid-sidecar, namespace: bookinfo}
spec:
  workloadSelector: {labels: {app: ratings}}
  egress:
  - hosts: [reviews.bookinfo.svc.cluster.local]
`, "egress[0].hosts[0]"},
		{"requestauthentications", "invalid-requestauthentication", `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: invalid-requestauthentication, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: ratings}}
  jwtRules:
  - issuer: https://auth.example.com
    jwks: '{"keys":[]}'
  - issuer: https://auth.example.com
    jwks: '{"keys":[]}'
`, "jwtRules[1].issuer"},
		{"workloadgroups", "invalid-workloadgroup", `apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: invalid-workloadgroup, namespace: bookinfo}
spec:
  template:
    address: 10.0.3.9
    labels: {app: ratings}
`, "template.address"},
	} {
		group := "networking.istio.io"
		if bad.resource == "requestauthentications" {
			group = "security.istio.io"
		}
		if err := c.Apply(ctx, "bookinfo", []byte(bad.yaml)); err != nil {
			t.Fatalf("%s: the API server refused it (the test needs one its schema lets through): %v", bad.name, err)
		}
		t.Cleanup(func() {
			_, _ = c.Kubectl(context.Background(), "delete", bad.resource+"."+group, bad.name, "-n", "bookinfo", "--ignore-not-found")
		})
		gvr := schema.GroupVersionResource{Group: group, Version: "v1", Resource: bad.resource}
		meshtest.Eventually(t, 30*time.Second, bad.name+" has Accepted=False naming "+bad.field, func() error {
			u, err := c.Dynamic.Resource(gvr).Namespace("bookinfo").Get(ctx, bad.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			b, _ := json.Marshal(u.Object["status"])
			if !strings.Contains(string(b), `"status":"False"`) || !strings.Contains(string(b), bad.field) {
				return fmt.Errorf("status %s", b)
			}
			return nil
		})
	}
	// The refusals left the examples served.
	code, body := meshtest.HTTP(t, "GET", "http://"+p.http+"/api/v1/config", token, "")
	for _, key := range keys {
		if code != 200 || !strings.Contains(body, `"`+key+`":"kube:`+key+`"`) {
			t.Errorf("after the refusals %s is no longer served: %d", key, code)
		}
	}
	if strings.Contains(body, "invalid-") {
		t.Errorf("a refused object is served: %.600s", body)
	}
}
