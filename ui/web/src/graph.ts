// The graph transformation: API graph JSON → cytoscape elements. Pure
// functions only, so grouping, colouring and the incremental-update plan are
// unit-tested without a browser.

import type { Core, ElementDefinition, Position } from 'cytoscape';
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
  /** a group drawn as one node: a leaf, not a box */
  collapsed?: boolean;
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
  /** how many of the graph's edges a merged edge (an end in a collapsed group) stands for; 0 for the graph's own */
  parts: number;
}

export interface Elements {
  nodes: ElementDefinition[];
  edges: ElementDefinition[];
}

export interface ElementsOptions {
  view: GraphView;
  /**
   * case-insensitive substring; matching nodes get class "match", the rest
   * "dim" (a large graph's search is not given here: searchMatches)
   */
  search?: string;
  /** show rps / error % / p99 on edges */
  edgeLabels?: boolean;
  /** put versions and workloads inside a box per service (default true) */
  groups?: boolean;
  /** a blast radius or a path: these get class "hl" (the root "hl-root"), everything else "faded" */
  highlight?: Highlight;
  /**
   * group the nodes into boxes by this instead of by service: namespace, app,
   * version, workload, locality, or label:KEY (a Kubernetes label of the
   * nodes' Pods, from the graph's nodeLabels); nodes without a value stay
   * outside any box
   */
  groupBy?: string;
  /** the groups (by value) drawn as one node, with their edges merged */
  collapsed?: Set<string>;
}

/** The groupings every node has; label:KEY adds the Kubernetes labels of the graph's nodeLabels. */
export const GROUP_KEYS = ['namespace', 'app', 'version', 'workload', 'locality'] as const;

/** groupValue is a node's value for a grouping, '' when it has none. */
export function groupValue(g: Pick<Graph, 'nodeLabels'>, n: GraphNode, groupBy: string): string {
  if (n.unknown) return '';
  const labels = g.nodeLabels?.[n.id];
  switch (groupBy) {
    case 'namespace':
      return n.namespace;
    case 'app':
      return n.service;
    case 'version':
      return n.version;
    case 'workload':
      return n.workload;
    case 'locality':
      return labels?.locality ?? '';
  }
  return groupBy.startsWith('label:') ? (labels?.[groupBy.slice('label:'.length)] ?? '') : '';
}

/** labelGroupId is the id of the box of the nodes whose groupBy is value. */
export function labelGroupId(groupBy: string, value: string): string {
  return `group:${groupBy}=${value}`;
}

/** groupTitle names a group on the canvas: "team=checkout", "namespace shop". */
export function groupTitle(groupBy: string, value: string): string {
  return groupBy.startsWith('label:') ? `${groupBy.slice('label:'.length)}=${value}` : `${groupBy} ${value}`;
}

/** labelKeysOf lists the Kubernetes label keys the graph's nodes have, for the group-by choice. */
export function labelKeysOf(g: Pick<Graph, 'nodeLabels'>): string[] {
  const keys = new Set<string>();
  for (const labels of Object.values(g.nodeLabels ?? {})) for (const k of Object.keys(labels)) if (k !== 'locality') keys.add(k);
  return [...keys].sort();
}

/** groupMembers lists the nodes of a box, by its id (a service box or a group by label). */
export function groupMembers(g: Graph, id: string, groupBy: string): GraphNode[] {
  if (groupBy) return g.nodes.filter((n) => { const v = groupValue(g, n, groupBy); return v !== '' && labelGroupId(groupBy, v) === id; });
  return g.nodes.filter((n) => groupId(n.namespace, n.service) === id);
}

