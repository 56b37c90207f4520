// Browser test of grouping and saved views: group the live graph by a label,
// collapse a group, move a node, save the view on the server, reload the page
// and load the view back; a view naming nodes that are gone loads and says
// which; deleting it from the menu removes it on the server. Saved views live
// in ClickHouse, so this runs against `meshlens serve` (MESHLENS_URL, as
// scripts/ui-e2e.sh sets it), not the fixture server.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { api, launch, shot, target } from './lib.mjs';

const TIMEOUT = Number(process.env.MESHLENS_E2E_TIMEOUT_MS || 180000);
const NS = process.env.MESHLENS_E2E_NAMESPACE || 'default';
const PRODUCTPAGE = `${NS}/productpage/v1`;
const REVIEWS = 'group:app=reviews';
const NAME = `e2e grouped ${process.pid}`;
const GHOST = `e2e ghost ${process.pid}`;
let t, b;

before(async () => {
  t = await target();
  b = await launch();
});

after(async () => {
  if (t && !t.fixture) {
    for (const n of [NAME, GHOST]) await api(t.url, t.token, `/api/v1/views/${encodeURIComponent(n)}`, { method: 'DELETE' });
  }
  await b?.close();
  await t?.close();
});

async function open(path) {
  const page = await b.ctx.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(String(e)));
  page.on('dialog', (d) => d.accept());
  if (t.token) await page.addInitScript((tok) => localStorage.setItem('meshlens.token', tok), t.token);
  await page.goto(t.url + path);
  return page;
}

/** graphReady waits until the canvas shows the demo's productpage. */
async function graphReady(page) {
  await page.waitForFunction((id) => window.__cy?.getElementById(id).nonempty() === true, PRODUCTPAGE, { timeout: TIMEOUT });
}

/** screen returns a point of the graph (model coordinates) in page pixels. */
async function onScreen(page, modelPoint) {
  const box = await page.locator('[data-testid=graph-canvas]').boundingBox();
  const r = await page.evaluate(({ x, y }) => {
    const cy = window.__cy;
    return { x: x * cy.zoom() + cy.pan().x, y: y * cy.zoom() + cy.pan().y };
  }, modelPoint);
  return { x: box.x + r.x, y: box.y + r.y };
}

/** settled waits until no node has moved for a second: new nodes relayout the graph, with an animation. */
async function settled(page) {
  let last = '';
  for (let i = 0; i < 60; i++) {
    const now = await page.evaluate(() => JSON.stringify(window.__cy.nodes().map((n) => [n.id(), Math.round(n.position().x), Math.round(n.position().y)])));
    if (now === last) return;
    last = now;
    await page.waitForTimeout(1000);
  }
  throw new Error('the graph never stopped moving');
}

async function openViews(page) {
  await page.click('[data-testid=views-menu] > summary');
  await page.waitForSelector('[data-testid=views-menu][open] [data-testid=view-name]');
}

