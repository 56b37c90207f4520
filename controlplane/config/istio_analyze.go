package config

import (
	"strings"

	networking "istio.io/api/networking/v1"
)

// What `istioctl analyze` reports about Istio objects and meshlens reports
// as warnings: references to hosts and subsets that nothing defines, and
// hosts that two VirtualServices route. The xDS translator copes with all of
// them as Istio does (a route to an unknown host or subset goes to a
// cluster without endpoints: 503 / UNAVAILABLE; the first VirtualService of
// a host wins).

func (v *istioValidator) analyzeVirtualService(o *Object, sn *Snapshot) []Warning {
	vs, ok := o.Spec.(*networking.VirtualService)
	if !ok {
		return nil
	}
	idx := v.index(sn)
	w := &warns{object: o.Key()}
	if meshRouting(vs) {
		for i, h := range vs.GetHosts() {
			if validHost(h, true) != "" || strings.HasPrefix(h, "*") {
				continue
			}
			fqdn := FQDN(h, o.Meta.Namespace, v.opts.DomainSuffix)
			// The sidecar has one route table per host: a second
			// VirtualService for it silently loses to the first.
			others := idx.vsHosts[fqdn]
			if len(others) < 2 {
				continue
			}
			for _, other := range others {
				if other != o.Key() {
					w.add(CodeConflictingMeshGatewayVirtualServiceHosts, indexPath("hosts", i),
						"host %s is also routed by %s for the mesh gateway, which can lead to undefined behavior: only %s is used. Merge them into a single VirtualService.",
						fqdn, other, others[0])
				}
			}
		}
	}
	for _, d := range vsDestinations(vs) {
		v.analyzeDestination(d.dest, d.path, o.Meta.Namespace, idx, w)
	}
	v.analyzeGatewayBindings(o, vs, sn, w)
	for i, r := range vs.GetHttp() {
		d := r.GetDelegate()
		if d == nil {
			continue
		}
		ns := d.GetNamespace()
		if ns == "" {
			ns = o.Meta.Namespace
		}
		target := sn.Get(KindVirtualService, ns, d.GetName())
		switch {
		case target == nil:
			w.add(CodeReferencedResourceNotFound, indexPath("http", i)+".delegate",
				"Referenced virtual service not found: %q: no VirtualService %s/%s exists; this route sends nothing until one does", ns+"/"+d.GetName(), ns, d.GetName())
		case len(target.Spec.(*networking.VirtualService).GetHosts()) > 0:
			w.add(CodeReferencedResourceNotFound, indexPath("http", i)+".delegate",
				"VirtualService %s/%s has hosts, so it is not a delegate: this route sends nothing (a delegate VirtualService has no hosts)", ns, d.GetName())
		}
	}
	return w.out
}

// pathDest is one destination of a VirtualService and its field path.
type pathDest struct {
	path string
	dest *networking.Destination
}

// vsDestinations lists every destination a VirtualService sends traffic
// to: HTTP, TCP and TLS routes and HTTP mirrors.
func vsDestinations(vs *networking.VirtualService) []pathDest {
	var out []pathDest
	for i, r := range vs.GetHttp() {
		p := indexPath("http", i)
		for j, d := range r.GetRoute() {
			out = append(out, pathDest{indexPath(joinPath(p, "route"), j) + ".destination", d.GetDestination()})
		}
		if r.GetMirror() != nil {
			out = append(out, pathDest{joinPath(p, "mirror"), r.GetMirror()})
		}
		for j, m := range r.GetMirrors() {
			out = append(out, pathDest{indexPath(joinPath(p, "mirrors"), j) + ".destination", m.GetDestination()})
		}
	}
	for i, r := range vs.GetTcp() {
		for j, d := range r.GetRoute() {
			out = append(out, pathDest{indexPath(indexPath("tcp", i)+".route", j) + ".destination", d.GetDestination()})
		}
	}
	for i, r := range vs.GetTls() {
		for j, d := range r.GetRoute() {
			out = append(out, pathDest{indexPath(indexPath("tls", i)+".route", j) + ".destination", d.GetDestination()})
		}
	}
	return out
}

func (v *istioValidator) analyzeDestination(d *networking.Destination, path, ns string, idx *hostIndex, w *warns) {
	if d == nil || validHost(d.GetHost(), false) != "" {
		return // a validation error, not a finding
	}
	host := FQDN(d.GetHost(), ns, v.opts.DomainSuffix)
	if !idx.resolves(host, v.opts.KnownHost) {
		w.add(CodeReferencedResourceNotFound, joinPath(path, "host"),
			"Referenced host not found: %q: no ServiceEntry, WorkloadEntry or Kubernetes Service defines it; requests routed to it fail (503 / UNAVAILABLE) until one does", host)
		return
	}
	s := d.GetSubset()
	if s == "" {
		return
	}
	subsets := idx.subsetsOf(host)
	for _, name := range subsets {
		if name == s {
			return
		}
	}
	defined := "no DestinationRule defines subsets for it"
	if len(subsets) > 0 {
		defined = "defined: " + strings.Join(subsets, ", ")
	}
	w.add(CodeReferencedResourceNotFound, joinPath(path, "subset"),
		"Referenced host+subset in destinationrule not found: %q: subset %q of host %s is not defined by any DestinationRule (%s); requests routed to it fail (503 / UNAVAILABLE) until one is",
		host+"+"+s, s, host, defined)
}

func (v *istioValidator) analyzeDestinationRule(o *Object, sn *Snapshot) []Warning {
	dr, ok := o.Spec.(*networking.DestinationRule)
	if !ok || validHost(dr.GetHost(), true) != "" {
		return nil
	}
	host := FQDN(dr.GetHost(), o.Meta.Namespace, v.opts.DomainSuffix)
	if strings.HasPrefix(host, "*") || v.index(sn).resolves(host, v.opts.KnownHost) {
		return nil
	}
	w := &warns{object: o.Key()}
	w.add(CodeUnknownDestinationRuleHost, "host",
		"The host %s defined in the DestinationRule does not match any services in the mesh: no ServiceEntry, WorkloadEntry or Kubernetes Service defines it", host)
	return w.out
}

// The warnings Istio's webhook gives when it accepts these objects.

func (v *istioValidator) analyzeServiceEntry(o *Object, _ *Snapshot) []Warning {
	se, ok := o.Spec.(*networking.ServiceEntry)
	if !ok {
		return nil
	}
	w := &warns{object: o.Key()}
	if sel := se.GetWorkloadSelector(); sel != nil && len(sel.GetLabels()) == 0 {
		w.add(CodeSchemaWarning, "workloadSelector", "Schema validation warning: workload selector specified without labels: it selects every WorkloadEntry of the namespace")
	}
	for i, h := range se.GetHosts() {
		if partialWildcardTrimmed(h) != h && h != "*" {
			w.add(CodeSchemaWarning, indexPath("hosts", i), "Schema validation warning: partial wildcard %q not allowed; meshlens serves no wildcard hosts", h)
		}
	}
	return w.out
}

func (v *istioValidator) analyzeWorkloadEntry(o *Object, sn *Snapshot) []Warning {
	we, ok := o.Spec.(*networking.WorkloadEntry)
	if !ok {
		return nil
	}
	w := &warns{object: o.Key()}
	analyzeWorkloadEntryGroup(o, sn, w)
	if we.GetAddress() != "" {
		return w.out
	}
	w.add(CodeSchemaWarning, "address", "Schema validation warning: address is unset with network %q: reached through that network's gateway, which meshlens does not run, so it gets no traffic from meshlens' proxies", we.GetNetwork())
	return w.out
}
