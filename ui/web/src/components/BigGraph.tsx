// The topology of a graph of more than WEBGL_GRAPH nodes, drawn by our own
// 2D canvas renderer (bigcanvas.ts) instead of cytoscape; GraphCanvas picks
// it. It does what the cytoscape view does for users: pan (drag), zoom
// (wheel, + and −), select a node, edge or box by a click, move a node by
// dragging it (pinned), double-click a box or collapsed group to toggle it,
// a search's halo, group boxes, health colours and patterns, names when
// zoomed in, refreshes without relayout, the theme, and the exports.
import { useEffect, useRef } from 'preact/hooks';
import { flattenGroups, isBox } from '../graph';
import { layeredPositions } from '../layered';
import { BigCanvas } from './bigcanvas';
import type { GraphCanvasProps, GraphHandle, Selection } from './GraphCanvas';
import { keyNav, markRendered, offScreen, type KeyView } from './graphkeys';

/** Positions per layout key survive unmounts, so coming back to the page shows the same picture. */
const savedPositions = new Map<string, Map<string, { x: number; y: number }>>();

function save(v: BigCanvas, key: string) {
  if (!key || !v.nodes.size) return;
  savedPositions.set(key, new Map([...v.nodes.values()].map((n) => [n.id, { x: n.x, y: n.y }])));
}

/** bigHandle is the view as Topology and the exports use it. */
export function bigHandle(v: BigCanvas): GraphHandle {
  return {
    pinned: () => {
      const out: Record<string, { x: number; y: number }> = {};
      for (const [id, p0] of v.pinned) {
        const p = v.nodes.get(id) ?? p0;
        out[id] = { x: Math.round(p.x * 10) / 10, y: Math.round(p.y * 10) / 10 };
      }
      return out;
    },
    png: (bg) => v.png(bg),
    scene: (bg, text) => v.scene(bg, text),
    zoomBy: (f) => v.zoomBy(f),
    fit: () => v.fit(undefined, 40, Infinity),
  };
}

