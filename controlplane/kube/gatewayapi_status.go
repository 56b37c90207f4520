package kube

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshlens/meshlens/controlplane/config"
)

// ControllerName is how meshlens names itself in Gateway API: the
// controllerName of the GatewayClasses it programs and of its entries in
// routes' status.parents, beside other controllers' (istiod's), which it
// keeps.
const ControllerName = config.GatewayControllerName

// writeGatewayAPIStatus records on Gateway API objects what a Gateway API
// controller reports, for what is meshlens' only:
//
//   - a GatewayClass naming meshlens' controller: Accepted (False,
//     InvalidParameters, when meshlens refused it);
//   - a Gateway of such a class: Accepted, Programmed, and per listener
//     Accepted, Programmed, ResolvedRefs and the number of attached routes;
//   - an HTTPRoute or GRPCRoute: per parentRef meshlens serves (a Gateway of
//     its class, a Service or ServiceEntry), Accepted (False when meshlens
//     refused the route, or the parent does not take it) and ResolvedRefs
//     (False when a backend Service does not exist, or is in another
//     namespace without a ReferenceGrant allowing it).
//
// Other controllers' Gateways and classes get nothing from meshlens, nor
// do ReferenceGrants (which have no status); refusals and findings get
// events as for the other kinds.
func (s *ConfigSource) writeGatewayAPIStatus(ctx context.Context, r ref, errs config.FieldErrors, warnings config.Warnings) {
	s.mu.Lock()
	sn, servedSig := s.served, s.servedSig
	s.mu.Unlock()
	var status func(u *unstructured.Unstructured, now string) (map[string]any, bool)
	switch r.kind {
	case config.KindHTTPRoute, config.KindGRPCRoute:
		status = func(u *unstructured.Unstructured, now string) (map[string]any, bool) {
			return routeStatus(u, sn, errs, warnings, now), true
		}
	case config.KindKubernetesGateway:
		status = func(u *unstructured.Unstructured, now string) (map[string]any, bool) {
			return gatewayStatus(u, sn, errs, warnings, now)
		}
	case config.KindGatewayClass:
		status = func(u *unstructured.Unstructured, now string) (map[string]any, bool) {
			return gatewayClassStatus(u, errs, now)
		}
	}
	key := r.kind + "/" + r.namespace + "/" + r.name
	// What the status depends on beyond the object itself: which classes
	// and Gateways are meshlens', what attaches, which grants exist.
	sig, _ := json.Marshal([]any{r.generation, errs, warnings, servedSig})
	s.mu.Lock()
	same := s.conditions[key] == string(sig)
	s.conditions[key] = string(sig)
	s.mu.Unlock()
	if same {
		return
	}
	obj := &corev1.ObjectReference{Kind: config.WireKind(r.kind), APIVersion: r.gvr.GroupVersion().String(), Namespace: r.namespace, Name: r.name}
	if len(errs) > 0 {
		s.logger.Warn("kubernetes: Gateway API object refused; the rest of the config is served", "object", key, "errors", summarize(errs))
		s.recorder.Eventf(obj, corev1.EventTypeWarning, "Invalid", "meshlens refused %s: %s", key, summarize(errs))
	}
	for _, w := range warnings {
		text := w.Message
		if w.Field != "" {
			text = w.Field + ": " + w.Message
		}
		s.recorder.Eventf(obj, corev1.EventTypeWarning, cmp.Or(config.CodeName(w.Code), w.Code), "%s %s", w.Code, text)
	}
	if status == nil {
		return // ReferenceGrant: no status
	}
	if err := s.patchGatewayAPIStatus(ctx, r, status); err != nil {
		s.mu.Lock()
		delete(s.conditions, key) // try again next sync
		s.mu.Unlock()
		s.logger.Warn("kubernetes: cannot write status", "object", key, "err", err, "hint", "meshlens needs get and patch on "+r.gvr.Resource+"/status")
	}
}

