package kube

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshlens/meshlens/controlplane/config"
)

// ControllerName is how meshlens names itself in Gateway API route
// status (status.parents[].controllerName), beside other controllers'
// entries (istiod's), which it keeps.
const ControllerName = "meshlens.io/gateway-controller"

// writeGatewayAPIStatus records on an HTTPRoute or GRPCRoute, per
// parentRef, what a Gateway API controller reports: Accepted (False when
// meshlens refused the route, or the parent Gateway, listener or Service
// does not take it) and ResolvedRefs (False when a backend Service does
// not exist or is in another namespace), with events as for the other
// kinds. A Gateway's own status belongs to its GatewayClass' controller
// and is not written.
func (s *ConfigSource) writeGatewayAPIStatus(ctx context.Context, r ref, errs config.FieldErrors, warnings config.Warnings) {
	if r.kind != config.KindHTTPRoute && r.kind != config.KindGRPCRoute {
		return
	}
	key := r.kind + "/" + r.namespace + "/" + r.name
	sig, _ := json.Marshal([]any{r.generation, errs, warnings})
	s.mu.Lock()
	same := s.conditions[key] == string(sig)
	s.conditions[key] = string(sig)
	s.mu.Unlock()
	if same {
		return
	}
	obj := &corev1.ObjectReference{Kind: r.kind, APIVersion: r.gvr.GroupVersion().String(), Namespace: r.namespace, Name: r.name}
	if len(errs) > 0 {
		s.logger.Warn("kubernetes: route refused; the rest of the config is served", "object", key, "errors", summarize(errs))
		s.recorder.Eventf(obj, corev1.EventTypeWarning, "Invalid", "meshlens refused %s: %s", key, summarize(errs))
	}
	for _, w := range warnings {
		text := w.Message
		if w.Field != "" {
			text = w.Field + ": " + w.Message
		}
		s.recorder.Eventf(obj, corev1.EventTypeWarning, cmp.Or(config.CodeName(w.Code), w.Code), "%s %s", w.Code, text)
	}
	if err := s.patchRouteParents(ctx, r, errs, warnings); err != nil {
		s.mu.Lock()
		delete(s.conditions, key) // try again next sync
		s.mu.Unlock()
		s.logger.Warn("kubernetes: cannot write status", "object", key, "err", err, "hint", "meshlens needs get and patch on "+r.gvr.Resource+"/status")
	}
}

func (s *ConfigSource) patchRouteParents(ctx context.Context, r ref, errs config.FieldErrors, warnings config.Warnings) error {
	ri := s.dyn.Resource(r.gvr).Namespace(r.namespace)
	now := time.Now().UTC().Format(time.RFC3339)
	for attempt := 1; ; attempt++ {
		u, err := ri.Get(ctx, r.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		parents, _, _ := unstructured.NestedSlice(u.Object, "spec", "parentRefs")
		existing, _, _ := unstructured.NestedSlice(u.Object, "status", "parents")
		var out []any
		for _, e := range existing {
			if m, ok := e.(map[string]any); ok && m["controllerName"] != ControllerName {
				out = append(out, e) // another controller's
			}
		}
		for i, p := range parents {
			accepted, resolved := routeConditions(i, errs, warnings)
			for _, c := range []map[string]any{accepted, resolved} {
				c["observedGeneration"], c["lastTransitionTime"] = u.GetGeneration(), now
			}
			out = append(out, map[string]any{"parentRef": p, "controllerName": ControllerName, "conditions": []any{accepted, resolved}})
		}
		if len(out) > 32 {
			out = out[:32] // the API's limit
		}
		body, err := json.Marshal(map[string]any{
			"metadata": map[string]any{"resourceVersion": u.GetResourceVersion()},
			"status":   map[string]any{"parents": out},
		})
		if err != nil {
			return err
		}
		_, err = ri.Patch(ctx, r.name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: "meshlens"}, "status")
		if apierrors.IsConflict(err) && attempt < 5 {
			continue
		}
		return err
	}
}

// routeConditions are the Accepted and ResolvedRefs conditions of the
// i-th parentRef, from the route's validation errors and findings.
func routeConditions(i int, errs config.FieldErrors, warnings config.Warnings) (accepted, resolved map[string]any) {
	accepted = map[string]any{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "meshlens serves the route for this parent"}
	resolved = map[string]any{"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "message": "every backend resolves"}
	if len(errs) > 0 {
		accepted["status"], accepted["reason"], accepted["message"] = "False", "UnsupportedValue", "meshlens refused the route: "+summarize(errs)
		return accepted, resolved
	}
	parent := fmt.Sprintf("parentRefs[%d]", i)
	var backends []string
	notPermitted := false
	for _, w := range warnings {
		switch {
		case w.Field == parent:
			reason := "NoMatchingParent"
			switch {
			case w.Code == config.CodeVirtualServiceHostNotFoundInGateway:
				reason = "NoMatchingListenerHostname"
			case strings.Contains(w.Message, "do not allow"):
				reason = "NotAllowedByListeners"
			}
			accepted["status"], accepted["reason"], accepted["message"] = "False", reason, w.Message
		case strings.HasPrefix(w.Field, "rules["):
			backends = append(backends, w.Field+": "+w.Message)
			notPermitted = notPermitted || strings.HasSuffix(w.Field, ".namespace")
		}
	}
	if len(backends) > 0 {
		resolved["status"], resolved["reason"], resolved["message"] = "False", "BackendNotFound", strings.Join(backends, "; ")
		if notPermitted {
			resolved["reason"] = "RefNotPermitted"
		}
	}
	return accepted, resolved
}
