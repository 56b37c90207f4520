#!/usr/bin/env node
// A fixture meshlens for developing and testing the UI without the Go
// backend: it serves the built UI (ui/dist) with the same SPA fallback as the
// Go handler, and answers /api/v1 with a moving bookinfo mesh (productpage →
// details, reviews v1/v2/v3 → ratings), config with validation errors, and a
// small rollout engine whose steps advance every few seconds. A candidate
// named in FIXTURE_BAD (default v3) returns errors, so a rollout to it rolls
// back with a reason.
//
//   node e2e/fixture-server.mjs [--port 8089] [--nodes 1000]
//
// Env: FIXTURE_TOKEN (operator token, default "operator-token"),
// FIXTURE_STEP_MS (max step duration, default 2500), FIXTURE_BAD (failing versions, comma list),
// FIXTURE_DELAY_MS (added latency per API call, to check that the UI never blocks).

import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { apiGraph, healthOf, impact, shortestPath } from './apigraph.mjs';
import { syntheticGraph } from './synthetic.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
// MESHLENS_UI_DIST serves another build (e.g. to compare two versions).
const DIST = normalize(process.env.MESHLENS_UI_DIST ?? join(here, '..', '..', 'dist'));

export function startFixture({ port = 0, nodes = 0, edgesPerNode = 2.5, edges = 0, truncated = false, empty = false, token = process.env.FIXTURE_TOKEN ?? 'operator-token', stepMs = Number(process.env.FIXTURE_STEP_MS ?? 2500), bad = (process.env.FIXTURE_BAD ?? 'v3').split(','), delayMs = Number(process.env.FIXTURE_DELAY_MS ?? 0) } = {}) {
  const mesh = new Mesh({ bad, stepMs });
  // A synthetic graph (for scale; marked as cut by the server's caps with
  // truncated), an empty one (a mesh without traffic), or the moving bookinfo mesh.
  let synthetic = nodes > 0 ? syntheticGraph(nodes, 1, edgesPerNode, edges) : empty ? syntheticGraph(0) : null;
  if (synthetic && truncated) synthetic = { ...synthetic, truncated: true };
  const server = createServer(async (req, res) => {
    try {
      const url = new URL(req.url, 'http://x');
      if (url.pathname.startsWith('/api/')) {
        if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
        const body = req.method === 'POST' || req.method === 'PUT' ? await readBody(req) : '';
        const out = api(mesh, synthetic, token, req, url, body);
        res.writeHead(out.status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
        res.end(JSON.stringify(out.body));
        return;
      }
      await serveStatic(url.pathname, res);
    } catch (e) {
      res.writeHead(500, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: String(e?.stack ?? e) }));
    }
  });
  const tick = setInterval(() => mesh.tick(), 250);
  return new Promise((resolve) => {
    server.listen(port, '127.0.0.1', () => {
      const addr = server.address();
      resolve({
        url: `http://127.0.0.1:${addr.port}`,
        token,
        mesh,
        // A test changes the synthetic graph the next requests get (a refresh's new numbers).
        updateGraph: (f) => {
          synthetic = f(synthetic);
        },
        close: () => new Promise((r) => {
          clearInterval(tick);
          server.closeAllConnections?.();
          server.close(() => r());
        }),
      });
    });
  });
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let s = '';
    req.on('data', (c) => {
      s += c;
      if (s.length > 1 << 20) reject(new Error('body too large'));
    });
    req.on('end', () => resolve(s));
    req.on('error', reject);
  });
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png', '.json': 'application/json' };

