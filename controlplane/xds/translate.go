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
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/controlplane/credentials"
	"github.com/meshlens/meshlens/controlplane/jwks"
	"github.com/meshlens/meshlens/controlplane/meshconfig"
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
	// Gateway marks a gateway proxy (Istio's "router" node type): it gets
	// the listeners of the Gateways that select its Labels and the routes
	// of the VirtualServices bound to them, instead of a sidecar's.
	Gateway bool
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
	// GatewayCredentialDir holds the files of Gateway servers'
	// credentialName: DIR/NAME/tls.crt, tls.key, ca.crt. Empty means
	// DefaultGatewayCredentialDir.
	GatewayCredentialDir string
	// TelemetryALSAddress and TelemetryOTLPAddress are where Envoy proxies
	// reach meshlens' gRPC Access Log Service and OTLP/gRPC receivers
	// (host:port): the clusters meshlens_als and meshlens_otlp that
	// Telemetry's meshlens-als and meshlens-otel providers send to. Empty
	// leaves that provider out.
	TelemetryALSAddress, TelemetryOTLPAddress string
	// TelemetryTLS makes those clusters speak TLS to meshlens' receivers
	// (when they serve it: --tls-cert); nil is plaintext.
	TelemetryTLS *ReceiverTLS
	// ExtensionProviders are Istio's MeshConfig extensionProviders
	// (--mesh-config): the ext_authz services AuthorizationPolicy action
	// CUSTOM names. None: CUSTOM rules deny.
	ExtensionProviders meshconfig.Providers
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
	// Secrets are a gateway's SDS secrets: the certificates of its
	// servers' credentialName, with a cluster.
	Secrets []*tlsv3.Secret
}

// ByType lists the resources by xDS type URL, each list in its order.
func (r *Resources) ByType() map[string][]types.Resource {
	out := make(map[string][]types.Resource, 5)
	out[resource.ListenerType] = asResources(r.Listeners)
	out[resource.RouteType] = asResources(r.Routes)
	out[resource.ClusterType] = asResources(r.Clusters)
	out[resource.EndpointType] = asResources(r.Endpoints)
	out[resource.SecretType] = asResources(r.Secrets)
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
	// JWKS are the key sets meshlens fetched for RequestAuthentications'
	// issuers (jwks.Resolver); nil: proxies fetch jwksUri themselves.
	JWKS *jwks.Keys
	// Credentials are the cluster's Secrets that Gateway servers'
	// credentialName names, served over SDS; nil (no cluster): proxies
	// read credentialName from files.
	Credentials *credentials.Snapshot
}

// validator is implemented by every generated Envoy proto (protoc-gen-validate).
type validator interface{ ValidateAll() error }

// Translate turns a config snapshot into the xDS resources for one node. It
// does no I/O. Every returned resource has passed its proto's ValidateAll, so
// an error here means a translator bug or config validation let something
// through; the caller keeps serving the previous resources.
func Translate(in Input, node Node, opts Options) (*Resources, error) {
	return NewTranslator(opts).Translate(in, node)
}

// A Translator translates for any number of nodes, push after push, and
// makes each piece of their resources once: for every node it fits, and
// for as long as the input it was made from is unchanged. With the config
// snapshot unchanged,
//
//   - a host's clusters and load assignments are made once per node
//     flavour and certificate files, and again only when its registry
//     Service is a new object (the registry shares unchanged Services
//     between snapshots);
//   - the outbound listeners and routes, which read hosts and ports but no
//     endpoint, are made once per flavour, namespace and workload labels,
//     and again only when a host or port came, went or changed;
//   - only a node's own inbound listeners are made for it alone.
//
// A new config snapshot starts over; Sweep forgets what no translation
// used since the last Sweep. Results equal Translate's for the same input;
// reused resources are the very objects returned before, so callers must
// not modify returned resources. A Translator is not safe for concurrent
// use.
type Translator struct {
	opts Options
	// in is the input the model was built from.
	in Input
	m  *model
	// hosts are clusters and load assignments by clusterKey, then host;
	// outbound the outbound listeners and routes by outboundKey.
	hosts    map[string]map[string]*hostResources
	outbound map[string]*outboundResources
	gen      uint64 // Sweep's generation
}

// NewTranslator returns a Translator with nothing to reuse yet.
func NewTranslator(opts Options) *Translator {
	return &Translator{opts: mergeDefaults(opts), hosts: map[string]map[string]*hostResources{}, outbound: map[string]*outboundResources{}}
}

// hostResources are one host's clusters and load assignments, made from svc.
type hostResources struct {
	svc       *service
	clusters  []*clusterv3.Cluster
	endpoints []*endpointv3.ClusterLoadAssignment
	used      uint64 // generation
}

