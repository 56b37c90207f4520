import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { fetchGraph, fetchImpact, fetchPath, graphPath, type Graph, type GraphQuery, type GraphSource, type GraphView, type Impact, type SavedView } from '../api';
import { Empty, ErrorBox, Segmented, Spinner, Updated } from '../components/common';
import { DetailPanel } from '../components/DetailPanel';
import type { GraphCanvasProps, GraphHandle, Selection } from '../components/GraphCanvas';
import { ChangeMarks } from '../components/ChangeMarks';
import type { DiffViewProps } from '../components/DiffView';
import { ViewsMenu } from '../components/ViewsMenu';
import { fmtDuration, fmtPct, fmtRps, HEALTH_COLOR, HEALTH_THRESHOLDS, parseWindow, type Health } from '../format';
import { filterNamespace, goneNodes, GROUP_KEYS, groupValue, impactHighlight, labelKeysOf, namespacesOf, pathHighlight, searchMatches, toElements } from '../graph';
import { ImpactPanel } from '../components/ImpactPanel';
import { ExportMenu } from '../components/ExportMenu';
import { useTheme } from '../theme';
import { LARGE_GRAPH } from '../graphstyle';
import { lazy } from '../lazy';
import { useResource } from '../resource';
import { setQuery } from '../router';

// The graph's code loads in its own chunk, started as soon as this module
// runs, so it downloads and compiles while the graph is fetched; cytoscape,
// most of the UI's code, loads only for a graph small enough for it
// (GraphCanvas.tsx, CyGraph.tsx).
const GraphCanvas = lazy<GraphCanvasProps>(
  () => import('../components/GraphCanvas').then((m) => m.GraphCanvas),
  () => (
    <div class="overlay-center">
      <Spinner label="Loading the graph…" />
    </div>
  ),
);
if (typeof window !== 'undefined') void GraphCanvas.preload().catch(() => {});
const DiffView = lazy<DiffViewProps>(
  () => import('../components/DiffView').then((m) => m.DiffView),
  () => (
    <div class="overlay-center">
      <Spinner label="Loading the diff…" />
    </div>
  ),
);

const WINDOWS = ['1m', '5m', '15m', '1h'];
/** Graphs of more nodes than this refresh every SLOW_REFRESH_MS instead of every 5 s. */
export const SLOW_REFRESH_NODES = 1000;
const SLOW_REFRESH_MS = 30000;
const HISTORY_MINUTES = 24 * 60;

