package mesh

// PeerResolver names the workload at a network address, for telemetry that
// carries an address but not (all of) the identity behind it: an Envoy
// access-log entry's upstream host, a span's peer address. It is how a
// service registry (Kubernetes Pods, by IP) feeds the collector without the
// collector knowing where the registry comes from.
type PeerResolver interface {
	// PeerAt returns the peer at addr, "ip" or "ip:port" ("10.1.2.3",
	// "10.1.2.3:9080", "[fd00::1]:80"); ok is false for an address it does
	// not know. Called on the ingest path: it must be cheap and safe for
	// concurrent use.
	PeerAt(addr string) (p Peer, ok bool)
}
