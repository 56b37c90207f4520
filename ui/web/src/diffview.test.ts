import { describe, expect, it } from 'vitest';
import type { DiffEdge } from './api';
import { defaultWindows, edgeLabel, STATUS_ORDER, STATUS_STYLE, windowsFromQuery } from './components/DiffView';

const change = (before: number, after: number, significance: 'significant' | 'insignificant', direction: 'up' | 'down' | 'none' = 'up') => ({
  before, after, delta: after - before, relative: before ? (after - before) / before : 0, p: significance === 'significant' ? 1e-9 : 0.4,
  direction, significance, test: 't', reason: 'r',
});

describe('diff view', () => {
  it('reads the windows from the URL: around and span, or all four bounds', () => {
    expect(windowsFromQuery(new URLSearchParams('diff=1&around=2026-11-30T10:00:00Z'))).toEqual({ around: '2026-11-30T10:00:00Z', span: '10m' });
    const four = 'beforeStart=a&beforeEnd=b&afterStart=c&afterEnd=d';
    expect(windowsFromQuery(new URLSearchParams(four))).toEqual({ beforeStart: 'a', beforeEnd: 'b', afterStart: 'c', afterEnd: 'd' });
    expect(windowsFromQuery(new URLSearchParams('beforeStart=a&beforeEnd=b'))).toBeNull();
  });

  it('defaults to the last ten whole minutes against the ten before', () => {
    const w = defaultWindows(Date.parse('2026-11-30T10:07:42Z'));
    expect(w).toEqual({ beforeStart: '2026-11-30T09:47:00Z', beforeEnd: '2026-11-30T09:57:00Z', afterStart: '2026-11-30T09:57:00Z', afterEnd: '2026-11-30T10:07:00Z' });
  });

  it('labels an edge with a mark and only what changed significantly', () => {
    const worse: DiffEdge = {
      source: 'a', target: 'b', protocol: 'http', status: 'worse',
      rps: change(10, 10.3, 'insignificant'), errorRate: change(0.01, 0.2, 'significant'), p99Ms: change(25, 400, 'significant'),
    };
    const l = edgeLabel(worse);
    expect(l.startsWith('▲')).toBe(true);
    expect(l).toContain('err');
    expect(l).toContain('p99');
    expect(l).not.toContain('rps');
    expect(edgeLabel({ source: 'a', target: 'c', protocol: 'http', status: 'vanished' })).toBe('− gone');
  });

  it('draws every status apart without colour: vanished dashed, worse thick, each with its own mark', () => {
    expect(STATUS_STYLE.vanished.line).toBe('dashed');
    const marks = STATUS_ORDER.filter((s) => s !== 'unchanged').map((s) => STATUS_STYLE[s].mark);
    expect(new Set(marks).size).toBe(marks.length);
  });
});
