// Number and time formatting shared by every page, so a rate or a latency
// reads the same on the graph, in a panel and in a table.

/** fmtRps formats requests per second: 0, 0.05, 4.2, 37, 1.2k. */
export function fmtRps(v: number): string {
  if (!Number.isFinite(v) || v <= 0) return '0';
  if (v < 0.01) return '<0.01';
  if (v < 1) return trim(v.toFixed(2));
  if (v < 10) return trim(v.toFixed(1));
  if (v < 1000) return String(Math.round(v));
  if (v < 1e6) return trim((v / 1000).toFixed(v < 10000 ? 1 : 0)) + 'k';
  return trim((v / 1e6).toFixed(1)) + 'M';
}

/** fmtPct formats a fraction 0..1 as a percentage: 0%, <0.1%, 2.5%, 37%. */
export function fmtPct(frac: number): string {
  if (!Number.isFinite(frac) || frac <= 0) return '0%';
  const p = frac * 100;
  if (p < 0.1) return '<0.1%';
  if (p < 10) return trim(p.toFixed(1)) + '%';
  return Math.round(p) + '%';
}

/** fmtMs formats a latency in milliseconds: 0.4ms, 12ms, 1.25s, 2m 5s. */
export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms) || ms <= 0) return '0ms';
  if (ms < 1) return trim(ms.toFixed(2)) + 'ms';
  if (ms < 10) return trim(ms.toFixed(1)) + 'ms';
  if (ms < 1000) return Math.round(ms) + 'ms';
  if (ms < 60000) return trim((ms / 1000).toFixed(2)) + 's';
  return fmtDuration(ms / 1000);
}

/** fmtDuration formats seconds as 45s, 5m, 2m 5s, 3h 10m, 2d 4h. */
export function fmtDuration(sec: number): string {
  sec = Math.max(0, Math.round(sec));
  if (sec < 60) return `${sec}s`;
  const units: [number, string][] = [
    [86400, 'd'],
    [3600, 'h'],
    [60, 'm'],
    [1, 's'],
  ];
  const parts: string[] = [];
  for (const [n, u] of units) {
    if (sec >= n) {
      parts.push(`${Math.floor(sec / n)}${u}`);
      sec %= n;
    }
    if (parts.length === 2) break;
  }
  return parts.join(' ');
}

/** fmtAgo says how long ago a time (ms) was, relative to now (ms). */
export function fmtAgo(t: number, now = Date.now()): string {
  if (!t) return '—';
  const d = (now - t) / 1000;
  if (d < 5) return 'just now';
  return `${fmtDuration(d)} ago`;
}

/** fmtClock formats a time (ms) as local HH:MM:SS. */
export function fmtClock(t: number): string {
  if (!t) return '—';
  const d = new Date(t);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

/** fmtCount formats an integer count with thin grouping: 1234567 → 1.2M, 12345 → 12.3k. */
export function fmtCount(n: number): string {
  if (!Number.isFinite(n) || n <= 0) return '0';
  if (n < 10000) return String(Math.round(n));
  if (n < 1e6) return trim((n / 1000).toFixed(1)) + 'k';
  return trim((n / 1e6).toFixed(1)) + 'M';
}

/** parseWindow turns "30s", "5m", "1h" into seconds; 0 when invalid. */
export function parseWindow(w: string): number {
  const m = /^(\d+)(s|m|h|d)$/.exec(w.trim());
  if (!m) return 0;
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 's' | 'm' | 'h' | 'd'];
}

export type { Health } from './api';
import type { Health } from './api';

/**
 * What each health means, for legends. meshlens computes health (graph/build.go:
 * degradedErrorRate, failingErrorRate); the UI shows it as given and only
 * says here what the thresholds are (a unit test reads them from the Go source).
 */
export const HEALTH_THRESHOLDS = { degraded: 0.01, failing: 0.1 } as const;

const RANK: Record<Health, number> = { idle: 0, healthy: 1, degraded: 2, failing: 3 };

/** worstHealth is the worst of several healths (idle when there are none). */
export function worstHealth(hs: Iterable<Health>): Health {
  let w: Health = 'idle';
  for (const h of hs) if (RANK[h] > RANK[w]) w = h;
  return w;
}

/**
 * Health colours from Okabe and Ito's colour-blind safe palette (bluish
 * green, orange, vermillion); the graph also tells health by pattern, and
 * lists by a shape (circle, triangle, square).
 */
export const HEALTH_COLOR: Record<Health, string> = {
  healthy: '#009e73',
  degraded: '#e69f00',
  failing: '#d55e00',
  idle: '#9ca3af',
};

function trim(s: string): string {
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}
