package kube

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/meshlens/meshlens/controlplane/registry"
)

// RegistryOptions tune the service registry.
type RegistryOptions struct {
	// DomainSuffix completes Service hosts: NAME.NS.svc.DomainSuffix.
	// Default "cluster.local".
	DomainSuffix string
	// Debounce is how long changes are gathered before one snapshot is
	// built and published (istiod's PILOT_DEBOUNCE_AFTER): a burst of
	// endpoint changes is one push, and no change waits longer than this
	// plus the build. Default 50ms.
	Debounce time.Duration
	// SyncTimeout bounds the wait for the first full list of every
	// resource; a resource that RBAC forbids or that does not answer is
	// left out of the first snapshot and joins when it syncs. Default 30s.
	SyncTimeout time.Duration
}

func (o RegistryOptions) withDefaults() RegistryOptions {
	if o.DomainSuffix == "" {
		o.DomainSuffix = "cluster.local"
	}
	if o.Debounce <= 0 {
		o.Debounce = 50 * time.Millisecond
	}
	if o.SyncTimeout <= 0 {
		o.SyncTimeout = 30 * time.Second
	}
	return o
}

// Registry is meshlens' Kubernetes service registry, as istiod's: shared
// informers on Namespaces, Services, EndpointSlices, Pods and Nodes (watches,
// no polling) are folded into immutable registry snapshots. It is the one
// owner of that state; readers take Snapshot or Subscribe.
type Registry struct {
	opts   RegistryOptions
	logger *slog.Logger
	health *Health

	factory    informers.SharedInformerFactory
	services   corelisters.ServiceLister
	slices     discoverylisters.EndpointSliceLister
	pods       corelisters.PodLister
	nodes      corelisters.NodeLister
	namespaces corelisters.NamespaceLister
	synced     []namedSync

	dirty   chan struct{}
	version uint64
	cur     atomic.Pointer[registry.Snapshot]
	ready   atomic.Bool

	subMu sync.Mutex
	subs  map[chan *registry.Snapshot]struct{}

	memo buildMemo // the last build, for the next; Run's goroutine only

	events     *prometheus.CounterVec
	builds     prometheus.Histogram
	svcGauge   prometheus.Gauge
	epGauge    prometheus.Gauge
	lastChange atomic.Int64 // unix nanos of the first change not yet published
}

type namedSync struct {
	resource string
	synced   cache.InformerSynced
}

// NewRegistry builds the registry on a clientset. Run starts it. reg may be
// nil.
func NewRegistry(client kubernetes.Interface, health *Health, opts RegistryOptions, logger *slog.Logger, reg prometheus.Registerer) (*Registry, error) {
	r := &Registry{
		opts:    opts.withDefaults(),
		logger:  logger,
		health:  health,
		factory: informers.NewSharedInformerFactory(client, 0),
		dirty:   make(chan struct{}, 1),
		subs:    map[chan *registry.Snapshot]struct{}{},
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_kube_events_total", Help: "Kubernetes watch events that may change the service registry, by resource.",
		}, []string{"resource"}),
		builds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meshlens_kube_registry_build_seconds", Help: "Time to build one service registry snapshot from the informer caches.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		svcGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_kube_services", Help: "Kubernetes Services in the registry."}),
		epGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_kube_endpoints", Help: "Endpoints (ready and draining) in the registry."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{r.events, r.builds, r.svcGauge, r.epGauge} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("kube registry: register metrics: %w", err)
			}
		}
	}
	r.cur.Store(registry.New(0, nil, nil))

	core := r.factory.Core().V1()
	svcInf, podInf, nodeInf, nsInf := core.Services(), core.Pods(), core.Nodes(), core.Namespaces()
	sliceInf := r.factory.Discovery().V1().EndpointSlices()
	r.services, r.pods, r.nodes, r.namespaces, r.slices = svcInf.Lister(), podInf.Lister(), nodeInf.Lister(), nsInf.Lister(), sliceInf.Lister()

	// Pods are the bulk of a cluster: keep only what the registry reads.
	if err := podInf.Informer().SetTransform(trimPod); err != nil {
		return nil, fmt.Errorf("kube registry: %w", err)
	}
	for _, w := range []struct {
		resource string
		inf      cache.SharedIndexInformer
		relevant func(old, cur any) bool
	}{
		{"services", svcInf.Informer(), changedVersion},
		{"endpointslices", sliceInf.Informer(), changedVersion},
		{"pods", podInf.Informer(), podChanged},
		{"nodes", nodeInf.Informer(), nodeChanged},
		{"namespaces", nsInf.Informer(), func(_, _ any) bool { return false }},
	} {
		resource, relevant := w.resource, w.relevant
		if _, err := w.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(any) { r.changed(resource) },
			UpdateFunc: func(old, cur any) {
				if relevant(old, cur) {
					r.changed(resource)
				}
			},
			DeleteFunc: func(any) { r.changed(resource) },
		}); err != nil {
			return nil, fmt.Errorf("kube registry: watch %s: %w", resource, err)
		}
		if err := w.inf.SetWatchErrorHandlerWithContext(health.watchErrorHandler(resource)); err != nil {
			return nil, fmt.Errorf("kube registry: watch %s: %w", resource, err)
		}
		r.synced = append(r.synced, namedSync{resource, w.inf.HasSynced})
	}
	return r, nil
}

