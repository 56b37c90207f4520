import { describe, expect, it } from 'vitest';
import type { Graph } from './api';
import { edgeLabel, edgeWidth, filterNamespace, flattenGroups, groupId, impactHighlight, isBox, nodeTraffic, pathHighlight, planUpdate, searchMatches, toElements } from './graph';
import { HEALTH_COLOR } from './format';
// @ts-expect-error plain JS module shared with the fixture server
import { syntheticGraph } from '../e2e/synthetic.mjs';
// @ts-expect-error plain JS module shared with the fixture server
import { apiGraph } from '../e2e/apigraph.mjs';

/** normalizeGraph completes nodes and edges into the API's Graph, as meshlens computes it. */
const normalizeGraph = (g: { nodes: Partial<Graph['nodes'][number]>[]; edges: Partial<Graph['edges'][number]>[] }): Graph => apiGraph(g);

// A bookinfo-shaped graph as the API returns it in the version view.
const bookinfo = normalizeGraph({
  nodes: [
    { id: 'unknown', namespace: '', service: 'unknown' },
    { id: 'default/productpage/v1', namespace: 'default', service: 'productpage', version: 'v1', workload: 'productpage-v1' },
    { id: 'default/details/v1', namespace: 'default', service: 'details', version: 'v1', workload: 'details-v1' },
    { id: 'default/reviews/v1', namespace: 'default', service: 'reviews', version: 'v1', workload: 'reviews-v1' },
    { id: 'default/reviews/v2', namespace: 'default', service: 'reviews', version: 'v2', workload: 'reviews-v2' },
    { id: 'default/reviews/v3', namespace: 'default', service: 'reviews', version: 'v3', workload: 'reviews-v3' },
    { id: 'default/ratings/v1', namespace: 'default', service: 'ratings', version: 'v1', workload: 'ratings-v1' },
  ],
  edges: [
    { source: 'unknown', target: 'default/productpage/v1', requests: 3000, rps: 10, errorRate: 0, p50Ms: 20, p90Ms: 40, p99Ms: 80, codes: { '200': 3000 }, mtls: 0 },
    { source: 'default/productpage/v1', target: 'default/details/v1', requests: 3000, rps: 10, errorRate: 0, p50Ms: 3, p90Ms: 6, p99Ms: 9, codes: { '200': 3000 }, mtls: 1 },
    { source: 'default/productpage/v1', target: 'default/reviews/v1', requests: 1000, rps: 3.3, errorRate: 0, p99Ms: 30, codes: { '200': 1000 }, mtls: 1 },
    { source: 'default/productpage/v1', target: 'default/reviews/v2', requests: 1000, rps: 3.3, errorRate: 0.02, p99Ms: 35, codes: { '200': 980, '503': 20 }, mtls: 1 },
    { source: 'default/productpage/v1', target: 'default/reviews/v3', requests: 1000, rps: 3.3, errorRate: 0.2, p99Ms: 1200, codes: { '200': 800, '500': 200 }, mtls: 1 },
    { source: 'default/reviews/v2', target: 'default/ratings/v1', requests: 1000, rps: 3.3, errorRate: 0, p99Ms: 5, codes: { '200': 1000 }, mtls: 1 },
    { source: 'default/reviews/v3', target: 'default/ratings/v1', requests: 1000, rps: 3.3, errorRate: 0, p99Ms: 5, codes: { '200': 1000 }, mtls: 1 },
  ],
});

const byId = (els: ReturnType<typeof toElements>) => new Map([...els.nodes, ...els.edges].map((e) => [String(e.data.id), e]));

