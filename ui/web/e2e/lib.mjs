// Shared helpers for the browser tests: start Debian's Chromium through
// playwright-core, and find the server under test (MESHLENS_URL, or a
// fixture server started here when it is unset).
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startFixture } from './fixture-server.mjs';

export const SCREENSHOTS = fileURLToPath(new URL('../screenshots/', import.meta.url));

export async function launch({ width = 1440, height = 900 } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'meshlens-chromium-'));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    viewport: { width, height },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  await mkdir(SCREENSHOTS, { recursive: true });
  for (const p of ctx.pages()) guardEvaluate(p);
  ctx.on('page', guardEvaluate);
  return {
    ctx,
    async close() {
      await ctx.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * guardEvaluate makes page.evaluate fail at once, naming the function, when a
 * page function returns a cytoscape object: window.__cy, or a collection (what
 * cy.center(), cy.zoom({...}) or eles.emit() return). Playwright would copy
 * that object's whole graph (renderer, caches, every element) to send it back,
 * which keeps the page's main thread busy for minutes while Chromium's renderer
 * grows to gigabytes; that was the views test's "memory defect" (its
 * `evaluate(() => window.__cy.center(...))`).
 */
export function guardEvaluate(page) {
  if (page.evaluate.guarded) return;
  const evaluate = page.evaluate.bind(page);
  const guarded = (fn, arg) => {
    if (typeof fn !== 'function') return evaluate(fn, arg);
    return evaluate(
      async ([src, a]) => {
        const r = await (0, eval)(`(${src})`)(a);
        if (r !== null && typeof r === 'object' && (r === window.__cy || typeof r.cy === 'function')) {
          throw new Error(`a page function returned a cytoscape ${r === window.__cy ? 'core' : 'collection'}, which Playwright would copy whole; return a plain value or nothing: ${src}`);
        }
        return r;
      },
      [fn.toString(), arg],
    );
  };
  guarded.guarded = true;
  page.evaluate = guarded;
}

/** target returns {url, token, close}: the live server from env, or a fresh fixture. */
export async function target(opts = {}) {
  if (process.env.MESHLENS_URL) return { url: process.env.MESHLENS_URL.replace(/\/$/, ''), token: process.env.MESHLENS_TOKEN ?? '', fixture: false, close: async () => {} };
  const f = await startFixture({ stepMs: 1500, ...opts });
  return { url: f.url, token: f.token, fixture: true, close: f.close };
}

/** newPage opens a page with the token already in local storage. */
export async function newPage(ctx, base, token) {
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  if (token) await page.addInitScript((t) => localStorage.setItem('meshlens.token', t), token);
  page.errors = errors;
  await page.goto(base + '/topology');
  return page;
}

export async function shot(page, name) {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
}

/** api calls the server under test directly. */
export async function api(base, token, path, init = {}) {
  const res = await fetch(base + path, { ...init, headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(init.headers ?? {}) } });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, body };
}

/**
 * pixelShare decodes a PNG in the page and returns the share of its pixels
 * that are one of `colours` ("r,g,b" strings), or, with `inked`, that differ
 * from its top-left (background) pixel by more than `inked` in all, or,
 * with `near: {rgb: [r, g, b], within}`, that are within `within` of rgb.
 */
export async function pixelShare(page, png, { colours, inked, near }) {
  return page.evaluate(
    async ({ b64, colours, inked, near }) => {
      const img = new Image();
      img.src = `data:image/png;base64,${b64}`;
      await img.decode();
      const c = document.createElement('canvas');
      c.width = img.width;
      c.height = img.height;
      const ctx = c.getContext('2d');
      ctx.drawImage(img, 0, 0);
      const px = ctx.getImageData(0, 0, c.width, c.height).data;
      const want = new Set(colours ?? []);
      const bg = [px[0], px[1], px[2]];
      const counts = near
        ? (i) => Math.abs(px[i] - near.rgb[0]) + Math.abs(px[i + 1] - near.rgb[1]) + Math.abs(px[i + 2] - near.rgb[2]) <= near.within
        : colours
        ? (i) => want.has(`${px[i]},${px[i + 1]},${px[i + 2]}`)
        : (i) => Math.abs(px[i] - bg[0]) + Math.abs(px[i + 1] - bg[1]) + Math.abs(px[i + 2] - bg[2]) > inked;
      let n = 0;
      for (let i = 0; i < px.length; i += 4) if (counts(i)) n++;
      return n / (px.length / 4);
    },
    { b64: png.toString('base64'), colours, inked, near },
  );
}

