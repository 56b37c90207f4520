// The one typed client of meshlens' REST API. Every response shape the UI
// relies on is fixed here, and every response goes through a tolerant
// adapter (normalize*) so that an added field, a renamed wrapper or a missing
// optional field never breaks a page. Where the backend's exact JSON was not
// known when this was written (services detail, logs, traces, rollouts,
// proxies, alerts), the adapter accepts the plausible variants; see the notes
// on each.

export const TOKEN_KEY = 'meshlens.token';

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
    public body?: unknown,
  ) {
    super(message);
    this.name = 'ApiError';
  }
  get unauthorized(): boolean {
    return this.status === 401 || this.status === 403;
  }
}

type AuthListener = (err: ApiError) => void;
const authListeners = new Set<AuthListener>();
/** onAuthError registers a listener called when any call gets 401/403. */
export function onAuthError(fn: AuthListener): () => void {
  authListeners.add(fn);
  return () => authListeners.delete(fn);
}

export function getToken(): string {
  try {
    return localStorage.getItem(TOKEN_KEY) ?? '';
  } catch {
    return '';
  }
}
export function setToken(t: string): void {
  try {
    if (t) localStorage.setItem(TOKEN_KEY, t);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    /* private mode: token lives for this page only */
  }
}

export interface RequestOptions {
  method?: string;
  body?: string;
  contentType?: string;
  signal?: AbortSignal;
  /** Milliseconds before the call is aborted; default 15 s. */
  timeoutMs?: number;
}

let baseURL = '';
/** setBaseURL points the client at another origin (tests, dev server). */
export function setBaseURL(u: string): void {
  baseURL = u.replace(/\/$/, '');
}

/** request performs one call with a timeout and the caller's abort signal. */
export async function request<T = unknown>(path: string, opts: RequestOptions = {}): Promise<T> {
  const ctl = new AbortController();
  const timeout = opts.timeoutMs ?? 15000;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ctl.abort();
  }, timeout);
  const onAbort = () => ctl.abort();
  opts.signal?.addEventListener('abort', onAbort);
  const headers: Record<string, string> = { Accept: 'application/json' };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (opts.body !== undefined) headers['Content-Type'] = opts.contentType ?? 'application/json';
  try {
    let res: Response;
    try {
      res = await fetch(baseURL + path, { method: opts.method ?? 'GET', headers, body: opts.body, signal: ctl.signal });
    } catch (e) {
      if (timedOut) throw new ApiError(0, `meshlens did not answer within ${Math.round(timeout / 1000)} s (${path}); it may be overloaded — the page retries automatically`);
      if (opts.signal?.aborted) throw e;
      throw new ApiError(0, `cannot reach meshlens (${path}): is \`meshlens serve\` running?`);
    }
    const text = await res.text();
    let body: unknown = undefined;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
    }
    if (!res.ok) {
      const msg = errorMessage(body) ?? `${res.status} ${res.statusText}`;
      const err = new ApiError(res.status, msg, body);
      if (err.unauthorized) authListeners.forEach((l) => l(err));
      throw err;
    }
    return body as T;
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

function errorMessage(body: unknown): string | undefined {
  if (typeof body === 'string') return body.trim() || undefined;
  if (isObj(body)) {
    if (typeof body.error === 'string') return body.error;
    if (typeof body.message === 'string') return body.message;
    if (Array.isArray(body.errors) && body.errors.length) return `${body.errors.length} validation error(s)`;
  }
  return undefined;
}

// ---------- small coercion helpers ----------

type Obj = Record<string, unknown>;
export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function num(v: unknown, d = 0): number {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) return Number(v);
  return d;
}
function str(v: unknown, d = ''): string {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : d;
}
function pick(o: Obj, ...keys: string[]): unknown {
  for (const k of keys) if (o[k] !== undefined && o[k] !== null) return o[k];
  return undefined;
}
/** list accepts a bare array or an object wrapping one under any of keys. */
function list(v: unknown, ...keys: string[]): unknown[] {
  if (Array.isArray(v)) return v;
  if (isObj(v)) {
    for (const k of [...keys, 'items', 'data', 'results']) if (Array.isArray(v[k])) return v[k] as unknown[];
  }
  return [];
}
/** time parses RFC 3339 strings, unix seconds or unix milliseconds into ms. */
export function toMillis(v: unknown): number {
  if (typeof v === 'number') return v > 1e12 ? v : v * 1000;
  if (typeof v === 'string') {
    const n = Number(v);
    if (v.trim() !== '' && Number.isFinite(n)) return toMillis(n);
    const t = Date.parse(v);
    return Number.isNaN(t) ? 0 : t;
  }
  return 0;
}