async function serveStatic(pathname, res) {
  const p = normalize(join(DIST, decodeURIComponent(pathname)));
  if (p.startsWith(DIST) && extname(p)) {
    try {
      const data = await readFile(p);
      res.writeHead(200, { 'Content-Type': TYPES[extname(p)] ?? 'application/octet-stream', 'Cache-Control': p.includes('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache' });
      res.end(data);
      return;
    } catch {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
      return;
    }
  }
  try {
    const data = await readFile(join(DIST, 'index.html'));
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-cache' });
    res.end(data);
  } catch {
    res.writeHead(503, { 'Content-Type': 'text/plain' });
    res.end('UI not built: run npm run build in ui/web');
  }
}

// ---------------------------------------------------------------- the mesh

const NS = 'default';
const SERVICES = {
  productpage: ['v1'],
  details: ['v1'],
  reviews: ['v1', 'v2', 'v3'],
  ratings: ['v1'],
};
// Per-version behaviour: base latency and error rate.
const PROFILE = {
  'productpage/v1': { p50: 18, err: 0.002 },
  'details/v1': { p50: 3, err: 0 },
  'reviews/v1': { p50: 6, err: 0 },
  'reviews/v2': { p50: 9, err: 0.001 },
  'reviews/v3': { p50: 11, err: 0.004 },
  'ratings/v1': { p50: 2, err: 0 },
};

class Mesh {
  constructor({ bad, stepMs }) {
    this.bad = new Set(bad.filter(Boolean));
    this.stepMs = stepMs;
    this.rps = 24;
    this.config = new Map();
    this.rollouts = new Map();
    this.configVersion = 1;
    for (const s of Object.keys(SERVICES)) {
      this.put({ apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: s, namespace: NS }, spec: { host: s, subsets: SERVICES[s].map((v) => ({ name: v, labels: { version: v } })) } });
    }
    this.put({
      apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'reviews', namespace: NS },
      spec: { hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews', subset: 'v1' }, weight: 50 }, { destination: { host: 'reviews', subset: 'v2' }, weight: 25 }, { destination: { host: 'reviews', subset: 'v3' }, weight: 25 }] }] },
    });
  }

  put(o) {
    this.config.set(`${o.kind}/${o.metadata.namespace ?? NS}/${o.metadata.name}`, o);
    this.configVersion++;
  }

  errFor(svc, v) {
    return this.bad.has(v) && svc === 'reviews' ? 0.3 : PROFILE[`${svc}/${v}`]?.err ?? 0;
  }

  /** weights of a service's versions, in percent, from a rollout or the VirtualService */
  weights(svc) {
    const vs = SERVICES[svc];
    for (const r of this.rollouts.values()) {
      if (r.service === svc && !['succeeded'].includes(r.state)) return Object.fromEntries(vs.map((v) => [v, v === r.stable ? r.weights.stable : v === r.candidate ? r.weights.candidate : 0]));
      if (r.service === svc && r.state === 'succeeded') return Object.fromEntries(vs.map((v) => [v, v === r.candidate ? 100 : 0]));
    }
    const vsObj = this.config.get(`VirtualService/${NS}/${svc}`);
    const route = vsObj?.spec?.http?.[0]?.route;
    if (route?.length) {
      const w = Object.fromEntries(vs.map((v) => [v, 0]));
      for (const r of route) w[r.destination?.subset ?? vs[0]] = r.weight ?? (route.length === 1 ? 100 : 0);
      return w;
    }
    return Object.fromEntries(vs.map((v) => [v, 100 / vs.length]));
  }

  /** edges at time t (ms): versioned */
  edges(t, windowSec) {
    const wave = 1 + 0.15 * Math.sin(t / 60000) + 0.05 * Math.sin(t / 7000);
    const base = this.rps * wave;
    const out = [];
    const add = (src, dstSvc, dstV, rps, mtls = 1) => {
      if (rps <= 0.001) return;
      const p = PROFILE[`${dstSvc}/${dstV}`] ?? { p50: 5 };
      const er = this.errFor(dstSvc, dstV) * (1 + 0.2 * Math.sin(t / 5000));
      const slow = this.bad.has(dstV) && dstSvc === 'reviews' ? 6 : 1;
      const requests = Math.round(rps * windowSec);
      const errors = Math.round(requests * er);
      const codes = { 200: requests - errors };
      if (errors) codes[500] = errors;
      out.push({
        source: src, target: `${NS}/${dstSvc}/${dstV}`, requests, rps: round(rps, 2), errorRate: requests ? errors / requests : 0,
        p50Ms: round(p.p50 * slow * wave, 1), p90Ms: round(p.p50 * 2.2 * slow * wave, 1), p99Ms: round(p.p50 * 4.5 * slow * wave, 1), codes, mtls,
      });
    };
    add('unknown', 'productpage', 'v1', base, 0);
    add(`${NS}/productpage/v1`, 'details', 'v1', base);
    const w = this.weights('reviews');
    for (const v of SERVICES.reviews) add(`${NS}/productpage/v1`, 'reviews', v, (base * w[v]) / 100);
    for (const v of ['v2', 'v3']) add(`${NS}/reviews/${v}`, 'ratings', 'v1', (base * w[v]) / 100);
    return out;
  }

  graph({ view, end, window, namespace }) {
    const t = end ? Date.parse(end) : Date.now();
    const windowSec = parseDur(window) || 300;
    let edges = this.edges(t, windowSec);
    const nodeOf = (id) => {
      if (id === 'unknown') return { id, namespace: '', service: 'unknown', version: '', workload: '', unknown: true };
      const [ns, service, version] = id.split('/');
      return { id, namespace: ns, service, version, workload: `${service}-${version}` };
    };
    const rekey = (n) => (view === 'service' ? (n.service === 'unknown' ? n : { ...n, id: `${n.namespace}/${n.service}`, version: '', workload: '' }) : view === 'workload' ? (n.service === 'unknown' ? n : { ...n, id: `${n.namespace}/${n.workload}` }) : n);
    const nodes = new Map();
    const merged = new Map();
    for (const e of edges) {
      const s = rekey(nodeOf(e.source));
      const d = rekey(nodeOf(e.target));
      nodes.set(s.id, s);
      nodes.set(d.id, d);
      const k = `${s.id}->${d.id}`;
      const m = merged.get(k);
      if (!m) merged.set(k, { ...e, source: s.id, target: d.id, codes: { ...e.codes } });
      else {
        const req = m.requests + e.requests;
        const errs = m.requests * m.errorRate + e.requests * e.errorRate;
        m.p50Ms = round((m.p50Ms * m.requests + e.p50Ms * e.requests) / req, 1);
        m.p90Ms = round(Math.max(m.p90Ms, e.p90Ms), 1);
        m.p99Ms = round(Math.max(m.p99Ms, e.p99Ms), 1);
        m.requests = req;
        m.rps = round(m.rps + e.rps, 2);
        m.errorRate = req ? errs / req : 0;
        for (const [c, n] of Object.entries(e.codes)) m.codes[c] = (m.codes[c] ?? 0) + n;
      }
    }
    edges = [...merged.values()];
    let ns = [...nodes.values()];
    if (namespace) {
      ns = ns.filter((n) => n.namespace === namespace || edges.some((e) => (e.source === n.id || e.target === n.id) && nodes.get(e.source === n.id ? e.target : e.source)?.namespace === namespace));
      const keep = new Set(ns.map((n) => n.id));
      edges = edges.filter((e) => keep.has(e.source) && keep.has(e.target));
    }
    return apiGraph({ nodes: ns, edges }, { view, window: window ?? '5m', windowSeconds: windowSec, source: end ? 'clickhouse' : 'live', end: new Date(t).toISOString() });
  }

  services() {
    const g = this.graph({ view: 'service', window: '5m' });
    return Object.entries(SERVICES).map(([name, versions]) => {
      const inb = g.edges.filter((e) => e.target === `${NS}/${name}`);
      const rps = inb.reduce((s, e) => s + e.rps, 0);
      const err = inb.reduce((s, e) => s + e.rps * e.errorRate, 0);
      const requests = inb.reduce((s, e) => s + e.requests, 0);
      return { namespace: NS, name, versions, requests, rps: round(rps, 2), errorRate: rps ? err / rps : 0, p99Ms: Math.max(0, ...inb.map((e) => e.p99Ms)), health: healthOf(requests, rps ? err / rps : 0) };
    });
  }

  serviceDetail(name, range) {
    const versions = SERVICES[name];
    if (!versions) return null;
    const sec = parseDur(range) || 3600;
    const n = 60;
    const now = Date.now();
    const step = (sec * 1000) / n;
    return {
      namespace: NS, name, step: `${Math.round(step / 1000)}s`,
      versions: versions.map((v) => ({
        version: v,
        points: Array.from({ length: n }, (_, i) => {
          const t = now - (n - 1 - i) * step;
          const e = this.edges(t, step / 1000).find((x) => x.target === `${NS}/${name}/${v}`);
          return { t: new Date(t).toISOString(), rps: e?.rps ?? 0, errorRate: e?.errorRate ?? 0, p50Ms: e?.p50Ms ?? 0, p90Ms: e?.p90Ms ?? 0, p99Ms: e?.p99Ms ?? 0 };
        }),
      })),
    };
  }

  // ------------------------------------------------------------- rollouts

  tick() {
    const now = Date.now();
    for (const r of this.rollouts.values()) {
      if (r.state === 'rolling back' && now - r.updated > 800) {
        r.state = 'rolled back';
        r.updated = now;
        r.history.push({ at: new Date(now).toISOString(), type: 'push', step: r.step, weights: { ...r.weights, matched: false }, configVersion: ++this.configVersion });
        r.history.push({ at: new Date(now).toISOString(), type: 'transition', event: 'pushed', from: 'rolling back', to: 'rolled back', source: 'engine', step: r.step });
      }
      if (r.state === 'pending' && now - r.updated > 500) this.enterStep(r, 0, now);
      if (r.state !== 'progressing' || now - r.stepStarted < Math.min(r.stepMs, this.stepMs)) continue;
      // Judge the step on the candidate's numbers.
      const cand = this.errFor(r.service, r.candidate);
      const stab = this.errFor(r.service, r.stable);
      const secs = (now - r.stepStarted) / 1000;
      const candReq = Math.max(r.minRequests, Math.round((this.rps * r.weights.candidate * secs) / 100 * 10));
      const stabReq = Math.round((this.rps * r.weights.stable * secs) / 100 * 10);
      const p99c = (PROFILE[`${r.service}/${r.candidate}`]?.p50 ?? 5) * 4.5 * (this.bad.has(r.candidate) ? 6 : 1);
      const p99s = (PROFILE[`${r.service}/${r.stable}`]?.p50 ?? 5) * 4.5;
      const vn = (version, requests, er, p99) => ({ version, requests, errors: Math.round(requests * er), errorRate: round(er, 4), p50Ms: round(p99 / 4.5, 1), p99Ms: round(p99, 1), samples: Math.min(requests, 1000), medianMs: round(p99 / 4.5, 1) });
      const verdict = (result, reasons) => ({ at: new Date(now).toISOString(), step: r.step, result, reasons, window: '30s', candidate: vn(r.candidate, candReq, cand, p99c), stable: vn(r.stable, stabReq, stab, p99s),
        errorRateP: result === 'fail' ? 2e-6 : 0.9, p99P: 1, errorZ: result === 'fail' ? 6.1 : 0.2, errorP: result === 'fail' ? 2e-4 : 0.4, errorIncreaseLow: result === 'fail' ? 0.2 : -0.01, latencyU: 0, latencyZ: 0, latencyP: 0.5, latencyEffect: 0.5 });
      if (cand > r.maxErrorRate) {
        const reason = `candidate ${r.candidate} error rate ${(cand * 100).toFixed(1)}% > max ${(r.maxErrorRate * 100).toFixed(1)}% at step ${r.step + 1} (${candReq} requests; stable ${(stab * 100).toFixed(1)}%, proportion test p=0.0002)`;
        r.history.push({ at: new Date(now).toISOString(), type: 'verdict', step: r.step, verdict: verdict('fail', [reason]) });
        r.history.push({ at: new Date(now).toISOString(), type: 'transition', event: 'fail', from: 'progressing', to: 'rolling back', source: 'judge', step: r.step });
        r.state = 'rolling back';
        r.reason = reason;
        r.weights = { stable: 100, candidate: 0 };
        r.updated = now;
        continue;
      }
      r.history.push({ at: new Date(now).toISOString(), type: 'verdict', step: r.step, verdict: verdict('pass', [`error rate ${(cand * 100).toFixed(2)}% ≤ ${(r.maxErrorRate * 100).toFixed(1)}%`, `p99 ${Math.round(p99c)}ms ≤ ${r.maxP99Ms}ms`]) });
      if (r.step + 1 >= r.steps.length) {
        r.state = 'succeeded';
        r.weights = { stable: 0, candidate: 100 };
        r.updated = now;
        r.reason = `all ${r.steps.length} steps passed`;
        r.history.push({ at: new Date(now).toISOString(), type: 'transition', event: 'complete', from: 'progressing', to: 'succeeded', source: 'judge', step: r.step, message: `${r.candidate} takes all traffic` });
      } else this.enterStep(r, r.step + 1, now);
    }
  }

  enterStep(r, i, now) {
    r.state = 'progressing';
    r.step = i;
    r.stepStarted = now;
    r.weights = { stable: 100 - r.steps[i], candidate: r.steps[i] };
    r.updated = now;
    r.history.push({ at: new Date(now).toISOString(), type: 'push', step: i, weights: { ...r.weights, matched: false }, configVersion: ++this.configVersion, message: `step ${i + 1}: ${r.candidate} at ${r.steps[i]}%` });
  }

  startRollout(o) {
    const s = o.spec ?? {};
    const canary = s.strategy?.canary ?? s.canary ?? {};
    const steps = (canary.steps ?? [10, 50, 100]).map((x) => (typeof x === 'object' ? x.weight : x));
    const r = {
      namespace: o.metadata.namespace ?? NS, name: o.metadata.name, service: s.service, strategy: 'canary', stable: s.stable, candidate: s.candidate,
      state: 'pending', step: 0, steps, weights: { stable: 100, candidate: 0 }, reason: '', started: Date.now(), updated: Date.now(), stepStarted: 0,
      stepMs: parseDur(canary.minDuration ?? canary.stepDuration ?? '30s') * 1000, minRequests: canary.minRequests ?? 50,
      maxErrorRate: s.analysis?.maxErrorRate ?? 0.05, maxP99Ms: s.analysis?.maxP99Ms ?? 500, history: [],
    };
    this.rollouts.set(`${r.namespace}/${r.name}`, r);
  }

  rolloutJSON(r) {
    // The rollout engine's Status (rollout/engine.go).
    return {
      namespace: r.namespace, name: r.name, service: r.service, strategy: r.strategy, stable: r.stable, candidate: r.candidate, stableVersion: r.stable, candidateVersion: r.candidate,
      state: r.state, step: r.step, steps: r.steps, weights: { ...r.weights, matched: false }, provider: 'meshlens', virtualService: r.service, startedAt: new Date(r.started).toISOString(),
      stepStartedAt: new Date(r.stepStarted || r.started).toISOString(), updatedAt: new Date(r.updated).toISOString(),
      message: r.reason, consecutiveFailures: 0, specHash: 'fixture', history: [...r.history],
    };
  }

  action(r, a) {
    const now = Date.now();
    const from = r.state;
    const push = (event) => r.history.push({ at: new Date(now).toISOString(), type: 'transition', event, from, to: r.state, source: 'operator', step: r.step });
    if (['succeeded', 'rolled back', 'failed'].includes(r.state)) return `rollout ${r.name} is ${r.state}; nothing to ${a}`;
    if (a === 'pause') {
      r.state = 'paused';
      push('pause');
    } else if (a === 'resume') {
      r.state = 'progressing';
      r.stepStarted = now;
      push('resume');
    } else if (a === 'promote') {
      r.state = 'succeeded';
      r.weights = { stable: 0, candidate: 100 };
      r.step = r.steps.length - 1;
      push('promote');
    } else if (a === 'abort') {
      r.state = 'rolling back';
      r.reason = 'aborted by operator';
      r.weights = { stable: 100, candidate: 0 };
      push('abort');
    }
    r.updated = now;
    return '';
  }

  alerts() {
    const out = [];
    for (const v of this.bad) {
      const w = this.weights('reviews')[v] ?? 0;
      // alerting.ActiveAlert
      if (w > 0) out.push({ source: 'rule', rule: 'CandidateErrorRate', state: 'firing', labels: { alertname: 'CandidateErrorRate', severity: 'critical', service: 'reviews', version: v, namespace: NS }, annotations: { summary: `reviews ${v} error rate above 5% for 30s` }, startsAt: new Date(Date.now() - 95000).toISOString(), value: 0.3, fingerprint: `f-${v}` });
    }
    return out;
  }
}

