import { DataFrame, FieldColorModeId, FieldType, applyFieldOverrides, createTheme, dateTime, getDisplayProcessor } from '@grafana/data';
import { LegendDisplayMode, TooltipDisplayMode } from '@grafana/schema';
import { PanelChrome, Table, ThemeContext, TimeSeries } from '@grafana/ui';
import React from 'react';
import { createRoot } from 'react-dom/client';

import seriesGolden from '../pkg/plugin/testdata/series_reviews_history.jsonc?raw';
import topologyGolden from '../pkg/plugin/testdata/topology_version_history.jsonc?raw';
import { goldenFrames } from './frames';

const theme = createTheme({ colors: { mode: 'dark' } });

function values(f: DataFrame, name: string): unknown[] {
  return f.fields.find((x) => x.name === name)?.values ?? [];
}

/**
 * The nodes and edges frames drawn as Grafana's Node Graph draws them (a circle per node with its
 * success/failed arc and two stats, arrows labelled with the edges' stats), by this page: Grafana's
 * Node Graph panel is part of Grafana, not of its npm packages.
 */
function NodeGraphSketch({ nodes, edges, width, height }: { nodes: DataFrame; edges: DataFrame; width: number; height: number }) {
  const ids = values(nodes, 'id') as string[];
  // Columns by depth from the callers, as a layered layout would put them.
  const src = values(edges, 'source') as string[];
  const dst = values(edges, 'target') as string[];
  const depth: Record<string, number> = {};
  ids.forEach((id) => (depth[id] = 0));
  for (let i = 0; i < ids.length; i++) {
    src.forEach((s, j) => (depth[dst[j]] = Math.max(depth[dst[j]], depth[s] + 1)));
  }
  const cols: Record<number, string[]> = {};
  ids.forEach((id) => (cols[depth[id]] ??= []).push(id));
  const ncol = Object.keys(cols).length;
  const pos: Record<string, { x: number; y: number }> = {};
  Object.entries(cols).forEach(([c, list]) =>
    list.forEach((id, k) => (pos[id] = { x: ((+c + 0.5) * width) / ncol, y: ((k + 0.5) * height) / list.length }))
  );
  const fmt = (f: DataFrame, name: string, i: number) => {
    const field = f.fields.find((x) => x.name === name)!;
    const d = getDisplayProcessor({ field, theme })(field.values[i]);
    return `${d.text}${d.suffix ?? ''}`;
  };
  const r = 40;
  return (
    <svg width={width} height={height} style={{ fontFamily: theme.typography.fontFamily }}>
      <defs>
        <marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto">
          <path d="M0,0 L10,5 L0,10 z" fill={theme.colors.text.secondary} />
        </marker>
      </defs>
      {src.map((s, i) => {
        const a = pos[s];
        const b = pos[dst[i]];
        const len = Math.hypot(b.x - a.x, b.y - a.y);
        const ux = (b.x - a.x) / len;
        const uy = (b.y - a.y) / len;
        const mx = (a.x + b.x) / 2;
        const my = (a.y + b.y) / 2;
        return (
          <g key={i}>
            <line x1={a.x + ux * r} y1={a.y + uy * r} x2={b.x - ux * r} y2={b.y - uy * r} stroke={theme.colors.text.secondary} strokeWidth={1.5} markerEnd="url(#arrow)" />
            <text x={mx} y={my - 6} fill={theme.colors.text.primary} fontSize={12} textAnchor="middle">
              {fmt(edges, 'mainstat', i)} · p99 {fmt(edges, 'secondarystat', i)}
            </text>
          </g>
        );
      })}
      {ids.map((id, i) => {
        const p = pos[id];
        const failed = values(nodes, 'arc__failed')[i] as number;
        const ok = values(nodes, 'arc__success')[i] as number;
        const circ = 2 * Math.PI * r;
        return (
          <g key={id}>
            <circle cx={p.x} cy={p.y} r={r} fill={theme.colors.background.primary} stroke={theme.colors.border.medium} strokeWidth={5} />
            {ok + failed > 0 && (
              <>
                <circle cx={p.x} cy={p.y} r={r} fill="none" stroke={theme.visualization.getColorByName('green')} strokeWidth={5} strokeDasharray={`${ok * circ} ${circ}`} transform={`rotate(-90 ${p.x} ${p.y})`} />
                <circle cx={p.x} cy={p.y} r={r} fill="none" stroke={theme.visualization.getColorByName('red')} strokeWidth={5} strokeDasharray={`${failed * circ} ${circ}`} strokeDashoffset={-ok * circ} transform={`rotate(-90 ${p.x} ${p.y})`} />
              </>
            )}
            <text x={p.x} y={p.y - 3} fill={theme.colors.text.primary} fontSize={12} textAnchor="middle">{fmt(nodes, 'mainstat', i)}</text>
            <text x={p.x} y={p.y + 13} fill={theme.colors.text.secondary} fontSize={11} textAnchor="middle">{fmt(nodes, 'secondarystat', i)}</text>
            <text x={p.x} y={p.y + r + 16} fill={theme.colors.text.primary} fontSize={13} textAnchor="middle">{values(nodes, 'title')[i] as string}</text>
            <text x={p.x} y={p.y + r + 31} fill={theme.colors.text.secondary} fontSize={12} textAnchor="middle">{values(nodes, 'subtitle')[i] as string}</text>
          </g>
        );
      })}
    </svg>
  );
}