// ---------- graph ----------

export type GraphView = 'service' | 'version' | 'workload';
export type GraphSource = 'live' | 'clickhouse' | 'prometheus';

export interface GraphNode {
  id: string;
  namespace: string;
  service: string;
  version: string;
  workload: string;
  /** true for callers meshlens could not identify. */
  unknown: boolean;
}

export interface GraphEdge {
  source: string;
  target: string;
  requests: number;
  rps: number;
  /** fraction 0..1 */
  errorRate: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  codes: Record<string, number>;
  /** share of requests over mTLS, 0..1 (a boolean from the API becomes 0 or 1) */
  mtls: number;
  protocol: string;
  /** requests by gRPC status and by Envoy response flag, when the source has them */
  grpc: Record<string, number>;
  flags: Record<string, number>;
}

export interface Graph {
  nodes: GraphNode[];
  edges: GraphEdge[];
  /** the server dropped the quietest parts to stay within its caps */
  truncated?: boolean;
}

export interface GraphQuery {
  window: string;
  view: GraphView;
  end?: string;
  namespace?: string;
  source?: GraphSource;
}

export function normalizeGraph(raw: unknown): Graph {
  const o = isObj(raw) ? raw : {};
  const nodes: GraphNode[] = [];
  const seen = new Set<string>();
  for (const n of list(o.nodes)) {
    if (!isObj(n)) continue;
    const id = str(n.id);
    if (!id || seen.has(id)) continue;
    seen.add(id);
    const service = str(pick(n, 'service', 'app', 'name'), id);
    nodes.push({
      id,
      namespace: str(n.namespace),
      service,
      version: str(n.version),
      workload: str(n.workload),
      unknown: n.unknown === true || service === 'unknown' || id === 'unknown' || str(n.kind) === 'unknown',
    });
  }
  const edges: GraphEdge[] = [];
  for (const e of list(o.edges)) {
    if (!isObj(e)) continue;
    const source = str(e.source);
    const target = str(e.target);
    if (!source || !target) continue;
    // An edge naming a node the API did not list still deserves a node.
    for (const id of [source, target]) {
      if (!seen.has(id)) {
        seen.add(id);
        nodes.push({ id, namespace: '', service: id, version: '', workload: '', unknown: id === 'unknown' });
      }
    }
    const counts = (x: unknown) => {
      const out: Record<string, number> = {};
      if (isObj(x)) for (const [k, v] of Object.entries(x)) out[k] = num(v);
      return out;
    };
    const codes = counts(e.codes);
    let errorRate = num(pick(e, 'errorRate', 'error_rate'));
    if (errorRate > 1) errorRate = errorRate / 100; // tolerate a percentage
    edges.push({
      source,
      target,
      requests: num(e.requests),
      rps: num(pick(e, 'rps', 'qps')),
      errorRate,
      p50Ms: num(e.p50Ms),
      p90Ms: num(e.p90Ms),
      p99Ms: num(e.p99Ms),
      codes,
      mtls: typeof e.mtls === 'boolean' ? (e.mtls ? 1 : 0) : num(e.mtls),
      protocol: str(e.protocol),
      grpc: counts(e.grpc),
      flags: counts(e.flags),
    });
  }
  return o.truncated === true ? { nodes, edges, truncated: true } : { nodes, edges };
}

export function graphPath(q: GraphQuery): string {
  const p = new URLSearchParams({ window: q.window, view: q.view });
  if (q.end) p.set('end', q.end);
  if (q.namespace) p.set('namespace', q.namespace);
  if (q.source && q.source !== 'live') p.set('source', q.source);
  return `/api/v1/graph?${p}`;
}

export async function fetchGraph(q: GraphQuery, signal?: AbortSignal): Promise<Graph> {
  return normalizeGraph(await request(graphPath(q), { signal, timeoutMs: 20000 }));
}

// ---------- services ----------

export interface ServiceSummary {
  namespace: string;
  name: string;
  versions: string[];
  rps: number;
  errorRate: number;
  p99Ms: number;
}

/** Accepts [{namespace,name,versions,...}] or {services:[...]}; versions may be strings or {version}. */
export function normalizeServices(raw: unknown): ServiceSummary[] {
  return list(raw, 'services')
    .filter(isObj)
    .map((s) => ({
      namespace: str(s.namespace),
      name: str(pick(s, 'name', 'service')),
      versions: list(s.versions).map((v) => (isObj(v) ? str(pick(v, 'version', 'name')) : str(v))).filter(Boolean),
      rps: num(pick(s, 'rps', 'qps')),
      errorRate: num(s.errorRate),
      p99Ms: num(s.p99Ms),
    }))
    .filter((s) => s.name);
}

