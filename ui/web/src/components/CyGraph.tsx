// The topology of a graph of up to WEBGL_GRAPH nodes (or any graph asked for
// with ?renderer=), drawn by cytoscape; GraphCanvas picks it and loads this
// module (and cytoscape with it) only then.
import cytoscape, { type Core, type ElementDefinition } from 'cytoscape';
import { useEffect, useRef } from 'preact/hooks';
import { flattenGroups, isBox, pinnedPositions, planUpdate, type GroupBox } from '../graph';
import { graphStyle, LARGE_GRAPH, styleMode, type StyleMode, type Theme } from '../graphstyle';
import { layeredPositions } from '../layered';
import { hitBox, marksOf, paintBoxes, paintMarks, placeOfCy, pngOf } from './boxes';
import { keyNav, markRendered, offScreen, type KeyView } from './graphkeys';
import { sceneFromCy } from './scene';
import type { GraphCanvasProps, GraphHandle, Selection } from './GraphCanvas';

/** cytoscape-dagre is loaded only for graphs small enough to use it. */
let dagreLoaded: Promise<void> | null = null;
function loadDagre(): Promise<void> {
  dagreLoaded ??= import('cytoscape-dagre').then((m) => {
    cytoscape.use(m.default);
  });
  return dagreLoaded;
}

/** cyHandle is cytoscape's view as a GraphHandle. */
export function cyHandle(cy: Core): GraphHandle {
  return {
    pinned: () => pinnedPositions(cy),
    png: (bg) => pngOf(cy, bg),
    scene: (bg, text) => sceneFromCy(cy, bg, text),
    zoomBy: (f) => cy.zoom({ level: cy.zoom() * f, renderedPosition: { x: cy.width() / 2, y: cy.height() / 2 } }),
    fit: () => cy.fit(undefined, 40),
  };
}

let webgl2: 'gpu' | 'software' | 'none' | undefined;
/**
 * webglAvailable says whether the browser gives a WebGL 2 context (cytoscape's
 * WebGL renderer needs one), and whether a GPU draws it or a software
 * rasterizer (SwiftShader, llvmpipe: headless Chromium, machines without a GPU).
 */
export function webglAvailable(): 'gpu' | 'software' | 'none' {
  if (webgl2 === undefined) {
    try {
      const gl = document.createElement('canvas').getContext('webgl2');
      if (!gl) webgl2 = 'none';
      else {
        const info = gl.getExtension('WEBGL_debug_renderer_info');
        const name = info ? String(gl.getParameter(info.UNMASKED_RENDERER_WEBGL)) : '';
        webgl2 = /swiftshader|llvmpipe|softpipe|software|basic render/i.test(name) ? 'software' : 'gpu';
        gl.getExtension('WEBGL_lose_context')?.loseContext();
      }
    } catch {
      webgl2 = 'none';
    }
  }
  return webgl2;
}

/**
 * note keeps a value in cy.scratch() (read back with cy.scratch(key)) without
 * cy.scratch(key, value), which restyles every element (a style may map
 * scratch data): 25,000 elements restyled and redrawn per call at 5,000
 * nodes, seconds without a GPU, for each search, selection or update.
 */
function note(cy: Core, key: string, value: unknown) {
  (cy.scratch() as Record<string, unknown>)[key] = value;
}

function applyPinned(cy: Core) {
  const pinned = cy.scratch('_pinned') as Map<string, cytoscape.Position> | undefined;
  if (!pinned?.size) return;
  cy.batch(() => {
    for (const [id, p] of pinned) {
      const n = cy.getElementById(id);
      if (n.nonempty() && !n.isParent()) n.position({ ...p });
    }
  });
}

/** Positions per layout key survive unmounts, so coming back to the page shows the same picture. */
const savedPositions = new Map<string, Map<string, cytoscape.Position>>();