/** goneNodes lists the node ids a saved view refers to (pinned, selected) that the graph no longer has. */
export function goneNodes(g: Graph, ids: string[], groupBy: string): string[] {
  const have = new Set(g.nodes.map((n) => n.id));
  for (const n of g.nodes) {
    const v = groupBy ? groupValue(g, n, groupBy) : '';
    have.add(v ? labelGroupId(groupBy, v) : groupId(n.namespace, n.service));
  }
  for (const e of g.edges) have.add(edgeId(e.source, e.target));
  return [...new Set(ids)].filter((id) => id && !have.has(id)).sort();
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

/**
 * edgeLabel is the text on an edge: "12 rps · 2.1% · p99 45ms" (error part
 * only when non-zero). A merged edge (see mergeCollapsed) says so: "Σ3 12 rps
 * · 2.1% · p99 ≤ 45ms": the sum of 3 edges, whose p99 is at most the slowest's.
 */
export function edgeLabel(e: Pick<DrawnEdge, 'rps' | 'errorRate' | 'p99Ms' | 'parts'>): string {
  const merged = (e.parts?.length ?? 0) > 1;
  const parts = [`${merged ? `Σ${e.parts!.length} ` : ''}${fmtRps(e.rps)} rps`];
  if (e.errorRate > 0) parts.push(fmtPct(e.errorRate));
  if (e.p99Ms > 0) parts.push(`p99 ${merged ? '≤ ' : ''}${fmtMs(e.p99Ms)}`);
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

function nodeLabel(n: GraphNode, view: GraphView, multiNamespace: boolean, inServiceBox: boolean): string {
  if (n.unknown) return 'unknown';
  let l: string;
  // Inside a service box the box already names the service and namespace.
  if (view === 'version') l = inServiceBox ? n.version || n.service : n.version ? `${n.service} ${n.version}` : n.service;
  else if (view === 'workload') l = n.workload || (n.version ? `${n.service}-${n.version}` : n.service);
  else l = n.service;
  if (multiNamespace && !inServiceBox && n.namespace) l += `\n${n.namespace}`;
  return l;
}

/** isBox says whether an element is a box around other nodes (a group not collapsed). */
export function isBox(el: ElementDefinition): boolean {
  return el.data.kind === 'group' && !el.data.collapsed;
}

export function toElements(g: Graph, opts: ElementsOptions): Elements {
  const { view } = opts;
  const q = (opts.search ?? '').trim().toLowerCase();
  const dim = ['dim'];
  const namespaces = new Set(g.nodes.filter((n) => !n.unknown).map((n) => n.namespace));
  const multiNamespace = namespaces.size > 1;

  // Health, rates and cycles are the backend's (graph/build.go); a service
  // box is as healthy as its worst member.
  const nodes: ElementDefinition[] = [];
  const groups = new Map<string, { ns: string; service: string; label: string; value: string; rps: number; err: number; health: Health[]; members: string[]; match: boolean }>();
  const groupBy = opts.groupBy ?? '';
  /** the box a node is in, if any */
  const boxOf = (n: GraphNode): { id: string; ns: string; service: string; label: string; value: string } | null => {
    if (groupBy) {
      const v = groupValue(g, n, groupBy);
      return v ? { id: labelGroupId(groupBy, v), ns: groupBy === 'namespace' ? v : '', service: groupBy === 'app' ? v : '', label: groupTitle(groupBy, v), value: v } : null;
    }
    if (opts.groups === false || !grouped(n, view)) return null;
    return { id: groupId(n.namespace, n.service), ns: n.namespace, service: n.service, label: multiNamespace ? `${n.service} (${n.namespace})` : n.service, value: '' };
  };
  /** node id → the collapsed group it is drawn as */
  const into = collapsedInto(g, groupBy, opts.collapsed);
  const matches = (n: GraphNode) => nodeMatches(n, q);

  for (const n of g.nodes) {
    const rps = n.rps;
    const errorRate = n.errorRate;
    const h = n.health;
    const box = boxOf(n);
    const data: NodeData = {
      id: n.id,
      label: nodeLabel(n, view, multiNamespace && !(box && groupBy === 'namespace'), !!box && !groupBy),
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
    if (box) {
      const gid = box.id;
      data.parent = gid;
      const grp = groups.get(gid) ?? { ns: box.ns, service: box.service, label: box.label, value: box.value, rps: 0, err: 0, health: [], members: [], match: false };
      grp.rps += rps;
      grp.err += rps * errorRate;
      grp.health.push(h);
      grp.members.push(n.id);
      grp.match ||= m;
      groups.set(gid, grp);
      if (into.has(n.id)) continue;
    }
    const classes = [data.kind, `health-${h}`];
    if (n.inCycle) classes.push('cycle');
    if (q) classes.push(...(m ? ['match'] : dim));
    const hc = hlClass(opts.highlight, n.id, false);
    if (hc) classes.push(hc);
    nodes.push({ group: 'nodes', data, classes: classes.join(' ') });
  }

  const groupNodes: ElementDefinition[] = [];
  for (const [gid, grp] of groups) {
    const errorRate = grp.rps > 0 ? grp.err / grp.rps : 0;
    const h = worstHealth(grp.health);
    const collapsed = grp.value !== '' && opts.collapsed?.has(grp.value) === true;
    const data: NodeData = {
      id: gid,
      label: collapsed ? `${grp.label} (${grp.members.length})` : grp.label,
      kind: 'group',
      collapsed,
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
    if (collapsed) classes.push('collapsed');
    if (q) classes.push(...(grp.match ? ['match'] : dim));
    if (opts.highlight) classes.push(grp.members.some((id) => opts.highlight!.nodes.has(id)) ? 'hl' : 'faded');
    groupNodes.push({ group: 'nodes', data, classes: classes.join(' ') });
  }
  // Parents before children: cytoscape needs a parent to exist when a child is added.
  groupNodes.sort((a, b) => String(a.data.id).localeCompare(String(b.data.id)));

  const nodeIds = new Set(g.nodes.map((n) => n.id));
  const cycleEdges = cycleEdgeSet(g);
  const matchById = new Map(g.nodes.map((n) => [n.id, matches(n)]));
  for (const [gid, grp] of groups) matchById.set(gid, grp.match);
  const edges: ElementDefinition[] = [];
  for (const e of drawnEdges(g, into)) {
    if (!nodeIds.has(e.source) && !groups.has(e.source)) continue;
    if (!nodeIds.has(e.target) && !groups.has(e.target)) continue;
    const h = e.health;
    const data: EdgeData = {
      id: edgeId(e.source, e.target),
      source: e.source,
      target: e.target,
      label: opts.edgeLabels === false ? '' : edgeLabel(e),
      parts: (e as DrawnEdge).parts?.length ?? 0,
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

/**
 * A drawn edge: one of the graph's, or one standing for the graph's edges
 * (parts) between the same two ends once collapsed groups replace their
 * members (see mergeCollapsed).
 */
export type DrawnEdge = GraphEdge & { parts?: GraphEdge[] };

/** nodeMatches says whether a node matches a search (q: trimmed, lower case; empty matches all). */
export function nodeMatches(n: Pick<GraphNode, 'service' | 'version' | 'workload' | 'namespace' | 'id'>, q: string): boolean {
  return !q || [n.service, n.version, n.workload, n.namespace, n.id].some((s) => s.toLowerCase().includes(q));
}

/**
 * searchMatches are the ids of the nodes a search marks, as toElements marks
 * them (a collapsed group when one of its members matches): what a large
 * graph's canvas marks by itself, so a search does not rebuild and compare
 * all of its elements (GraphCanvas, marked).
 */
export function searchMatches(g: Pick<Graph, 'nodes' | 'nodeLabels'>, search: string, groupBy = '', collapsed?: Set<string>): Set<string> {
  const q = search.trim().toLowerCase();
  const out = new Set<string>();
  if (!q) return out;
  const into = collapsedInto(g, groupBy, collapsed);
  for (const n of g.nodes) {
    if (!nodeMatches(n, q)) continue;
    out.add(n.id);
    const gid = into.get(n.id);
    if (gid) out.add(gid);
  }
  return out;
}

/**
 * collapsedInto maps every node drawn as a collapsed group to that group's id
 * (only groups by a label collapse: groupBy set, its value in collapsed).
 */
export function collapsedInto(g: Pick<Graph, 'nodes' | 'nodeLabels'>, groupBy: string, collapsed: Set<string> | undefined): Map<string, string> {
  const into = new Map<string, string>();
  if (!groupBy || !collapsed?.size) return into;
  for (const n of g.nodes) {
    const v = groupValue(g, n, groupBy);
    if (v && collapsed.has(v)) into.set(n.id, labelGroupId(groupBy, v));
  }
  return into;
}

/**
 * mergeCollapsed redraws the edges of collapsed groups: an end inside one
 * becomes the group, calls within a group vanish, and the edges between the
 * same two ends become one, carrying them as its parts. What adds up adds
 * up: requests, errors, rps and the counts by HTTP code, gRPC status and
 * Envoy flag are sums, the error rate is the summed errors over the summed
 * requests, mTLS the share of the summed rps. Percentiles do not add: a
 * merged p50/p90/p99 is the largest of its parts', an upper bound of the
 * merged traffic's (at least 99% of every part is at most its p99). Health
 * is the worst of its parts', so a failing call stays visible; the protocol
 * is the one carrying most requests.
 */
export function mergeCollapsed(edges: GraphEdge[], into: Map<string, string>): DrawnEdge[] {
  const out = new Map<string, DrawnEdge>();
  for (const e of edges) {
    const source = into.get(e.source) ?? e.source;
    const target = into.get(e.target) ?? e.target;
    if (source === e.source && target === e.target) {
      out.set(edgeId(source, target), e);
      continue;
    }
    if (source === target) continue;
    const id = edgeId(source, target);
    const m = out.get(id);
    out.set(id, m ? addEdge(m, e) : { ...e, source, target, codes: { ...e.codes }, parts: [e] });
  }
  return [...out.values()];
}

function addEdge(m: DrawnEdge, e: GraphEdge): DrawnEdge {
  const requests = m.requests + e.requests;
  const errors = m.errors + e.errors;
  const rps = m.rps + e.rps;
  const parts = [...(m.parts ?? []), e];
  const byProtocol = new Map<string, number>();
  for (const p of parts) byProtocol.set(p.protocol, (byProtocol.get(p.protocol) ?? 0) + p.requests);
  return {
    ...m,
    requests,
    errors,
    rps,
    errorRate: requests > 0 ? errors / requests : 0,
    avgMs: requests > 0 ? (m.avgMs * m.requests + e.avgMs * e.requests) / requests : Math.max(m.avgMs, e.avgMs),
    p50Ms: Math.max(m.p50Ms, e.p50Ms),
    p90Ms: Math.max(m.p90Ms, e.p90Ms),
    p99Ms: Math.max(m.p99Ms, e.p99Ms),
    bytesIn: m.bytesIn + e.bytesIn,
    bytesOut: m.bytesOut + e.bytesOut,
    mtls: rps > 0 ? (m.mtls * m.rps + e.mtls * e.rps) / rps : Math.min(m.mtls, e.mtls),
    health: worstHealth([m.health, e.health]),
    codes: addCounts(m.codes, e.codes)!,
    grpc: addCounts(m.grpc, e.grpc),
    flags: addCounts(m.flags, e.flags),
    protocol: [...byProtocol].sort((a, b) => b[1] - a[1])[0][0],
    parts,
  };
}

function addCounts(a: Record<string, number> | undefined, b: Record<string, number> | undefined): Record<string, number> | undefined {
  if (!a && !b) return undefined;
  const out = { ...a };
  for (const [k, n] of Object.entries(b ?? {})) out[k] = (out[k] ?? 0) + n;
  return out;
}

/**
 * drawnEdge finds an edge as the canvas draws it, by id: one of the graph's,
 * or, with collapsed groups, the merged edge with its parts.
 */
export function drawnEdge(g: Graph, id: string, groupBy: string, collapsed: Set<string> | undefined): DrawnEdge | undefined {
  return drawnEdges(g, collapsedInto(g, groupBy, collapsed)).find((e) => edgeId(e.source, e.target) === id);
}

/** drawnEdges are the edges the canvas draws: the graph's, merged where collapsed groups (into) stand for their ends. */
export function drawnEdges(g: Pick<Graph, 'nodes' | 'edges'>, into: Map<string, string>): DrawnEdge[] {
  if (!into.size) return g.edges;
  const nodeIds = new Set(g.nodes.map((n) => n.id));
  return mergeCollapsed(g.edges.filter((e) => nodeIds.has(e.source) && nodeIds.has(e.target)), into);
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
    if (isBox(n)) {
      boxes.set(String(n.data.id), { id: String(n.data.id), label: String(n.data.label), health: n.data.health as Health, members: [] });
    }
  }
  for (const n of els.nodes) {
    if (isBox(n)) continue;
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

/** pinnedPositions are the nodes placed by a saved view or dragged by the user, where they are now. */
export function pinnedPositions(cy: Core): Record<string, { x: number; y: number }> {
  const out: Record<string, { x: number; y: number }> = {};
  const pinned = cy.scratch('_pinned') as Map<string, Position> | undefined;
  for (const id of pinned?.keys() ?? []) {
    const n = cy.getElementById(id);
    const p = n.nonempty() ? n.position() : pinned!.get(id)!;
    out[id] = { x: Math.round(p.x * 10) / 10, y: Math.round(p.y * 10) / 10 };
  }
  return out;
}
