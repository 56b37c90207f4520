import { useMemo, useState } from 'preact/hooks';
import { fetchLogs, fetchServices, fetchTraces, type LogPage, type LogRecord, type ServiceSummary, type TraceSummary } from '../api';
import { Badge, Empty, ErrorBox, PageHeader, Segmented, Spinner, Updated } from '../components/common';
import { TraceView } from '../components/TraceView';
import { VersionCharts } from '../components/VersionCharts';
import { fmtClock, fmtMs, fmtPct, fmtRps } from '../format';
import { useResource } from '../resource';
import { navigate, setQuery } from '../router';

export function ServicesPage() {
  const r = useResource<ServiceSummary[]>('services', (s) => fetchServices(s), { refreshMs: 10000 });
  const [filter, setFilter] = useState('');
  const rows = useMemo(() => (r.data ?? []).filter((s) => !filter || `${s.namespace}/${s.name}`.toLowerCase().includes(filter.toLowerCase())), [r.data, filter]);
  return (
    <div class="page">
      <PageHeader title="Services" sub="Every service meshlens has seen traffic for, with its versions.">
        <input type="search" placeholder="Filter services" value={filter} onInput={(e) => setFilter((e.target as HTMLInputElement).value)} />
        <Updated at={r.updatedAt} loading={r.loading} error={r.error} />
      </PageHeader>
      {r.error && !r.data && <ErrorBox error={r.error} retry={r.refresh} />}
      {!r.data && !r.error && <Spinner />}
      {r.data && rows.length === 0 && (
        <Empty title={filter ? 'No service matches' : 'No services yet'}>{filter ? 'Clear the filter to see all services.' : 'Services appear as soon as meshlens receives their telemetry.'}</Empty>
      )}
      {rows.length > 0 && (
        <div class="card flush">
          <table class="table">
            <thead>
              <tr>
                <th>Service</th>
                <th>Namespace</th>
                <th>Versions</th>
                <th class="num">Requests / s</th>
                <th class="num">Error rate</th>
                <th class="num">p99</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((s) => (
                <tr class="clickable" onClick={() => navigate(`/services/${s.namespace}/${s.name}`)}>
                  <td>
                    <i class={`hdot h-${s.health}`} />
                    <a href={`/services/${s.namespace}/${s.name}`}>{s.name}</a>
                  </td>
                  <td class="muted">{s.namespace}</td>
                  <td>
                    {s.versions.map((v) => (
                      <Badge kind="muted">{v}</Badge>
                    ))}
                  </td>
                  <td class="num">{fmtRps(s.rps)}</td>
                  <td class="num">{fmtPct(s.errorRate)}</td>
                  <td class="num">{fmtMs(s.p99Ms)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

const RANGES = ['15m', '1h', '6h', '24h'];

export function ServiceDetailPage({ ns, name, query }: { ns: string; name: string; query: URLSearchParams }) {
  const range = query.get('range') ?? '1h';
  const tab = (query.get('tab') as 'logs' | 'traces') ?? 'logs';
  const trace = query.get('trace') ?? '';
  return (
    <div class="page">
      <PageHeader
        title={
          <>
            <a class="crumb" href="/services">Services</a> / {name}
          </>
        }
        sub={`namespace ${ns}`}
      >
        <a class="btn" href={`/topology?q=${encodeURIComponent(name)}`}>Show in graph</a>
        <Segmented value={range} label="Range" onChange={(v) => setQuery({ range: v })} options={RANGES.map((r) => ({ value: r, label: r }))} />
      </PageHeader>
      <div class="card">
        <VersionCharts namespace={ns} service={name} range={range} latency="all" height={180} refreshMs={15000} />
      </div>
      <div class="tabs">
        <button class={tab === 'logs' ? 'on' : ''} onClick={() => setQuery({ tab: undefined })}>Access logs</button>
        <button class={tab === 'traces' ? 'on' : ''} onClick={() => setQuery({ tab: 'traces' })}>Traces</button>
      </div>
      {tab === 'logs' ? <Logs service={name} onTrace={(id) => setQuery({ trace: id })} /> : <Traces service={name} onTrace={(id) => setQuery({ trace: id })} />}
      {trace && <TraceView traceId={trace} onClose={() => setQuery({ trace: undefined })} />}
    </div>
  );
}

function Logs({ service, onTrace }: { service: string; onTrace: (id: string) => void }) {
  const [filters, setFilters] = useState({ version: '', code: '', path: '' });
  const [draft, setDraft] = useState(filters);
  const [older, setOlder] = useState<{ records: LogRecord[]; next: string; loading: boolean; error?: Error }>({ records: [], next: '', loading: false });
  const key = `logs:${service}:${JSON.stringify(filters)}`;
  const r = useResource<LogPage>(key, (s) => fetchLogs({ service, ...filters, limit: 50 }, s), { refreshMs: 10000 });
  const records = [...(r.data?.records ?? []), ...older.records];
  const next = older.records.length ? older.next : r.data?.next ?? '';
  const loadOlder = async () => {
    setOlder((o) => ({ ...o, loading: true, error: undefined }));
    try {
      const p = await fetchLogs({ service, ...filters, limit: 50, cursor: next });
      setOlder((o) => ({ records: [...o.records, ...p.records], next: p.next, loading: false }));
    } catch (e) {
      setOlder((o) => ({ ...o, loading: false, error: e as Error }));
    }
  };
  return (
    <div class="card flush">
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          setOlder({ records: [], next: '', loading: false });
          setFilters(draft);
        }}
      >
        <input placeholder="version" value={draft.version} onInput={(e) => setDraft({ ...draft, version: (e.target as HTMLInputElement).value })} />
        <input placeholder="code (e.g. 503)" value={draft.code} onInput={(e) => setDraft({ ...draft, code: (e.target as HTMLInputElement).value })} />
        <input placeholder="path" value={draft.path} onInput={(e) => setDraft({ ...draft, path: (e.target as HTMLInputElement).value })} />
        <button class="btn small" type="submit">Search</button>
        <div class="spacer" />
        <Updated at={r.updatedAt} loading={r.loading} error={r.error} />
      </form>
      {r.error && !r.data && <ErrorBox error={r.error} retry={r.refresh} />}
      {!r.data && !r.error && <Spinner label="Loading access logs…" />}
      {r.data && records.length === 0 && <Empty title="No access logs match">Widen the filters, or wait for traffic to arrive.</Empty>}
      {records.length > 0 && (
        <table class="table logs" data-testid="logs">
          <thead>
            <tr>
              <th>Time</th>
              <th>From</th>
              <th>Version</th>
              <th>Request</th>
              <th class="num">Code</th>
              <th class="num">Duration</th>
              <th>Flags</th>
              <th>Trace</th>
            </tr>
          </thead>
          <tbody>
            {records.map((l) => (
              <tr>
                <td class="mono">{fmtClock(l.time)}</td>
                <td>{l.sourceService ? `${l.sourceService}${l.sourceVersion ? ` ${l.sourceVersion}` : ''}` : <span class="muted">unknown</span>}</td>
                <td>{l.version}</td>
                <td class="mono ellipsis">
                  <b>{l.method}</b> {l.path}
                </td>
                <td class="num">
                  <span class={`code c${String(l.code)[0]}`}>{l.code || '—'}</span>
                </td>
                <td class="num">{fmtMs(l.durationMs)}</td>
                <td class="mono">{l.flags && l.flags !== '-' ? l.flags : ''}</td>
                <td>{l.traceId && <a class="mono" onClick={() => onTrace(l.traceId)}>{l.traceId.slice(0, 8)}…</a>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {older.error && <ErrorBox error={older.error} retry={loadOlder} compact />}
      {records.length > 0 && (
        <div class="table-foot">
          {next ? (
            <button class="btn small" onClick={loadOlder} disabled={older.loading}>
              {older.loading ? 'Loading…' : 'Load older'}
            </button>
          ) : (
            <span class="muted">No older records.</span>
          )}
        </div>
      )}
    </div>
  );
}

function Traces({ service, onTrace }: { service: string; onTrace: (id: string) => void }) {
  const [min, setMin] = useState(0);
  const r = useResource<TraceSummary[]>(`traces:${service}:${min}`, (s) => fetchTraces(service, min, s), { refreshMs: 15000 });
  return (
    <div class="card flush">
      <div class="filters">
        <label class="field inline">
          <span>Slower than</span>
          <select value={String(min)} onChange={(e) => setMin(Number((e.target as HTMLSelectElement).value))}>
            {[0, 50, 100, 250, 500, 1000].map((m) => (
              <option value={String(m)}>{m ? fmtMs(m) : 'any duration'}</option>
            ))}
          </select>
        </label>
        <div class="spacer" />
        <Updated at={r.updatedAt} loading={r.loading} error={r.error} />
      </div>
      {r.error && !r.data && <ErrorBox error={r.error} retry={r.refresh} />}
      {!r.data && !r.error && <Spinner label="Searching traces…" />}
      {r.data && r.data.length === 0 && <Empty title="No traces found">Traces appear when services send OTLP spans to meshlens' collector.</Empty>}
      {r.data && r.data.length > 0 && (
        <table class="table">
          <thead>
            <tr>
              <th>Start</th>
              <th>Root</th>
              <th class="num">Spans</th>
              <th>Duration</th>
              <th>Trace id</th>
            </tr>
          </thead>
          <tbody>
            {(() => {
              const max = Math.max(...r.data.map((t) => t.durationMs), 1);
              return r.data.map((t) => (
                <tr class="clickable" onClick={() => onTrace(t.traceId)}>
                  <td class="mono">{fmtClock(t.start)}</td>
                  <td>
                    {t.error && <Badge kind="bad">error</Badge>} {t.service} <span class="muted">{t.name}</span>
                  </td>
                  <td class="num">{t.spans || '—'}</td>
                  <td>
                    <div class="durbar">
                      <span style={{ width: `${(t.durationMs / max) * 100}%` }} class={t.error ? 'bad' : ''} />
                      <em>{fmtMs(t.durationMs)}</em>
                    </div>
                  </td>
                  <td class="mono">{t.traceId.slice(0, 16)}</td>
                </tr>
              ));
            })()}
          </tbody>
        </table>
      )}
    </div>
  );
}
