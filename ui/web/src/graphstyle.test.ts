import { describe, expect, it } from 'vitest';
import { HEALTH_COLOR } from './format';
import { DETAIL_ZOOM, graphStyle, PALETTE, styleMode, type StyleMode } from './graphstyle';

type Rule = { selector: string; style: Record<string, unknown> };
const rules = (m: StyleMode) => graphStyle(m) as unknown as Rule[];
const props = (m: StyleMode, selector: string) => Object.assign({}, ...rules(m).filter((r) => r.selector === selector).map((r) => r.style));
const anyRule = (m: StyleMode, pred: (k: string, v: unknown) => boolean) => rules(m).some((r) => Object.entries(r.style).some(([k, v]) => pred(k, v)));

describe('styleMode', () => {
  it.each([
    [false, 0.1, 'full'],
    [false, 2, 'full'],
    [true, 0.1, 'overview'],
    [true, DETAIL_ZOOM - 0.01, 'overview'],
    [true, DETAIL_ZOOM, 'detail'],
    [true, 1.5, 'detail'],
  ] as const)('large=%s at zoom %s is %s', (large, zoom, want) => {
    expect(styleMode(large, zoom)).toBe(want);
  });
});

describe('graphStyle', () => {
  it('gives small graphs labels, arrows and curved edges', () => {
    expect(props('full', 'node').label).toBe('data(label)');
    expect(props('full', 'edge')).toMatchObject({ label: 'data(label)', 'target-arrow-shape': 'triangle', 'curve-style': 'bezier' });
    expect(props('full', 'edge.mtls')['source-arrow-shape']).toBe('square');
    expect(rules('full').some((r) => r.selector === 'node.group')).toBe(true);
  });

  it('gives large graphs zoomed in labels and arrows on straight edges', () => {
    expect(props('detail', 'node').label).toBe('data(label)');
    expect(props('detail', 'edge')).toMatchObject({ label: 'data(label)', 'target-arrow-shape': 'triangle', 'curve-style': 'straight' });
  });

  it('draws the overview without labels, arrows or control points', () => {
    expect(props('overview', 'edge')['curve-style']).toBe('haystack');
    expect(anyRule('overview', (k) => k === 'label' || k.startsWith('text-') || k.startsWith('font-'))).toBe(false);
    expect(anyRule('overview', (k) => k.endsWith('arrow-shape'))).toBe(false);
  });

  it('keeps health colours and traffic widths in every mode', () => {
    for (const m of ['full', 'detail', 'overview'] as const) {
      expect(props(m, 'node.health-failing')['border-color']).toBe(HEALTH_COLOR.failing);
      expect(props(m, 'edge.health-failing')['line-color']).toBe(HEALTH_COLOR.failing);
      expect(props(m, 'edge.w4').width).toBe(4);
    }
  });

  it('maps no property through a per-element function or data mapper other than the label', () => {
    for (const m of ['full', 'detail', 'overview'] as const) {
      expect(anyRule(m, (_k, v) => typeof v === 'function')).toBe(false);
      expect(anyRule(m, (k, v) => k !== 'label' && typeof v === 'string' && /^(data|mapData)\(/.test(v))).toBe(false);
    }
  });

  it('tells health by pattern as well as colour in every mode', () => {
    for (const m of ['full', 'detail', 'overview'] as const) {
      expect(props(m, 'node.health-degraded')['border-style']).toBe('dashed');
      expect(props(m, 'node.health-failing')['border-style']).toBe('double');
      expect(props(m, 'edge.health-degraded')['line-style']).toBe('dotted');
      expect(props(m, 'edge.health-failing')['line-style']).toBe('dashed');
    }
  });

  it('draws nodes and labels in the theme\'s colours', () => {
    const dark = (sel: string) => Object.assign({}, ...(graphStyle('full', 'dark') as unknown as Rule[]).filter((r) => r.selector === sel).map((r) => r.style));
    expect(dark('node')['background-color']).toBe(PALETTE.dark.node);
    expect(dark('node').color).toBe(PALETTE.dark.label);
    expect(props('full', 'node')['background-color']).toBe(PALETTE.light.node);
  });
});
