import type { Position } from 'cytoscape';
import type { Elements } from '../graph';
import { isBox } from '../graph';
import { LARGE_GRAPH, type Theme } from '../graphstyle';
import type { Scene } from '../exporting';
import { lazy } from '../lazy';
import { BigGraph } from './BigGraph';
import { Spinner } from './common';

export interface Selection {
  type: 'node' | 'edge';
  id: string;
}

export { LARGE_GRAPH };

export interface GraphCanvasProps {
  elements: Elements;
  /** changing it (a new view) lays out from scratch and fits */
  layoutKey: string;
  selected: Selection | null;
  onSelect: (s: Selection | null) => void;
  /** called once the view is made, with what the page reads from it (pins to save, exports) */
  onReady?: (h: GraphHandle) => void;
  theme?: Theme;
  /**
   * positions of pinned nodes (a saved view's): they stay where they are
   * through layouts and refreshes; a node the user drags is pinned too, and
   * pinnedPositions(cy) (graph.ts) gives them all, for saving
   */
  pinned?: Map<string, Position>;
  /** a double click (or Enter) on a group's box or collapsed node */
  onToggleGroup?: (id: string) => void;
  /**
   * how the graph is drawn: 'webgl' or 'canvas' (cytoscape's WebGL or 2D
   * canvas renderer, whatever the size); unset, graphs of more than
   * WEBGL_GRAPH nodes (boxes not counted) are drawn by BigGraph (our own 2D
   * canvas renderer: README, Large graphs), smaller ones by cytoscape's 2D
   * canvas. Read once, when the canvas is made.
   */
  renderer?: 'webgl' | 'canvas';
  /**
   * the ids of a large graph's search matches (graph.ts, searchMatches): the
   * canvas paints a halo under each (boxes.ts, paintMarks; cy.scratch
   * '_marked' holds them) and brings them into view if one is off screen,
   * restyling no element; unset, the elements' own classes carry the
   * search (small graphs, which fade the rest)
   */
  marked?: Set<string>;
}

/** Above this many nodes (boxes not counted), a graph is drawn by BigGraph, not cytoscape. */
export const WEBGL_GRAPH = 1000;

/** What the topology page reads from the graph view, whichever draws it. */
export interface GraphHandle {
  /** the nodes placed by a saved view or dragged by the user, where they are now */
  pinned(): Record<string, { x: number; y: number }>;
  /** the view as a PNG, as on screen */
  png(background: string): Promise<Blob>;
  /** what is on screen, for the SVG export */
  scene(background: string, text: string): Scene;
  /** zoom about the middle of the view */
  zoomBy(factor: number): void;
  /** show the whole graph */
  fit(): void;
}

// cytoscape (most of the UI's code) loads only when a graph it draws is
// shown, not for one BigGraph draws (CyGraph.tsx).
const CyGraph = lazy<GraphCanvasProps>(
  () => import('./CyGraph').then((m) => m.CyGraph),
  () => (
    <div class="overlay-center">
      <Spinner label="Loading the graph…" />
    </div>
  ),
);
/** preloadCyGraph starts loading cytoscape's view without drawing anything. */
export const preloadCyGraph = () => CyGraph.preload();

/**
 * GraphCanvas draws the topology: with cytoscape up to WEBGL_GRAPH nodes
 * (boxes not counted), with BigGraph above, where cytoscape took 10 s for a
 * 5,000-node graph's first frame without a GPU (README, Large graphs).
 */
export function GraphCanvas(props: GraphCanvasProps) {
  const big = !props.renderer && props.elements.nodes.reduce((k, n) => (isBox(n) ? k : k + 1), 0) > WEBGL_GRAPH;
  return big ? <BigGraph {...props} /> : <CyGraph {...props} />;
}