describe('toElements in the version view', () => {
  const els = toElements(bookinfo, { view: 'version' });
  const m = byId(els);

  it('groups the versions of a service inside one compound node named for the service', () => {
    const g = m.get(groupId('default', 'reviews'));
    expect(g?.data.kind).toBe('group');
    expect(g?.data.label).toBe('reviews');
    for (const v of ['v1', 'v2', 'v3']) {
      expect(m.get(`default/reviews/${v}`)?.data.parent).toBe(groupId('default', 'reviews'));
      expect(m.get(`default/reviews/${v}`)?.data.label).toBe(v);
    }
  });

  it('puts group nodes before their children so cytoscape can add them in order', () => {
    const ids = els.nodes.map((n) => String(n.data.id));
    expect(ids.indexOf(groupId('default', 'reviews'))).toBeLessThan(ids.indexOf('default/reviews/v1'));
  });

  it('keeps the unknown caller as its own ungrouped node', () => {
    const u = m.get('unknown');
    expect(u?.data.kind).toBe('unknown');
    expect(u?.data.parent).toBeUndefined();
  });

  it('colours edges green, amber and red by error rate', () => {
    expect(m.get('default/productpage/v1->default/reviews/v1')?.data.color).toBe(HEALTH_COLOR.healthy);
    expect(m.get('default/productpage/v1->default/reviews/v2')?.data.color).toBe(HEALTH_COLOR.degraded);
    expect(m.get('default/productpage/v1->default/reviews/v3')?.data.color).toBe(HEALTH_COLOR.failing);
    expect(m.get('default/productpage/v1->default/reviews/v3')?.classes).toContain('health-failing');
  });

  it('labels edges with rps, error percentage and p99', () => {
    expect(m.get('default/productpage/v1->default/reviews/v3')?.data.label).toBe('3.3 rps · 20% · p99 1.2s');
    expect(m.get('default/productpage/v1->default/details/v1')?.data.label).toBe('10 rps · p99 9ms');
  });

  it('takes node health from the API and gives a service box its worst version\'s', () => {
    expect(m.get('default/reviews/v3')?.data.health).toBe('failing');
    expect(m.get('default/reviews/v2')?.data.health).toBe('degraded');
    expect(m.get('default/reviews/v1')?.data.health).toBe('healthy');
    expect(m.get(groupId('default', 'reviews'))?.data.health).toBe('failing');
    expect(m.get('unknown')?.data.health).toBe('idle');
  });

  it('marks fully mTLS edges', () => {
    expect(m.get('default/productpage/v1->default/details/v1')?.classes).toContain('mtls');
    expect(m.get('unknown->default/productpage/v1')?.classes).not.toContain('mtls');
  });
});

describe('toElements in other views', () => {
  it('does not group in the service view and labels nodes by service', () => {
    const g = normalizeGraph({
      nodes: [{ id: 'default/reviews', namespace: 'default', service: 'reviews' }, { id: 'default/ratings', namespace: 'default', service: 'ratings' }],
      edges: [{ source: 'default/reviews', target: 'default/ratings', rps: 2 }],
    });
    const els = toElements(g, { view: 'service' });
    expect(els.nodes.map((n) => n.data.label)).toEqual(['reviews', 'ratings']);
    expect(els.nodes.every((n) => n.data.parent === undefined)).toBe(true);
  });

  it('labels workloads by workload name inside their service group', () => {
    const els = toElements(bookinfo, { view: 'workload' });
    const n = byId(els).get('default/reviews/v2');
    expect(n?.data.label).toBe('reviews-v2');
    expect(n?.data.parent).toBe(groupId('default', 'reviews'));
  });

  it('adds the namespace to labels when the graph spans namespaces', () => {
    const g = normalizeGraph({
      nodes: [{ id: 'a/x', namespace: 'a', service: 'x' }, { id: 'b/y', namespace: 'b', service: 'y' }],
      edges: [],
    });
    expect(toElements(g, { view: 'service' }).nodes.map((n) => n.data.label)).toEqual(['x\na', 'y\nb']);
  });

  it('dims what does not match the search and highlights what does', () => {
    const els = toElements(bookinfo, { view: 'version', search: 'RATINGS' });
    const m = byId(els);
    expect(m.get('default/ratings/v1')?.classes).toContain('match');
    expect(m.get('default/details/v1')?.classes).toContain('dim');
    expect(m.get('default/reviews/v2->default/ratings/v1')?.classes).toContain('match');
    expect(m.get('default/productpage/v1->default/details/v1')?.classes).toContain('dim');
  });

  it('finds for a large graph\'s canvas the same matches a search marks in the elements', () => {
    const marked = (els: ReturnType<typeof toElements>) => els.nodes.filter((n) => String(n.classes).split(' ').includes('match') && !isBox(n)).map((n) => n.data.id).sort();
    for (const q of ['RATINGS', ' v2 ', 'default/details', 'nothing-like-it']) {
      expect([...searchMatches(bookinfo, q)].sort()).toEqual(marked(toElements(bookinfo, { view: 'version', search: q })));
    }
    expect(searchMatches(bookinfo, '  ').size).toBe(0);
  });

  it('can leave edge labels out', () => {
    const els = toElements(bookinfo, { view: 'version', edgeLabels: false });
    expect(els.edges.every((e) => e.data.label === '')).toBe(true);
  });
});

