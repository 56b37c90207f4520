// The graph transformation: API graph JSON → cytoscape elements. Pure
// functions only, so grouping, colouring and the incremental-update plan are
// unit-tested without a browser.

import type { ElementDefinition } from 'cytoscape';
import type { Graph, GraphEdge, GraphNode, GraphView, Impact } from './api';
import { fmtMs, fmtPct, fmtRps, HEALTH_COLOR, worstHealth, type Health } from './format';

export type NodeKind = 'service' | 'version' | 'workload' | 'group' | 'unknown';

export interface NodeData {
  id: string;
  label: string;
  kind: NodeKind;
  /** on a dependency cycle, as the backend found it */
  inCycle: boolean;
  namespace: string;
  service: string;
  version: string;
  workload: string;
  parent?: string;
  health: Health;
  color: string;
  /** requests per second arriving at the node */
  rpsIn: number;
  errorRateIn: number;
}

export interface EdgeData {
  id: string;
  source: string;
  target: string;
  label: string;
  health: Health;
  color: string;
  width: number;
  rps: number;
  errorRate: number;
  p99Ms: number;
  mtls: number;
}

export interface Elements {
  nodes: ElementDefinition[];
  edges: ElementDefinition[];
}

export interface ElementsOptions {
  view: GraphView;
  /** case-insensitive substring; matching nodes get class "match", the rest "dim" */
  search?: string;
  /** show rps / error % / p99 on edges */
  edgeLabels?: boolean;
  /** put versions and workloads inside a box per service (default true) */
  groups?: boolean;
  /** a blast radius or a path: these get class "hl" (the root "hl-root"), everything else "faded" */
  highlight?: Highlight;
}

export interface Highlight {
  root?: string;
  nodes: Set<string>;
  edges: Set<string>;
}

/**
 * impactHighlight is a node's blast radius from the API's impact: the node,
 * every caller with a call path to it, and the edges between them.
 */
export function impactHighlight(g: Graph, imp: Impact): Highlight {
  const nodes = new Set([imp.node, ...imp.affectedCallers]);
  const edges = new Set<string>();
  for (const e of g.edges) if (nodes.has(e.source) && nodes.has(e.target) && e.source !== imp.node) edges.add(edgeId(e.source, e.target));
  return { root: imp.node, nodes, edges };
}

/** pathHighlight is a call path from the API: its nodes and the edges between consecutive ones. */
export function pathHighlight(path: string[]): Highlight {
  const edges = new Set<string>();
  for (let i = 1; i < path.length; i++) edges.add(edgeId(path[i - 1], path[i]));
  return { root: path[0], nodes: new Set(path), edges };
}

function hlClass(hl: Highlight | undefined, id: string, isEdge: boolean): string | undefined {
  if (!hl) return undefined;
  if (!(isEdge ? hl.edges : hl.nodes).has(id)) return 'faded';
  return id === hl.root ? 'hl hl-root' : 'hl';
}

export function groupId(namespace: string, service: string): string {
  return `group:${namespace}/${service}`;
}

export function edgeId(source: string, target: string): string {
  return `${source}->${target}`;
}

/** edgeLabel is the text on an edge: "12 rps · 2.1% · p99 45ms" (error part only when non-zero). */
export function edgeLabel(e: Pick<GraphEdge, 'rps' | 'errorRate' | 'p99Ms'>): string {
  const parts = [`${fmtRps(e.rps)} rps`];
  if (e.errorRate > 0) parts.push(fmtPct(e.errorRate));
  if (e.p99Ms > 0) parts.push(`p99 ${fmtMs(e.p99Ms)}`);
  return parts.join(' · ');
}

/** edgeWidth grows with the logarithm of the rate, so 1 rps and 1,000 rps both stay readable. */
export function edgeWidth(rps: number): number {
  if (!(rps > 0)) return 1;
  return Math.round((1.5 + Math.min(4.5, Math.log10(1 + rps) * 1.5)) * 10) / 10;
}

/** grouped says whether a node sits inside a service box in this view. */
function grouped(n: GraphNode, view: GraphView): boolean {
  if (n.unknown || view === 'service') return false;
  return view === 'version' ? n.version !== '' : n.workload !== '' || n.version !== '';
}

function nodeLabel(n: GraphNode, view: GraphView, multiNamespace: boolean): string {
  if (n.unknown) return 'unknown';
  let l: string;
  if (view === 'version') l = n.version || n.service;
  else if (view === 'workload') l = n.workload || (n.version ? `${n.service}-${n.version}` : n.service);
  else l = n.service;
  // Inside a group the box already names the service and namespace.
  if (multiNamespace && !grouped(n, view) && n.namespace) l += `\n${n.namespace}`;
  return l;
}

