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
 * from its top-left (background) pixel by more than `inked` in all.
 */
export async function pixelShare(page, png, { colours, inked }) {
  return page.evaluate(
    async ({ b64, colours, inked }) => {
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
      const counts = colours
        ? (i) => want.has(`${px[i]},${px[i + 1]},${px[i + 2]}`)
        : (i) => Math.abs(px[i] - bg[0]) + Math.abs(px[i + 1] - bg[1]) + Math.abs(px[i + 2] - bg[2]) > inked;
      let n = 0;
      for (let i = 0; i < px.length; i += 4) if (counts(i)) n++;
      return n / (px.length / 4);
    },
    { b64: png.toString('base64'), colours, inked },
  );
}
