// The renderer of large graphs (more than WEBGL_GRAPH nodes): a Canvas 2D
// picture of our own instead of cytoscape. Cytoscape spent 10 s on the first
// frame of a 5,000-node, 20,000-edge graph here (a Collection per element
// added, then every element's style computed, then each drawn on its own);
// this paints the same picture in ~35 ms and the browser rasterizes it in
// ~60 ms (load 3, no GPU): edges as one path per colour, width
// and pattern, nodes as one path per shape and colour, names only when
// zoomed in enough to read them and only those in view. While the user drags
// or wheels, the last picture is moved and scaled (one image copy per frame);
// when the gesture stops, everything is drawn again. sigma.js (WebGL) was
// measured too and was slower without a GPU (README, Large graphs).
import type { ElementDefinition } from 'cytoscape';
import type { Scene } from '../exporting';
import type { GroupBox } from '../graph';
import { HEALTH_COLOR } from '../format';
import { LABEL_ZOOM, PALETTE, type Theme } from '../graphstyle';
import { boxLabelShown, boxRect, boxStyle, hitBox, paintBoxes, paintMarks, type Place } from './boxes';

type Shape = 'ellipse' | 'rect' | 'diamond' | 'triangle';

/** A node as drawn: model position and size, and how it looks. */
export interface BigNode {
  id: string;
  x: number;
  y: number;
  w: number;
  h: number;
  shape: Shape;
  data: Record<string, unknown>;
  classes: Set<string>;
}

/** An edge as drawn. */
export interface BigEdge {
  id: string;
  source: BigNode;
  target: BigNode;
  data: Record<string, unknown>;
  classes: Set<string>;
}

export interface BigCanvasEvents {
  /** a click on a node, an edge or a box (its id), or on the background (null) */
  select(sel: { type: 'node' | 'edge'; id: string } | null): void;
  /** a double click on a collapsed group or a box */
  toggle(id: string): void;
  /** a node dragged and dropped: it is pinned where it was dropped */
  dragged(id: string): void;
}

const MIN_ZOOM = 0.05;
const MAX_ZOOM = 3;
/** cytoscape's wheel step with the wheelSensitivity the small graphs use */
const WHEEL_SENSITIVITY = 0.3;
/** how long after the last wheel event the picture is drawn again in full */
const WHEEL_SETTLE_MS = 150;
/** below this zoom, edge and node-border patterns are drawn solid (health stays in the colour) */
const PATTERN_ZOOM = 0.3;
/** below this zoom (a node under ~7 pixels wide), nodes are drawn as dots of their health colour */
const DOT_ZOOM = 0.2;
const DASH: Record<string, number[]> = { 'health-degraded': [2, 2], 'health-failing': [8, 3] };
const SVG_DASH: Record<string, string> = { 'health-degraded': '2 2', 'health-failing': '8 3' };

/** size and shape of a node by its kind, as graphstyle.ts's large sheet gives them */
function nodeGeometry(classes: Set<string>, collapsed: boolean): { w: number; h: number; shape: Shape } {
  if (collapsed) return { w: 110, h: 32, shape: 'rect' };
  if (classes.has('version')) return { w: 34, h: 24, shape: 'rect' };
  if (classes.has('workload')) return { w: 40, h: 24, shape: 'rect' };
  if (classes.has('service')) return { w: 34, h: 30, shape: 'triangle' };
  if (classes.has('unknown')) return { w: 30, h: 30, shape: 'diamond' };
  return { w: 30, h: 30, shape: 'ellipse' };
}

function healthOf(classes: Set<string>): keyof typeof HEALTH_COLOR {
  for (const h of ['failing', 'degraded', 'healthy'] as const) if (classes.has(`health-${h}`)) return h;
  return 'idle';
}

function shapePath(p: Path2D, n: BigNode, pad = 0) {
  const { x, y } = n;
  const w = n.w / 2 + pad;
  const h = n.h / 2 + pad;
  switch (n.shape) {
    case 'ellipse':
      p.moveTo(x + w, y);
      p.ellipse(x, y, w, h, 0, 0, 2 * Math.PI);
      break;
    case 'diamond':
      p.moveTo(x, y - h);
      p.lineTo(x + w, y);
      p.lineTo(x, y + h);
      p.lineTo(x - w, y);
      p.closePath();
      break;
    case 'triangle':
      p.moveTo(x, y - h);
      p.lineTo(x + w, y + h);
      p.lineTo(x - w, y + h);
      p.closePath();
      break;
    default:
      p.roundRect(x - w, y - h, 2 * w, 2 * h, 5);
  }
}