describe('what the backend computes', () => {
  it('shows the health the API gives, not one recomputed from the rates', () => {
    const g = normalizeGraph({ nodes: [{ id: 'a' }, { id: 'b' }], edges: [{ source: 'a', target: 'b', rps: 1, requests: 100, errorRate: 0.05 }] });
    // 5% is degraded in graph/build.go (failing from 10%).
    expect(g.nodes[1].health).toBe('degraded');
    const m = byId(toElements(g, { view: 'service' }));
    expect(m.get('b')?.data.health).toBe('degraded');
    expect(m.get('a->b')?.classes).toContain('health-degraded');
    const told: Graph = { ...g, nodes: g.nodes.map((n) => ({ ...n, health: 'failing' as const })), edges: g.edges.map((e) => ({ ...e, health: 'healthy' as const })) };
    const t = byId(toElements(told, { view: 'service' }));
    expect(t.get('b')?.data.health).toBe('failing');
    expect(t.get('a->b')?.data.health).toBe('healthy');
  });

  it('marks the nodes and edges of the dependency cycles the API found', () => {
    const g = normalizeGraph({ nodes: [{ id: 'a' }, { id: 'b' }, { id: 'c' }], edges: [{ source: 'a', target: 'b', rps: 1 }, { source: 'b', target: 'a', rps: 1 }, { source: 'b', target: 'c', rps: 1 }] });
    expect(g.cycles).toEqual([['a', 'b']]);
    const m = byId(toElements(g, { view: 'service' }));
    expect(m.get('a')?.classes).toContain('cycle');
    expect(m.get('a->b')?.classes).toContain('cycle');
    expect(m.get('b->c')?.classes).not.toContain('cycle');
    expect(m.get('c')?.classes).not.toContain('cycle');
  });
});

describe('planUpdate', () => {
  const current = (els: ReturnType<typeof toElements>) =>
    new Map([...els.nodes, ...els.edges].map((e) => [String(e.data.id), e.data.parent as string | undefined]));

  it('updates in place without a new layout when only rates change', () => {
    const before = toElements(bookinfo, { view: 'version' });
    const changed: Graph = { ...bookinfo, edges: bookinfo.edges.map((e) => ({ ...e, rps: e.rps * 2 })) };
    const plan = planUpdate(current(before), toElements(changed, { view: 'version' }));
    expect(plan.relayout).toBe(false);
    expect(plan.add).toHaveLength(0);
    expect(plan.remove).toHaveLength(0);
    expect(plan.update).toHaveLength(before.nodes.length + before.edges.length);
  });

  it('asks for a layout when a node appears and adds it', () => {
    const before = toElements({ ...bookinfo, nodes: bookinfo.nodes.filter((n) => n.id !== 'default/reviews/v3'), edges: bookinfo.edges.filter((e) => !e.target.endsWith('v3') && !e.source.endsWith('v3')) }, { view: 'version' });
    const plan = planUpdate(current(before), toElements(bookinfo, { view: 'version' }));
    expect(plan.relayout).toBe(true);
    expect(plan.add.map((e) => e.data.id)).toContain('default/reviews/v3');
  });

  it('removes a vanished edge without a new layout', () => {
    const before = toElements(bookinfo, { view: 'version' });
    const after = toElements({ ...bookinfo, edges: bookinfo.edges.slice(1) }, { view: 'version' });
    const plan = planUpdate(current(before), after);
    expect(plan.remove).toEqual(['unknown->default/productpage/v1']);
    expect(plan.relayout).toBe(false);
  });

  it('replaces a node whose group changed', () => {
    const before = toElements(bookinfo, { view: 'service' });
    const plan = planUpdate(current(before), toElements(bookinfo, { view: 'version' }));
    expect(plan.remove).toContain('default/reviews/v1');
    expect(plan.add.map((e) => e.data.id)).toContain('default/reviews/v1');
    expect(plan.relayout).toBe(true);
  });
});

