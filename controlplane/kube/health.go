package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Health tracks whether the API server answers and which watches fail. While
// it does not answer, meshlens keeps serving the last registry and config it
// had; informers resync by themselves when it is back.
type Health struct {
	client   kubernetes.Interface
	logger   *slog.Logger
	interval time.Duration

	mu  sync.Mutex
	err error
	// forbidden are the resources RBAC denies or the API server does not
	// serve, until their informer lists (a role granted or a CRD installed
	// later, or the RBAC cache catching up with a binding made at install).
	forbidden map[string]watchFailure
	failing   map[string]watchFailure

	up          prometheus.Gauge
	watchErrors *prometheus.CounterVec
}

// NewHealth builds the tracker. logger and reg may be nil.
func NewHealth(client kubernetes.Interface, logger *slog.Logger, reg prometheus.Registerer) (*Health, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Health{
		client: client, logger: logger, interval: 5 * time.Second,
		forbidden: map[string]watchFailure{},
		failing:   map[string]watchFailure{},
		err:       errors.New("not checked yet"),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_kube_apiserver_up", Help: "1 when the Kubernetes API server answered the last check."}),
		watchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_kube_watch_errors_total", Help: "Failed lists and watches of Kubernetes resources, by resource and reason."},
			[]string{"resource", "reason"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{h.up, h.watchErrors} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("kube health: register metrics: %w", err)
			}
		}
	}
	return h, nil
}

// Run checks the API server's /readyz every few seconds until ctx ends.
func (h *Health) Run(ctx context.Context) error {
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		h.check(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (h *Health) check(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err := h.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(cctx)
	if ctx.Err() != nil {
		return
	}
	if err != nil && (apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err)) {
		// /readyz may be closed to meshlens' identity; any answer means up.
		_, err = h.client.Discovery().ServerVersion()
	}
	h.mu.Lock()
	was := h.err
	h.err = err
	h.mu.Unlock()
	switch {
	case err != nil && was == nil:
		h.logger.Warn("kubernetes API server unreachable: serving the last registry and config until it is back", "err", err)
	case err == nil && was != nil && was.Error() != "not checked yet":
		h.logger.Info("kubernetes API server reachable again; watches resync")
	}
	if err != nil {
		h.up.Set(0)
	} else {
		h.up.Set(1)
	}
}

// Err is nil while the API server answers; else why not.
func (h *Health) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return fmt.Errorf("kubernetes API server: %w", h.err)
	}
	return nil
}

// Forbidden lists the resources RBAC denies or the API server does not
// serve, with why.
func (h *Health) Forbidden() map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.forgetListed()
	out := make(map[string]string, len(h.forbidden))
	for k, f := range h.forbidden {
		out[k] = f.err.Error()
	}
	return out
}

// forgetListed drops the denials of resources whose informer has listed
// since. Caller holds mu.
func (h *Health) forgetListed() {
	for res, f := range h.forbidden {
		if f.reflector != nil && f.reflector.LastSyncResourceVersion() != f.version {
			delete(h.forbidden, res)
			h.logger.Info("kubernetes: resource now listed; meshlens uses it", "resource", res)
		}
	}
}

// watchFailure is a resource's last failed list or watch.
type watchFailure struct {
	at        time.Time
	err       error
	reflector *cache.Reflector
	version   string // the reflector's last synced resource version then
}

// watchFailingWindow is how long a failed list or watch counts as failing
// now unless it lists again: informers retry with a back-off of at most
// 30 s, so a watch still broken fails again within it.
const watchFailingWindow = time.Minute

// FailingWatches names the resources whose list or watch failed within the
// last minute and has not listed since (other than forbidden or not
// served), with the last error.
func (h *Health) FailingWatches() map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]string{}
	for res, f := range h.failing {
		if time.Since(f.at) > watchFailingWindow || f.reflector.LastSyncResourceVersion() != f.version {
			delete(h.failing, res)
			continue
		}
		out[res] = fmt.Sprintf("%v (%s ago)", f.err, time.Since(f.at).Round(time.Second))
	}
	return out
}

// watchErrorHandler counts an informer's list/watch failures and names an
// RBAC denial once, with the verb and resource to grant.
func (h *Health) watchErrorHandler(resource string) cache.WatchErrorHandlerWithContext {
	return func(ctx context.Context, r *cache.Reflector, err error) {
		reason := "error"
		switch {
		case apierrors.IsForbidden(err):
			reason = "forbidden"
			h.mu.Lock()
			_, seen := h.forbidden[resource]
			h.forbidden[resource] = watchFailure{at: time.Now(), err: err, reflector: r, version: r.LastSyncResourceVersion()}
			h.mu.Unlock()
			if !seen {
				h.logger.Error("kubernetes RBAC forbids list/watch; meshlens runs without this resource",
					"verb", "list,watch", "resource", resource, "err", err,
					"hint", "grant it in meshlens' ClusterRole (deploy/kubernetes/rbac.yaml)")
			}
		case apierrors.IsNotFound(err):
			reason = "not served"
			h.mu.Lock()
			_, seen := h.forbidden[resource]
			h.forbidden[resource] = watchFailure{at: time.Now(), err: fmt.Errorf("not served by the API server: %w", err), reflector: r, version: r.LastSyncResourceVersion()}
			h.mu.Unlock()
			if !seen {
				h.logger.Warn("kubernetes: the API server does not serve this resource; meshlens runs without it until it does",
					"resource", resource, "hint", "install its CRDs (Istio's, or meshlens' deploy/crds)")
			}
		case errors.Is(err, context.Canceled):
			return
		default:
			h.mu.Lock()
			h.failing[resource] = watchFailure{at: time.Now(), err: err, reflector: r, version: r.LastSyncResourceVersion()}
			h.mu.Unlock()
			cache.DefaultWatchErrorHandler(ctx, r, err)
		}
		h.watchErrors.WithLabelValues(resource, reason).Inc()
	}
}

// unavailable reports whether a resource is forbidden or not served, so
// that nothing waits for it to list.
func (h *Health) unavailable(resource string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.forgetListed()
	_, ok := h.forbidden[resource]
	return ok
}

// waitForSync waits until every resource has listed, is forbidden or not
// served, or timeout passes, and names those left behind.
func waitForSync(ctx context.Context, h *Health, synced []namedSync, timeout time.Duration, logger *slog.Logger) {
	deadline := time.Now().Add(timeout)
	for _, s := range synced {
		for !s.synced() && !h.unavailable(s.resource) {
			if time.Now().After(deadline) {
				logger.Warn("kubernetes: resource not listed in time; meshlens starts without it and adds it when it syncs",
					"resource", s.resource, "waited", timeout, "hint", "check meshlens' RBAC (list, watch) and the API server")
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}