// outboundResources are the outbound listeners and routes made from the
// model m, and the clusters their routes name.
type outboundResources struct {
	m         *model
	listeners []*listenerv3.Listener
	routes    []*routev3.RouteConfiguration
	// secrets are a gateway's SDS secrets, which its listeners name.
	secrets []*tlsv3.Secret
	gateway bool
	routed  map[string]bool
	used    uint64
}

// clusterKey names every property of a node that its clusters and load
// assignments depend on: nodes with the same key share them.
func clusterKey(n Node) string {
	return string(n.Flavour) + "|" + n.CertChainPath + "|" + n.PrivateKeyPath + "|" + n.RootCAPath
}

// outboundKey names every property of a node that its outbound listeners
// and routes (a gateway's: its gateway listeners) depend on: nodes with
// the same key share them.
func outboundKey(n Node) string {
	var b strings.Builder
	b.WriteString(string(n.Flavour) + "|" + strconv.FormatBool(n.Gateway) + "|" + n.Namespace + "|")
	for _, k := range sortedKeys(n.Labels) {
		b.WriteString(k + "=" + n.Labels[k] + ",")
	}
	return b.String()
}

// Sweep forgets the resources no translation used since the last Sweep:
// those of hosts, ports and node kinds that are gone.
func (tr *Translator) Sweep() {
	for k, hosts := range tr.hosts {
		maps.DeleteFunc(hosts, func(_ string, hr *hostResources) bool { return hr.used != tr.gen })
		if len(hosts) == 0 {
			delete(tr.hosts, k)
		}
	}
	maps.DeleteFunc(tr.outbound, func(_ string, o *outboundResources) bool { return o.used != tr.gen })
	tr.gen++
}

// model returns the model of in, building it only for a new input.
func (tr *Translator) model(in Input) (*model, error) {
	if tr.m != nil && tr.in == in {
		return tr.m, nil
	}
	if in.Config != tr.in.Config { // a config change can touch anything
		clear(tr.hosts)
		clear(tr.outbound)
	} else if in.Credentials != tr.in.Credentials { // only gateways read Secrets
		maps.DeleteFunc(tr.outbound, func(_ string, o *outboundResources) bool { return o.gateway })
	}
	// Registry Services need no config to model: keep the unchanged ones.
	m, err := buildModel(in, tr.opts, tr.m)
	if err != nil {
		return nil, err
	}
	tr.in, tr.m = in, m
	return m, nil
}

// Translate translates in for node, reusing what it can.
func (tr *Translator) Translate(in Input, node Node) (*Resources, error) {
	m, err := tr.model(in)
	if err != nil {
		return nil, err
	}
	t := &translator{m: m, node: node, opts: tr.opts}
	out := &Resources{}

	// CDS and EDS: per host, shared by nodes of one clusterKey.
	ck := clusterKey(node)
	hosts := tr.hosts[ck]
	if hosts == nil {
		hosts = make(map[string]*hostResources, len(m.hosts))
		tr.hosts[ck] = hosts
	}
	for _, h := range m.hosts {
		svc := m.services[h]
		hr := hosts[h]
		if hr == nil || hr.svc != svc {
			if hr, err = t.hostClusters(h, svc); err != nil {
				return nil, err
			}
			hosts[h] = hr
		}
		hr.used = tr.gen
		out.Clusters = append(out.Clusters, hr.clusters...)
		out.Endpoints = append(out.Endpoints, hr.endpoints...)
	}
	if node.Flavour != FlavourGRPC {
		inbound, err := t.envoyInboundClusters()
		if err == nil {
			err = validateAll("cluster", inbound)
		}
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", node.ID, err)
		}
		out.Clusters = append(out.Clusters, inbound...)
		receivers, err := t.telemetryClusters()
		if err == nil {
			err = validateAll("cluster", receivers)
		}
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", node.ID, err)
		}
		out.Clusters = append(out.Clusters, receivers...)
	}

	// LDS and RDS: the outbound side, shared by nodes of one outboundKey,
	// then the node's own inbound listeners, which read endpoints.
	ok := outboundKey(node)
	ob := tr.outbound[ok]
	if ob == nil || (ob.m != m && !sameShape(ob.m, m)) {
		ob = &outboundResources{m: m, gateway: node.Gateway}
		if ob.listeners, ob.routes, err = t.outbound(); err != nil {
			return nil, err
		}
		for _, name := range sortedKeys(t.secrets) {
			ob.secrets = append(ob.secrets, t.secrets[name])
		}
		ob.routed = t.routed
		tr.outbound[ok] = ob
	}
	ob.used = tr.gen
	t.routed = ob.routed // read only from here on
	out.Listeners = append(out.Listeners, ob.listeners...)
	out.Routes = append(out.Routes, ob.routes...)
	out.Secrets = ob.secrets
	inbound, err := t.inbound()
	if err != nil {
		return nil, err
	}
	out.Listeners = append(out.Listeners, inbound...)

	empty, none := t.unresolvedClusters(out.Clusters)
	if err := errors.Join(validateAll("cluster", empty), validateAll("cluster load assignment", none)); err != nil {
		return nil, fmt.Errorf("node %s: %w", node.ID, err)
	}
	out.Clusters, out.Endpoints = append(out.Clusters, empty...), append(out.Endpoints, none...)
	scoped, err := t.scopeToSidecar(out)
	if err != nil {
		return nil, err
	}
	out = scoped
	out.sort()
	return out, nil
}

