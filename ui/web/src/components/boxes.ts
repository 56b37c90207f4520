// The group boxes of a large graph. cytoscape draws a small graph's boxes
// itself (compound nodes); a large graph's are taken out of cytoscape
// (graph.ts, flattenGroups) and painted from their members' positions: on
// a layer under the canvas (GraphCanvas), and by the PNG and SVG exports, so
// that what is exported is what is on screen.
import type { Core, Position } from 'cytoscape';
import { HEALTH_COLOR } from '../format';
import type { GroupBox } from '../graph';
import { PALETTE } from '../graphstyle';

const BOX_PAD = 16;

/**
 * Place is what painting boxes and marks needs of a view: its viewport and
 * its nodes' model positions and sizes. Cytoscape's (placeOfCy) and the
 * large-graph canvas (bigcanvas.ts) both give one.
 */
export interface Place {
  zoom(): number;
  pan(): Position;
  width(): number;
  height(): number;
  /** a node's model position and size, or undefined when it is not drawn */
  node(id: string): { x: number; y: number; w: number; h: number } | undefined;
  dark: boolean;
}

/** placeOfCy is cytoscape's view as a Place. */
export function placeOfCy(cy: Core): Place {
  return {
    zoom: () => cy.zoom(),
    pan: () => cy.pan(),
    width: () => cy.width(),
    height: () => cy.height(),
    node: (id) => {
      const n = cy.getElementById(id);
      if (n.empty()) return undefined;
      const p = n.position();
      return { x: p.x, y: p.y, w: n.width(), h: n.height() };
    },
    dark: cy.scratch('_theme') === 'dark',
  };
}

/** boxesOf gives the boxes GraphCanvas paints for cy (none when cytoscape draws them itself), and the selected one. */
export function boxesOf(cy: Core): { boxes: GroupBox[]; selected?: string } {
  return { boxes: (cy.scratch('_boxes') as GroupBox[] | null | undefined) ?? [], selected: cy.scratch('_selectedBox') as string | undefined };
}

/**
 * marksOf gives the search matches GraphCanvas marks on a large graph
 * (painted with the boxes, not cytoscape classes: see paintMarks).
 */
export function marksOf(cy: Core): string[] {
  return (cy.scratch('_marked') as string[] | undefined) ?? [];
}

/** The halo of a large graph's search match: seen from afar, as wide as a box's padding and more. */
export const MARK_COLOR = '#2563eb';
export const MARK_PAD = 40;

/**
 * paintMarks paints a halo under each marked node, as a cytoscape underlay
 * would be. A large graph's search marks its matches here rather than by a
 * class: any class change makes cytoscape redraw all of the graph's
 * elements (seconds at 5,000 nodes without a GPU), repainting this layer
 * takes milliseconds.
 */
export function paintMarks(ctx: CanvasRenderingContext2D, cy: Place, ids: string[], scale: number) {
  if (!ids.length) return;
  const zoom = cy.zoom();
  const pan = cy.pan();
  ctx.save();
  ctx.setTransform(scale * zoom, 0, 0, scale * zoom, scale * pan.x, scale * pan.y);
  ctx.globalAlpha = 0.45;
  ctx.fillStyle = MARK_COLOR;
  ctx.beginPath();
  for (const id of ids) {
    const p = cy.node(id);
    if (!p) continue;
    const r = Math.max(p.w, p.h) / 2 + MARK_PAD;
    ctx.moveTo(p.x + r, p.y);
    ctx.arc(p.x, p.y, r, 0, 2 * Math.PI);
  }
  ctx.fill();
  ctx.restore();
}

/** boxRect is a box's rectangle in model coordinates: around its members' positions, with room for their labels. */
export function boxRect(cy: Place, b: GroupBox): { x1: number; y1: number; x2: number; y2: number } | null {
  let x1 = Infinity, y1 = Infinity, x2 = -Infinity, y2 = -Infinity;
  for (const id of b.members) {
    const p = cy.node(id);
    if (!p) continue;
    x1 = Math.min(x1, p.x);
    y1 = Math.min(y1, p.y);
    x2 = Math.max(x2, p.x);
    y2 = Math.max(y2, p.y);
  }
  if (!Number.isFinite(x1)) return null;
  return { x1: x1 - 20 - BOX_PAD, y1: y1 - 12 - BOX_PAD, x2: x2 + 20 + BOX_PAD, y2: y2 + 12 + BOX_PAD + 12 };
}

/** hitBox is the id of the box at a model position, if any. */
export function hitBox(cy: Place, boxes: GroupBox[], p: Position): string | null {
  for (const b of boxes) {
    const r = boxRect(cy, b);
    if (r && p.x >= r.x1 && p.x <= r.x2 && p.y >= r.y1 && p.y <= r.y2) return b.id;
  }
  return null;
}

