// The UI never blocks on a slow backend: with every API call delayed, the
// shell, navigation and loading states render at once, and the data shows up
// when it arrives. Runs only against the fixture server (it needs the delay).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startFixture } from './fixture-server.mjs';
import { launch, shot } from './lib.mjs';

const skip = process.env.MESHLENS_URL ? 'runs against the fixture server only' : false;
let f, b, page;

describe('a slow backend', { skip, timeout: 180000 }, () => {
  before(async () => {
    // 8 s, not 4: the loading state is checked once the page shows its
    // title, which a loaded CI machine can take seconds to do, and the data
    // must not have come by then; still well under the UI's own 15 s
    // request timeout (api.ts), past which the page shows an error instead.
    f = await startFixture({ delayMs: 8000 });
    b = await launch();
    page = await b.ctx.newPage();
  });
  after(async () => {
    await b?.close();
    await f?.close();
  });

  it('shows the page and its loading state while calls are pending, then the data', async () => {
    await page.goto(`${f.url}/services`, { waitUntil: 'domcontentloaded' });
    await page.waitForSelector('h1:has-text("Services")');
    // The API answers after 8 s; until then the page says it is loading.
    assert.ok(await page.isVisible('.loading'), 'a loading state is shown while the call is pending');
    assert.equal(await page.$$eval('table.table tbody tr', (r) => r.length), 0);
    // Navigation works meanwhile.
    await page.click('nav a[href="/rollouts"]');
    await page.waitForSelector('h1:has-text("Rollouts")');
    await page.click('nav a[href="/services"]');
    await page.waitForSelector('table.table tbody tr', { timeout: 60000 });
    await shot(page, 'slow-backend-services');
    const rows = await page.$$eval('table.table tbody tr', (r) => r.map((x) => x.textContent));
    assert.ok(rows.some((r) => r.includes('reviews')), `services listed: ${rows}`);
  });
});
