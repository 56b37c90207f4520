// Browser tests of the topology page's own features: landing on the printed
// URL, impact and paths, export and shareable links, keyboard, themes and
// signed-out viewers. Like ui.test.mjs they run against MESHLENS_URL (a
// `meshlens serve` fed by `meshlens demo`) or, without it, the fixture server.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { launch, shot, target } from './lib.mjs';

const TIMEOUT = Number(process.env.MESHLENS_E2E_TIMEOUT_MS || 180000);
const NS = process.env.MESHLENS_E2E_NAMESPACE || 'default';
const RATINGS = `${NS}/ratings/v1`;
const PRODUCTPAGE = `${NS}/productpage/v1`;
let t, b;

before(async () => {
  t = await target();
  b = await launch();
});

after(async () => {
  await b?.close();
  await t?.close();
});

/** open loads a page (with the token unless signedOut) and collects its errors. */
async function open(path, { signedOut = false } = {}) {
  const page = await b.ctx.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(String(e)));
  if (!signedOut && t.token) await page.addInitScript((tok) => localStorage.setItem('meshlens.token', tok), t.token);
  if (signedOut) await page.addInitScript(() => localStorage.removeItem('meshlens.token'));
  await page.goto(t.url + path);
  return page;
}

/** graphNodes waits until the canvas shows nodes and returns their ids. */
async function graphNodes(page, timeout = TIMEOUT) {
  await page.waitForFunction(() => (window.__cy?.nodes().filter((n) => !n.isParent()).length ?? 0) > 1, null, { timeout });
  return page.evaluate(() => window.__cy.nodes().filter((n) => !n.isParent()).map((n) => n.id()));
}

