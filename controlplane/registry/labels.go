package registry

import "maps"

// LocalityLabel is the key under which NodeLabels gives the locality
// ("region/zone") of a node's Pods, unless a Pod label has that key.
const LocalityLabel = "locality"

// NodeLabels returns the labels shared by every Pod of a graph node, and
// their locality when they share one; nil when the registry knows none of
// its Pods. A node is a workload (namespace and workload name) when workload
// is set, else a service's version (namespace, app and version), else a
// whole service (namespace and app).
func (s *Snapshot) NodeLabels(namespace, app, version, workload string) map[string]string {
	if s == nil {
		return nil
	}
	s.workloadsOnce.Do(s.indexWorkloads)
	var pods []*Workload
	switch {
	case workload != "":
		pods = s.workloadsOf["w\x00"+namespace+"\x00"+workload]
	case version != "":
		pods = s.workloadsOf["v\x00"+namespace+"\x00"+app+"\x00"+version]
	default:
		pods = s.workloadsOf["a\x00"+namespace+"\x00"+app]
	}
	if len(pods) == 0 {
		return nil
	}
	out := maps.Clone(pods[0].Labels)
	if out == nil {
		out = map[string]string{}
	}
	locality := pods[0].Locality
	for _, p := range pods[1:] {
		for k, v := range out {
			if p.Labels[k] != v {
				delete(out, k)
			}
		}
		if p.Locality != locality {
			locality = ""
		}
	}
	if _, ok := out[LocalityLabel]; !ok && locality != "" {
		out[LocalityLabel] = locality
	}
	return out
}

// indexWorkloads groups the Pods by workload, by service version and by
// service, once per snapshot: a graph asks for thousands of nodes.
func (s *Snapshot) indexWorkloads() {
	s.workloadsOf = map[string][]*Workload{}
	for _, w := range s.byIP {
		s.workloadsOf["w\x00"+w.Namespace+"\x00"+w.Name] = append(s.workloadsOf["w\x00"+w.Namespace+"\x00"+w.Name], w)
		if w.App == "" {
			continue
		}
		s.workloadsOf["a\x00"+w.Namespace+"\x00"+w.App] = append(s.workloadsOf["a\x00"+w.Namespace+"\x00"+w.App], w)
		if w.Version != "" {
			k := "v\x00" + w.Namespace + "\x00" + w.App + "\x00" + w.Version
			s.workloadsOf[k] = append(s.workloadsOf[k], w)
		}
	}
}