// gatewayAPIContext is a digest of what of the served config the Gateway
// API statuses depend on, so that a change of it writes them again.
func gatewayAPIContext(sn *config.Snapshot) string {
	h := sha256.New()
	for _, k := range []string{config.KindGatewayClass, config.KindKubernetesGateway, config.KindReferenceGrant, config.KindHTTPRoute, config.KindGRPCRoute} {
		for _, o := range sn.OfKind(k) {
			js, _ := json.Marshal(o.Spec)
			h.Write([]byte(o.Key()))
			h.Write(js)
			h.Write([]byte{0})
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// patchGatewayAPIStatus reads the object, lets status compute its status
// (false: nothing of meshlens' to write) and patches it, retrying
// conflicts.
func (s *ConfigSource) patchGatewayAPIStatus(ctx context.Context, r ref, status func(u *unstructured.Unstructured, now string) (map[string]any, bool)) error {
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
		st, ok := status(u, now)
		if !ok {
			return nil
		}
		body, err := json.Marshal(map[string]any{
			"metadata": map[string]any{"resourceVersion": u.GetResourceVersion()},
			"status":   st,
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

func gwCondition(typ string, ok bool, reason, message string, generation int64, now string) map[string]any {
	st := "False"
	if ok {
		st = "True"
	}
	return map[string]any{"type": typ, "status": st, "reason": reason, "message": message, "observedGeneration": generation, "lastTransitionTime": now}
}

// keepTransitions keeps an existing condition's lastTransitionTime when
// its status did not change, as Kubernetes conditions mean it.
func keepTransitions(existing []any, conds []any) []any {
	for _, c := range conds {
		cm := c.(map[string]any)
		for _, e := range existing {
			if em, ok := e.(map[string]any); ok && em["type"] == cm["type"] && em["status"] == cm["status"] && em["lastTransitionTime"] != nil {
				cm["lastTransitionTime"] = em["lastTransitionTime"]
			}
		}
	}
	return conds
}

func programmedReason(ok bool) string {
	if ok {
		return "Programmed"
	}
	return "Invalid"
}

// gatewayClassStatus is the status of a GatewayClass naming meshlens'
// controller: Accepted, or not with the validation errors.
func gatewayClassStatus(u *unstructured.Unstructured, errs config.FieldErrors, now string) (map[string]any, bool) {
	if c, _, _ := unstructured.NestedString(u.Object, "spec", "controllerName"); c != ControllerName {
		return nil, false
	}
	accepted := gwCondition("Accepted", true, "Accepted", "meshlens programs the Gateways of this class", u.GetGeneration(), now)
	if len(errs) > 0 {
		accepted = gwCondition("Accepted", false, "InvalidParameters", "meshlens refused the class: "+summarize(errs), u.GetGeneration(), now)
	}
	existing, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	return map[string]any{"conditions": keepTransitions(existing, []any{accepted})}, true
}

// gatewayStatus is the status of a Gateway of meshlens' class: Accepted
// and Programmed, and each listener's conditions and attached routes.
func gatewayStatus(u *unstructured.Unstructured, sn *config.Snapshot, errs config.FieldErrors, warnings config.Warnings, now string) (map[string]any, bool) {
	class, _, _ := unstructured.NestedString(u.Object, "spec", "gatewayClassName")
	if c, _ := config.GatewayClassController(sn, class); c != ControllerName {
		return nil, false
	}
	gen := u.GetGeneration()
	existing, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	if len(errs) > 0 {
		msg := "meshlens refused the Gateway: " + summarize(errs)
		return map[string]any{"conditions": keepTransitions(existing, []any{
			gwCondition("Accepted", false, "Invalid", msg, gen, now),
			gwCondition("Programmed", false, "Invalid", msg, gen, now),
		})}, true
	}
	g := sn.Get(config.KindKubernetesGateway, cmp.Or(u.GetNamespace(), config.DefaultNamespace), u.GetName())
	if g == nil {
		return nil, false // not in the served config yet
	}
	oldListeners, _, _ := unstructured.NestedSlice(u.Object, "status", "listeners")
	attached := config.AttachedRoutes(sn, g)
	var listeners []any
	programmed, invalid := 0, 0
	for i, l := range g.Spec.(*gatewayv1.GatewaySpec).Listeners {
		ls := config.ListenerState(sn, g, l)
		// A certificate Secret missing or without a key (analysis, which
		// reads the cluster's Secrets): the listener is not served.
		for _, w := range warnings {
			if w.Field == fmt.Sprintf("listeners[%d].tls.certificateRefs[0]", i) && ls.ResolvedRefs &&
				(w.Code == config.CodeReferencedResourceNotFound || w.Code == config.CodeInvalidGatewayCredential) {
				ls.Programmed, ls.ResolvedRefs, ls.ResolvedRefsReason, ls.Message = false, false, "InvalidCertificateRef", w.Message
			}
		}
		if ls.Programmed {
			programmed++
		}
		if !ls.Accepted {
			invalid++
		}
		var existingL []any
		for _, o := range oldListeners {
			if om, ok := o.(map[string]any); ok && om["name"] == string(l.Name) {
				existingL, _, _ = unstructured.NestedSlice(om, "conditions")
			}
		}
		kinds := []any{}
		for _, k := range ls.SupportedKinds {
			kinds = append(kinds, map[string]any{"group": config.GatewayAPIGroup, "kind": k})
		}
		listeners = append(listeners, map[string]any{
			"name": string(l.Name), "supportedKinds": kinds, "attachedRoutes": attached[l.Name],
			"conditions": keepTransitions(existingL, []any{
				gwCondition("Accepted", ls.Accepted, ls.AcceptedReason, ls.Message, gen, now),
				gwCondition("Programmed", ls.Programmed, programmedReason(ls.Programmed), ls.Message, gen, now),
				gwCondition("ResolvedRefs", ls.ResolvedRefs, ls.ResolvedRefsReason, ls.Message, gen, now),
			}),
		})
	}
	acceptedReason := "Accepted"
	if invalid > 0 {
		acceptedReason = "ListenersNotValid"
	}
	proxies := fmt.Sprintf("gateway proxies labelled %s=%s", config.GatewayNameLabel, u.GetName())
	programmedCond := gwCondition("Programmed", true, "Programmed", fmt.Sprintf("meshlens serves %d listener(s) to %s", programmed, proxies), gen, now)
	if programmed == 0 {
		programmedCond = gwCondition("Programmed", false, "Invalid", "no listener meshlens can serve (HTTP, or HTTPS with a certificate)", gen, now)
	}
	return map[string]any{
		"conditions": keepTransitions(existing, []any{
			gwCondition("Accepted", true, acceptedReason, fmt.Sprintf("meshlens programs this Gateway for %s; %d of its listeners are not valid", proxies, invalid), gen, now),
			programmedCond,
		}),
		"listeners": listeners,
	}, true
}

// routeStatus is a route's status.parents: other controllers' entries as
// they are, then meshlens' for each parent it serves.
func routeStatus(u *unstructured.Unstructured, sn *config.Snapshot, errs config.FieldErrors, warnings config.Warnings, now string) map[string]any {
	parents, _, _ := unstructured.NestedSlice(u.Object, "spec", "parentRefs")
	existing, _, _ := unstructured.NestedSlice(u.Object, "status", "parents")
	var out []any
	mine := map[string][]any{}
	for _, e := range existing {
		m, ok := e.(map[string]any)
		if !ok {
			continue
		}
		if m["controllerName"] != ControllerName {
			out = append(out, e) // another controller's
			continue
		}
		pk, _ := json.Marshal(m["parentRef"])
		mine[string(pk)], _, _ = unstructured.NestedSlice(m, "conditions")
	}
	for i, p := range parents {
		pm, _ := p.(map[string]any)
		if !servesParent(sn, u.GetNamespace(), pm) {
			continue // a Gateway of another controller's class
		}
		accepted, resolved := routeConditions(i, errs, warnings)
		for _, c := range []map[string]any{accepted, resolved} {
			c["observedGeneration"], c["lastTransitionTime"] = u.GetGeneration(), now
		}
		pk, _ := json.Marshal(p)
		out = append(out, map[string]any{"parentRef": p, "controllerName": ControllerName,
			"conditions": keepTransitions(mine[string(pk)], []any{accepted, resolved})})
	}
	if len(out) > 32 {
		out = out[:32] // the API's limit
	}
	if out == nil {
		out = []any{}
	}
	return map[string]any{"parents": out}
}

// servesParent reports whether meshlens answers for a route's parentRef:
// a Service or ServiceEntry (GAMMA), a Gateway of meshlens' class, or a
// Gateway that does not exist (NoMatchingParent).
func servesParent(sn *config.Snapshot, routeNS string, p map[string]any) bool {
	group, hasGroup := p["group"].(string)
	kind, _ := p["kind"].(string)
	if (hasGroup && group != config.GatewayAPIGroup) || (kind != "" && kind != "Gateway") {
		return true
	}
	ns, _ := p["namespace"].(string)
	name, _ := p["name"].(string)
	g := sn.Get(config.KindKubernetesGateway, cmp.Or(ns, routeNS, config.DefaultNamespace), name)
	return g == nil || config.ServesGateway(sn, g)
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