export function CyGraph({ elements: input, layoutKey, selected, onSelect, onReady, theme = 'light', pinned, onToggleGroup, renderer, marked }: GraphCanvasProps) {
  const box = useRef<HTMLDivElement>(null);
  const layer = useRef<HTMLCanvasElement>(null);
  const boxesRef = useRef<GroupBox[] | null>(null);
  const selectedRef = useRef<Selection | null>(selected);
  selectedRef.current = selected;
  const cyRef = useRef<Core | null>(null);
  const keyRef = useRef<string>('');
  /** id → data and classes as last given to cytoscape, to touch only what changed */
  const sigs = useRef(new Map<string, string>());
  const onSelectRef = useRef(onSelect);
  onSelectRef.current = onSelect;
  const onToggleRef = useRef(onToggleGroup);
  onToggleRef.current = onToggleGroup;
  /** set once the first frame is drawn: listeners that only matter afterwards wait for it */
  const afterFirst = useRef<(() => void) | null>(null);
  /** the ids of the search matches last brought into view (large graphs) */
  const shownMatches = useRef('');

  useEffect(() => {
    const large = input.nodes.length > LARGE_GRAPH;
    const mode = styleMode(large);
    // Cytoscape's WebGL renderer only when asked for (?renderer=webgl): graphs
    // above WEBGL_GRAPH nodes go to BigGraph, and below it the 2D canvas is
    // fast enough (see README, Large graphs).
    const webgl = renderer === 'webgl' && webglAvailable() !== 'none';
    const cy = cytoscape({
      container: box.current,
      style: graphStyle(mode, theme),
      minZoom: 0.05,
      maxZoom: 3,
      wheelSensitivity: 0.3,
      boxSelectionEnabled: false,
      selectionType: 'single',
      // A large graph is drawn at one pixel per CSS pixel, and pan/zoom move a
      // snapshot of it instead of redrawing thousands of elements per frame.
      ...(large ? { pixelRatio: 1, textureOnViewport: true, hideEdgesOnViewport: true, motionBlur: false } : {}),
      ...(webgl ? { renderer: { name: 'canvas', webgl: true } } : {}),
    });
    if (large && !webgl) snapshotOnViewport(cy);
    note(cy, '_webgl', webgl);
    note(cy, '_mode', mode);
    note(cy, '_theme', theme);
    if (large && !webgl) {
      // cytoscape's layered texture cache draws the elements into a few
      // large bitmaps, a few elements per idle frame, asking for a redraw of
      // the whole graph after each batch; at 5,000 nodes it drew ~500 of
      // 25,000 elements in 2 s, so the bitmaps were never complete, and
      // every one of those redraws drew every element (1–3 s each, idle
      // page included; a search waited for one). Without it, cytoscape draws
      // the elements when something changes and is idle otherwise.
      try {
        const cache = (cy as unknown as { renderer(): { data?: { lyrTxrCache?: { getLayers?: unknown } } } }).renderer().data?.lyrTxrCache;
        if (cache && typeof cache.getLayers === 'function') cache.getLayers = () => null;
      } catch {
        /* renderer internals differ: keep the default */
      }
    }
    cy.on('tap', 'node, edge', (e) => {
      const t = e.target;
      onSelectRef.current({ type: t.isNode() ? 'node' : 'edge', id: t.id() });
    });
    note(cy, '_pinned', new Map(pinned ?? []));
    cy.on('dragfree', 'node', (e) => {
      const n = e.target as cytoscape.NodeSingular;
      if (!n.isParent()) (cy.scratch('_pinned') as Map<string, cytoscape.Position>).set(n.id(), { ...n.position() });
    });
    cy.on('dbltap', 'node', (e) => {
      const id = (e.target as cytoscape.NodeSingular).id();
      if (id.startsWith('group:')) onToggleRef.current?.(id);
    });
    cy.on('dbltap', (e) => {
      if (e.target !== cy) return;
      const hit = boxesRef.current && hitBox(placeOfCy(cy), boxesRef.current, e.position);
      if (hit) onToggleRef.current?.(hit);
    });
    cy.on('tap', (e) => {
      if (e.target !== cy) return;
      const hit = boxesRef.current && hitBox(placeOfCy(cy), boxesRef.current, e.position);
      onSelectRef.current(hit ? { type: 'node', id: hit } : null);
    });
    let pending = false;
    const redraw = () => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => {
        pending = false;
        drawBoxes(cy, layer.current, boxesRef.current, selectedRef.current?.id);
      });
    };
    (cy as unknown as { __redrawBoxes: () => void }).__redrawBoxes = redraw;
    // The box layer follows every node move and viewport change; on a large
    // graph the first adds emit a position event per node, so it listens only
    // once the first frame is on screen.
    afterFirst.current = () => {
      cy.on('viewport position resize', redraw);
      cy.on('dragfree', 'node', () => save(cy, keyRef.current));
      redraw();
    };
    cyRef.current = cy;
    (window as unknown as { __cy?: Core }).__cy = cy; // for e2e tests and debugging
    onReady?.(cyHandle(cy));
    return () => {
      save(cy, keyRef.current);
      cy.destroy();
      cyRef.current = null;
      sigs.current.clear();
    };
  }, []);

  useEffect(() => {
    const cy = cyRef.current;
    if (!cy) return;
    const large = input.nodes.length > LARGE_GRAPH;
    let elements = input;
    if (large) {
      const f = flattenGroups(input);
      elements = f.elements;
      boxesRef.current = f.boxes;
    } else boxesRef.current = null;
    // The exports paint them too (boxes.ts, boxesOf).
    note(cy, '_boxes', boxesRef.current);
    note(cy, '_large', large);
    // cytoscape reads these at render time; they make pan/zoom cheap on big graphs.
    const r = cy as unknown as { renderer(): { textureOnViewport?: boolean; hideEdgesOnViewport?: boolean } };
    try {
      r.renderer().textureOnViewport = large;
      r.renderer().hideEdgesOnViewport = large;
    } catch {
      /* headless */
    }
    // One stylesheet per size, the same at every zoom (graphstyle.ts).
    setMode(cy, styleMode(large));
    const newKey = keyRef.current !== layoutKey;
    if (newKey) {
      save(cy, keyRef.current);
      keyRef.current = layoutKey;
    }
    const current = new Map<string, string | undefined>();
    cy.elements().forEach((el) => {
      current.set(el.id(), el.isNode() ? (el.data('parent') as string | undefined) : undefined);
    });
    performance.mark('meshlens:update-start');
    const plan = planUpdate(current, elements);
    const first = newKey || current.size === 0;
    const needLayout = plan.relayout || newKey;

    // Positions known without running a layout: the ones saved for this
    // view, or, for big meshes, the linear layered layout (dagre with
    // service boxes is quadratic and takes tens of seconds at 1,000 nodes).
    let positions: Map<string, cytoscape.Position> | undefined;
    const leafIds = elements.nodes.filter((n) => !isBox(n)).map((n) => String(n.data.id));
    const saved = savedPositions.get(layoutKey);
    if (newKey && saved && leafIds.length > 0 && leafIds.every((id) => saved.has(id))) positions = saved;
    else if (needLayout && large) {
      positions = layeredPositions({
        nodes: input.nodes.filter((n) => !isBox(n)).map((n) => ({ id: String(n.data.id), parent: n.data.parent as string | undefined })),
        edges: elements.edges.map((e) => ({ source: String(e.data.source), target: String(e.data.target) })),
      });
    }

    const sig = (el: ElementDefinition) => JSON.stringify(el.data) + (el.classes ?? '');
    cy.batch(() => {
      if (plan.remove.length) {
        let gone = cy.collection();
        for (const id of plan.remove) {
          gone = gone.union(cy.getElementById(id));
          sigs.current.delete(id);
        }
        cy.remove(gone);
      }
      for (const el of plan.update) {
        // Touch only what changed: every data() call restyles the element.
        const id = String(el.data.id);
        const s = sig(el);
        if (sigs.current.get(id) === s) continue;
        sigs.current.set(id, s);
        const e = cy.getElementById(id);
        e.data(el.data);
        e.classes(el.classes as string);
      }
      if (positions) {
        // Nodes already on screen move; new ones get their place in the one add below.
        for (const el of plan.update) {
          if (el.group !== 'nodes') continue;
          const p = positions.get(String(el.data.id));
          const n = cy.getElementById(String(el.data.id));
          if (p && !n.isParent()) n.position({ ...p });
        }
      }
      if (plan.add.length) {
        const added = plan.add.map((el) => {
          sigs.current.set(String(el.data.id), sig(el));
          const p = positions?.get(String(el.data.id));
          return p ? { ...el, position: { ...p } } : el;
        });
        cy.add(added as ElementDefinition[]);
      }
    });
    performance.mark('meshlens:elements-added');

    const done = () => {
      applyPinned(cy);
      save(cy, layoutKey);
      const after = afterFirst.current;
      afterFirst.current = null;
      markRendered(after ?? undefined);
      (cy as unknown as { __redrawBoxes: () => void }).__redrawBoxes();
    };
    if (positions) {
      if (first) fitTo(cy, positions, 40);
      performance.mark('meshlens:layout-done');
      done();
    } else if (needLayout) {
      loadDagre().then(() => {
        if (cyRef.current !== cy) return;
        const layout = cy.layout({
          name: 'dagre',
          rankDir: 'LR',
          nodeSep: 46,
          rankSep: 170,
          edgeSep: 10,
          ranker: 'network-simplex',
          fit: first,
          padding: 40,
          animate: !first,
          animationDuration: 300,
        } as cytoscape.LayoutOptions);
        layout.one('layoutstop', () => {
          performance.mark('meshlens:layout-done');
          // A handful of nodes would fit at a comic zoom; keep them at a readable size.
          if (first && cy.zoom() > 1.15) cy.zoom({ level: 1.15, renderedPosition: { x: cy.width() / 2, y: cy.height() / 2 } });
          done();
        });
        layout.run();
      });
    } else {
      done();
    }
  }, [input, layoutKey]);

  // A large graph's search: its matches get a halo painted with the boxes
  // (boxes.ts, paintMarks), and are brought into view if one is off screen.
  useEffect(() => {
    const cy = cyRef.current;
    if (!cy || !marked) return;
    const nodes: cytoscape.NodeSingular[] = [];
    for (const id of marked) {
      const n = cy.getElementById(id);
      if (n.nonempty() && n.isNode()) nodes.push(n);
    }
    note(cy, '_marked', nodes.map((n) => n.id()));
    (cy as unknown as { __redrawBoxes: () => void }).__redrawBoxes();
    const ids = nodes.map((n) => n.id()).sort().join(' ');
    if (ids === shownMatches.current) return;
    shownMatches.current = ids;
    // Moving the viewport redraws every element; a match already in view stays where it is.
    if (offScreen(nodes.map((n) => n.renderedPosition()), cy.width(), cy.height())) bringIntoView(cy, cy.collection(nodes as unknown as cytoscape.CollectionArgument) as cytoscape.NodeCollection);
  }, [marked, input]);

  // A loaded view's pins replace the current ones and apply at once.
  const firstPins = useRef(true);
  useEffect(() => {
    const cy = cyRef.current;
    if (firstPins.current || !cy) {
      firstPins.current = false;
      return;
    }
    note(cy, '_pinned', new Map(pinned ?? []));
    applyPinned(cy);
    (cy as unknown as { __redrawBoxes: () => void }).__redrawBoxes();
  }, [pinned]);

  useEffect(() => {
    const cy = cyRef.current;
    if (!cy || cy.scratch('_theme') === theme) return;
    setMode(cy, cy.scratch('_mode'), theme);
    (cy as unknown as { __redrawBoxes: () => void }).__redrawBoxes();
  }, [theme]);

  useEffect(() => {
    const cy = cyRef.current;
    if (!cy) return;
    cy.$(':selected').unselect();
    if (selected) cy.getElementById(selected.id).select();
    note(cy, '_selectedBox', selected?.id);
    (cy as unknown as { __redrawBoxes: () => void }).__redrawBoxes();
  }, [selected, input]);

  return (
    <>
      <canvas ref={layer} class="graph-canvas group-layer" aria-hidden="true" />
      <div
        ref={box}
        class="graph-canvas"
        data-testid="graph-canvas"
        tabIndex={0}
        role="group"
        aria-label="Topology graph. Arrow keys move between nodes (left to right, top to bottom), Escape clears the selection, + and − zoom, 0 fits."
        onKeyDown={(e) => {
          const cy = cyRef.current;
          const sel = selectedRef.current;
          if (e.key === 'Enter' && sel?.id.startsWith('group:') && onToggleRef.current) {
            onToggleRef.current(sel.id);
            e.preventDefault();
            return;
          }
          if (cy && keyNav(cyKeys(cy), e, sel, (s) => onSelectRef.current(s))) e.preventDefault();
        }}
      />
    </>
  );
}

