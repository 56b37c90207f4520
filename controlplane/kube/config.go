package kube

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	istioinformers "istio.io/client-go/pkg/informers/externalversions"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/meshlens/meshlens/controlplane/config"
)

// ConfigStore is where the config source puts what it reads.
type ConfigStore interface {
	Kinds() *config.Kinds
	// SyncSource makes the objects of source exactly objs, each accepted
	// or refused on its own; refused maps the keys of refused objects to
	// why.
	SyncSource(ctx context.Context, source string, objs []*config.Object, origins map[string]string) (refused map[string]config.FieldErrors, warnings config.Warnings, err error)
}

// kind is one custom resource kind the source watches.
type kind struct {
	gvr  schema.GroupVersionResource
	kind string
	// list returns the cluster's objects of the kind as config JSON.
	list func() ([]objectJSON, error)
}

type objectJSON struct {
	namespace, name string
	generation      int64
	js              []byte
}

// ConfigSource reads Istio's custom resources (networking.istio.io,
// security.istio.io, telemetry.istio.io, through istio.io/client-go informers) and meshlens'
// own (meshlens.io Rollout and AlertRule, through dynamic informers) into
// the config store, beside --config-dir and the REST API. Each object is
// validated on its own: one that fails gets a status condition and an event
// and is left out (its last accepted version stays); everything else goes
// on. It writes the status of the objects it reads, nothing else.
type ConfigSource struct {
	store    ConfigStore
	dyn      dynamic.Interface
	health   *Health
	logger   *slog.Logger
	recorder record.EventRecorder
	debounce time.Duration

	istio   istioinformers.SharedInformerFactory
	dynInf  dynamicinformer.DynamicSharedInformerFactory
	kinds   []kind
	synced  []namedSync
	dirty   chan struct{}
	ready   chan struct{}
	readyMu sync.Once

	mu         sync.Mutex
	conditions map[string]string // key -> last written condition, to write only changes
	served     *config.Snapshot  // the config served after the last sync (Gateway API status)
	servedSig  string            // what of served the Gateway API statuses depend on

	refusedGauge prometheus.Gauge
	syncs        *prometheus.CounterVec
}

