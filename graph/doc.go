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
// topology — over gonum graph types, so the sources differ only in where the
// counts come from and give the same graph for the same traffic.
package graph
