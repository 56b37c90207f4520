package kubetest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// InstallCRDs creates Istio's CRDs (from the istio.io/api module meshlens
// builds with), the Gateway API's when its module is present, and meshlens'
// own (deploy/crds), and waits until each is Established.
func (c *Cluster) InstallCRDs(ctx context.Context) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	files := []string{}
	if dir, err := moduleDir(root, "istio.io/api"); err == nil {
		files = append(files, filepath.Join(dir, "kubernetes", "customresourcedefinitions.gen.yaml"))
	} else {
		return err
	}
	// Gateway API's standard channel (HTTPRoute for the gatewayAPI traffic
	// provider), when meshlens builds with its module.
	if dir, err := moduleDir(root, "sigs.k8s.io/gateway-api"); err == nil && dir != "" {
		gw, _ := filepath.Glob(filepath.Join(dir, "config", "crd", "standard", "gateway.networking.k8s.io_*.yaml"))
		files = append(files, gw...)
	}
	own, _ := filepath.Glob(filepath.Join(root, "deploy", "crds", "*.yaml"))
	files = append(files, own...)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("kubetest: %w", err)
		}
		if err := c.createCRDs(ctx, data); err != nil {
			return fmt.Errorf("kubetest: CRDs of %s: %w", f, err)
		}
	}
	return nil
}

func moduleDir(root, mod string) (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", mod)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("kubetest: go list -m %s: %w", mod, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func (c *Cluster) createCRDs(ctx context.Context, data []byte) error {
	objs, err := decodeDocs(data)
	if err != nil {
		return err
	}
	var names []string
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" {
			continue
		}
		// Create, not apply: Istio's CRDs exceed the client-side apply
		// annotation's 256 KiB.
		if _, err := c.Dynamic.Resource(crdGVR).Create(ctx, o, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create CRD %s: %w", o.GetName(), err)
		}
		names = append(names, o.GetName())
	}
	for _, n := range names {
		if err := c.waitEstablished(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) waitEstablished(ctx context.Context, name string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		u, err := c.Dynamic.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, cd := range conds {
				m, _ := cd.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("CRD %s not established after 30s", name)
}

func decodeDocs(data []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for i, doc := range bytes.Split(data, []byte("\n---")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
	return out, nil
}

// Apply server-side-applies every document of a YAML file, as
// `kubectl apply --server-side` would; namespace fills documents that name
// none. The first write of a new custom resource kind is retried for a few
// seconds while the API server starts serving it.
func (c *Cluster) Apply(ctx context.Context, namespace string, data []byte) error {
	objs, err := decodeDocs(data)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Client.Discovery()))
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		var lastErr error
		for attempt := 0; attempt < 50; attempt++ {
			lastErr = c.applyOne(ctx, mapper, namespace, o, gvk)
			if lastErr == nil {
				break
			}
			mapper.Reset()
			time.Sleep(100 * time.Millisecond)
		}
		if lastErr != nil {
			return fmt.Errorf("apply %s %s: %w", gvk.Kind, o.GetName(), lastErr)
		}
	}
	return nil
}

func (c *Cluster) applyOne(ctx context.Context, mapper *restmapper.DeferredDiscoveryRESTMapper, namespace string, o *unstructured.Unstructured, gvk schema.GroupVersionKind) error {
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return err
	}
	body, err := o.MarshalJSON()
	if err != nil {
		return err
	}
	ri := c.Dynamic.Resource(m.Resource)
	if m.Scope.Name() == "namespace" {
		ns := o.GetNamespace()
		if ns == "" {
			ns = namespace
		}
		_, err = ri.Namespace(ns).Patch(ctx, o.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: "kubetest", Force: ptr(true)})
		return err
	}
	_, err = ri.Patch(ctx, o.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: "kubetest", Force: ptr(true)})
	return err
}

func ptr[T any](v T) *T { return &v }

// Kubectl runs the cluster's kubectl with the admin kubeconfig and returns
// its combined output.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.Bin, "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