func changedVersion(old, cur any) bool {
	o, ok1 := old.(interface{ GetResourceVersion() string })
	c, ok2 := cur.(interface{ GetResourceVersion() string })
	return !ok1 || !ok2 || o.GetResourceVersion() != c.GetResourceVersion()
}

// podChanged ignores status churn the registry does not read.
func podChanged(old, cur any) bool {
	o, ok1 := old.(*corev1.Pod)
	c, ok2 := cur.(*corev1.Pod)
	if !ok1 || !ok2 {
		return true
	}
	return o.Status.PodIP != c.Status.PodIP || o.Spec.NodeName != c.Spec.NodeName ||
		o.Spec.ServiceAccountName != c.Spec.ServiceAccountName || !maps.Equal(o.Labels, c.Labels) ||
		(o.DeletionTimestamp == nil) != (c.DeletionTimestamp == nil)
}

func nodeChanged(old, cur any) bool {
	o, ok1 := old.(*corev1.Node)
	c, ok2 := cur.(*corev1.Node)
	return !ok1 || !ok2 || localityOf(o) != localityOf(c)
}

// trimPod drops what the registry never reads, so 5,000 pods cost little.
func trimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return &corev1.Pod{
		TypeMeta:   p.TypeMeta,
		ObjectMeta: metaTrimmed(p.ObjectMeta),
		Spec:       corev1.PodSpec{NodeName: p.Spec.NodeName, ServiceAccountName: p.Spec.ServiceAccountName},
		Status:     corev1.PodStatus{Phase: p.Status.Phase, PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs},
	}, nil
}

func (r *Registry) changed(resource string) {
	r.events.WithLabelValues(resource).Inc()
	r.lastChange.CompareAndSwap(0, time.Now().UnixNano())
	select {
	case r.dirty <- struct{}{}:
	default:
	}
}

// Run starts the informers, publishes the first snapshot once every
// resource has listed (or SyncTimeout passed), then a new snapshot after
// each burst of changes, until ctx ends.
func (r *Registry) Run(ctx context.Context) error {
	r.factory.Start(ctx.Done())
	defer r.factory.Shutdown()
	waitForSync(ctx, r.health, r.synced, r.opts.SyncTimeout, r.logger)
	r.publish()
	r.ready.Store(true)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.dirty:
		}
		// Gather the burst: everything arriving within Debounce is one build.
		t := time.NewTimer(r.opts.Debounce)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		select {
		case <-r.dirty:
		default:
		}
		r.publish()
	}
}

// Ready reports whether the first snapshot has been published.
func (r *Registry) Ready() bool { return r.ready.Load() }

// Snapshot returns the current snapshot; never nil.
func (r *Registry) Snapshot() *registry.Snapshot { return r.cur.Load() }

// Subscribe calls fn, from a goroutine of its own, with the current snapshot
// and every newer one; a slow fn skips to the latest. cancel stops it.
func (r *Registry) Subscribe(fn func(*registry.Snapshot)) (cancel func()) {
	ch := make(chan *registry.Snapshot, 1)
	ch <- r.Snapshot()
	r.subMu.Lock()
	r.subs[ch] = struct{}{}
	r.subMu.Unlock()
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case sn := <-ch:
				fn(sn)
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.subMu.Lock()
			delete(r.subs, ch)
			r.subMu.Unlock()
			close(done)
		})
	}
}

func (r *Registry) publish() {
	start := time.Now()
	r.lastChange.Store(0)
	r.version++
	sn := r.build(r.version)
	r.builds.Observe(time.Since(start).Seconds())
	r.cur.Store(sn)
	eps := 0
	for _, s := range sn.Services {
		eps += len(s.Endpoints)
	}
	r.svcGauge.Set(float64(len(sn.Services)))
	r.epGauge.Set(float64(eps))
	r.subMu.Lock()
	for ch := range r.subs {
		select { // latest wins
		case <-ch:
		default:
		}
		ch <- sn
	}
	r.subMu.Unlock()
}

// buildMemo is the last build by the informer objects it was made from.
// Informers replace an object on every change and never modify one, so the
// same pointer is the same content: an unchanged Pod keeps its Workload,
// and an unchanged Service whose slices and Pods are unchanged keeps its
// registry.Service (published snapshots are immutable, so they share it).
// A burst of endpoint changes then costs a pass over the caches, not a
// rebuild of every Service.
type buildMemo struct {
	workloads  map[*corev1.Pod]memoWorkload
	services   map[string]memoService // by "namespace/name"
	localities map[string]string
}

