package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
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

	mu      sync.Mutex
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
		status, conds := rolloutStatus(st)
		_ = w.write(ctx, rolloutGVR, rollout.Kind, st.Namespace, st.Name, status, conds)
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
		_ = w.write(ctx, alertRuleGVR, alerting.Kind, ns, name, status, nil)
	}
}

func rolloutStatus(st rollout.Status) (map[string]any, []map[string]any) {
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
	return status, conds
}

// SaveRollout writes a rollout's whole state, history included, into
// status.engine of its Rollout object (with the fields Sync writes), so
// that the meshlens replica that becomes the leader next resumes it where
// this one left it (RolloutStates). The rollout engine calls it, as its
// rollout.Mirror, before it writes the routes of a new state. Rollouts
// that did not come from the cluster have no object: nothing is written.
func (w *StatusWriter) SaveRollout(ctx context.Context, st rollout.Status) error {
	if !w.fromCluster(rollout.Kind, st.Namespace, st.Name) {
		return nil
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	var engine map[string]any
	if err := json.Unmarshal(b, &engine); err != nil {
		return err
	}
	status, conds := rolloutStatus(st)
	status["engine"] = engine
	return w.write(ctx, rolloutGVR, "engine/"+rollout.Kind, st.Namespace, st.Name, status, conds)
}

// RolloutStates reads the rollout engine's state from status.engine of
// every Rollout in the cluster: what a replica restores (rollout.Engine
// Restore) before it starts running the rollouts as the leader.
func RolloutStates(ctx context.Context, dyn dynamic.Interface) ([]rollout.Status, error) {
	list, err := dyn.Resource(rolloutGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Rollouts: %w", err)
	}
	var out []rollout.Status
	for _, u := range list.Items {
		engine, ok, _ := unstructured.NestedMap(u.Object, "status", "engine")
		if !ok {
			continue
		}
		b, err := json.Marshal(engine)
		if err != nil {
			return nil, err
		}
		var st rollout.Status
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("rollout %s/%s: status.engine: %w", u.GetNamespace(), u.GetName(), err)
		}
		if st.Namespace != u.GetNamespace() || st.Name != u.GetName() {
			continue
		}
		out = append(out, st)
	}
	return out, nil
}

func (w *StatusWriter) fromCluster(kind, ns, name string) bool {
	return strings.HasPrefix(w.store.Origin(kind, ns, name), config.SourceKube+":")
}

func (w *StatusWriter) write(ctx context.Context, gvr schema.GroupVersionResource, kind, ns, name string, status map[string]any, conds []map[string]any) error {
	body, err := json.Marshal([]any{status, conds})
	if err != nil {
		return err
	}
	key := kind + "/" + ns + "/" + name
	w.mu.Lock()
	same := w.written[key] == string(body)
	w.mu.Unlock()
	if same {
		return nil
	}
	if err := patchStatus(ctx, w.dyn, gvr, ns, name, status, conds); err != nil {
		w.logger.Warn("kubernetes: cannot write status; retrying", "object", key, "err", err)
		return err
	}
	w.mu.Lock()
	w.written[key] = string(body)
	w.mu.Unlock()
	return nil
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