export function BigGraph({ elements: input, layoutKey, selected, onSelect, onReady, theme = 'light', pinned, onToggleGroup, marked }: GraphCanvasProps) {
  const box = useRef<HTMLDivElement>(null);
  const viewRef = useRef<BigCanvas | null>(null);
  const keyRef = useRef('');
  const selectedRef = useRef<Selection | null>(selected);
  selectedRef.current = selected;
  const onSelectRef = useRef(onSelect);
  onSelectRef.current = onSelect;
  const onToggleRef = useRef(onToggleGroup);
  onToggleRef.current = onToggleGroup;
  const shownMatches = useRef('');

  useEffect(() => {
    const v = new BigCanvas(box.current!, {
      select: (s) => onSelectRef.current(s),
      toggle: (id) => onToggleRef.current?.(id),
      dragged: () => save(v, keyRef.current),
    });
    v.theme = theme;
    v.pinned = new Map(pinned ?? []);
    viewRef.current = v;
    (window as unknown as { __big?: BigCanvas }).__big = v; // for e2e tests and the timing script
    onReady?.(bigHandle(v));
    return () => {
      save(v, keyRef.current);
      v.destroy();
      viewRef.current = null;
      const w = window as unknown as { __big?: BigCanvas };
      if (w.__big === v) delete w.__big;
    };
  }, []);

  useEffect(() => {
    const v = viewRef.current;
    if (!v) return;
    performance.mark('meshlens:update-start');
    const { elements, boxes } = flattenGroups(input);
    const newKey = keyRef.current !== layoutKey;
    if (newKey) {
      save(v, keyRef.current);
      keyRef.current = layoutKey;
    }
    const first = newKey || v.nodes.size === 0;
    // A new layout when the view changes or the set of nodes does; a refresh
    // that only moves numbers keeps every node where it is.
    const ids = elements.nodes.map((n) => String(n.data.id));
    const sameNodes = !newKey && ids.length === v.nodes.size && ids.every((id) => v.nodes.has(id));
    let positions: Map<string, { x: number; y: number }> | undefined;
    if (!sameNodes) {
      const saved = savedPositions.get(layoutKey);
      if (newKey && saved && ids.length > 0 && ids.every((id) => saved.has(id))) positions = saved;
      else
        positions = layeredPositions({
          nodes: input.nodes.filter((n) => !isBox(n)).map((n) => ({ id: String(n.data.id), parent: n.data.parent as string | undefined })),
          edges: elements.edges.map((e) => ({ source: String(e.data.source), target: String(e.data.target) })),
        });
    }
    v.setElements(elements, boxes, positions);
    performance.mark('meshlens:elements-added');
    if (first) v.fit(undefined, 40);
    performance.mark('meshlens:layout-done');
    v.draw();
    save(v, layoutKey);
    markRendered();
  }, [input, layoutKey]);

  // A search: its matches get a halo, and are brought into view if one is off screen.
  useEffect(() => {
    const v = viewRef.current;
    if (!v || !marked) return;
    const ids = [...marked].filter((id) => v.nodes.has(id));
    v.marked = ids;
    v.schedule();
    const key = [...ids].sort().join(' ');
    if (key === shownMatches.current) return;
    shownMatches.current = key;
    if (offScreen(ids.map((id) => v.rendered(v.nodes.get(id)!)), v.width(), v.height())) bringIntoView(v, ids);
  }, [marked, input]);

  // A loaded view's pins replace the current ones and apply at once.
  const firstPins = useRef(true);
  useEffect(() => {
    const v = viewRef.current;
    if (firstPins.current || !v) {
      firstPins.current = false;
      return;
    }
    v.pinned = new Map(pinned ?? []);
    v.moveNodes(v.pinned);
  }, [pinned]);

  useEffect(() => {
    const v = viewRef.current;
    if (!v || v.theme === theme) return;
    v.theme = theme;
    v.schedule();
  }, [theme]);

  useEffect(() => {
    const v = viewRef.current;
    if (!v) return;
    v.selected = selected?.id;
    v.schedule();
  }, [selected, input]);

  return (
    <div
      ref={box}
      class="graph-canvas"
      data-testid="graph-canvas"
      data-renderer="bigcanvas"
      tabIndex={0}
      role="group"
      aria-label="Topology graph. Arrow keys move between nodes (left to right, top to bottom), Escape clears the selection, + and − zoom, 0 fits."
      onKeyDown={(e) => {
        const v = viewRef.current;
        const sel = selectedRef.current;
        if (!v) return;
        if (e.key === 'Enter' && sel?.id.startsWith('group:') && onToggleRef.current) {
          onToggleRef.current(sel.id);
          e.preventDefault();
          return;
        }
        if (keyNav(bigKeys(v), e, sel, (s) => onSelectRef.current(s))) e.preventDefault();
      }}
    />
  );
}

/** bigKeys is BigGraph's view as keyNav uses it. */
function bigKeys(v: BigCanvas): KeyView {
  return {
    width: () => v.width(),
    height: () => v.height(),
    zoomBy: (f) => v.zoomBy(f),
    fit: () => v.fit(undefined, 40, Infinity),
    nodes: () => [...v.nodes.values()].map((n) => ({ id: n.id, x: n.x, y: n.y })),
    rendered: (id) => v.rendered(v.nodes.get(id)!),
    center: (id) => {
      const n = v.nodes.get(id)!;
      v.viewport({ pan: { x: v.width() / 2 - n.x * v.zoom(), y: v.height() / 2 - n.y * v.zoom() } });
    },
  };
}

/** bringIntoView centres the view on nodes, zooming out only if they do not fit at the current zoom. */
function bringIntoView(v: BigCanvas, ids: string[]) {
  let x1 = Infinity, y1 = Infinity, x2 = -Infinity, y2 = -Infinity;
  for (const id of ids) {
    const n = v.nodes.get(id)!;
    x1 = Math.min(x1, n.x);
    y1 = Math.min(y1, n.y);
    x2 = Math.max(x2, n.x);
    y2 = Math.max(y2, n.y);
  }
  const w = v.width() || 800;
  const h = v.height() || 600;
  const fit = Math.min((w - 160) / Math.max(1, x2 - x1 + 60), (h - 160) / Math.max(1, y2 - y1 + 60));
  const zoom = Math.max(0.05, Math.min(v.zoom(), fit));
  v.viewport({ zoom, pan: { x: w / 2 - (zoom * (x1 + x2)) / 2, y: h / 2 - (zoom * (y1 + y2)) / 2 } });
}