export function TopologyPage({ query }: { query: URLSearchParams }) {
  const view = (query.get('view') as GraphView) || 'version';
  const ns = query.get('namespace') ?? '';
  const search = query.get('q') ?? '';
  const window = query.get('window') ?? '5m';
  const end = query.get('end') ?? '';
  const source = (query.get('source') as GraphSource) || 'live';
  const diffMode = query.get('diff') === '1';
  const labels = query.get('labels') !== 'off';
  const impactOn = query.get('impact') === '1';
  const pathTo = query.get('to') ?? '';
  const boxes = query.get('boxes') !== 'off';
  const groupBy = query.get('group') ?? '';
  const collapsedParam = query.get('collapsed') ?? '';
  const collapsed = useMemo(() => new Set(collapsedParam ? collapsedParam.split(',') : []), [collapsedParam]);
  // A loaded view's pinned positions, and what it referred to, to say which nodes are gone.
  const [pinned, setPinned] = useState<Map<string, { x: number; y: number }> | undefined>(undefined);
  const [loadedView, setLoadedView] = useState<{ name: string; ids: string[]; key: string; at: number } | null>(null);
  const [selection, setSelection] = useState<Selection | null>(() => {
    const sel = query.get('sel');
    return sel ? { type: sel.includes('->') ? 'edge' : 'node', id: sel } : null;
  });
  const [searchText, setSearchText] = useState(search);
  const viewRef = useRef<GraphHandle | null>(null);
  const theme = useTheme();

  // History lives in ClickHouse; the live graph only knows the recent window.
  const q: GraphQuery = { window, view, namespace: ns || undefined, end: end || undefined, source: end && source === 'live' ? 'clickhouse' : source };
  // A graph of thousands of nodes refreshes every 30 s, not 5: each refresh
  // restyles every element whose numbers moved, which keeps the page busy.
  const bigGraph = useRef(false);
  const r = useResource<Graph>(diffMode ? null : graphPath(q), (s) => fetchGraph(q, s), { refreshMs: end ? 0 : bigGraph.current ? SLOW_REFRESH_MS : 5000 });
  bigGraph.current = (r.data?.nodes.length ?? 0) > SLOW_REFRESH_NODES;

  const seenNamespaces = useRef(new Set<string>());
  const graph = useMemo(() => (r.data ? filterNamespace(r.data, ns) : undefined), [r.data, ns]);
  if (r.data) for (const n of namespacesOf(r.data)) seenNamespaces.current.add(n);
  const large = (graph?.nodes.length ?? 0) > LARGE_GRAPH;

  // Blast radius and paths of the selected node, from the API, for the same graph query.
  const selNode = selection?.type === 'node' && !selection.id.startsWith('group:') ? selection.id : '';
  const impact = useResource<Impact>(impactOn && selNode ? `impact ${selNode} ${graphPath(q)}` : null, (s) => fetchImpact(selNode, q, s), { refreshMs: end ? 0 : 10000 });
  const path = useResource<string[]>(pathTo && selNode ? `path ${selNode} ${pathTo} ${graphPath(q)}` : null, (s) => fetchPath(selNode, pathTo, q, s), { refreshMs: end ? 0 : 10000 });
  const highlight = useMemo(() => {
    if (!graph || !selNode) return undefined;
    if (pathTo && path.data) return pathHighlight(path.data.length ? path.data : [selNode, pathTo]);
    if (impactOn && impact.data && impact.data.node === selNode) return impactHighlight(graph, impact.data);
    return undefined;
  }, [graph, selNode, pathTo, path.data, impactOn, impact.data]);

  // A large graph's search is not part of its elements: the canvas marks
  // the matches itself (and brings them into view) without fading the rest,
  // so a search neither rebuilds nor compares 25,000 elements.
  const elementsSearch = large ? '' : search;
  const elements = useMemo(() => {
    if (!graph) return { nodes: [], edges: [] };
    performance.mark('meshlens:graph-received');
    return toElements(graph, { view, search: elementsSearch, edgeLabels: labels, groups: boxes, highlight, groupBy, collapsed });
  }, [graph, view, elementsSearch, labels, boxes, highlight, groupBy, collapsed]);
  const marked = useMemo(() => (graph && large ? searchMatches(graph, search, groupBy, collapsed) : undefined), [graph, large, search, groupBy, collapsed]);

  const labelKeys = useMemo(() => (r.data ? labelKeysOf(r.data) : []), [r.data]);
  /** the group values on screen, for collapse all */
  const groupValues = useMemo(() => {
    if (!graph || !groupBy) return [];
    return [...new Set(graph.nodes.map((n) => groupValue(graph, n, groupBy)).filter(Boolean))].sort();
  }, [graph, groupBy]);
  const setCollapsed = (values: Set<string>) => setQuery({ collapsed: [...values].sort().join(',') || undefined });
  const toggleGroup = (id: string) => {
    const prefix = `group:${groupBy}=`;
    if (!groupBy || !id.startsWith(prefix)) return;
    const v = id.slice(prefix.length);
    const next = new Set(collapsed);
    if (!next.delete(v)) next.add(v);
    setCollapsed(next);
  };

  // The nodes a loaded view refers to that this graph no longer has: the
  // first graph fetched for the view's query after loading it says.
  const gone = useMemo(() => {
    if (!loadedView || !r.data || graphPath(q) !== loadedView.key || r.updatedAt < loadedView.at) return null;
    return goneNodes(r.data, loadedView.ids, groupBy);
  }, [loadedView, r.data, r.updatedAt, groupBy]);

  const currentView = (): Omit<SavedView, 'name'> => {
    const pins = viewRef.current?.pinned() ?? {};
    return {
      graph: view,
      namespace: ns || undefined,
      window,
      end: end || undefined,
      source: source === 'live' ? undefined : source,
      filters: { search: search || undefined, edgeLabels: labels ? undefined : false },
      groupBy: groupBy || undefined,
      collapsed: groupBy && collapsed.size ? [...collapsed].sort() : undefined,
      pinned: Object.keys(pins).length ? pins : undefined,
      selected: selection?.id || undefined,
    };
  };
  const loadView = (v: SavedView) => {
    const params: Record<string, string | undefined> = {
      view: v.graph === 'version' ? undefined : v.graph,
      namespace: v.namespace,
      window: v.window === '5m' ? undefined : v.window,
      end: v.end,
      source: v.source === 'live' ? undefined : v.source,
      q: v.filters?.search,
      labels: v.filters?.edgeLabels === false ? 'off' : undefined,
      group: v.groupBy,
      collapsed: v.collapsed?.join(','),
      sel: v.selected,
      impact: undefined,
      to: undefined,
    };
    const nq: GraphQuery = { window: v.window, view: v.graph as GraphView, namespace: v.namespace || undefined, end: v.end || undefined, source: v.end && (v.source ?? 'live') === 'live' ? 'clickhouse' : ((v.source as GraphSource) ?? 'live') };
    setSearchText(v.filters?.search ?? '');
    setSelection(v.selected ? { type: v.selected.includes('->') ? 'edge' : 'node', id: v.selected } : null);
    setPinned(new Map(Object.entries(v.pinned ?? {})));
    setLoadedView({ name: v.name, ids: [...Object.keys(v.pinned ?? {}), ...(v.selected ? [v.selected] : [])], key: graphPath(nq), at: Date.now() });
    setQuery(params);
  };

  const totals = useMemo(() => {
    if (!graph) return null;
    const targets = new Set(graph.edges.map((e) => e.target));
    // Traffic entering the mesh: edges from nodes nobody calls.
    const entry = graph.edges.filter((e) => !targets.has(e.source));
    return { nodes: graph.nodes.length, edges: graph.edges.length, rps: entry.reduce((s, e) => s + e.rps, 0) };
  }, [graph]);

  const select = (s: Selection | null) => {
    setSelection(s);
    // Impact follows the selection; a path starts from it, so a new start ends it.
    setQuery({ sel: s?.id, to: undefined, ...(s ? {} : { impact: undefined }) });
  };

  // Escape closes the details from anywhere on the page but a form field or a dialog.
  const selectRef = useRef(select);
  selectRef.current = select;
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement | null;
      if (e.key !== 'Escape' || e.defaultPrevented || t?.closest('input, select, textarea, [role=dialog], details[open]')) return;
      selectRef.current(null);
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, []);

  return (
    <div class="topology">
      <div class="toolbar">
        <Segmented<GraphView>
          label="Graph view"
          value={view}
          onChange={(v) => setQuery({ view: v === 'version' ? undefined : v })}
          options={[
            { value: 'service', label: 'Services' },
            { value: 'version', label: 'Versions' },
            { value: 'workload', label: 'Workloads' },
          ]}
        />
        <label class="field inline">
          <select aria-label="Namespace" value={ns} onChange={(e) => setQuery({ namespace: (e.target as HTMLSelectElement).value })} data-testid="namespace">
            <option value="">All namespaces</option>
            {[...seenNamespaces.current].sort().map((n) => (
              <option value={n}>{n}</option>
            ))}
          </select>
        </label>
        <form
          class="search"
          onSubmit={(e) => {
            e.preventDefault();
            setQuery({ q: searchText });
          }}
        >
          <input
            type="search"
            placeholder="Find service, version…"
            value={searchText}
            onInput={(e) => {
              const v = (e.target as HTMLInputElement).value;
              setSearchText(v);
              if (!large) setQuery({ q: v });
            }}
            aria-label="Search the graph"
            data-testid="search"
          />
        </form>
        <label class="field inline">
          <span>Window</span>
          <select value={window} onChange={(e) => setQuery({ window: (e.target as HTMLSelectElement).value })}>
            {WINDOWS.map((w) => (
              <option value={w}>{w}</option>
            ))}
          </select>
        </label>
        <label class="field inline" title="Where the graph comes from">
          <select value={source} onChange={(e) => setQuery({ source: (e.target as HTMLSelectElement).value === 'live' ? undefined : (e.target as HTMLSelectElement).value })}>
            <option value="live">Live graph</option>
            <option value="clickhouse">ClickHouse history</option>
            <option value="prometheus">Prometheus</option>
          </select>
        </label>
        <label class="check">
          <input type="checkbox" checked={labels} onChange={(e) => setQuery({ labels: (e.target as HTMLInputElement).checked ? undefined : 'off' })} /> Edge labels
        </label>
        <label class="check" title="Put the versions or workloads of a service in one box">
          <input type="checkbox" checked={boxes} disabled={view === 'service'} onChange={(e) => setQuery({ boxes: (e.target as HTMLInputElement).checked ? undefined : 'off' })} data-testid="boxes" /> Boxes
        </label>
        <label class="field inline" title="Put nodes in a box per value of a label; double-click a box (or select it and press Enter) to collapse or expand it">
          <span>Group by</span>
          <select
            aria-label="Group by"
            value={groupBy}
            data-testid="group-by"
            onChange={(e) => setQuery({ group: (e.target as HTMLSelectElement).value || undefined, collapsed: undefined })}
          >
            <option value="">service (boxes)</option>
            {GROUP_KEYS.map((k) => (
              <option value={k}>{k}</option>
            ))}
            {[...new Set([...labelKeys.map((k) => `label:${k}`), ...(groupBy.startsWith('label:') ? [groupBy] : [])])].sort().map((k) => (
              <option value={k}>label {k.slice('label:'.length)}</option>
            ))}
          </select>
        </label>
        {groupBy && groupValues.length > 0 && (
          <button
            class="btn small ghost"
            data-testid="collapse-all"
            onClick={() => setCollapsed(collapsed.size >= groupValues.length ? new Set() : new Set(groupValues))}
          >
            {collapsed.size >= groupValues.length ? 'Expand all' : 'Collapse all'}
          </button>
        )}
        <div class="spacer" />
        {!diffMode && <Updated at={r.updatedAt} loading={r.loading} error={r.error} />}
        <ViewsMenu current={currentView} loaded={loadedView?.name ?? ''} onLoad={loadView} />
        <ExportMenu graph={r.data} view={view} namespace={ns} picture={() => viewRef.current} end={end} />
        <button
          class={`btn small${diffMode ? ' on' : ''}`}
          aria-pressed={diffMode}
          title="Compare two windows, or the minutes before and after a config change or rollout step"
          data-testid="diff-toggle"
          onClick={() => setQuery({ diff: diffMode ? undefined : '1' })}
        >
          Compare
        </button>
      </div>

      {diffMode ? (
        <DiffView query={query} view={view} namespace={ns} theme={theme} />
      ) : (
      <div class="graph-area">
        {graph && graph.nodes.length > 0 && (
          <GraphCanvas
            elements={elements}
            layoutKey={`${view}|${ns}`}
            selected={selection}
            onSelect={select}
            onReady={(h) => (viewRef.current = h)}
            theme={theme}
            pinned={pinned}
            onToggleGroup={toggleGroup}
            renderer={rendererParam(query.get('renderer'))}
            marked={marked}
          />
        )}
        {!graph && !r.error && <div class="overlay-center"><Spinner label="Loading the graph…" /></div>}
        {!graph && r.error && (
          <div class="overlay-center">
            <ErrorBox error={r.error} retry={r.refresh} />
          </div>
        )}
        {graph && graph.nodes.length === 0 && (
          <div class="overlay-center">
            <Empty title={end ? 'No traffic at this time' : 'No traffic yet'} icon="⌁">
              {end
                ? 'Nothing was recorded in this window. Move the time scrubber or go back to live.'
                : 'meshlens has not seen requests in the last ' + fmtDuration(parseWindow(window)) + '. Send traffic through the mesh (e.g. `meshlens demo`), or widen the window.'}
            </Empty>
          </div>
        )}
        {graph && r.error && <div class="overlay-top"><ErrorBox error={r.error} retry={r.refresh} compact /></div>}
        {graph && !r.error && (r.data?.truncated || r.data?.partial || (r.data?.cycles?.length ?? 0) > 0 || (gone?.length ?? 0) > 0) && (
          <div class="overlay-top banners">
            {gone && gone.length > 0 && (
              <div class="banner info" data-testid="gone-nodes">
                The view <b>{loadedView!.name}</b> refers to {gone.length === 1 ? 'a node' : `${gone.length} nodes`} no longer in this graph:{' '}
                {gone.slice(0, 5).join(', ')}
                {gone.length > 5 && ` and ${gone.length - 5} more`}. The rest of the view is loaded.{' '}
                <button type="button" class="linkish" onClick={() => setLoadedView(null)}>
                  Dismiss
                </button>
              </div>
            )}
            {r.data?.truncated && <TooLarge graph={r.data} view={view} namespace={ns} />}
            {r.data?.partial && (
              <div class="banner warn" data-testid="partial">
                Partial data: the {r.data.source || 'source'} left traffic out of this window (row or series caps), so rates may be low and some edges missing.
              </div>
            )}
            {(r.data?.cycles?.length ?? 0) > 0 && <Cycles cycles={r.data!.cycles!} onSelect={(id) => select({ type: 'node', id })} />}
          </div>
        )}
        {graph && graph.nodes.length > 0 && (
          <>
            <div class="graph-controls">
              <button title="Zoom in" onClick={() => viewRef.current?.zoomBy(1.25)}>+</button>
              <button title="Zoom out" onClick={() => viewRef.current?.zoomBy(1 / 1.25)}>−</button>
              <button title="Fit to screen" onClick={() => viewRef.current?.fit()}>⤢</button>
            </div>
            <Legend />
            {totals && (
              <div class="graph-summary">
                <b>{totals.nodes}</b> nodes · <b>{totals.edges}</b> edges · <b>{fmtRps(totals.rps)}</b> rps in
              </div>
            )}
          </>
        )}
        {selection && graph && (
          <DetailPanel
            graph={graph}
            selection={selection}
            groupBy={groupBy}
            collapsed={collapsed}
            onSelect={select}
            onClose={() => select(null)}
            range={end ? '1h' : '15m'}
            nodeExtra={
              selNode && (
                <ImpactPanel
                  graph={graph}
                  node={selNode}
                  impactOn={impactOn}
                  impact={impact}
                  pathTo={pathTo}
                  path={path}
                  onImpact={(on) => setQuery({ impact: on ? '1' : undefined, to: undefined })}
                  onPathTo={(id) => setQuery({ to: id || undefined, impact: undefined })}
                  onSelect={select}
                />
              )
            }
          />
        )}
      </div>
      )}
      <Scrubber end={end} window={window} refreshS={bigGraph.current ? SLOW_REFRESH_MS / 1000 : 5} />
    </div>
  );
}

