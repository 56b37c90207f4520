package config

import (
	"net/netip"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1"
)

// DefaultDomainSuffix is the cluster domain short host names are qualified
// with, as in Kubernetes: "reviews" in namespace "default" is
// "reviews.default.svc.cluster.local".
const DefaultDomainSuffix = "cluster.local"

// FQDN qualifies a host written in namespace ns the way Istio does: a name
// without dots is a service of that namespace, "NAME.NS.svc.DOMAIN"; anything
// else is already a full name. domain "" means DefaultDomainSuffix.
func FQDN(host, ns, domain string) string {
	if host == "" || strings.Contains(host, ".") || host == "*" {
		return host
	}
	if domain == "" {
		domain = DefaultDomainSuffix
	}
	return host + "." + ns + ".svc." + domain
}

// hostMatches reports whether pattern (possibly "*.example.com" or "*")
// covers host.
func hostMatches(pattern, host string) bool {
	if pattern == host || pattern == "*" {
		return true
	}
	if strings.HasPrefix(pattern, "*.") {
		return strings.HasSuffix(host, pattern[1:])
	}
	return false
}

// hostIndex answers which hosts and subsets a snapshot defines.
type hostIndex struct {
	serviceHosts []string            // FQDNs and wildcards from ServiceEntries
	addresses    map[string]bool     // WorkloadEntry addresses
	subsets      map[string][]string // DestinationRule FQDN host -> subset names
	wildDR       map[string][]string // wildcard DestinationRule host -> subset names
	vsHosts      map[string][]string // FQDN -> keys of mesh VirtualServices routing it
}

func newHostIndex(sn *Snapshot, domain string) *hostIndex {
	idx := &hostIndex{addresses: map[string]bool{}, subsets: map[string][]string{}, wildDR: map[string][]string{}, vsHosts: map[string][]string{}}
	if sn == nil {
		return idx
	}
	for _, o := range sn.Objects {
		switch spec := o.Spec.(type) {
		case *networking.ServiceEntry:
			for _, h := range spec.GetHosts() {
				idx.serviceHosts = append(idx.serviceHosts, FQDN(h, o.Meta.Namespace, domain))
			}
		case *networking.WorkloadEntry:
			if spec.GetAddress() != "" {
				idx.addresses[spec.GetAddress()] = true
			}
		case *networking.VirtualService:
			if meshRouting(spec) {
				for _, h := range spec.GetHosts() {
					f := FQDN(h, o.Meta.Namespace, domain)
					idx.vsHosts[f] = append(idx.vsHosts[f], o.Key())
				}
			}
		case *networking.DestinationRule:
			h := FQDN(spec.GetHost(), o.Meta.Namespace, domain)
			for _, s := range spec.GetSubsets() {
				if strings.HasPrefix(h, "*") {
					idx.wildDR[h] = append(idx.wildDR[h], s.GetName())
				} else {
					idx.subsets[h] = append(idx.subsets[h], s.GetName())
				}
			}
			if _, ok := idx.subsets[h]; !ok && !strings.HasPrefix(h, "*") {
				idx.subsets[h] = nil
			}
		}
	}
	return idx
}

// resolves reports whether a fully qualified, non-wildcard host is defined.
func (idx *hostIndex) resolves(fqdn string, known func(string) bool) bool {
	for _, h := range idx.serviceHosts {
		if hostMatches(h, fqdn) {
			return true
		}
	}
	if idx.addresses[fqdn] {
		return true
	}
	return known != nil && known(fqdn)
}

// subsetsOf lists the subset names DestinationRules define for a host.
func (idx *hostIndex) subsetsOf(fqdn string) []string {
	out := append([]string(nil), idx.subsets[fqdn]...)
	for pat, names := range idx.wildDR {
		if hostMatches(pat, fqdn) {
			out = append(out, names...)
		}
	}
	sort.Strings(out)
	return out
}

// validHost reports why a host name is malformed, or "". A wildcard is
// allowed only as the whole first label, as in Istio.
func validHost(h string, allowWildcard bool) string {
	if h == "" {
		return "host must not be empty"
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return ""
	}
	if h == "*" || strings.HasPrefix(h, "*.") {
		if !allowWildcard {
			return "a wildcard host is not allowed here"
		}
		if h == "*" {
			return ""
		}
		h = h[2:]
	}
	if len(h) > 253 {
		return "host is longer than 253 characters"
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || !hostLabel(label) {
			return "host " + quote(h) + " is not a valid DNS name"
		}
	}
	return ""
}

func hostLabel(l string) bool {
	for i, c := range l {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(l)-1:
		case c == '_': // seen in real service names; Envoy accepts it
		default:
			return false
		}
	}
	return true
}

func quote(s string) string { return "\"" + s + "\"" }

// meshRouting reports whether a VirtualService applies to sidecars (no
// gateways, or the reserved gateway "mesh"), where one host has one route
// table.
func meshRouting(vs *networking.VirtualService) bool {
	if len(vs.GetGateways()) == 0 {
		return true
	}
	for _, g := range vs.GetGateways() {
		if g == "mesh" {
			return true
		}
	}
	return false
}