function Page() {
  const [nodes, edges] = goldenFrames(topologyGolden);
  const series = goldenFrames(seriesGolden);
  const byMetric = (m: string) =>
    applyFieldOverrides({
      // Fixed colours per version (Grafana's palette assignment happens in its panel, not in these packages).
      data: series
        .filter((f) => f.name === m)
        .map((f) => ({
          ...f,
          fields: f.fields.map((x) =>
            x.type === FieldType.number
              ? { ...x, config: { ...x.config, color: { mode: FieldColorModeId.Fixed, fixedColor: x.labels?.version === 'v1' ? 'green' : 'orange' } } }
              : x
          ),
        })),
      fieldConfig: { defaults: { custom: { lineWidth: 2, fillOpacity: 10 } }, overrides: [] },
      replaceVariables: (s) => s,
      theme,
    });
  const times = series[0].fields.find((f) => f.type === FieldType.time)!.values as number[];
  const timeRange = { from: dateTime(times[0]), to: dateTime(times[times.length - 1]), raw: { from: '', to: '' } };
  const table = applyFieldOverrides({ data: [edges], fieldConfig: { defaults: {}, overrides: [] }, replaceVariables: (s) => s, theme })[0];
  const legend = { displayMode: LegendDisplayMode.List, placement: 'bottom' as const, showLegend: true, calcs: [] };
  const w = 1180;
  return (
    <ThemeContext.Provider value={theme}>
      <div style={{ padding: 16, display: 'flex', flexDirection: 'column', gap: 12, width: w, color: theme.colors.text.primary, fontFamily: theme.typography.fontFamily }}>
        <div style={{ fontSize: 13, color: theme.colors.warning.text }}>
          Not Grafana: a static page drawing the meshlens datasource plugin&apos;s frames (the golden files of its end-to-end test, 100
          requests of frontend → reviews v1/v2 → ratings) with @grafana/ui; the node graph is drawn by this page, Grafana&apos;s Node Graph panel is
          not in its npm packages.
        </div>
        <PanelChrome title="Topology of shop by version — nodes and edges frames" width={w} height={380}>
          {(iw, ih) => <NodeGraphSketch nodes={nodes} edges={edges} width={iw} height={ih} />}
        </PanelChrome>
        <div style={{ display: 'flex', gap: 12 }}>
          {[
            ['rps', 'reviews: requests/s by version'],
            ['errorRate', 'reviews: error rate by version'],
            ['p99', 'reviews: p99 by version'],
          ].map(([m, title]) => (
            <PanelChrome key={m} title={title} width={(w - 24) / 3} height={220}>
              {(iw, ih) => (
                <TimeSeries
                  frames={byMetric(m)}
                  width={iw}
                  height={ih}
                  timeRange={timeRange}
                  timeZone="utc"
                  legend={legend}
                  options={{ tooltip: { mode: TooltipDisplayMode.Multi } }}
                />
              )}
            </PanelChrome>
          ))}
        </div>
        <PanelChrome title="Edges frame as a table" width={w} height={240}>
          {(iw, ih) => <Table data={table} width={iw} height={ih} />}
        </PanelChrome>
      </div>
    </ThemeContext.Provider>
  );
}

createRoot(document.getElementById('root')!).render(<Page />);
