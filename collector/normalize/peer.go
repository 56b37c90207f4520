// Package normalize turns OpenTelemetry data into meshlens rows: access-log
// records and span pairs into mesh request records, spans into span rows,
// metric points into metric rows, other logs into log rows. Everything here is
// a pure function of its input except Pairer, which holds spans until their
// other half arrives.
package normalize

import (
	"math"
	"strconv"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/meshlens/meshlens/collector/accesslog"
	"github.com/meshlens/meshlens/mesh"
)

// PeerOf reads the identity of a workload from resource attributes, following
// OpenTelemetry semantic conventions first and Istio labels second.
func PeerOf(res pcommon.Map) mesh.Peer {
	get := func(keys ...string) string {
		for _, k := range keys {
			if v, ok := res.Get(k); ok && v.Str() != "" {
				return v.Str()
			}
		}
		return ""
	}
	p := mesh.Peer{
		Service:   get(accesslog.ResService, "app", "service.istio.io/canonical-name"),
		Version:   get(accesslog.ResVersion, "version", "service.istio.io/canonical-revision"),
		Namespace: get(accesslog.ResNamespace, "service.namespace", "namespace"),
		Workload:  get(accesslog.ResWorkload, "k8s.statefulset.name", "k8s.daemonset.name", "workload"),
	}
	if p.Service == "unknown_service" || hasPrefix(p.Service, "unknown_service:") {
		p.Service = "" // the OTel SDK's placeholder for "not configured"
	}
	return p
}

// known reports whether p names everything an address could add to it.
func known(p mesh.Peer) bool {
	return p.Service != "" && p.Version != "" && p.Workload != "" && p.Namespace != ""
}

// resolve fills what p lacks from the workload at addr. What the telemetry
// said is never overwritten, and a workload in another namespace than the
// one the telemetry names is not p's (an address reused, or from another
// cluster). Callers check known(p) first: that keeps the resolver, and
// reading the address, off the path of records that need neither.
func resolve(r mesh.PeerResolver, p mesh.Peer, addr string) mesh.Peer {
	if addr == "" {
		return p
	}
	q, ok := r.PeerAt(addr)
	if !ok || (p.Namespace != "" && q.Namespace != "" && q.Namespace != p.Namespace) {
		return p
	}
	if p.Namespace == "" {
		p.Namespace = q.Namespace
	}
	if p.Service == "" {
		p.Service = q.Service
	}
	if p.Version == "" {
		p.Version = q.Version
	}
	if p.Workload == "" {
		p.Workload = q.Workload
	}
	return p
}

// resolveSelf fills the identity a resource names from its Pod's address
// (k8s.pod.ip), once per resource.
func resolveSelf(r mesh.PeerResolver, p mesh.Peer, res pcommon.Map) mesh.Peer {
	if r == nil || known(p) {
		return p
	}
	return resolve(r, p, str(res, accesslog.ResPodIP))
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

func str(m pcommon.Map, k string) string {
	if v, ok := m.Get(k); ok {
		return v.AsString()
	}
	return ""
}

func integer(m pcommon.Map, keys ...string) (int64, bool) {
	for _, k := range keys {
		v, ok := m.Get(k)
		if !ok {
			continue
		}
		switch v.Type() {
		case pcommon.ValueTypeInt:
			return v.Int(), true
		case pcommon.ValueTypeDouble:
			return int64(v.Double()), true
		case pcommon.ValueTypeStr:
			var n int64
			s := v.Str()
			if s == "" {
				continue
			}
			neg := false
			if s[0] == '-' {
				neg, s = true, s[1:]
			}
			ok := len(s) > 0 && len(s) <= 18
			for _, c := range s {
				if c < '0' || c > '9' {
					ok = false
					break
				}
				n = n*10 + int64(c-'0')
			}
			if ok {
				if neg {
					n = -n
				}
				return n, true
			}
		}
	}
	return 0, false
}

func float(m pcommon.Map, k string) (float64, bool) {
	v, ok := m.Get(k)
	if !ok {
		return 0, false
	}
	switch v.Type() {
	case pcommon.ValueTypeDouble:
		return v.Double(), true
	case pcommon.ValueTypeInt:
		return float64(v.Int()), true
	case pcommon.ValueTypeStr:
		// Envoy's OpenTelemetry access logger writes every command
		// operator as a string ("12"; "-" when it has no value).
		if f, err := strconv.ParseFloat(v.Str(), 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			return f, true
		}
	}
	return 0, false
}

// clampCode keeps an HTTP status inside what the tables store.
func clampCode(n int64) uint16 {
	if n < 0 || n > 999 {
		return 0
	}
	return uint16(n)
}

func clampGRPC(n int64, ok bool) int16 {
	if !ok || n < 0 || n > 16 {
		return -1
	}
	return int16(n)
}