export function toElements(g: Graph, opts: ElementsOptions): Elements {
  const { view } = opts;
  const q = (opts.search ?? '').trim().toLowerCase();
  const namespaces = new Set(g.nodes.filter((n) => !n.unknown).map((n) => n.namespace));
  const multiNamespace = namespaces.size > 1;

  // Health, rates and cycles are the backend's (graph/build.go); a service
  // box is as healthy as its worst member.
  const nodes: ElementDefinition[] = [];
  const groups = new Map<string, { ns: string; service: string; rps: number; err: number; health: Health[]; members: string[]; match: boolean }>();
  const matches = (n: GraphNode) =>
    !q || [n.service, n.version, n.workload, n.namespace, n.id].some((s) => s.toLowerCase().includes(q));

  for (const n of g.nodes) {
    const rps = n.rps;
    const errorRate = n.errorRate;
    const h = n.health;
    const isGrouped = opts.groups !== false && grouped(n, view);
    const data: NodeData = {
      id: n.id,
      label: nodeLabel(n, view, multiNamespace),
      kind: n.unknown ? 'unknown' : view,
      inCycle: n.inCycle === true,
      namespace: n.namespace,
      service: n.service,
      version: n.version,
      workload: n.workload,
      health: h,
      color: HEALTH_COLOR[h],
      rpsIn: rps,
      errorRateIn: errorRate,
    };
    const m = matches(n);
    if (isGrouped) {
      const gid = groupId(n.namespace, n.service);
      data.parent = gid;
      const grp = groups.get(gid) ?? { ns: n.namespace, service: n.service, rps: 0, err: 0, health: [], members: [], match: false };
      grp.rps += rps;
      grp.err += rps * errorRate;
      grp.health.push(h);
      grp.members.push(n.id);
      grp.match ||= m;
      groups.set(gid, grp);
    }
    const classes = [data.kind, `health-${h}`];
    if (n.inCycle) classes.push('cycle');
    if (q) classes.push(m ? 'match' : 'dim');
    const hc = hlClass(opts.highlight, n.id, false);
    if (hc) classes.push(hc);
    nodes.push({ group: 'nodes', data, classes: classes.join(' ') });
  }

  const groupNodes: ElementDefinition[] = [];
  for (const [gid, grp] of groups) {
    const errorRate = grp.rps > 0 ? grp.err / grp.rps : 0;
    const h = worstHealth(grp.health);
    const data: NodeData = {
      id: gid,
      label: multiNamespace ? `${grp.service} (${grp.ns})` : grp.service,
      kind: 'group',
      inCycle: false,
      namespace: grp.ns,
      service: grp.service,
      version: '',
      workload: '',
      health: h,
      color: HEALTH_COLOR[h],
      rpsIn: grp.rps,
      errorRateIn: errorRate,
    };
    const classes = ['group', `health-${h}`];
    if (q) classes.push(grp.match ? 'match' : 'dim');
    if (opts.highlight) classes.push(grp.members.some((id) => opts.highlight!.nodes.has(id)) ? 'hl' : 'faded');
    groupNodes.push({ group: 'nodes', data, classes: classes.join(' ') });
  }
  // Parents before children: cytoscape needs a parent to exist when a child is added.
  groupNodes.sort((a, b) => String(a.data.id).localeCompare(String(b.data.id)));

  const nodeIds = new Set(g.nodes.map((n) => n.id));
  const cycleEdges = cycleEdgeSet(g);
  const matchById = new Map(g.nodes.map((n) => [n.id, matches(n)]));
  const edges: ElementDefinition[] = [];
  for (const e of g.edges) {
    if (!nodeIds.has(e.source) || !nodeIds.has(e.target)) continue;
    const h = e.health;
    const data: EdgeData = {
      id: edgeId(e.source, e.target),
      source: e.source,
      target: e.target,
      label: opts.edgeLabels === false ? '' : edgeLabel(e),
      health: h,
      color: HEALTH_COLOR[h],
      width: edgeWidth(e.rps),
      rps: e.rps,
      errorRate: e.errorRate,
      p99Ms: e.p99Ms,
      mtls: e.mtls,
    };
    const classes = [`health-${h}`, `w${Math.max(1, Math.min(6, Math.round(data.width)))}`];
    if (e.mtls >= 0.999) classes.push('mtls');
    if (cycleEdges.has(data.id)) classes.push('cycle');
    const hc = hlClass(opts.highlight, data.id, true);
    if (hc) classes.push(hc);
    if (q) classes.push(matchById.get(e.source) || matchById.get(e.target) ? 'match' : 'dim');
    edges.push({ group: 'edges', data, classes: classes.join(' ') });
  }
  return { nodes: [...groupNodes, ...nodes], edges };
}

/** cycleEdgeSet is the ids of the edges inside one of the backend's cycles (both ends in the same cycle). */
export function cycleEdgeSet(g: Graph): Set<string> {
  const cycleOf = new Map<string, number>();
  (g.cycles ?? []).forEach((c, i) => c.forEach((id) => cycleOf.set(id, i)));
  const out = new Set<string>();
  for (const e of g.edges) {
    const c = cycleOf.get(e.source);
    if (c !== undefined && cycleOf.get(e.target) === c) out.add(edgeId(e.source, e.target));
  }
  return out;
}

