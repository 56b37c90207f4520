// What only the fixture server can set up: a graph cut by the server's caps,
// and a mesh without traffic. Skipped against a live server (MESHLENS_URL).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startFixture } from './fixture-server.mjs';
import { launch, shot } from './lib.mjs';

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