/** the opacity an element is drawn at: a blast radius or path fades the rest */
function alphaOf(classes: Set<string>): number {
  return classes.has('faded') ? 0.12 : classes.has('dim') ? 0.15 : 1;
}

/**
 * BigCanvas draws a large graph on a 2D canvas, and pans, zooms, selects and
 * drags on it. The model coordinates are the layout's (as cytoscape's
 * positions were): screen = model × zoom + pan.
 */
export class BigCanvas implements Place {
  readonly canvas: HTMLCanvasElement;
  private ctx: CanvasRenderingContext2D;
  private snap = document.createElement('canvas');
  /** the boxes and the graph as last painted, and for what (see draw) */
  private boxLayer = document.createElement('canvas');
  private graphLayer = document.createElement('canvas');
  private layerKey = '';
  private version = 0;
  private snapView: { zoom: number; pan: { x: number; y: number } } | null = null;
  nodes = new Map<string, BigNode>();
  edges = new Map<string, BigEdge>();
  boxes: GroupBox[] = [];
  /** search matches: a halo under each */
  marked: string[] = [];
  selected: string | undefined;
  theme: Theme = 'light';
  /** nodes placed by a saved view or dragged by the user */
  pinned = new Map<string, { x: number; y: number }>();
  private z = 1;
  private p = { x: 0, y: 0 };
  private w = 0;
  private h = 0;
  private scale = 1;
  private frame = 0;
  private gesture = false;
  private wheelTimer = 0;
  private viewportListeners = new Set<() => void>();
  /** the last full picture's duration, for the timing script */
  lastDrawMs = 0;
  private cleanup: (() => void)[] = [];

  constructor(private container: HTMLElement, private events: BigCanvasEvents) {
    this.canvas = document.createElement('canvas');
    this.canvas.style.cssText = 'position:absolute;inset:0;width:100%;height:100%;touch-action:none';
    this.canvas.dataset.testid = 'big-canvas';
    container.appendChild(this.canvas);
    const ctx = this.canvas.getContext('2d');
    if (!ctx) throw new Error('the browser gave no 2D canvas to draw the graph on');
    this.ctx = ctx;
    this.resize();
    const ro = new ResizeObserver(() => {
      if (this.resize()) this.draw();
    });
    ro.observe(container);
    this.cleanup.push(() => ro.disconnect());
    this.listen();
  }

  destroy() {
    for (const f of this.cleanup) f();
    cancelAnimationFrame(this.frame);
    clearTimeout(this.wheelTimer);
    this.canvas.remove();
  }

  // --- Place (boxes.ts) and the view's geometry

  get dark() {
    return this.theme === 'dark';
  }
  zoom() {
    return this.z;
  }
  pan() {
    return { ...this.p };
  }
  width() {
    return this.w;
  }
  height() {
    return this.h;
  }
  node(id: string) {
    return this.nodes.get(id);
  }
  /** a model position on screen (CSS pixels from the canvas' top left) */
  rendered(p: { x: number; y: number }) {
    return { x: p.x * this.z + this.p.x, y: p.y * this.z + this.p.y };
  }
  /** a screen position in the model */
  model(p: { x: number; y: number }) {
    return { x: (p.x - this.p.x) / this.z, y: (p.y - this.p.y) / this.z };
  }

  /** onViewport calls f after each change of zoom or pan */
  onViewport(f: () => void): () => void {
    this.viewportListeners.add(f);
    return () => this.viewportListeners.delete(f);
  }

