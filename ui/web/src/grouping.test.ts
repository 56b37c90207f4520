import { describe, expect, it } from 'vitest';
import type { Graph } from './api';
import { drawnEdge, goneNodes, groupMembers, labelGroupId, labelKeysOf, mergeCollapsed, searchMatches, toElements } from './graph';
// @ts-expect-error plain JS module shared with the fixture server
import { apiGraph } from '../e2e/apigraph.mjs';

// Two namespaces, Pods labelled by team (as GET /graph's nodeLabels gives them with Kubernetes).
const mesh: Graph = {
  ...apiGraph({
    nodes: [
      { id: 'unknown', namespace: '', service: 'unknown', unknown: true },
      { id: 'shop/front/v1', namespace: 'shop', service: 'front', version: 'v1' },
      { id: 'shop/cart/v1', namespace: 'shop', service: 'cart', version: 'v1' },
      { id: 'shop/cart/v2', namespace: 'shop', service: 'cart', version: 'v2' },
      { id: 'pay/card/v1', namespace: 'pay', service: 'card', version: 'v1' },
    ],
    edges: [
      { source: 'unknown', target: 'shop/front/v1', requests: 100, errors: 0, rps: 10, errorRate: 0, p99Ms: 20, mtls: 0 },
      { source: 'shop/front/v1', target: 'shop/cart/v1', requests: 60, errors: 0, rps: 6, errorRate: 0, p99Ms: 10, mtls: 1 },
      { source: 'shop/front/v1', target: 'shop/cart/v2', requests: 40, errors: 4, rps: 4, errorRate: 0.1, p99Ms: 90, mtls: 1, health: 'failing' },
      { source: 'shop/cart/v1', target: 'pay/card/v1', requests: 30, errors: 0, rps: 3, errorRate: 0, p99Ms: 5, mtls: 1 },
      { source: 'shop/cart/v2', target: 'pay/card/v1', requests: 20, errors: 2, rps: 2, errorRate: 0.1, p99Ms: 7, mtls: 1 },
    ],
  }),
  nodeLabels: {
    'shop/front/v1': { team: 'storefront', locality: 'eu/a' },
    'shop/cart/v1': { team: 'checkout', locality: 'eu/a' },
    'shop/cart/v2': { team: 'checkout', locality: 'eu/b' },
    'pay/card/v1': { team: 'checkout', tier: 'pci' },
  },
};

const ids = (els: ReturnType<typeof toElements>) => new Map([...els.nodes, ...els.edges].map((e) => [String(e.data.id), e]));

