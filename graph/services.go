package graph

import (
	"sort"

	"github.com/meshlens/meshlens/mesh"
)

// Service summarises one service's inbound traffic over a window.
type Service struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Versions  []string `json:"versions"`
	Requests  uint64   `json:"requests"`
	RPS       float64  `json:"rps"`
	ErrorRate float64  `json:"errorRate"`
	P50Ms     float64  `json:"p50Ms"`
	P99Ms     float64  `json:"p99Ms"`
	Callers   int      `json:"callers"`
	Health    string   `json:"health"` // of the inbound traffic, as a node's
}

// Services lists every known service seen in the traffic, as caller or
// callee, sorted by namespace and name; callers-only services have no
// inbound numbers. Unknown callers are not a service.
func Services(t *Traffic, namespace string) []Service {
	type acc struct {
		s        Service
		in       *Stats
		versions map[string]bool
		callers  map[string]bool
	}
	all := map[[2]string]*acc{}
	get := func(p mesh.Peer) *acc {
		k := [2]string{p.Namespace, p.Service}
		a := all[k]
		if a == nil {
			a = &acc{s: Service{Namespace: p.Namespace, Name: p.Service}, in: NewStats(), versions: map[string]bool{}, callers: map[string]bool{}}
			all[k] = a
		}
		if p.Version != "" {
			a.versions[p.Version] = true
		}
		return a
	}
	for k, st := range t.Edges {
		if namespace != "" && k.Destination.Namespace != namespace && k.Source.Namespace != namespace {
			continue
		}
		if k.Source.Service != mesh.Unknown && (namespace == "" || k.Source.Namespace == namespace) {
			get(k.Source)
		}
		if namespace == "" || k.Destination.Namespace == namespace {
			a := get(k.Destination)
			a.in.Add(st)
			a.callers[k.Source.Namespace+"/"+k.Source.Service] = true
		}
	}
	out := make([]Service, 0, len(all))
	secs := t.Window.Seconds()
	for _, a := range all {
		s := a.s
		s.Versions = make([]string, 0, len(a.versions))
		for v := range a.versions {
			s.Versions = append(s.Versions, v)
		}
		sort.Strings(s.Versions)
		s.Requests, s.ErrorRate, s.Callers = a.in.Requests, a.in.ErrorRate(), len(a.callers)
		if secs > 0 {
			s.RPS = float64(a.in.Requests) / secs
		}
		s.P50Ms, s.P99Ms = round3(finite(a.in.Quantile(0.5))), round3(finite(a.in.Quantile(0.99)))
		s.Health = health(s.Requests, s.ErrorRate)
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}