// -------------------------------------------------------------- validation

// validate returns what the server refuses (errors) and, as meshlens does like Istio, the references to
// subsets or services nothing defines as analysis warnings that do not refuse the batch.
function validate(docs, mesh) {
  const errors = [];
  const warnings = [];
  docs.forEach((o, i) => {
    const obj = o?.kind && o?.metadata?.name ? `${o.kind}/${o.metadata.namespace ?? NS}/${o.metadata.name}` : `document ${i + 1}`;
    if (!o || typeof o !== 'object') return errors.push({ object: obj, field: '', message: 'document is not a mapping' });
    if (!o.apiVersion) errors.push({ object: obj, field: 'apiVersion', message: 'required' });
    if (!o.kind) errors.push({ object: obj, field: 'kind', message: 'required' });
    if (!o.metadata?.name) errors.push({ object: obj, field: 'metadata.name', message: 'required' });
    const known = ['VirtualService', 'DestinationRule', 'ServiceEntry', 'WorkloadEntry', 'PeerAuthentication', 'AuthorizationPolicy', 'Rollout', 'AlertRule'];
    if (o.kind && !known.includes(o.kind)) errors.push({ object: obj, field: 'kind', message: `unknown kind ${o.kind}; known: ${known.join(', ')}` });
    if (o.kind === 'VirtualService') {
      (o.spec?.http ?? []).forEach((h, hi) => {
        const route = h.route ?? [];
        if (route.length > 1) {
          const sum = route.reduce((s, r) => s + (r.weight ?? 0), 0);
          if (sum !== 100) errors.push({ object: obj, field: `http[${hi}].route[${route.length - 1}].weight`, message: `route weights sum to ${sum}, must be 100` });
        }
        route.forEach((r, ri) => {
          const host = r.destination?.host;
          const sub = r.destination?.subset;
          if (!host) errors.push({ object: obj, field: `http[${hi}].route[${ri}].destination.host`, message: 'required' });
          if (sub && SERVICES[host] && !SERVICES[host].includes(sub)) warnings.push({ code: 'IST0101', object: obj, field: `http[${hi}].route[${ri}].destination.subset`, message: `Referenced host+subset in destinationrule not found: "${host}+${sub}" (defined: ${SERVICES[host].join(', ')})` });
        });
      });
    }
    if (o.kind === 'Rollout') {
      if (o.apiVersion !== 'meshlens.io/v1alpha1') errors.push({ object: obj, field: 'apiVersion', message: 'must be meshlens.io/v1alpha1' });
      const s = o.spec ?? {};
      if (!s.service) errors.push({ object: obj, field: 'spec.service', message: 'required' });
      else if (!SERVICES[s.service]) warnings.push({ code: 'IST0101', object: obj, field: 'service', message: `Referenced destinationrule not found: "${s.service}"` });
      else {
        for (const f of ['stable', 'candidate']) if (s[f] && !SERVICES[s.service].includes(s[f])) warnings.push({ code: 'IST0101', object: obj, field: f, message: `Referenced host+subset in destinationrule not found: "${s.service}+${s[f]}"` });
        if (s.stable && s.stable === s.candidate) errors.push({ object: obj, field: 'spec.candidate', message: 'must differ from stable' });
      }
      const steps = s.strategy?.canary?.steps ?? [];
      steps.forEach((w, k) => {
        if (!(w > 0 && w <= 100) || (k > 0 && w <= steps[k - 1])) errors.push({ object: obj, field: `spec.strategy.canary.steps[${k}]`, message: 'steps must increase, each in 1..100' });
      });
      const key = `${o.metadata?.namespace ?? NS}/${o.metadata?.name}`;
      const cur = mesh.rollouts.get(key);
      if (cur && ['pending', 'progressing', 'paused', 'promoting', 'rolling back'].includes(cur.state)) errors.push({ object: obj, field: 'metadata.name', message: `rollout ${key} is ${cur.state}; abort it first` });
    }
  });
  return { errors, warnings };
}

