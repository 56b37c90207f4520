import { useEffect, useRef } from 'preact/hooks';
import { useTheme } from '../theme';
import type uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

// uPlot loads with the first chart, not with the app: the topology shows no chart until something is selected.
let uPlotModule: Promise<typeof uPlot> | null = null;
const loadUPlot = () => (uPlotModule ??= import('uplot').then((m) => m.default));

export interface Series {
  label: string;
  color: string;
  /** unix seconds */
  t: number[];
  y: number[];
  dash?: boolean;
}

function clock(sec: number): string {
  const d = new Date(sec * 1000);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}

export const VERSION_COLORS = ['#2563eb', '#db2777', '#0d9488', '#9333ea', '#ea580c', '#4b5563', '#65a30d', '#0891b2'];

/** Chart draws time series (possibly on different timestamps) with uPlot. */
export function Chart({ title, series, fmt, height = 160 }: { title: string; series: Series[]; fmt: (v: number) => string; height?: number }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  const theme = useTheme();
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    let live = true;
    let ro: ResizeObserver | null = null;
    loadUPlot().then((uPlot) => {
      if (!live) return;
      const tables = series.map((s) => [s.t, s.y] as uPlot.AlignedData);
      const data = tables.length ? (tables.length === 1 ? tables[0] : uPlot.join(tables)) : ([[]] as unknown as uPlot.AlignedData);
      const width = el.clientWidth || 400;
      const css = getComputedStyle(document.documentElement);
      const axis = { text: css.getPropertyValue('--muted').trim() || '#6b7280', grid: css.getPropertyValue('--border').trim() || '#f0f1f3' };
      const opts: uPlot.Options = {
        width,
        height,
        legend: { show: true, live: false },
        cursor: { points: { size: 6 } },
        scales: { y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
        // Axis colours follow the theme (read when the chart is made).
        axes: [
          { stroke: axis.text, grid: { stroke: axis.grid }, ticks: { stroke: axis.grid }, font: '11px system-ui', size: 28, space: 60, values: (_u, vals) => vals.map((v) => clock(v)) },
          { stroke: axis.text, grid: { stroke: axis.grid }, ticks: { stroke: axis.grid }, font: '11px system-ui', size: 54, space: 22, values: (_u, vals) => vals.map((v) => fmt(v)) },
        ],
        series: [
          { label: 'time', value: (_u, v) => (v == null ? '—' : new Date(v * 1000).toLocaleTimeString()) },
          ...series.map((s) => ({
            label: s.label,
            stroke: s.color,
            width: 1.75,
            dash: s.dash ? [5, 4] : undefined,
            spanGaps: true,
            points: { show: false },
            value: (_u: uPlot, v: number | null) => (v == null ? '—' : fmt(v)),
          })),
        ],
      };
      plot.current?.destroy();
      plot.current = new uPlot(opts, data, el);
      ro = new ResizeObserver(() => {
        if (plot.current && el.clientWidth) plot.current.setSize({ width: el.clientWidth, height });
    });
    ro.observe(el);
    });
    return () => {
      live = false;
      ro?.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [series, height, theme]);

  const empty = !series.length || series.every((s) => s.t.length === 0);
  return (
    <div class="chart">
      <div class="chart-title">{title}</div>
      {empty ? <div class="chart-empty">No samples in this range</div> : <div ref={box} class="chart-body" />}
    </div>
  );
}
