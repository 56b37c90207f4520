package registry

import "github.com/meshlens/meshlens/mesh"

// PeerAt names the workload at an address as the mesh graph names peers, so
// a Snapshot is a mesh.PeerResolver: namespace and workload from the Pod,
// version from its version label, service the Kubernetes Service it serves,
// as the cluster names of the same traffic do (of several, the one named
// like its app label, else the first by name), else its app label, else the
// workload, as Istio's canonical service falls back.
func (s *Snapshot) PeerAt(addr string) (mesh.Peer, bool) {
	w := s.WorkloadAt(addr)
	if w == nil {
		return mesh.Peer{}, false
	}
	p := mesh.Peer{Namespace: w.Namespace, Workload: w.Name, Version: w.Version}
	for _, svc := range s.servicesAt(w.Address) {
		name := svc.Name
		if name == w.App {
			p.Service = name
			break
		}
		if p.Service == "" || name < p.Service {
			p.Service = name
		}
	}
	if p.Service == "" {
		p.Service = w.App
	}
	if p.Service == "" {
		p.Service = w.Name
	}
	return p, true
}
