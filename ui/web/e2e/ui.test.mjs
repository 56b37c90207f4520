// Browser tests of the topology UI in headless Chromium (Debian's, through
// playwright-core). They run against MESHLENS_URL (a `meshlens serve` fed by
// `meshlens demo`) with MESHLENS_TOKEN as the operator token; without
// MESHLENS_URL they start the fixture server. Screenshots go to screenshots/.
//
// Env for a live server:
//   MESHLENS_URL, MESHLENS_TOKEN
//   MESHLENS_E2E_SERVICE     service to canary (default reviews)
//   MESHLENS_E2E_NAMESPACE   its namespace (default default)
//   MESHLENS_E2E_STABLE      stable version (default v1)
//   MESHLENS_E2E_CANDIDATE   healthy candidate (default v2)
//   MESHLENS_E2E_BAD         failing candidate, made to fail by the demo's flag (default v3)
//   MESHLENS_E2E_STEP        minimum step duration in the Rollout (default 5s)
//   MESHLENS_E2E_TIMEOUT_MS  how long to wait for traffic, steps and rollback (default 180000)
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { api, launch, newPage, shot, target } from './lib.mjs';

const env = (k, d) => process.env[k] || d;
const SERVICE = env('MESHLENS_E2E_SERVICE', 'reviews');
const NS = env('MESHLENS_E2E_NAMESPACE', 'default');
const STABLE = env('MESHLENS_E2E_STABLE', 'v1');
const CANDIDATE = env('MESHLENS_E2E_CANDIDATE', 'v2');
const BAD = env('MESHLENS_E2E_BAD', 'v3');
const STEP = env('MESHLENS_E2E_STEP', '5s');
const TIMEOUT = Number(env('MESHLENS_E2E_TIMEOUT_MS', 180000));
const DEMO = [
  ['productpage', 'v1'],
  ['details', 'v1'],
  ['reviews', 'v1'],
  ['reviews', 'v2'],
  ['reviews', 'v3'],
  ['ratings', 'v1'],
];

let t, b, page;

before(async () => {
  t = await target();
  b = await launch();
  page = await newPage(b.ctx, t.url, t.token);
  page.on('dialog', (d) => d.accept());
});

after(async () => {
  if (page?.errors.length) console.log('page errors:', page.errors);
  await b?.close();
  await t?.close();
});

/** inboundRates reads the version-view graph from the page: service/version → rps in. */
async function inboundRates() {
  return page.evaluate(() => {
    const cy = window.__cy;
    if (!cy) return null;
    const out = {};
    cy.nodes().forEach((n) => {
      if (n.isParent() || !n.data('version')) return;
      out[`${n.data('service')}/${n.data('version')}`] = n.incomers('edge').reduce((s, e) => s + e.data('rps'), 0);
    });
    return out;
  });
}

async function startRollout(name, candidate) {
  await page.goto(`${t.url}/rollouts?new`);
  await page.waitForSelector('[data-testid=rollout-form] select[name=service] option[value="' + SERVICE + '"]', { timeout: 30000, state: 'attached' });
  await page.selectOption('[data-testid=rollout-form] select[name=service]', SERVICE);
  await page.fill('[data-testid=rollout-form] input[name=name]', name);
  await page.fill('[data-testid=rollout-form] input[name=namespace]', NS);
  for (const [field, v] of [['stable', STABLE], ['candidate', candidate]]) {
    const sel = `[data-testid=rollout-form] [name=${field}]`;
    if ((await page.$eval(sel, (e) => e.tagName)) === 'SELECT') await page.selectOption(sel, v);
    else await page.fill(sel, v);
  }
  await page.fill('[data-testid=rollout-form] input[name=steps]', '20, 50, 100');
  await page.fill('[data-testid=rollout-form] input[name=stepDuration]', STEP);
  await page.fill('[data-testid=rollout-form] input[name=minRequests]', '20');
  await page.click('[data-testid=start-rollout]');
  await page.waitForURL(`**/rollouts/${NS}/${name}`, { timeout: 20000 }).catch(async (e) => {
    await shot(page, `rollout-start-failed-${name}`);
    const problem = await page.$eval('.form-problem', (el) => el.textContent).catch(() => '');
    throw new Error(`rollout ${name} did not start: ${problem || e.message}`);
  });
}

async function rolloutState() {
  return page.$eval('[data-testid=rollout-state]', (el) => el.dataset.state).catch(() => '');
}

