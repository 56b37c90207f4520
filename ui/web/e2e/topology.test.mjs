// Browser tests of the topology page's own features: landing on the printed
// URL, impact and paths, export and shareable links, keyboard, themes and
// signed-out viewers. Like ui.test.mjs they run against MESHLENS_URL (a
// `meshlens serve` fed by `meshlens demo`) or, without it, the fixture server.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { launch, shot, target } from './lib.mjs';

const TIMEOUT = Number(process.env.MESHLENS_E2E_TIMEOUT_MS || 180000);
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
});
