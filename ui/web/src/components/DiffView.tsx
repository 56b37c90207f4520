// The diff mode of the topology page: the graph of the differences between
// two windows (GET /api/v1/graph/diff), coloured by what the backend's tests
// found significant, with a legend and a table of the changes. The windows
// are picked as four bounds or as the span before and after a change of the
// audit trail; both live in the URL, so a diff is shareable.

import cytoscape, { type Core, type ElementDefinition } from 'cytoscape';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ApiError, diffPath, fetchDiff, type DiffChange, type DiffEdge, type DiffWindows, type GraphDiff, type GraphView } from '../api';
import { fmtMs, fmtPct, fmtRps } from '../format';
import type { Theme } from '../graphstyle';
import { useResource } from '../resource';
import { setQuery } from '../router';
import { changeLabel, diffAround, useChanges } from './ChangeMarks';
import { Empty, ErrorBox, Segmented, Spinner } from './common';

const SPANS = ['5m', '10m', '30m', '1h'];
const BOUNDS = ['beforeStart', 'beforeEnd', 'afterStart', 'afterEnd'] as const;

/** windowsFromQuery reads the diff's windows from the page URL; null when it names none. */
export function windowsFromQuery(q: URLSearchParams): DiffWindows | null {
  const around = q.get('around');
  if (around) return { around, span: q.get('span') || '10m' };
  if (BOUNDS.every((b) => q.get(b))) {
    return { beforeStart: q.get('beforeStart')!, beforeEnd: q.get('beforeEnd')!, afterStart: q.get('afterStart')!, afterEnd: q.get('afterEnd')! };
  }
  return null;
}

/** defaultWindows are the last ten whole minutes against the ten before them. */
export function defaultWindows(now = Date.now()): Extract<DiffWindows, { beforeStart: string }> {
  const m = Math.floor(now / 60000) * 60000;
  const iso = (t: number) => new Date(t).toISOString().replace(/\.\d+Z$/, 'Z');
  return { beforeStart: iso(m - 20 * 60000), beforeEnd: iso(m - 10 * 60000), afterStart: iso(m - 10 * 60000), afterEnd: iso(m) };
}

/** Edge statuses in the order the table lists them: what needs attention first. */
export const STATUS_ORDER: DiffEdge['status'][] = ['worse', 'new', 'vanished', 'better', 'changed', 'inconclusive', 'unchanged'];

/** STATUS_STYLE is how each status is drawn: colour, and a line and mark that say it without colour. */
export const STATUS_STYLE: Record<DiffEdge['status'], { color: string; line: 'solid' | 'dashed' | 'dotted'; mark: string; label: string }> = {
  worse: { color: '#dc2626', line: 'solid', mark: '▲', label: 'worse (error rate or p99 up, significant)' },
  new: { color: '#2563eb', line: 'solid', mark: '+', label: 'new edge' },
  vanished: { color: '#94a3b8', line: 'dashed', mark: '−', label: 'vanished edge' },
  better: { color: '#16a34a', line: 'solid', mark: '▼', label: 'better (error rate or p99 down)' },
  changed: { color: '#d97706', line: 'dotted', mark: '~', label: 'request rate changed' },
  inconclusive: { color: '#cbd5e1', line: 'dotted', mark: '?', label: 'too few requests to test' },
  unchanged: { color: '#cbd5e1', line: 'solid', mark: '', label: 'no significant change' },
};

function pct(c: DiffChange | undefined): string {
  if (!c || !c.before) return '';
  return `${c.relative >= 0 ? '+' : ''}${Math.round(100 * c.relative)}%`;
}