  /** viewport sets zoom and pan (clamped zoom) and draws the graph again on the next frame. */
  viewport(v: { zoom?: number; pan?: { x: number; y: number } }) {
    if (v.zoom !== undefined) this.z = Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, v.zoom));
    if (v.pan) this.p = { ...v.pan };
    for (const f of this.viewportListeners) f();
    this.schedule();
  }
  /** zoomAt zooms to level keeping the screen point at where it is */
  zoomAt(level: number, at = { x: this.w / 2, y: this.h / 2 }) {
    const m = this.model(at);
    const z = Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, level));
    this.viewport({ zoom: z, pan: { x: at.x - m.x * z, y: at.y - m.y * z } });
  }
  /**
   * zoomBy zooms about the middle of the view as the + and − keys and
   * buttons do: like the wheel, the picture is scaled at once and drawn
   * again in full once the presses stop.
   */
  zoomBy(factor: number) {
    this.startGesture();
    this.zoomAt(this.z * factor);
    clearTimeout(this.wheelTimer);
    this.wheelTimer = window.setTimeout(() => this.endGesture(), WHEEL_SETTLE_MS);
  }
  panBy(d: { x: number; y: number }) {
    this.viewport({ pan: { x: this.p.x + d.x, y: this.p.y + d.y } });
  }

  /** fit shows every node (or those given), zooming no further in than maxZoom */
  fit(ids?: Iterable<string>, padding = 40, maxZoom = 1.5) {
    let x1 = Infinity, y1 = Infinity, x2 = -Infinity, y2 = -Infinity;
    const list = ids ? [...ids].map((id) => this.nodes.get(id)).filter((n): n is BigNode => !!n) : [...this.nodes.values()];
    for (const n of list) {
      x1 = Math.min(x1, n.x);
      y1 = Math.min(y1, n.y);
      x2 = Math.max(x2, n.x);
      y2 = Math.max(y2, n.y);
    }
    if (!Number.isFinite(x1)) return;
    const w = this.w || 800;
    const h = this.h || 600;
    const z = Math.max(MIN_ZOOM, Math.min(maxZoom, (w - 2 * padding) / Math.max(1, x2 - x1 + 60), (h - 2 * padding) / Math.max(1, y2 - y1 + 60)));
    this.viewport({ zoom: z, pan: { x: w / 2 - (z * (x1 + x2)) / 2, y: h / 2 - (z * (y1 + y2)) / 2 } });
  }

  // --- elements

  /**
   * setElements replaces what is drawn: nodes keep their place unless
   * positions gives one (a layout) or they are pinned; new nodes without a
   * position go to the origin. Returns whether the set of nodes changed.
   */
  setElements(els: { nodes: ElementDefinition[]; edges: ElementDefinition[] }, boxes: GroupBox[], positions?: Map<string, { x: number; y: number }>) {
    const nodes = new Map<string, BigNode>();
    for (const el of els.nodes) {
      const id = String(el.data.id);
      const classes = new Set(String(el.classes ?? '').split(' ').filter(Boolean));
      const g = nodeGeometry(classes, el.data.collapsed === true);
      const old = this.nodes.get(id);
      const at = this.pinned.get(id) ?? positions?.get(id) ?? old ?? { x: 0, y: 0 };
      nodes.set(id, { id, x: at.x, y: at.y, ...g, data: el.data as Record<string, unknown>, classes });
    }
    const edges = new Map<string, BigEdge>();
    for (const el of els.edges) {
      const source = nodes.get(String(el.data.source));
      const target = nodes.get(String(el.data.target));
      if (!source || !target) continue;
      const id = String(el.data.id);
      edges.set(id, { id, source, target, data: el.data as Record<string, unknown>, classes: new Set(String(el.classes ?? '').split(' ').filter(Boolean)) });
    }
    this.nodes = nodes;
    this.edges = edges;
    this.boxes = boxes;
    this.changed();
  }

  /** moveNodes places nodes (pinned ones included: a loaded view's pins) */
  moveNodes(positions: Map<string, { x: number; y: number }>) {
    for (const [id, p] of positions) {
      const n = this.nodes.get(id);
      if (n) {
        n.x = p.x;
        n.y = p.y;
      }
    }
    this.changed();
  }

  // --- drawing

  /** schedule draws everything on the next frame (once, however often asked) */
  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      if (this.gesture) this.drawSnapshot();
      else this.draw();
    });
  }

  private resize(): boolean {
    const r = this.container.getBoundingClientRect();
    // One pixel per CSS pixel at most twice over: a 5,000-node picture at 3× costs 9× the fill.
    const scale = Math.min(2, window.devicePixelRatio || 1);
    const w = Math.max(1, Math.round(r.width));
    const h = Math.max(1, Math.round(r.height));
    if (w === this.w && h === this.h && scale === this.scale) return false;
    this.w = w;
    this.h = h;
    this.scale = scale;
    this.canvas.width = Math.round(w * scale);
    this.canvas.height = Math.round(h * scale);
    return true;
  }

  /**
   * draw paints the whole picture now, for the current viewport: the boxes
   * and the graph from bitmaps of their own, drawn again only when the
   * elements, the viewport or the theme changed, and between them the
   * search halos and the selection, so that a search or a click costs three
   * image copies and a few shapes, not a picture of every element.
   */
  draw() {
    const t0 = performance.now();
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    const cw = this.canvas.width;
    const ch = this.canvas.height;
    const selectedBox = this.boxes.some((b) => b.id === this.selected) ? this.selected : '';
    const key = `${this.version}|${this.z}|${this.p.x}|${this.p.y}|${cw}|${ch}|${this.theme}|${selectedBox}`;
    if (key !== this.layerKey) {
      this.layerKey = key;
      for (const c of [this.boxLayer, this.graphLayer]) {
        if (c.width !== cw || c.height !== ch) {
          c.width = cw;
          c.height = ch;
        }
      }
      const b = this.boxLayer.getContext('2d')!;
      b.setTransform(1, 0, 0, 1, 0, 0);
      b.clearRect(0, 0, cw, ch);
      paintBoxes(b, this, this.boxes, this.selected, this.scale);
      const g = this.graphLayer.getContext('2d')!;
      g.setTransform(1, 0, 0, 1, 0, 0);
      g.clearRect(0, 0, cw, ch);
      this.paintGraph(g, this.scale, true);
    }
    const ctx = this.ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, cw, ch);
    ctx.drawImage(this.boxLayer, 0, 0);
    this.paintOverlay(ctx, this.scale);
    ctx.drawImage(this.graphLayer, 0, 0);
    this.snapView = null;
    this.lastDrawMs = performance.now() - t0;
  }

  /** changed says the elements moved or changed: the next draw paints them again. */
  changed() {
    this.version++;
    this.schedule();
  }

  /**
   * paint draws boxes, halos, edges, nodes and (when zoomed in enough) names
   * onto ctx, whose size is the view's times scale. Elements out of view are
   * skipped (labels always; edges and nodes when cull is set).
   */
  paint(ctx: CanvasRenderingContext2D, scale: number, cull: boolean) {
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, ctx.canvas.width, ctx.canvas.height);
    paintBoxes(ctx, this, this.boxes, this.selected, scale);
    this.paintOverlay(ctx, scale);
    this.paintGraph(ctx, scale, cull);
  }

  /**
   * paintOverlay draws what a search or a selection changes, between the
   * boxes and the graph: the search halos and the selection's underlay.
   */
  private paintOverlay(ctx: CanvasRenderingContext2D, scale: number) {
    paintMarks(ctx, this, this.marked, scale);
    const id = this.selected;
    if (!id) return;
    ctx.save();
    ctx.setTransform(scale * this.z, 0, 0, scale * this.z, scale * this.p.x, scale * this.p.y);
    const n = this.nodes.get(id);
    const e = n ? undefined : this.edges.get(id);
    if (n) {
      const p = new Path2D();
      shapePath(p, n, 8);
      ctx.globalAlpha = 0.25;
      ctx.fillStyle = '#2563eb';
      ctx.fill(p);
    } else if (e) {
      ctx.globalAlpha = 0.3;
      ctx.strokeStyle = '#2563eb';
      ctx.lineWidth = 12;
      ctx.beginPath();
      ctx.moveTo(e.source.x, e.source.y);
      ctx.lineTo(e.target.x, e.target.y);
      ctx.stroke();
    }
    ctx.restore();
  }

  /** paintGraph draws the edges, nodes and names (over the boxes and the overlay). */
  private paintGraph(ctx: CanvasRenderingContext2D, scale: number, cull: boolean) {
    const z = this.z;
    const pal = PALETTE[this.theme];
    ctx.save();
    ctx.setTransform(scale * z, 0, 0, scale * z, scale * this.p.x, scale * this.p.y);
    // the model rectangle in view, with a margin for a node's size
    const m = 60;
    const vx1 = -this.p.x / z - m, vy1 = -this.p.y / z - m, vx2 = (this.w - this.p.x) / z + m, vy2 = (this.h - this.p.y) / z + m;
    const inView = (x: number, y: number) => x >= vx1 && x <= vx2 && y >= vy1 && y <= vy2;
    const edgeInView = (e: BigEdge) =>
      !cull || !(Math.max(e.source.x, e.target.x) < vx1 || Math.min(e.source.x, e.target.x) > vx2 || Math.max(e.source.y, e.target.y) < vy1 || Math.min(e.source.y, e.target.y) > vy2);

    // Underlays first: cycles (purple), a blast radius or path (orange), the selection (blue).
    const under = (key: string, color: string, alpha: number, width: number) => ({ key, color, alpha, width, path: new Path2D() });
    const edgeUnder = [under('cycle', '#7c3aed', 0.18, 6), under('hl', '#f97316', 0.45, 8)];
    const edgeBuckets = new Map<string, { color: string; width: number; dash: number[]; alpha: number; path: Path2D }>();
    for (const e of this.edges.values()) {
      if (!edgeInView(e)) continue;
      const c = e.classes;
      const width = Number(e.data.width) > 0 ? Math.max(1, Math.min(6, Math.round(Number(e.data.width)))) : 1.5;
      for (const u of edgeUnder) {
        if (c.has(u.key)) {
          u.path.moveTo(e.source.x, e.source.y);
          u.path.lineTo(e.target.x, e.target.y);
        }
      }
      const health = healthOf(c);
      const dashKey = c.has('health-failing') ? 'health-failing' : c.has('health-degraded') ? 'health-degraded' : '';
      const alpha = alphaOf(c);
      const key = `${health}|${width}|${dashKey}|${alpha}`;
      let b = edgeBuckets.get(key);
      if (!b) edgeBuckets.set(key, (b = { color: HEALTH_COLOR[health], width, dash: DASH[dashKey] ?? [], alpha, path: new Path2D() }));
      b.path.moveTo(e.source.x, e.source.y);
      b.path.lineTo(e.target.x, e.target.y);
    }
    ctx.lineCap = 'butt';
    for (const u of edgeUnder) {
      ctx.globalAlpha = u.alpha;
      ctx.strokeStyle = u.color;
      ctx.lineWidth = u.width;
      ctx.stroke(u.path);
    }
    // Patterns in screen pixels, and only once an edge is long enough on
    // screen to show one: at the overview a pattern in model units would be
    // hundreds of sub-pixel dashes per edge (seconds of rasterizing).
    const patterns = z >= PATTERN_ZOOM;
    // Healthy under degraded under failing: the trouble is on top.
    const rank = (k: string) => (k.startsWith('failing') ? 3 : k.startsWith('degraded') ? 2 : k.startsWith('healthy') ? 1 : 0);
    for (const [, b] of [...edgeBuckets].sort((a, b) => rank(a[0]) - rank(b[0]) || (a[0] < b[0] ? -1 : 1))) {
      ctx.globalAlpha = b.alpha;
      ctx.strokeStyle = b.color;
      ctx.lineWidth = b.width;
      ctx.setLineDash(patterns ? b.dash.map((d) => (d * 1.5) / z) : []);
      ctx.stroke(b.path);
    }
    ctx.setLineDash([]);

    const nodeUnder = [under('hl', '#f97316', 0.3, 7), under('hl-root', '#7c2d12', 0.35, 9)];
    const nodeBuckets = new Map<string, { fill: string; stroke: string; width: number; dash: number[]; alpha: number; double: boolean; path: Path2D }>();
    const cycles = new Path2D();
    const shown: BigNode[] = [];
    // Seen from afar (a node a few pixels wide), a node is a dot of its
    // health colour: one filled rectangle, no border to stroke.
    const dots = z < DOT_ZOOM;
    const dotPaths = new Map<string, Path2D>();
    for (const n of this.nodes.values()) {
      if (cull && !inView(n.x, n.y)) continue;
      shown.push(n);
      const c = n.classes;
      if (dots && !c.has('group')) {
        const a = alphaOf(c);
        const key = `${HEALTH_COLOR[healthOf(c)]}|${a}`;
        let p = dotPaths.get(key);
        if (!p) dotPaths.set(key, (p = new Path2D()));
        p.rect(n.x - n.w / 2, n.y - n.h / 2, n.w, n.h);
        for (const u of nodeUnder) if (c.has(u.key)) shapePath(u.path, n, u.width);
        if (c.has('cycle')) shapePath(cycles, n, 4);
        continue;
      }
      for (const u of nodeUnder) if (c.has(u.key)) shapePath(u.path, n, u.width);
      if (c.has('cycle')) shapePath(cycles, n, 4);
      const health = healthOf(c);
      const group = c.has('group');
      const fill = group ? (health === 'failing' ? pal.failingBox : health === 'degraded' ? pal.degradedBox : pal.box) : c.has('unknown') ? pal.unknown : pal.node;
      const stroke = group && health !== 'failing' && health !== 'degraded' ? pal.boxBorder : HEALTH_COLOR[health];
      const double = health === 'failing' || group;
      const width = health === 'failing' ? 6 : health === 'degraded' ? 3 : 2.5;
      const dash = health === 'degraded' || c.has('unknown') ? [5, 3] : [];
      const alpha = alphaOf(c);
      const key = `${fill}|${stroke}|${width}|${dash.join(',')}|${alpha}|${double}`;
      let b = nodeBuckets.get(key);
      if (!b) nodeBuckets.set(key, (b = { fill, stroke, width, dash, alpha, double, path: new Path2D() }));
      shapePath(b.path, n);
    }
    for (const u of nodeUnder) {
      ctx.globalAlpha = u.alpha;
      ctx.fillStyle = u.color;
      ctx.fill(u.path);
    }
    ctx.globalAlpha = 1;
    ctx.strokeStyle = '#7c3aed';
    ctx.lineWidth = 2;
    ctx.stroke(cycles);
    for (const [key, p] of dotPaths) {
      const [color, alpha] = key.split('|');
      ctx.globalAlpha = Number(alpha);
      ctx.fillStyle = color;
      ctx.fill(p);
    }
    for (const b of nodeBuckets.values()) {
      ctx.globalAlpha = b.alpha;
      ctx.fillStyle = b.fill;
      ctx.fill(b.path);
      ctx.strokeStyle = b.stroke;
      ctx.lineWidth = b.width;
      ctx.setLineDash(patterns ? b.dash : []);
      ctx.stroke(b.path);
      if (b.double) {
        // cytoscape's double border: a line of the fill colour through the middle
        ctx.strokeStyle = b.fill;
        ctx.lineWidth = b.width / 3;
        ctx.stroke(b.path);
      }
    }
    ctx.setLineDash([]);
    ctx.globalAlpha = 1;

    // Names, once readable (graphstyle.ts' LABEL_ZOOM), of what is in view only.
    if (z >= LABEL_ZOOM) {
      ctx.font = `11px Inter, system-ui, sans-serif`;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'top';
      ctx.lineJoin = 'round';
      ctx.lineWidth = 3;
      ctx.strokeStyle = pal.labelBg;
      for (const n of shown) {
        if (!inView(n.x, n.y)) continue;
        const lines = String(n.data.label ?? '').split('\n');
        const collapsed = n.data.collapsed === true;
        ctx.globalAlpha = alphaOf(n.classes);
        ctx.fillStyle = collapsed ? pal.boxText : n.classes.has('health-failing') ? HEALTH_COLOR.failing : pal.label;
        lines.forEach((l, i) => {
          const y = collapsed ? n.y - 6 + i * 13 : n.y + n.h / 2 + 4 + i * 13;
          ctx.strokeText(l, n.x, y);
          ctx.fillText(l, n.x, y);
        });
      }
      ctx.font = `9px Inter, system-ui, sans-serif`;
      ctx.textBaseline = 'middle';
      for (const e of this.edges.values()) {
        const label = String(e.data.label ?? '');
        if (!label) continue;
        const mx = (e.source.x + e.target.x) / 2;
        const my = (e.source.y + e.target.y) / 2;
        if (!inView(mx, my)) continue;
        ctx.globalAlpha = alphaOf(e.classes);
        ctx.fillStyle = e.classes.has('health-failing') ? HEALTH_COLOR.failing : pal.edgeLabel;
        ctx.strokeText(label, mx, my);
        ctx.fillText(label, mx, my);
      }
      ctx.globalAlpha = 1;
    }
    ctx.restore();
  }

  /** drawSnapshot moves and scales the last full picture to the current viewport (during a gesture). */
  private drawSnapshot() {
    const v = this.snapView;
    if (!v) return this.draw();
    const s = this.z / v.zoom;
    const ctx = this.ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    const dx = (this.p.x - s * v.pan.x) * this.scale;
    const dy = (this.p.y - s * v.pan.y) * this.scale;
    ctx.drawImage(this.snap, dx, dy, this.snap.width * s, this.snap.height * s);
  }

  /** startGesture keeps the picture on screen to move during a drag or wheel. */
  private startGesture() {
    if (this.gesture) return;
    this.gesture = true;
    if (this.frame) this.draw();
    this.snap.width = this.canvas.width;
    this.snap.height = this.canvas.height;
    const s = this.snap.getContext('2d');
    s?.drawImage(this.canvas, 0, 0);
    this.snapView = { zoom: this.z, pan: { ...this.p } };
  }
  private endGesture() {
    if (!this.gesture) return;
    this.gesture = false;
    this.schedule();
  }

  // --- hits

  /** nodeAt is the node under a screen point, if any (the topmost). */
  nodeAt(sx: number, sy: number): BigNode | undefined {
    const m = this.model({ x: sx, y: sy });
    const tol = 3 / this.z;
    let hit: BigNode | undefined;
    for (const n of this.nodes.values()) {
      if (Math.abs(m.x - n.x) <= n.w / 2 + tol && Math.abs(m.y - n.y) <= n.h / 2 + tol) hit = n;
    }
    return hit;
  }
  /** edgeAt is the edge nearest a screen point within a few pixels, if any. */
  edgeAt(sx: number, sy: number): BigEdge | undefined {
    const m = this.model({ x: sx, y: sy });
    let best: BigEdge | undefined;
    let bestD = Infinity;
    for (const e of this.edges.values()) {
      const width = Number(e.data.width) || 1.5;
      const reach = Math.max(5 / this.z, width / 2 + 2);
      const { x: x1, y: y1 } = e.source;
      const { x: x2, y: y2 } = e.target;
      if (m.x < Math.min(x1, x2) - reach || m.x > Math.max(x1, x2) + reach || m.y < Math.min(y1, y2) - reach || m.y > Math.max(y1, y2) + reach) continue;
      const dx = x2 - x1, dy = y2 - y1;
      const t = Math.max(0, Math.min(1, ((m.x - x1) * dx + (m.y - y1) * dy) / (dx * dx + dy * dy || 1)));
      const d = Math.hypot(m.x - (x1 + t * dx), m.y - (y1 + t * dy));
      if (d <= reach && d < bestD) {
        bestD = d;
        best = e;
      }
    }
    return best;
  }
  /** hit is what a click at a screen point selects: a node, an edge, a box or nothing. */
  hit(sx: number, sy: number): { type: 'node' | 'edge'; id: string } | null {
    const n = this.nodeAt(sx, sy);
    if (n) return { type: 'node', id: n.id };
    const e = this.edgeAt(sx, sy);
    if (e) return { type: 'edge', id: e.id };
    const b = this.boxAt(sx, sy);
    return b ? { type: 'node', id: b } : null;
  }
  /** boxAt is the id of the group box at a screen point, if any. */
  boxAt(sx: number, sy: number): string | null {
    return hitBox(this, this.boxes, this.model({ x: sx, y: sy }));
  }

  // --- input

  private listen() {
    const c = this.canvas;
    let down: { x: number; y: number; node?: BigNode; moved: boolean; pointer: number } | null = null;
    const local = (e: MouseEvent) => {
      const r = c.getBoundingClientRect();
      return { x: e.clientX - r.left, y: e.clientY - r.top };
    };
    const on = <K extends keyof HTMLElementEventMap>(type: K, f: (e: HTMLElementEventMap[K]) => void, opts?: AddEventListenerOptions) => {
      c.addEventListener(type, f as EventListener, opts);
      this.cleanup.push(() => c.removeEventListener(type, f as EventListener));
    };
    // Two fingers pinch: the view zooms by how far they spread, about their middle, and follows it.
    const touch = new Map<number, { x: number; y: number }>();
    let pinch: { d: number; mid: { x: number; y: number } } | null = null;
    const spread = () => {
      const [a, b] = [...touch.values()];
      return { d: Math.max(1, Math.hypot(a.x - b.x, a.y - b.y)), mid: { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 } };
    };
    on('pointerdown', (e) => {
      if (e.pointerType === 'touch') {
        touch.set(e.pointerId, local(e));
        if (touch.size === 2) {
          down = null;
          pinch = spread();
          this.startGesture();
          c.setPointerCapture?.(e.pointerId);
          return;
        }
      }
      if (e.button !== 0) return;
      const p = local(e);
      down = { ...p, node: this.nodeAt(p.x, p.y), moved: false, pointer: e.pointerId };
      c.setPointerCapture?.(e.pointerId);
    });
    on('pointermove', (e) => {
      if (touch.has(e.pointerId)) touch.set(e.pointerId, local(e));
      if (pinch) {
        if (touch.size === 2) {
          const now = spread();
          this.panBy({ x: now.mid.x - pinch.mid.x, y: now.mid.y - pinch.mid.y });
          this.zoomAt((this.z * now.d) / pinch.d, now.mid);
          pinch = now;
        }
        return;
      }
      if (!down || e.pointerId !== down.pointer) return;
      const p = local(e);
      if (!down.moved && Math.hypot(p.x - down.x, p.y - down.y) < 4) return;
      if (!down.moved) {
        down.moved = true;
        if (!down.node) this.startGesture();
      }
      const dx = p.x - down.x;
      const dy = p.y - down.y;
      down.x = p.x;
      down.y = p.y;
      if (down.node) {
        // Dragging a node moves it (and pins it where it is dropped).
        down.node.x += dx / this.z;
        down.node.y += dy / this.z;
        this.changed();
      } else this.panBy({ x: dx, y: dy });
    });
    const up = (e: PointerEvent) => {
      touch.delete(e.pointerId);
      if (pinch) {
        if (touch.size < 2) {
          pinch = null;
          this.endGesture();
        }
        return;
      }
      if (!down || e.pointerId !== down.pointer) return;
      const d = down;
      down = null;
      const p = local(e);
      if (d.moved && e.type === 'pointerup') {
        // The last moves may have been merged into this event (a busy page gets fewer pointermoves): end where the pointer is.
        const dx = p.x - d.x;
        const dy = p.y - d.y;
        if (d.node) {
          d.node.x += dx / this.z;
          d.node.y += dy / this.z;
          this.changed();
        } else if (dx || dy) this.panBy({ x: dx, y: dy });
      }
      if (!d.moved) {
        this.events.select(this.hit(p.x, p.y));
      } else if (d.node) {
        this.pinned.set(d.node.id, { x: d.node.x, y: d.node.y });
        this.events.dragged(d.node.id);
        this.schedule();
      } else this.endGesture();
    };
    on('pointerup', up);
    on('pointercancel', up);
    on('dblclick', (e) => {
      const p = local(e);
      const n = this.nodeAt(p.x, p.y);
      if (n) {
        if (n.id.startsWith('group:')) this.events.toggle(n.id);
        return;
      }
      const b = this.boxAt(p.x, p.y);
      if (b) this.events.toggle(b);
    });
    on(
      'wheel',
      (e) => {
        e.preventDefault();
        const dy = e.deltaMode === 1 ? e.deltaY * 33 : e.deltaMode === 2 ? e.deltaY * 400 : e.deltaY;
        this.startGesture();
        this.zoomAt(this.z * Math.pow(10, (-dy / 250) * WHEEL_SENSITIVITY), local(e));
        clearTimeout(this.wheelTimer);
        this.wheelTimer = window.setTimeout(() => this.endGesture(), WHEEL_SETTLE_MS);
      },
      { passive: false },
    );
  }

  // --- exports

  /** png is the view as a PNG, as on screen, at scale times its size. */
  async png(background: string, scale = 2): Promise<Blob> {
    const canvas = document.createElement('canvas');
    canvas.width = Math.round(this.w * scale);
    canvas.height = Math.round(this.h * scale);
    const ctx = canvas.getContext('2d');
    if (!ctx) throw new Error('the browser gave no 2D canvas to draw the PNG on');
    this.paint(ctx, scale, true);
    ctx.globalCompositeOperation = 'destination-over';
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = background;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    return new Promise((resolve, reject) => canvas.toBlob((b) => (b ? resolve(b) : reject(new Error('the browser could not encode the PNG'))), 'image/png'));
  }

  /** scene is what is on screen, in screen coordinates, for the SVG export (exporting.ts). */
  scene(background: string, text: string): Scene {
    const z = this.z;
    const pal = PALETTE[this.theme];
    const scene: Scene = { width: this.w, height: this.h, background, boxes: [], edges: [], nodes: [], text };
    const onScreen = (x: number, y: number) => x >= -60 && y >= -60 && x <= this.w + 60 && y <= this.h + 60;
    for (const b of this.boxes) {
      const r = boxRect(this, b);
      if (!r) continue;
      const st = boxStyle(b, this.selected, this.dark);
      const x = r.x1 * z + this.p.x;
      const y = r.y1 * z + this.p.y;
      const w = (r.x2 - r.x1) * z;
      const h = (r.y2 - r.y1) * z;
      if (x + w < 0 || y + h < 0 || x > this.w || y > this.h) continue;
      scene.boxes.push({ x, y, w, h, label: boxLabelShown(z) ? b.label : '', stroke: st.stroke, fill: st.fill });
    }
    const labels = z >= LABEL_ZOOM;
    for (const e of this.edges.values()) {
      const s = this.rendered(e.source);
      const t = this.rendered(e.target);
      if (!onScreen(s.x, s.y) && !onScreen(t.x, t.y)) continue;
      const dashKey = e.classes.has('health-failing') ? 'health-failing' : e.classes.has('health-degraded') ? 'health-degraded' : '';
      scene.edges.push({
        x1: s.x, y1: s.y, x2: t.x, y2: t.y, cx: (s.x + t.x) / 2, cy: (s.y + t.y) / 2,
        color: HEALTH_COLOR[healthOf(e.classes)], width: Math.max(0.5, (Number(e.data.width) || 1.5) * z), dash: SVG_DASH[dashKey] ?? '',
        label: labels ? String(e.data.label ?? '') : '', opacity: alphaOf(e.classes),
      });
    }
    for (const n of this.nodes.values()) {
      const p = this.rendered(n);
      if (!onScreen(p.x, p.y)) continue;
      const health = healthOf(n.classes);
      scene.nodes.push({
        x: p.x, y: p.y, w: n.w * z, h: n.h * z, shape: n.shape,
        stroke: HEALTH_COLOR[health], strokeWidth: (health === 'failing' ? 6 : health === 'degraded' ? 3 : 2.5) * z, dash: health === 'degraded' ? '5 3' : '',
        fill: n.classes.has('unknown') ? pal.unknown : pal.node, label: labels ? String(n.data.label ?? '') : '', opacity: alphaOf(n.classes),
      });
    }
    return scene;
  }
}

