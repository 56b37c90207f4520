// Package xds translates meshlens' Istio-API configuration into Envoy xDS
// resources (LDS/RDS/CDS/EDS) and serves them over ADS with go-control-plane.
//
// Translation is a pure function of a config snapshot, a service registry
// snapshot and a node description
// (Translate); the Server owns the per-node go-control-plane snapshots, the
// ACK/NACK bookkeeping and the metrics.
package xds

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/controlplane/registry"
)

// Flavour is the kind of data-plane client a node is; it decides which
// resources it gets and in which shape.
type Flavour string

const (
	// FlavourGRPC is a proxyless grpc-go client and/or xDS server: API
	// listeners named "host:port" and inbound server listeners
	// "grpc/server?xds.resource.listening_address=ip:port".
	FlavourGRPC Flavour = "grpc"
	// FlavourEnvoy is an Envoy sidecar: per-port outbound listeners with an
	// HTTP connection manager fed by RDS.
	FlavourEnvoy Flavour = "envoy"
)

// Node is what translation needs to know about the requesting proxy.
type Node struct {
	ID      string
	Flavour Flavour
	// Namespace resolves short host names in the absence of a config namespace.
	Namespace string
	// Labels are the node's workload labels (VirtualService sourceLabels).
	Labels map[string]string
	// IPs are the workload's own addresses; inbound (server) listeners are
	// built for the mesh endpoints at these addresses. Empty means every
	// endpoint (a gRPC client only asks for the listeners it serves).
	IPs []string
	// Envoy flavour only: files holding the workload certificate, key and CA,
	// used for ISTIO_MUTUAL. Empty means Options' defaults.
	CertChainPath, PrivateKeyPath, RootCAPath string
}

// Options are translator-wide settings.
type Options struct {
	// DomainSuffix completes short host names: "reviews" in namespace
	// "default" becomes "reviews.default.svc.<DomainSuffix>".
	DomainSuffix string
	// RootNamespace holds mesh-wide PeerAuthentication/AuthorizationPolicy.
	RootNamespace string
	// TrustDomain is the SPIFFE trust domain of workload identities.
	TrustDomain string
	// CertProviderInstance is the grpc-go bootstrap certificate provider
	// instance (e.g. a file_watcher) that holds the workload identity and CA.
	CertProviderInstance string
	// Default certificate files for Envoy nodes that do not name their own.
	CertChainPath, PrivateKeyPath, RootCAPath string
}

// DefaultOptions returns Istio's defaults.
func DefaultOptions() Options {
	return Options{
		DomainSuffix:         "cluster.local",
		RootNamespace:        "istio-system",
		TrustDomain:          "cluster.local",
		CertProviderInstance: "default",
		CertChainPath:        "/etc/certs/cert-chain.pem",
		PrivateKeyPath:       "/etc/certs/key.pem",
		RootCAPath:           "/etc/certs/root-cert.pem",
	}
}

// Resources is one node's complete xDS state, each list sorted by name.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
}

// ByType lists the resources by xDS type URL, each list in its order.
func (r *Resources) ByType() map[string][]types.Resource {
	out := make(map[string][]types.Resource, 4)
	out[resource.ListenerType] = asResources(r.Listeners)
	out[resource.RouteType] = asResources(r.Routes)
	out[resource.ClusterType] = asResources(r.Clusters)
	out[resource.EndpointType] = asResources(r.Endpoints)
	return out
}

