package config

import (
	"fmt"

	networking "istio.io/api/networking/v1"
)

// KindWorkloadGroup is Istio's WorkloadGroup (networking.istio.io): the
// template (labels, ports, service account, network) and health probe of
// a group of VM workloads. The WorkloadEntries of its members name it with
// the annotation AutoRegistrationGroupAnnotation, as istiod's
// auto-registration writes them, and take from the template what they
// leave unset.
const KindWorkloadGroup = "WorkloadGroup"

// AutoRegistrationGroupAnnotation names, on a WorkloadEntry, the
// WorkloadGroup (same namespace) it belongs to.
const AutoRegistrationGroupAnnotation = "istio.io/autoRegistrationGroup"

func (v *istioValidator) workloadGroup(o *Object) []FieldError {
	wg, ok := o.Spec.(*networking.WorkloadGroup)
	if !ok {
		return []FieldError{{Object: o.Key(), Message: fmt.Sprintf("spec is %T, want WorkloadGroup", o.Spec)}}
	}
	fe := &fieldErrs{object: o.Key()}
	checkGeneric(wg, fe)
	t := wg.GetTemplate()
	if t == nil {
		fe.add("template", "template is required")
	} else {
		if t.GetAddress() != "" {
			fe.add("template.address", "address is not allowed in a template: each member has its own")
		}
		for name, p := range t.GetPorts() {
			validPort(p, keyPath("template.ports", name), fe)
		}
		for k := range t.GetLabels() {
			if k == "" {
				fe.add("template.labels", "label keys must not be empty")
			}
		}
		if w := t.GetWeight(); w > 1<<31-1 {
			fe.add("template.weight", "weight %d is too large", w)
		}
	}
	for k := range wg.GetMetadata().GetLabels() {
		if k == "" {
			fe.add("metadata.labels", "label keys must not be empty")
		}
	}
	if p := wg.GetProbe(); p != nil {
		methods := 0
		if h := p.GetHttpGet(); h != nil {
			methods++
			validPort(h.GetPort(), "probe.httpGet.port", fe)
			if s := h.GetScheme(); s != "" && s != "HTTP" && s != "HTTPS" {
				fe.add("probe.httpGet.scheme", "scheme %q must be HTTP or HTTPS", s)
			}
		}
		if tcp := p.GetTcpSocket(); tcp != nil {
			methods++
			validPort(tcp.GetPort(), "probe.tcpSocket.port", fe)
		}
		if g := p.GetGrpc(); g != nil {
			methods++
			validPort(uint32(g.GetPort()), "probe.grpc.port", fe)
		}
		if e := p.GetExec(); e != nil {
			methods++
			if len(e.GetCommand()) == 0 {
				fe.add("probe.exec.command", "exec command must not be empty")
			}
		}
		if methods != 1 {
			fe.add("probe", "a probe must have exactly one health check method (httpGet, tcpSocket, grpc or exec), has %d", methods)
		}
		for _, f := range []struct {
			name string
			v    int32
		}{{"initialDelaySeconds", p.GetInitialDelaySeconds()}, {"timeoutSeconds", p.GetTimeoutSeconds()}, {"periodSeconds", p.GetPeriodSeconds()},
			{"successThreshold", p.GetSuccessThreshold()}, {"failureThreshold", p.GetFailureThreshold()}} {
			if f.v < 0 {
				fe.add(joinPath("probe", f.name), "must not be negative")
			}
		}
	}
	return fe.errs
}

// analyzeWorkloadEntryGroup reports a WorkloadEntry that names a
// WorkloadGroup that does not exist: it gets no template.
func analyzeWorkloadEntryGroup(o *Object, sn *Snapshot, w *warns) {
	g := o.Meta.Annotations[AutoRegistrationGroupAnnotation]
	if g == "" || sn.Get(KindWorkloadGroup, o.Meta.Namespace, g) != nil {
		return
	}
	w.add(CodeReferencedResourceNotFound, "metadata.annotations["+AutoRegistrationGroupAnnotation+"]",
		"Referenced WorkloadGroup not found: %q: no WorkloadGroup %s/%s exists, so this entry takes nothing from a template", g, o.Meta.Namespace, g)
}
