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
  return {
    ctx,
    async close() {
      await ctx.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
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