/** rendererParam reads ?renderer=webgl|canvas (anything else: the canvas picks by the graph's size). */
function rendererParam(v: string | null): 'webgl' | 'canvas' | undefined {
  return v === 'webgl' || v === 'canvas' ? v : undefined;
}

/**
 * TooLarge explains a graph cut by the server's caps (5,000 nodes, 20,000
 * edges) and offers the grouping that fits: the services view, or one
 * namespace (the busiest ones, by their nodes here).
 */
function TooLarge({ graph, view, namespace }: { graph: Graph; view: GraphView; namespace: string }) {
  const services = new Set(graph.nodes.map((n) => `${n.namespace}/${n.service}`)).size;
  const perNs = new Map<string, number>();
  for (const n of graph.nodes) if (n.namespace) perNs.set(n.namespace, (perNs.get(n.namespace) ?? 0) + 1);
  const busiest = [...perNs].sort((a, b) => b[1] - a[1]).slice(0, 3);
  return (
    <div class="banner warn" data-testid="truncated">
      This mesh is larger than the server's graph caps: the quietest nodes and edges are left out.{' '}
      {view !== 'service' && (
        <>
          <button type="button" class="linkish" onClick={() => setQuery({ view: 'service' })}>
            Group by service
          </button>{' '}
          ({services} services here){!namespace && busiest.length > 0 ? ' or ' : '.'}
        </>
      )}
      {!namespace && busiest.length > 0 && (
        <>
          show one namespace:{' '}
          {busiest.map(([n, c], i) => (
            <>
              {i > 0 && ', '}
              <button type="button" class="linkish" onClick={() => setQuery({ namespace: n })}>
                {n}
              </button>{' '}
              ({c} nodes)
            </>
          ))}
          .
        </>
      )}
      {perNs.size > 1 && (
        <>
          {' '}On screen,{' '}
          <button type="button" class="linkish" data-testid="collapse-namespaces" onClick={() => setQuery({ group: 'namespace', collapsed: [...perNs.keys()].sort().join(',') })}>
            collapse by namespace
          </button>{' '}
          ({perNs.size} boxes).
        </>
      )}
    </div>
  );
}

