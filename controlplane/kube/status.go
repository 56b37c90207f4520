package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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
		var conds []map[string]any
		for _, c := range st.Conditions {
			conds = append(conds, map[string]any{"type": c.Type, "status": c.Status, "reason": c.Reason,
				"message": c.Message, "lastTransitionTime": c.LastTransitionTime.UTC().Format(time.RFC3339)})
		}
		w.write(ctx, rolloutGVR, rollout.Kind, st.Namespace, st.Name, status, conds)
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
		w.write(ctx, alertRuleGVR, alerting.Kind, ns, name, status, nil)
	}
}

func (w *StatusWriter) fromCluster(kind, ns, name string) bool {
	return strings.HasPrefix(w.store.Origin(kind, ns, name), config.SourceKube+":")
}

func (w *StatusWriter) write(ctx context.Context, gvr schema.GroupVersionResource, kind, ns, name string, status map[string]any, conds []map[string]any) {
	body, err := json.Marshal([]any{status, conds})
	if err != nil {
		return
	}
	key := kind + "/" + ns + "/" + name
	if w.written[key] == string(body) {
		return
	}
	if err := patchStatus(ctx, w.dyn, gvr, ns, name, status, conds); err != nil {
		w.logger.Warn("kubernetes: cannot write status; retrying", "object", key, "err", err)
		return
	}
	w.written[key] = string(body)
}

// patchStatus merge-patches an object's status. Its conditions are merged
// by type into the ones the object has (the config source's Accepted and
// the rollout's RoutesApplied live side by side; a condition keeps its
// transition time while its status stays), and the patch carries the
// resourceVersion it merged with, so that a concurrent writer's condition
// is never dropped: on conflict it reads again.
func patchStatus(ctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource, ns, name string, status map[string]any, conds []map[string]any) error {
	ri := dyn.Resource(gvr).Namespace(ns)
	for attempt := 1; ; attempt++ {
		body := map[string]any{"status": status}
		if len(conds) > 0 {
			u, err := ri.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			existing, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			status["conditions"] = mergeConditions(existing, conds)
			body["metadata"] = map[string]any{"resourceVersion": u.GetResourceVersion()}
		}
		js, err := json.Marshal(body)
		if err != nil {
			return err
		}
		_, err = ri.Patch(ctx, name, types.MergePatchType, js, metav1.PatchOptions{FieldManager: "meshlens"}, "status")
		if apierrors.IsConflict(err) && attempt < 5 {
			continue
		}
		return err
	}
}

// mergeConditions sets conds into existing by type.
func mergeConditions(existing []any, conds []map[string]any) []any {
	out := make([]any, 0, len(existing)+len(conds))
	set := map[string]map[string]any{}
	for _, c := range conds {
		set[fmt.Sprint(c["type"])] = c
	}
	done := map[string]bool{}
	for _, e := range existing {
		m, ok := e.(map[string]any)
		if !ok {
			continue
		}
		t := fmt.Sprint(m["type"])
		c, ok := set[t]
		if !ok {
			out = append(out, m)
			continue
		}
		if m["status"] == c["status"] && m["lastTransitionTime"] != nil {
			c = maps.Clone(c)
			c["lastTransitionTime"] = m["lastTransitionTime"]
		}
		out = append(out, c)
		done[t] = true
	}
	for _, c := range conds {
		if !done[fmt.Sprint(c["type"])] {
			out = append(out, c)
		}
	}
	return out
}
