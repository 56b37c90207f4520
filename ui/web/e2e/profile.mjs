// A CPU profile of the topology page opening a synthetic graph: where the
// main thread's time goes from navigation to the first render, then during a
// second of pan/zoom and a search. Prints the functions with the most self
// time in each phase and writes the whole profile (.cpuprofile, for Chrome's
// DevTools Performance panel) to --out.
//
//   node e2e/profile.mjs [--nodes 5000] [--edges 20000] [--top 25] [--out /tmp/meshlens.cpuprofile]
import { writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { startFixture } from './fixture-server.mjs';
import { launch, mouseFps } from './lib.mjs';

const arg = (k, d) => {
  const i = process.argv.indexOf(k);
  return i >= 0 ? process.argv[i + 1] : d;
};
const nodes = Number(arg('--nodes', 5000));
const edges = Number(arg('--edges', 20000));
const top = Number(arg('--top', 25));
const out = arg('--out', '');
const query = arg('--query', '');

/** selfTimes sums a profile's samples by function (name, file:line) within [from, to) µs of its start: self and total time. */
function selfTimes(profile, from = 0, to = Infinity) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parents = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parents.set(c, n.id);
  const sums = new Map();
  const incl = new Map();
  let t = profile.startTime;
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    t += dt;
    const rel = t - profile.startTime;
    if (rel < from || rel >= to) return;
    // self time to the sampled function, total time to each function on its stack (once)
    const seen = new Set();
    for (let n = id, self = true; n !== undefined; n = parents.get(n), self = false) {
      const cf = byId.get(n).callFrame;
      const key = `${cf.functionName || '(anonymous)'} ${cf.url.split('/').pop()}:${cf.lineNumber + 1}`;
      if (self) sums.set(key, (sums.get(key) ?? 0) + dt);
      if (!seen.has(key)) {
        seen.add(key);
        incl.set(key, (incl.get(key) ?? 0) + dt);
      }
    }
    total += dt;
  });
  const sorted = (m) => [...m].sort((a, b) => b[1] - a[1]);
  return { total, rows: sorted(sums), inclusive: sorted(incl).filter(([k]) => !k.startsWith('(root)')) };
}

function print(title, { total, rows, inclusive }) {
  console.log(`\n== ${title}: ${(total / 1000).toFixed(0)} ms sampled; self time`);
  for (const [k, us] of rows.slice(0, top)) console.log(`${(us / 1000).toFixed(0).padStart(7)} ms ${((100 * us) / total).toFixed(1).padStart(5)}%  ${k}`);
  console.log(`-- ${title}: total time (the function and what it calls)`);
  for (const [k, us] of inclusive.slice(0, top)) console.log(`${(us / 1000).toFixed(0).padStart(7)} ms ${((100 * us) / total).toFixed(1).padStart(5)}%  ${k}`);
}

const f = await startFixture({ nodes, edges });
const b = await launch();
try {
  console.log(`load average (1 min): ${loadavg()[0].toFixed(1)}`);
  const page = await b.ctx.newPage();
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Profiler.enable');
  await cdp.send('Profiler.setSamplingInterval', { interval: 500 });
  await cdp.send('Profiler.start');
  const t0 = Date.now();
  await page.goto(`${f.url}/topology?view=version&labels=off${query}`);
  await page.waitForFunction(() => performance.getEntriesByName('meshlens:first-render').length > 0, null, { timeout: 600000, polling: 200 });
  const tFirst = Date.now();
  const marks = await page.evaluate(() => Object.fromEntries(performance.getEntriesByType('mark').map((m) => [m.name, Math.round(m.startTime)])));
  await page.waitForTimeout(500);
  const tPan = Date.now();
  // A user's pan and zoom: drag with the mouse, then the wheel (as make bench does).
  console.log(`pan/zoom by the mouse: ${JSON.stringify(await mouseFps(page))}`);
  await page.waitForTimeout(500);
  const tSearch = Date.now();
  const svc = await page.evaluate(() => {
    // a large graph is drawn by BigGraph (window.__big), a smaller one by cytoscape (window.__cy)
    if (window.__big) {
      const n = [...window.__big.nodes.values()];
      return n[Math.floor(n.length / 2)].data.service;
    }
    return window.__cy.nodes(':childless')[Math.floor(window.__cy.nodes(':childless').length / 2)].data('service');
  });
  await page.fill('[data-testid=search]', svc);
  await page.press('[data-testid=search]', 'Enter');
  await page.waitForFunction(() => (window.__big ? window.__big.marked.length > 0 : (window.__cy.scratch('_marked') ?? []).length > 0 || window.__cy.nodes('.match').length > 0), null, { timeout: 300000, polling: 50 });
  await page.waitForTimeout(300);
  const tEnd = Date.now();
  const { profile } = await cdp.send('Profiler.stop');
  console.log(`marks: ${JSON.stringify(marks)}`);
  const us = (t) => (t - t0) * 1000;
  print('navigation to first render', selfTimes(profile, 0, us(tFirst)));
  print('mouse pan and wheel zoom', selfTimes(profile, us(tPan), us(tSearch)));
  print('search', selfTimes(profile, us(tSearch), us(tEnd)));
  if (out) {
    await writeFile(out, JSON.stringify(profile));
    console.log(`\nprofile written to ${out}`);
  }
} finally {
  await b.close();
  await f.close();
}
