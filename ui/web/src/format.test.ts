import { describe, expect, it } from 'vitest';
import { fmtAgo, fmtCount, fmtDuration, fmtMs, fmtPct, fmtRps, parseWindow, worstHealth, type Health } from './format';

describe('fmtRps', () => {
  it.each([
    [0, '0'], [-1, '0'], [NaN, '0'], [0.004, '<0.01'], [0.05, '0.05'], [0.5, '0.5'], [4.25, '4.3'],
    [10, '10'], [37.4, '37'], [999.4, '999'], [1234, '1.2k'], [12345, '12k'], [2_500_000, '2.5M'],
  ])('formats %s as %s', (v, want) => expect(fmtRps(v)).toBe(want));
});

describe('fmtPct', () => {
  it.each([[0, '0%'], [0.0004, '<0.1%'], [0.001, '0.1%'], [0.025, '2.5%'], [0.05, '5%'], [0.123, '12%'], [1, '100%']])(
    'formats fraction %s as %s', (v, want) => expect(fmtPct(v)).toBe(want));
});

describe('fmtMs', () => {
  it.each([[0, '0ms'], [0.42, '0.42ms'], [4.56, '4.6ms'], [12.4, '12ms'], [999, '999ms'], [1250, '1.25s'], [2000, '2s'], [125000, '2m 5s']])(
    'formats %s ms as %s', (v, want) => expect(fmtMs(v)).toBe(want));
});

describe('fmtDuration and fmtAgo', () => {
  it.each([[0, '0s'], [45, '45s'], [60, '1m'], [125, '2m 5s'], [3600 * 3 + 600, '3h 10m'], [86400 * 2 + 3600 * 4 + 5, '2d 4h']])(
    'formats %s s as %s', (v, want) => expect(fmtDuration(v)).toBe(want));
  it('says just now for the last few seconds and counts back after', () => {
    expect(fmtAgo(10_000, 12_000)).toBe('just now');
    expect(fmtAgo(10_000, 100_000)).toBe('1m 30s ago');
    expect(fmtAgo(0, 100)).toBe('—');
  });
  it('counts large numbers compactly', () => {
    expect(fmtCount(9999)).toBe('9999');
    expect(fmtCount(12345)).toBe('12.3k');
    expect(fmtCount(3_400_000)).toBe('3.4M');
  });
});

describe('parseWindow', () => {
  it.each([['30s', 30], ['5m', 300], ['1h', 3600], ['2d', 172800], ['5', 0], ['m', 0], ['-5m', 0]])('parses %s as %s seconds', (w, s) =>
    expect(parseWindow(w)).toBe(s));
});

describe('worstHealth', () => {
  it.each([
    [[], 'idle'], [['idle', 'healthy'], 'healthy'], [['healthy', 'degraded', 'idle'], 'degraded'], [['degraded', 'failing', 'healthy'], 'failing'],
  ] as [Health[], Health][])('of %j is %s', (hs, want) => expect(worstHealth(hs)).toBe(want));
});
