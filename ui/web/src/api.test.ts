import { describe, expect, it } from 'vitest';
import { rolloutYAML, sourceLabel, toAlerts, toConfig, toLogPage, toProxies, toRollout, toServiceDetail, toTrace, toTraceList, type Schemas } from './api';
import { locateField } from './yaml';

const numbers = (version: string): Schemas['VersionNumbers'] => ({ version, requests: 0, errors: 0, errorRate: 0, p50Ms: 0, p99Ms: 0, samples: 0, medianMs: 0 });
/** verdict is a judge's verdict with every number (rollout/judge.go), the given ones changed. */
const verdict = (v: Partial<Schemas['Verdict']>): Schemas['Verdict'] => ({
  at: '2026-11-25T17:00:00Z', step: 0, result: 'fail', reasons: [], window: '30s', candidate: numbers('v3'), stable: numbers('v1'),
  errorRateP: 1, p99P: 1, errorZ: 0, errorP: 1, errorIncreaseLow: 0, latencyU: 0, latencyZ: 0, latencyP: 1, latencyEffect: 0.5, ...v,
});

describe('toRollout on the rollout engine status', () => {
  const status: Schemas['Rollout'] = {
    namespace: 'default', name: 'reviews-canary', service: 'reviews', strategy: 'canary', stable: 'v1', candidate: 'v3',
    stableVersion: 'v1', candidateVersion: 'v3', state: 'rolled back', step: 1, steps: [10, 50, 100],
    weights: { stable: 100, candidate: 0, matched: false }, virtualService: 'reviews', startedAt: '2026-11-25T16:59:00Z', stepStartedAt: '2026-11-25T17:00:00Z', updatedAt: '2026-11-25T17:00:10Z', consecutiveFailures: 1,
    message: 'candidate error rate 31% > 5%',
    history: [
      { at: '2026-11-25T17:00:00Z', type: 'push', step: 0, weights: { stable: 90, candidate: 10, matched: false }, configVersion: 7 },
      { at: '2026-11-25T17:00:05Z', type: 'verdict', step: 1, verdict: verdict({ at: '2026-11-25T17:00:05Z', step: 1, result: 'fail', reasons: ['error rate 31% > max 5%'], window: '30s', candidate: { version: 'v3', requests: 412, errors: 128, errorRate: 0.31, p50Ms: 9, p99Ms: 40, samples: 400, medianMs: 9 }, stable: { version: 'v1', requests: 1650, errors: 0, errorRate: 0, p50Ms: 5, p99Ms: 20, samples: 400, medianMs: 5 }, errorRateP: 3.7e-46, p99P: 1, errorZ: 14.4, errorP: 2.2e-41, errorIncreaseLow: 0.27, latencyP: 0.4, latencyEffect: 0.52 }) },
      { at: '2026-11-25T17:00:06Z', type: 'transition', event: 'fail', from: 'progressing', to: 'rolling back', source: 'judge', step: 1 },
    ],
  };
  const r = toRollout(status);

  it('reads identity, state, steps and weights', () => {
    expect(r).toMatchObject({ namespace: 'default', name: 'reviews-canary', service: 'reviews', stable: 'v1', candidate: 'v3', state: 'rolledback', step: 1, steps: [10, 50, 100], weights: { stable: 100, candidate: 0 } });
    expect(r.reason).toBe('candidate error rate 31% > 5%');
  });

  it('turns verdicts into results with their reasons and numbers, newest first', () => {
    expect(r.history.map((h) => h.kind)).toEqual(['transition', 'verdict', 'push']);
    const v = r.history[1];
    expect(v.result).toBe('fail');
    expect(v.reason).toContain('error rate 31% > max 5%');
    expect(v.numbers).toMatchObject({ candidateRequests: 412, candidateErrorRate: 0.31, stableRequests: 1650, stableP99Ms: 20, window: '30s' });
    expect(v.numbers).toMatchObject({ errorRateP: 3.7e-46, errorP: 2.2e-41, errorIncreaseLow: 0.27, latencyP: 0.4 });
    expect(r.history[0].result).toBe('rolling back');
    expect(r.history[0].reason).toContain('fail by judge');
    expect(r.history[2].weights).toEqual({ stable: 90, candidate: 10 });
  });

  it('takes the reason from the last failing verdict when there is no message', () => {
    const x = toRollout({ ...status, message: '', lastVerdict: verdict({ result: 'fail', reasons: ['p99 900ms > 500ms'] }) });
    expect(x.reason).toBe('p99 900ms > 500ms');
  });

  it('explains a rollback by the failing verdict that started it, not by the last message', () => {
    const failing = verdict({ result: 'fail', reasons: ['candidate error rate 58.6% exceeds the maximum 5%', 'candidate errors exceed stable (z=12.56, p=0)'] });
    const x = toRollout({
      ...status,
      message: 'routes applied (config version 8). All traffic goes to v1.',
      history: [
        { at: '2026-11-25T17:00:00Z', type: 'verdict', step: 0, verdict: verdict({ result: 'fail', reasons: ['an older failure'] }) },
        { at: '2026-11-25T17:00:01Z', type: 'transition', event: 'pause', from: 'progressing', to: 'paused', source: 'operator', step: 0 },
        { at: '2026-11-25T17:00:02Z', type: 'transition', event: 'resume', from: 'paused', to: 'progressing', source: 'operator', step: 0 },
        { at: '2026-11-25T17:00:05Z', type: 'verdict', step: 1, verdict: failing },
        { at: '2026-11-25T17:00:05Z', type: 'transition', event: 'fail', from: 'progressing', to: 'rolling back', source: 'judge', step: 1, message: '1 failing verdicts in a row: [candidate error rate 58.6% exceeds the maximum 5% candidate errors exceed stable (z=12.56, p=0)]' },
        { at: '2026-11-25T17:00:06Z', type: 'push', step: 1, weights: { stable: 100, candidate: 0, matched: false }, configVersion: 8 },
        { at: '2026-11-25T17:00:06Z', type: 'transition', event: 'pushed', from: 'rolling back', to: 'rolled back', source: 'engine', step: 1, message: 'routes applied (config version 8). All traffic goes to v1.' },
      ],
    });
    expect(x.reason).toBe('routes applied (config version 8). All traffic goes to v1.');
    expect(x.rollbackReason).toBe('candidate error rate 58.6% exceeds the maximum 5%; candidate errors exceed stable (z=12.56, p=0)');
  });

  it.each([
    ['an operator abort, by its message', { event: 'abort', source: 'operator', message: 'aborted: wrong build' }, 'aborted: wrong build'],
    ['an alert, by its message', { event: 'alert', source: 'alert:HighErrorRate', message: 'HighErrorRate firing' }, 'HighErrorRate firing'],
    ['an abort without a message, by who did it', { event: 'abort', source: 'operator' }, 'abort by operator'],
    ['a judge fail whose verdict is gone, by its message', { event: 'fail', source: 'judge', message: '3 failing verdicts in a row: [p99 900ms > 500ms]' }, '3 failing verdicts in a row: [p99 900ms > 500ms]'],
  ])('explains a rollback started by %s', (_name, t, want) => {
    const x = toRollout({ ...status, history: [{ at: '2026-11-25T17:00:00Z', type: 'transition', from: 'progressing', to: 'rolling back', step: 0, ...t }] });
    expect(x.rollbackReason).toBe(want);
  });

  it('has no rollback reason when the rollout never rolled back', () => {
    const x = toRollout({ ...status, state: 'succeeded', history: [{ at: '2026-11-25T17:00:00Z', type: 'transition', event: 'complete', from: 'progressing', to: 'succeeded', source: 'judge', step: 2, message: 'v3 takes all traffic' }] });
    expect(x.rollbackReason).toBe('');
  });

});

