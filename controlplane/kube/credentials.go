package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/controlplane/credentials"
	"github.com/meshlens/meshlens/controlplane/registry"
)

// Credentials reads the cluster's Secrets as istiod's credentials
// controller does, for Gateway servers' credentialName and Gateway API
// certificateRefs: a shared informer on Secrets (every namespace, minus
// service account tokens and Helm releases, which never hold a gateway's
// certificate), folded into immutable credentials snapshots after each
// burst of changes. Only the keys a credential is read from are kept in
// memory (credentials.DataKeys), and nothing of a Secret's data is ever
// logged.
type Credentials struct {
	logger   *slog.Logger
	health   *Health
	debounce time.Duration

	factory informers.SharedInformerFactory
	secrets corelisters.SecretLister
	synced  []namedSync
	dirty   chan struct{}

	mu      sync.Mutex
	cur     *credentials.Snapshot
	subs    []func(*credentials.Snapshot)
	version uint64
	// parsed keeps each Secret's parse by resourceVersion, so a burst
	// parses only what changed.
	parsed map[credentials.Ref]*credentials.Secret

	held prometheus.Gauge
}

// NewCredentials builds the Secret reader on a clientset. Run starts it.
// reg may be nil.
func NewCredentials(client kubernetes.Interface, health *Health, logger *slog.Logger, reg prometheus.Registerer) (*Credentials, error) {
	c := &Credentials{
		logger: logger, health: health, debounce: 50 * time.Millisecond,
		factory: informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.AndSelectors(
				fields.OneTermNotEqualSelector("type", string(corev1.SecretTypeServiceAccountToken)),
				fields.OneTermNotEqualSelector("type", "helm.sh/release.v1"),
			).String()
		})),
		dirty:  make(chan struct{}, 1),
		cur:    credentials.New(0, nil),
		parsed: map[credentials.Ref]*credentials.Secret{},
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_kube_credential_secrets", Help: "Kubernetes Secrets meshlens holds for Gateway servers' credentials (every Secret with a certificate key)."}),
	}
	if reg != nil {
		if err := reg.Register(c.held); err != nil {
			return nil, fmt.Errorf("kube credentials: register metrics: %w", err)
		}
	}
	inf := c.factory.Core().V1().Secrets()
	c.secrets = inf.Lister()
	if err := inf.Informer().SetTransform(trimSecret); err != nil {
		return nil, fmt.Errorf("kube credentials: %w", err)
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { c.changed() },
		UpdateFunc: func(old, cur any) {
			if changedVersion(old, cur) {
				c.changed()
			}
		},
		DeleteFunc: func(any) { c.changed() },
	}); err != nil {
		return nil, fmt.Errorf("kube credentials: watch secrets: %w", err)
	}
	if err := inf.Informer().SetWatchErrorHandlerWithContext(health.watchErrorHandler("secrets")); err != nil {
		return nil, fmt.Errorf("kube credentials: watch secrets: %w", err)
	}
	c.synced = []namedSync{{"secrets", inf.Informer().HasSynced}}
	return c, nil
}

// trimSecret keeps a Secret's identity, type and the data keys a
// credential is read from; a Secret with none of them keeps no data.
func trimSecret(obj any) (any, error) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return obj, nil
	}
	out := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, ResourceVersion: s.ResourceVersion},
		Type:       s.Type,
	}
	for _, k := range credentials.DataKeys {
		if v, ok := s.Data[k]; ok {
			if out.Data == nil {
				out.Data = map[string][]byte{}
			}
			out.Data[k] = v
		}
	}
	return out, nil
}

func (c *Credentials) changed() {
	select {
	case c.dirty <- struct{}{}:
	default:
	}
}

// Subscribe calls fn with every new snapshot, from Run's goroutine, the
// first once the Secrets have listed. Call before Run.
func (c *Credentials) Subscribe(fn func(*credentials.Snapshot)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.subs = append(c.subs, fn)
}

// Snapshot is the credentials now; never nil.
func (c *Credentials) Snapshot() *credentials.Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// Run starts the informer and publishes a snapshot once the Secrets have
// listed (or 30s passed: RBAC may forbid them), then after each burst of
// changes that changes a credential, until ctx ends.
func (c *Credentials) Run(ctx context.Context) error {
	c.factory.Start(ctx.Done())
	defer c.factory.Shutdown()
	waitForSync(ctx, c.health, c.synced, 30*time.Second, c.logger)
	c.publish(true)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.dirty:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(c.debounce):
		}
		c.publish(false)
	}
}

// publish builds a snapshot and hands it to the subscribers if it differs
// from the last (or first is set).
func (c *Credentials) publish(first bool) {
	list, err := c.secrets.List(labels.Everything())
	if err != nil {
		c.logger.Warn("kubernetes: list secrets from the informer cache", "err", err)
		return
	}
	held := map[credentials.Ref]*credentials.Secret{}
	for _, s := range list {
		if len(s.Data) == 0 {
			continue
		}
		ref := credentials.Ref{Namespace: s.Namespace, Name: s.Name}
		p := c.parsed[ref]
		if p == nil || p.Version != s.ResourceVersion {
			p = credentials.Parse(ref, s.ResourceVersion, s.Data)
		}
		held[ref] = p
	}
	c.mu.Lock()
	c.parsed = held
	cur := c.cur
	if !first && cur.Equal(credentials.New(0, held)) {
		c.mu.Unlock()
		return
	}
	c.version++
	sn := credentials.New(c.version, held)
	c.cur = sn
	subs := c.subs
	c.mu.Unlock()
	c.held.Set(float64(len(held)))
	for _, fn := range subs {
		fn(sn)
	}
}

// GatewayCredential is what analysis says of a Gateway server's Secret
// (config.IstioOptions.GatewayCredential): why it cannot be served to the
// gateway proxies the Gateway selects, which services locates as Istio's
// analysis does (the namespaces of the Pods the selector selects; the
// Gateway's own if none). Nothing before the Secrets have listed.
func (c *Credentials) GatewayCredential(services *registry.Snapshot, r config.GatewayCredentialRef) (code, message string, ok bool) {
	creds := c.Snapshot()
	if creds.Version() == 0 {
		return "", "", false
	}
	if c.health.unavailable("secrets") {
		return config.CodeReferencedResourceNotFound, fmt.Sprintf("secret %s cannot be read: meshlens' RBAC forbids listing secrets (grant get, list and watch on secrets, or run meshlens with --gateway-credentials files)", r.Name), true
	}
	namespaces := []string{r.Namespace}
	if r.Namespace == "" {
		if namespaces = services.NamespacesSelected(r.Selector); len(namespaces) == 0 {
			namespaces = []string{r.GatewayNamespace}
		}
	}
	for _, ns := range namespaces {
		if err := creds.Check(credentials.Ref{Namespace: ns, Name: r.Name}, r.NeedCA); err != nil {
			if errors.Is(err, credentials.ErrNotFound) {
				return config.CodeReferencedResourceNotFound, err.Error(), true
			}
			return config.CodeInvalidGatewayCredential, err.Error(), true
		}
	}
	return "", "", false
}
