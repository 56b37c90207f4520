import { useMemo, useState } from 'preact/hooks';
import { applyConfig, deleteConfig, fetchAnalysis, fetchConfig, fetchProxies, sourceLabel, type ConfigObject, type Proxy, type Warning } from '../api';
import { Badge, Empty, ErrorBox, PageHeader, Spinner, Updated } from '../components/common';
import { applyStatus, codeTitle } from '../analysis';
import { ErrorList, locateErrors, WarningList, YamlEditor, type LocatedError, type LocatedWarning } from '../components/YamlEditor';
import { ObjectTabs } from '../components/ObjectHistory';
import { fmtAgo } from '../format';
import { useResource } from '../resource';
import { setQuery } from '../router';
import { toast } from '../toast';
import { toYAML } from '../yaml';
import { OPERATOR_HINT, useSignedIn } from '../session';

const EXAMPLE = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 90
    - destination:
        host: reviews
        subset: v2
      weight: 10
`;

export function ConfigPage({ query }: { query: URLSearchParams }) {
  const tab = query.get('tab') ?? 'objects';
  return (
    <div class="page">
      <PageHeader title="Config" sub="Istio traffic-management objects and meshlens rollouts and alert rules in force, and the proxies that receive them." />
      <div class="tabs">
        <button class={tab === 'objects' ? 'on' : ''} onClick={() => setQuery({ tab: undefined })}>Objects in force</button>
        <button class={tab === 'apply' ? 'on' : ''} onClick={() => setQuery({ tab: 'apply' })} data-testid="apply-tab">Apply YAML</button>
        <button class={tab === 'analysis' ? 'on' : ''} onClick={() => setQuery({ tab: 'analysis' })} data-testid="analysis-tab">Analysis</button>
        <button class={tab === 'proxies' ? 'on' : ''} onClick={() => setQuery({ tab: 'proxies' })}>Proxies (xDS)</button>
      </div>
      {tab === 'objects' && <Objects />}
      {tab === 'apply' && <Apply />}
      {tab === 'analysis' && <Analysis />}
      {tab === 'proxies' && <Proxies />}
    </div>
  );
}

function Objects() {
  const signedIn = useSignedIn();
  const r = useResource<ConfigObject[]>('config', (s) => fetchConfig(undefined, s), { refreshMs: 10000 });
  const [kind, setKind] = useState('');
  const [open, setOpen] = useState('');
  const kinds = useMemo(() => [...new Set((r.data ?? []).map((o) => o.kind))].sort(), [r.data]);
  const rows = (r.data ?? []).filter((o) => !kind || o.kind === kind);
  const del = async (o: ConfigObject) => {
    if (!confirm(`Delete ${o.kind} ${o.namespace}/${o.name}? Proxies get the change at once.`)) return;
    try {
      const { warningCount } = await deleteConfig(o.kind, o.namespace, o.name);
      // Deleting what others refer to is allowed, as in Istio; say what it left dangling.
      toast(`Deleted ${o.kind} ${o.namespace}/${o.name}${warningCount ? `; ${warningCount} analysis warning${warningCount > 1 ? 's' : ''} (see Analysis)` : ''}`, 'ok');
      r.refresh();
    } catch (e) {
      toast(`Delete failed: ${(e as Error).message}`, 'bad');
    }
  };
  return (
    <div class="card flush">
      <div class="filters">
        <div class="chips">
          <button class={`chip${kind === '' ? ' on' : ''}`} onClick={() => setKind('')}>All ({r.data?.length ?? 0})</button>
          {kinds.map((k) => (
            <button class={`chip${kind === k ? ' on' : ''}`} onClick={() => setKind(k)}>
              {k} ({r.data!.filter((o) => o.kind === k).length})
            </button>
          ))}
        </div>
        <div class="spacer" />
        <Updated at={r.updatedAt} loading={r.loading} error={r.error} />
      </div>
      {r.error && !r.data && <ErrorBox error={r.error} retry={r.refresh} />}
      {!r.data && !r.error && <Spinner />}
      {r.data && rows.length === 0 && (
        <Empty title="No config objects">
          Apply VirtualServices, DestinationRules or Rollouts on the <a onClick={() => setQuery({ tab: 'apply' })}>Apply YAML</a> tab, with <code>meshlens apply -f</code>, or from a config directory.
        </Empty>
      )}
      {rows.length > 0 && (
        <table class="table" data-testid="config-objects">
          <thead>
            <tr>
              <th>Kind</th>
              <th>Namespace</th>
              <th>Name</th>
              <th>API version</th>
              <th>Source</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {rows.map((o) => {
              const id = `${o.kind}/${o.namespace}/${o.name}`;
              const src = sourceLabel(o.source);
              return (
                <>
                  <tr class="clickable" onClick={() => setOpen(open === id ? '' : id)}>
                    <td>
                      <Badge kind={o.apiVersion.startsWith('meshlens') ? 'info' : 'muted'}>{o.kind}</Badge>
                    </td>
                    <td class="muted">{o.namespace}</td>
                    <td>
                      <b>{o.name}</b>
                    </td>
                    <td class="muted mono">{o.apiVersion}</td>
                    <td>
                      <span title={src.detail || undefined} data-testid="config-source">
                        <Badge kind={src.apiOwned ? 'muted' : 'info'}>{src.label}</Badge>
                      </span>
                    </td>
                    <td class="num">
                      {src.apiOwned ? (
                        <button class="btn small ghost danger" disabled={!signedIn} title={signedIn ? undefined : OPERATOR_HINT} onClick={(e) => { e.stopPropagation(); del(o); }}>Delete</button>
                      ) : (
                        <span class="muted" title={`Defined by ${src.label}${src.detail ? ` (${src.detail})` : ''}; change it there`}>read-only</span>
                      )}
                    </td>
                  </tr>
                  {open === id && (
                    <tr class="expanded">
                      <td colSpan={6}>
                        <ObjectTabs kind={o.kind} namespace={o.namespace} name={o.name} yaml={toYAML(o.raw)} />
                      </td>
                    </tr>
                  )}
                </>
              );
            })}
          </tbody>
        </table>
      )}
    </div>
  );
}

function Apply() {
  const signedIn = useSignedIn();
  const [text, setText] = useState(EXAMPLE);
  const [errors, setErrors] = useState<LocatedError[]>([]);
  const [warnings, setWarnings] = useState<{ list: LocatedWarning[]; count: number }>({ list: [], count: 0 });
  const [status, setStatus] = useState<{ kind: 'ok' | 'warn' | 'bad'; text: string } | null>(null);
  const [busy, setBusy] = useState<'' | 'apply' | 'validate'>('');
  const submit = async (dryRun: boolean) => {
    setBusy(dryRun ? 'validate' : 'apply');
    setStatus(null);
    try {
      const res = await applyConfig(text, dryRun);
      if (res.ok) {
        setErrors([]);
        setWarnings({ list: locateErrors(text, res.warnings), count: res.warningCount });
        setStatus(applyStatus(dryRun, res.warningCount));
        if (!dryRun) toast(res.warningCount ? `Config applied with ${res.warningCount} warning${res.warningCount > 1 ? 's' : ''}` : 'Config applied', 'ok');
      } else {
        setErrors(locateErrors(text, res.errors));
        setWarnings({ list: [], count: 0 });
        setStatus({ kind: 'bad', text: `${res.message}. ${dryRun ? 'It would be refused' : 'Nothing was applied'}: a batch with any error is refused whole.` });
      }
    } catch (e) {
      setStatus({ kind: 'bad', text: (e as Error).message });
    } finally {
      setBusy('');
    }
  };
  return (
    <div class="card">
      <p class="muted">
        Paste one or more documents separated by <code>---</code>. Validation errors are marked on the line of the field they name.
      </p>
      <YamlEditor value={text} onChange={(v) => setText(v)} errors={errors} label="YAML to apply" />
      <ErrorList errors={errors} />
      <WarningList warnings={warnings.list} count={warnings.count} />
      {status && (
        <div class={`banner ${status.kind}`} role="status" data-testid="apply-status">
          {status.text}
        </div>
      )}
      <div class="form-actions">
        <span class="muted">Needs an operator token.</span>
        <span class="spacer" />
        <button class="btn" disabled={busy !== '' || !signedIn} title={signedIn ? undefined : OPERATOR_HINT} onClick={() => submit(true)} data-testid="validate">
          {busy === 'validate' ? 'Validating…' : 'Validate'}
        </button>
        <button class="btn primary" disabled={busy !== '' || !signedIn} title={signedIn ? undefined : OPERATOR_HINT} onClick={() => submit(false)} data-testid="apply">
          {busy === 'apply' ? 'Applying…' : 'Apply'}
        </button>
      </div>
    </div>
  );
}

/** Analysis lists every finding on the running config, as istioctl analyze reports it. */
function Analysis() {
  const r = useResource<{ version: number; warnings: Warning[] }>('analysis', (s) => fetchAnalysis(s), { refreshMs: 10000 });
  const rows = r.data?.warnings ?? [];
  return (
    <div class="card flush">
      <div class="filters">
        <span class="muted">
          Findings on the config in force{r.data ? ` (version ${r.data.version})` : ''}: references to hosts, subsets or objects that nothing defines, and conflicts. They never refuse a change.
        </span>
        <div class="spacer" />
        <Updated at={r.updatedAt} loading={r.loading} error={r.error} />
      </div>
      {r.error && !r.data && <ErrorBox error={r.error} retry={r.refresh} />}
      {!r.data && !r.error && <Spinner />}
      {r.data && rows.length === 0 && <Empty title="No analysis findings">Every reference in the config resolves.</Empty>}
      {rows.length > 0 && (
        <table class="table" data-testid="analysis-findings">
          <thead>
            <tr>
              <th>Code</th>
              <th>Object</th>
              <th>Field</th>
              <th>Message</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((w) => (
              <tr>
                <td>
                  <span title={codeTitle(w.code)}>
                    <Badge kind="warn">{w.code}</Badge>
                  </span>
                </td>
                <td class="mono">{w.object}</td>
                <td class="mono muted">{w.field}</td>
                <td>{w.message}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function Proxies() {
  const r = useResource<Proxy[]>('proxies', (s) => fetchProxies(s), { refreshMs: 5000 });
  return (
    <div class="card flush">
      <div class="filters">
        <span class="muted">Data-plane nodes connected to meshlens' xDS server, with the config version each has acknowledged.</span>
        <div class="spacer" />
        <Updated at={r.updatedAt} loading={r.loading} error={r.error} />
      </div>
      {r.error && !r.data && <ErrorBox error={r.error} retry={r.refresh} />}
      {!r.data && !r.error && <Spinner />}
      {r.data && r.data.length === 0 && <Empty title="No proxies connected">Envoy sidecars or proxyless gRPC clients appear here once they connect over ADS.</Empty>}
      {r.data && r.data.length > 0 && (
        <table class="table">
          <thead>
            <tr>
              <th>Node</th>
              <th>Service</th>
              <th>Version</th>
              <th>Acked config</th>
              <th>Status</th>
              <th>Seen</th>
            </tr>
          </thead>
          <tbody>
            {r.data.map((p) => (
              <tr>
                <td class="mono ellipsis">{p.id}</td>
                <td>{p.service}</td>
                <td>{p.version}</td>
                <td class="mono">{p.ackedVersion || '—'}</td>
                <td>{p.nack ? <Badge kind="bad">NACK: {p.nack}</Badge> : <Badge kind="ok">in sync</Badge>}</td>
                <td class="muted">{fmtAgo(p.lastSeen)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