/** Cycles lists the dependency cycles the backend found; a click selects a node on one. */
function Cycles({ cycles, onSelect }: { cycles: string[][]; onSelect: (id: string) => void }) {
  const shown = cycles.slice(0, 3);
  return (
    <div class="banner info" data-testid="cycles">
      <b>{cycles.length === 1 ? '1 dependency cycle' : `${cycles.length} dependency cycles`}</b> (outlined in purple):{' '}
      {shown.map((c, i) => (
        <>
          {i > 0 && '; '}
          {c.map((id, j) => (
            <>
              {j > 0 && ' ⇄ '}
              <a onClick={() => onSelect(id)}>{id}</a>
            </>
          ))}
        </>
      ))}
      {cycles.length > shown.length && ` and ${cycles.length - shown.length} more`}
    </div>
  );
}

/** Swatch draws a health as the graph does: the node's border and the edge's line, in colour and pattern. */
function Swatch({ h }: { h: Health }) {
  const c = HEALTH_COLOR[h];
  const line = h === 'degraded' ? '1.5 2.5' : h === 'failing' ? '6 2' : undefined;
  return (
    <svg class="swatch" width="32" height="14" viewBox="0 0 32 14" aria-hidden="true">
      <rect x="1.5" y="1.5" width="12" height="11" rx="3" fill="none" stroke={c} stroke-width={h === 'failing' ? 1.3 : 2} stroke-dasharray={h === 'degraded' ? '3 2' : undefined} />
      {h === 'failing' && <rect x="4" y="4" width="7" height="6" rx="1.5" fill="none" stroke={c} stroke-width="1.3" />}
      <line x1="17" y1="7" x2="31" y2="7" stroke={c} stroke-width="2.2" stroke-dasharray={line} />
    </svg>
  );
}

