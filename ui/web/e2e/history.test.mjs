// Browser test of an object's history (Config page → an object → History):
// against a real `meshlens serve` with ClickHouse (MESHLENS_URL, operator
// MESHLENS_TOKEN; scripts/ui-e2e.sh), a VirtualService is created and its
// weights changed through the API, and its History tab shows both changes,
// newest first, with who made them, the config version each produced and
// the changed weight lines.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { api, launch, newPage, shot, target } from './lib.mjs';

const NS = process.env.MESHLENS_E2E_NAMESPACE || 'default';
const NAME = `history-e2e-${Date.now() % 100000}`;
const vs = (v1, v2) => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ${NAME}, namespace: ${NS}}
spec:
  hosts: [${NAME}]
  http:
  - route:
    - destination: {host: ${NAME}, subset: v1}
      weight: ${v1}
    - destination: {host: ${NAME}, subset: v2}
      weight: ${v2}
`;

const RO = `history-ro-${Date.now() % 100000}`;
const rollout = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${RO}, namespace: ${NS}}
spec: {hosts: [${RO}.${NS}.svc.cluster.local], ports: [{number: 9080, name: http, protocol: HTTP}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ${RO}, namespace: ${NS}}
spec: {host: ${RO}, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
---
apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: ${RO}, namespace: ${NS}}
spec: {service: ${RO}, stable: v1, candidate: v2, strategy: {canary: {steps: [10, 100], minDuration: 1h}}}
`;

let t, b, page;

before(async () => {
  t = await target();
  b = await launch();
  page = await newPage(b.ctx, t.url, t.token);
  page.on('dialog', (d) => d.accept());
});

after(async () => {
  if (t && !t.fixture) {
    for (const path of [`VirtualService/${NS}/${NAME}`, `Rollout/${NS}/${RO}`, `VirtualService/${NS}/${RO}`, `DestinationRule/${NS}/${RO}`, `ServiceEntry/${NS}/${RO}`]) {
      await api(t.url, t.token, `/api/v1/config/${path}`, { method: 'DELETE' }).catch(() => {});
    }
  }
  if (page?.errors.length) console.log('page errors:', page.errors);
  await b?.close();
  await t?.close();
});

describe('object history', { timeout: 120000 }, () => {
  it('shows who changed a config object, when, the config version and what changed', async (ctx) => {
    if (t.fixture) return ctx.skip('needs meshlens serve with ClickHouse (MESHLENS_URL): the fixture server keeps no audit trail');
    const apply = async (yaml) => {
      const r = await api(t.url, t.token, '/api/v1/config', { method: 'POST', body: yaml, headers: { 'Content-Type': 'application/yaml' } });
      assert.equal(r.status, 200, `apply: ${JSON.stringify(r.body)}`);
      return r.body.version;
    };
    const created = await apply(vs(90, 10));
    const updated = await apply(vs(80, 20));

    await page.goto(`${t.url}/config`);
    const row = page.locator('[data-testid=config-objects] tr', { hasText: NAME }).first();
    await row.waitFor({ timeout: 20000 });
    await row.click();
    await page.click('[data-testid=history-tab]');
    // The audit trail is written to ClickHouse in the background; the tab refreshes every 10 s.
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=history-entry]').length >= 2, null, { timeout: 60000 });
    const entries = await page.$$eval('[data-testid=history-entry]', (ls) =>
      ls.map((l) => ({
        action: l.querySelector('.badge')?.textContent,
        actor: l.querySelector('[data-testid=history-actor]')?.textContent,
        version: l.querySelector('[data-testid=history-version]')?.textContent,
        del: [...l.querySelectorAll('.dl-del')].map((d) => d.textContent.replace(/\s+/g, ' ').trim()),
        add: [...l.querySelectorAll('.dl-add')].map((d) => d.textContent.replace(/\s+/g, ' ').trim()),
        time: l.querySelector('time')?.getAttribute('datetime'),
      })),
    );
    await shot(page, 'e2e-config-history');
    assert.equal(entries.length, 2, `two changes: ${JSON.stringify(entries)}`);
    const [upd, cre] = entries;
    assert.equal(upd.action, 'update');
    assert.equal(cre.action, 'create');
    for (const e of entries) assert.match(e.actor, /^token:[0-9a-f]+ \(operator\)$/, `who: ${e.actor}`);
    assert.equal(upd.version, `config v${updated}`);
    assert.equal(cre.version, `config v${created}`);
    assert.deepEqual(upd.del, ['− weight: 90', '− weight: 10']);
    assert.deepEqual(upd.add, ['+ weight: 80', '+ weight: 20']);
    assert.ok(cre.add.some((l) => l.includes(`name: ${NAME}`)), `the creation adds the object: ${cre.add}`);
    assert.ok(Date.parse(upd.time) >= Date.parse(cre.time), `newest first: ${upd.time} after ${cre.time}`);
    assert.deepEqual(page.errors, []);
  });

  it("shows a rollout's steps and pushes, who made them and the config version of each push", async (ctx) => {
    if (t.fixture) return ctx.skip('needs meshlens serve with ClickHouse (MESHLENS_URL)');
    const r = await api(t.url, t.token, '/api/v1/config', { method: 'POST', body: rollout, headers: { 'Content-Type': 'application/yaml' } });
    assert.equal(r.status, 200, `apply: ${JSON.stringify(r.body)}`);
    let paused;
    for (let i = 0; i < 100 && paused?.status !== 200; i++) {
      await new Promise((res) => setTimeout(res, 200));
      paused = await api(t.url, t.token, `/api/v1/rollouts/${NS}/${RO}/pause`, { method: 'POST' });
    }
    assert.equal(paused.status, 200, `pause: ${JSON.stringify(paused.body)}`);
    await page.goto(`${t.url}/rollouts/${NS}/${RO}`);
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=object-history] [data-testid=history-entry]').length >= 4, null, { timeout: 60000 });
    const entries = await page.$$eval('[data-testid=object-history] [data-testid=history-entry]', (ls) =>
      ls.map((l) => ({
        action: l.querySelector('.badge')?.textContent,
        actor: l.querySelector('[data-testid=history-actor]')?.textContent,
        version: l.querySelector('[data-testid=history-version]')?.textContent ?? '',
        diff: l.querySelector('[data-testid=history-diff]')?.textContent ?? '',
      })),
    );
    await shot(page, 'e2e-rollout-history');
    assert.deepEqual(entries.map((e) => e.action), ['pause', 'push', 'start', 'create'], JSON.stringify(entries));
    const [pause, push, start, create] = entries;
    assert.match(pause.actor, /^token:[0-9a-f]+ \(operator\)$/);
    assert.match(pause.diff, /progressing -> paused/);
    assert.equal(push.actor, 'engine');
    assert.match(push.version, /^config v\d+$/);
    assert.match(push.diff, /stable 90%, candidate 10%/);
    assert.equal(start.actor, 'engine');
    assert.match(create.actor, /^token:[0-9a-f]+ \(operator\)$/);
    assert.match(create.version, /^config v\d+$/);
    assert.deepEqual(page.errors, []);
  });
});