/** edgeLabel is the short text drawn on an edge: its mark and what moved significantly. */
export function edgeLabel(e: DiffEdge): string {
  const s = STATUS_STYLE[e.status];
  const sig = (c: DiffChange | undefined) => c?.significance === 'significant';
  const parts: string[] = [];
  if (sig(e.errorRate)) parts.push(`err ${fmtPct(e.errorRate!.before)}→${fmtPct(e.errorRate!.after)}`);
  if (sig(e.p99Ms)) parts.push(`p99 ${fmtMs(e.p99Ms!.before)}→${fmtMs(e.p99Ms!.after)}`);
  if (sig(e.rps)) parts.push(`rps ${pct(e.rps)}`);
  if (e.status === 'new') parts.push(`new · ${fmtRps(e.after?.rps ?? 0)} rps`);
  if (e.status === 'vanished') parts.push('gone');
  return parts.length ? `${s.mark} ${parts.join(' · ')}` : s.mark;
}

function cssVar(name: string, fallback: string): string {
  if (typeof document === 'undefined') return fallback;
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

function diffElements(d: GraphDiff): ElementDefinition[] {
  const els: ElementDefinition[] = d.nodes.map((n) => ({
    data: { id: n.id, label: n.version && n.version !== 'unknown' && !n.id.endsWith(n.service) ? `${n.service} ${n.version}` : n.id.split('/').slice(-1)[0] || n.id },
    classes: `node-${n.status} worst-${n.worst}`,
  }));
  for (const e of d.edges) {
    els.push({ data: { id: `${e.source}->${e.target}`, source: e.source, target: e.target, label: edgeLabel(e) }, classes: e.status });
  }
  return els;
}

function diffStyle(): cytoscape.StylesheetJson {
  const text = cssVar('--text', '#1b2430');
  const panel = cssVar('--panel', '#ffffff');
  const muted = cssVar('--muted', '#667085');
  const style: cytoscape.StylesheetJson = [
    {
      selector: 'node',
      style: {
        shape: 'round-rectangle', width: 'label', height: 26, padding: '8px', label: 'data(label)', 'text-valign': 'center', 'font-size': 11,
        color: text, 'background-color': panel, 'border-width': 1.5, 'border-color': muted,
      },
    },
    { selector: 'node.node-new', style: { 'border-color': STATUS_STYLE.new.color, 'border-width': 3, 'border-style': 'double' } },
    { selector: 'node.node-vanished', style: { 'border-style': 'dashed', opacity: 0.6 } },
    { selector: 'node.worst-worse', style: { 'border-color': STATUS_STYLE.worse.color, 'border-width': 2.5 } },
    {
      selector: 'edge',
      style: {
        width: 2, 'curve-style': 'bezier', 'target-arrow-shape': 'triangle', label: 'data(label)', 'font-size': 10, color: text,
        'text-background-color': panel, 'text-background-opacity': 0.85, 'text-background-padding': '2px', 'text-rotation': 'autorotate',
      },
    },
    { selector: 'node:selected, edge:selected', style: { 'overlay-color': STATUS_STYLE.new.color, 'overlay-opacity': 0.15, 'overlay-padding': 4 } },
  ];
  for (const [status, s] of Object.entries(STATUS_STYLE)) {
    style.push({
      selector: `edge.${status}`,
      style: {
        'line-color': s.color, 'target-arrow-color': s.color, 'line-style': s.line,
        width: status === 'worse' ? 4 : status === 'unchanged' || status === 'inconclusive' ? 1.5 : 3,
        ...(status === 'vanished' ? { opacity: 0.7 } : {}),
      },
    });
  }
  return style;
}

/** DiffCanvas draws the diff graph; window.__diffCy is it, for the browser tests. */
function DiffCanvas({ diff, theme, selected, onSelect }: { diff: GraphDiff; theme: Theme; selected: string; onSelect: (id: string) => void }) {
  const box = useRef<HTMLDivElement>(null);
  const cyRef = useRef<Core | null>(null);
  const onSelectRef = useRef(onSelect);
  onSelectRef.current = onSelect;
  useEffect(() => {
    const cy = cytoscape({
      container: box.current,
      elements: diffElements(diff),
      style: diffStyle(),
      layout: { name: 'breadthfirst', directed: true, spacingFactor: 1.3, padding: 40 },
      minZoom: 0.1,
      maxZoom: 3,
      wheelSensitivity: 0.3,
    });
    cy.on('tap', 'edge', (ev) => onSelectRef.current(ev.target.id()));
    cy.on('tap', (ev) => {
      if (ev.target === cy) onSelectRef.current('');
    });
    cyRef.current = cy;
    (window as unknown as { __diffCy?: Core }).__diffCy = cy;
    return () => {
      cy.destroy();
      cyRef.current = null;
    };
  }, [diff, theme]);
  useEffect(() => {
    const cy = cyRef.current;
    if (!cy) return;
    cy.elements().unselect();
    if (selected) cy.getElementById(selected).select();
  }, [selected, diff]);
  return <div class="graph-canvas" ref={box} data-testid="diff-canvas" />;
}

function DiffLegend() {
  return (
    <div class="legend diff-legend" data-testid="diff-legend" title="Significance is the backend's: the canary judge's tests at the diff's alpha">
      {STATUS_ORDER.map((s) => (
        <span>
          <svg class="swatch" width="26" height="12" viewBox="0 0 26 12" aria-hidden="true">
            <line x1="1" y1="6" x2="25" y2="6" stroke={STATUS_STYLE[s].color} stroke-width={s === 'worse' ? 4 : 2.5} stroke-dasharray={STATUS_STYLE[s].line === 'dashed' ? '5 3' : STATUS_STYLE[s].line === 'dotted' ? '1.5 2.5' : undefined} />
          </svg>
          {STATUS_STYLE[s].mark && <b>{STATUS_STYLE[s].mark} </b>}
          {s}
        </span>
      ))}
    </div>
  );
}

function change(c: DiffChange | undefined, fmt: (v: number) => string) {
  if (!c) return null;
  const cls = c.significance === 'significant' ? `sig ${c.direction}` : c.significance;
  return (
    <span class={`diff-change ${cls}`} title={`${c.reason}\n${c.test}`}>
      {fmt(c.before)} → {fmt(c.after)}{' '}
      <small>
        {c.significance === 'significant' ? `${c.direction === 'up' ? '▲' : '▼'} p=${c.p.toPrecision(2)}` : c.significance === 'inconclusive' ? 'too few' : `n.s. p=${c.p.toPrecision(2)}`}
      </small>
    </span>
  );
}

function one(e: DiffEdge, side: 'before' | 'after', key: 'rps' | 'errorRate' | 'p99Ms', fmt: (v: number) => string) {
  const n = e[side];
  return n ? <span class="diff-change">{side === 'after' ? '→ ' : ''}{fmt(n[key])}{side === 'before' ? ' →' : ''}</span> : null;
}

/** DiffTable lists the edges that changed (all of them on request), worst first. */
function DiffTable({ diff, selected, onSelect }: { diff: GraphDiff; selected: string; onSelect: (id: string) => void }) {
  const [all, setAll] = useState(false);
  const rows = useMemo(
    () =>
      diff.edges
        .filter((e) => all || e.status !== 'unchanged')
        .sort((a, b) => STATUS_ORDER.indexOf(a.status) - STATUS_ORDER.indexOf(b.status) || a.source.localeCompare(b.source) || a.target.localeCompare(b.target)),
    [diff, all],
  );
  const unchanged = diff.counts.unchanged ?? 0;
  return (
    <div class="diff-table" data-testid="diff-table">
      <div class="diff-table-head">
        <b>Changes</b>
        <span class="muted">
          {STATUS_ORDER.filter((s) => diff.counts[s]).map((s) => `${diff.counts[s]} ${s}`).join(' · ') || 'no edges'}
        </span>
        {unchanged > 0 && (
          <label class="check">
            <input type="checkbox" checked={all} onChange={(e) => setAll((e.target as HTMLInputElement).checked)} /> show the {unchanged} unchanged
          </label>
        )}
      </div>
      {rows.length === 0 ? (
        <div class="muted diff-none">No edge changed significantly between the two windows (alpha {diff.alpha}).</div>
      ) : (
        <table class="table">
          <thead>
            <tr>
              <th>Edge</th>
              <th>Status</th>
              <th>Requests/s</th>
              <th>Error rate</th>
              <th>p99</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((e) => {
              const id = `${e.source}->${e.target}`;
              const both = e.status !== 'new' && e.status !== 'vanished';
              return (
                <tr
                  key={id}
                  data-edge={id}
                  data-status={e.status}
                  class={`${id === selected ? 'selected' : ''} status-${e.status}`}
                  tabIndex={0}
                  onClick={() => onSelect(id)}
                  onKeyDown={(ev) => {
                    if (ev.key === 'Enter') onSelect(id);
                  }}
                >
                  <td class="mono">
                    {e.source} → {e.target}
                  </td>
                  <td>
                    <span class={`diff-status ${e.status}`}>
                      {STATUS_STYLE[e.status].mark} {e.status}
                    </span>
                  </td>
                  <td>{both ? change(e.rps, fmtRps) : one(e, e.before ? 'before' : 'after', 'rps', fmtRps)}</td>
                  <td>{both ? change(e.errorRate, fmtPct) : one(e, e.before ? 'before' : 'after', 'errorRate', fmtPct)}</td>
                  <td>{both ? change(e.p99Ms, fmtMs) : one(e, e.before ? 'before' : 'after', 'p99Ms', fmtMs)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </div>
  );
}

/** toLocalInput turns an RFC 3339 time into a datetime-local value; fromLocalInput back. */
function toLocalInput(iso: string): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '';
  const d = new Date(t - new Date(t).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}
function fromLocalInput(v: string): string {
  const t = new Date(v).getTime();
  return Number.isNaN(t) ? v : new Date(t).toISOString().replace(/\.\d+Z$/, 'Z');
}

function DiffControls({ w }: { w: DiffWindows }) {
  const [mode, setMode] = useState<'windows' | 'around'>('around' in w ? 'around' : 'windows');
  const bounds = 'around' in w ? defaultWindows() : w;
  const [form, setForm] = useState(() => Object.fromEntries(BOUNDS.map((b) => [b, toLocalInput(bounds[b])])) as Record<(typeof BOUNDS)[number], string>);
  const changes = useChanges();
  const around = 'around' in w ? w.around : '';
  const span = 'around' in w ? w.span : '10m';
  const listed = (changes.data ?? []).some((e) => e.time === around);
  return (
    <div class="diff-controls" data-testid="diff-controls">
      <Segmented<'windows' | 'around'>
        label="Pick the windows"
        value={mode}
        onChange={setMode}
        options={[
          { value: 'windows', label: 'Two windows' },
          { value: 'around', label: 'Before/after a change' },
        ]}
      />
      {mode === 'windows' ? (
        <form
          class="diff-windows"
          onSubmit={(e) => {
            e.preventDefault();
            setQuery({ diff: '1', around: undefined, span: undefined, ...Object.fromEntries(BOUNDS.map((b) => [b, fromLocalInput(form[b])])) });
          }}
        >
          {(['before', 'after'] as const).map((side) => (
            <fieldset>
              <legend>{side}</legend>
              {(['Start', 'End'] as const).map((edge) => {
                const key = `${side}${edge}` as (typeof BOUNDS)[number];
                return (
                  <input
                    type="datetime-local"
                    aria-label={`${side} window ${edge.toLowerCase()}`}
                    data-testid={`diff-${key}`}
                    value={form[key]}
                    onInput={(e) => setForm({ ...form, [key]: (e.target as HTMLInputElement).value })}
                  />
                );
              })}
            </fieldset>
          ))}
          <button class="btn small primary" type="submit" data-testid="diff-compare">
            Compare
          </button>
        </form>
      ) : (
        <div class="diff-around">
          <select
            aria-label="The change to look around"
            data-testid="diff-change"
            value={listed ? around : ''}
            onChange={(e) => {
              const v = (e.target as HTMLSelectElement).value;
              if (v) diffAround(v, span);
            }}
          >
            <option value="">{changes.error ? `No audit trail: ${changes.error.message}` : changes.data?.length ? 'Pick a change of the last 24 h…' : changes.data ? 'No changes in the last 24 h' : 'Loading changes…'}</option>
            {(changes.data ?? []).map((e) => (
              <option value={e.time}>
                {new Date(e.time).toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' })} · {changeLabel(e)}
              </option>
            ))}
          </select>
          <input
            type="datetime-local"
            aria-label="or any time"
            value={around ? toLocalInput(around) : ''}
            onChange={(e) => {
              const v = (e.target as HTMLInputElement).value;
              if (v) diffAround(fromLocalInput(v), span);
            }}
          />
          <label class="field inline">
            <span>±</span>
            <select aria-label="Span before and after" value={span} onChange={(e) => around && diffAround(around, (e.target as HTMLSelectElement).value)}>
              {SPANS.map((s) => (
                <option value={s}>{s}</option>
              ))}
            </select>
          </label>
        </div>
      )}
      <div class="spacer" />
      <button class="btn small ghost" data-testid="diff-exit" onClick={() => setQuery({ diff: undefined, around: undefined, span: undefined, beforeStart: undefined, beforeEnd: undefined, afterStart: undefined, afterEnd: undefined })}>
        Back to the graph
      </button>
    </div>
  );
}

function fmtWindow(start: string, end: string): string {
  const f = (t: string) => new Date(t).toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  return `${f(start)} – ${f(end)}`;
}

export interface DiffViewProps {
  query: URLSearchParams;
  view: GraphView;
  namespace: string;
  theme: Theme;
}

/** DiffView is the topology page in diff mode. */
export function DiffView({ query, view, namespace, theme }: DiffViewProps) {
  const fromUrl = windowsFromQuery(query);
  // Without windows in the URL the default moves with the clock; pin it once.
  const [fallback] = useState(defaultWindows);
  const w = fromUrl ?? fallback;
  const key = diffPath(w, view, namespace || undefined);
  const r = useResource<GraphDiff>(key, (s) => fetchDiff(w, view, namespace || undefined, s), { refreshMs: 0 });
  const [selected, setSelected] = useState('');
  const d = r.data;
  const noData = r.error instanceof ApiError && r.error.status === 404 && /neither window has traffic/.test(r.error.message);
  const badParam = r.error instanceof ApiError && r.error.status === 400 ? (r.error.body as { parameter?: string } | undefined)?.parameter : undefined;
  return (
    <div class="diff-view" data-testid="diff-view">
      <DiffControls w={w} key={key} />
      <div class="graph-area">
        {d && d.nodes.length > 0 && <DiffCanvas diff={d} theme={theme} selected={selected} onSelect={setSelected} />}
        {!d && !r.error && (
          <div class="overlay-center">
            <Spinner label="Comparing the two windows…" />
          </div>
        )}
        {r.error && noData && (
          <div class="overlay-center" data-testid="diff-no-data">
            <Empty title="No traffic in either window" icon="⌁">
              {r.error.message}
            </Empty>
          </div>
        )}
        {r.error && !noData && (
          <div class="overlay-center" data-testid="diff-error">
            <ErrorBox error={badParam ? new Error(`${r.error.message} (parameter ${badParam})`) : r.error} retry={badParam ? undefined : r.refresh} />
          </div>
        )}
        {d && (d.notices?.length || d.partial || d.truncated) ? (
          <div class="overlay-top banners">
            {d.notices?.map((n) => (
              <div class="banner info" data-testid="diff-notice">
                {n}
              </div>
            ))}
            {(d.partial || d.truncated) && <div class="banner warn">A window was cut by the server's caps: some quiet edges are left out.</div>}
          </div>
        ) : null}
        {d && (
          <>
            <DiffLegend />
            <div class="graph-summary" data-testid="diff-windows">
              before <b>{fmtWindow(d.before.start, d.before.end)}</b> ({d.before.requests} requests) · after <b>{fmtWindow(d.after.start, d.after.end)}</b> ({d.after.requests} requests)
            </div>
          </>
        )}
      </div>
      {d && <DiffTable diff={d} selected={selected} onSelect={setSelected} />}
    </div>
  );
}
