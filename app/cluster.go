package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/meshlens/meshlens/alerting"
	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/controlplane/kube"
	"github.com/meshlens/meshlens/controlplane/registry"
	"github.com/meshlens/meshlens/rollout"
)

// cluster is meshlens' Kubernetes side, present when --kubeconfig (or the
// pod it runs in) names a cluster: the API server's health, the service
// registry, and, once the config store exists, the custom-resource config
// source and the status writer. A nil *cluster is "no Kubernetes".
type cluster struct {
	client   kubernetes.Interface
	istio    istioclient.Interface
	dynamic  dynamic.Interface
	gateway  gatewayclient.Interface
	health   *kube.Health
	registry *kube.Registry
	// credentials are the Secrets Gateway servers' credentialName names
	// (nil: --gateway-credentials files).
	credentials *kube.Credentials
	source      *kube.ConfigSource
	// status writes Rollouts' and AlertRules' status; it runs where the
	// rollouts do (see acting).
	status *kube.StatusWriter
}

func newCluster(kubeconfig, domainSuffix string, secrets bool, logger *slog.Logger, reg prometheus.Registerer) (*cluster, error) {
	rc, err := kube.RESTConfig(kubeconfig)
	if errors.Is(err, kube.ErrDisabled) {
		logger.Info("kubernetes: off (no --kubeconfig, not in a pod, no KUBECONFIG); hosts come from ServiceEntries and WorkloadEntries")
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig: %w", err)
	}
	c := &cluster{}
	// Kubernetes' own kinds over protobuf, as its controllers read them:
	// the watch events of Pods and EndpointSlices, most of meshlens' share
	// of a busy cluster, decode several times cheaper than from JSON.
	// Istio's, Gateway API's and meshlens' custom resources are JSON only.
	pc := rest.CopyConfig(rc)
	pc.ContentType = "application/vnd.kubernetes.protobuf"
	pc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	if c.client, err = kubernetes.NewForConfig(pc); err != nil {
		return nil, fmt.Errorf("--kubeconfig: %w", err)
	}
	if c.istio, err = istioclient.NewForConfig(rc); err != nil {
		return nil, fmt.Errorf("--kubeconfig: %w", err)
	}
	if c.dynamic, err = dynamic.NewForConfig(rc); err != nil {
		return nil, fmt.Errorf("--kubeconfig: %w", err)
	}
	if c.gateway, err = gatewayclient.NewForConfig(rc); err != nil {
		return nil, fmt.Errorf("--kubeconfig: %w", err)
	}
	if c.health, err = kube.NewHealth(c.client, logger, reg); err != nil {
		return nil, err
	}
	if c.registry, err = kube.NewRegistry(c.client, c.health, kube.RegistryOptions{DomainSuffix: domainSuffix}, logger, reg); err != nil {
		return nil, err
	}
	if secrets {
		if c.credentials, err = kube.NewCredentials(c.client, c.health, logger, reg); err != nil {
			return nil, err
		}
	}
	logger.Info("kubernetes: reading the cluster", "server", rc.Host, "domain-suffix", domainSuffix, "gateway-credentials-from-secrets", secrets)
	return c, nil
}

// registrySnapshot is the service registry now, nil without Kubernetes: the
// graph API labels its nodes from it.
func (c *cluster) registrySnapshot() *registry.Snapshot {
	if c == nil {
		return nil
	}
	return c.registry.Snapshot()
}

// knownHost tells config analysis which hosts the registry defines.
func (c *cluster) knownHost(fqdn string) bool {
	return c != nil && c.registry.Snapshot().Has(fqdn)
}

// trafficProviders are the rollout traffic providers that write to the
// Kubernetes API (istio, gatewayAPI); none without a cluster.
func (c *cluster) trafficProviders(domainSuffix string, logger *slog.Logger) map[string]rollout.Traffic {
	if c == nil {
		return nil
	}
	return kube.NewTraffic(c.client, c.istio, c.gateway, c.dynamic, domainSuffix, logger).Providers()
}

// start adds the cluster's components to serve's run group.
func (c *cluster) start(component func(func(context.Context) error), store *config.Store, rollouts *rollout.Engine, alerts *alerting.Alerting, logger *slog.Logger, reg prometheus.Registerer) error {
	src, err := kube.NewConfigSource(c.client, c.istio, c.dynamic, store, c.health, logger, reg)
	if err != nil {
		return err
	}
	c.source = src
	component(c.health.Run)
	component(c.registry.Run)
	component(src.Run)
	if c.credentials != nil {
		component(c.credentials.Run)
	}
	c.status = kube.NewStatusWriter(c.dynamic, store, rollouts.List, alerts.Firing, logger)
	return nil
}

// gatewayCredential is what analysis says of a Gateway server's Secret
// (config.IstioOptions.GatewayCredential); nothing without Secrets (no
// cluster, --gateway-credentials files).
func (c *cluster) gatewayCredential(r config.GatewayCredentialRef) (code, message string, ok bool) {
	if c == nil || c.credentials == nil {
		return "", "", false
	}
	return c.credentials.GatewayCredential(c.registry.Snapshot(), r)
}

// resyncStatus has the config source write the analysis findings into
// the custom resources' status again (they depend on more than the
// objects: fetched JWT keys).
func (c *cluster) resyncStatus() {
	if c == nil || c.source == nil {
		return
	}
	c.source.Resync()
}

// readiness is what /readyz says about the cluster: not ready until the
// first registry snapshot and config sync; ready but warning while the API
// server does not answer (the last registry and config are served).
func (c *cluster) readiness() (warning string, err error) {
	if c == nil {
		return "", nil
	}
	if !c.registry.Ready() {
		return "", errors.New("kubernetes: listing the cluster's Services and endpoints")
	}
	if c.credentials != nil && c.credentials.Snapshot().Version() == 0 {
		return "", errors.New("kubernetes: listing the Secrets of Gateway certificates")
	}
	if c.source != nil {
		select {
		case <-c.source.Ready():
		default:
			return "", errors.New("kubernetes: reading Istio's and meshlens' custom resources")
		}
	}
	if err := c.health.Err(); err != nil {
		return fmt.Sprintf("%v: serving the last registry and config", err), nil
	}
	var warnings []string
	if failing := c.health.FailingWatches(); len(failing) > 0 {
		names := slices.Sorted(maps.Keys(failing))
		warnings = append(warnings, fmt.Sprintf("kubernetes: watch of %s failing: %s; serving what was last listed", names[0], failing[names[0]]))
		if len(names) > 1 {
			warnings[0] += fmt.Sprintf(" (and %d more resources: %s)", len(names)-1, strings.Join(names[1:], ", "))
		}
	}
	if f := c.health.Forbidden(); len(f) > 0 {
		warnings = append(warnings, fmt.Sprintf("kubernetes RBAC forbids %d resource(s), running without them (see the log)", len(f)))
	}
	return strings.Join(warnings, "; "), nil
}
