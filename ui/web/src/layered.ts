// A linear-time layered layout for large graphs, where dagre (with
// compound nodes) takes tens of seconds for 1,000 nodes. Nodes get ranks by
// longest path from the callers at the edge of the mesh, the versions of a
// service share their service's rank and stay together, and nodes within a
// rank are ordered by the mean position of their callers (one barycenter
// sweep) so edges mostly run straight left to right.

export interface LayeredInput {
  /** leaf nodes: id and optional group (service box) */
  nodes: { id: string; parent?: string }[];
  edges: { source: string; target: string }[];
}

export interface LayeredOptions {
  rankSep?: number;
  nodeSep?: number;
  groupSep?: number;
  /** wanted width / height of the whole picture; tall ranks wrap into sub-columns to approach it */
  aspect?: number;
}

export function layeredPositions(g: LayeredInput, opts: LayeredOptions = {}): Map<string, { x: number; y: number }> {
  const rankSep = opts.rankSep ?? 220;
  const nodeSep = opts.nodeSep ?? 46;
  const groupSep = opts.groupSep ?? 34;
  // Work on units: a group (all its members) or a lone node.
  const unitOf = new Map<string, string>();
  const members = new Map<string, string[]>();
  for (const n of g.nodes) {
    const u = n.parent ?? n.id;
    unitOf.set(n.id, u);
    members.set(u, [...(members.get(u) ?? []), n.id]);
  }
  const units = [...members.keys()];
  const out = new Map<string, string[]>();
  const indeg = new Map<string, number>(units.map((u) => [u, 0]));
  const seenEdge = new Set<string>();
  for (const e of g.edges) {
    const a = unitOf.get(e.source);
    const b = unitOf.get(e.target);
    if (!a || !b || a === b || seenEdge.has(`${a}\0${b}`)) continue;
    seenEdge.add(`${a}\0${b}`);
    out.set(a, [...(out.get(a) ?? []), b]);
    indeg.set(b, (indeg.get(b) ?? 0) + 1);
  }

  // Longest-path ranks with Kahn's algorithm; units left on cycles are
  // released one at a time (the lowest in-degree first) so every unit gets a rank.
  const rank = new Map<string, number>();
  const remaining = new Map(indeg);
  let queue = units.filter((u) => remaining.get(u) === 0);
  const done = new Set<string>();
  while (done.size < units.length) {
    if (!queue.length) {
      let best = '';
      let bestDeg = Infinity;
      for (const u of units) if (!done.has(u) && remaining.get(u)! < bestDeg) (best = u), (bestDeg = remaining.get(u)!);
      queue = [best];
    }
    const next: string[] = [];
    for (const u of queue) {
      if (done.has(u)) continue;
      done.add(u);
      const r = rank.get(u) ?? 0;
      rank.set(u, r);
      for (const v of out.get(u) ?? []) {
        if (done.has(v)) continue;
        rank.set(v, Math.max(rank.get(v) ?? 0, r + 1));
        remaining.set(v, remaining.get(v)! - 1);
        if (remaining.get(v) === 0) next.push(v);
      }
    }
    queue = next;
  }

  // Order within ranks: by barycenter of callers' positions, rank by rank.
  const byRank = new Map<number, string[]>();
  for (const u of units) byRank.set(rank.get(u)!, [...(byRank.get(rank.get(u)!) ?? []), u]);
  const preds = new Map<string, string[]>();
  for (const [a, bs] of out) for (const b of bs) preds.set(b, [...(preds.get(b) ?? []), a]);
  const order = new Map<string, number>();
  const ranks = [...byRank.keys()].sort((a, b) => a - b);
  for (const r of ranks) {
    const us = byRank.get(r)!;
    const bary = new Map<string, number>();
    us.forEach((u, i) => {
      const ps = (preds.get(u) ?? []).filter((p) => order.has(p));
      bary.set(u, ps.length ? ps.reduce((s, p) => s + order.get(p)!, 0) / ps.length : i);
    });
    us.sort((a, b) => bary.get(a)! - bary.get(b)! || a.localeCompare(b));
    // Spread positions by size, so the barycenters of the next rank mean something.
    let y = 0;
    for (const u of us) {
      order.set(u, y + (members.get(u)!.length - 1) / 2);
      y += members.get(u)!.length + 1;
    }
  }

  // Coordinates: ranks are columns, centred vertically. A rank taller than
  // maxHeight wraps into sub-columns, so a wide mesh is not a thin sliver.
  const aspect = opts.aspect ?? 1.6;
  const subSep = rankSep * 0.55;
  const unitHeight = (u: string) => members.get(u)!.length * nodeSep + groupSep;
  const rankHeight = new Map(ranks.map((r) => [r, byRank.get(r)!.reduce((h, u) => h + unitHeight(u), 0)]));
  const tallest = Math.max(...rankHeight.values(), 1);
  let maxHeight = tallest;
  let best = Infinity;
  for (let i = 1; i <= 40; i++) {
    const h = Math.max(tallest / i, nodeSep * 4);
    const width = ranks.reduce((w, r) => w + rankSep + (Math.ceil(rankHeight.get(r)! / h) - 1) * subSep, 0);
    const score = Math.abs(Math.log(width / Math.min(h, tallest) / aspect));
    if (score < best) {
      best = score;
      maxHeight = h;
    }
  }
  const pos = new Map<string, { x: number; y: number }>();
  let x = 0;
  for (const r of ranks) {
    const us = byRank.get(r)!;
    const cols = Math.ceil(rankHeight.get(r)! / maxHeight);
    const perCol = rankHeight.get(r)! / cols;
    let col = 0;
    let y = 0;
    const colHeight = Math.min(perCol, maxHeight);
    for (const u of us) {
      if (y > 0 && y + unitHeight(u) > perCol + nodeSep && col < cols - 1) {
        col++;
        y = 0;
      }
      for (const id of members.get(u)!.sort()) {
        pos.set(id, { x: x + col * subSep, y: y - colHeight / 2 });
        y += nodeSep;
      }
      y += groupSep;
    }
    x += rankSep + (cols - 1) * subSep;
  }
  return pos;
}
