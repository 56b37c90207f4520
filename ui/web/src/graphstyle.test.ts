import { describe, expect, it } from 'vitest';
import { HEALTH_COLOR } from './format';
import { graphStyle, LABEL_ZOOM, PALETTE, styleMode, type StyleMode } from './graphstyle';

type Rule = { selector: string; style: Record<string, unknown> };
const rules = (m: StyleMode) => graphStyle(m) as unknown as Rule[];
const props = (m: StyleMode, selector: string) => Object.assign({}, ...rules(m).filter((r) => r.selector === selector).map((r) => r.style));
const anyRule = (m: StyleMode, pred: (k: string, v: unknown) => boolean) => rules(m).some((r) => Object.entries(r.style).some(([k, v]) => pred(k, v)));

describe('styleMode', () => {
  it('gives a graph one sheet by its size, whatever the zoom', () => {
    expect(styleMode(false)).toBe('full');
    expect(styleMode(true)).toBe('large');
  });
});

describe('graphStyle', () => {
  it('gives small graphs labels, arrows and curved edges', () => {
    expect(props('full', 'node').label).toBe('data(label)');
    expect(props('full', 'edge')).toMatchObject({ label: 'data(label)', 'target-arrow-shape': 'triangle', 'curve-style': 'bezier' });
    expect(props('full', 'edge.mtls')['source-arrow-shape']).toBe('square');
    expect(rules('full').some((r) => r.selector === 'node.group')).toBe(true);
  });

  it('names a large graph\'s nodes and edges only when zoomed in, by min-zoomed-font-size, not by another sheet', () => {
    const node = props('large', 'node');
    expect(node.label).toBe('data(label)');
    // cytoscape hides a label drawn smaller than min-zoomed-font-size: shown from LABEL_ZOOM up.
    expect((node['min-zoomed-font-size'] as number) / (node['font-size'] as number)).toBeCloseTo(LABEL_ZOOM);
    expect(LABEL_ZOOM).toBeGreaterThan(0.5);
    const edge = props('large', 'edge[label != ""]');
    expect(edge.label).toBe('data(label)');
    expect(edge['min-zoomed-font-size'] as number).toBeGreaterThanOrEqual(7);
  });

  it('draws a large graph without arrows or control points, setting no property to its default', () => {
    // Haystack is cytoscape's default curve (straight, between centres, no arrows).
    expect(anyRule('large', (k) => k === 'curve-style' || k === 'haystack-radius')).toBe(false);
    expect(anyRule('large', (k) => k.endsWith('arrow-shape'))).toBe(false);
    expect(props('large', 'node')).not.toHaveProperty('shape');
    expect(props('large', 'node')).not.toHaveProperty('width');
    expect(props('large', 'node')).not.toHaveProperty('text-background-opacity');
  });

  it('keeps health colours and traffic widths in every mode', () => {
    for (const m of ['full', 'large'] as const) {
      expect(props(m, 'node.health-failing')['border-color']).toBe(HEALTH_COLOR.failing);
      expect(props(m, 'edge.health-failing')['line-color']).toBe(HEALTH_COLOR.failing);
      expect(props(m, 'edge.w4').width).toBe(4);
    }
  });

  it('maps no property through a per-element function or data mapper other than the label', () => {
    for (const m of ['full', 'large'] as const) {
      expect(anyRule(m, (_k, v) => typeof v === 'function')).toBe(false);
      expect(anyRule(m, (k, v) => k !== 'label' && typeof v === 'string' && /^(data|mapData)\(/.test(v))).toBe(false);
    }
  });

  it('tells health by pattern as well as colour in every mode', () => {
    for (const m of ['full', 'large'] as const) {
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
