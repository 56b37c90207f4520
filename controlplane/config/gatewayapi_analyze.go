package config

import (
	"strconv"
	"strings"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// analyzeRoute reports what a Gateway API user's controller would put in
// the route's status as ResolvedRefs or Accepted false, and istioctl
// analyze as IST0101: a parent Gateway, listener or Service, or a backend
// Service, that does not exist; a listener that does not allow the route.
func (v *istioValidator) analyzeRoute(o *Object, sn *Snapshot) []Warning {
	var parents []gatewayv1.ParentReference
	var hostnames []gatewayv1.Hostname
	var backends []pathBackend
	switch spec := o.Spec.(type) {
	case *gatewayv1.HTTPRouteSpec:
		parents, hostnames = spec.ParentRefs, spec.Hostnames
		for i, r := range spec.Rules {
			p := indexPath("rules", i)
			for j, b := range r.BackendRefs {
				backends = append(backends, pathBackend{indexPath(joinPath(p, "backendRefs"), j), b.BackendObjectReference})
			}
			for j, f := range r.Filters {
				if f.RequestMirror != nil {
					backends = append(backends, pathBackend{indexPath(joinPath(p, "filters"), j) + ".requestMirror.backendRef", f.RequestMirror.BackendRef})
				}
			}
		}
	case *gatewayv1.GRPCRouteSpec:
		parents, hostnames = spec.ParentRefs, spec.Hostnames
		for i, r := range spec.Rules {
			p := indexPath("rules", i)
			for j, b := range r.BackendRefs {
				backends = append(backends, pathBackend{indexPath(joinPath(p, "backendRefs"), j), b.BackendObjectReference})
			}
			for j, f := range r.Filters {
				if f.RequestMirror != nil {
					backends = append(backends, pathBackend{indexPath(joinPath(p, "filters"), j) + ".requestMirror.backendRef", f.RequestMirror.BackendRef})
				}
			}
		}
	default:
		return nil
	}
	if !anyParentServed(o, parents, sn) {
		return nil // another controller's route: its findings are that controller's to report
	}
	idx := v.index(sn)
	w := &warns{object: o.Key()}
	for i, pr := range parents {
		p := indexPath("parentRefs", i)
		ns := o.Meta.Namespace
		if pr.Namespace != nil {
			ns = string(*pr.Namespace)
		}
		switch ParentKind(pr) {
		case "ServiceEntry":
			if sn.Get(KindServiceEntry, ns, string(pr.Name)) == nil {
				w.add(CodeReferencedResourceNotFound, p,
					"Referenced ServiceEntry not found: %q: the route applies to no client until it exists", ns+"/"+string(pr.Name))
			}
		case "Service":
			host := FQDN(string(pr.Name), ns, v.opts.DomainSuffix)
			if !idx.resolves(host, v.opts.KnownHost) {
				w.add(CodeReferencedResourceNotFound, p,
					"Referenced Service not found: %q: no Kubernetes Service or ServiceEntry defines %s; the route applies to no client until one does", ns+"/"+string(pr.Name), host)
				continue
			}
			for _, vs := range idx.vsHosts[host] {
				w.add(CodeConflictingMeshGatewayVirtualServiceHosts, p,
					"host %s is also routed by %s for the mesh: the VirtualService is used and this route is not. Route the Service with one of them.", host, vs)
			}
		case "Gateway":
			g := sn.Get(KindKubernetesGateway, ns, string(pr.Name))
			if g == nil {
				w.add(CodeReferencedResourceNotFound, p,
					"Referenced gateway not found: %q: no Gateway (%s) %s/%s exists; no gateway serves the route until one does", ns+"/"+string(pr.Name), GatewayAPIGroup, ns, pr.Name)
				continue
			}
			if !ServesGateway(sn, g) {
				continue // another controller's Gateway
			}
			analyzeListeners(o, pr, g, hostnames, p, w)
		}
	}
	for _, b := range backends {
		if b.ref.Name == "" || BackendKind(b.ref) != "Service" {
			continue
		}
		bns := o.Meta.Namespace
		if CrossNamespace(b.ref, o.Meta.Namespace) {
			bns = string(*b.ref.Namespace)
			if !BackendPermitted(sn, o.Kind, o.Meta.Namespace, b.ref) {
				w.add(CodeReferencedResourceNotFound, joinPath(b.path, "namespace"),
					"backendRef to Service %s/%s in another namespace: no ReferenceGrant in namespace %s allows %s from namespace %s to refer to it (RefNotPermitted); it gets no traffic: the rule's other backends take its share, and a rule with none answers 500",
					bns, b.ref.Name, bns, WireKind(o.Kind), o.Meta.Namespace)
				continue
			}
		}
		host := FQDN(string(b.ref.Name), bns, v.opts.DomainSuffix)
		if !idx.resolves(host, v.opts.KnownHost) {
			w.add(CodeReferencedResourceNotFound, b.path,
				"Referenced Service not found: %q: no Kubernetes Service or ServiceEntry defines %s; requests sent to it fail (503 / UNAVAILABLE) until one does", bns+"/"+string(b.ref.Name), host)
		}
	}
	return w.out
}

// anyParentServed reports whether meshlens serves the route for one of
// its parents at least: a Service or ServiceEntry (GAMMA), a Gateway of
// meshlens' GatewayClass, or a Gateway that does not exist (whose absence
// is worth reporting).
func anyParentServed(o *Object, parents []gatewayv1.ParentReference, sn *Snapshot) bool {
	for _, pr := range parents {
		if ParentKind(pr) != "Gateway" {
			return true
		}
		ns := o.Meta.Namespace
		if pr.Namespace != nil {
			ns = string(*pr.Namespace)
		}
		if g := sn.Get(KindKubernetesGateway, ns, string(pr.Name)); g == nil || ServesGateway(sn, g) {
			return true
		}
	}
	return false
}

type pathBackend struct {
	path string
	ref  gatewayv1.BackendObjectReference
}

// analyzeListeners reports a parentRef none of whose listeners takes the
// route: no listener of that sectionName or port, listeners that do not
// allow the route's namespace or kind, or whose hostnames the route's do
// not intersect.
func analyzeListeners(o *Object, pr gatewayv1.ParentReference, g *Object, hostnames []gatewayv1.Hostname, p string, w *warns) {
	gw := g.Spec.(*gatewayv1.GatewaySpec)
	var named, allowed int
	for _, l := range gw.Listeners {
		if pr.SectionName != nil && *pr.SectionName != l.Name || pr.Port != nil && *pr.Port != l.Port {
			continue
		}
		named++
		if !ListenerAllows(l, g.Meta.Namespace, o.Meta.Namespace, WireKind(o.Kind)) {
			continue
		}
		allowed++
		if len(ListenerHostnames(l, hostnames)) == 0 {
			w.add(CodeVirtualServiceHostNotFoundInGateway, p,
				"no hostname of the route (%s) matches listener %q of Gateway %s/%s (hostname %s): the listener does not serve it", hostList(hostnames), l.Name, g.Meta.Namespace, g.Meta.Name, ptrStr(l.Hostname))
		}
	}
	switch {
	case named == 0:
		what := "listener"
		if pr.SectionName != nil {
			what += " " + quote(string(*pr.SectionName))
		}
		if pr.Port != nil {
			what += " on port " + strconv.Itoa(int(*pr.Port))
		}
		w.add(CodeReferencedResourceNotFound, p, "Referenced %s not found in Gateway %s/%s: no gateway serves the route through it", what, g.Meta.Namespace, g.Meta.Name)
	case allowed == 0:
		w.add(CodeReferencedResourceNotFound, p, "Gateway %s/%s: its listeners do not allow %s from namespace %s (allowedRoutes): no gateway serves the route", g.Meta.Namespace, g.Meta.Name, WireKind(o.Kind), o.Meta.Namespace)
	}
}

// ListenerAllows reports whether a listener of a Gateway in gwNS takes a
// route of kind (HTTPRoute, GRPCRoute) in routeNS: its allowedRoutes
// (namespaces Same by default; kinds by protocol: HTTP and HTTPS take
// both route kinds, TLS and TCP neither).
func ListenerAllows(l gatewayv1.Listener, gwNS, routeNS, kind string) bool {
	if l.Protocol != gatewayv1.HTTPProtocolType && l.Protocol != gatewayv1.HTTPSProtocolType {
		return false
	}
	from := gatewayv1.NamespacesFromSame
	if ar := l.AllowedRoutes; ar != nil && ar.Namespaces != nil && ar.Namespaces.From != nil {
		from = *ar.Namespaces.From
	}
	switch from {
	case gatewayv1.NamespacesFromAll:
	case gatewayv1.NamespacesFromSame:
		if gwNS != routeNS {
			return false
		}
	default:
		return false
	}
	if l.AllowedRoutes == nil || len(l.AllowedRoutes.Kinds) == 0 {
		return true
	}
	for _, k := range l.AllowedRoutes.Kinds {
		if string(k.Kind) == kind {
			return true
		}
	}
	return false
}

// ListenerHostnames are the hostnames a listener serves for a route: the
// route's that match the listener's hostname (the more specific of two
// overlapping ones), or the listener's (or "*") for a route of none.
func ListenerHostnames(l gatewayv1.Listener, route []gatewayv1.Hostname) []string {
	lh := "*"
	if l.Hostname != nil && *l.Hostname != "" {
		lh = string(*l.Hostname)
	}
	if len(route) == 0 {
		return []string{lh}
	}
	var out []string
	for _, h := range route {
		rh := string(h)
		switch {
		case hostMatches(lh, rh):
			out = append(out, rh)
		case hostMatches(rh, lh):
			out = append(out, lh)
		}
	}
	return out
}

func hostList(hs []gatewayv1.Hostname) string {
	if len(hs) == 0 {
		return "none: any"
	}
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = string(h)
	}
	return strings.Join(out, ", ")
}

