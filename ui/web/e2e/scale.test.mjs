// Issue 15's scale graph as a user meets it: 5,000 nodes and 20,000 edges
// from the fixture server, drawn by BigGraph (our own 2D canvas renderer,
// src/components/bigcanvas.ts). Every node on the canvas; a click on a node
// or an edge opens its details and marks it; a drag pans; the wheel, the +
// key and a two-finger pinch zoom; a dragged node stays where it is dropped;
// a search marks its match with a halo and brings it into view; a refresh
// recolours what changed and leaves the view where the user put it; the
// dark theme repaints the graph; a double click on a group's box collapses
// it and one on the collapsed group expands it; PNG and SVG exports that are
// not blank. How fast is make bench's business (e2e/timing.mjs), not this
// test's. Skipped against a live server (MESHLENS_URL).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startFixture } from './fixture-server.mjs';
import { launch, pixelShare, shot } from './lib.mjs';

const skip = process.env.MESHLENS_URL ? 'runs against the fixture server only' : false;

/** the light theme's colours as drawn: the selection underlay and the search halo over a box's fill (#f8fafc), the failing health colour */
const SELECTED = { rgb: [195, 212, 248], within: 40 };
const HALO = { rgb: [153, 182, 244], within: 60 };
const FAILING = { rgb: [213, 94, 0], within: 70 };