// NewConfigSource builds the source. reg may be nil.
func NewConfigSource(client kubernetes.Interface, istio istioclient.Interface, dyn dynamic.Interface, store ConfigStore, health *Health, logger *slog.Logger, reg prometheus.Registerer) (*ConfigSource, error) {
	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	s := &ConfigSource{
		store: store, dyn: dyn, health: health, logger: logger, debounce: 50 * time.Millisecond,
		recorder:   broadcaster.NewRecorder(eventScheme(), corev1.EventSource{Component: "meshlens"}),
		istio:      istioinformers.NewSharedInformerFactory(istio, 0),
		dynInf:     dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0),
		dirty:      make(chan struct{}, 1),
		ready:      make(chan struct{}),
		conditions: map[string]string{},
		refusedGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_kube_config_refused", Help: "Custom resources in the cluster that fail validation and are not served."}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_kube_config_syncs_total", Help: "Syncs of the cluster's custom resources into the config store, by result."},
			[]string{"result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{s.refusedGauge, s.syncs} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("kube config source: register metrics: %w", err)
			}
		}
	}
	nw, sec := s.istio.Networking().V1(), s.istio.Security().V1()
	type typed interface {
		Informer() cache.SharedIndexInformer
	}
	istioKind := func(inf typed, group, resource, kindName string, list func() ([]objectJSON, error)) {
		s.kinds = append(s.kinds, kind{gvr: schema.GroupVersionResource{Group: group, Version: "v1", Resource: resource}, kind: kindName, list: list})
		s.watch(resource, inf.Informer(), health)
	}
	istioKind(nw.VirtualServices(), "networking.istio.io", "virtualservices", config.KindVirtualService, func() ([]objectJSON, error) {
		l, err := nw.VirtualServices().Lister().List(labels.Everything())
		return convert(l, err, "networking.istio.io/v1", config.KindVirtualService)
	})
	istioKind(nw.DestinationRules(), "networking.istio.io", "destinationrules", config.KindDestinationRule, func() ([]objectJSON, error) {
		l, err := nw.DestinationRules().Lister().List(labels.Everything())
		return convert(l, err, "networking.istio.io/v1", config.KindDestinationRule)
	})
	istioKind(nw.ServiceEntries(), "networking.istio.io", "serviceentries", config.KindServiceEntry, func() ([]objectJSON, error) {
		l, err := nw.ServiceEntries().Lister().List(labels.Everything())
		return convert(l, err, "networking.istio.io/v1", config.KindServiceEntry)
	})
	istioKind(nw.WorkloadEntries(), "networking.istio.io", "workloadentries", config.KindWorkloadEntry, func() ([]objectJSON, error) {
		l, err := nw.WorkloadEntries().Lister().List(labels.Everything())
		return convert(l, err, "networking.istio.io/v1", config.KindWorkloadEntry)
	})
	istioKind(nw.WorkloadGroups(), "networking.istio.io", "workloadgroups", config.KindWorkloadGroup, func() ([]objectJSON, error) {
		l, err := nw.WorkloadGroups().Lister().List(labels.Everything())
		return convert(l, err, "networking.istio.io/v1", config.KindWorkloadGroup)
	})
	istioKind(nw.Gateways(), "networking.istio.io", "gateways", config.KindGateway, func() ([]objectJSON, error) {
		l, err := nw.Gateways().Lister().List(labels.Everything())
		return convert(l, err, "networking.istio.io/v1", config.KindGateway)
	})
	istioKind(nw.Sidecars(), "networking.istio.io", "sidecars", config.KindSidecar, func() ([]objectJSON, error) {
		l, err := nw.Sidecars().Lister().List(labels.Everything())
		return convert(l, err, "networking.istio.io/v1", config.KindSidecar)
	})
	istioKind(sec.PeerAuthentications(), "security.istio.io", "peerauthentications", config.KindPeerAuthentication, func() ([]objectJSON, error) {
		l, err := sec.PeerAuthentications().Lister().List(labels.Everything())
		return convert(l, err, "security.istio.io/v1", config.KindPeerAuthentication)
	})
	istioKind(sec.RequestAuthentications(), "security.istio.io", "requestauthentications", config.KindRequestAuthentication, func() ([]objectJSON, error) {
		l, err := sec.RequestAuthentications().Lister().List(labels.Everything())
		return convert(l, err, "security.istio.io/v1", config.KindRequestAuthentication)
	})
	istioKind(sec.AuthorizationPolicies(), "security.istio.io", "authorizationpolicies", config.KindAuthorizationPolicy, func() ([]objectJSON, error) {
		l, err := sec.AuthorizationPolicies().Lister().List(labels.Everything())
		return convert(l, err, "security.istio.io/v1", config.KindAuthorizationPolicy)
	})
	tel := s.istio.Telemetry().V1().Telemetries()
	istioKind(tel, "telemetry.istio.io", "telemetries", config.KindTelemetry, func() ([]objectJSON, error) {
		l, err := tel.Lister().List(labels.Everything())
		return convert(l, err, "telemetry.istio.io/v1", config.KindTelemetry)
	})
	// meshlens' own kinds, and Gateway API's (whose Gateway is the
	// registry kind Gateway.gateway.networking.k8s.io beside Istio's).
	for _, mk := range []struct{ group, version, resource, kind string }{
		{"meshlens.io", "v1alpha1", "rollouts", "Rollout"}, {"meshlens.io", "v1alpha1", "alertrules", "AlertRule"},
		{config.GatewayAPIGroup, "v1", "gateways", config.KindKubernetesGateway},
		{config.GatewayAPIGroup, "v1", "httproutes", config.KindHTTPRoute},
		{config.GatewayAPIGroup, "v1", "grpcroutes", config.KindGRPCRoute},
		{config.GatewayAPIGroup, "v1", "gatewayclasses", config.KindGatewayClass},
		{config.GatewayAPIGroup, "v1", "referencegrants", config.KindReferenceGrant},
	} {
		gvr := schema.GroupVersionResource{Group: mk.group, Version: mk.version, Resource: mk.resource}
		inf := s.dynInf.ForResource(gvr)
		kindName, apiVersion := mk.kind, gvr.GroupVersion().String()
		s.kinds = append(s.kinds, kind{gvr: gvr, kind: kindName, list: func() ([]objectJSON, error) {
			l, err := inf.Lister().List(labels.Everything())
			if err != nil {
				return nil, err
			}
			out := make([]objectJSON, 0, len(l))
			for _, o := range l {
				u, ok := o.(*unstructured.Unstructured)
				if !ok {
					continue
				}
				spec, _, _ := unstructured.NestedFieldNoCopy(u.Object, "spec")
				js, err := objectJSONOf(apiVersion, config.WireKind(kindName), u.GetNamespace(), u.GetName(), u.GetLabels(), u.GetAnnotations(), spec)
				if err != nil {
					return nil, err
				}
				out = append(out, objectJSON{u.GetNamespace(), u.GetName(), u.GetGeneration(), js})
			}
			return out, nil
		}})
		// Named as kubectl names them: Istio's informer watches "gateways" too.
		name := mk.resource
		if mk.group == config.GatewayAPIGroup {
			name += "." + mk.group
		}
		s.watch(name, inf.Informer(), health)
	}
	return s, nil
}

