// Issue 15's scale graph as a user meets it: 5,000 nodes and 20,000 edges
// from the fixture server, drawn with WebGL (?renderer=webgl); every node on the canvas, a
// search that finds its node and brings it into view, a PNG export that is
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

  it('finds a node by search and brings it into view', async () => {
    // A node far from the middle, where the overview does not put it on screen large enough to see.
    const want = await page.evaluate(() => window.__cy.nodes(':childless').filter((n) => n.data('service') === 'svc-2401').map((n) => n.id()).sort());
    assert.ok(want.length >= 1, 'the graph has svc-2401');
    await page.fill('[data-testid=search]', 'svc-2401');
    await page.press('[data-testid=search]', 'Enter');
    await page.waitForFunction(() => window.__cy.nodes('.match:childless').length > 0, null, { timeout: 300000, polling: 200 });
    await page.waitForTimeout(300);
    const got = await page.evaluate(() => {
      const cy = window.__cy;
      const m = cy.nodes('.match:childless');
      return {
        ids: m.map((n) => n.id()).sort(),
        onScreen: m.every((n) => {
          const p = n.renderedPosition();
          return p.x >= 0 && p.y >= 0 && p.x <= cy.width() && p.y <= cy.height();
        }),
        dimmed: cy.elements('.dim').length,
      };
    });
    assert.deepEqual(got.ids, want, 'the matches are the versions of svc-2401');
    assert.equal(got.onScreen, true, 'the matches are in view');
    assert.equal(got.dimmed, 0, 'nothing else is restyled');
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