function Legend() {
  const d = fmtPct(HEALTH_THRESHOLDS.degraded);
  const f = fmtPct(HEALTH_THRESHOLDS.failing);
  return (
    <div class="legend" title="Health is meshlens' (graph/build.go): from the error rate of a node's inbound requests, or of an edge">
      <span><Swatch h="healthy" />&lt; {d} errors</span>
      <span><Swatch h="degraded" />{d}–{f}</span>
      <span><Swatch h="failing" />≥ {f}</span>
      <span><Swatch h="idle" />idle</span>
      <span class="legend-sep">▢ version · △ service · ◇ unknown · ■→ mTLS</span>
    </div>
  );
}

/** Scrubber picks the end of the window: the right end is live, dragging left goes back up to 24 h. */
function Scrubber({ end, window, refreshS }: { end: string; window: string; refreshS: number }) {
  const endMs = end ? Date.parse(end) : 0;
  const minutesBack = endMs ? Math.max(0, Math.min(HISTORY_MINUTES, Math.round((Date.now() - endMs) / 60000))) : 0;
  const [drag, setDrag] = useState<number | null>(null);
  const shown = drag ?? minutesBack;
  const at = new Date(Date.now() - shown * 60000);
  const commit = (m: number) => {
    setDrag(null);
    setQuery({ end: m <= 0 ? undefined : new Date(Date.now() - m * 60000).toISOString().replace(/\.\d+Z$/, 'Z') });
  };
  return (
    <div class="scrubber">
      <button class={`btn small ${shown === 0 ? 'live on' : ''}`} onClick={() => commit(0)} data-testid="live">
        <span class="live-dot" /> Live
      </button>
      <button class="btn small ghost" title="Back one window" onClick={() => commit(Math.min(HISTORY_MINUTES, shown + Math.max(1, parseWindow(window) / 60)))}>
        ◀
      </button>
      <div class="scrub-track">
      <input
        type="range"
        min={0}
        max={HISTORY_MINUTES}
        step={1}
        value={HISTORY_MINUTES - shown}
        aria-label="Time"
        data-testid="scrubber"
        onInput={(e) => setDrag(HISTORY_MINUTES - Number((e.target as HTMLInputElement).value))}
        onChange={(e) => commit(HISTORY_MINUTES - Number((e.target as HTMLInputElement).value))}
      />
      <ChangeMarks minutes={HISTORY_MINUTES} />
      </div>
      <button class="btn small ghost" title="Forward one window" disabled={shown === 0} onClick={() => commit(Math.max(0, shown - Math.max(1, parseWindow(window) / 60)))}>
        ▶
      </button>
      <div class="scrub-label">
        {shown === 0 ? (
          <>Showing the last <b>{window}</b>, refreshing every {refreshS} s</>
        ) : (
          <>
            <b>{window}</b> ending <b>{at.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' })}</b> ({fmtDuration(shown * 60)} ago) · history
          </>
        )}
      </div>
    </div>
  );
}