// analyzeKubernetesGateway reports a Gateway whose GatewayClass does not
// exist (no controller programs it), and, of a Gateway of meshlens' class
// (another controller's are its own business), listeners that meshlens
// serves no routes on: protocols other than HTTP and HTTPS (TLSRoute, TCPRoute and
// UDPRoute are not served), HTTPS without a certificate, and routes
// allowed by a namespace selector (meshlens knows no namespace labels).
func (v *istioValidator) analyzeKubernetesGateway(o *Object, sn *Snapshot) []Warning {
	gw, ok := o.Spec.(*gatewayv1.GatewaySpec)
	if !ok {
		return nil
	}
	w := &warns{object: o.Key()}
	switch c, found := GatewayClassController(sn, string(gw.GatewayClassName)); {
	case !found:
		w.add(CodeReferencedResourceNotFound, "gatewayClassName",
			"Referenced GatewayClass not found: %q: no controller programs this Gateway until it exists (meshlens programs the Gateways of a GatewayClass with controllerName %s)", gw.GatewayClassName, GatewayControllerName)
		return w.out
	case c != GatewayControllerName:
		return nil // another controller's Gateway (istiod's): not meshlens' to report on
	}
	for i, l := range gw.Listeners {
		p := indexPath("listeners", i)
		switch {
		case l.Protocol != gatewayv1.HTTPProtocolType && l.Protocol != gatewayv1.HTTPSProtocolType:
			w.add(CodeSchemaWarning, joinPath(p, "protocol"), "listener %q: meshlens serves HTTPRoutes and GRPCRoutes on HTTP and HTTPS listeners only; nothing is served on this %s listener", l.Name, l.Protocol)
		case l.Protocol == gatewayv1.HTTPSProtocolType && (l.TLS == nil || len(l.TLS.CertificateRefs) == 0):
			w.add(CodeSchemaWarning, joinPath(p, "tls.certificateRefs"), "listener %q has no certificate: meshlens serves nothing on it", l.Name)
		case l.Protocol == gatewayv1.HTTPSProtocolType:
			ns, name, permitted, _ := CertificateRef(sn, o.Meta.Namespace, l)
			if !permitted {
				w.add(CodeReferencedResourceNotFound, indexPath(joinPath(p, "tls.certificateRefs"), 0),
					"listener %q: Secret %s/%s is in another namespace and no ReferenceGrant there allows Gateways of %s: meshlens serves nothing on it", l.Name, ns, name, o.Meta.Namespace)
			} else if v.opts.GatewayCredential != nil {
				if code, msg, bad := v.opts.GatewayCredential(GatewayCredentialRef{GatewayNamespace: o.Meta.Namespace,
					Selector: map[string]string{GatewayNameLabel: o.Meta.Name}, Namespace: ns, Name: name}); bad {
					w.add(code, indexPath(joinPath(p, "tls.certificateRefs"), 0), "listener %q: %s: meshlens serves nothing on it", l.Name, msg)
				}
			}
		}
		if ar := l.AllowedRoutes; ar != nil && ar.Namespaces != nil && ar.Namespaces.From != nil && *ar.Namespaces.From == gatewayv1.NamespacesFromSelector {
			w.add(CodeSchemaWarning, joinPath(p, "allowedRoutes.namespaces.from"), "listener %q: meshlens does not know namespaces' labels, so a Selector allows routes from no namespace; use Same or All", l.Name)
		}
	}
	return w.out
}