/** cyKeys is cytoscape's view as keyNav uses it. */
function cyKeys(cy: Core): KeyView {
  const middle = () => ({ x: cy.width() / 2, y: cy.height() / 2 });
  return {
    width: () => cy.width(),
    height: () => cy.height(),
    zoomBy: (f) => cy.zoom({ level: cy.zoom() * f, renderedPosition: middle() }),
    fit: () => cy.fit(undefined, 40),
    nodes: () => (cy.nodes().filter((n) => !n.isParent()).toArray() as cytoscape.NodeSingular[]).map((n) => ({ id: n.id(), ...n.position() })),
    rendered: (id) => cy.getElementById(id).renderedPosition(),
    center: (id) => cy.center(cy.getElementById(id)),
  };
}

/**
 * setMode sets the stylesheet when the mode (a graph crossing LARGE_GRAPH
 * nodes) or the theme changes; never on zoom (see graphstyle.ts).
 */
function setMode(cy: Core, mode: StyleMode, theme: Theme = cy.scratch('_theme') ?? 'light') {
  if (cy.scratch('_mode') === mode && cy.scratch('_theme') === theme) return;
  note(cy, '_mode', mode);
  note(cy, '_theme', theme);
  cy.style(graphStyle(mode, theme));
}

/** The parts of cytoscape's 2D canvas renderer snapshotOnViewport uses (cytoscape 3.34). */
interface CanvasRenderer {
  render(opts?: { forcedContext?: unknown }): void;
  textureOnViewport: boolean;
  textureCache?: unknown;
  pinching?: boolean;
  swipePanning?: boolean;
  hoverData: { dragging?: boolean };
  prevViewport?: { zoom: number; pan: { x: number; y: number } };
  canvasWidth: number;
  canvasHeight: number;
  NODE: number;
  TEXTURE_BUFFER: number;
  data: { wheelZooming?: boolean; canvases: HTMLCanvasElement[]; bufferCanvases: HTMLCanvasElement[]; bufferContexts: CanvasRenderingContext2D[] };
}