func (s *ConfigSource) watch(resource string, inf cache.SharedIndexInformer, health *Health) {
	changed := func() {
		select {
		case s.dirty <- struct{}{}:
		default:
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { changed() },
		UpdateFunc: func(old, cur any) {
			if specChanged(old, cur) {
				changed()
			}
		},
		DeleteFunc: func(any) { changed() },
	})
	_ = inf.SetWatchErrorHandlerWithContext(health.watchErrorHandler(resource))
	s.synced = append(s.synced, namedSync{resource, inf.HasSynced})
}

// specChanged ignores updates of .status alone (meshlens' own status
// writes among them): with a status subresource, metadata.generation moves
// only when the spec does.
func specChanged(old, cur any) bool {
	o, err1 := meta.Accessor(old)
	c, err2 := meta.Accessor(cur)
	if err1 != nil || err2 != nil {
		return true
	}
	return o.GetGeneration() != c.GetGeneration() || !maps.Equal(o.GetLabels(), c.GetLabels()) ||
		!maps.Equal(o.GetAnnotations(), c.GetAnnotations())
}

// istioObject is the shape of istio.io/client-go's typed objects.
type istioObject interface {
	GetNamespace() string
	GetName() string
	GetLabels() map[string]string
	GetAnnotations() map[string]string
	GetGeneration() int64
}

// convert turns typed Istio objects into config JSON, as users wrote them.
func convert[T istioObject](l []T, err error, apiVersion, kindName string) ([]objectJSON, error) {
	if err != nil {
		return nil, err
	}
	out := make([]objectJSON, 0, len(l))
	for _, o := range l {
		spec, err := specOf(o)
		if err != nil {
			return nil, fmt.Errorf("%s %s/%s: %w", kindName, o.GetNamespace(), o.GetName(), err)
		}
		js, err := objectJSONOf(apiVersion, kindName, o.GetNamespace(), o.GetName(), o.GetLabels(), o.GetAnnotations(), spec)
		if err != nil {
			return nil, err
		}
		out = append(out, objectJSON{o.GetNamespace(), o.GetName(), o.GetGeneration(), js})
	}
	return out, nil
}

// specOf reads the Spec field of a typed Istio object (an istio.io/api
// message) as JSON written by protojson, as Istio prints it.
func specOf(o any) (json.RawMessage, error) {
	m, ok := specMessage(o)
	if !ok {
		return nil, fmt.Errorf("no spec in %T", o)
	}
	return protojson.MarshalOptions{UseProtoNames: false}.Marshal(m)
}

func objectJSONOf(apiVersion, kindName, ns, name string, lbls, annotations map[string]string, spec any) ([]byte, error) {
	// kubectl's bookkeeping is not the user's config.
	if _, ok := annotations[corev1.LastAppliedConfigAnnotation]; ok {
		cp := make(map[string]string, len(annotations))
		for k, v := range annotations {
			if k != corev1.LastAppliedConfigAnnotation {
				cp[k] = v
			}
		}
		annotations = cp
	}
	if spec == nil {
		spec = map[string]any{}
	}
	return json.Marshal(map[string]any{
		"apiVersion": apiVersion, "kind": kindName,
		"metadata": config.Meta{Name: name, Namespace: ns, Labels: lbls, Annotations: annotations},
		"spec":     spec,
	})
}