describe('grouping and saved views', { timeout: TIMEOUT * 2 + 60000 }, () => {
  it('groups by a label, collapses a group, saves the view, and loads it back after a reload', { skip: process.env.MESHLENS_URL ? false : 'saved views need meshlens serve with ClickHouse (MESHLENS_URL; scripts/ui-e2e.sh sets it)' }, async () => {
    const page = await open('/topology?view=version');
    await graphReady(page);

    // Group by app: the versions of reviews sit in one box, named by the label.
    await page.selectOption('[data-testid=group-by]', 'app');
    await page.waitForFunction((id) => window.__cy.getElementById(id).children().length >= 3, REVIEWS, { timeout: 60000 });
    const members = await page.evaluate((id) => window.__cy.getElementById(id).children().map((n) => n.id()).sort(), REVIEWS);
    for (const v of ['v1', 'v2', 'v3']) assert.ok(members.includes(`${NS}/reviews/${v}`), `reviews ${v} is in the box: ${members}`);
    assert.ok(members.every((id) => id.startsWith(`${NS}/reviews`)), `only reviews is in the box: ${members}`);
    assert.equal(await page.evaluate((id) => window.__cy.getElementById(id).data('label'), REVIEWS), 'app reviews');

    // Double-click the box's edge to collapse it into one node carrying its edges
    // (brought into view first, as a user would pan to it).
    await settled(page);
    await page.click('button[title="Fit to screen"]');
    // Just inside the box's padding, above and left of its first member.
    const bb = await page.evaluate((id) => window.__cy.getElementById(id).children().boundingBox({ includeLabels: false, includeOverlays: false }), REVIEWS);
    const corner = await onScreen(page, { x: bb.x1 - 5, y: bb.y1 - 5 });
    // From here on the page logs every layout run and every change of its nodes.
    await page.evaluate(() => {
      const log = (window.__e2eLayoutLog = []);
      window.__cy.on('layoutstart', () => log.push('layout'));
      window.__cy.on('add remove', 'node', () => log.push('nodes'));
    });
    await page.mouse.dblclick(corner.x, corner.y);
    await page.waitForFunction((id) => window.__cy.getElementById(id).hasClass('collapsed'), REVIEWS, { timeout: 30000 });
    assert.ok(new URL(page.url()).searchParams.get('collapsed') === 'reviews', `the URL keeps the collapsed group: ${page.url()}`);
    assert.equal(await page.evaluate((id) => window.__cy.getElementById(id).nonempty(), `${NS}/reviews/v1`), false, 'members are hidden');
    assert.ok(await page.evaluate((id) => window.__cy.edges(`[target = "${id}"]`).length > 0, REVIEWS), 'the collapsed group receives the edges to its members');
    assert.match(await page.evaluate((id) => window.__cy.getElementById(id).data('label'), REVIEWS), /^app reviews \([3-9]\)$/, 'the collapsed group counts its members');

    // Move productpage: a pinned node.
    await settled(page); // the relayout after collapsing animates
    // Then the picture holds still through the next two refreshes of the live
    // graph: a layout runs only after the set of nodes changed (the collapse,
    // or a node the demo's traffic adds or drops), and without such a change
    // no node moves.
    const still = await page.evaluate(() => ({ at: window.__e2eLayoutLog.length, pos: window.__cy.nodes().map((n) => `${n.id()}@${Math.round(n.position().x)},${Math.round(n.position().y)}`).sort() }));
    for (let i = 0; i < 2; i++) {
      const last = await page.evaluate(() => window.__meshlensLastRender);
      await page.waitForFunction((t) => window.__meshlensLastRender > t, last, { timeout: 30000 });
    }
    await settled(page);
    const runs = await page.evaluate(() => window.__e2eLayoutLog.slice());
    assert.ok(runs.includes('layout'), `the collapse laid the graph out: ${runs}`);
    let changed = false;
    for (const [i, ev] of runs.entries()) {
      if (ev === 'nodes') changed = true;
      else {
        assert.ok(changed, `layout run ${i} of [${runs}] follows no change of the nodes`);
        changed = false;
      }
    }
    if (!runs.slice(still.at).includes('nodes')) {
      const pos = await page.evaluate(() => window.__cy.nodes().map((n) => `${n.id()}@${Math.round(n.position().x)},${Math.round(n.position().y)}`).sort());
      assert.deepEqual(pos, still.pos, 'no node moved through two refreshes of the same nodes');
    }
    // A block body: cy.center() returns cy, which evaluate would copy whole (see guardEvaluate in lib.mjs).
    await page.evaluate((id) => {
      window.__cy.center(window.__cy.getElementById(id));
    }, PRODUCTPAGE);
    const before = await page.evaluate((id) => window.__cy.getElementById(id).position(), PRODUCTPAGE);
    const from = await onScreen(page, before);
    await page.mouse.move(from.x, from.y);
    await page.mouse.down();
    await page.mouse.move(from.x + 40, from.y + 70, { steps: 8 });
    await page.mouse.up();
    const moved = await page.evaluate((id) => window.__cy.getElementById(id).position(), PRODUCTPAGE);
    assert.ok(Math.abs(moved.y - before.y) > 20, `productpage moved: ${JSON.stringify(before)} → ${JSON.stringify(moved)}`);

    // Select it and save the view.
    await page.evaluate((id) => {
      window.__cy.getElementById(id).emit('tap');
    }, PRODUCTPAGE);
    await page.waitForFunction((id) => new URL(location.href).searchParams.get('sel') === id, PRODUCTPAGE);
    await openViews(page);
    await page.fill('[data-testid=view-name]', NAME);
    await page.click('[data-testid=view-save]');
    await page.waitForSelector(`[data-testid=view-load][data-name="${NAME}"]`, { timeout: 30000 });
    const saved = await api(t.url, t.token, `/api/v1/views/${encodeURIComponent(NAME)}`);
    assert.equal(saved.status, 200, JSON.stringify(saved.body));
    assert.equal(saved.body.groupBy, 'app');
    assert.deepEqual(saved.body.collapsed, ['reviews']);
    assert.equal(saved.body.selected, PRODUCTPAGE);
    assert.ok(Math.abs(saved.body.pinned[PRODUCTPAGE].y - moved.y) < 1, `pinned position saved: ${JSON.stringify(saved.body.pinned)}`);
    await shot(page, 'e2e-views-saved');

    // Reload on a plain topology page: nothing grouped; load the view back.
    await page.goto(t.url + '/topology');
    await page.reload();
    await graphReady(page);
    assert.equal(await page.evaluate((id) => window.__cy.getElementById(id).nonempty(), REVIEWS), false, 'a fresh page is not grouped by app');
    await openViews(page);
    await page.click(`[data-testid=view-load][data-name="${NAME}"]`);
    await page.waitForFunction((id) => window.__cy.getElementById(id).hasClass('collapsed'), REVIEWS, { timeout: 30000 });
    assert.equal(await page.inputValue('[data-testid=group-by]'), 'app');
    const url = new URL(page.url());
    assert.equal(url.searchParams.get('group'), 'app');
    assert.equal(url.searchParams.get('sel'), PRODUCTPAGE);
    await page.waitForFunction(({ id, y }) => Math.abs(window.__cy.getElementById(id).position().y - y) < 1, { id: PRODUCTPAGE, y: saved.body.pinned[PRODUCTPAGE].y }, { timeout: 15000 });
    await page.waitForSelector('[data-testid=detail-title]');
    assert.equal(await page.locator('[data-testid=gone-nodes]').count(), 0, 'every node of the view is there');
    await shot(page, 'e2e-views-loaded');
    assert.deepEqual(page.errors, []);
    await page.close();
  });

  it('shows the traffic of an edge between two collapsed groups, and says what it sums', async () => {
    const edge = 'group:app=reviews->group:app=ratings';
    const page = await open(`/topology?view=version&group=app&collapsed=ratings,reviews&sel=${encodeURIComponent(edge)}`);
    await page.waitForFunction((id) => window.__cy?.getElementById(id).nonempty() === true, edge, { timeout: TIMEOUT });
    // reviews v2 and v3 call ratings: the drawn edge is their sum, and says so.
    const drawn = await page.evaluate((id) => window.__cy.getElementById(id).data(), edge);
    assert.ok(drawn.parts >= 2 && drawn.rps > 0, `the edge stands for the calls of several versions: ${JSON.stringify(drawn)}`);
    assert.match(drawn.label, new RegExp(`^Σ${drawn.parts} \\S+ rps`), 'the label says it is a sum');
    const panel = page.locator('[data-testid=detail-panel]');
    await panel.locator('[data-testid=merged-edge-note]').waitFor({ timeout: 30000 });
    const text = await panel.textContent();
    assert.doesNotMatch(text, /no traffic/);
    assert.match(text, new RegExp(`the sum of ${drawn.parts} edges`));
    assert.match(await page.textContent('[data-testid=detail-title]'), /app reviews \(\d+\)→app ratings \(\d+\)/);
    const stat = async (label) => panel.locator('.stat', { has: page.locator('.stat-label', { hasText: new RegExp(`^${label}$`) }) }).locator('.stat-value').textContent();
    assert.notEqual(await stat('rps'), '0', 'the panel shows its traffic');
    assert.match(await stat('p99'), /^≤ \d/, 'its p99 is said to be a bound');
    assert.match(await panel.locator('[data-testid=merged-edge-note]').textContent(), /collapsed groups\. Rates, requests, errors\s+and the counts by code are their sums/);
    // One row per edge it stands for, between the members.
    const rows = await panel.locator('table.mini tr').allTextContents();
    assert.equal(rows.length, Math.min(12, drawn.parts), `one row per edge summed: ${rows}`);
    for (const r of rows) assert.match(r, /^reviews( v\d+)? → ratings( v\d+)?/, r);
    await shot(page, 'e2e-views-merged-edge');
    assert.deepEqual(page.errors, []);
    await page.close();
  });

  it('loads a view whose nodes are gone and names them; deletes a view from the menu', { skip: process.env.MESHLENS_URL ? false : 'saved views need meshlens serve with ClickHouse (MESHLENS_URL)' }, async () => {
    const ghost = `${NS}/ghost/v9`;
    const put = await api(t.url, t.token, `/api/v1/views/${encodeURIComponent(GHOST)}`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ graph: 'version', window: '5m', filters: {}, pinned: { [ghost]: { x: 10, y: 10 }, [PRODUCTPAGE]: { x: -300, y: 40 } }, selected: ghost }),
    });
    assert.equal(put.status, 201, JSON.stringify(put.body));
    const page = await open('/topology');
    await graphReady(page);
    await openViews(page);
    await page.click(`[data-testid=view-load][data-name="${GHOST}"]`);
    const banner = await page.waitForSelector('[data-testid=gone-nodes]', { timeout: 30000 });
    const text = await banner.textContent();
    assert.match(text, new RegExp(`a node no longer in this graph: ${ghost}\\.`));
    // The rest of the view is applied: productpage sits where the view pins it.
    await page.waitForFunction((id) => Math.abs(window.__cy.getElementById(id).position().x + 300) < 1, PRODUCTPAGE, { timeout: 15000 });
    await shot(page, 'e2e-views-gone');

    await openViews(page);
    await page.click(`[data-testid=view-load][data-name="${GHOST}"] + [data-testid=view-delete]`);
    await page.waitForFunction((n) => !document.querySelector(`[data-testid=view-load][data-name="${n}"]`), GHOST, { timeout: 15000 });
    assert.equal((await api(t.url, t.token, `/api/v1/views/${encodeURIComponent(GHOST)}`)).status, 404);
    assert.deepEqual(page.errors, []);
    await page.close();
  });
});