// hostClusters builds and validates one host's clusters and load assignments.
func (t *translator) hostClusters(h string, svc *service) (*hostResources, error) {
	hr := &hostResources{svc: svc}
	var err error
	if hr.clusters, hr.endpoints, err = t.serviceClusters(h, svc); err != nil {
		return nil, err
	}
	if err := errors.Join(validateAll("cluster", hr.clusters), validateAll("cluster load assignment", hr.endpoints)); err != nil {
		return nil, fmt.Errorf("node %s: %w", t.node.ID, err)
	}
	return hr, nil
}

// outbound builds and validates the listeners and routes a node uses to
// call services, in its flavour's shape.
func (t *translator) outbound() ([]*listenerv3.Listener, []*routev3.RouteConfiguration, error) {
	var ls []*listenerv3.Listener
	var rs []*routev3.RouteConfiguration
	var err error
	switch t.node.Flavour {
	case FlavourGRPC:
		ls, rs, err = t.grpcClientListeners()
	case FlavourEnvoy, "":
		if t.node.Gateway {
			ls, rs, err = t.gatewayListeners()
			break
		}
		ls, rs, err = t.envoyOutbound()
	default:
		return nil, nil, fmt.Errorf("node %s: unknown flavour %q", t.node.ID, t.node.Flavour)
	}
	if err != nil {
		return nil, nil, err
	}
	if err := errors.Join(validateAll("listener", ls), validateAll("route configuration", rs)); err != nil {
		return nil, nil, fmt.Errorf("node %s: %w", t.node.ID, err)
	}
	return ls, rs, nil
}

// inbound builds and validates the node's own server listeners.
func (t *translator) inbound() ([]*listenerv3.Listener, error) {
	var ls []*listenerv3.Listener
	var err error
	switch t.node.Flavour {
	case FlavourGRPC:
		ls, err = t.grpcServerListeners()
	default:
		ls, err = t.envoyInbound()
	}
	if err != nil {
		return nil, err
	}
	if err := validateAll("listener", ls); err != nil {
		return nil, fmt.Errorf("node %s: %w", t.node.ID, err)
	}
	return ls, nil
}

// sameShape reports whether two models have the same hosts with the same
// ports: all that outbound listeners and routes read of the services.
func sameShape(a, b *model) bool {
	if !slices.Equal(a.hosts, b.hosts) {
		return false
	}
	for _, h := range a.hosts {
		x, y := a.services[h], b.services[h]
		if x == y {
			continue
		}
		if x.namespace != y.namespace || x.externalName != y.externalName || !slices.Equal(x.sans, y.sans) ||
			!slices.EqualFunc(x.ports, y.ports, func(p, q *networking.ServicePort) bool {
				return p.Number == q.Number && p.Name == q.Name && p.Protocol == q.Protocol && p.TargetPort == q.TargetPort
			}) {
			return false
		}
	}
	return true
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
	d.TelemetryALSAddress, d.TelemetryOTLPAddress = o.TelemetryALSAddress, o.TelemetryOTLPAddress
	d.TelemetryTLS = o.TelemetryTLS
	d.GatewayCredentialDir = o.GatewayCredentialDir
	d.ExtensionProviders = o.ExtensionProviders
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

// validateAll checks generated resources of one kind with their protos'
// ValidateAll.
func validateAll[T interface {
	types.Resource
	validator
}](kind string, items []T) error {
	for _, it := range items {
		if err := it.ValidateAll(); err != nil {
			return fmt.Errorf("generated %s %q is invalid: %w", kind, cachev3.GetResourceName(it), err)
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
	// matchGateway is the gateway ("ns/name") whose routes are being
	// built, "" for the mesh: HTTP matches naming gateways apply only there.
	matchGateway string
	// secrets are the SDS secrets the gateway's listeners name, by name.
	secrets map[string]*tlsv3.Secret
}

// ads is the config source every generated resource points at: the same ADS
// stream that delivered it.
func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}
