// Browser test of the topology page's diff mode against a real `meshlens
// serve`: it sends Envoy access-log entries over OTLP/HTTP (MESHLENS_OTLP_HTTP,
// the server's --otlp-http) stamped in two past windows — one edge steady,
// one failing and slower in the second window, one gone and one new — then
// opens the diff of those windows and checks the failing edge is marked
// worse on the graph and in the table, and that the before/after-a-change
// picker offers the audit trail. Without a live server (the fixture) it is
// skipped: the fixture has no collector to send to.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { api, launch, shot, target } from './lib.mjs';

const TIMEOUT = Number(process.env.MESHLENS_E2E_TIMEOUT_MS || 180000);
const OTLP = process.env.MESHLENS_OTLP_HTTP;
const NS = `diffe2e${Date.now() % 100000}`;
const MIN = 60000;
let t, b;

before(async () => {
  t = await target();
  b = await launch();
});

after(async () => {
  await b?.close();
  await t?.close();
});

const iso = (ms) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

/** entries are n access-log entries of caller → callee spread over [start, start+span). */
function entries(caller, callee, start, span, n, { errEvery = 0, slowEvery = 0, ms = 10 } = {}) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const at = BigInt(Math.floor(start + (i * span) / n)) * 1000000n;
    out.push({
      caller,
      rec: {
        timeUnixNano: String(at),
        attributes: [
          { key: 'upstream_cluster', value: { stringValue: `outbound|9080|v1|${callee}.${NS}.svc.cluster.local` } },
          { key: 'response_code', value: { intValue: String(errEvery && i % errEvery === 0 ? 503 : 200) } },
          { key: 'duration', value: { doubleValue: slowEvery && i % slowEvery === 0 ? 900 : ms + (i % 7) } },
          { key: 'method', value: { stringValue: 'GET' } },
          { key: 'path', value: { stringValue: '/' } },
        ],
      },
    });
  }
  return out;
}