/**
 * mouseFps pans and zooms the graph as a user does: a drag with the mouse
 * for a second, then, once the page has settled, the wheel for a second.
 * It returns the frames per second the page drew during the gestures
 * (requestAnimationFrame callbacks counted in the page from the first input
 * event of a gesture to the frame after its last), and how long the redraw
 * after each gesture took (settleMs: cytoscape draws every element again
 * when a gesture ends).
 */
export async function mouseFps(page) {
  const box = await page.locator('[data-testid=graph-canvas]').boundingBox();
  // A point of the background near the middle: a drag there pans (on a node it would move the node).
  const p = await page.evaluate(() => {
    // a large graph is drawn by BigGraph (window.__big), a smaller one by cytoscape (window.__cy)
    const big = window.__big;
    const cy = big ?? window.__cy;
    const w = cy.width();
    const h = cy.height();
    const hit = (x, y) =>
      big
        ? !!big.nodeAt(x, y)
        : cy.nodes().some((n) => {
            const b = n.renderedBoundingBox({ includeLabels: false });
            return x >= b.x1 - 4 && x <= b.x2 + 4 && y >= b.y1 - 4 && y <= b.y2 + 4;
          });
    for (let r = 0; r < Math.min(w, h) / 2; r += 7) {
      for (const [dx, dy] of [[r, 0], [-r, 0], [0, r], [0, -r]]) if (!hit(w / 2 + dx, h / 2 + dy)) return { x: w / 2 + dx, y: h / 2 + dy };
    }
    return { x: 5, y: 5 };
  });
  const cx = box.x + p.x;
  const cy = box.y + p.y;
  const settle = () => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(r, 300)))));
  const start = () =>
    page.evaluate(() => {
      window.__frames = 0;
      window.__counting = true;
      const count = () => {
        if (!window.__counting) return;
        window.__frames++;
        requestAnimationFrame(count);
      };
      requestAnimationFrame(count);
      performance.mark('meshlens:gesture-start');
    });
  const stop = () =>
    page.evaluate(async () => {
      await new Promise((r) => requestAnimationFrame(r));
      window.__counting = false;
      const ms = performance.measure('meshlens:gesture', 'meshlens:gesture-start').duration;
      const t = performance.now();
      // the redraw once the gesture is over (cytoscape and BigGraph wait 150 ms after the last wheel event)
      await new Promise((r) => setTimeout(r, 200));
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      return { frames: window.__frames, ms, settleMs: performance.now() - t - 200 };
    });
  await page.mouse.move(cx, cy);
  await settle();
  await page.mouse.down();
  await page.mouse.move(cx + 5, cy + 3);
  await settle();
  await start();
  let t = Date.now();
  for (let i = 1; Date.now() - t < 1000 && i < 500; i++) await page.mouse.move(cx + 5 + 150 * Math.sin(i / 10), cy + 3 + 80 * Math.sin(i / 15));
  const drag = await stop();
  await page.mouse.up();
  await settle();
  await start();
  t = Date.now();
  for (let i = 0; Date.now() - t < 1000 && i < 500; i++) await page.mouse.wheel(0, i % 20 < 10 ? -40 : 40);
  const wheel = await stop();
  return {
    fps: ((drag.frames + wheel.frames) * 1000) / (drag.ms + wheel.ms),
    dragFps: (drag.frames * 1000) / drag.ms,
    wheelFps: (wheel.frames * 1000) / wheel.ms,
    settleMs: Math.max(drag.settleMs, wheel.settleMs),
  };
}