describe('meshlens UI', { timeout: TIMEOUT * 3 + 60000 }, () => {
  it('shows the demo services and versions with non-zero rates', async () => {
    await page.goto(`${t.url}/topology?view=version`);
    let rates = null;
    const deadline = Date.now() + TIMEOUT;
    while (Date.now() < deadline) {
      rates = await inboundRates();
      if (rates && DEMO.every(([s, v]) => rates[`${s}/${v}`] > 0)) break;
      await page.waitForTimeout(1000);
    }
    await page.waitForTimeout(800);
    await shot(page, 'e2e-topology');
    for (const [s, v] of DEMO) assert.ok(rates?.[`${s}/${v}`] > 0, `${s} ${v} should receive traffic; graph rates: ${JSON.stringify(rates)}`);
    // Versions sit inside their service's box, and edges carry their numbers.
    const grouped = await page.evaluate(() => window.__cy.nodes().filter((n) => n.data('service') === 'reviews' && n.data('version')).map((n) => n.data('parent')));
    assert.equal(new Set(grouped).size, 1, `reviews versions share one group: ${grouped}`);
    const labels = await page.evaluate(() => window.__cy.edges().map((e) => e.data('label')));
    assert.ok(labels.some((l) => /rps/.test(l) && /p99/.test(l)), `edge labels carry rps and p99: ${labels}`);
  });

  it('opens the detail of an edge when it is clicked', async () => {
    const pos = await page.evaluate((svc) => {
      const cy = window.__cy;
      const e = cy.edges().filter((x) => x.target().data('service') === svc && x.data('rps') > 0)[0];
      cy.fit(undefined, 60);
      const p = e.renderedMidpoint();
      const box = cy.container().getBoundingClientRect();
      return { x: box.left + p.x, y: box.top + p.y, id: e.id() };
    }, SERVICE);
    await page.mouse.click(pos.x, pos.y);
    await page.waitForSelector('[data-testid=detail-panel]', { timeout: 30000 });
    const title = await page.textContent('[data-testid=detail-title]');
    assert.match(title, new RegExp(`→.*${SERVICE}`), `detail title names the edge: ${title}`);
    const panel = await page.textContent('[data-testid=detail-panel]');
    assert.match(panel, /rps/);
    assert.match(panel, /p99/);
    assert.match(panel, /Response codes/i);
    await page.waitForTimeout(1200); // charts
    await shot(page, 'e2e-edge-detail');
  });

  it('starts a canary from the UI and shows its steps progressing', async () => {
    const name = `${SERVICE}-canary-e2e-${Date.now() % 100000}`;
    await startRollout(name, CANDIDATE);
    await page.waitForSelector('[data-testid=steps]', { timeout: 30000 });
    const seen = new Set();
    const deadline = Date.now() + TIMEOUT;
    let done = 0;
    while (Date.now() < deadline) {
      const st = await page.$$eval('[data-testid=steps] li', (ls) => ls.map((l) => l.dataset.status));
      seen.add(st.join(','));
      done = st.filter((s) => s === 'done').length;
      if (done >= 1 || (await rolloutState()) === 'succeeded') break;
      await page.waitForTimeout(500);
    }
    await shot(page, 'e2e-canary-progress');
    assert.ok(done >= 1, `at least one step should pass; step states seen: ${[...seen].join(' | ')}; state ${await rolloutState()}`);
    const history = await page.textContent('[data-testid=history]');
    assert.match(history, /pass/i, 'a passing verdict is listed with its numbers');
    // Leave the service as we found it.
    if (!['succeeded', 'rolledback', 'failed'].includes(await rolloutState())) {
      await page.click('[data-testid=abort]');
      await page.waitForFunction(() => ['rolledback', 'rollingback'].includes(document.querySelector('[data-testid=rollout-state]')?.dataset.state), null, { timeout: 30000 });
    }
  });

  it('shows a failing candidate rolled back with its reason', async () => {
    // The previous rollout must have released the service.
    const deadline0 = Date.now() + 30000;
    while (Date.now() < deadline0) {
      const { body } = await api(t.url, t.token, '/api/v1/rollouts');
      const list = Array.isArray(body) ? body : body?.rollouts ?? body?.items ?? [];
      if (!list.some((r) => /rollingback|rolling back|progressing|pending|paused/i.test(JSON.stringify(r.state ?? r.status?.state ?? '')))) break;
      await page.waitForTimeout(500);
    }
    const name = `${SERVICE}-bad-e2e-${Date.now() % 100000}`;
    await startRollout(name, BAD);
    await page.waitForSelector('[data-testid=rollback-reason]', { timeout: TIMEOUT });
    // Wait (up to a minute, not a fixed 1.5 s that a loaded machine can
    // outlast) for the banner to say what the asserts below want; if it
    // never does, they fail with what it says.
    const reasonOf = (s) => s.replace(/Roll(ed|ing) back|All traffic goes to \S+/gi, '').replace(/[\s:.]/g, '');
    await page.waitForFunction((re) => {
      const text = document.querySelector('[data-testid=rollback-reason]')?.textContent ?? '';
      return /roll/i.test(text) && !/routes applied|config version/i.test(text) && text.replace(new RegExp(re, 'gi'), '').replace(/[\s:.]/g, '').length > 10;
    }, 'Roll(ed|ing) back|All traffic goes to \\S+', { timeout: 60000 }).catch(() => {});
    const reason = await page.textContent('[data-testid=rollback-reason]');
    await shot(page, 'e2e-rollback');
    assert.match(reason, /roll/i);
    assert.ok(reasonOf(reason).length > 10, `the banner gives a reason: ${reason}`);
    // Why it rolled back, not the routes push that ended the rollback.
    assert.doesNotMatch(reason, /routes applied|config version/i, `the banner gives the reason of the rollback: ${reason}`);
    assert.ok(['rolledback', 'rollingback', 'failed'].includes(await rolloutState()));
  });
});