/**
 * snapshotOnViewport makes a large graph's pan and zoom by the user cheap.
 * With textureOnViewport, cytoscape draws a snapshot of the graph, moved and
 * scaled, while the user drags, pinches or wheels, instead of redrawing
 * every element per frame; but it makes that snapshot by drawing every node
 * again at twice the resolution, which at 5,000 nodes without a GPU took
 * longer than the gesture (2–19 s). The picture is already on screen: this
 * hands cytoscape a copy of its own node layer, as drawn at the last
 * viewport, as the snapshot (one image copy), in the shape its renderer
 * keeps it. If the renderer is not the one expected, nothing is changed.
 */
function snapshotOnViewport(cy: Core) {
  let r: CanvasRenderer;
  try {
    r = (cy as unknown as { renderer(): CanvasRenderer }).renderer();
    if (typeof r.render !== 'function' || !r.data?.canvases?.[r.NODE] || !r.data.bufferCanvases?.[r.TEXTURE_BUFFER] || !r.hoverData) return;
  } catch {
    return;
  }
  const render = r.render;
  r.render = function (opts) {
    const gesture = r.pinching || r.hoverData.dragging || r.swipePanning || r.data.wheelZooming;
    const vp = r.prevViewport;
    if (!opts?.forcedContext && gesture && r.textureOnViewport && !r.textureCache && vp) {
      const texture = r.data.bufferCanvases[r.TEXTURE_BUFFER];
      const ctx = r.data.bufferContexts[r.TEXTURE_BUFFER];
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, texture.width, texture.height);
      ctx.drawImage(r.data.canvases[r.NODE], 0, 0, texture.width, texture.height);
      r.textureCache = {
        texture,
        viewport: { zoom: vp.zoom, pan: { ...vp.pan }, width: r.canvasWidth, height: r.canvasHeight, mpan: { x: -vp.pan.x / vp.zoom, y: -vp.pan.y / vp.zoom } },
      };
    }
    return render.call(this, opts);
  };
}

