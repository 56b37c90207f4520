// Exports of the topology: Graphviz DOT and SVG are written here from plain
// data (the API's graph; a scene read off the canvas), so they are
// unit-tested without a browser. PNG comes from cytoscape itself.

import type { Graph, GraphNode, GraphView } from './api';
import { edgeLabel } from './graph';
import { HEALTH_COLOR, type Health } from './format';

/** Graphviz shapes and line styles per health, so the picture reads without colour too. */
const DOT_STYLE: Record<Health, { shape: string; style: string }> = {
  healthy: { shape: 'box', style: 'rounded' },
  degraded: { shape: 'box', style: 'rounded,dashed' },
  failing: { shape: 'octagon', style: 'bold' },
  idle: { shape: 'box', style: 'rounded,dotted' },
};

function dotString(s: string): string {
  return '"' + s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') + '"';
}

function dotLabel(n: GraphNode, view: GraphView): string {
  if (n.unknown) return 'unknown';
  const name = view === 'version' && n.version ? `${n.service} ${n.version}` : view === 'workload' && n.workload ? n.workload : n.service;
  return n.namespace ? `${name}\n${n.namespace}` : name;
}

/**
 * toDOT writes the graph as a Graphviz digraph: one node per API node
 * (labelled by service/version/workload and namespace, shaped and coloured
 * by the backend's health), one edge per API edge labelled with its rate,
 * error rate and p99; the versions of a service in a cluster box.
 */
export function toDOT(g: Graph, view: GraphView): string {
  const out = ['digraph meshlens {', '  rankdir=LR;', '  node [fontname="Helvetica", fontsize=11];', '  edge [fontname="Helvetica", fontsize=9];'];
  const clusters = new Map<string, GraphNode[]>();
  const loose: GraphNode[] = [];
  for (const n of g.nodes) {
    if (view !== 'service' && !n.unknown && (n.version || n.workload)) {
      const k = `${n.namespace}/${n.service}`;
      clusters.set(k, [...(clusters.get(k) ?? []), n]);
    } else loose.push(n);
  }
  const nodeLine = (n: GraphNode, indent: string) => {
    const st = DOT_STYLE[n.health];
    const label = view !== 'service' && clusters.has(`${n.namespace}/${n.service}`) && !n.unknown ? n.version || n.workload : dotLabel(n, view);
    return `${indent}${dotString(n.id)} [label=${dotString(label)}, shape=${n.unknown ? 'diamond' : st.shape}, style=${dotString(st.style)}, color=${dotString(HEALTH_COLOR[n.health])}, tooltip=${dotString(`${n.health}`)}];`;
  };
  let i = 0;
  for (const [k, ns] of [...clusters].sort(([a], [b]) => a.localeCompare(b))) {
    out.push(`  subgraph cluster_${i++} {`, `    label=${dotString(k)};`, '    style="rounded,dashed"; color="#94a3b8";');
    for (const n of ns) out.push(nodeLine(n, '    '));
    out.push('  }');
  }
  for (const n of loose) out.push(nodeLine(n, '  '));
  for (const e of g.edges) {
    const style = e.health === 'failing' ? 'bold,dashed' : e.health === 'degraded' ? 'dashed' : 'solid';
    out.push(`  ${dotString(e.source)} -> ${dotString(e.target)} [label=${dotString(edgeLabel(e))}, color=${dotString(HEALTH_COLOR[e.health])}, style=${dotString(style)}];`);
  }
  out.push('}');
  return out.join('\n') + '\n';
}

