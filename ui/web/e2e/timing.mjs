// Time to first render of a synthetic graph in Chromium: serves the built UI
// with a fixture API answering the synthetic graph, opens the topology and
// reads when the graph was first drawn (after layout), measured from
// navigation start; then the frame rate of a second of panning and zooming,
// and how long a search takes to show its matches. Prints the figures
// against the targets (first render < 2000 ms, >= 30 frames/s, search < 200 ms).
//
//   node e2e/timing.mjs [--nodes 1000] [--edges-per-node 2.5] [--runs 3]
import { loadavg } from 'node:os';
import { startFixture } from './fixture-server.mjs';
import { launch, shot } from './lib.mjs';

const arg = (k, d) => {
  const i = process.argv.indexOf(k);
  return i >= 0 ? Number(process.argv[i + 1]) : d;
};
const nodes = arg('--nodes', 1000);
const runs = arg('--runs', 3);
const edgesPerNode = arg('--edges-per-node', 2.5);

const f = await startFixture({ nodes, edgesPerNode });
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
      // Pan and zoom for a second, one step per frame, counting the frames drawn.
      const fps = await new Promise((resolve) => {
        let frames = 0;
        const start = performance.now();
        const step = (now) => {
          frames++;
          const k = frames % 40 < 20 ? 1 : -1;
          cy.panBy({ x: 6 * k, y: 3 * k });
          if (frames % 10 === 0) cy.zoom({ level: cy.zoom() * (k > 0 ? 1.04 : 1 / 1.04), renderedPosition: { x: cy.width() / 2, y: cy.height() / 2 } });
          if (now - start < 1000) requestAnimationFrame(step);
          else resolve((frames * 1000) / (now - start));
        };
        requestAnimationFrame(step);
      });
      return { marks, firstRenderMs: window.__meshlensFirstRender, zoomMs, fps, selectMs: performance.now() - t1, nodes: cy.nodes(':childless').length, groups: new Set(cy.nodes().map((n) => `${n.data('namespace')}/${n.data('service')}`)).size, edges: cy.edges().length };
    });
    // Search: type a service name and submit; time until its matches are drawn.
    const target = await page.evaluate(() => window.__cy.nodes(':childless')[Math.floor(window.__cy.nodes(':childless').length / 2)].data('service'));
    await page.fill('[data-testid=search]', target);
    m.searchMs = await page.evaluate(async () => {
      const t0 = performance.now();
      document.querySelector('form.search').requestSubmit();
      while (!window.__cy.nodes('.match').length) await new Promise((r) => setTimeout(r, 2));
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      return performance.now() - t0;
    });
    results.push(m);
    if (i === 0) {
      await shot(page, `timing-${nodes}-nodes`);
      await page.evaluate(() => {
        window.__cy.zoom({ level: 0.9, renderedPosition: { x: window.__cy.width() / 2, y: window.__cy.height() / 2 } });
      });
      await page.waitForTimeout(1500);
      await shot(page, `timing-${nodes}-nodes-zoomed`);
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
for (const [i, r] of results.entries()) console.log(`run ${i + 1}: first render ${r.firstRenderMs.toFixed(0)} ms, zoom frame ${r.zoomMs.toFixed(0)} ms, pan/zoom ${r.fps.toFixed(0)} frames/s, search ${r.searchMs.toFixed(0)} ms, select frame ${r.selectMs.toFixed(0)} ms; marks ${JSON.stringify(r.marks)}`);
const med = (k) => results.map((r) => r[k]).sort((a, b) => a - b)[Math.floor(results.length / 2)];
console.log(`time to first render of a ${nodes}-node graph: median ${median.toFixed(0)} ms (target < 2000 ms) ${median < 2000 ? 'OK' : 'OVER TARGET'}`);
console.log(`pan/zoom: median ${med('fps').toFixed(0)} frames/s (target >= 30) ${med('fps') >= 30 ? 'OK' : 'UNDER TARGET'}; search: median ${med('searchMs').toFixed(0)} ms (target < 200 ms) ${med('searchMs') < 200 ? 'OK' : 'OVER TARGET'}`);