type memoWorkload struct {
	key, locality string // key is "namespace/name"
	w             *registry.Workload
}

type memoService struct {
	svc    *corev1.Service
	slices []*discoveryv1.EndpointSlice
	// refs are the Pod keys ("namespace/name") and addresses its endpoints
	// were resolved with: a change to any of them resolves them again.
	refs []string
	out  *registry.Service
}

// build folds the informer caches into one snapshot.
func (r *Registry) build(version uint64) *registry.Snapshot {
	localities := map[string]string{}
	if nodes, err := r.nodes.List(labels.Everything()); err == nil {
		for _, n := range nodes {
			localities[n.Name] = localityOf(n)
		}
	}
	prev := r.memo
	if !maps.Equal(prev.localities, localities) {
		prev.services = nil // endpoints without a Pod take their node's locality
	}
	next := buildMemo{localities: localities}

	pods, _ := r.pods.List(labels.Everything())
	next.workloads = make(map[*corev1.Pod]memoWorkload, len(pods))
	// changed holds the Pod keys and addresses whose workload is not the
	// last build's: new, changed and deleted Pods.
	changed := map[string]bool{}
	workloads := make([]*registry.Workload, 0, len(pods))
	byPod := make(map[string]*registry.Workload, len(pods))
	for _, p := range pods {
		loc := localities[p.Spec.NodeName]
		m, ok := prev.workloads[p]
		if !ok || m.locality != loc {
			m = memoWorkload{key: p.Namespace + "/" + p.Name, locality: loc, w: workloadOf(p, loc)}
			changed[m.key], changed[p.Status.PodIP] = true, true
		}
		next.workloads[p] = m
		byPod[m.key] = m.w
		if m.w.Address != "" && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			workloads = append(workloads, m.w)
		}
	}
	for p, m := range prev.workloads {
		if _, ok := next.workloads[p]; !ok {
			changed[m.key], changed[m.w.Address] = true, true
		}
	}
	byAddr := make(map[string]*registry.Workload, len(workloads))
	for _, w := range workloads {
		byAddr[w.Address] = w
	}

	slicesBySvc := map[string][]*discoveryv1.EndpointSlice{}
	if all, err := r.slices.List(labels.Everything()); err == nil {
		for _, s := range all {
			name := s.Labels[discoveryv1.LabelServiceName]
			if name == "" {
				continue // not a Service's slice
			}
			key := s.Namespace + "/" + name
			slicesBySvc[key] = append(slicesBySvc[key], s)
		}
	}
	svcs, _ := r.services.List(labels.Everything())
	services := make(map[string]*registry.Service, len(svcs))
	next.services = make(map[string]memoService, len(svcs))
	for _, s := range svcs {
		key := s.Namespace + "/" + s.Name
		eps := slicesBySvc[key]
		if len(eps) > 1 { // the lister's order is a map's
			slices.SortFunc(eps, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
		}
		m, ok := prev.services[key]
		sameEndpoints := ok && m.out.ExternalName == "" && slices.Equal(m.slices, eps) &&
			!slices.ContainsFunc(m.refs, func(ref string) bool { return changed[ref] })
		if !sameEndpoints || m.svc != s {
			svc := serviceOf(s, r.opts.DomainSuffix)
			switch {
			case svc.ExternalName != "":
				m.refs = nil
			case sameEndpoints:
				svc.Endpoints = m.out.Endpoints
			default:
				svc.Endpoints, m.refs = endpointsOf(eps, byPod, byAddr, localities)
			}
			m = memoService{svc: s, slices: eps, refs: m.refs, out: svc}
		}
		next.services[key] = m
		services[m.out.Hostname] = m.out
	}
	r.memo = next
	return registry.New(version, services, workloads)
}

func serviceOf(s *corev1.Service, domain string) *registry.Service {
	svc := &registry.Service{
		Hostname:  s.Name + "." + s.Namespace + ".svc." + domain,
		Name:      s.Name,
		Namespace: s.Namespace,
		Labels:    s.Labels,
		Headless:  s.Spec.ClusterIP == corev1.ClusterIPNone,
	}
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		svc.ExternalName = s.Spec.ExternalName
	}
	for _, p := range s.Spec.Ports {
		app := ""
		if p.AppProtocol != nil {
			app = *p.AppProtocol
		}
		svc.Ports = append(svc.Ports, registry.Port{
			Name: p.Name, Port: uint32(p.Port), Protocol: registry.Protocol(p.Name, string(p.Protocol), app),
		})
	}
	return svc
}

