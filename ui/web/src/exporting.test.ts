import { describe, expect, it } from 'vitest';
import type { Graph } from './api';
import { exportName, toDOT, toSVG, type Scene } from './exporting';
// @ts-expect-error plain JS module shared with the fixture server
import { apiGraph } from '../e2e/apigraph.mjs';

const g: Graph = apiGraph({
  nodes: [
    { id: 'unknown' },
    { id: 'default/productpage/v1', namespace: 'default', service: 'productpage', version: 'v1', workload: 'productpage-v1' },
    { id: 'default/reviews/v1', namespace: 'default', service: 'reviews', version: 'v1', workload: 'reviews-v1' },
    { id: 'default/reviews/v3', namespace: 'default', service: 'reviews', version: 'v3', workload: 'reviews-v3' },
  ],
  edges: [
    { source: 'unknown', target: 'default/productpage/v1', rps: 10, errorRate: 0, p99Ms: 80 },
    { source: 'default/productpage/v1', target: 'default/reviews/v1', rps: 5, errorRate: 0, p99Ms: 30 },
    { source: 'default/productpage/v1', target: 'default/reviews/v3', rps: 5, errorRate: 0.3, p99Ms: 900 },
  ],
});

describe('toDOT', () => {
  const dot = toDOT(g, 'version');
  it('writes a digraph with a box per service and every edge with its numbers', () => {
    expect(dot.startsWith('digraph meshlens {')).toBe(true);
    expect(dot.trim().endsWith('}')).toBe(true);
    expect(dot).toContain('label="default/reviews"');
    expect(dot).toContain('"default/productpage/v1" -> "default/reviews/v3" [label="5 rps · 30% · p99 900ms"');
    expect(dot.match(/->/g)).toHaveLength(3);
  });
  it('shapes and styles by the backend\'s health, not by colour only', () => {
    expect(dot).toMatch(/"default\/reviews\/v3" \[label="v3", shape=octagon, style="bold"/);
    expect(dot).toMatch(/"default\/reviews\/v3" \[label="5 rps[^\]]*style="bold,dashed"/);
    expect(dot).toMatch(/"unknown" \[label="unknown", shape=diamond/);
  });
  it('quotes ids and labels', () => {
    const odd = apiGraph({ nodes: [{ id: 'a"b', service: 'a"b' }], edges: [] });
    expect(toDOT(odd, 'service')).toContain('"a\\"b" [label="a\\"b"');
  });
  it('writes a valid empty digraph for an empty graph', () => {
    expect(toDOT(apiGraph({ nodes: [], edges: [] }), 'service')).toMatch(/^digraph meshlens \{[^]*\}\n$/);
  });
});

describe('toSVG', () => {
  const scene: Scene = {
    width: 400, height: 200, background: '#fff', text: 'meshlens <version> graph',
    boxes: [{ x: 180, y: 40, w: 60, h: 120, label: 'reviews', stroke: '#94a3b8', fill: '#f8fafc' }],
    edges: [{ x1: 50, y1: 100, cx: 125, cy: 100, x2: 200, y2: 60, color: '#dc2626', width: 2, dash: '6 3', label: '5 rps · 30%', opacity: 1 }],
    nodes: [
      { x: 50, y: 100, w: 30, h: 30, shape: 'diamond', stroke: '#9ca3af', strokeWidth: 2, dash: '', fill: '#f3f4f6', label: 'unknown', opacity: 1 },
      { x: 200, y: 60, w: 34, h: 24, shape: 'rect', stroke: '#dc2626', strokeWidth: 4, dash: '', fill: '#fff', label: 'v3', opacity: 0.12 },
    ],
  };
  const svg = toSVG(scene);
  it('is a standalone SVG of the boxes, edges with arrows and nodes with labels', () => {
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg" width="400" height="200"/);
    expect(svg).toContain('<title>meshlens &lt;version&gt; graph</title>');
    expect(svg).toContain('stroke-dasharray="6 3" marker-end="url(#a0)"');
    expect(svg).toContain('<path d="M50,85L65,100L50,115L35,100z"');
    expect(svg).toContain('>reviews</text>');
    expect(svg).toContain('opacity="0.12"');
    expect(svg.trim().endsWith('</svg>')).toBe(true);
  });
});

it('names an export by view, namespace and time', () => {
  expect(exportName('version', 'default', new Date('2026-11-30T14:02:09.123Z'), 'svg')).toBe('meshlens-version-default-20261130T140209Z.svg');
  expect(exportName('service', '', new Date('2026-11-30T14:02:09Z'), 'dot')).toBe('meshlens-service-20261130T140209Z.dot');
});
