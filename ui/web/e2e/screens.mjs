// Takes screenshots of every page against the server under test (or a
// fixture), for a person to look at. Not a test: `node e2e/screens.mjs`.
import { launch, newPage, shot, target } from './lib.mjs';

const t = await target();
const b = await launch();
try {
  const page = await newPage(b.ctx, t.url, t.token);
  await page.waitForSelector('[data-testid=graph-canvas] canvas', { timeout: 15000 });
  await page.waitForTimeout(1500);
  await shot(page, 'topology');
  // Click the busiest edge into reviews.
  const pos = await page.evaluate(() => {
    const cy = window.__cy;
    const e = cy.edges().filter((x) => x.target().data('service') === 'reviews').sort((a, b) => b.data('rps') - a.data('rps'))[0];
    const p = e.renderedMidpoint();
    const box = cy.container().getBoundingClientRect();
    return { x: box.left + p.x, y: box.top + p.y };
  });
  await page.mouse.click(pos.x, pos.y);
  await page.waitForSelector('[data-testid=detail-panel]');
  await page.waitForTimeout(1200);
  await shot(page, 'topology-edge');
  await page.goto(t.url + '/topology?view=service');
  await page.waitForTimeout(2000);
  await shot(page, 'topology-service');
  await page.goto(t.url + '/services');
  await page.waitForTimeout(800);
  await shot(page, 'services');
  await page.goto(t.url + '/services/default/reviews');
  await page.waitForTimeout(1500);
  await shot(page, 'service-reviews');
  await page.goto(t.url + '/services/default/productpage?tab=traces');
  await page.waitForTimeout(1000);
  await page.click('table.table tbody tr');
  await page.waitForTimeout(800);
  await shot(page, 'trace');
  await page.goto(t.url + '/config');
  await page.waitForTimeout(800);
  await shot(page, 'config');
  await page.goto(t.url + '/config?tab=apply');
  await page.waitForTimeout(500);
  await page.fill('textarea', (await page.inputValue('textarea')).replace('weight: 10', 'weight: 20').replace('subset: v2', 'subset: v9'));
  await page.click('[data-testid=apply]');
  await page.waitForTimeout(800);
  await shot(page, 'config-errors');
  await page.goto(t.url + '/rollouts?new');
  await page.waitForTimeout(1000);
  await shot(page, 'rollout-form');
  await page.click('[data-testid=start-rollout]');
  await page.waitForTimeout(5000);
  await shot(page, 'rollout-progress');
  await page.goto(t.url + '/alerts');
  await page.waitForTimeout(800);
  await shot(page, 'alerts');
  await page.goto(t.url + '/rollouts');
  await page.waitForTimeout(800);
  await shot(page, 'rollouts');
  await page.goto(t.url + '/topology?q=ratings');
  await page.waitForTimeout(2000);
  await shot(page, 'topology-search');
  // A Rollout naming a version that does not exist: errors on the lines.
  await page.goto(t.url + '/rollouts?new');
  await page.waitForTimeout(800);
  await page.click('.new-rollout .tabs button:nth-child(2)');
  await page.fill('.new-rollout textarea', (await page.inputValue('.new-rollout textarea')).replace('candidate: v2', 'candidate: v9').replace('name: reviews-canary', 'name: reviews-canary-2'));
  await page.click('[data-testid=start-rollout]');
  await page.waitForTimeout(1000);
  await shot(page, 'rollout-yaml-errors');
  // Without a token, a write asks for one.
  const anon = await b.ctx.newPage();
  await anon.addInitScript(() => localStorage.removeItem('meshlens.token'));
  await anon.goto(t.url + '/config?tab=apply');
  await anon.click('[data-testid=apply]');
  await anon.waitForSelector('[data-testid=login]');
  await shot(anon, 'login');
  if (page.errors.length) console.log('page errors:', page.errors);
} finally {
  await b.close();
  await t.close();
}