export async function fetchServices(signal?: AbortSignal): Promise<ServiceSummary[]> {
  return normalizeServices(await request('/api/v1/services', { signal }));
}

export interface VersionSeries {
  version: string;
  /** unix seconds, ascending */
  t: number[];
  qps: number[];
  errorRate: number[];
  p50Ms: number[];
  p90Ms: number[];
  p99Ms: number[];
}

export interface ServiceDetail {
  namespace: string;
  name: string;
  versions: VersionSeries[];
}

/**
 * Accepts per-version series either as points
 * ({versions:[{version, points:[{t|time, qps|rps, errorRate, p50Ms, p90Ms, p99Ms}]}]})
 * or as columns ({versions:[{version, t:[...], qps:[...], ...}]}), and
 * versions as an array or a map keyed by version.
 */
export function normalizeServiceDetail(raw: unknown): ServiceDetail {
  const o = isObj(raw) ? raw : {};
  let vs: unknown[] = list(o.versions, 'series');
  if (!vs.length && isObj(o.versions)) vs = Object.entries(o.versions).map(([k, v]) => ({ version: k, ...(isObj(v) ? v : { points: v }) }));
  if (!vs.length && isObj(o.series)) vs = Object.entries(o.series).map(([k, v]) => ({ version: k, ...(isObj(v) ? v : { points: v }) }));
  const versions: VersionSeries[] = vs.filter(isObj).map((v) => {
    const out: VersionSeries = { version: str(pick(v, 'version', 'name'), 'unknown'), t: [], qps: [], errorRate: [], p50Ms: [], p90Ms: [], p99Ms: [] };
    const pts = list(pick(v, 'points', 'samples'));
    if (pts.length) {
      for (const p of pts) {
        if (!isObj(p)) continue;
        out.t.push(toMillis(pick(p, 't', 'time', 'ts')) / 1000);
        out.qps.push(num(pick(p, 'qps', 'rps')));
        out.errorRate.push(num(p.errorRate));
        out.p50Ms.push(num(p.p50Ms));
        out.p90Ms.push(num(p.p90Ms));
        out.p99Ms.push(num(p.p99Ms));
      }
    } else if (Array.isArray(pick(v, 't', 'time', 'times'))) {
      out.t = (pick(v, 't', 'time', 'times') as unknown[]).map((x) => toMillis(x) / 1000);
      const col = (...k: string[]) => {
        const c = pick(v, ...k);
        return Array.isArray(c) ? c.map((x) => num(x)) : out.t.map(() => 0);
      };
      out.qps = col('qps', 'rps');
      out.errorRate = col('errorRate');
      out.p50Ms = col('p50Ms');
      out.p90Ms = col('p90Ms');
      out.p99Ms = col('p99Ms');
    }
    return out;
  });
  versions.sort((a, b) => a.version.localeCompare(b.version));
  return { namespace: str(o.namespace), name: str(pick(o, 'name', 'service')), versions };
}

export async function fetchService(ns: string, name: string, range: string, signal?: AbortSignal): Promise<ServiceDetail> {
  const raw = await request(`/api/v1/services/${enc(ns)}/${enc(name)}?range=${enc(range)}`, { signal });
  const d = normalizeServiceDetail(raw);
  return { ...d, namespace: d.namespace || ns, name: d.name || name };
}

// ---------- access logs ----------

export interface LogRecord {
  time: number; // ms
  sourceService: string;
  sourceVersion: string;
  service: string;
  version: string;
  method: string;
  path: string;
  code: number;
  durationMs: number;
  flags: string;
  traceId: string;
}

export interface LogPage {
  records: LogRecord[];
  next: string;
}

export interface LogQuery {
  service?: string;
  version?: string;
  code?: string;
  path?: string;
  traceId?: string;
  since?: string;
  until?: string;
  limit?: number;
  cursor?: string;
}

function peer(o: Obj, key: string): Obj {
  const v = o[key];
  return isObj(v) ? v : {};
}

