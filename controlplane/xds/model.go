package xds

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	telemetry "istio.io/api/telemetry/v1alpha1"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/controlplane/credentials"
	"github.com/meshlens/meshlens/controlplane/jwks"
	"github.com/meshlens/meshlens/controlplane/registry"
)

// model is the config snapshot indexed the way translation reads it.
type model struct {
	// jwks are the key sets fetched for RequestAuthentications (nil: none).
	jwks     *jwks.Keys
	services map[string]*service // by FQDN host
	hosts    []string            // sorted keys of services
	drs      map[string]*config.Object
	vss      map[string]*config.Object
	peers    []*config.Object
	authz    []*config.Object
	// gateways are the Gateways, gatewayVSs the VirtualServices bound to
	// at least one of them (any `gateways:` entry but "mesh"), in key order.
	gateways   []*config.Object
	gatewayVSs []*config.Object
	// sidecars are the Sidecars, in key order.
	sidecars []*config.Object
	// requestAuthn are the RequestAuthentications, in key order.
	requestAuthn []*config.Object
	// telemetry are the Telemetries, in key order; telemetryProviders the
	// provider names any of them uses.
	telemetry          []*config.Object
	telemetryProviders map[string]bool
	// delegates are the VirtualServices without hosts, by "ns/name": what
	// other VirtualServices' http[].delegate hand traffic to.
	delegates map[string]*config.Object
	// creds are the cluster's credentials (nil: credentialName is files).
	creds *credentials.Snapshot
	opts  Options
}

// service is one host: a Kubernetes Service or a ServiceEntry host.
type service struct {
	host      string
	namespace string
	ports     []*networking.ServicePort
	endpoints []*workload
	sans      []string
	// externalName is the DNS name a Kubernetes ExternalName Service points
	// at; its clusters resolve it (LOGICAL_DNS) instead of using EDS.
	externalName string
	// from is the registry Service this was modelled on (nil: a ServiceEntry host).
	from *registry.Service
	// resolution is a ServiceEntry's: DNS and DNS_ROUND_ROBIN clusters
	// resolve their endpoints' names (or the host) themselves.
	resolution networking.ServiceEntry_Resolution
	// addresses are a ServiceEntry's VIPs (IPs or CIDRs): what tells its
	// TCP port from another service's on the same port.
	addresses []string
}

// wildcard reports whether the service is a wildcard ServiceEntry host
// ("*.example.com", resolution NONE): Envoy forwards its traffic to the
// address the client connected to (ORIGINAL_DST), as Istio does.
func (s *service) wildcard() bool { return strings.HasPrefix(s.host, "*") }

// resolvesDNS reports whether the service's clusters resolve names
// (ServiceEntry resolution DNS or DNS_ROUND_ROBIN) instead of using EDS.
func (s *service) resolvesDNS() bool {
	return s.resolution == networking.ServiceEntry_DNS || s.resolution == networking.ServiceEntry_DNS_ROUND_ROBIN
}

// workload is one endpoint: an inline ServiceEntry endpoint or a selected
// WorkloadEntry.
type workload struct {
	name, namespace string
	address         string
	ports           map[string]uint32
	labels          map[string]string
	locality        string
	weight          uint32
	serviceAccount  string
	// draining endpoints finish their requests and get no new ones.
	draining bool
	// pod marks a Kubernetes Pod's endpoint: its xDS servers announce
	// their own address (INSTANCE_IPS, as Istio's bootstrap does).
	pod bool
}

// targetPort is the port the workload listens on for a service port.
func (w *workload) targetPort(p *networking.ServicePort) uint32 {
	if n, ok := w.ports[p.Name]; ok && n != 0 {
		return n
	}
	if p.TargetPort != 0 {
		return p.TargetPort
	}
	return p.Number
}

func (m *model) fqdn(host, namespace string) string {
	if strings.Contains(host, ".") || host == "*" || namespace == "" {
		return host
	}
	return host + "." + namespace + ".svc." + m.opts.DomainSuffix
}

