package query

import (
	"github.com/meshlens/meshlens/controlplane/registry"
	"github.com/meshlens/meshlens/graph"
)

// labeledGraph is a graph with the Kubernetes labels of its nodes, for the
// UI's grouping by any label: the labels every Pod of a node shares (and
// their locality), by node id, for the nodes the registry knows.
type labeledGraph struct {
	*graph.Graph
	NodeLabels map[string]map[string]string `json:"nodeLabels,omitempty"`
}

// labeled adds the registry's labels to g; g itself is left alone, as other
// readers of the same live snapshot share it.
func (a *handlers) labeled(g *graph.Graph) any {
	if a.Registry == nil {
		return g
	}
	reg := a.Registry()
	if reg == nil {
		return g
	}
	out := labeledGraph{Graph: g}
	for _, n := range g.Nodes {
		if n.Unknown {
			continue
		}
		if l := reg.NodeLabels(n.Namespace, n.Service, n.Version, n.Workload); len(l) > 0 {
			if out.NodeLabels == nil {
				out.NodeLabels = map[string]map[string]string{}
			}
			out.NodeLabels[n.ID] = l
		}
	}
	return out
}

// RegistrySnapshot returns the service registry's current snapshot, nil
// without a Kubernetes cluster.
type RegistrySnapshot func() *registry.Snapshot