/** Accepts {records|logs|items:[...], next|nextCursor|cursor}; peers flat or nested as source/destination objects. */
export function normalizeLogs(raw: unknown): LogPage {
  const o = isObj(raw) ? raw : {};
  const records = list(raw, 'records', 'logs', 'entries').filter(isObj).map((r) => {
    const src = peer(r, 'source');
    const dst = peer(r, 'destination');
    return {
      time: toMillis(pick(r, 'time', 'timestamp', 'ts')),
      sourceService: str(pick(r, 'sourceService', 'source_service') ?? src.service, isObj(r.source) ? '' : str(r.source)),
      sourceVersion: str(pick(r, 'sourceVersion') ?? src.version),
      service: str(pick(r, 'service', 'destinationService', 'destination_service') ?? dst.service),
      version: str(pick(r, 'version', 'destinationVersion', 'destination_version') ?? dst.version),
      method: str(r.method),
      path: str(pick(r, 'path', 'route')),
      code: num(pick(r, 'code', 'responseCode', 'status')),
      durationMs: num(pick(r, 'durationMs', 'duration_ms')),
      flags: str(pick(r, 'flags', 'responseFlags')),
      traceId: str(pick(r, 'traceId', 'trace_id')),
    };
  });
  return { records, next: str(pick(o, 'next', 'nextCursor', 'cursor')) };
}

export async function fetchLogs(q: LogQuery, signal?: AbortSignal): Promise<LogPage> {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== '') p.set(k, String(v));
  return normalizeLogs(await request(`/api/v1/logs?${p}`, { signal }));
}

// ---------- traces ----------

export interface Span {
  spanId: string;
  parentId: string;
  service: string;
  version: string;
  name: string;
  start: number; // ms
  durationMs: number;
  error: boolean;
  attributes: Record<string, string>;
}

export interface Trace {
  traceId: string;
  spans: Span[];
}

function normalizeSpan(s: Obj): Span {
  const start = toMillis(pick(s, 'start', 'startTime', 'startTimeUnixNano'));
  let durationMs = num(pick(s, 'durationMs', 'duration_ms'), -1);
  if (durationMs < 0) {
    const end = toMillis(pick(s, 'end', 'endTime'));
    durationMs = end ? Math.max(0, end - start) : 0;
  }
  const attrs: Record<string, string> = {};
  if (isObj(s.attributes)) for (const [k, v] of Object.entries(s.attributes)) attrs[k] = str(v, JSON.stringify(v));
  const status = str(pick(s, 'status', 'statusCode')).toLowerCase();
  const p = peer(s, 'peer');
  return {
    spanId: str(pick(s, 'spanId', 'span_id', 'id')),
    parentId: str(pick(s, 'parentSpanId', 'parentId', 'parent_span_id')),
    service: str(s.service ?? p.service),
    version: str(s.version ?? p.version),
    name: str(pick(s, 'name', 'operation')),
    start,
    durationMs,
    error: s.error === true || status.includes('error') || status === '2' || num(s.code) >= 500,
    attributes: attrs,
  };
}

/** Accepts meshlens' {traceId, spans: N, roots:[{..., peer, children:[...]}]}, a flat {spans:[...]} or {root:{...}}. */
export function normalizeTrace(raw: unknown): Trace {
  const o = isObj(raw) ? raw : {};
  const spans: Span[] = [];
  const walk = (n: unknown, parent: string) => {
    if (!isObj(n)) return;
    const s = normalizeSpan(n);
    if (!s.parentId) s.parentId = parent;
    spans.push(s);
    for (const c of list(n.children)) walk(c, s.spanId);
  };
  for (const s of list(raw, 'spans')) walk(s, '');
  for (const s of list(o.roots)) walk(s, '');
  if (!spans.length && isObj(o.root)) walk(o.root, '');
  return { traceId: str(pick(o, 'traceId', 'trace_id', 'id')), spans };
}

export async function fetchTrace(id: string, signal?: AbortSignal): Promise<Trace> {
  const t = normalizeTrace(await request(`/api/v1/traces/${enc(id)}`, { signal }));
  return { ...t, traceId: t.traceId || id };
}

export interface TraceSummary {
  traceId: string;
  service: string;
  name: string;
  start: number;
  durationMs: number;
  spans: number;
  error: boolean;
}

export function normalizeTraceList(raw: unknown): TraceSummary[] {
  return list(raw, 'traces')
    .filter(isObj)
    .map((t) => ({
      traceId: str(pick(t, 'traceId', 'trace_id', 'id')),
      service: str(pick(t, 'rootService', 'service')) || (Array.isArray(t.services) ? str(t.services[0]) : ''),
      name: str(pick(t, 'rootName', 'name', 'operation')),
      start: toMillis(pick(t, 'start', 'startTime', 'time')),
      durationMs: num(pick(t, 'durationMs', 'duration_ms')),
      spans: num(pick(t, 'spanCount', 'spans')),
      error: t.error === true || num(t.errors) > 0,
    }))
    .filter((t) => t.traceId);
}

export async function fetchTraces(service: string, minDurationMs: number, signal?: AbortSignal): Promise<TraceSummary[]> {
  const p = new URLSearchParams({ service });
  if (minDurationMs > 0) p.set('minDurationMs', String(minDurationMs));
  return normalizeTraceList(await request(`/api/v1/traces?${p}`, { signal }));
}

