// Issue 15's scale graph as a user meets it: 5,000 nodes and 20,000 edges
// from the fixture server, drawn with WebGL (?renderer=webgl); every node on the canvas, a
// search that marks its node with a halo, restyling nothing, a PNG export that is
// not blank. How fast is make bench's business (e2e/timing.mjs), not this
// test's. Skipped against a live server (MESHLENS_URL).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startFixture } from './fixture-server.mjs';
import { launch, pixelShare, shot } from './lib.mjs';

const skip = process.env.MESHLENS_URL ? 'runs against the fixture server only' : false;

describe('a 5,000-node, 20,000-edge graph', { skip, timeout: 900000 }, () => {
  let b, f, page;
  before(async () => {
    f = await startFixture({ nodes: 5000, edges: 20000 });
    b = await launch();
    page = await b.ctx.newPage();
    // Generous: the machine running the tests may be busy and the page is big; make bench times it.
    page.setDefaultTimeout(300000);
    page.errors = [];
    page.on('pageerror', (e) => page.errors.push(String(e)));
  });
  after(async () => {
    await b?.close();
    await f?.close();
  });

  it('draws every node and edge, with WebGL', async () => {
    // WebGL asked for: by itself the page uses it only on a GPU, and the test's Chromium has SwiftShader.
    await page.goto(`${f.url}/topology?view=version&labels=off&renderer=webgl`);
    await page.waitForFunction(() => performance.getEntriesByName('meshlens:first-render').length > 0, null, { timeout: 600000, polling: 500 });
    const drawn = await page.evaluate(() => ({
      nodes: window.__cy.nodes(':childless').length,
      edges: window.__cy.edges().length,
      webgl: !!document.querySelector('[data-testid=graph-canvas] canvas[data-id$="-webgl"]'),
    }));
    assert.deepEqual(drawn, { nodes: 5000, edges: 20000, webgl: true });
    assert.match(await page.textContent('.graph-summary'), /5000 nodes · 20000 edges/);
    await shot(page, 'e2e-scale-5000');
  });

  it('finds a node by search and marks it with a halo, restyling nothing', async () => {
    // A node far from the middle of the overview.
    const want = await page.evaluate(() => window.__cy.nodes(':childless').filter((n) => n.data('service') === 'svc-2401').map((n) => n.id()).sort());
    assert.ok(want.length >= 1, 'the graph has svc-2401');
    // The screen around the first match, before and after the search: the halo is MARK_COLOR (#2563eb) at 0.45 over the light box fill.
    const around = async () => {
      const c = await page.evaluate((id) => {
        const cy = window.__cy;
        const n = cy.getElementById(id);
        const p = n.renderedPosition();
        const r = ((Math.max(n.width(), n.height()) / 2 + 40) * cy.zoom()) / 1.5;
        const b = document.querySelector('[data-testid=graph-canvas]').getBoundingClientRect();
        return { x: b.x + p.x - r, y: b.y + p.y - r, width: 2 * r, height: 2 * r };
      }, want[0]);
      return pixelShare(page, await page.screenshot({ clip: c }), { near: { rgb: [153, 182, 244], within: 60 } });
    };
    const before = await around();
    await page.fill('[data-testid=search]', 'svc-2401');
    await page.press('[data-testid=search]', 'Enter');
    await page.waitForFunction(() => (window.__cy.scratch('_marked') ?? []).length > 0, null, { timeout: 300000, polling: 200 });
    await page.waitForTimeout(300);
    const got = await page.evaluate(() => {
      const cy = window.__cy;
      const m = cy.nodes().filter((n) => (cy.scratch('_marked') ?? []).includes(n.id()));
      return {
        ids: m.map((n) => n.id()).sort(),
        onScreen: m.every((n) => {
          const p = n.renderedPosition();
          return p.x >= 0 && p.y >= 0 && p.x <= cy.width() && p.y <= cy.height();
        }),
        restyled: cy.elements('.dim, .match').length,
      };
    });
    assert.deepEqual(got.ids, want, 'the matches are the versions of svc-2401');
    assert.equal(got.onScreen, true, 'the matches are in view');
    assert.equal(got.restyled, 0, 'no element is restyled');
    const after = await around();
    assert.ok(after > 0.25 && before < 0.1, `a halo around the match: ${(before * 100).toFixed(0)}% of the pixels around it halo-blue before the search, ${(after * 100).toFixed(0)}% after`);
    await shot(page, 'e2e-scale-5000-search');
  });

  it('exports what is on screen as a PNG that is not blank', async () => {
    await page.click('[data-testid=export-menu] summary');
    const [dl] = await Promise.all([page.waitForEvent('download', { timeout: 300000 }), page.click('[data-testid=export-png]')]);
    const { readFile } = await import('node:fs/promises');
    const data = await readFile(await dl.path());
    assert.deepEqual([...data.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], 'a PNG file');
    // The pixels that are not the background.
    const inked = await pixelShare(page, data, { inked: 30 });
    assert.ok(inked > 0.001, `the PNG shows the graph (${(inked * 100).toFixed(2)}% of its pixels drawn)`);
    assert.deepEqual(page.errors, []);
  });
});