// ---------------------------------------------------------------- routing

function graphOf(mesh, synthetic, q) {
  if (synthetic) return synthetic;
  return mesh.graph({ view: q.get('view') ?? 'service', end: q.get('end'), window: q.get('window'), namespace: q.get('namespace') });
}

function api(mesh, synthetic, token, req, url, body) {
  const p = url.pathname.replace(/\/+$/, '');
  const q = url.searchParams;
  const mutating = req.method !== 'GET' && req.method !== 'HEAD';
  if (mutating) {
    const auth = req.headers.authorization ?? '';
    if (!auth.startsWith('Bearer ')) return { status: 401, body: { error: 'missing bearer token: this call needs an operator token' } };
    if (auth.slice(7) !== token) return { status: 403, body: { error: 'token is not an operator token' } };
  }
  let m;
  if (p === '/api/v1/graph' && req.method === 'GET') {
    const view = q.get('view') ?? 'service';
    if (!['service', 'version', 'workload'].includes(view)) return { status: 400, body: { error: 'view: must be service, version or workload' } };
    return { status: 200, body: graphOf(mesh, synthetic, q) };
  }
  if ((m = /^\/api\/v1\/graph\/nodes\/([^/]+)\/impact$/.exec(p))) {
    const id = decodeURIComponent(m[1]);
    const out = impact(graphOf(mesh, synthetic, q), id);
    return out ? { status: 200, body: out } : { status: 404, body: { error: `no node ${JSON.stringify(id)}` } };
  }
  if (p === '/api/v1/graph/paths') {
    const from = q.get('from') ?? '', to = q.get('to') ?? '';
    if (!from || !to) return { status: 400, body: { error: 'from and to are required', parameter: from ? 'to' : 'from' } };
    const path = shortestPath(graphOf(mesh, synthetic, q), from, to);
    return path ? { status: 200, body: { from, to, path } } : { status: 404, body: { error: `no node ${JSON.stringify(from)} or ${JSON.stringify(to)}` } };
  }
  if (p === '/api/v1/services') return { status: 200, body: { source: 'live', window: '5m', services: mesh.services() } };
  if ((m = /^\/api\/v1\/services\/([^/]+)\/([^/]+)$/.exec(p))) {
    const d = mesh.serviceDetail(decodeURIComponent(m[2]), q.get('range') ?? '1h');
    return d ? { status: 200, body: d } : { status: 404, body: { error: `service ${m[1]}/${m[2]} not found` } };
  }
  if (p === '/api/v1/logs') return { status: 200, body: logs(mesh, q) };
  if (p === '/api/v1/traces') return { status: 200, body: { traces: traceList(q.get('service') ?? '', Number(q.get('minDurationMs') ?? 0)) } };
  if ((m = /^\/api\/v1\/traces\/([^/]+)$/.exec(p))) return { status: 200, body: trace(m[1]) };
  if (p === '/api/v1/config' && req.method === 'GET') {
    const kind = q.get('kind');
    return { status: 200, body: { version: mesh.configVersion, items: [...mesh.config.values()].filter((o) => !kind || o.kind === kind) } };
  }
  if (p === '/api/v1/config' && req.method === 'POST') {
    let docs;
    try {
      docs = parseAllDocuments(body).map((d) => {
        if (d.errors.length) throw d.errors[0];
        return d.toJS();
      }).filter((d) => d != null);
    } catch (e) {
      return { status: 400, body: { errors: [{ object: 'document 1', field: '', message: `YAML: ${e.message}` }] } };
    }
    if (!docs.length) return { status: 400, body: { errors: [{ object: 'document 1', field: '', message: 'no documents' }] } };
    const { errors, warnings } = validate(docs, mesh);
    if (errors.length) return { status: 400, body: { errors, errorCount: errors.length } };
    const applied = docs.map((o) => ({ kind: o.kind, namespace: o.metadata.namespace ?? NS, name: o.metadata.name }));
    if (q.get('dryRun') === 'true') return { status: 200, body: { applied, version: mesh.configVersion, dryRun: true, warnings, warningCount: warnings.length } };
    for (const o of docs) {
      o.metadata.namespace ??= NS;
      mesh.put(o);
      if (o.kind === 'Rollout') mesh.startRollout(o);
    }
    return { status: 200, body: { applied, version: mesh.configVersion, warnings, warningCount: warnings.length } };
  }
  if (p === '/api/v1/analysis') return { status: 200, body: { version: mesh.configVersion, warnings: validate([...mesh.config.values()], mesh).warnings } };
  if ((m = /^\/api\/v1\/config\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(p)) && req.method === 'DELETE') {
    const key = `${m[1]}/${m[2]}/${m[3]}`;
    if (!mesh.config.delete(key)) return { status: 404, body: { error: `${key} not found` } };
    mesh.configVersion++;
    return { status: 200, body: { version: mesh.configVersion, deleted: { kind: m[1], namespace: m[2], name: m[3] } } };
  }
  if (p === '/api/v1/proxies') {
    const v = String(mesh.configVersion);
    return {
      status: 200,
      body: {
        proxies: Object.entries(SERVICES).flatMap(([s, vs]) =>
          vs.map((ver) => {
            const p = { id: `sidecar~10.0.0.${vs.indexOf(ver) + 2}~${s}-${ver}-7d9f.${NS}~${NS}.svc.cluster.local`, cluster: s, flavour: 'envoy', connectedAt: new Date(Date.now() - 4000).toISOString(), version: v, inSync: s !== 'ratings', lastAckedVersion: s === 'ratings' ? String(Number(v) - 1) : v };
            if (s === 'ratings') p.lastNack = { version: v, typeUrl: 'type.googleapis.com/envoy.config.cluster.v3.Cluster', message: 'cluster outbound|9080|v2|ratings: unknown subset', at: new Date(Date.now() - 3000).toISOString() };
            return p;
          }),
        ),
      },
    };
  }
  if (p === '/api/v1/rollouts' && req.method === 'GET') return { status: 200, body: { items: [...mesh.rollouts.values()].map((r) => ({ ...mesh.rolloutJSON(r), history: null })).reverse() } };
  if ((m = /^\/api\/v1\/rollouts\/([^/]+)\/([^/]+)$/.exec(p))) {
    const r = mesh.rollouts.get(`${m[1]}/${m[2]}`);
    return r ? { status: 200, body: mesh.rolloutJSON(r) } : { status: 404, body: { error: `rollout ${m[1]}/${m[2]} not found` } };
  }
  if ((m = /^\/api\/v1\/rollouts\/([^/]+)\/([^/]+)\/(pause|resume|promote|abort)$/.exec(p)) && req.method === 'POST') {
    const r = mesh.rollouts.get(`${m[1]}/${m[2]}`);
    if (!r) return { status: 404, body: { error: `rollout ${m[1]}/${m[2]} not found` } };
    const from = r.state;
    const err = mesh.action(r, m[3]);
    return err ? { status: 409, body: { error: err } } : { status: 200, body: { rollout: `${m[1]}/${m[2]}`, from, to: r.state, changed: from !== r.state, message: '' } };
  }
  if (p === '/api/v1/alerts') return { status: 200, body: { alerts: mesh.alerts() } };
  return { status: 404, body: { error: `no route ${req.method} ${p}` } };
}