describe('grouping by a label', () => {
  it('puts the nodes with the same value in one box, across services and namespaces', () => {
    const m = ids(toElements(mesh, { view: 'version', groupBy: 'label:team' }));
    const box = labelGroupId('label:team', 'checkout');
    expect(m.get(box)?.data.label).toBe('team=checkout');
    expect(m.get('shop/cart/v1')?.data.parent).toBe(box);
    expect(m.get('pay/card/v1')?.data.parent).toBe(box);
    expect(m.get('shop/front/v1')?.data.parent).toBe(labelGroupId('label:team', 'storefront'));
    // Outside service boxes a version names its service.
    expect(m.get('shop/cart/v2')?.data.label).toContain('cart v2');
    // No label, no box.
    expect(m.get('unknown')?.data.parent).toBeUndefined();
    expect(groupMembers(mesh, box, 'label:team').map((n) => n.id).sort()).toEqual(['pay/card/v1', 'shop/cart/v1', 'shop/cart/v2']);
  });

  it('groups by the built-in keys: namespace, app, locality', () => {
    expect(ids(toElements(mesh, { view: 'version', groupBy: 'namespace' })).get('pay/card/v1')?.data.parent).toBe('group:namespace=pay');
    expect(ids(toElements(mesh, { view: 'version', groupBy: 'app' })).get('shop/cart/v2')?.data.parent).toBe('group:app=cart');
    const byZone = ids(toElements(mesh, { view: 'version', groupBy: 'locality' }));
    expect(byZone.get('shop/cart/v2')?.data.parent).toBe('group:locality=eu/b');
    expect(byZone.get('pay/card/v1')?.data.parent).toBeUndefined();
  });

  it('collapses a group into one node whose edges add up', () => {
    const els = toElements(mesh, { view: 'version', groupBy: 'label:team', collapsed: new Set(['checkout']) });
    const m = ids(els);
    const box = labelGroupId('label:team', 'checkout');
    expect(m.has('shop/cart/v1')).toBe(false);
    expect(m.has('pay/card/v1')).toBe(false);
    expect(m.get(box)?.data.label).toBe('team=checkout (3)');
    expect(m.get(box)?.data.collapsed).toBe(true);
    expect(m.get(box)?.classes).toContain('collapsed');
    const e = m.get(`shop/front/v1->${box}`);
    expect(e?.data.rps).toBe(10);
    expect(e?.data.errorRate).toBeCloseTo(0.04);
    expect(e?.data.p99Ms).toBe(90);
    expect(e?.data.health).toBe('failing');
    // Calls inside the group vanish; every edge's ends exist.
    const nodeIds = new Set(els.nodes.map((n) => String(n.data.id)));
    for (const edge of els.edges) {
      expect(nodeIds.has(String(edge.data.source))).toBe(true);
      expect(nodeIds.has(String(edge.data.target))).toBe(true);
    }
    expect(els.edges).toHaveLength(2);
  });

  it('leaves edges alone when nothing is collapsed', () => {
    expect(mergeCollapsed(mesh.edges, new Map())).toEqual(mesh.edges);
  });

  it('offers the label keys the nodes have, not locality (a key of its own)', () => {
    expect(labelKeysOf(mesh)).toEqual(['team', 'tier']);
    expect(labelKeysOf({ nodeLabels: undefined })).toEqual([]);
  });
});

describe('goneNodes', () => {
  it('names the pinned and selected nodes a graph no longer has', () => {
    expect(goneNodes(mesh, ['shop/cart/v1', 'shop/ghost/v9', 'shop/front/v1->shop/cart/v1', 'pay/old/v0', 'shop/ghost/v9'], '')).toEqual(['pay/old/v0', 'shop/ghost/v9']);
  });
  it('knows the groups of the view as nodes', () => {
    expect(goneNodes(mesh, [labelGroupId('label:team', 'checkout'), labelGroupId('label:team', 'gone')], 'label:team')).toEqual(['group:label:team=gone']);
  });
});

