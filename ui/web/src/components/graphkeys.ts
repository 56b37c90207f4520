// What both graph views (cytoscape's, GraphCanvas; our own, BigGraph) do
// the same way: the keyboard, and the mark of the first frame drawn.
import type { Selection } from './GraphCanvas';

/** KeyView is what keyNav needs of a graph view: its size, zoom and nodes. */
export interface KeyView {
  width(): number;
  height(): number;
  /** zoom by a factor about the middle of the view */
  zoomBy(factor: number): void;
  /** show the whole graph */
  fit(): void;
  /** the nodes that can be selected (no boxes), with their model positions */
  nodes(): { id: string; x: number; y: number }[];
  /** a node's position on screen */
  rendered(id: string): { x: number; y: number };
  /** move the view so that a node is in the middle */
  center(id: string): void;
}

/**
 * keyNav moves through the graph from the keyboard: arrows select the next or
 * previous node in reading order (left to right, then top to bottom) and
 * bring it into view; Escape clears; + and − zoom; 0 fits. It says whether
 * it used the key.
 */
export function keyNav(v: KeyView, e: KeyboardEvent, selected: Selection | null, select: (s: Selection | null) => void): boolean {
  switch (e.key) {
    case 'Escape':
      select(null);
      return true;
    case '+':
    case '=':
      v.zoomBy(1.25);
      return true;
    case '-':
      v.zoomBy(1 / 1.25);
      return true;
    case '0':
      v.fit();
      return true;
    case 'ArrowRight':
    case 'ArrowDown':
    case 'ArrowLeft':
    case 'ArrowUp': {
      const nodes = v.nodes();
      if (!nodes.length) return false;
      nodes.sort((a, b) => a.x - b.x || a.y - b.y);
      const i = selected ? nodes.findIndex((n) => n.id === selected.id) : -1;
      const forward = e.key === 'ArrowRight' || e.key === 'ArrowDown';
      const next = nodes[i < 0 ? (forward ? 0 : nodes.length - 1) : (i + (forward ? 1 : -1) + nodes.length) % nodes.length];
      select({ type: 'node', id: next.id });
      const p = v.rendered(next.id);
      if (p.x < 40 || p.y < 40 || p.x > v.width() - 40 || p.y > v.height() - 40) v.center(next.id);
      return true;
    }
  }
  return false;
}

/**
 * markRendered records when the graph was last drawn (performance.now()),
 * after the next frame; the timing script reads the first one, also as the
 * meshlens:first-render mark. then, if given, runs in a task of its own
 * after that frame.
 */
export function markRendered(then?: () => void) {
  requestAnimationFrame(() => {
    const w = window as unknown as { __meshlensFirstRender?: number; __meshlensLastRender?: number };
    w.__meshlensLastRender = performance.now();
    if (w.__meshlensFirstRender === undefined) {
      w.__meshlensFirstRender = w.__meshlensLastRender;
      performance.mark('meshlens:first-render');
    }
    if (then) setTimeout(then, 0);
  });
}

/**
 * offScreen says whether any of these rendered positions lies outside the
 * view or within 20 px of its edge: a search brings its matches into view
 * only then, since moving the view draws the whole graph again.
 */
export function offScreen(points: Iterable<{ x: number; y: number }>, width: number, height: number): boolean {
  for (const p of points) {
    if (p.x < 20 || p.y < 20 || p.x > width - 20 || p.y > height - 20) return true;
  }
  return false;
}