// Run starts the informers and syncs the cluster's objects into the store
// after each burst of changes, until ctx ends.
func (s *ConfigSource) Run(ctx context.Context) error {
	s.istio.Start(ctx.Done())
	s.dynInf.Start(ctx.Done())
	defer s.istio.Shutdown()
	defer s.dynInf.Shutdown()
	waitForSync(ctx, s.health, s.synced, 30*time.Second, s.logger)
	s.sync(ctx)
	s.readyMu.Do(func() { close(s.ready) })
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.dirty:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.debounce):
		}
		s.sync(ctx)
	}
}

// Resync syncs again soon, though no object changed: the analysis
// findings written into the objects' status depend on more than the
// objects (the JWT keys meshlens could fetch).
func (s *ConfigSource) Resync() {
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

// Ready is closed after the first sync.
func (s *ConfigSource) Ready() <-chan struct{} { return s.ready }

// sync reads every watched object and hands them to the store in one go.
func (s *ConfigSource) sync(ctx context.Context) {
	kinds := s.store.Kinds()
	var objs []*config.Object
	origins := map[string]string{}
	refs := map[string]ref{}
	parseRefused := map[string]config.FieldErrors{}
	for _, k := range s.kinds {
		items, err := k.list()
		if err != nil {
			s.logger.Warn("kubernetes: list custom resources", "resource", k.gvr.Resource, "err", err)
			continue
		}
		for _, it := range items {
			// A cluster-scoped object (GatewayClass) is kept under the
			// store's default namespace; its API calls use none.
			key := k.kind + "/" + cmp.Or(it.namespace, config.DefaultNamespace) + "/" + it.name
			refs[key] = ref{gvr: k.gvr, namespace: it.namespace, name: it.name, generation: it.generation, kind: k.kind}
			parsed, err := kinds.Parse(it.js)
			if err != nil {
				var fe config.FieldErrors
				if !errors.As(err, &fe) {
					fe = config.FieldErrors{{Object: key, Message: err.Error()}}
				}
				parseRefused[key] = fe
				continue
			}
			for _, o := range parsed {
				objs = append(objs, o)
				origins[o.Key()] = config.SourceKube + ":" + key
			}
		}
	}
	refused, warnings, err := s.store.SyncSource(ctx, config.SourceKube, objs, origins)
	if err != nil {
		s.syncs.WithLabelValues("error").Inc()
		s.logger.Error("kubernetes: custom resources not applied; the running config is unchanged", "err", err)
		return
	}
	s.syncs.WithLabelValues("applied").Inc()
	if refused == nil {
		refused = map[string]config.FieldErrors{}
	}
	for k, v := range parseRefused {
		refused[k] = v
	}
	s.refusedGauge.Set(float64(len(refused)))
	byObject := map[string]config.Warnings{}
	for _, w := range warnings {
		byObject[w.Object] = append(byObject[w.Object], w)
	}
	keys := make([]string, 0, len(refs))
	for k := range refs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	served := s.servedSnapshot(objs, refused)
	servedSig := gatewayAPIContext(served) // once per sync, not per object
	s.mu.Lock()
	s.served, s.servedSig = served, servedSig
	s.mu.Unlock()
	for _, key := range keys {
		s.writeStatus(ctx, refs[key], refused[key], byObject[key])
	}
}

// servedSnapshot is the config meshlens serves, for the status of Gateway
// API objects (which Gateways are meshlens', what attaches to them): the
// store's snapshot when it publishes one, else the objects just synced
// without those refused.
func (s *ConfigSource) servedSnapshot(objs []*config.Object, refused map[string]config.FieldErrors) *config.Snapshot {
	if st, ok := s.store.(interface{ Snapshot() *config.Snapshot }); ok {
		if sn := st.Snapshot(); sn != nil {
			return sn
		}
	}
	sn := &config.Snapshot{}
	for _, o := range objs {
		if _, bad := refused[o.Key()]; !bad {
			sn.Objects = append(sn.Objects, o)
		}
	}
	slices.SortFunc(sn.Objects, func(a, b *config.Object) int { return strings.Compare(a.Key(), b.Key()) })
	return sn
}

type ref struct {
	gvr             schema.GroupVersionResource
	kind            string
	namespace, name string
	generation      int64
}

// writeStatus records on the object whether meshlens serves it: a condition
// Accepted (True, or False with the validation errors, plus a Warning event),
// and the analysis findings as Istio's validationMessages. Only changes are
// written.
func (s *ConfigSource) writeStatus(ctx context.Context, r ref, errs config.FieldErrors, warnings config.Warnings) {
	if r.gvr.Group == config.GatewayAPIGroup {
		s.writeGatewayAPIStatus(ctx, r, errs, warnings)
		return
	}
	cond := map[string]any{"type": "Accepted", "status": "True", "reason": "Accepted",
		"message": "meshlens validated and serves this object", "observedGeneration": r.generation}
	if len(errs) > 0 {
		cond["status"], cond["reason"], cond["message"] = "False", "Invalid", summarize(errs)
	}
	var msgs []any
	for _, w := range warnings {
		// Istio's AnalysisMessageBase holds no text; the text goes into an
		// event (below), as kubectl describe shows it.
		msg := map[string]any{"type": map[string]any{"code": w.Code, "name": cmp.Or(config.CodeName(w.Code), w.Code)}, "level": "WARNING"}
		if strings.HasPrefix(w.Code, "IST") { // meshlens' own codes have no page on istio.io
			msg["documentationUrl"] = "https://istio.io/latest/docs/reference/config/analysis/" + strings.ToLower(w.Code) + "/"
		}
		msgs = append(msgs, msg)
	}
	sig, _ := json.Marshal([]any{cond, msgs})
	key := r.kind + "/" + r.namespace + "/" + r.name
	s.mu.Lock()
	same := s.conditions[key] == string(sig)
	s.conditions[key] = string(sig)
	s.mu.Unlock()
	if same {
		return
	}
	if len(errs) > 0 {
		s.logger.Warn("kubernetes: custom resource refused; the rest of the config is served", "object", key, "errors", summarize(errs))
		s.recorder.Eventf(&corev1.ObjectReference{Kind: config.WireKind(r.kind), APIVersion: r.gvr.GroupVersion().String(), Namespace: r.namespace, Name: r.name},
			corev1.EventTypeWarning, "Invalid", "meshlens refused %s: %s", key, summarize(errs))
	}
	for _, w := range warnings {
		text := w.Message
		if w.Field != "" {
			text = w.Field + ": " + w.Message
		}
		s.recorder.Eventf(&corev1.ObjectReference{Kind: config.WireKind(r.kind), APIVersion: r.gvr.GroupVersion().String(), Namespace: r.namespace, Name: r.name},
			corev1.EventTypeWarning, cmp.Or(config.CodeName(w.Code), w.Code), "%s %s", w.Code, text)
	}
	cond["lastTransitionTime"] = time.Now().UTC().Format(time.RFC3339)
	status := map[string]any{"observedGeneration": r.generation}
	if strings.HasSuffix(r.gvr.Group, "istio.io") {
		status["validationMessages"] = msgs
	}
	// Merged by type: a Rollout's RoutesApplied condition (StatusWriter)
	// stays beside Accepted.
	if err := patchStatus(ctx, s.dyn, r.gvr, r.namespace, r.name, status, []map[string]any{cond}); err != nil {
		s.mu.Lock()
		delete(s.conditions, key) // try again next sync
		s.mu.Unlock()
		s.logger.Warn("kubernetes: cannot write status", "object", key, "err", err, "hint", "meshlens needs patch on "+r.gvr.Resource+"/status")
	}
}

func summarize(errs config.FieldErrors) string {
	var b strings.Builder
	for i, e := range errs {
		if i == 5 {
			fmt.Fprintf(&b, "; and %d more", len(errs)-5)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		if e.Field != "" {
			b.WriteString(e.Field + ": ")
		}
		b.WriteString(e.Message)
	}
	return b.String()
}

// specMessage finds the Spec field of a typed Istio object: an istio.io/api
// message held by value.
func specMessage(o any) (proto.Message, bool) {
	v := reflect.ValueOf(o)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil, false
	}
	f := v.Elem().FieldByName("Spec")
	if !f.IsValid() || !f.CanAddr() {
		return nil, false
	}
	m, ok := f.Addr().Interface().(proto.Message)
	return m, ok
}

// eventScheme resolves the object references events are recorded for.
func eventScheme() *runtime.Scheme {
	sc := runtime.NewScheme()
	_ = corev1.AddToScheme(sc)
	return sc
}