describe('edges of collapsed groups', () => {
  // cart v1 and v2 both call card v1; front calls both carts.
  const g: Graph = apiGraph({
    nodes: [
      { id: 'shop/front/v1', namespace: 'shop', service: 'front', version: 'v1' },
      { id: 'shop/cart/v1', namespace: 'shop', service: 'cart', version: 'v1' },
      { id: 'shop/cart/v2', namespace: 'shop', service: 'cart', version: 'v2' },
      { id: 'pay/card/v1', namespace: 'pay', service: 'card', version: 'v1' },
    ],
    edges: [
      { source: 'shop/front/v1', target: 'shop/cart/v1', requests: 600, errors: 0, rps: 2, p50Ms: 4, p90Ms: 8, p99Ms: 10, mtls: 1, codes: { '200': 600 } },
      { source: 'shop/front/v1', target: 'shop/cart/v2', requests: 300, errors: 30, rps: 1, p50Ms: 6, p90Ms: 40, p99Ms: 90, mtls: 1, codes: { '200': 270, '503': 30 } },
      { source: 'shop/cart/v1', target: 'pay/card/v1', requests: 900, errors: 9, rps: 3, p50Ms: 2, p90Ms: 5, p99Ms: 7, mtls: 1, protocol: 'grpc', codes: { '200': 891, '500': 9 }, grpc: { OK: 891, UNAVAILABLE: 9 }, flags: { UF: 9 } },
      { source: 'shop/cart/v2', target: 'pay/card/v1', requests: 300, errors: 27, rps: 1, p50Ms: 3, p90Ms: 9, p99Ms: 30, mtls: 0, protocol: 'http', codes: { '200': 273, '500': 27 }, flags: { UF: 3, UH: 24 } },
    ],
  });
  const byApp = (collapsed: string[]) => ids(toElements(g, { view: 'version', groupBy: 'app', collapsed: new Set(collapsed) }));

  it('carries the sums of the edges between two collapsed groups', () => {
    const e = byApp(['cart', 'card']).get('group:app=cart->group:app=card')!;
    expect(e.data.rps).toBe(4);
    // 36 errors in 1,200 requests: not the mean of the parts' rates (1% and 9%).
    expect(e.data.errorRate).toBeCloseTo(0.03);
    expect(e.data.p99Ms).toBe(30);
    expect(e.data.parts).toBe(2);
    expect(e.data.label).toBe('Σ2 4 rps · 3% · p99 ≤ 30ms');
    expect(e.data.width).toBeGreaterThan(1);
  });

  it('gives the panel the merged edge with its parts and every count summed', () => {
    const e = drawnEdge(g, 'group:app=cart->group:app=card', 'app', new Set(['cart', 'card']))!;
    expect(e.parts?.map((p) => p.source)).toEqual(['shop/cart/v1', 'shop/cart/v2']);
    expect([e.requests, e.errors]).toEqual([1200, 36]);
    expect(e.codes).toEqual({ '200': 1164, '500': 36 });
    expect(e.grpc).toEqual({ OK: 891, UNAVAILABLE: 9 });
    expect(e.flags).toEqual({ UF: 12, UH: 24 });
    expect(e.protocol).toBe('grpc');
    expect(e.mtls).toBeCloseTo(0.75);
    // The largest p50/p90/p99 of the parts: an upper bound, not an estimate.
    expect([e.p50Ms, e.p90Ms, e.p99Ms]).toEqual([3, 9, 30]);
    expect(e.health).toBe('degraded');
    // The parts themselves are left as they were.
    expect(g.edges[2].codes).toEqual({ '200': 891, '500': 9 });
  });

  it('marks a collapsed group in a large graph\'s search when one of its members matches', () => {
    expect([...searchMatches(g, 'cart', 'app', new Set(['cart']))].sort()).toEqual(['group:app=cart', 'shop/cart/v1', 'shop/cart/v2']);
    expect([...searchMatches(g, 'card', 'app', new Set(['cart']))]).toEqual(['pay/card/v1']);
    const els = ids(toElements(g, { view: 'version', groupBy: 'app', collapsed: new Set(['cart']), search: 'cart' }));
    expect(els.get('group:app=cart')?.classes).toContain('match');
  });

  it('merges an edge from a plain node into one collapsed group, and finds the graph\'s own edges', () => {
    const e = drawnEdge(g, 'shop/front/v1->group:app=cart', 'app', new Set(['cart']))!;
    expect([e.rps, e.requests, e.errors]).toEqual([3, 900, 30]);
    expect(e.codes).toEqual({ '200': 870, '503': 30 });
    expect(byApp(['cart']).get('shop/front/v1->group:app=cart')?.data.label).toBe('Σ2 3 rps · 3.3% · p99 ≤ 90ms');
    // One part: its own numbers, said plainly.
    const one = drawnEdge(g, 'group:app=front->shop/cart/v1', 'app', new Set(['front']))!;
    expect(one.parts).toHaveLength(1);
    expect(byApp(['front']).get('group:app=front->shop/cart/v1')?.data.label).toBe('2 rps · p99 10ms');
    expect(drawnEdge(g, 'shop/cart/v1->pay/card/v1', 'app', new Set(['front']))).toBe(g.edges[2]);
    expect(drawnEdge(g, 'group:app=cart->group:app=card', 'app', new Set(['cart']))).toBeUndefined();
  });
});
