// The contract: the fixture server answers as query/openapi.yaml says meshlens
// does, and the health thresholds the UI's legend names are graph/build.go's.
// A fixture that drifted from the document would let the UI pass its browser
// tests against answers the real server never gives.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { HEALTH_THRESHOLDS } from './format';
// @ts-expect-error plain JS module shared with the fixture server
import { DEGRADED, FAILING } from '../e2e/apigraph.mjs';
// @ts-expect-error plain JS module
import { startFixture } from '../e2e/fixture-server.mjs';
import { validate, type Schema } from './schemacheck';

const doc = parse(readFileSync(new URL('../../../query/openapi.yaml', import.meta.url), 'utf8'));

function responseSchema(path: string, method: string, status = '200'): Schema {
  const r = doc.paths[path]?.[method]?.responses?.[status];
  const s = r?.content?.['application/json']?.schema;
  if (!s) throw new Error(`no JSON ${status} schema for ${method.toUpperCase()} ${path}`);
  return s;
}

let f: { url: string; token: string; close: () => Promise<void> };
beforeAll(async () => {
  f = await startFixture({ stepMs: 300 });
});
afterAll(async () => {
  await f?.close();
});

async function call(path: string, init: RequestInit = {}) {
  const res = await fetch(f.url + path, { ...init, headers: { Authorization: `Bearer ${f.token}`, ...(init.headers ?? {}) } });
  return { status: res.status, body: await res.json() };
}

describe('the fixture server answers as query/openapi.yaml documents', () => {
  const rollout = 'apiVersion: meshlens.io/v1alpha1\nkind: Rollout\nmetadata: {name: contract, namespace: default}\nspec:\n  service: reviews\n  stable: v1\n  candidate: v3\n  strategy: {canary: {steps: [20, 100], minDuration: 1s, minRequests: 5}}\n';
  beforeAll(async () => {
    await call('/api/v1/config', { method: 'POST', body: rollout, headers: { 'Content-Type': 'application/yaml' } });
    await new Promise((r) => setTimeout(r, 2500)); // a verdict, a rollback
  });

  it.each([
    ['/graph', '/api/v1/graph?view=version&window=5m'],
    ['/graph', '/api/v1/graph?view=service&window=1m'],
    ['/graph/nodes/{id}/impact', `/api/v1/graph/nodes/${encodeURIComponent('default/details/v1')}/impact?view=version`],
    ['/graph/paths', `/api/v1/graph/paths?view=version&from=unknown&to=${encodeURIComponent('default/details/v1')}`],
    ['/services', '/api/v1/services'],
    ['/services/{ns}/{name}', '/api/v1/services/default/reviews?range=15m'],
    ['/logs', '/api/v1/logs?service=reviews&limit=5'],
    ['/traces', '/api/v1/traces?service=productpage'],
    ['/config', '/api/v1/config'],
    ['/analysis', '/api/v1/analysis'],
    ['/proxies', '/api/v1/proxies'],
    ['/rollouts', '/api/v1/rollouts'],
    ['/rollouts/{namespace}/{name}', '/api/v1/rollouts/default/contract'],
    ['/alerts', '/api/v1/alerts'],
  ])('GET %s (%s)', async (route, url) => {
    const { status, body } = await call(url);
    expect(status).toBe(200);
    expect(validate(body, responseSchema(route, 'get'), doc)).toEqual([]);
  });

  it('GET /traces/{traceId}', async () => {
    const { body: list } = await call('/api/v1/traces?service=productpage');
    const { status, body } = await call(`/api/v1/traces/${list.traces[0].traceId}`);
    expect(status).toBe(200);
    expect(validate(body, responseSchema('/traces/{traceId}', 'get'), doc)).toEqual([]);
  });

  it('POST /config, accepted and refused', async () => {
    const ok = await call('/api/v1/config?dryRun=true', { method: 'POST', body: 'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: default}\nspec: {hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v9}}]}]}\n', headers: { 'Content-Type': 'application/yaml' } });
    expect(ok.status).toBe(200);
    expect(validate(ok.body, responseSchema('/config', 'post'), doc)).toEqual([]);
    const bad = await call('/api/v1/config', { method: 'POST', body: 'kind: Nope\n', headers: { 'Content-Type': 'application/yaml' } });
    expect(bad.status).toBe(400);
    expect(validate(bad.body, responseSchema('/config', 'post', '400'), doc)).toEqual([]);
  });

  it('a validator that finds drift: a missing required field, a wrong type, an undocumented field', () => {
    const edge = { $ref: '#/components/schemas/Node' };
    expect(validate({ id: 'a', namespace: '', service: 'a', version: '', workload: '', requests: 1, rps: 1, errorRate: 0 }, edge, doc)).toEqual(['$: health is required']);
    expect(validate({ id: 'a', namespace: '', service: 'a', version: '', workload: '', requests: 1, rps: '1', errorRate: 0, health: 'ok' }, edge, doc)).toEqual(['$.health: "ok" is not one of healthy, degraded, failing, idle', '$.rps: want number']);
    expect(validate({ id: 'a', namespace: '', service: 'a', version: '', workload: '', requests: 1, rps: 1, errorRate: 0, health: 'idle', kind: 'x' }, edge, doc)).toEqual(['$.kind: not in the document']);
  });
});

describe('health thresholds', () => {
  it('the legend and the fixture use graph/build.go\'s thresholds', () => {
    const go = readFileSync(new URL('../../../graph/build.go', import.meta.url), 'utf8');
    const constant = (name: string) => Number(new RegExp(`${name}\\s*=\\s*([0-9.]+)`).exec(go)?.[1]);
    expect(constant('degradedErrorRate')).toBe(HEALTH_THRESHOLDS.degraded);
    expect(constant('failingErrorRate')).toBe(HEALTH_THRESHOLDS.failing);
    expect([DEGRADED, FAILING]).toEqual([HEALTH_THRESHOLDS.degraded, HEALTH_THRESHOLDS.failing]);
  });
});