describe('topology page', { timeout: TIMEOUT * 2 + 60000 }, () => {
  it('shows the live graph at the URL make run prints (/)', async () => {
    const page = await open('/');
    const ids = await graphNodes(page);
    assert.ok(ids.some((id) => id.includes('reviews')), `graph has the demo services: ${ids}`);
    assert.equal(new URL(page.url()).pathname, '/topology', 'the root becomes /topology');
    assert.equal(await page.getAttribute('nav li a[href="/topology"]', 'aria-current'), 'page');
    await shot(page, 'e2e-landing');
    assert.deepEqual(page.errors, []);
    await page.close();
  });

  it('highlights the blast radius of a node and lists the callers it reaches', async () => {
    const page = await open(`/topology?view=version&sel=${encodeURIComponent(RATINGS)}`);
    await graphNodes(page);
    await page.waitForSelector('[data-testid=impact-panel]');
    await page.click('[data-testid=blast-radius]');
    await page.waitForSelector('[data-testid=blast-radius-count]', { timeout: 30000 });
    const count = Number(await page.textContent('[data-testid=blast-radius-count]'));
    assert.ok(count >= 2, `ratings is reached from reviews and productpage: ${count}`);
    assert.match(page.url(), /impact=1/, 'the blast radius is in the URL');
    await page.waitForFunction((pp) => window.__cy.getElementById(pp).hasClass('hl'), PRODUCTPAGE, { timeout: 10000 });
    const cls = await page.evaluate(([r, d]) => ({ root: window.__cy.getElementById(r).hasClass('hl-root'), details: window.__cy.getElementById(d).hasClass('faded') }), [RATINGS, `${NS}/details/v1`]);
    assert.deepEqual(cls, { root: true, details: true }, 'the node is the root, what does not call it fades');
    await shot(page, 'e2e-blast-radius');
    assert.deepEqual(page.errors, []);
    await page.close();
  });

  it('shows the call path between two nodes', async () => {
    const page = await open(`/topology?view=version&sel=${encodeURIComponent(PRODUCTPAGE)}`);
    await graphNodes(page);
    await page.waitForSelector('[data-testid=path-to]');
    await page.selectOption('[data-testid=path-to]', RATINGS);
    await page.waitForSelector('[data-testid=path-result] ol li', { timeout: 30000 });
    const steps = await page.$$eval('[data-testid=path-result] ol li', (ls) => ls.map((l) => l.textContent));
    assert.ok(steps.length === 3 && /productpage/.test(steps[0]) && /reviews/.test(steps[1]) && /ratings/.test(steps[2]), `productpage → reviews → ratings: ${steps}`);
    const hl = await page.evaluate(() => window.__cy.edges('.hl').map((e) => e.id()));
    assert.equal(hl.length, 2, `the path's two edges are highlighted: ${hl}`);
    await shot(page, 'e2e-path');
    assert.deepEqual(page.errors, []);
    await page.close();
  });

  it('exports the view as PNG, SVG, JSON and DOT', async () => {
    const page = await open('/topology?view=version');
    await graphNodes(page);
    await page.waitForTimeout(500);
    const save = async (what) => {
      await page.click('[data-testid=export-menu] summary');
      const [dl] = await Promise.all([page.waitForEvent('download', { timeout: 15000 }), page.click(`[data-testid=export-${what}]`)]);
      return { name: dl.suggestedFilename(), data: await readFile(await dl.path()) };
    };
    const png = await save('png');
    assert.match(png.name, /^meshlens-version-.*\.png$/);
    assert.deepEqual([...png.data.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], 'a PNG file');
    const svg = (await save('svg')).data.toString();
    assert.match(svg, /^<svg xmlns/);
    assert.match(svg, />productpage</, 'the SVG has the service boxes and labels on screen');
    assert.ok((svg.match(/<path d="M[^"]*Q/g) ?? []).length >= 5, 'and the edges');
    const json = JSON.parse((await save('json')).data.toString());
    assert.ok(json.nodes.length > 3 && json.edges.length > 3 && json.nodes.every((n) => n.health), 'the API document');
    const dot = (await save('dot')).data.toString();
    assert.match(dot, /^digraph meshlens \{/);
    assert.equal((dot.match(/->/g) ?? []).length, json.edges.length);
    assert.deepEqual(page.errors, []);
    await page.close();
  });

  it('gives a link that reproduces the view', async () => {
    const view = `/topology?view=service&namespace=${NS}&q=reviews&labels=off&sel=${encodeURIComponent(`${NS}/reviews`)}&impact=1`;
    const page = await open(view);
    await graphNodes(page);
    await page.click('[data-testid=export-menu] summary');
    const url = await page.inputValue('[data-testid=share-url]');
    const pinned = await page.inputValue('[data-testid=share-url-pinned]');
    assert.match(pinned, /[?&]end=\d{4}-\d\d-\d\dT/, 'the pinned link names the moment');
    await page.close();
    const other = await open(url.replace(t.url, ''));
    await graphNodes(other);
    const p = new URL(other.url()).searchParams;
    assert.deepEqual([p.get('view'), p.get('namespace'), p.get('q'), p.get('labels'), p.get('sel'), p.get('impact')], ['service', NS, 'reviews', 'off', `${NS}/reviews`, '1']);
    assert.equal(await other.inputValue('[data-testid=search]'), 'reviews');
    assert.match(await other.textContent('[data-testid=detail-title]'), /reviews/);
    await other.waitForSelector('[data-testid=blast-radius-count]', { timeout: 30000 });
    assert.equal(await other.evaluate(() => window.__cy.edges().every((e) => !e.data('label'))), true, 'edge labels stay off');
    await shot(other, 'e2e-shared-view');
    await other.close();
  });

  it('moves through the graph and its panel from the keyboard', async () => {
    const page = await open('/topology?view=version');
    await graphNodes(page);
    await page.focus('[data-testid=graph-canvas]');
    await page.keyboard.press('ArrowRight');
    await page.waitForSelector('[data-testid=detail-title]');
    const first = await page.textContent('[data-testid=detail-title]');
    await page.keyboard.press('ArrowRight');
    await page.waitForFunction((t) => document.querySelector('[data-testid=detail-title]')?.textContent !== t, first);
    assert.match(page.url(), /sel=/, 'the node chosen from the keyboard is selected');
    // Into the panel: a caller or callee row opens its edge with Enter.
    await page.goto(`${t.url}/topology?view=version&sel=${encodeURIComponent(RATINGS)}`);
    await graphNodes(page);
    await page.focus('[data-testid=detail-panel] tr.clickable');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => /→/.test(document.querySelector('[data-testid=detail-title]')?.textContent ?? ''));
    await page.keyboard.press('Escape');
    await page.waitForSelector('[data-testid=detail-panel]', { state: 'detached' });
    assert.deepEqual(page.errors, []);
    await page.close();
  });

  it('tells health by pattern as well as colour', async () => {
    const page = await open('/topology?view=version');
    await graphNodes(page);
    await page.waitForFunction(() => window.__cy.nodes('.version.health-failing').length > 0, null, { timeout: TIMEOUT });
    const styles = await page.evaluate(() => ({
      failing: window.__cy.nodes('.version.health-failing').first().style('border-style'),
      healthy: window.__cy.nodes('.version.health-healthy').first().style('border-style'),
      failingEdge: window.__cy.edges('.health-failing').first().style('line-style'),
    }));
    assert.deepEqual(styles, { failing: 'double', healthy: 'solid', failingEdge: 'dashed' });
    assert.equal(await page.$$eval('.legend .swatch', (s) => s.length), 4);
    await page.close();
  });

  it('switches to the dark theme and keeps it', async () => {
    const page = await open('/topology?view=version');
    await graphNodes(page);
    await page.click('[data-testid=theme]');
    await page.waitForFunction(() => document.documentElement.dataset.theme === 'dark');
    const bg = await page.evaluate(() => window.__cy.nodes('.version').first().style('background-color'));
    assert.equal(bg, 'rgb(17,26,43)', 'the graph restyles for the dark theme');
    await page.waitForTimeout(500);
    await shot(page, 'e2e-dark');
    await page.reload();
    await graphNodes(page);
    assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'dark', 'the choice survives a reload');
    await page.click('[data-testid=theme]');
    await page.waitForFunction(() => document.documentElement.dataset.theme === 'light');
    await page.close();
  });

  it('shows a signed-out viewer the operator buttons disabled', async () => {
    const page = await open('/rollouts', { signedOut: true });
    await page.waitForSelector('[data-testid=new-rollout]');
    assert.equal(await page.isDisabled('[data-testid=new-rollout]'), true);
    assert.match(await page.getAttribute('[data-testid=new-rollout]', 'title'), /operator token/);
    await page.goto(`${t.url}/config?tab=apply`);
    await page.waitForSelector('[data-testid=apply]');
    assert.equal(await page.isDisabled('[data-testid=apply]'), true);
    assert.equal(await page.isDisabled('[data-testid=validate]'), true);
    // Signing in enables them without a reload.
    await page.click('[data-testid=sign-in]');
    await page.fill('[data-testid=login] input[name=token]', t.token || 'some-token');
    await page.click('[data-testid=login] button[type=submit]');
    await page.waitForFunction(() => !document.querySelector('[data-testid=apply]').disabled);
    await page.close();
  });
});