// buildModel indexes in. A registry Service that is the same object as in
// last (nil: none) keeps its modelled service, so translation can tell
// which hosts are unchanged by comparing pointers.
func buildModel(in Input, opts Options, last *model) (*model, error) {
	m := &model{
		jwks:     in.JWKS,
		creds:    in.Credentials,
		services: map[string]*service{},
		drs:      map[string]*config.Object{},
		vss:      map[string]*config.Object{},
		opts:     opts,
	}
	// Kubernetes Services first: where a ServiceEntry names the same host,
	// the Service wins, as in istiod (analysis warns about the clash).
	for _, h := range in.Services.Hosts() {
		rs := in.Services.Services[h]
		if last != nil {
			if prev := last.services[h]; prev != nil && prev.from == rs {
				m.services[h] = prev
				continue
			}
		}
		m.services[h] = serviceOfRegistry(rs)
	}
	snap := in.Config
	if snap == nil {
		m.hosts = slices.Sorted(maps.Keys(m.services))
		return m, nil
	}
	var entries []*config.Object
	var workloadEntries []*config.Object
	groups := map[string]*networking.WorkloadGroup{}
	objs := snap.Objects
	if converted := gatewayAPIObjects(snap, m.fqdn); len(converted) > 0 {
		// After the Istio objects: a VirtualService of a host wins.
		objs = append(slices.Clip(objs), converted...)
	}
	for _, o := range objs {
		switch o.Spec.(type) {
		case *networking.WorkloadGroup:
			groups[o.Meta.Namespace+"/"+o.Meta.Name] = o.Spec.(*networking.WorkloadGroup)
		case *networking.ServiceEntry:
			entries = append(entries, o)
		case *networking.WorkloadEntry:
			workloadEntries = append(workloadEntries, o)
		case *networking.DestinationRule:
			dr := o.Spec.(*networking.DestinationRule)
			h := m.fqdn(dr.Host, o.Meta.Namespace)
			if _, dup := m.drs[h]; !dup { // Istio: the oldest wins; snapshots are in key order
				m.drs[h] = o
			}
		case *networking.VirtualService:
			vs := o.Spec.(*networking.VirtualService)
			if len(vs.Hosts) == 0 {
				if m.delegates == nil {
					m.delegates = map[string]*config.Object{}
				}
				m.delegates[o.Meta.Namespace+"/"+o.Meta.Name] = o
				continue
			}
			mesh := len(vs.Gateways) == 0
			for _, g := range vs.Gateways {
				if g == config.MeshGateway {
					mesh = true
				} else if _, _, ok := config.GatewayRef(g, o.Meta.Namespace); ok && (len(m.gatewayVSs) == 0 || m.gatewayVSs[len(m.gatewayVSs)-1] != o) {
					m.gatewayVSs = append(m.gatewayVSs, o)
				}
			}
			if !mesh {
				continue // bound to gateways only: not for sidecars and proxyless clients
			}
			for _, h := range vs.Hosts {
				h = m.fqdn(h, o.Meta.Namespace)
				if _, dup := m.vss[h]; !dup {
					m.vss[h] = o
				}
			}
		case *networking.Gateway:
			m.gateways = append(m.gateways, o)
		case *networking.Sidecar:
			m.sidecars = append(m.sidecars, o)
		case *security.PeerAuthentication:
			m.peers = append(m.peers, o)
		case *security.AuthorizationPolicy:
			m.authz = append(m.authz, o)
		case *security.RequestAuthentication:
			m.requestAuthn = append(m.requestAuthn, o)
		case *telemetry.Telemetry:
			m.addTelemetry(o)
		}
	}
	for _, o := range entries {
		se := o.Spec.(*networking.ServiceEntry)
		var eps []*workload
		for i, e := range se.Endpoints {
			eps = append(eps, workloadOf(fmt.Sprintf("%s-%d", o.Meta.Name, i), o.Meta.Namespace, e))
		}
		if se.WorkloadSelector != nil && len(se.WorkloadSelector.Labels) > 0 {
			for _, we := range workloadEntries {
				if we.Meta.Namespace != o.Meta.Namespace {
					continue
				}
				spec := withGroup(we, groups)
				labels := mergeLabels(we.Meta.Labels, spec.Labels)
				if selects(se.WorkloadSelector.Labels, labels) {
					w := workloadOf(we.Meta.Name, we.Meta.Namespace, spec)
					w.labels = labels
					eps = append(eps, w)
				}
			}
		}
		// An endpoint without an address is on another network, reached
		// through that network's gateway, which meshlens does not run.
		eps = slices.DeleteFunc(eps, func(w *workload) bool { return w.address == "" })
		for _, h := range se.Hosts {
			h = m.fqdn(h, o.Meta.Namespace)
			if strings.HasPrefix(h, "*") && se.Resolution != networking.ServiceEntry_NONE {
				continue // Istio accepts wildcard hosts with resolution NONE only
			}
			if _, dup := m.services[h]; dup {
				continue
			}
			m.services[h] = &service{host: h, namespace: o.Meta.Namespace, ports: se.Ports, endpoints: eps, sans: se.SubjectAltNames, resolution: se.Resolution, addresses: se.Addresses}
		}
	}
	m.hosts = slices.Sorted(maps.Keys(m.services))
	return m, nil
}

// serviceOfRegistry models a Kubernetes Service: its ports, and its ready
// and draining endpoints with their Pods' labels, so that DestinationRule
// subsets select Pods by label exactly as for WorkloadEntries.
func serviceOfRegistry(rs *registry.Service) *service {
	svc := &service{host: rs.Hostname, namespace: rs.Namespace, externalName: rs.ExternalName, from: rs}
	for _, p := range rs.Ports {
		svc.ports = append(svc.ports, &networking.ServicePort{Number: p.Port, Name: p.Name, Protocol: p.Protocol})
	}
	for _, e := range rs.Endpoints {
		w := &workload{address: e.Address, ports: e.Ports, namespace: rs.Namespace, draining: e.Health == registry.Draining, pod: true}
		if e.Workload != nil {
			w.name, w.labels, w.locality, w.serviceAccount = e.Pod, e.Labels, e.Locality, e.ServiceAccount
			if e.Workload.Namespace != "" {
				w.namespace = e.Workload.Namespace
			}
		}
		if w.name == "" {
			w.name = e.Address
		}
		svc.endpoints = append(svc.endpoints, w)
	}
	return svc
}