// ---------- config ----------

export interface ConfigObject {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
  spec: unknown;
  raw: Obj;
  /** Where the object came from: "api", "dir:FILE" (--config-dir) or "kube:Kind/ns/name" (the cluster). */
  source: string;
}

/** sourceLabel names an object's source for people, and whether the API may change it. */
export function sourceLabel(source: string): { label: string; detail: string; apiOwned: boolean } {
  const i = source.indexOf(':');
  const kind = i < 0 ? source : source.slice(0, i);
  const detail = i < 0 ? '' : source.slice(i + 1);
  switch (kind) {
    case 'kube':
      return { label: 'Kubernetes', detail, apiOwned: false };
    case 'dir':
      return { label: 'config dir', detail, apiOwned: false };
    case 'api':
    case '':
      return { label: 'API', detail: '', apiOwned: true };
    default:
      return { label: kind, detail, apiOwned: false };
  }
}

export interface FieldError {
  object: string;
  field: string;
  message: string;
}

export function normalizeConfig(raw: unknown): ConfigObject[] {
  const sources = isObj(raw) && isObj(raw.sources) ? raw.sources : {};
  return list(raw, 'objects')
    .filter(isObj)
    .map((o) => {
      const m = peer(o, 'metadata');
      const kind = str(o.kind), namespace = str(m.namespace), name = str(m.name);
      return { apiVersion: str(o.apiVersion), kind, namespace, name, spec: o.spec, raw: o, source: str(sources[`${kind}/${namespace}/${name}`]) || 'api' };
    });
}

export async function fetchConfig(kind?: string, signal?: AbortSignal): Promise<ConfigObject[]> {
  return normalizeConfig(await request(`/api/v1/config${kind ? `?kind=${enc(kind)}` : ''}`, { signal }));
}

/**
 * An analysis finding, as `istioctl analyze` reports it (code IST0101...): config that is accepted but
 * probably does not do what was meant, such as a route to a host or subset nothing defines.
 */
export interface Warning extends FieldError {
  code: string;
}

/** normalizeWarnings reads "warnings" (and "warningCount", the total when the list is cut short) of an answer. */
export function normalizeWarnings(raw: unknown): { warnings: Warning[]; count: number } {
  const b = isObj(raw) ? raw : {};
  const warnings = list(b.warnings)
    .filter(isObj)
    .map((x) => ({ code: str(x.code), object: str(x.object), field: str(x.field), message: str(x.message) }));
  return { warnings, count: Math.max(num(b.warningCount), warnings.length) };
}

export type ApplyResult =
  | { ok: true; body: unknown; warnings: Warning[]; warningCount: number }
  | { ok: false; errors: FieldError[]; errorCount: number; message: string };

/** applyResult reads the answer to POST /api/v1/config: accepted (maybe with warnings) or refused with field errors. */
export function applyResult(status: number, body: unknown, fallback = ''): ApplyResult | undefined {
  if (status >= 200 && status < 300) {
    const w = normalizeWarnings(body);
    return { ok: true, body, warnings: w.warnings, warningCount: w.count };
  }
  if (status !== 400 && status !== 422) return undefined;
  const b = isObj(body) ? body : {};
  const errors = list(b.errors)
    .filter(isObj)
    .map((x) => ({ object: str(x.object), field: str(x.field), message: str(x.message) }));
  // The server lists the first 100 errors of a huge batch and counts them all.
  const errorCount = Math.max(num(b.errorCount), errors.length);
  const message = !errors.length
    ? fallback
    : errorCount > errors.length
      ? `${errorCount} validation errors (the first ${errors.length} shown)`
      : `${errorCount} validation error${errorCount > 1 ? 's' : ''}`;
  return { ok: false, errors, errorCount, message };
}

/**
 * applyConfig posts multi-document YAML, or with dryRun only checks it; validation failures come back as
 * field errors and analysis findings as warnings, not exceptions.
 */
export async function applyConfig(yaml: string, dryRun = false): Promise<ApplyResult> {
  try {
    const body = await request(`/api/v1/config${dryRun ? '?dryRun=true' : ''}`, { method: 'POST', body: yaml, contentType: 'application/yaml' });
    return applyResult(200, body)!;
  } catch (e) {
    const r = e instanceof ApiError ? applyResult(e.status, e.body, e.message) : undefined;
    if (r) return r;
    throw e;
  }
}