// ------------------------------------------------------------ logs, traces

const PATHS = { productpage: ['/productpage', '/api/v1/products', '/static/bootstrap.css'], details: ['/details/0'], reviews: ['/reviews/0'], ratings: ['/ratings/0'] };
const CALLER = { productpage: 'unknown', details: 'productpage', reviews: 'productpage', ratings: 'reviews' };

function hash(n) {
  n = (n ^ 61) ^ (n >>> 16);
  n = Math.imul(n, 9) ^ (n >>> 4);
  n = Math.imul(n, 0x27d4eb2d) ^ (n >>> 15);
  return (n >>> 0) / 2 ** 32;
}

function logs(mesh, q) {
  const service = q.get('service') || 'productpage';
  const limit = Math.min(Number(q.get('limit') ?? 50), 500);
  const before = Number(q.get('cursor') || 0) || Math.floor(Date.now() / 250);
  const versions = SERVICES[service] ?? ['v1'];
  const records = [];
  let slot = before;
  while (records.length < limit && slot > before - 20000) {
    slot--;
    const h = hash(slot);
    const v = versions[Math.floor(hash(slot * 7) * versions.length)];
    const bad = mesh.errFor(service, v);
    const code = h < bad ? 500 : hash(slot * 13) < 0.01 ? 404 : 200;
    const r = {
      time: new Date(slot * 250).toISOString(), source: { service: CALLER[service] === 'unknown' ? '' : CALLER[service], version: CALLER[service] === 'reviews' ? 'v2' : 'v1' },
      destination: { service, version: v }, method: 'GET', path: PATHS[service]?.[Math.floor(hash(slot * 3) * (PATHS[service]?.length ?? 1))] ?? '/', code,
      durationMs: round((PROFILE[`${service}/${v}`]?.p50 ?? 5) * (0.5 + hash(slot * 5) * 2), 1), flags: code === 500 ? 'UF' : '-', traceId: traceIdFor(slot),
    };
    if (q.get('version') && r.destination.version !== q.get('version')) continue;
    if (q.get('code') && String(r.code) !== q.get('code')) continue;
    if (q.get('path') && !r.path.includes(q.get('path'))) continue;
    records.push(r);
  }
  return { entries: records, cursor: String(slot) };
}

