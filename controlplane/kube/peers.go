package kube

import "github.com/meshlens/meshlens/mesh"

// PeerAt names the workload at an address ("ip" or "ip:port") from the
// current snapshot: the Registry is the collector's mesh.PeerResolver, so a
// Pod's IP in an access-log entry or a span names its workload, service and
// version even when the telemetry does not.
func (r *Registry) PeerAt(addr string) (mesh.Peer, bool) { return r.Snapshot().PeerAt(addr) }
