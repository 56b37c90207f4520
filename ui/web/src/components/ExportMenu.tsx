import { useRef, useState } from 'preact/hooks';
import type { Graph, GraphView } from '../api';
import { download, exportName, toDOT, toSVG } from '../exporting';
import { toast } from '../toast';
import type { GraphHandle } from './GraphCanvas';

export interface ExportMenuProps {
  /** the API's answer, as it came */
  graph: Graph | undefined;
  view: GraphView;
  namespace: string;
  /** the graph view on screen (cytoscape's or the large-graph canvas), for PNG and SVG */
  picture: () => GraphHandle | null;
  /** the window's end when looking at history, else empty (live) */
  end: string;
}

/**
 * ExportMenu saves the current view as PNG or SVG (what is on screen), JSON
 * (the API's document) or Graphviz DOT, and gives the link that reproduces
 * the view: live, or pinned to this moment.
 */
export function ExportMenu({ graph, view, namespace, picture, end }: ExportMenuProps) {
  const ref = useRef<HTMLDetailsElement>(null);
  const [copied, setCopied] = useState('');
  const empty = !graph || graph.nodes.length === 0;
  const close = () => ref.current?.removeAttribute('open');
  const name = (ext: string) => exportName(view, namespace, end ? new Date(end) : new Date(), ext);
  const bg = () => getComputedStyle(document.documentElement).getPropertyValue('--canvas').trim() || '#ffffff';
  const run = (what: string, f: () => void | Promise<void>) => async () => {
    close();
    if (empty) {
      toast(`Nothing to export as ${what}: the graph has no nodes in this window.`, 'info');
      return;
    }
    try {
      await f();
    } catch (e) {
      toast(`Export as ${what} failed: ${String(e)}`, 'bad');
    }
  };
  const live = location.href;
  const pinned = (() => {
    const u = new URL(location.href);
    if (!u.searchParams.get('end')) u.searchParams.set('end', new Date().toISOString().replace(/\.\d+Z$/, 'Z'));
    return u.toString();
  })();
  const copy = async (url: string, which: string) => {
    try {
      await navigator.clipboard.writeText(url);
      setCopied(which);
      toast('Link copied.', 'ok');
    } catch {
      setCopied('');
      toast('The browser refused the clipboard: copy the link from the box.', 'info');
    }
  };
  return (
    <details
      class="menu"
      ref={ref}
      data-testid="export-menu"
      onToggle={(e) => {
        // Open towards the side with room: the toolbar wraps on narrow screens.
        const d = e.currentTarget as HTMLDetailsElement;
        d.classList.toggle('align-left', d.getBoundingClientRect().left < window.innerWidth / 2);
      }}
    >
      <summary class="btn small" aria-label="Export or share this view">
        Export ▾
      </summary>
      <div class="menu-body" role="menu">
        {empty && <div class="muted tiny menu-note">The graph is empty in this window: there is nothing to export.</div>}
        <button role="menuitem" data-testid="export-png" disabled={empty} onClick={run('PNG', async () => download(name('png'), await picture()!.png(bg())))}>
          PNG image <span class="muted">what is on screen</span>
        </button>
        <button role="menuitem" data-testid="export-svg" disabled={empty} onClick={run('SVG', () => download(name('svg'), toSVG(picture()!.scene(bg(), `meshlens ${view} graph`)), 'image/svg+xml'))}>
          SVG image <span class="muted">what is on screen</span>
        </button>
        <button role="menuitem" data-testid="export-json" disabled={empty} onClick={run('JSON', () => download(name('json'), JSON.stringify(graph, null, 2) + '\n', 'application/json'))}>
          JSON <span class="muted">the API's graph</span>
        </button>
        <button role="menuitem" data-testid="export-dot" disabled={empty} onClick={run('DOT', () => download(name('dot'), toDOT(graph!, view), 'text/vnd.graphviz'))}>
          Graphviz DOT
        </button>
        <div class="menu-sep" />
        <label class="field">
          <span>Link to this view{end ? '' : ' (live)'}</span>
          <span class="share">
            <input readonly value={live} data-testid="share-url" onFocus={(e) => (e.target as HTMLInputElement).select()} />
            <button class="btn small" onClick={() => copy(live, 'live')}>{copied === 'live' ? 'Copied' : 'Copy'}</button>
          </span>
        </label>
        {!end && (
          <label class="field">
            <span>Link to this moment (history)</span>
            <span class="share">
              <input readonly value={pinned} data-testid="share-url-pinned" onFocus={(e) => (e.target as HTMLInputElement).select()} />
              <button class="btn small" onClick={() => copy(pinned, 'pinned')}>{copied === 'pinned' ? 'Copied' : 'Copy'}</button>
            </span>
          </label>
        )}
      </div>
    </details>
  );
}
