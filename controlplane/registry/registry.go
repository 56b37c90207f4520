// Package registry is meshlens' service registry: the services and endpoints
// that exist outside the Istio config — today Kubernetes Services with the
// Pods behind their EndpointSlices — published as immutable snapshots.
//
// It is the vocabulary shared by the source that fills it (controlplane/kube),
// the xDS translator (clusters and endpoints for every registry host), config
// validation (which hosts exist) and the collector (which workload owns an
// IP). It does no I/O.
package registry

import (
	"maps"
	"slices"
	"strings"
	"sync"
)

// Snapshot is one consistent view of the registry. It is never modified
// after publication; a change makes a new Snapshot.
type Snapshot struct {
	// Version increases with every published snapshot.
	Version uint64
	// Services by fully qualified host ("reviews.default.svc.cluster.local").
	Services map[string]*Service
	// byIP maps a workload address to the workload there.
	byIP map[string]*Workload
	// servicesByIP maps an endpoint address to the services it serves,
	// built once on first use.
	servicesOnce sync.Once
	servicesByIP map[string][]*Service
	// workloadsOf indexes the workloads by graph node (see NodeLabels),
	// built once on first use.
	workloadsOnce sync.Once
	workloadsOf   map[string][]*Workload
}

// Service is one Kubernetes Service.
type Service struct {
	// Hostname is the fully qualified name, NAME.NAMESPACE.svc.DOMAIN.
	Hostname  string
	Name      string
	Namespace string
	Labels    map[string]string
	Ports     []Port
	// Headless is a Service with clusterIP None: clients still get its
	// endpoints (proxyless gRPC and Envoy's EDS alike).
	Headless bool
	// ExternalName is set for a Service of type ExternalName: the host its
	// traffic goes to, resolved by DNS; such a Service has no endpoints.
	ExternalName string
	// Endpoints are the ready and the draining endpoints, sorted by address.
	Endpoints []*Endpoint
}

// Port is one Service port.
type Port struct {
	Name string
	Port uint32
	// Protocol as Istio reads it: appProtocol, else the port name's prefix
	// ("grpc-api" is GRPC); "" when neither says (Istio sniffs; meshlens
	// routes such a port as HTTP).
	Protocol string
}

// Health of an endpoint.
type Health int

const (
	// Healthy endpoints serve new requests.
	Healthy Health = iota
	// Draining endpoints are terminating but still serving: they finish
	// what they have and get no new requests (EDS DRAINING).
	Draining
)

// Endpoint is one address serving a Service: a Pod's IP with the ports the
// EndpointSlice resolved for the Service's ports.
type Endpoint struct {
	Address string
	// Ports maps a Service port name to the port on the endpoint.
	Ports  map[string]uint32
	Health Health
	// Workload is the Pod behind the address, nil when the slice names none
	// or the Pod is not known (yet).
	*Workload
}

// Workload is a Pod as the mesh knows it.
type Workload struct {
	Pod       string
	Namespace string
	// Name is the workload the Pod belongs to: the Deployment of its
	// ReplicaSet, its StatefulSet, DaemonSet or Job, else the Pod itself.
	Name string
	// App and Version are Istio's canonical service and revision: the
	// labels service.istio.io/canonical-name|revision, app|version,
	// app.kubernetes.io/name|version.
	App, Version   string
	Labels         map[string]string
	ServiceAccount string
	// Locality is "region/zone" from the Node's topology labels.
	Locality string
	Node     string
	Address  string
}

// Service returns the service for a fully qualified host, or nil.
func (s *Snapshot) Service(host string) *Service {
	if s == nil {
		return nil
	}
	return s.Services[host]
}

// Has reports whether a fully qualified host is a registry service.
func (s *Snapshot) Has(host string) bool { return s.Service(host) != nil }

// Hosts lists the service hosts, sorted.
func (s *Snapshot) Hosts() []string {
	if s == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(s.Services))
}

// WorkloadAt returns the workload at an address ("10.1.2.3", or with a
// port, "10.1.2.3:9080" or "[fd00::1]:80"), or nil.
func (s *Snapshot) WorkloadAt(addr string) *Workload {
	if s == nil || addr == "" {
		return nil
	}
	return s.byIP[stripPort(addr)] // keyed by bare addresses
}

// ServicesOf lists the hosts of the services an address ("10.1.2.3", or
// with a port) serves, sorted.
func (s *Snapshot) ServicesOf(addr string) []string {
	svcs := s.servicesAt(addr)
	if len(svcs) == 0 {
		return nil
	}
	out := make([]string, len(svcs))
	for i, svc := range svcs {
		out[i] = svc.Hostname
	}
	return out
}

// servicesAt lists the services an address serves, by host; the slice is
// the snapshot's own.
func (s *Snapshot) servicesAt(addr string) []*Service {
	if s == nil || addr == "" {
		return nil
	}
	s.servicesOnce.Do(s.indexServices)
	return s.servicesByIP[stripPort(addr)]
}

func stripPort(addr string) string {
	if strings.HasPrefix(addr, "[") {
		if i := strings.Index(addr, "]"); i > 0 {
			return addr[1:i]
		}
		return addr
	}
	if strings.Count(addr, ":") == 1 {
		return addr[:strings.IndexByte(addr, ':')]
	}
	return addr
}

// New builds a snapshot from services and the workloads known by address.
// It takes ownership of both.
func New(version uint64, services map[string]*Service, workloads []*Workload) *Snapshot {
	s := &Snapshot{Version: version, Services: services, byIP: make(map[string]*Workload, len(workloads))}
	if s.Services == nil {
		s.Services = map[string]*Service{}
	}
	for _, w := range workloads {
		if w.Address != "" {
			s.byIP[w.Address] = w
		}
	}
	return s
}

// indexServices maps each endpoint address to the services it serves,
// sorted by host. It runs on the first lookup in a snapshot, not in New:
// the collector asks for nearly every record it resolves, but the xDS push
// that follows a cluster change need not wait for an index it never reads.
func (s *Snapshot) indexServices() {
	s.servicesByIP = make(map[string][]*Service, len(s.byIP))
	for _, svc := range s.Services {
		for _, e := range svc.Endpoints {
			s.servicesByIP[e.Address] = append(s.servicesByIP[e.Address], svc)
		}
	}
	for addr, svcs := range s.servicesByIP {
		if len(svcs) > 1 {
			slices.SortFunc(svcs, func(a, b *Service) int { return strings.Compare(a.Hostname, b.Hostname) })
			s.servicesByIP[addr] = slices.Compact(svcs)
		}
	}
}