function traceIdFor(slot) {
  return (Math.floor(hash(slot) * 2 ** 32).toString(16).padStart(8, '0') + Math.floor(hash(slot * 11) * 2 ** 32).toString(16).padStart(8, '0')).repeat(2);
}

function traceList(service, min) {
  const now = Math.floor(Date.now() / 250);
  const out = [];
  for (let i = 1; out.length < 20 && i < 2000; i++) {
    const slot = now - i * 7;
    const id = traceIdFor(slot);
    const spans = traceSpans(id, slot);
    const root = spans[0];
    if (root.durationMs < min) continue;
    out.push({ traceId: id, start: root.start, durationMs: root.durationMs, spans: spans.length, services: [...new Set(spans.map((x) => x.service))], rootName: root.name, errors: spans.filter((x) => x.status === 'error').length });
  }
  return service ? out : out;
}

// The query API's trace: a span tree with peers (query/openapi.yaml SpanNode).
function trace(id) {
  const spans = traceSpans(id);
  const nodes = new Map(spans.map((x) => [x.spanId, { spanId: x.spanId, parentSpanId: x.parentSpanId, name: x.name, kind: 'server', peer: { namespace: NS, service: x.service, workload: `${x.service}-${x.version}`, version: x.version }, start: x.start, durationMs: x.durationMs, statusCode: x.status, attributes: x.attributes, children: [] }]));
  const roots = [];
  for (const n of nodes.values()) (n.parentSpanId && nodes.get(n.parentSpanId) ? nodes.get(n.parentSpanId).children : roots).push(n);
  return { traceId: id, spans: spans.length, roots };
}

