import { useMemo, useState } from 'preact/hooks';
import { fetchTrace, type Span, type Trace } from '../api';
import { fmtMs } from '../format';
import { useResource } from '../resource';
import { VERSION_COLORS } from './Chart';
import { Badge, ErrorBox, Spinner } from './common';

interface Row {
  span: Span;
  depth: number;
}

/** order lays spans out depth-first, children by start time; orphans become roots. */
export function orderSpans(spans: Span[]): Row[] {
  const ids = new Set(spans.map((s) => s.spanId));
  const kids = new Map<string, Span[]>();
  for (const s of spans) {
    const p = s.parentId && ids.has(s.parentId) ? s.parentId : '';
    kids.set(p, [...(kids.get(p) ?? []), s]);
  }
  const out: Row[] = [];
  const seen = new Set<string>();
  const walk = (p: string, depth: number) => {
    for (const s of (kids.get(p) ?? []).sort((a, b) => a.start - b.start)) {
      if (seen.has(s.spanId)) continue;
      seen.add(s.spanId);
      out.push({ span: s, depth });
      walk(s.spanId, depth + 1);
    }
  };
  walk('', 0);
  return out;
}

export function TraceView({ traceId, onClose }: { traceId: string; onClose: () => void }) {
  const r = useResource<Trace>(`trace:${traceId}`, (s) => fetchTrace(traceId, s));
  const [open, setOpen] = useState<string>('');
  const layout = useMemo(() => {
    if (!r.data?.spans.length) return null;
    const rows = orderSpans(r.data.spans);
    const t0 = Math.min(...r.data.spans.map((s) => s.start));
    const t1 = Math.max(...r.data.spans.map((s) => s.start + s.durationMs));
    const services = [...new Set(r.data.spans.map((s) => s.service))];
    return { rows, t0, total: Math.max(t1 - t0, 0.001), services };
  }, [r.data]);
  return (
    <div class="modal-backdrop" onClick={(e) => e.target === e.currentTarget && onClose()}>
      <div class="modal wide" role="dialog" aria-label="Trace" data-testid="trace">
        <div class="modal-head">
          <div>
            <div class="panel-kicker">Trace</div>
            <h2 class="mono">{traceId}</h2>
          </div>
          <button class="close" onClick={onClose} aria-label="Close">×</button>
        </div>
        {r.error && !r.data && <ErrorBox error={r.error} retry={r.refresh} />}
        {!r.data && !r.error && <Spinner label="Loading trace…" />}
        {r.data && !layout && <div class="muted">This trace has no spans (yet). Spans can arrive a few seconds after the request.</div>}
        {layout && (
          <div class="waterfall">
            <div class="wf-head">
              <span>{layout.rows.length} spans · {layout.services.length} services · {fmtMs(layout.total)}</span>
              <div class="wf-ticks">
                {[0, 0.25, 0.5, 0.75, 1].map((f) => (
                  <span style={{ left: `${f * 100}%` }}>{fmtMs(layout.total * f)}</span>
                ))}
              </div>
            </div>
            {layout.rows.map(({ span, depth }) => {
              const color = VERSION_COLORS[layout.services.indexOf(span.service) % VERSION_COLORS.length];
              const left = ((span.start - layout.t0) / layout.total) * 100;
              const width = Math.max((span.durationMs / layout.total) * 100, 0.3);
              return (
                <>
                  <div class={`wf-row${open === span.spanId ? ' open' : ''}`} onClick={() => setOpen(open === span.spanId ? '' : span.spanId)}>
                    <div class="wf-name" style={{ paddingLeft: `${depth * 14 + 6}px` }}>
                      <i style={{ background: color }} />
                      <b>{span.service}</b>
                      {span.version && <span class="muted"> {span.version}</span>} <span class="muted">{span.name}</span>
                      {span.error && <Badge kind="bad">error</Badge>}
                    </div>
                    <div class="wf-track">
                      <span class={`wf-bar${span.error ? ' err' : ''}`} style={{ left: `${left}%`, width: `${width}%`, background: span.error ? undefined : color }} />
                      {left + width > 88 ? (
                        <em class="inside" style={{ right: `calc(${100 - left - width}% + 4px)` }}>{fmtMs(span.durationMs)}</em>
                      ) : (
                        <em style={{ left: `calc(${left + width}% + 4px)` }}>{fmtMs(span.durationMs)}</em>
                      )}
                    </div>
                  </div>
                  {open === span.spanId && (
                    <div class="wf-attrs">
                      <table class="mini">
                        <tbody>
                          <tr><td>span id</td><td class="mono">{span.spanId}</td></tr>
                          <tr><td>start</td><td>+{fmtMs(span.start - layout.t0)}</td></tr>
                          {Object.entries(span.attributes).map(([k, v]) => (
                            <tr><td>{k}</td><td class="mono">{v}</td></tr>
                          ))}
                        </tbody>
                      </table>
                    </div>
                  )}
                </>
              );
            })}
          </div>
        )}
      </div>
    </div>
  );
}
