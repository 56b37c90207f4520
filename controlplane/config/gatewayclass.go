package config

import (
	"fmt"
	"regexp"
	"slices"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Which Gateways meshlens programs, and which cross-namespace references
// it follows, as a Gateway API controller decides them:
//
//   - A Gateway belongs to the controller its GatewayClass names
//     (spec.controllerName). meshlens programs only the Gateways of a
//     GatewayClass whose controllerName is GatewayControllerName; the
//     others (istio.io/gateway-controller's, another implementation's)
//     are left to their controller, and so are routes' parentRefs to them.
//     A Gateway whose GatewayClass does not exist is programmed by no one.
//     Routes attached to a Service (GAMMA) have no GatewayClass and are
//     always served.
//   - A route's backendRef (or mirror) to a Service in another namespace is
//     followed only when a ReferenceGrant in that namespace allows the
//     route's kind from the route's namespace to Services (all of them, or
//     the one named), as Gateway API's ReferenceGrant says. Attaching a
//     route to a Gateway of another namespace is the listener's
//     allowedRoutes' business, not a ReferenceGrant's.
const (
	// GatewayControllerName is meshlens' controllerName: GatewayClasses
	// naming it are meshlens', and so are their Gateways. Routes' status
	// entries (status.parents[].controllerName) carry it too.
	GatewayControllerName = "meshlens.io/gateway-controller"
	// KindGatewayClass is Gateway API's GatewayClass (cluster-scoped: its
	// objects are looked up by name, whatever namespace the store gives
	// them).
	KindGatewayClass = "GatewayClass"
	// KindReferenceGrant is Gateway API's ReferenceGrant.
	KindReferenceGrant = "ReferenceGrant"
)

var (
	// The GatewayClass CRD's controllerName pattern: a domain-prefixed path.
	controllerNamePattern  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$`)
	referenceGrantVersions = []string{GatewayAPIGroup + "/v1", GatewayAPIGroup + "/v1beta1"}
)

func gatewayClassKinds() []KindSpec {
	return []KindSpec{
		{APIVersions: gatewayAPIVersions, Kind: KindGatewayClass, ShortNames: []string{"gc", "gatewayclasses"},
			Decode: decodeJSONAs[gatewayv1.GatewayClassSpec], Validate: gatewayClass},
		{APIVersions: referenceGrantVersions, Kind: KindReferenceGrant, ShortNames: []string{"refgrant"},
			Decode: decodeJSONAs[gatewayv1.ReferenceGrantSpec], Validate: referenceGrant},
	}
}

func gatewayClass(o *Object) []FieldError {
	gc, ok := o.Spec.(*gatewayv1.GatewayClassSpec)
	if !ok {
		return []FieldError{{Object: o.Key(), Message: fmt.Sprintf("spec is %T, want Gateway API GatewayClassSpec", o.Spec)}}
	}
	fe := &fieldErrs{object: o.Key()}
	switch c := string(gc.ControllerName); {
	case c == "":
		fe.add("controllerName", "required: the controller that programs this class' Gateways (meshlens' is %s)", GatewayControllerName)
	case len(c) > 253 || !controllerNamePattern.MatchString(c):
		fe.add("controllerName", "%q is not a controller name: a domain-prefixed path such as %s", c, GatewayControllerName)
	}
	if gc.ParametersRef != nil && string(gc.ControllerName) == GatewayControllerName {
		fe.add("parametersRef", "not supported: meshlens' GatewayClasses take no parameters")
	}
	return fe.errs
}

func referenceGrant(o *Object) []FieldError {
	rg, ok := o.Spec.(*gatewayv1.ReferenceGrantSpec)
	if !ok {
		return []FieldError{{Object: o.Key(), Message: fmt.Sprintf("spec is %T, want Gateway API ReferenceGrantSpec", o.Spec)}}
	}
	fe := &fieldErrs{object: o.Key()}
	if len(rg.From) == 0 {
		fe.add("from", "required: at least one kind and namespace the grant lets refer here")
	}
	if len(rg.To) == 0 {
		fe.add("to", "required: at least one kind in this namespace the grant lets be referred to")
	}
	for i, f := range rg.From {
		p := indexPath("from", i)
		if f.Kind == "" {
			fe.add(joinPath(p, "kind"), "required")
		}
		if f.Namespace == "" {
			fe.add(joinPath(p, "namespace"), "required")
		} else if !dns1123Label.MatchString(string(f.Namespace)) || len(f.Namespace) > 63 {
			fe.add(joinPath(p, "namespace"), "%q is not a valid namespace", f.Namespace)
		}
	}
	for i, t := range rg.To {
		p := indexPath("to", i)
		if t.Kind == "" {
			fe.add(joinPath(p, "kind"), "required")
		}
		if t.Name != nil && *t.Name == "" {
			fe.add(joinPath(p, "name"), "must not be empty when set: leave it out to allow every object of the kind")
		}
	}
	return fe.errs
}

// GatewayClassController is the controllerName of the GatewayClass named
// class, and whether one exists.
func GatewayClassController(sn *Snapshot, class string) (string, bool) {
	for _, o := range sn.OfKind(KindGatewayClass) {
		if o.Meta.Name == class {
			if gc, ok := o.Spec.(*gatewayv1.GatewayClassSpec); ok {
				return string(gc.ControllerName), true
			}
		}
	}
	return "", false
}

// ServesGateway reports whether meshlens programs the Gateway API Gateway
// g: its GatewayClass names GatewayControllerName.
func ServesGateway(sn *Snapshot, g *Object) bool {
	gw, ok := g.Spec.(*gatewayv1.GatewaySpec)
	if !ok {
		return false
	}
	c, _ := GatewayClassController(sn, string(gw.GatewayClassName))
	return c == GatewayControllerName
}

// ReferencePermitted reports whether an object of kind fromKind (group
// fromGroup) in namespace fromNS may refer to the object toName of kind
// toKind (group toGroup) in namespace toNS: always within one namespace,
// else when a ReferenceGrant of toNS allows it.
func ReferencePermitted(sn *Snapshot, fromGroup, fromKind, fromNS, toGroup, toKind, toNS, toName string) bool {
	if fromNS == toNS {
		return true
	}
	for _, o := range sn.OfKind(KindReferenceGrant) {
		rg, ok := o.Spec.(*gatewayv1.ReferenceGrantSpec)
		if !ok || o.Meta.Namespace != toNS {
			continue
		}
		from := false
		for _, f := range rg.From {
			if string(f.Group) == fromGroup && string(f.Kind) == fromKind && string(f.Namespace) == fromNS {
				from = true
				break
			}
		}
		if !from {
			continue
		}
		for _, t := range rg.To {
			if string(t.Group) == toGroup && string(t.Kind) == toKind && (t.Name == nil || string(*t.Name) == toName) {
				return true
			}
		}
	}
	return false
}

// BackendPermitted reports whether a route of kind (HTTPRoute, GRPCRoute)
// in routeNS may send to ref: a Service of its own namespace or a host,
// or a Service of another namespace that a ReferenceGrant there allows.
func BackendPermitted(sn *Snapshot, kind, routeNS string, ref gatewayv1.BackendObjectReference) bool {
	if !CrossNamespace(ref, routeNS) {
		return true
	}
	return ReferencePermitted(sn, GatewayAPIGroup, WireKind(kind), routeNS, "", "Service", string(*ref.Namespace), string(ref.Name))
}

// GatewayListenerState is what a Gateway API controller reports of one
// listener of a Gateway meshlens programs.
type GatewayListenerState struct {
	Accepted           bool
	AcceptedReason     string // Accepted, UnsupportedProtocol
	Programmed         bool
	ResolvedRefs       bool
	ResolvedRefsReason string // ResolvedRefs, InvalidCertificateRef, InvalidRouteKinds
	SupportedKinds     []string
	Message            string
}

// CertificateRef is the Secret a listener of a Gateway in gatewayNS takes
// its certificate from (its first certificateRef), and whether the Gateway
// may read it: a Secret of its own namespace, or of another one whose
// ReferenceGrant allows Gateways of gatewayNS. ok is false when the
// listener names no certificate.
func CertificateRef(sn *Snapshot, gatewayNS string, l gatewayv1.Listener) (ns, name string, permitted, ok bool) {
	if l.TLS == nil || len(l.TLS.CertificateRefs) == 0 {
		return "", "", false, false
	}
	ref := l.TLS.CertificateRefs[0]
	ns = gatewayNS
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = string(*ref.Namespace)
	}
	return ns, string(ref.Name), ReferencePermitted(sn, GatewayAPIGroup, "Gateway", gatewayNS, "", "Secret", ns, string(ref.Name)), true
}

// ListenerState says whether meshlens serves a listener of the Gateway g:
// HTTP, and HTTPS terminating TLS with a certificate it may read, take
// HTTPRoutes and GRPCRoutes (those of its allowedRoutes.kinds); other
// protocols are not supported.
func ListenerState(sn *Snapshot, g *Object, l gatewayv1.Listener) GatewayListenerState {
	st := GatewayListenerState{Accepted: true, AcceptedReason: "Accepted", Programmed: true, ResolvedRefs: true, ResolvedRefsReason: "ResolvedRefs",
		Message: "meshlens serves HTTPRoutes and GRPCRoutes on this listener"}
	if l.Protocol != gatewayv1.HTTPProtocolType && l.Protocol != gatewayv1.HTTPSProtocolType {
		return GatewayListenerState{AcceptedReason: "UnsupportedProtocol", ResolvedRefs: true, ResolvedRefsReason: "ResolvedRefs", SupportedKinds: []string{},
			Message: fmt.Sprintf("meshlens serves HTTP and HTTPS listeners only, not %s", l.Protocol)}
	}
	if l.Protocol == gatewayv1.HTTPSProtocolType && (l.TLS == nil || len(l.TLS.CertificateRefs) == 0) {
		st.Programmed, st.ResolvedRefs, st.ResolvedRefsReason = false, false, "InvalidCertificateRef"
		st.Message = "an HTTPS listener needs tls.certificateRefs: meshlens serves nothing on it"
	} else if ns, name, permitted, ok := CertificateRef(sn, g.Meta.Namespace, l); ok && !permitted {
		st.Programmed, st.ResolvedRefs, st.ResolvedRefsReason = false, false, "RefNotPermitted"
		st.Message = fmt.Sprintf("tls.certificateRefs names Secret %s/%s of another namespace, and no ReferenceGrant there allows Gateways of %s: meshlens serves nothing on it", ns, name, g.Meta.Namespace)
	}
	for _, k := range []string{KindHTTPRoute, KindGRPCRoute} {
		if ar := l.AllowedRoutes; ar == nil || len(ar.Kinds) == 0 || slices.ContainsFunc(ar.Kinds, func(rk gatewayv1.RouteGroupKind) bool { return string(rk.Kind) == k }) {
			st.SupportedKinds = append(st.SupportedKinds, k)
		}
	}
	if ar := l.AllowedRoutes; ar != nil {
		for _, rk := range ar.Kinds {
			if string(rk.Kind) != KindHTTPRoute && string(rk.Kind) != KindGRPCRoute {
				st.ResolvedRefs, st.ResolvedRefsReason = false, "InvalidRouteKinds"
				st.Message = fmt.Sprintf("allowedRoutes.kinds names %s: meshlens serves HTTPRoutes and GRPCRoutes only", rk.Kind)
			}
		}
		if ar.Namespaces != nil && ar.Namespaces.From != nil && *ar.Namespaces.From == gatewayv1.NamespacesFromSelector {
			st.Message = "allowedRoutes.namespaces.from: Selector: meshlens knows no namespace labels, so no route attaches"
		}
	}
	if st.SupportedKinds == nil {
		st.SupportedKinds = []string{}
	}
	return st
}

// AttachedRoutes counts, per listener of the Gateway g, the HTTPRoutes and
// GRPCRoutes of sn that attach to it: a parentRef naming g (and the
// listener's sectionName or port, if any) that the listener allows, with a
// hostname it serves.
func AttachedRoutes(sn *Snapshot, g *Object) map[gatewayv1.SectionName]int {
	out := map[gatewayv1.SectionName]int{}
	gw, ok := g.Spec.(*gatewayv1.GatewaySpec)
	if !ok {
		return out
	}
	for _, r := range append(sn.OfKind(KindHTTPRoute), sn.OfKind(KindGRPCRoute)...) {
		var parents []gatewayv1.ParentReference
		var hostnames []gatewayv1.Hostname
		switch spec := r.Spec.(type) {
		case *gatewayv1.HTTPRouteSpec:
			parents, hostnames = spec.ParentRefs, spec.Hostnames
		case *gatewayv1.GRPCRouteSpec:
			parents, hostnames = spec.ParentRefs, spec.Hostnames
		}
		for _, l := range gw.Listeners {
			for _, pr := range parents {
				ns := r.Meta.Namespace
				if pr.Namespace != nil {
					ns = string(*pr.Namespace)
				}
				if ParentKind(pr) != "Gateway" || ns != g.Meta.Namespace || string(pr.Name) != g.Meta.Name ||
					pr.SectionName != nil && *pr.SectionName != l.Name || pr.Port != nil && *pr.Port != l.Port {
					continue
				}
				if ListenerAllows(l, g.Meta.Namespace, r.Meta.Namespace, WireKind(r.Kind)) && len(ListenerHostnames(l, hostnames)) > 0 {
					out[l.Name]++
					break // a route counts once per listener
				}
			}
		}
	}
	return out
}
