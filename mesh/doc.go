// Package mesh is the shared vocabulary of meshlens: the peers of a request
// (namespace, service, workload, version), the mesh request record that the
// collector produces and everything else consumes, the edge key that the graph
// and the ClickHouse rollups agree on, and the latency buckets they share.
//
// It has no dependencies beyond the standard library so that every other
// package can import it.
package mesh