/** filterNamespace keeps the nodes of one namespace and their direct callers and callees. */
export function filterNamespace(g: Graph, ns: string): Graph {
  if (!ns) return g;
  const inNs = new Set(g.nodes.filter((n) => n.namespace === ns).map((n) => n.id));
  const keep = new Set(inNs);
  for (const e of g.edges) {
    if (inNs.has(e.target)) keep.add(e.source);
    if (inNs.has(e.source)) keep.add(e.target);
  }
  return { ...g, nodes: g.nodes.filter((n) => keep.has(n.id)), edges: g.edges.filter((e) => inNs.has(e.source) || inNs.has(e.target)) };
}

export function namespacesOf(g: Graph): string[] {
  return [...new Set(g.nodes.map((n) => n.namespace).filter(Boolean))].sort();
}

export interface UpdatePlan {
  add: ElementDefinition[];
  update: ElementDefinition[];
  remove: string[];
  /** true when the set of nodes or their grouping changed: positions must be recomputed */
  relayout: boolean;
}

/**
 * planUpdate compares the elements on screen (id → parent, for nodes; edges
 * have parent undefined) with the next elements. Only a change in the node
 * set or in grouping asks for a new layout; a refresh that only changes
 * rates updates data in place, so the picture does not jump.
 */
export function planUpdate(current: Map<string, string | undefined>, next: Elements): UpdatePlan {
  const plan: UpdatePlan = { add: [], update: [], remove: [], relayout: false };
  const nextIds = new Set<string>();
  for (const el of [...next.nodes, ...next.edges]) {
    const id = String(el.data.id);
    nextIds.add(id);
    if (!current.has(id)) {
      plan.add.push(el);
      if (el.group === 'nodes') plan.relayout = true;
    } else {
      if (el.group === 'nodes' && current.get(id) !== (el.data.parent as string | undefined)) {
        // cytoscape cannot re-parent cheaply in place with data(); replace it.
        plan.remove.push(id);
        plan.add.push(el);
        plan.relayout = true;
      } else {
        plan.update.push(el);
      }
    }
  }
  for (const id of current.keys()) {
    if (!nextIds.has(id)) {
      plan.remove.push(id);
      // An edge vanishing leaves the picture readable; a node vanishing leaves a hole.
      if (!id.includes('->')) plan.relayout = true;
    }
  }
  return plan;
}

/** Per-node traffic summary for the detail panel. */
export interface NodeTraffic {
  inbound: GraphEdge[];
  outbound: GraphEdge[];
  rpsIn: number;
  errorRateIn: number;
  rpsOut: number;
  errorRateOut: number;
}

export function nodeTraffic(g: Graph, ids: Set<string>): NodeTraffic {
  const inbound = g.edges.filter((e) => ids.has(e.target) && !ids.has(e.source));
  const outbound = g.edges.filter((e) => ids.has(e.source) && !ids.has(e.target));
  const agg = (es: GraphEdge[]) => {
    const rps = es.reduce((s, e) => s + e.rps, 0);
    const err = es.reduce((s, e) => s + e.rps * e.errorRate, 0);
    return [rps, rps > 0 ? err / rps : 0];
  };
  const [rpsIn, errorRateIn] = agg(inbound);
  const [rpsOut, errorRateOut] = agg(outbound);
  return { inbound, outbound, rpsIn, errorRateIn, rpsOut, errorRateOut };
}

export interface GroupBox {
  id: string;
  label: string;
  health: Health;
  members: string[];
}

/**
 * flattenGroups takes the service boxes out of the elements: compound nodes
 * make cytoscape recompute every box on every frame, which for hundreds of
 * boxes costs seconds, so large graphs draw the boxes on a layer of their
 * own from the members' positions.
 */
export function flattenGroups(els: Elements): { elements: Elements; boxes: GroupBox[] } {
  const boxes = new Map<string, GroupBox>();
  const nodes: ElementDefinition[] = [];
  for (const n of els.nodes) {
    if (n.data.kind === 'group') {
      boxes.set(String(n.data.id), { id: String(n.data.id), label: String(n.data.label), health: n.data.health as Health, members: [] });
    }
  }
  for (const n of els.nodes) {
    if (n.data.kind === 'group') continue;
    const parent = n.data.parent as string | undefined;
    if (parent) {
      boxes.get(parent)?.members.push(String(n.data.id));
      const { parent: _drop, ...data } = n.data;
      void _drop;
      nodes.push({ ...n, data: data as ElementDefinition['data'] });
    } else nodes.push(n);
  }
  return { elements: { nodes, edges: els.edges }, boxes: [...boxes.values()].filter((b) => b.members.length) };
}
