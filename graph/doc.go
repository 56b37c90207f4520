// Package graph is meshlens' dependency graph: a live, windowed, in-memory
// model of the mesh fed by request records (Live, a mesh.RecordSink), and the
// building of the graph users see from any source's traffic (Build).
//
// Live keeps two rings of time buckets (10 s × 36 and 1 min × 61 by default),
// each bucket holding one compact counter cell per edge: requests, errors,
// mTLS, bytes, codes, response flags and a latency histogram over
// mesh.LatencyBucketsMs. A window is answered from the finest ring that
// covers it. The writer holds a lock only among writers; readers take an
// immutable Snapshot published by atomic pointer swap at most every second
// (or on Refresh). Published buckets are frozen and copied on the writer's
// next write, so a snapshot never changes and a reader never blocks the
// writer. Edges are capped (least recently seen evicted) and memory is
// reported as Prometheus gauges.
//
// Every source (Live, ClickHouse history, Prometheus in package query)
// produces Traffic: per-edge Stats keyed by full source and destination peers.
// Build aggregates it into a view (service, version or workload nodes) with a
// pipeline of appenders — traffic, limit, response time, security, health,
// topology — so the sources differ only in where the counts come from and
// give the same graph for the same traffic. Topology (cycles, impact, paths)
// runs gonum's algorithms over a compact adjacency of the built graph.
//
// A live graph query is cold once per publish, so its cost is kept down
// where it is paid every time: edges and peers carry small ids assigned when
// an edge is first seen, window sums go into pooled per-id accumulators and
// slab-allocated stats listed in id order, Build walks that list (the Edges
// map keyed by full peers is only built when a caller asks for the traffic
// itself) and finds nodes by peer id, not by hashing strings.
package graph