/** drawBoxes paints the service boxes of a large graph under the nodes (boxes.ts). */
function drawBoxes(cy: Core, canvas: HTMLCanvasElement | null, boxes: GroupBox[] | null, selected?: string) {
  if (!canvas) return;
  const w = cy.width();
  const h = cy.height();
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const place = placeOfCy(cy);
  if (boxes) paintBoxes(ctx, place, boxes, selected, dpr);
  paintMarks(ctx, place, marksOf(cy), dpr);
}

/**
 * fitTo fits the viewport to known positions. cy.fit() would measure every
 * label of every element for the bounding box, which for thousands of
 * elements costs seconds.
 */
function fitTo(cy: Core, positions: Map<string, cytoscape.Position>, padding: number) {
  let x1 = Infinity, y1 = Infinity, x2 = -Infinity, y2 = -Infinity;
  for (const p of positions.values()) {
    x1 = Math.min(x1, p.x);
    y1 = Math.min(y1, p.y);
    x2 = Math.max(x2, p.x);
    y2 = Math.max(y2, p.y);
  }
  if (!Number.isFinite(x1)) return;
  const w = cy.width() || 800;
  const h = cy.height() || 600;
  const zoom = Math.max(cy.minZoom(), Math.min(1.5, (w - 2 * padding) / Math.max(1, x2 - x1 + 60), (h - 2 * padding) / Math.max(1, y2 - y1 + 60)));
  cy.viewport({ zoom, pan: { x: w / 2 - zoom * (x1 + x2) / 2, y: h / 2 - zoom * (y1 + y2) / 2 } });
}

