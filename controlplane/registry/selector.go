package registry

import "slices"

// NamespacesSelected are the namespaces of the Pods behind some Service
// whose labels have every selector label (an empty selector selects none),
// sorted: where the gateway proxies a Gateway selects run, as Istio's
// analysis finds them.
func (s *Snapshot) NamespacesSelected(selector map[string]string) []string {
	if s == nil || len(selector) == 0 {
		return nil
	}
	var out []string
	for _, svc := range s.Services {
		for _, e := range svc.Endpoints {
			if e.Workload == nil || slices.Contains(out, e.Namespace) {
				continue
			}
			all := true
			for k, v := range selector {
				if e.Labels[k] != v {
					all = false
					break
				}
			}
			if all {
				out = append(out, e.Namespace)
			}
		}
	}
	slices.Sort(out)
	return out
}
