// A synthetic mesh for performance checks: `services` services in layers,
// each with 1–3 versions, every node calling 2–3 nodes of the next layer.
// Deterministic (seeded), so runs compare. Answered as the API's Graph.
import { apiGraph } from './apigraph.mjs';

// With edgeCount, edges are added (or the last ones dropped) until there are
// exactly that many, for a graph of a given size (issue 15: 5,000 nodes and
// 20,000 edges).
export function syntheticGraph(nodeCount = 1000, seed = 1, edgesPerNode = 2.5, edgeCount = 0) {
  let s = seed >>> 0 || 1;
  const rand = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  const nodes = [];
  const layers = 8;
  let svc = 0;
  while (nodes.length < nodeCount) {
    const ns = `ns-${svc % 10}`;
    const service = `svc-${svc}`;
    const versions = 1 + Math.floor(rand() * 3);
    for (let v = 1; v <= versions && nodes.length < nodeCount; v++) {
      nodes.push({ id: `${ns}/${service}/v${v}`, namespace: ns, service, version: `v${v}`, workload: `${service}-v${v}`, layer: svc % layers });
    }
    svc++;
  }
  const byLayer = Array.from({ length: layers }, () => []);
  for (const n of nodes) byLayer[n.layer].push(n);
  const edges = [];
  const seen = new Set();
  const addEdge = (n, t) => {
    if (seen.has(`${n.id}>${t.id}`)) return;
    seen.add(`${n.id}>${t.id}`);
    const rps = Math.round(rand() * 200 * 10) / 10;
    const r = rand();
    const errorRate = r < 0.85 ? 0 : r < 0.95 ? 0.02 : 0.12;
    const requests = Math.round(rps * 300);
    const errors = Math.round(requests * errorRate);
    edges.push({
      source: n.id, target: t.id, requests, rps, errorRate,
      p50Ms: 5 + rand() * 20, p90Ms: 30 + rand() * 50, p99Ms: 80 + rand() * 300,
      codes: { 200: requests - errors, ...(errors ? { 503: errors } : {}) }, mtls: 1,
    });
  };
  for (const n of nodes) {
    const next = byLayer[n.layer + 1];
    if (!next || !next.length) continue;
    // 2–3 callees per node by default (2.5 on average); more for the scale test.
    const k = Math.floor(edgesPerNode - 0.5) + Math.floor(rand() * 2);
    for (let i = 0; i < k; i++) addEdge(n, next[Math.floor(rand() * next.length)]);
  }
  const callers = nodes.filter((n) => byLayer[n.layer + 1]?.length);
  for (let i = 0; edgeCount > edges.length && callers.length && i < edgeCount * 10; i++) {
    const n = callers[i % callers.length];
    const next = byLayer[n.layer + 1];
    addEdge(n, next[Math.floor(rand() * next.length)]);
  }
  if (edgeCount > 0) edges.length = Math.min(edges.length, edgeCount);
  for (const n of nodes) delete n.layer;
  return apiGraph({ nodes, edges }, { end: '2026-01-01T00:00:00Z' });
}