func workloadOf(name, ns string, e *networking.WorkloadEntry) *workload {
	return &workload{
		name: name, namespace: ns,
		address: e.Address, ports: e.Ports, labels: e.Labels,
		locality: e.Locality, weight: e.Weight, serviceAccount: e.ServiceAccount,
	}
}

func mergeLabels(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	maps.Copy(out, a)
	maps.Copy(out, b)
	return out
}

// selects reports whether every selector label is present in labels.
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// destinationRule returns the DestinationRule for a host, or nil.
func (m *model) destinationRule(host string) *networking.DestinationRule {
	if o := m.drs[host]; o != nil {
		return o.Spec.(*networking.DestinationRule)
	}
	return nil
}

// trafficPolicy merges a DestinationRule's policy for one port and subset the
// way Istio does: port-level settings override the top level, a subset's
// policy overrides both, each section (lb, pool, outlier, tls) as a whole.
func (m *model) trafficPolicy(host string, port uint32, subset string) *networking.TrafficPolicy {
	dr := m.destinationRule(host)
	if dr == nil {
		return nil
	}
	out := mergePolicy(nil, dr.TrafficPolicy, port)
	if subset != "" {
		for _, s := range dr.Subsets {
			if s.Name == subset {
				out = mergePolicy(out, s.TrafficPolicy, port)
			}
		}
	}
	return out
}

func mergePolicy(base, over *networking.TrafficPolicy, port uint32) *networking.TrafficPolicy {
	out := &networking.TrafficPolicy{}
	if base != nil {
		out.LoadBalancer, out.ConnectionPool, out.OutlierDetection, out.Tls = base.LoadBalancer, base.ConnectionPool, base.OutlierDetection, base.Tls
	}
	if over == nil {
		return out
	}
	apply := func(lb *networking.LoadBalancerSettings, cp *networking.ConnectionPoolSettings, od *networking.OutlierDetection, tls *networking.ClientTLSSettings) {
		if lb != nil {
			out.LoadBalancer = lb
		}
		if cp != nil {
			out.ConnectionPool = cp
		}
		if od != nil {
			out.OutlierDetection = od
		}
		if tls != nil {
			out.Tls = tls
		}
	}
	apply(over.LoadBalancer, over.ConnectionPool, over.OutlierDetection, over.Tls)
	for _, pl := range over.PortLevelSettings {
		if pl.Port != nil && pl.Port.Number == port {
			apply(pl.LoadBalancer, pl.ConnectionPool, pl.OutlierDetection, pl.Tls)
		}
	}
	return out
}

// isHTTP reports whether a ServiceEntry port protocol is HTTP-family (and so
// gets HTTP routing). Istio treats an empty protocol as auto-detect; meshlens
// routes it as HTTP.
func isHTTP(protocol string) bool {
	switch strings.ToUpper(strings.SplitN(protocol, "-", 2)[0]) {
	case "HTTP", "HTTP2", "GRPC", "GRPC-WEB", "":
		return true
	}
	return false
}

func isHTTP2(protocol string) bool {
	switch strings.ToUpper(protocol) {
	case "HTTP2", "GRPC":
		return true
	}
	return false
}

// withGroup is a WorkloadEntry as its WorkloadGroup (named by the
// istio.io/autoRegistrationGroup annotation, same namespace) completes it:
// the group's metadata labels and template labels under the entry's own,
// and the template's ports, service account, network, locality and weight
// where the entry sets none. An entry of no (known) group is as it is.
func withGroup(o *config.Object, groups map[string]*networking.WorkloadGroup) *networking.WorkloadEntry {
	we := o.Spec.(*networking.WorkloadEntry)
	g := groups[o.Meta.Namespace+"/"+o.Meta.Annotations[config.AutoRegistrationGroupAnnotation]]
	if g == nil || g.Template == nil {
		return we
	}
	t := g.Template
	out := proto.Clone(we).(*networking.WorkloadEntry)
	out.Labels = mergeLabels(mergeLabels(g.GetMetadata().GetLabels(), t.Labels), we.Labels)
	if len(out.Ports) == 0 {
		out.Ports = t.Ports
	}
	if out.ServiceAccount == "" {
		out.ServiceAccount = t.ServiceAccount
	}
	if out.Network == "" {
		out.Network = t.Network
	}
	if out.Locality == "" {
		out.Locality = t.Locality
	}
	if out.Weight == 0 {
		out.Weight = t.Weight
	}
	return out
}