describe('other adapters on the query API shapes', () => {
  it('reads a span tree from roots with peers and children', () => {
    const t = toTrace({
      traceId: 'abc', spans: 3,
      roots: [{ spanId: '1', name: 'GET /productpage', peer: { service: 'productpage', version: 'v1' }, start: '2026-11-25T17:00:00.000Z', durationMs: 30, statusCode: 'error',
        children: [{ spanId: '2', parentSpanId: '1', name: 'GET /reviews', peer: { service: 'reviews', version: 'v2' }, start: '2026-11-25T17:00:00.005Z', durationMs: 10, children: [{ spanId: '3', name: 'x', peer: { service: 'ratings' }, start: '2026-11-25T17:00:00.006Z', durationMs: 2 }] }] }],
    });
    expect(t.spans.map((s) => [s.spanId, s.parentId, s.service])).toEqual([['1', '', 'productpage'], ['2', '1', 'reviews'], ['3', '2', 'ratings']]);
    expect(t.spans[0].error).toBe(true);
    expect(t.spans[1].start - t.spans[0].start).toBe(5);
  });

  it('reads trace summaries, access-log entries with a cursor, alerts, config items and proxies', () => {
    expect(toTraceList({ traces: [{ traceId: 't', start: '2026-11-25T17:00:00Z', durationMs: 12, spans: 4, services: ['productpage', 'reviews'], rootName: 'GET /', errors: 1 }] })[0]).toMatchObject({ service: 'productpage', spans: 4, error: true, name: 'GET /' });
    const logs = toLogPage({ entries: [{ time: '2026-11-25T17:00:00Z', source: { service: 'productpage', version: 'v1' }, destination: { service: 'reviews', version: 'v2' }, method: 'GET', path: '/reviews/0', code: 503, durationMs: 4.5, flags: 'UF', traceId: 'abc' }], cursor: 'next-page' });
    expect(logs.next).toBe('next-page');
    expect(logs.records[0]).toMatchObject({ sourceService: 'productpage', service: 'reviews', version: 'v2', code: 503, flags: 'UF' });
    expect(toAlerts({ alerts: [{ source: 'rule', rule: 'ReviewsErrors', state: 'firing', labels: { severity: 'critical', service: 'reviews' }, annotations: { summary: 'errors' }, startsAt: '2026-11-25T17:00:00Z', value: 0.31234, action: 'rolled back default/reviews' }] })[0]).toMatchObject({ name: 'ReviewsErrors', severity: 'critical', summary: 'errors', value: '0.312', action: 'rolled back default/reviews' });
    expect(toConfig({ version: 3, items: [{ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'reviews', namespace: 'default' }, spec: {} }] })[0]).toMatchObject({ kind: 'VirtualService', name: 'reviews', namespace: 'default' });
    const listed = toConfig({
      version: 4,
      items: [
        { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'reviews', namespace: 'bookinfo' }, spec: {} },
        { apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'reviews', namespace: 'bookinfo' }, spec: {} },
      ],
      sources: { 'VirtualService/bookinfo/reviews': 'kube:VirtualService/bookinfo/reviews', 'DestinationRule/bookinfo/reviews': 'api' },
    });
    expect(listed.map((o) => sourceLabel(o.source))).toEqual([
      { label: 'Kubernetes', detail: 'VirtualService/bookinfo/reviews', apiOwned: false },
      { label: 'API', detail: '', apiOwned: true },
    ]);
    expect(sourceLabel('dir:reviews.yaml')).toEqual({ label: 'config dir', detail: 'reviews.yaml', apiOwned: false });
    expect(toProxies({ proxies: [{ id: 'n1', cluster: 'reviews', version: '7', inSync: false, lastAckedVersion: '6', lastNack: { version: '7', message: 'bad cluster' } }] })[0]).toMatchObject({ service: 'reviews', ackedVersion: '6', nack: 'bad cluster' });
  });

  it('reads per-version series as points with rps', () => {
    const d = toServiceDetail({ namespace: 'default', name: 'reviews', versions: [{ version: 'v2', points: [{ t: '2026-11-25T17:00:00Z', rps: 3, errorRate: 0.1, p50Ms: 1, p90Ms: 2, p99Ms: 3 }] }, { version: 'v1', points: [] }] });
    expect(d.versions.map((v) => v.version)).toEqual(['v1', 'v2']);
    expect(d.versions[1]).toMatchObject({ qps: [3], errorRate: [0.1], p99Ms: [3] });
    expect(d.versions[1].t[0]).toBe(Date.parse('2026-11-25T17:00:00Z') / 1000);
  });
});

describe('rolloutYAML', () => {
  const y = rolloutYAML({ namespace: 'default', name: 'reviews-canary', service: 'reviews', stable: 'v1', candidate: 'v2', steps: [10, 50, 100], stepDuration: '30s', minRequests: 50, maxErrorRate: 0.05, maxP99Ms: 500, header: 'x-canary', headerValue: 'a"b' });
  it('writes the engine spec with steps, minDuration, header match and analysis', () => {
    expect(y).toContain('kind: Rollout');
    expect(y).toContain('apiVersion: meshlens.io/v1alpha1');
    expect(y).toContain('      steps: [10, 50, 100]');
    expect(y).toContain('      minDuration: 30s');
    expect(y).toContain('      - header: x-canary\n        exact: "a\\"b"');
    expect(y).toContain('    maxErrorRate: 0.05');
  });
  it('lets validation errors point at its lines', () => {
    const lines = y.split('\n');
    expect(lines[locateField(y, 'Rollout/default/reviews-canary', 'spec.candidate')]).toBe('  candidate: v2');
    expect(lines[locateField(y, 'Rollout/default/reviews-canary', 'spec.strategy.canary.match[0].exact')]).toContain('exact:');
  });
});
