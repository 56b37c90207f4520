// Package kube connects meshlens to a Kubernetes cluster the way istiod does:
// a service registry from Services, EndpointSlices, Pods and Nodes (Registry),
// Istio's and meshlens' custom resources as a config source (ConfigSource),
// and the health of the API server behind both (Health). Everything is driven
// by client-go shared informers: watches, never polling.
package kube

import (
	"errors"
	"fmt"
	"os"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// KubeconfigNone turns the Kubernetes integration off.
const KubeconfigNone = "none"

// ErrDisabled is returned by RESTConfig when no cluster is configured.
var ErrDisabled = errors.New("kubernetes integration is off")

// RESTConfig resolves `meshlens serve --kubeconfig`: "none" is off; a path
// is that kubeconfig; empty is the in-cluster config inside a pod, else the
// file KUBECONFIG names, else off (a laptop's ~/.kube/config is never used
// unasked).
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	switch {
	case kubeconfig == KubeconfigNone:
		return nil, ErrDisabled
	case kubeconfig != "":
	case os.Getenv("KUBERNETES_SERVICE_HOST") != "":
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster kubernetes config: %w", err)
		}
		return tuned(cfg), nil
	case os.Getenv("KUBECONFIG") != "":
		kubeconfig = os.Getenv("KUBECONFIG")
	default:
		return nil, ErrDisabled
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return tuned(cfg), nil
}

// tuned raises client-go's default 5 QPS: status writes and the first lists
// of a large cluster would otherwise queue behind the rate limiter.
func tuned(cfg *rest.Config) *rest.Config {
	cfg.QPS, cfg.Burst = 50, 100
	cfg.UserAgent = "meshlens"
	return cfg
}

// metaTrimmed keeps the identity, labels and owners of an object.
func metaTrimmed(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		Labels: m.Labels, OwnerReferences: m.OwnerReferences, DeletionTimestamp: m.DeletionTimestamp,
	}
}
