// What only the fixture server can set up: a graph cut by the server's caps,
// and a mesh without traffic. Skipped against a live server (MESHLENS_URL).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startFixture } from './fixture-server.mjs';
import { launch, pixelShare, shot } from './lib.mjs';

const skip = process.env.MESHLENS_URL ? 'runs against the fixture server only' : false;
let b;

describe('graphs the fixture makes', { skip, timeout: 180000 }, () => {
  before(async () => {
    b = await launch();
  });
  after(async () => {
    await b?.close();
  });

  it('says a graph is too large for the caps and offers the grouping that fits', async () => {
    const f = await startFixture({ nodes: 400, truncated: true });
    try {
      const page = await b.ctx.newPage();
      await page.goto(`${f.url}/topology?view=version`);
      await page.waitForSelector('[data-testid=truncated]', { timeout: 60000 });
      const text = await page.textContent('[data-testid=truncated]');
      assert.match(text, /larger than the server's graph caps/);
      assert.match(text, /Group by service \(\d+ services here\)/);
      assert.match(text, /show one namespace: ns-\d+ \(\d+ nodes\)/);
      assert.match(text, /On screen, collapse by namespace \(\d+ boxes\)/);
      await shot(page, 'e2e-too-large');
      // The grouping that fits on screen: one collapsed box per namespace.
      await page.click('[data-testid=collapse-namespaces]');
      await page.waitForFunction(() => new URLSearchParams(location.search).get('group') === 'namespace');
      const boxes = Number(/\((\d+) boxes\)/.exec(text)[1]);
      await page.waitForFunction((n) => window.__cy?.nodes('.collapsed').length === n, boxes, { timeout: 30000 });
      await page.click('[data-testid=truncated] button:has-text("Group by service")');
      await page.waitForFunction(() => new URLSearchParams(location.search).get('view') === 'service');
      await page.close();
    } finally {
      await f.close();
    }
  });

  it('exports a graph of more than 150 nodes as on screen: the PNG and the SVG carry its service boxes', async () => {
    const f = await startFixture({ nodes: 300 });
    try {
      const page = await b.ctx.newPage();
      page.errors = [];
      page.on('pageerror', (e) => page.errors.push(String(e)));
      await page.goto(`${f.url}/topology?view=version&labels=off`);
      await page.waitForFunction(() => window.__cy?.nodes().length === 300 && window.__meshlensFirstRender !== undefined, null, { timeout: 120000 });
      // Zoomed in enough to read the boxes' names, on the middle of the graph.
      await page.evaluate(() => {
        const cy = window.__cy;
        cy.zoom({ level: 1, renderedPosition: { x: cy.width() / 2, y: cy.height() / 2 } });
      });
      await page.waitForTimeout(500);
      await shot(page, 'e2e-large-boxes');
      const { readFile } = await import('node:fs/promises');
      const exported = async (what) => {
        await page.click('[data-testid=export-menu] summary');
        const [dl] = await Promise.all([page.waitForEvent('download', { timeout: 60000 }), page.click(`[data-testid=export-${what}]`)]);
        return readFile(await dl.path());
      };
      // A picture's share of pixels in a box's fill (light theme: plain, degraded, failing, selected).
      const boxShare = (png) => pixelShare(page, png, { colours: ['248,250,252', '255,247,230', '253,240,233', '232,240,254'] });

      // The PNG shows the boxes as much as the screen does (a large graph's are
      // painted on a layer of their own, under cytoscape's canvas).
      const screen = await boxShare(await page.locator('[data-testid=graph-canvas]').screenshot());
      assert.ok(screen > 0.02, `boxes are on screen (${(screen * 100).toFixed(1)}% of the graph)`);
      const png = await boxShare(await exported('png'));
      assert.ok(png > screen * 0.6, `the PNG shows the boxes: ${(png * 100).toFixed(1)}% of it is box, ${(screen * 100).toFixed(1)}% of the screen`);

      // The SVG: the boxes in view, named, and every node in view inside one.
      const svg = (await exported('svg')).toString();
      const num = (tag, k) => Number(new RegExp(`\\b${k}="([-\\d.]+)"`).exec(tag)[1]);
      const boxes = [...svg.matchAll(/<rect [^>]*rx="6"[^>]*\/>/g)].map(([t]) => ({ x: num(t, 'x'), y: num(t, 'y'), w: num(t, 'width'), h: num(t, 'height') }));
      assert.ok(boxes.length > 0, 'the SVG has boxes');
      assert.match(svg, /font-weight="600"[^>]*>svc-\d+ \(ns-\d\)<\/text>/, 'boxes are named by service and namespace');
      const { w, h } = await page.evaluate(() => ({ w: window.__cy.width(), h: window.__cy.height() }));
      const nodes = [...svg.matchAll(/<rect [^>]*rx="5"[^>]*\/>/g)].map(([t]) => ({ x: num(t, 'x') + num(t, 'width') / 2, y: num(t, 'y') + num(t, 'height') / 2 })).filter((n) => n.x >= 0 && n.y >= 0 && n.x <= w && n.y <= h);
      assert.ok(nodes.length > 5, `nodes in view: ${nodes.length}`);
      const outside = nodes.filter((n) => !boxes.some((bx) => n.x >= bx.x && n.x <= bx.x + bx.w && n.y >= bx.y && n.y <= bx.y + bx.h));
      assert.deepEqual(outside, [], 'every version in view is drawn inside its service box');
      assert.deepEqual(page.errors, []);
      await page.close();
    } finally {
      await f.close();
    }
  });

  it('says there is no traffic and exports nothing from an empty graph', async () => {
    const f = await startFixture({ empty: true });
    try {
      const page = await b.ctx.newPage();
      await page.goto(`${f.url}/topology`);
      await page.waitForSelector('text=No traffic yet', { timeout: 30000 });
      await page.click('[data-testid=export-menu] summary');
      assert.match(await page.textContent('[data-testid=export-menu]'), /graph is empty in this window/);
      for (const k of ['png', 'svg', 'json', 'dot']) assert.equal(await page.isDisabled(`[data-testid=export-${k}]`), true, `${k} export is disabled`);
      await page.close();
    } finally {
      await f.close();
    }
  });
});