/** boxStyle is how a box is painted: fill and border by its health, or as selected; the theme's label colour. */
export function boxStyle(b: GroupBox, selected: string | undefined, dark: boolean): { fill: string; stroke: string; text: string } {
  const p = PALETTE[dark ? 'dark' : 'light'];
  const bad = b.health === 'failing' || b.health === 'degraded';
  return {
    fill: b.id === selected ? (dark ? '#1c2d4a' : '#e8f0fe') : bad ? (b.health === 'failing' ? p.failingBox : p.degradedBox) : p.box,
    stroke: b.id === selected ? '#2563eb' : bad ? HEALTH_COLOR[b.health] : p.boxBorder,
    text: p.boxText,
  };
}

/** boxLabelShown says whether box labels are readable at this zoom (they are not painted below it). */
export function boxLabelShown(zoom: number): boolean {
  return zoom * 12 >= 7;
}

/**
 * paintBoxes paints the boxes under the nodes as the viewport shows them,
 * onto a context of the viewport's size times scale (device pixels per CSS
 * pixel); boxes outside the viewport are skipped.
 */
export function paintBoxes(ctx: CanvasRenderingContext2D, cy: Place, boxes: GroupBox[], selected: string | undefined, scale: number) {
  const w = cy.width();
  const h = cy.height();
  const zoom = cy.zoom();
  const pan = cy.pan();
  const dark = cy.dark;
  ctx.save();
  ctx.setTransform(scale * zoom, 0, 0, scale * zoom, scale * pan.x, scale * pan.y);
  ctx.lineWidth = 1.5 / zoom;
  // Dashed once a box is big enough on screen to show it; below, a dash
  // pattern on thousands of small boxes is most of a frame's rasterizing.
  ctx.setLineDash(zoom >= 0.3 ? [5 / zoom, 4 / zoom] : []);
  ctx.font = `600 12px Inter, system-ui, sans-serif`;
  ctx.textAlign = 'center';
  // One path per look (fill and border): thousands of boxes in a few fills and strokes.
  const looks = new Map<string, { st: ReturnType<typeof boxStyle>; path: Path2D }>();
  const labels: { text: string; x: number; y: number; color: string }[] = [];
  const named = boxLabelShown(zoom);
  for (const b of boxes) {
    const r = boxRect(cy, b);
    if (!r) continue;
    if (r.x2 * zoom + pan.x < 0 || r.x1 * zoom + pan.x > w || r.y2 * zoom + pan.y < 0 || r.y1 * zoom + pan.y > h) continue;
    const st = boxStyle(b, selected, dark);
    const key = `${st.fill}|${st.stroke}`;
    let look = looks.get(key);
    if (!look) looks.set(key, (look = { st, path: new Path2D() }));
    look.path.roundRect(r.x1, r.y1, r.x2 - r.x1, r.y2 - r.y1, 6);
    if (named) labels.push({ text: b.label, x: (r.x1 + r.x2) / 2, y: r.y1 - 4, color: st.text });
  }
  for (const { st, path } of looks.values()) {
    ctx.fillStyle = st.fill;
    ctx.strokeStyle = st.stroke;
    ctx.fill(path);
    ctx.stroke(path);
  }
  for (const l of labels) {
    ctx.fillStyle = l.color;
    ctx.fillText(l.text, l.x, l.y);
  }
  ctx.restore();
}

/**
 * pngOf is the viewport as a PNG: cytoscape's picture of it, over the boxes
 * GraphCanvas paints outside cytoscape when there are any.
 */
export async function pngOf(cy: Core, background: string, scale = 2): Promise<Blob> {
  const { boxes, selected } = boxesOf(cy);
  const marks = marksOf(cy);
  const place = placeOfCy(cy);
  if (!boxes.length && !marks.length) return cy.png({ output: 'blob', bg: background, full: false, scale }) as Blob;
  const graph = await createImageBitmap(cy.png({ output: 'blob', full: false, scale }) as Blob);
  const canvas = document.createElement('canvas');
  canvas.width = graph.width;
  canvas.height = graph.height;
  const ctx = canvas.getContext('2d');
  if (!ctx) throw new Error('the browser gave no 2D canvas to compose the PNG on');
  ctx.fillStyle = background;
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  paintBoxes(ctx, place, boxes, selected, canvas.width / (cy.width() || canvas.width));
  paintMarks(ctx, place, marks, canvas.width / (cy.width() || canvas.width));
  ctx.drawImage(graph, 0, 0);
  graph.close();
  return new Promise((resolve, reject) => canvas.toBlob((b) => (b ? resolve(b) : reject(new Error('the browser could not encode the PNG'))), 'image/png'));
}