describe('helpers', () => {
  it('widens edges with the logarithm of the rate', () => {
    expect(edgeWidth(0)).toBe(1);
    expect(edgeWidth(1)).toBeLessThan(edgeWidth(100));
    expect(edgeWidth(1e9)).toBe(6);
  });
  it('leaves zero error and latency out of the label', () => {
    expect(edgeLabel({ rps: 0, errorRate: 0, p99Ms: 0 })).toBe('0 rps');
  });
  it('filters a namespace and keeps its direct neighbours', () => {
    const g = normalizeGraph({
      nodes: [{ id: 'a/x', namespace: 'a' }, { id: 'b/y', namespace: 'b' }, { id: 'c/z', namespace: 'c' }],
      edges: [{ source: 'a/x', target: 'b/y' }, { source: 'c/z', target: 'a/x' }, { source: 'b/y', target: 'c/z' }],
    });
    expect(filterNamespace(g, 'b').nodes.map((n) => n.id)).toEqual(['a/x', 'b/y', 'c/z']);
    expect(filterNamespace(g, 'b').edges).toHaveLength(2);
    expect(filterNamespace(g, '')).toBe(g);
  });
  it('sums traffic into and out of a set of nodes', () => {
    const t = nodeTraffic(bookinfo, new Set(['default/reviews/v1', 'default/reviews/v2', 'default/reviews/v3']));
    expect(t.inbound).toHaveLength(3);
    expect(t.outbound).toHaveLength(2);
    expect(t.rpsIn).toBeCloseTo(9.9);
    expect(t.errorRateIn).toBeCloseTo((3.3 * 0.02 + 3.3 * 0.2) / 9.9);
  });
});

describe('a 1,000-node synthetic graph', () => {
  it('transforms quickly enough to be redone on every refresh', () => {
    const g: Graph = syntheticGraph(1000);
    expect(g.nodes).toHaveLength(1000);
    const els = toElements(g, { view: 'version' });
    const groups = els.nodes.filter((n) => n.data.kind === 'group');
    expect(groups.length).toBeGreaterThan(300);
    expect(els.nodes.length).toBe(1000 + groups.length);
    expect(els.edges.length).toBe(g.edges.length);
  });
});

describe('flattenGroups', () => {
  it('removes compound nodes and parent links and lists each box with its members', () => {
    const { elements, boxes } = flattenGroups(toElements(bookinfo, { view: 'version' }));
    expect(elements.nodes.some((n) => n.data.kind === 'group')).toBe(false);
    expect(elements.nodes.every((n) => n.data.parent === undefined)).toBe(true);
    expect(elements.nodes).toHaveLength(bookinfo.nodes.length);
    const reviews = boxes.find((b) => b.id === groupId('default', 'reviews'));
    expect(reviews?.members.sort()).toEqual(['default/reviews/v1', 'default/reviews/v2', 'default/reviews/v3']);
    expect(reviews?.health).toBe('failing');
  });
});

describe('highlighting a blast radius or a path', () => {
  it('highlights a node, its transitive callers and the edges between them, and fades the rest', () => {
    const imp = { node: 'default/ratings/v1', callers: ['default/reviews/v2', 'default/reviews/v3'], affectedCallers: ['default/reviews/v2', 'default/reviews/v3', 'default/productpage/v1', 'unknown'], blastRadius: 4, upstreamDepth: 3, dependencies: [], dependencyDepth: 0, inCycle: false };
    const m = byId(toElements(bookinfo, { view: 'version', highlight: impactHighlight(bookinfo, imp) }));
    expect(m.get('default/ratings/v1')?.classes).toContain('hl-root');
    for (const id of ['default/reviews/v3', 'default/productpage/v1', 'unknown']) expect(m.get(id)?.classes).toMatch(/\bhl\b/);
    expect(m.get('default/details/v1')?.classes).toContain('faded');
    expect(m.get('default/reviews/v1')?.classes).toContain('faded');
    expect(m.get('default/productpage/v1->default/reviews/v3')?.classes).toMatch(/\bhl\b/);
    expect(m.get('default/productpage/v1->default/reviews/v1')?.classes).toContain('faded');
    expect(m.get('default/productpage/v1->default/details/v1')?.classes).toContain('faded');
    // A service box is highlighted when a member is.
    expect(m.get(groupId('default', 'reviews'))?.classes).toMatch(/\bhl\b/);
    expect(m.get(groupId('default', 'details'))?.classes).toContain('faded');
  });

  it('highlights the nodes and consecutive edges of a path', () => {
    const m = byId(toElements(bookinfo, { view: 'version', highlight: pathHighlight(['unknown', 'default/productpage/v1', 'default/reviews/v2', 'default/ratings/v1']) }));
    expect(m.get('unknown')?.classes).toContain('hl-root');
    expect(m.get('default/reviews/v2->default/ratings/v1')?.classes).toMatch(/\bhl\b/);
    expect(m.get('default/reviews/v3->default/ratings/v1')?.classes).toContain('faded');
    expect(m.get('default/reviews/v3')?.classes).toContain('faded');
  });

  it('leaves classes alone without a highlight', () => {
    const els = toElements(bookinfo, { view: 'version' });
    expect([...els.nodes, ...els.edges].some((e) => /\b(hl|faded)\b/.test(String(e.classes)))).toBe(false);
  });
});