function traceSpans(id, slotHint) {
  const seed = parseInt(id.slice(0, 8), 16) || 1;
  const r = (k) => hash(seed * 31 + k);
  const t0 = slotHint ? slotHint * 250 : Date.now() - 60000 - Math.floor(r(1) * 600000);
  const v = ['v1', 'v2', 'v3'][Math.floor(r(2) * 3)];
  const spans = [];
  let n = 0;
  const span = (parent, service, version, name, start, dur, status = 'ok', attrs = {}) => {
    const s = { spanId: (seed + ++n).toString(16).padStart(16, '0'), parentSpanId: parent?.spanId ?? '', service, version, name, start: new Date(start).toISOString(), durationMs: round(dur, 2), status, attributes: attrs };
    spans.push(s);
    return s;
  };
  const detailsDur = 2 + r(3) * 4;
  const reviewsDur = 6 + r(4) * 10 + (v === 'v3' ? 30 : 0);
  const total = 4 + detailsDur + reviewsDur + r(5) * 6;
  const err = v === 'v3' && r(6) < 0.3;
  const root = span(null, 'productpage', 'v1', 'GET /productpage', t0, total, err ? 'error' : 'ok', { 'http.method': 'GET', 'http.route': '/productpage', 'http.status_code': err ? '500' : '200' });
  const d = span(root, 'details', 'v1', 'GET /details/0', t0 + 2, detailsDur, 'ok', { 'http.status_code': '200', 'net.peer.name': 'details' });
  span(d, 'details', 'v1', 'db.query books', t0 + 2.5, detailsDur * 0.5);
  const rv = span(root, 'reviews', v, 'GET /reviews/0', t0 + 3 + detailsDur, reviewsDur, err ? 'error' : 'ok', { 'http.status_code': err ? '500' : '200', 'upstream_cluster': `outbound|9080|${v}|reviews.default.svc.cluster.local` });
  if (v !== 'v1') span(rv, 'ratings', 'v1', 'GET /ratings/0', t0 + 5 + detailsDur, 2 + r(7) * 3, 'ok', { 'http.status_code': '200' });
  return spans;
}

function parseDur(s) {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(String(s ?? '').trim());
  if (!m) return 0;
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 }[m[2]];
}

function round(v, d) {
  const f = 10 ** d;
  return Math.round(v * f) / f;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === normalize(process.argv[1])) {
  const arg = (k, d) => {
    const i = process.argv.indexOf(k);
    return i >= 0 ? process.argv[i + 1] : d;
  };
  const f = await startFixture({ port: Number(arg('--port', 8089)), nodes: Number(arg('--nodes', 0)) });
  console.log(`fixture meshlens on ${f.url} (operator token: ${f.token})`);
}
