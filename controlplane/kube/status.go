package kube

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/meshlens/meshlens/alerting"
	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/rollout"
)

var (
	rolloutGVR   = schema.GroupVersionResource{Group: "meshlens.io", Version: "v1alpha1", Resource: "rollouts"}
	alertRuleGVR = schema.GroupVersionResource{Group: "meshlens.io", Version: "v1alpha1", Resource: "alertrules"}
)

// StatusWriter mirrors the state of the Rollouts and AlertRules that came
// from the cluster into their .status, so that `kubectl get rollouts -A`
// shows phase, step, weights and the last verdict with its numbers. The
// rollout engine and alerting stay the owners of that state (and persist
// it in the data dir); this only copies what changed, and retries what the
// API server did not take.
type StatusWriter struct {
	dyn      dynamic.Interface
	store    *config.Store
	rollouts func() []rollout.Status
	alerts   func() []alerting.ActiveAlert
	logger   *slog.Logger
	interval time.Duration

	written map[string]string // key -> last status body written
}

// NewStatusWriter builds the writer; rollouts and alerts list the current
// state (rollout.Engine.List, alerting.Alerting.Firing).
func NewStatusWriter(dyn dynamic.Interface, store *config.Store, rollouts func() []rollout.Status, alerts func() []alerting.ActiveAlert, logger *slog.Logger) *StatusWriter {
	return &StatusWriter{dyn: dyn, store: store, rollouts: rollouts, alerts: alerts, logger: logger,
		interval: time.Second, written: map[string]string{}}
}

// Run copies state every interval until ctx ends.
func (w *StatusWriter) Run(ctx context.Context) error {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		w.Sync(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sync writes every changed status once.
func (w *StatusWriter) Sync(ctx context.Context) {
	for _, st := range w.rollouts() {
		if !w.fromCluster(rollout.Kind, st.Namespace, st.Name) {
			continue
		}
		status := map[string]any{
			"phase": string(st.State), "step": st.Step, "message": st.Message,
			"weights": map[string]any{"stable": st.Weights.Stable, "candidate": st.Weights.Candidate, "matched": st.Weights.Matched},
		}
		if st.LastVerdict != nil {
			status["lastVerdict"] = st.LastVerdict
		}
		w.write(ctx, rolloutGVR, rollout.Kind, st.Namespace, st.Name, status)
	}
	firing := map[string]alerting.ActiveAlert{}
	for _, a := range w.alerts() {
		if a.Source == "rule" {
			firing[a.Rule] = a
		}
	}
	for _, o := range w.store.List(alerting.Kind) {
		ns, name := o.Meta.Namespace, o.Meta.Name
		if !w.fromCluster(alerting.Kind, ns, name) {
			continue
		}
		status := map[string]any{"state": "inactive"}
		if a, ok := firing[ns+"/"+name]; ok {
			status["state"] = a.State
			status["activeSince"] = a.StartsAt.UTC().Format(time.RFC3339)
			status["value"] = a.Value
		}
		w.write(ctx, alertRuleGVR, alerting.Kind, ns, name, status)
	}
}

func (w *StatusWriter) fromCluster(kind, ns, name string) bool {
	return strings.HasPrefix(w.store.Origin(kind, ns, name), config.SourceKube+":")
}

func (w *StatusWriter) write(ctx context.Context, gvr schema.GroupVersionResource, kind, ns, name string, status map[string]any) {
	body, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return
	}
	key := kind + "/" + ns + "/" + name
	if w.written[key] == string(body) {
		return
	}
	if _, err := w.dyn.Resource(gvr).Namespace(ns).Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: "meshlens"}, "status"); err != nil {
		w.logger.Warn("kubernetes: cannot write status; retrying", "object", key, "err", err)
		return
	}
	w.written[key] = string(body)
}
