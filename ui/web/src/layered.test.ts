import { describe, expect, it } from 'vitest';
import { layeredPositions } from './layered';
// @ts-expect-error plain JS module shared with the fixture server
import { syntheticGraph } from '../e2e/synthetic.mjs';

describe('layeredPositions', () => {
  it('puts callers left of callees and versions of a service in one column, together', () => {
    const pos = layeredPositions({
      nodes: [{ id: 'u' }, { id: 'pp' }, { id: 'r1', parent: 'r' }, { id: 'r2', parent: 'r' }, { id: 'rt' }, { id: 'd' }],
      edges: [
        { source: 'u', target: 'pp' },
        { source: 'pp', target: 'r1' },
        { source: 'pp', target: 'r2' },
        { source: 'pp', target: 'd' },
        { source: 'r2', target: 'rt' },
      ],
    });
    const x = (id: string) => pos.get(id)!.x;
    expect(x('u')).toBeLessThan(x('pp'));
    expect(x('pp')).toBeLessThan(x('r1'));
    expect(x('r1')).toBe(x('r2'));
    expect(x('r2')).toBeLessThan(x('rt'));
    expect(x('d')).toBe(x('r1'));
    expect(Math.abs(pos.get('r1')!.y - pos.get('r2')!.y)).toBe(46);
  });

  it('gives every node of a cyclic graph a position', () => {
    const pos = layeredPositions({
      nodes: [{ id: 'a' }, { id: 'b' }, { id: 'c' }],
      edges: [
        { source: 'a', target: 'b' },
        { source: 'b', target: 'c' },
        { source: 'c', target: 'a' },
      ],
    });
    expect(pos.size).toBe(3);
    for (const p of pos.values()) expect(Number.isFinite(p.x) && Number.isFinite(p.y)).toBe(true);
  });

  it('lays out 1,000 nodes with no two nodes on the same spot', () => {
    const g = syntheticGraph(1000);
    const pos = layeredPositions({ nodes: g.nodes.map((n: { id: string; namespace: string; service: string }) => ({ id: n.id, parent: `${n.namespace}/${n.service}` })), edges: g.edges });
    expect(pos.size).toBe(1000);
    expect(new Set([...pos.values()].map((p) => `${p.x},${p.y}`)).size).toBe(1000);
  });
});

describe('layeredPositions on a wide mesh', () => {
  it('wraps tall ranks so the picture is closer to the wanted aspect ratio', () => {
    const g = syntheticGraph(1000);
    const nodes = g.nodes.map((n: { id: string; namespace: string; service: string }) => ({ id: n.id, parent: `${n.namespace}/${n.service}` }));
    const box = (aspect: number) => {
      const ps = [...layeredPositions({ nodes, edges: g.edges }, { aspect }).values()];
      const w = Math.max(...ps.map((p) => p.x)) - Math.min(...ps.map((p) => p.x));
      const h = Math.max(...ps.map((p) => p.y)) - Math.min(...ps.map((p) => p.y));
      return w / h;
    };
    const ratio = box(1.6);
    expect(ratio).toBeGreaterThan(0.8);
    expect(ratio).toBeLessThan(3.2);
  });
});