/** send posts the entries as OTLP/HTTP JSON logs, each caller its own resource. */
async function send(all) {
  for (let i = 0; i < all.length; i += 500) {
    const byCaller = new Map();
    for (const e of all.slice(i, i + 500)) byCaller.set(e.caller, [...(byCaller.get(e.caller) ?? []), e.rec]);
    const body = {
      resourceLogs: [...byCaller].map(([caller, logRecords]) => ({
        resource: {
          attributes: [
            { key: 'service.name', value: { stringValue: caller } },
            { key: 'service.version', value: { stringValue: 'v1' } },
            { key: 'k8s.namespace.name', value: { stringValue: NS } },
            { key: 'k8s.deployment.name', value: { stringValue: `${caller}-v1` } },
          ],
        },
        scopeLogs: [{ logRecords }],
      })),
    };
    const res = await fetch(`http://${OTLP}/v1/logs`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal(res.status, 200, `OTLP/HTTP logs: ${res.status} ${await res.text()}`);
  }
}

describe('topology diff mode', { timeout: TIMEOUT * 2 + 60000 }, () => {
  it('marks the edge that got worse between two windows, and the new and vanished ones', async (tc) => {
    if (t.fixture || !OTLP) return tc.skip('needs a live meshlens serve (MESHLENS_URL) and its OTLP/HTTP address (MESHLENS_OTLP_HTTP)');
    const now = Math.floor(Date.now() / MIN) * MIN;
    const bStart = now - 40 * MIN;
    const aStart = now - 20 * MIN;
    const span = 10 * MIN;
    await send([
      ...entries('gateway', 'frontend', bStart, span, 400),
      ...entries('gateway', 'frontend', aStart, span, 400),
      ...entries('frontend', 'backend', bStart, span, 400),
      ...entries('frontend', 'backend', aStart, span, 400, { errEvery: 3, slowEvery: 5 }),
      ...entries('frontend', 'legacy', bStart, span, 100),
      ...entries('frontend', 'cache', aStart, span, 100),
    ]);
    const windows = { beforeStart: iso(bStart), beforeEnd: iso(bStart + span), afterStart: iso(aStart), afterEnd: iso(aStart + span) };
    const qs = new URLSearchParams({ view: 'service', namespace: NS, ...windows });
    // The collector writes ClickHouse in batches: wait until the diff sees both windows.
    const deadline = Date.now() + TIMEOUT;
    let d;
    for (;;) {
      const r = await api(t.url, t.token, `/api/v1/graph/diff?${qs}`);
      d = r.body;
      if (r.status === 200 && d.before.requests === 900 && d.after.requests === 900) break;
      assert.ok(Date.now() < deadline, `the diff never saw all the requests sent: ${r.status} ${JSON.stringify(d).slice(0, 300)}`);
      await new Promise((res) => setTimeout(res, 1000));
    }
    const worse = `${NS}/frontend->${NS}/backend`;

    const page = await b.ctx.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    if (t.token) await page.addInitScript((tok) => localStorage.setItem('meshlens.token', tok), t.token);
    await page.goto(`${t.url}/topology?diff=1&${qs}`);
    await page.waitForFunction((id) => window.__diffCy?.getElementById(id).length === 1, worse, { timeout: 30000 });
    const classes = await page.evaluate(
      ([w, ns]) => ({
        worse: window.__diffCy.getElementById(w).classes(),
        steady: window.__diffCy.getElementById(`${ns}/gateway->${ns}/frontend`).classes(),
        gone: window.__diffCy.getElementById(`${ns}/frontend->${ns}/legacy`).classes(),
        fresh: window.__diffCy.getElementById(`${ns}/frontend->${ns}/cache`).classes(),
        goneLine: window.__diffCy.getElementById(`${ns}/frontend->${ns}/legacy`).style('line-style'),
        label: window.__diffCy.getElementById(w).data('label'),
      }),
      [worse, NS],
    );
    assert.deepEqual([classes.worse, classes.steady, classes.gone, classes.fresh], [['worse'], ['unchanged'], ['vanished'], ['new']], JSON.stringify(classes));
    assert.equal(classes.goneLine, 'dashed', 'a vanished edge is drawn dashed');
    assert.match(classes.label, /^▲ .*err.*p99/, `the worse edge says what got worse: ${classes.label}`);

    // The table lists the worse edge first, with both tests significant, and leaves the steady one out.
    const rows = await page.$$eval('[data-testid=diff-table] tbody tr', (trs) => trs.map((tr) => ({ edge: tr.dataset.edge, status: tr.dataset.status, text: tr.textContent })));
    assert.deepEqual(rows[0] && [rows[0].edge, rows[0].status], [worse, 'worse'], JSON.stringify(rows));
    assert.match(rows[0].text, /▲ p=.*▲ p=/, `error rate and p99 both significantly up: ${rows[0].text}`);
    assert.ok(!rows.some((r) => r.status === 'unchanged'), 'unchanged edges are not listed by default');
    assert.ok(await page.isVisible('[data-testid=diff-legend]'), 'the legend explains the colours');
    await shot(page, 'e2e-diff');

    // Windows without traffic: a message, not an empty graph.
    const quiet = new URLSearchParams({ view: 'service', namespace: NS, beforeStart: iso(now - 23 * 60 * MIN), beforeEnd: iso(now - 22 * 60 * MIN), afterStart: iso(now - 21 * 60 * MIN), afterEnd: iso(now - 20 * 60 * MIN) });
    await page.goto(`${t.url}/topology?diff=1&${quiet}`);
    await page.waitForSelector('[data-testid=diff-no-data]', { timeout: 30000 });
    assert.match(await page.textContent('[data-testid=diff-no-data]'), /neither window has traffic/);

    // Overlapping windows: the API's 400, naming the parameter.
    const overlap = new URLSearchParams({ view: 'service', ...windows, afterStart: iso(bStart + 5 * MIN) });
    await page.goto(`${t.url}/topology?diff=1&${overlap}`);
    await page.waitForSelector('[data-testid=diff-error]', { timeout: 30000 });
    assert.match(await page.textContent('[data-testid=diff-error]'), /overlaps.*parameter afterStart/);
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('compares the minutes before and after a change picked from the audit trail', async (tc) => {
    if (t.fixture) return tc.skip('needs a live meshlens serve (MESHLENS_URL) with an audit trail');
    let changes = await api(t.url, t.token, '/api/v1/audit?since=24h&limit=200');
    assert.equal(changes.status, 200, JSON.stringify(changes.body));
    assert.ok(changes.body.entries.length > 0, 'the demo applied config: the audit trail has entries');
    // The minute after a change must be over before there is an after window
    // to compare (the API says so with a 400): wait for the demo's first change to age.
    const oldest = Math.min(...changes.body.entries.map((e) => Date.parse(e.time)));
    await new Promise((res) => setTimeout(res, Math.max(0, oldest + 2 * MIN + 5000 - Date.now())));
    changes = await api(t.url, t.token, '/api/v1/audit?since=24h&limit=200');
    const picked = changes.body.entries.find((e) => Date.now() - Date.parse(e.time) > 2 * MIN);
    assert.ok(picked, 'a change at least two minutes old');
    const page = await b.ctx.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    if (t.token) await page.addInitScript((tok) => localStorage.setItem('meshlens.token', tok), t.token);
    await page.goto(`${t.url}/topology?view=service`);
    // The changes are marked on the time scrubber; one click opens their diff.
    await page.waitForSelector('[data-testid=change-mark]', { timeout: 30000 });
    await page.click('[data-testid=diff-toggle]');
    await page.waitForSelector('[data-testid=diff-controls]');
    await page.click('[data-testid=diff-controls] [role=radio]:has-text("Before/after a change")');
    await page.waitForFunction(() => (document.querySelector('[data-testid=diff-change]')?.options.length ?? 0) > 1, null, { timeout: 30000 });
    const at = picked.time;
    await page.selectOption('[data-testid=diff-change]', at);
    await page.waitForFunction((a) => new URL(location.href).searchParams.get('around') === a, at);
    // The diff of the span around it: a graph, or the message that nothing ran then; never an error.
    await page.waitForSelector('[data-testid=diff-canvas], [data-testid=diff-no-data]', { timeout: 30000 });
    assert.equal(await page.$('[data-testid=diff-error]'), null, 'the picked change gives valid windows');
    const w = await page.textContent('[data-testid=diff-controls] [data-testid=diff-change]');
    assert.ok(w.length > 0);
    assert.deepEqual(errors, []);
    await page.close();
  });
});