/** What is on screen, in screen coordinates, as read off the canvas. */
export interface Scene {
  width: number;
  height: number;
  background: string;
  boxes: { x: number; y: number; w: number; h: number; label: string; stroke: string; fill: string }[];
  edges: { x1: number; y1: number; cx: number; cy: number; x2: number; y2: number; color: string; width: number; dash: string; label: string; opacity: number }[];
  nodes: { x: number; y: number; w: number; h: number; shape: 'ellipse' | 'rect' | 'diamond' | 'triangle'; stroke: string; strokeWidth: number; dash: string; fill: string; label: string; opacity: number }[];
  text: string;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

const n1 = (v: number) => Math.round(v * 10) / 10;

/** toSVG draws a scene as a standalone SVG document. */
export function toSVG(s: Scene): string {
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${n1(s.width)}" height="${n1(s.height)}" viewBox="0 0 ${n1(s.width)} ${n1(s.height)}" font-family="Inter, Helvetica, Arial, sans-serif">`,
    `<title>${esc(s.text)}</title>`,
    `<rect width="100%" height="100%" fill="${esc(s.background)}"/>`,
  ];
  const colors = [...new Set(s.edges.map((e) => e.color))];
  out.push('<defs>' + colors.map((c, i) => `<marker id="a${i}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="${esc(c)}"/></marker>`).join('') + '</defs>');
  for (const b of s.boxes) {
    out.push(`<rect x="${n1(b.x)}" y="${n1(b.y)}" width="${n1(b.w)}" height="${n1(b.h)}" rx="6" fill="${esc(b.fill)}" stroke="${esc(b.stroke)}" stroke-dasharray="5 4"/>`);
    if (b.label) out.push(`<text x="${n1(b.x + b.w / 2)}" y="${n1(b.y - 4)}" text-anchor="middle" font-size="12" font-weight="600" fill="#334155">${esc(b.label)}</text>`);
  }
  for (const e of s.edges) {
    const m = colors.indexOf(e.color);
    out.push(
      `<path d="M${n1(e.x1)},${n1(e.y1)} Q${n1(e.cx)},${n1(e.cy)} ${n1(e.x2)},${n1(e.y2)}" fill="none" stroke="${esc(e.color)}" stroke-width="${n1(e.width)}"${e.dash ? ` stroke-dasharray="${e.dash}"` : ''}${e.opacity < 1 ? ` opacity="${e.opacity}"` : ''} marker-end="url(#a${m})"/>`,
    );
    if (e.label) {
      const mx = (e.x1 + 2 * e.cx + e.x2) / 4;
      const my = (e.y1 + 2 * e.cy + e.y2) / 4;
      out.push(`<text x="${n1(mx)}" y="${n1(my - 3)}" text-anchor="middle" font-size="9" fill="#374151" paint-order="stroke" stroke="#ffffff" stroke-width="3">${esc(e.label)}</text>`);
    }
  }
  for (const n of s.nodes) {
    const attrs = `fill="${esc(n.fill)}" stroke="${esc(n.stroke)}" stroke-width="${n1(n.strokeWidth)}"${n.dash ? ` stroke-dasharray="${n.dash}"` : ''}${n.opacity < 1 ? ` opacity="${n.opacity}"` : ''}`;
    const { x, y, w, h } = n;
    if (n.shape === 'ellipse') out.push(`<ellipse cx="${n1(x)}" cy="${n1(y)}" rx="${n1(w / 2)}" ry="${n1(h / 2)}" ${attrs}/>`);
    else if (n.shape === 'diamond') out.push(`<path d="M${n1(x)},${n1(y - h / 2)}L${n1(x + w / 2)},${n1(y)}L${n1(x)},${n1(y + h / 2)}L${n1(x - w / 2)},${n1(y)}z" ${attrs}/>`);
    else if (n.shape === 'triangle') out.push(`<path d="M${n1(x)},${n1(y - h / 2)}L${n1(x + w / 2)},${n1(y + h / 2)}L${n1(x - w / 2)},${n1(y + h / 2)}z" ${attrs}/>`);
    else out.push(`<rect x="${n1(x - w / 2)}" y="${n1(y - h / 2)}" width="${n1(w)}" height="${n1(h)}" rx="5" ${attrs}/>`);
    n.label.split('\n').forEach((line, i) => out.push(`<text x="${n1(x)}" y="${n1(y + h / 2 + 12 + i * 12)}" text-anchor="middle" font-size="11" fill="#1f2937"${n.opacity < 1 ? ` opacity="${n.opacity}"` : ''}>${esc(line)}</text>`));
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** download saves text or a blob under a file name, through a temporary link. */
export function download(name: string, data: Blob | string, type = 'text/plain'): void {
  const blob = typeof data === 'string' ? new Blob([data], { type }) : data;
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** exportName is a file name for an export of this view: meshlens-version-default-20261130T1402Z.svg */
export function exportName(view: GraphView, namespace: string, at: Date, ext: string): string {
  const t = at.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `meshlens-${view}${namespace ? `-${namespace}` : ''}-${t}.${ext}`;
}