func asResources[T types.Resource](xs []T) []types.Resource {
	out := make([]types.Resource, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}

// Input is everything translation reads: the accepted Istio config and the
// service registry (Kubernetes Services and their endpoints; nil without a
// cluster). Both are immutable snapshots.
type Input struct {
	Config   *config.Snapshot
	Services *registry.Snapshot
}

// validator is implemented by every generated Envoy proto (protoc-gen-validate).
type validator interface{ ValidateAll() error }

// Translate turns a config snapshot into the xDS resources for one node. It
// does no I/O. Every returned resource has passed its proto's ValidateAll, so
// an error here means a translator bug or config validation let something
// through; the caller keeps serving the previous resources.
func Translate(in Input, node Node, opts Options) (*Resources, error) {
	opts = mergeDefaults(opts)
	m, err := buildModel(in, opts)
	if err != nil {
		return nil, err
	}
	t := &translator{m: m, node: node, opts: opts}
	out := &Resources{}
	clusters, endpoints, err := t.clusters()
	if err != nil {
		return nil, err
	}
	out.Clusters, out.Endpoints = clusters, endpoints
	switch node.Flavour {
	case FlavourGRPC:
		ls, rs, err := t.grpcClientListeners()
		if err != nil {
			return nil, err
		}
		out.Listeners, out.Routes = ls, rs
		inbound, err := t.grpcServerListeners()
		if err != nil {
			return nil, err
		}
		out.Listeners = append(out.Listeners, inbound...)
	case FlavourEnvoy, "":
		ls, rs, err := t.envoyOutbound()
		if err != nil {
			return nil, err
		}
		out.Listeners, out.Routes = ls, rs
		inbound, err := t.envoyInbound()
		if err != nil {
			return nil, err
		}
		out.Listeners = append(out.Listeners, inbound...)
	default:
		return nil, fmt.Errorf("node %s: unknown flavour %q", node.ID, node.Flavour)
	}
	empty, none := t.unresolvedClusters(out.Clusters)
	out.Clusters, out.Endpoints = append(out.Clusters, empty...), append(out.Endpoints, none...)
	out.sort()
	if err := out.validate(); err != nil {
		return nil, fmt.Errorf("node %s: %w", node.ID, err)
	}
	return out, nil
}

// mergeDefaults fills the zero fields of o from DefaultOptions.
func mergeDefaults(o Options) Options {
	d := DefaultOptions()
	d.DomainSuffix = cmp.Or(o.DomainSuffix, d.DomainSuffix)
	d.CertChainPath = cmp.Or(o.CertChainPath, d.CertChainPath)
	d.PrivateKeyPath = cmp.Or(o.PrivateKeyPath, d.PrivateKeyPath)
	d.RootCAPath = cmp.Or(o.RootCAPath, d.RootCAPath)
	d.RootNamespace = cmp.Or(o.RootNamespace, d.RootNamespace)
	d.TrustDomain = cmp.Or(o.TrustDomain, d.TrustDomain)
	d.CertProviderInstance = cmp.Or(o.CertProviderInstance, d.CertProviderInstance)
	return d
}

func (r *Resources) sort() {
	slices.SortFunc(r.Listeners, func(a, b *listenerv3.Listener) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(r.Routes, func(a, b *routev3.RouteConfiguration) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(r.Clusters, func(a, b *clusterv3.Cluster) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(r.Endpoints, func(a, b *endpointv3.ClusterLoadAssignment) int {
		return strings.Compare(a.ClusterName, b.ClusterName)
	})
}

func (r *Resources) validate() error {
	check := func(kind, name string, v validator) error {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("generated %s %q is invalid: %w", kind, name, err)
		}
		return nil
	}
	for _, l := range r.Listeners {
		if err := check("listener", l.Name, l); err != nil {
			return err
		}
	}
	for _, rc := range r.Routes {
		if err := check("route configuration", rc.Name, rc); err != nil {
			return err
		}
	}
	for _, c := range r.Clusters {
		if err := check("cluster", c.Name, c); err != nil {
			return err
		}
	}
	for _, e := range r.Endpoints {
		if err := check("cluster load assignment", e.ClusterName, e); err != nil {
			return err
		}
	}
	return nil
}

// translator carries one Translate call's state.
type translator struct {
	m    *model
	node Node
	opts Options
	// routed are the clusters routes send traffic to (see routeTo).
	routed map[string]bool
}

// ads is the config source every generated resource points at: the same ADS
// stream that delivered it.
func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}