/** fetchAnalysis is every analysis finding on the running config (GET /api/v1/analysis). */
export async function fetchAnalysis(signal?: AbortSignal): Promise<{ version: number; warnings: Warning[] }> {
  const raw = await request('/api/v1/analysis', { signal });
  return { version: num(isObj(raw) ? raw.version : 0), warnings: normalizeWarnings(raw).warnings };
}

/** deleteConfig deletes one object; the answer counts the references the deletion leaves dangling. */
export async function deleteConfig(kind: string, ns: string, name: string): Promise<{ warningCount: number }> {
  const body = await request(`/api/v1/config/${enc(kind)}/${enc(ns)}/${enc(name)}`, { method: 'DELETE' });
  return { warningCount: normalizeWarnings(body).count };
}

export interface Proxy {
  id: string;
  service: string;
  version: string;
  ackedVersion: string;
  nack: string;
  lastSeen: number;
}

export function normalizeProxies(raw: unknown): Proxy[] {
  return list(raw, 'proxies', 'nodes')
    .filter(isObj)
    .map((p) => {
      const nack = pick(p, 'nack', 'lastNack', 'error');
      return {
        id: str(pick(p, 'id', 'nodeId', 'node')),
        service: str(pick(p, 'service', 'cluster')),
        version: str(pick(p, 'version', 'flavour')),
        ackedVersion: str(pick(p, 'ackedVersion', 'lastAckedVersion', 'acked')),
        nack: isObj(nack) ? str(pick(nack, 'message', 'error')) : str(nack),
        lastSeen: toMillis(pick(p, 'lastSeen', 'lastAckAt', 'connectedAt', 'updatedAt')),
      };
    });
}

export async function fetchProxies(signal?: AbortSignal): Promise<Proxy[]> {
  return normalizeProxies(await request('/api/v1/proxies', { signal }));
}

// ---------- rollouts ----------

export type RolloutState =
  | 'pending'
  | 'progressing'
  | 'paused'
  | 'promoting'
  | 'succeeded'
  | 'rollingback'
  | 'rolledback'
  | 'failed'
  | string;

export interface Verdict {
  time: number;
  step: number;
  /** pass | fail | inconclusive | push | transition */
  kind: string;
  result: string;
  reason: string;
  numbers: Record<string, number | string>;
  weights?: { stable: number; candidate: number };
}

export interface Rollout {
  namespace: string;
  name: string;
  service: string;
  strategy: string;
  stable: string;
  candidate: string;
  state: RolloutState;
  /** index of the current step, 0-based */
  step: number;
  /** candidate weight of each step */
  steps: number[];
  weights: { stable: number; candidate: number };
  reason: string;
  /**
   * why the rollout is rolling back or rolled back: the failing verdict's
   * reasons, or the message of the abort or alert that started it; empty
   * when it never rolled back. (reason is the last transition's message,
   * which after a rollback only says the stable routes were applied.)
   */
  rollbackReason: string;
  updated: number;
  history: Verdict[];
}

/** The rollout state in a canonical spelling: "RolledBack", "rolled_back" and "rolled back" all become "rolledback". */
export function canonicalState(s: string): string {
  return s.toLowerCase().replace(/[\s_-]/g, '');
}

function normalizeWeights(v: unknown, fallbackCandidate: number): { stable: number; candidate: number } {
  if (isObj(v)) {
    const candidate = num(pick(v, 'candidate', 'canary'), NaN);
    const stable = num(pick(v, 'stable', 'primary', 'baseline'), NaN);
    if (!Number.isNaN(candidate) || !Number.isNaN(stable)) {
      const c = Number.isNaN(candidate) ? 100 - stable : candidate;
      return { candidate: c, stable: Number.isNaN(stable) ? 100 - c : stable };
    }
  }
  return { candidate: fallbackCandidate, stable: 100 - fallbackCandidate };
}