describe('a 5,000-node, 20,000-edge graph', { skip, timeout: 900000 }, () => {
  let b, f, page;
  before(async () => {
    f = await startFixture({ nodes: 5000, edges: 20000 });
    b = await launch();
    page = await b.ctx.newPage();
    // Generous: the machine running the tests may be busy and the page is big; make bench times it.
    page.setDefaultTimeout(120000);
    page.errors = [];
    page.on('pageerror', (e) => page.errors.push(String(e)));
  });
  after(async () => {
    await b?.close();
    await f?.close();
  });

  /** the graph canvas' top-left corner on the page */
  const origin = async () => {
    const r = await page.locator('[data-testid=graph-canvas]').boundingBox();
    return { x: r.x, y: r.y };
  };
  /** the share of pixels near a colour in a square of side 2r around a point of the canvas */
  const around = async (p, r, near) => {
    const o = await origin();
    return pixelShare(page, await page.screenshot({ clip: { x: o.x + p.x - r, y: o.y + p.y - r, width: 2 * r, height: 2 * r } }), { near });
  };
  /** sets the view (zoom, and a model point at the middle) and waits for it to be drawn */
  const look = (zoom, at) =>
    page.evaluate(
      async ({ zoom, at }) => {
        const v = window.__big;
        v.viewport({ zoom, pan: { x: v.width() / 2 - at.x * zoom, y: v.height() / 2 - at.y * zoom } });
        await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      },
      { zoom, at },
    );
  const settle = () => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(r, 250)))));

  it('draws every node and edge with its own canvas renderer', async () => {
    // What the page loads for it: the graph once, and not cytoscape's code
    // (GraphCanvas loads CyGraph, and cytoscape with it, only for small graphs).
    const loads = [];
    let answered = false;
    page.on('request', (r) => !answered && loads.push(new URL(r.url()).pathname));
    page.on('requestfinished', (r) => (answered ||= new URL(r.url()).pathname === '/api/v1/graph'));
    await page.goto(`${f.url}/topology?view=version&labels=off`);
    await page.waitForFunction(() => performance.getEntriesByName('meshlens:first-render').length > 0, null, { timeout: 300000, polling: 200 });
    assert.equal(loads.filter((p) => p === '/api/v1/graph').length, 1, `one graph request until the answer: ${loads.join(' ')}`);
    assert.ok(!loads.some((p) => /cytoscape|CyGraph/.test(p)), `no cytoscape code loaded for a graph BigGraph draws: ${loads.join(' ')}`);
    const drawn = await page.evaluate(() => ({ nodes: window.__big?.nodes.size, edges: window.__big?.edges.size, cytoscape: !!window.__cy }));
    assert.deepEqual(drawn, { nodes: 5000, edges: 20000, cytoscape: false });
    assert.equal(await page.locator('[data-testid=graph-canvas][data-renderer=bigcanvas]').count(), 1);
    assert.match(await page.textContent('.graph-summary'), /5000 nodes · 20000 edges/);
    const inked = await pixelShare(page, await page.locator('[data-testid=graph-canvas]').screenshot(), { inked: 60 });
    assert.ok(inked > 0.05, `the overview shows the graph (${(inked * 100).toFixed(1)}% of the canvas drawn)`);
    await shot(page, 'e2e-scale-5000');
  });

  it('opens the details of a clicked node and marks it; a clicked edge too', async () => {
    const node = await page.evaluate(() => [...window.__big.nodes.values()].find((n) => n.data.service === 'svc-1200'));
    await look(1, node);
    const p = await page.evaluate((id) => window.__big.rendered(window.__big.nodes.get(id)), node.id);
    const ring = { x: p.x, y: p.y - 16 };
    const before = await around(ring, 3, SELECTED);
    const o = await origin();
    await page.mouse.click(o.x + p.x, o.y + p.y);
    await page.waitForSelector('[data-testid=detail-panel]');
    assert.match(await page.textContent('[data-testid=detail-title]'), /svc-1200/);
    assert.equal(new URL(page.url()).searchParams.get('sel'), node.id);
    await settle();
    const after = await around(ring, 3, SELECTED);
    assert.ok(before < 0.2 && after > 0.5, `the selected node is marked: ${(before * 100).toFixed(0)}% of the pixels just above it selection-blue before the click, ${(after * 100).toFixed(0)}% after`);
    await shot(page, 'e2e-scale-5000-selected');

    // An edge: one whose middle is on screen, clear of nodes.
    const edge = await page.evaluate(() => {
      const v = window.__big;
      for (const e of v.edges.values()) {
        const m = v.rendered({ x: (e.source.x + e.target.x) / 2, y: (e.source.y + e.target.y) / 2 });
        if (m.x < 100 || m.y < 100 || m.x > v.width() - 400 || m.y > v.height() - 100) continue;
        if (v.hit(m.x, m.y)?.id === e.id) return { id: e.id, m };
      }
      return null;
    });
    assert.ok(edge, 'an edge in view');
    await page.mouse.click(o.x + edge.m.x, o.y + edge.m.y);
    await page.waitForFunction((id) => new URL(location.href).searchParams.get('sel') === id, edge.id);
    assert.match(await page.textContent('[data-testid=detail-title]'), /→/);
    await page.keyboard.press('Escape');
  });

  it('pans by a drag, zooms by the wheel and the + key', async () => {
    const o = await origin();
    const start = await page.evaluate(() => {
      const v = window.__big;
      for (let x = 300; x < v.width() - 300; x += 7) if (!v.nodeAt(x, 300)) return { x, y: 300, pan: v.pan(), zoom: v.zoom() };
      return null;
    });
    await page.mouse.move(o.x + start.x, o.y + start.y);
    await page.mouse.down();
    for (let i = 1; i <= 10; i++) await page.mouse.move(o.x + start.x + 12 * i, o.y + start.y + 5 * i);
    await page.mouse.up();
    const panned = await page.evaluate(() => window.__big.pan());
    assert.deepEqual({ dx: Math.round(panned.x - start.pan.x), dy: Math.round(panned.y - start.pan.y) }, { dx: 120, dy: 50 }, 'the graph follows the drag');
    await page.mouse.wheel(0, -200);
    await settle();
    const wheeled = await page.evaluate(() => window.__big.zoom());
    assert.ok(wheeled > start.zoom * 1.3, `the wheel zoomed in: ${start.zoom} → ${wheeled}`);
    await page.focus('[data-testid=graph-canvas]');
    await page.keyboard.press('+');
    const keyed = await page.evaluate(() => window.__big.zoom());
    assert.ok(Math.abs(keyed / wheeled - 1.25) < 0.01, `+ zooms in by a quarter: ${wheeled} → ${keyed}`);
  });

  it('zooms by a two-finger pinch about the fingers\' middle', async () => {
    // zoomed out enough that twice the zoom stays under the maximum (3)
    await look(0.5, await page.evaluate(() => window.__big.model({ x: window.__big.width() / 2, y: window.__big.height() / 2 })));
    const o = await origin();
    const mid = { x: 400, y: 300 };
    const at = () => page.evaluate((m) => ({ zoom: window.__big.zoom(), under: window.__big.model(m) }), mid);
    const before = await at();
    const cdp = await page.context().newCDPSession(page);
    try {
      await cdp.send('Emulation.setTouchEmulationEnabled', { enabled: true, maxTouchPoints: 2 });
      const fingers = (d) => [{ x: o.x + mid.x - d, y: o.y + mid.y, id: 0 }, { x: o.x + mid.x + d, y: o.y + mid.y, id: 1 }];
      await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: fingers(50) });
      for (let d = 55; d <= 100; d += 5) await cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: fingers(d) });
      await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
    } finally {
      await cdp.send('Emulation.setTouchEmulationEnabled', { enabled: false });
      await cdp.detach();
    }
    await settle();
    const after = await at();
    assert.ok(Math.abs(after.zoom / before.zoom - 2) < 0.01, `fingers twice as far apart zoom in twice: ${before.zoom} → ${after.zoom}`);
    assert.ok(Math.hypot(after.under.x - before.under.x, after.under.y - before.under.y) < 1, 'what was between the fingers stays there');
  });

  it('moves a dragged node and pins it there', async () => {
    const node = await page.evaluate(() => [...window.__big.nodes.values()].find((n) => n.data.service === 'svc-1700'));
    await look(1, node);
    const p = await page.evaluate((id) => window.__big.rendered(window.__big.nodes.get(id)), node.id);
    const o = await origin();
    await page.mouse.move(o.x + p.x, o.y + p.y);
    await page.mouse.down();
    for (let i = 1; i <= 8; i++) await page.mouse.move(o.x + p.x + 10 * i, o.y + p.y + 5 * i);
    await page.mouse.up();
    await settle();
    const moved = await page.evaluate((id) => ({ at: window.__big.nodes.get(id), pinned: window.__big.pinned.get(id), under: window.__big.nodeAt(window.__big.rendered(window.__big.nodes.get(id)).x, window.__big.rendered(window.__big.nodes.get(id)).y)?.id }), node.id);
    assert.deepEqual({ dx: Math.round(moved.at.x - node.x), dy: Math.round(moved.at.y - node.y) }, { dx: 80, dy: 40 }, 'the node follows the mouse');
    assert.deepEqual(moved.pinned, { x: moved.at.x, y: moved.at.y }, 'and is pinned where it was dropped (a saved view keeps it)');
    assert.equal(moved.under, node.id, 'a click where it was dropped finds it');
  });

  it('finds a node by search, marks it with a halo and brings it into view', async () => {
    const want = await page.evaluate(() => [...window.__big.nodes.values()].filter((n) => n.data.service === 'svc-2401').map((n) => n.id).sort());
    assert.ok(want.length >= 1, 'the graph has svc-2401');
    // Somewhere else, zoomed in: the match is off screen.
    const elsewhere = await page.evaluate(() => [...window.__big.nodes.values()].find((n) => n.data.service === 'svc-3').id);
    await look(0.8, await page.evaluate((id) => window.__big.nodes.get(id), elsewhere));
    const offScreen = await page.evaluate((id) => {
      const v = window.__big;
      const p = v.rendered(v.nodes.get(id));
      return p.x < 0 || p.y < 0 || p.x > v.width() || p.y > v.height();
    }, want[0]);
    assert.equal(offScreen, true, 'the match is off screen before the search');
    await page.fill('[data-testid=search]', 'svc-2401');
    await page.press('[data-testid=search]', 'Enter');
    await page.waitForFunction(() => window.__big.marked.length > 0);
    await settle();
    const got = await page.evaluate(() => {
      const v = window.__big;
      return {
        ids: [...v.marked].sort(),
        at: v.marked.map((id) => v.rendered(v.nodes.get(id))),
      };
    });
    assert.deepEqual(got.ids, want, 'the matches are the versions of svc-2401');
    const { w, h } = await page.evaluate(() => ({ w: window.__big.width(), h: window.__big.height() }));
    assert.ok(got.at.every((p) => p.x >= 0 && p.y >= 0 && p.x <= w && p.y <= h), `the matches are in view: ${JSON.stringify(got.at)}`);
    // The halo: MARK_COLOR (#2563eb) at 0.45 over the box fill, around the match (the node itself is drawn over its middle).
    const halo = await around({ x: got.at[0].x, y: got.at[0].y - 30 }, 4, HALO);
    assert.ok(halo > 0.25, `a halo around the match: ${(halo * 100).toFixed(0)}% of the pixels above it halo-blue`);
    await shot(page, 'e2e-scale-5000-search');
    await page.fill('[data-testid=search]', '');
    await page.press('[data-testid=search]', 'Enter');
  });

  it('keeps the view through a refresh and recolours what changed', async () => {
    // A healthy edge 3 pixels wide or more, its middle in the middle of the view, clear of nodes and other edges.
    const edge = await page.evaluate(async () => {
      const v = window.__big;
      for (const e of v.edges.values()) {
        if (!e.classes.has('health-healthy') || Number(e.data.width) < 3) continue;
        const mid = { x: (e.source.x + e.target.x) / 2, y: (e.source.y + e.target.y) / 2 };
        v.viewport({ zoom: 1.2, pan: { x: v.width() / 2 - mid.x * 1.2, y: v.height() / 2 - mid.y * 1.2 } });
        const m = v.rendered(mid);
        // no other edge within 8 pixels of its middle, so what is drawn there is this edge's colour
        const near = [...v.edges.values()].some((o) => {
          if (o === e) return false;
          const { x: x1, y: y1 } = o.source;
          const { x: x2, y: y2 } = o.target;
          const dx = x2 - x1, dy = y2 - y1;
          const t = Math.max(0, Math.min(1, ((mid.x - x1) * dx + (mid.y - y1) * dy) / (dx * dx + dy * dy || 1)));
          return Math.hypot(mid.x - (x1 + t * dx), mid.y - (y1 + t * dy)) * 1.2 < 8 + Number(o.data.width);
        });
        if (!near && v.edgeAt(m.x, m.y)?.id === e.id && !v.nodeAt(m.x, m.y)) {
          await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
          return { id: e.id, source: e.source.id, target: e.target.id, m };
        }
      }
      return null;
    });
    assert.ok(edge, 'a healthy edge clear of nodes');
    const before = await page.evaluate(() => {
      const v = window.__big;
      return { zoom: v.zoom(), pan: v.pan(), positions: [...v.nodes.values()].slice(0, 200).map((n) => [n.id, n.x, n.y]), updates: performance.getEntriesByName('meshlens:update-start').length };
    });
    const redBefore = await around(edge.m, 4, FAILING);
    // The server's next answer: that edge fails (half its requests), as graph/build.go would say.
    f.updateGraph((g) => ({
      ...g,
      edges: g.edges.map((e) => (e.source === edge.source && e.target === edge.target ? { ...e, errors: Math.round(e.requests / 2), errorRate: 0.5, health: 'failing' } : e)),
    }));
    // A 5,000-node graph refreshes every 30 s.
    await page.waitForFunction((n) => performance.getEntriesByName('meshlens:update-start').length > n, before.updates, { timeout: 60000, polling: 500 });
    await settle();
    const now = await page.evaluate((id) => {
      const v = window.__big;
      return { zoom: v.zoom(), pan: v.pan(), positions: [...v.nodes.values()].slice(0, 200).map((n) => [n.id, n.x, n.y]), failing: v.edges.get(id).classes.has('health-failing') };
    }, edge.id);
    assert.deepEqual({ zoom: now.zoom, pan: now.pan }, { zoom: before.zoom, pan: before.pan }, 'the view stays where the user put it');
    assert.deepEqual(now.positions, before.positions, 'no node moved');
    assert.equal(now.failing, true, 'the edge is failing now');
    const redAfter = await around(edge.m, 4, FAILING);
    assert.ok(redBefore < 0.05 && redAfter > 0.15, `the edge is drawn in the failing colour: ${(redBefore * 100).toFixed(0)}% of its middle's pixels before, ${(redAfter * 100).toFixed(0)}% after`);
  });

  it('follows the theme: nodes in the dark theme\'s colours, and back', async () => {
    const node = await page.evaluate(() => [...window.__big.nodes.values()].find((n) => n.data.service === 'svc-1500'));
    await look(1, node);
    const p = await page.evaluate((id) => window.__big.rendered(window.__big.nodes.get(id)), node.id);
    const fill = (rgb) => around(p, 3, { rgb, within: 20 });
    const light = await fill([255, 255, 255]);
    await page.click('.theme-toggle');
    await page.waitForFunction(() => window.__big.theme === 'dark');
    await settle();
    // PALETTE.dark.node (#111a2b) inside the node
    const dark = await fill([17, 26, 43]);
    await shot(page, 'e2e-scale-5000-dark');
    await page.click('.theme-toggle');
    await page.waitForFunction(() => window.__big.theme === 'light');
    await settle();
    const back = await fill([255, 255, 255]);
    assert.ok(light > 0.9 && dark > 0.9 && back > 0.9, `the node is white, then dark blue, then white again: ${[light, dark, back].map((x) => (x * 100).toFixed(0) + '%').join(', ')} of its middle`);
  });

  it('collapses a group by a double click on its box and expands it by one on the group', async () => {
    await page.goto(`${f.url}/topology?view=version&labels=off&group=namespace`);
    await page.waitForFunction(() => window.__big?.boxes.length === 10 && performance.getEntriesByName('meshlens:first-render').length > 0, null, { timeout: 300000, polling: 200 });
    const id = 'group:namespace=ns-3';
    // A point inside ns-3's box, clear of its nodes.
    const corner = await page.evaluate((id) => {
      const v = window.__big;
      const xs = v.boxes.find((x) => x.id === id).members.map((m) => v.nodes.get(m));
      return { x: Math.min(...xs.map((n) => n.x)) - 28, y: Math.min(...xs.map((n) => n.y)) - 20 };
    }, id);
    await look(1, corner);
    const p = await page.evaluate((c) => window.__big.rendered(c), corner);
    assert.equal(await page.evaluate(({ p, id }) => !window.__big.nodeAt(p.x, p.y) && window.__big.boxAt(p.x, p.y) === id, { p, id }), true, 'the point is on the box, not on a node');
    const members = await page.evaluate(() => [...window.__big.nodes.values()].filter((n) => n.data.namespace === 'ns-3').length);
    const o = await origin();
    await page.mouse.dblclick(o.x + p.x, o.y + p.y);
    await page.waitForFunction(() => new URL(location.href).searchParams.get('collapsed') === 'ns-3');
    await page.waitForFunction((id) => window.__big.nodes.get(id)?.data.collapsed === true, id);
    const collapsed = await page.evaluate((id) => ({ label: window.__big.nodes.get(id).data.label, members: [...window.__big.nodes.values()].filter((n) => n.data.namespace === 'ns-3' && n.id !== id).length }), id);
    assert.equal(collapsed.label, `namespace ns-3 (${members})`, 'the collapsed group counts its members');
    assert.equal(collapsed.members, 0, 'its members are hidden');
    await shot(page, 'e2e-scale-5000-collapsed');
    // The relayout put the group elsewhere; the view stayed where it was. Go to it.
    await page.keyboard.press('Escape');
    await look(1, await page.evaluate((id) => window.__big.nodes.get(id), id));
    const g = await page.evaluate((id) => window.__big.rendered(window.__big.nodes.get(id)), id);
    await page.mouse.dblclick(o.x + g.x, o.y + g.y);
    await page.waitForFunction(() => !new URL(location.href).searchParams.get('collapsed'));
    await page.waitForFunction((id) => !window.__big.nodes.has(id) && window.__big.nodes.size === 5000, id);
  });

  it('exports what is on screen as a PNG and an SVG that are not blank', async () => {
    // The whole graph (0 fits it).
    await page.focus('[data-testid=graph-canvas]');
    await page.keyboard.press('0');
    await page.click('[data-testid=export-menu] summary');
    const [dl] = await Promise.all([page.waitForEvent('download', { timeout: 300000 }), page.click('[data-testid=export-png]')]);
    const { readFile } = await import('node:fs/promises');
    const data = await readFile(await dl.path());
    assert.deepEqual([...data.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], 'a PNG file');
    // The pixels that are not the background.
    const inked = await pixelShare(page, data, { inked: 30 });
    assert.ok(inked > 0.01, `the PNG shows the graph (${(inked * 100).toFixed(2)}% of its pixels drawn)`);
    await page.click('[data-testid=export-menu] summary');
    const [svg] = await Promise.all([page.waitForEvent('download', { timeout: 300000 }), page.click('[data-testid=export-svg]')]);
    const text = await readFile(await svg.path(), 'utf8');
    assert.ok((text.match(/<path d="M/g) ?? []).length > 1000, 'the SVG has the edges on screen');
    assert.ok((text.match(/<rect x=/g) ?? []).length > 1000, 'and the nodes and boxes');
    assert.deepEqual(page.errors, []);
  });
});
