// Time to first render of a 1,000-node synthetic graph in Chromium: serves
// the built UI with a fixture API answering the synthetic graph, opens the
// topology and reads when the graph was first drawn (after layout), measured
// from navigation start. Prints the figures; target < 2000 ms.
//
//   node e2e/timing.mjs [--nodes 1000] [--runs 3]
import { loadavg } from 'node:os';
import { startFixture } from './fixture-server.mjs';
import { launch, shot } from './lib.mjs';

const arg = (k, d) => {
  const i = process.argv.indexOf(k);
  return i >= 0 ? Number(process.argv[i + 1]) : d;
};
const nodes = arg('--nodes', 1000);
const runs = arg('--runs', 3);

const f = await startFixture({ nodes });
const b = await launch();
const results = [];
try {
  for (let i = 0; i < runs; i++) {
    const page = await b.ctx.newPage();
    await page.goto(`${f.url}/topology?view=version&labels=off${process.env.TIMING_QUERY ?? ''}`);
    await page.waitForFunction(() => window.__meshlensFirstRender !== undefined, null, { timeout: 60000 });
    const m = await page.evaluate(async () => {
      const cy = window.__cy;
      // Interactivity: how long one zoom step takes to be drawn.
      const t0 = performance.now();
      cy.zoom({ level: cy.zoom() * 1.3, renderedPosition: { x: cy.width() / 2, y: cy.height() / 2 } });
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      const zoomMs = performance.now() - t0;
      const t1 = performance.now();
      cy.nodes(':childless')[0].select();
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      const marks = { domContentLoaded: Math.round(performance.getEntriesByType('navigation')[0]?.domContentLoadedEventEnd ?? 0) };
      for (const m of performance.getEntriesByType('mark')) if (m.name.startsWith('meshlens:') && !(m.name.slice(9) in marks)) marks[m.name.slice(9)] = Math.round(m.startTime);
      return { marks, firstRenderMs: window.__meshlensFirstRender, zoomMs, selectMs: performance.now() - t1, nodes: cy.nodes(':childless').length, groups: new Set(cy.nodes().map((n) => `${n.data('namespace')}/${n.data('service')}`)).size, edges: cy.edges().length };
    });
    results.push(m);
    if (i === 0) {
      await shot(page, 'timing-1000-nodes');
      await page.evaluate(() => window.__cy.zoom({ level: 0.9, renderedPosition: { x: window.__cy.width() / 2, y: window.__cy.height() / 2 } }));
      await page.waitForTimeout(1500);
      await shot(page, 'timing-1000-nodes-zoomed');
    }
    await page.close();
  }
} finally {
  await b.close();
  await f.close();
}
const first = results.map((r) => r.firstRenderMs).sort((a, b) => a - b);
const median = first[Math.floor(first.length / 2)];
const r0 = results[0];
console.log(`machine load average (1 min): ${loadavg()[0].toFixed(1)} on ${(await import('node:os')).cpus().length} cores`);
console.log(`graph: ${r0.nodes} nodes in ${r0.groups} services, ${r0.edges} edges`);
for (const [i, r] of results.entries()) console.log(`run ${i + 1}: first render ${r.firstRenderMs.toFixed(0)} ms, zoom frame ${r.zoomMs.toFixed(0)} ms, select frame ${r.selectMs.toFixed(0)} ms; marks ${JSON.stringify(r.marks)}`);
console.log(`time to first render of a ${nodes}-node graph: median ${median.toFixed(0)} ms (target < 2000 ms) ${median < 2000 ? 'OK' : 'OVER TARGET'}`);