/**
 * bringIntoView centres the viewport on nodes, zooming out only if they do
 * not fit at the current zoom (the overview keeps its zoom, and an unchanged
 * zoom lets cytoscape reuse its cached textures).
 */
function bringIntoView(cy: Core, nodes: cytoscape.NodeCollection) {
  let x1 = Infinity, y1 = Infinity, x2 = -Infinity, y2 = -Infinity;
  nodes.forEach((n) => {
    const p = n.position();
    x1 = Math.min(x1, p.x);
    y1 = Math.min(y1, p.y);
    x2 = Math.max(x2, p.x);
    y2 = Math.max(y2, p.y);
  });
  const w = cy.width() || 800;
  const h = cy.height() || 600;
  const fit = Math.min((w - 160) / Math.max(1, x2 - x1 + 60), (h - 160) / Math.max(1, y2 - y1 + 60));
  const zoom = Math.max(cy.minZoom(), Math.min(cy.zoom(), fit));
  cy.viewport({ zoom, pan: { x: w / 2 - (zoom * (x1 + x2)) / 2, y: h / 2 - (zoom * (y1 + y2)) / 2 } });
}

function save(cy: Core, key: string) {
  if (!key) return;
  const m = new Map<string, cytoscape.Position>();
  cy.nodes().forEach((n) => {
    if (!n.isParent()) m.set(n.id(), { ...n.position() });
  });
  savedPositions.set(key, m);
}