export function normalizeRollout(raw: unknown): Rollout {
  const o = isObj(raw) ? raw : {};
  // Fields may sit at the top or in a Kubernetes-like metadata/spec/status split.
  const m = peer(o, 'metadata');
  const spec = peer(o, 'spec');
  const st = peer(o, 'status');
  const f = (...k: string[]) => pick(st, ...k) ?? pick(o, ...k) ?? pick(spec, ...k);
  const canary = isObj(spec.canary) ? spec.canary : isObj(peer(spec, 'strategy').canary) ? (peer(spec, 'strategy').canary as Obj) : {};
  const steps = list(f('steps') ?? canary.steps).map((s) => (isObj(s) ? num(pick(s, 'weight', 'setWeight')) : num(s)));
  const step = num(f('step', 'currentStep', 'stepIndex'));
  const history = list(f('history', 'events', 'verdicts'))
    .filter(isObj)
    .map((h): Verdict => {
      // meshlens' rollout engine writes {at, type, event, from, to, source,
      // weights, verdict:{result, reasons[], candidate:{...}, stable:{...}}, message};
      // flatter shapes ({time, kind, result, reason, numbers}) are accepted too.
      const v = isObj(h.verdict) ? h.verdict : undefined;
      const numbers: Record<string, number | string> = {};
      const ns = pick(h, 'numbers', 'metrics', 'stats');
      if (isObj(ns)) for (const [k, x] of Object.entries(ns)) numbers[k] = typeof x === 'number' ? x : str(x, JSON.stringify(x));
      if (v) {
        for (const side of ['candidate', 'stable']) {
          const sv = v[side];
          if (!isObj(sv)) continue;
          for (const [k, x] of Object.entries(sv)) if (typeof x === 'number') numbers[side + k[0].toUpperCase() + k.slice(1)] = x;
        }
        if (typeof v.window === 'string') numbers.window = v.window;
        // The tests behind the result: p-values (below alpha fails) and the
        // lower bound of the error-rate increase.
        for (const k of ['errorRateP', 'p99P', 'errorP', 'errorIncreaseLow', 'latencyP', 'latencyEffect']) {
          if (typeof v[k] === 'number') numbers[k] = v[k] as number;
        }
      }
      const w = pick(h, 'weights');
      const reasons = v && Array.isArray(v.reasons) ? (v.reasons as unknown[]).map((r) => str(r)).filter(Boolean).join('; ') : '';
      const transition = h.from !== undefined || h.to !== undefined ? `${str(h.from) || '·'} → ${str(h.to)}` : '';
      const extra = [reasons, transition && str(h.event) ? `${str(h.event)}${h.source ? ` by ${str(h.source)}` : ''}` : '', str(h.error)].filter(Boolean);
      return {
        time: toMillis(pick(h, 'time', 'at', 'timestamp')),
        step: num(h.step ?? v?.step),
        kind: str(pick(h, 'kind', 'type'), 'verdict'),
        result: str(pick(h, 'result', 'outcome')) || (v ? str(v.result) : '') || str(h.to) || str(h.event),
        reason: [str(pick(h, 'reason', 'message')), ...extra].filter(Boolean).join(' — '),
        numbers,
        weights: isObj(w) ? normalizeWeights(w, 0) : undefined,
      };
    })
    .sort((a, b) => b.time - a.time);
  const stepWeight = steps.length ? steps[Math.min(step, steps.length - 1)] : 0;
  return {
    namespace: str(m.namespace ?? o.namespace),
    name: str(m.name ?? o.name),
    service: str(f('service', 'host', 'target')),
    strategy: strategyName(f('strategy'), spec, steps.length > 0),
    stable: str(f('stable', 'stableVersion', 'baseline')),
    candidate: str(f('candidate', 'candidateVersion')),
    state: canonicalState(str(f('state', 'phase'), 'pending')),
    step,
    steps,
    weights: normalizeWeights(f('weights'), stepWeight),
    reason: str(f('reason', 'message')) || lastVerdictReason(f('lastVerdict')),
    rollbackReason: rollbackReason(list(f('history', 'events', 'verdicts'))),
    updated: toMillis(f('updated', 'updatedAt', 'lastTransitionTime')),
    history,
  };
}

/**
 * rollbackReason explains the last transition into "rolling back" in the
 * engine's history (oldest first, as the engine writes it). The judge's
 * transition message wraps the reasons in Go's %v ("2 failing verdicts in a
 * row: [a b]"), so for a judge's fail the reasons come from the failing
 * verdict recorded before it, joined as the history shows them.
 */
export function rollbackReason(history: unknown[]): string {
  const at = (h: Obj) => toMillis(pick(h, 'time', 'at', 'timestamp'));
  const hs = history.filter(isObj).sort((a, b) => at(a) - at(b)); // stable: same-instant entries keep their order
  let i = hs.length - 1;
  for (; i >= 0; i--) if (hs[i].to !== undefined && canonicalState(str(hs[i].to)) === 'rollingback') break;
  if (i < 0) return '';
  const t = hs[i];
  const message = str(pick(t, 'message', 'reason'));
  if (str(t.event) === 'fail' || str(t.source) === 'judge') {
    for (let j = i - 1; j >= 0; j--) {
      const v = hs[j].verdict;
      if (hs[j].to !== undefined) break; // an earlier transition: the verdicts before it are not this one's
      if (!isObj(v) || str(v.result) !== 'fail' || !Array.isArray(v.reasons)) continue;
      const reasons = (v.reasons as unknown[]).map((r) => str(r)).filter(Boolean).join('; ');
      if (reasons) return reasons;
    }
  }
  if (message) return message;
  const ev = str(t.event);
  return ev ? `${ev}${t.source ? ` by ${str(t.source)}` : ''}` : '';
}