// endpointsOf reads a Service's EndpointSlices as the endpoint controller
// wrote them: ready endpoints serve, serving-but-terminating ones drain,
// the rest are left out. An address listed twice (slices overlap while the
// controller moves endpoints) is kept once, the healthier wins. refs
// are the Pod keys and addresses it looked up.
func endpointsOf(eps []*discoveryv1.EndpointSlice, byPod, byAddr map[string]*registry.Workload, localities map[string]string) (_ []*registry.Endpoint, refs []string) {
	seen := map[string]*registry.Endpoint{}
	for _, s := range eps {
		if s.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		ports := map[string]uint32{}
		for _, p := range s.Ports {
			if p.Port == nil {
				continue
			}
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			ports[name] = uint32(*p.Port)
		}
		for _, e := range s.Endpoints {
			health, ok := healthOf(e.Conditions)
			if !ok {
				continue
			}
			for _, addr := range e.Addresses {
				if prev, dup := seen[addr]; dup && prev.Health <= health {
					continue
				}
				ep := &registry.Endpoint{Address: addr, Ports: ports, Health: health}
				refs = append(refs, addr)
				if e.TargetRef != nil && e.TargetRef.Kind == "Pod" {
					key := e.TargetRef.Namespace + "/" + e.TargetRef.Name
					if e.TargetRef.Namespace == "" { // the slice's own
						key = s.Namespace + "/" + e.TargetRef.Name
					}
					ep.Workload = byPod[key]
					refs = append(refs, key)
				}
				if ep.Workload == nil {
					ep.Workload = byAddr[addr]
				}
				if ep.Workload == nil {
					// No Pod (a hand-written slice, or the Pod not seen
					// yet): still an endpoint, locality from its node.
					w := &registry.Workload{Address: addr, Namespace: s.Namespace}
					if e.NodeName != nil {
						w.Node, w.Locality = *e.NodeName, localities[*e.NodeName]
					}
					if w.Locality == "" && e.Zone != nil {
						w.Locality = "/" + *e.Zone
					}
					ep.Workload = w
				}
				seen[addr] = ep
			}
		}
	}
	out := slices.Collect(maps.Values(seen))
	slices.SortFunc(out, func(a, b *registry.Endpoint) int { return strings.Compare(a.Address, b.Address) })
	return out, refs
}

// healthOf follows the EndpointSlice conditions: a nil condition is true,
// except terminating.
func healthOf(c discoveryv1.EndpointConditions) (registry.Health, bool) {
	isTrue := func(b *bool, def bool) bool {
		if b == nil {
			return def
		}
		return *b
	}
	switch {
	case isTrue(c.Ready, true):
		return registry.Healthy, true
	case isTrue(c.Serving, false) && isTrue(c.Terminating, false):
		return registry.Draining, true
	}
	return 0, false
}

// Labels Istio reads for locality, service and version.
const (
	labelRegion  = "topology.kubernetes.io/region"
	labelZone    = "topology.kubernetes.io/zone"
	labelSubzone = "topology.istio.io/subzone"
)

func localityOf(n *corev1.Node) string {
	region, zone, sub := n.Labels[labelRegion], n.Labels[labelZone], n.Labels[labelSubzone]
	switch {
	case region == "" && zone == "" && sub == "":
		return ""
	case sub != "":
		return region + "/" + zone + "/" + sub
	default:
		return region + "/" + zone
	}
}

func workloadOf(p *corev1.Pod, locality string) *registry.Workload {
	first := func(keys ...string) string {
		for _, k := range keys {
			if v := p.Labels[k]; v != "" {
				return v
			}
		}
		return ""
	}
	w := &registry.Workload{
		Pod:            p.Name,
		Namespace:      p.Namespace,
		Name:           workloadName(p),
		App:            first("service.istio.io/canonical-name", "app.kubernetes.io/name", "app"),
		Version:        first("service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"),
		Labels:         p.Labels,
		ServiceAccount: p.Spec.ServiceAccountName,
		Locality:       locality,
		Node:           p.Spec.NodeName,
		Address:        p.Status.PodIP,
	}
	if l := p.Labels["istio-locality"]; l != "" { // Istio's per-pod override, dots for slashes
		w.Locality = strings.ReplaceAll(l, ".", "/")
	}
	return w
}

// workloadName is the controller a Pod belongs to, as Istio and Kiali name
// workloads: a ReplicaSet's Deployment, else the owner, else the Pod.
func workloadName(p *corev1.Pod) string {
	for _, ref := range p.OwnerReferences {
		if ref.Controller == nil || !*ref.Controller {
			continue
		}
		if ref.Kind == "ReplicaSet" {
			if h := p.Labels["pod-template-hash"]; h != "" && strings.HasSuffix(ref.Name, "-"+h) {
				return strings.TrimSuffix(ref.Name, "-"+h)
			}
		}
		return ref.Name
	}
	return p.Name
}
