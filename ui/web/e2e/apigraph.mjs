// apiGraph completes a graph of nodes and edges into the API's Graph
// (query/openapi.yaml), as graph/build.go computes it: inbound requests,
// rates and health per node, health per edge, dependency cycles. The fixture
// server, the synthetic benchmark graph and the unit tests use it, so they
// all hand the UI what meshlens would.

/** graph/build.go: degradedErrorRate, failingErrorRate (a unit test compares them). */
export const DEGRADED = 0.01;
export const FAILING = 0.1;

export function healthOf(requests, errorRate) {
  if (!(requests > 0)) return 'idle';
  if (errorRate >= FAILING) return 'failing';
  if (errorRate >= DEGRADED) return 'degraded';
  return 'healthy';
}

export function apiGraph({ nodes, edges }, { view = 'version', window = '5m', windowSeconds = 300, source = 'live', end = new Date().toISOString(), truncated, partial } = {}) {
  const inReq = new Map();
  const inErr = new Map();
  const outEdges = edges.map((e) => {
    const requests = e.requests ?? Math.round((e.rps ?? 0) * windowSeconds);
    const errors = e.errors ?? Math.round(requests * (e.errorRate ?? 0));
    inReq.set(e.target, (inReq.get(e.target) ?? 0) + requests);
    inErr.set(e.target, (inErr.get(e.target) ?? 0) + errors);
    const errorRate = requests ? errors / requests : 0;
    return {
      protocol: 'http', avgMs: e.p50Ms ?? 0, bytesIn: 0, bytesOut: 0, p50Ms: 0, p90Ms: 0, p99Ms: 0, mtls: 0, codes: {},
      ...e,
      requests, errors, errorRate, rps: e.rps ?? requests / windowSeconds,
      health: healthOf(requests, errorRate),
    };
  });
  const outNodes = nodes.map((n) => {
    const requests = inReq.get(n.id) ?? 0;
    const errorRate = requests ? (inErr.get(n.id) ?? 0) / requests : 0;
    const node = { namespace: '', service: n.id, version: '', workload: '', ...n, requests, rps: requests / windowSeconds, errorRate, health: healthOf(requests, errorRate) };
    if (n.id === 'unknown') node.unknown = true;
    return node;
  });
  const cycles = findCycles(outNodes, outEdges);
  const cycleIds = new Set(cycles.flat());
  for (const n of outNodes) if (cycleIds.has(n.id)) n.inCycle = true;
  const g = { view, source, window, windowSeconds, end, generated: new Date().toISOString(), nodes: outNodes, edges: outEdges };
  if (cycles.length) g.cycles = cycles;
  if (truncated) g.truncated = true;
  if (partial) g.partial = true;
  return g;
}

/** findCycles: strongly connected components of more than one node, and self-calls (Tarjan). */
function findCycles(nodes, edges) {
  const succ = new Map(nodes.map((n) => [n.id, []]));
  const self = [];
  for (const e of edges) {
    if (e.source === e.target) self.push([e.source]);
    else succ.get(e.source)?.push(e.target);
  }
  let index = 0;
  const idx = new Map();
  const low = new Map();
  const stack = [];
  const on = new Set();
  const out = [];
  const strong = (v) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of succ.get(v) ?? []) {
      if (!idx.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const c = [];
      let w;
      do {
        w = stack.pop();
        on.delete(w);
        c.push(w);
      } while (w !== v);
      if (c.length > 1) out.push(c.sort());
    }
  };
  for (const n of nodes) if (!idx.has(n.id)) strong(n.id);
  return [...out, ...self].sort((a, b) => a[0].localeCompare(b[0]));
}

/** impact is GET /graph/nodes/{id}/impact on a graph (graph/algo.go): null when the node is not in it. */
export function impact(g, id) {
  if (!g.nodes.some((n) => n.id === id)) return null;
  const walk = (next) => {
    const seen = new Map([[id, 0]]);
    const queue = [id];
    let depth = 0;
    while (queue.length) {
      const v = queue.shift();
      for (const w of next(v)) {
        if (seen.has(w)) continue;
        seen.set(w, seen.get(v) + 1);
        depth = Math.max(depth, seen.get(w));
        queue.push(w);
      }
    }
    seen.delete(id);
    return { ids: [...seen.keys()], depth };
  };
  const succ = (v) => g.edges.filter((e) => e.source === v && e.target !== v).map((e) => e.target);
  const pred = (v) => g.edges.filter((e) => e.target === v && e.source !== v).map((e) => e.source);
  const down = walk(succ);
  const up = walk(pred);
  return {
    node: id, callers: pred(id).sort(), affectedCallers: up.ids, blastRadius: up.ids.length, upstreamDepth: up.depth,
    dependencies: down.ids, dependencyDepth: down.depth, inCycle: g.nodes.find((n) => n.id === id).inCycle === true,
  };
}

/** shortestPath is GET /graph/paths: the node ids from one to the other, [] when none, null when a node is unknown. */
export function shortestPath(g, from, to) {
  const ids = new Set(g.nodes.map((n) => n.id));
  if (!ids.has(from) || !ids.has(to)) return null;
  const prev = new Map([[from, null]]);
  const queue = [from];
  while (queue.length) {
    const v = queue.shift();
    if (v === to) break;
    for (const e of g.edges) {
      if (e.source !== v || prev.has(e.target)) continue;
      prev.set(e.target, v);
      queue.push(e.target);
    }
  }
  if (!prev.has(to)) return [];
  const path = [];
  for (let v = to; v !== null; v = prev.get(v)) path.unshift(v);
  return path;
}