function lastVerdictReason(v: unknown): string {
  if (!isObj(v) || str(v.result) !== 'fail' || !Array.isArray(v.reasons)) return '';
  return (v.reasons as unknown[]).map((r) => str(r)).join('; ');
}

function strategyName(v: unknown, spec: Obj, hasSteps: boolean): string {
  if (typeof v === 'string') return v;
  if (isObj(v)) return Object.keys(v)[0] ?? '';
  for (const k of ['canary', 'blueGreen', 'abTest', 'ab']) if (isObj(spec[k])) return k;
  return hasSteps ? 'canary' : '';
}

export async function fetchRollouts(signal?: AbortSignal): Promise<Rollout[]> {
  return list(await request('/api/v1/rollouts', { signal }), 'rollouts').map(normalizeRollout);
}

export async function fetchRollout(ns: string, name: string, signal?: AbortSignal): Promise<Rollout> {
  return normalizeRollout(await request(`/api/v1/rollouts/${enc(ns)}/${enc(name)}`, { signal }));
}

export type RolloutAction = 'pause' | 'resume' | 'promote' | 'abort';

export async function rolloutAction(ns: string, name: string, action: RolloutAction): Promise<void> {
  await request(`/api/v1/rollouts/${enc(ns)}/${enc(name)}/${action}`, { method: 'POST' });
}

export interface RolloutForm {
  namespace: string;
  name: string;
  service: string;
  stable: string;
  candidate: string;
  steps: number[];
  stepDuration: string;
  minRequests: number;
  maxErrorRate: number; // fraction
  maxP99Ms: number;
  header?: string;
  headerValue?: string;
}

/**
 * rolloutYAML writes a canary Rollout as meshlens.io/v1alpha1 YAML, in the
 * rollout engine's spec (rollout/spec.go): stable and candidate are
 * DestinationRule subsets, steps are candidate weights, minDuration is the
 * least time per step.
 */
export function rolloutYAML(f: RolloutForm): string {
  const lines = [
    'apiVersion: meshlens.io/v1alpha1',
    'kind: Rollout',
    'metadata:',
    `  name: ${f.name}`,
    `  namespace: ${f.namespace}`,
    'spec:',
    `  service: ${f.service}`,
    `  stable: ${f.stable}`,
    `  candidate: ${f.candidate}`,
    '  strategy:',
    '    canary:',
    `      steps: [${f.steps.join(', ')}]`,
    `      minDuration: ${f.stepDuration}`,
    `      minRequests: ${f.minRequests}`,
  ];
  if (f.header && f.headerValue) {
    lines.push('      match:', `      - header: ${f.header}`, `        exact: "${f.headerValue.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`);
  }
  lines.push('  analysis:', `    maxErrorRate: ${f.maxErrorRate}`, `    maxP99Ms: ${f.maxP99Ms}`);
  return lines.join('\n') + '\n';
}

// ---------- alerts ----------

export interface Alert {
  name: string;
  severity: string;
  state: string;
  summary: string;
  labels: Record<string, string>;
  since: number;
  value: string;
  /** what meshlens did about it, e.g. "rolled back default/reviews" */
  action: string;
}

/** Accepts meshlens' list or Alertmanager-shaped alerts ({labels:{alertname}, annotations, startsAt}). */
export function normalizeAlerts(raw: unknown): Alert[] {
  return list(raw, 'alerts')
    .filter(isObj)
    .map((a) => {
      const labels: Record<string, string> = {};
      if (isObj(a.labels)) for (const [k, v] of Object.entries(a.labels)) labels[k] = str(v);
      const ann = peer(a, 'annotations');
      return {
        name: str(pick(a, 'name', 'rule', 'alertname') ?? labels.alertname, 'alert'),
        severity: str(a.severity ?? labels.severity),
        state: str(pick(a, 'state', 'status'), 'firing'),
        summary: str(pick(a, 'summary', 'message') ?? ann.summary ?? ann.description),
        labels,
        since: toMillis(pick(a, 'since', 'startsAt', 'activeAt')),
        value: typeof a.value === 'number' ? String(Math.round(a.value * 1000) / 1000) : str(a.value),
        action: str(a.action),
      };
    });
}

export async function fetchAlerts(signal?: AbortSignal): Promise<Alert[]> {
  return normalizeAlerts(await request('/api/v1/alerts', { signal }));
}

function enc(s: string): string {
  return encodeURIComponent(s);
}
