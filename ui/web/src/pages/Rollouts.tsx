import { useEffect, useMemo, useState } from 'preact/hooks';
import {
  applyConfig,
  fetchAlerts,
  fetchRollout,
  fetchRollouts,
  fetchServices,
  rolloutAction,
  rolloutYAML,
  type Alert,
  type Rollout,
  type RolloutAction,
  type RolloutForm,
  type ServiceSummary,
  type Verdict,
} from '../api';
import { Badge, Empty, ErrorBox, PageHeader, Spinner, Updated } from '../components/common';
import { ErrorList, locateErrors, YamlEditor, type LocatedError } from '../components/YamlEditor';
import { VersionCharts } from '../components/VersionCharts';
import { ObjectHistory } from '../components/ObjectHistory';
import { fmtAgo, fmtClock, fmtMs, fmtPct } from '../format';
import { useResource } from '../resource';
import { navigate } from '../router';
import { toast } from '../toast';
import { AlertsTable } from './Alerts';
import { OPERATOR_HINT, useSignedIn } from '../session';

const STATE_KIND: Record<string, string> = {
  pending: 'muted',
  progressing: 'info',
  paused: 'warn',
  promoting: 'info',
  succeeded: 'ok',
  rollingback: 'bad',
  rolledback: 'bad',
  failed: 'bad',
};
const STATE_LABEL: Record<string, string> = { rollingback: 'rolling back', rolledback: 'rolled back' };
const TERMINAL = new Set(['succeeded', 'rolledback', 'failed']);
/** States in which no manual action applies: finished, or already returning to stable. */
const NO_ACTION = new Set([...TERMINAL, 'rollingback']);

export function StateBadge({ state }: { state: string }) {
  return (
    <span data-testid="rollout-state" data-state={state}>
      <Badge kind={STATE_KIND[state] ?? 'muted'}>
        {(state === 'progressing' || state === 'promoting' || state === 'rollingback') && <span class="mini-spin" />}
        {STATE_LABEL[state] ?? state}
      </Badge>
    </span>
  );
}

function WeightBar({ r }: { r: Rollout }) {
  return (
    <div class="weightbar" title={`${r.stable || 'stable'} ${r.weights.stable}% · ${r.candidate || 'candidate'} ${r.weights.candidate}%`}>
      <span class="stable" style={{ width: `${r.weights.stable}%` }}>{r.weights.stable >= 15 ? `${r.stable || 'stable'} ${r.weights.stable}%` : ''}</span>
      <span class="cand" style={{ width: `${r.weights.candidate}%` }}>{r.weights.candidate >= 15 ? `${r.candidate || 'candidate'} ${r.weights.candidate}%` : ''}</span>
    </div>
  );
}

export function RolloutsPage({ query }: { query: URLSearchParams }) {
  const signedIn = useSignedIn();
  const r = useResource<Rollout[]>('rollouts', (s) => fetchRollouts(s), { refreshMs: 3000 });
  const alerts = useResource<Alert[]>('alerts', (s) => fetchAlerts(s), { refreshMs: 5000 });
  const creating = query.get('new') !== null;
  return (
    <div class="page">
      <PageHeader title="Rollouts" sub="Canary, blue-green and A/B releases judged on live per-version traffic.">
        <Updated at={r.updatedAt} loading={r.loading} error={r.error} />
        <button class="btn primary" disabled={!signedIn} title={signedIn ? undefined : OPERATOR_HINT} onClick={() => navigate('/rollouts?new')} data-testid="new-rollout">
          New rollout
        </button>
      </PageHeader>
      {creating && <NewRollout onClose={() => navigate('/rollouts')} />}
      {r.error && !r.data && <ErrorBox error={r.error} retry={r.refresh} />}
      {!r.data && !r.error && <Spinner />}
      {r.data && r.data.length === 0 && !creating && (
        <Empty title="No rollouts yet" icon="⇢">
          Start a canary with <b>New rollout</b>: pick a service, its stable and candidate versions and the weight steps. meshlens shifts traffic step by step and rolls back on errors or
          latency.
        </Empty>
      )}
      {r.data && r.data.length > 0 && (
        <div class="card flush">
          <table class="table" data-testid="rollouts">
            <thead>
              <tr>
                <th>Rollout</th>
                <th>Service</th>
                <th>Versions</th>
                <th>State</th>
                <th>Step</th>
                <th style={{ width: '22%' }}>Traffic</th>
                <th>Updated</th>
              </tr>
            </thead>
            <tbody>
              {r.data.map((x) => (
                <tr class="clickable" onClick={() => navigate(`/rollouts/${x.namespace}/${x.name}`)}>
                  <td>
                    <a href={`/rollouts/${x.namespace}/${x.name}`}>{x.name}</a> <span class="muted">{x.namespace}</span>
                  </td>
                  <td>{x.service}</td>
                  <td>
                    {x.stable} → <b>{x.candidate}</b>
                  </td>
                  <td>
                    <StateBadge state={x.state} />
                  </td>
                  <td>{x.steps.length ? `${Math.min(x.step + 1, x.steps.length)} / ${x.steps.length}` : '—'}</td>
                  <td>
                    <WeightBar r={x} />
                  </td>
                  <td class="muted">{fmtAgo(x.updated)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <h2 class="section">Firing alerts</h2>
      <AlertsTable r={alerts} compact />
    </div>
  );
}

function Steps({ r }: { r: Rollout }) {
  if (!r.steps.length) return null;
  const failed = r.state === 'rolledback' || r.state === 'rollingback' || r.state === 'failed';
  return (
    <ol class="stepper" data-testid="steps">
      {r.steps.map((w, i) => {
        const done = r.state === 'succeeded' || i < r.step;
        const current = !done && i === r.step;
        const cls = done ? 'done' : current ? (failed ? 'failed' : r.state === 'paused' ? 'paused' : 'current') : 'todo';
        return (
          <li class={cls} data-step={i} data-status={cls}>
            <span class="bubble">{done ? '✓' : cls === 'failed' ? '✕' : i + 1}</span>
            <span class="w">{w}%</span>
          </li>
        );
      })}
    </ol>
  );
}

function Numbers({ n }: { n: Record<string, number | string> }) {
  const entries = Object.entries(n);
  if (!entries.length) return null;
  const fmt = (k: string, v: number | string) => {
    if (typeof v !== 'number') return v;
    const kl = k.toLowerCase();
    if (/P$/.test(k)) return v < 0.001 ? v.toExponential(1) : v.toFixed(3); // a p-value: errorRateP, latencyP
    if (kl.includes('errorrate') || kl.endsWith('rate') || kl.includes('share') || kl.includes('increase')) return fmtPct(v);
    if (kl.endsWith('ms')) return fmtMs(v);
    if (kl === 'p' || kl.includes('pvalue')) return v < 0.001 ? v.toExponential(1) : v.toFixed(3);
    return Number.isInteger(v) ? v.toLocaleString() : v.toFixed(3);
  };
  return (
    <div class="numbers">
      {entries.map(([k, v]) => (
        <span>
          <em>{k}</em> {fmt(k, v)}
        </span>
      ))}
    </div>
  );
}

function verdictKind(v: Verdict): string {
  const s = `${v.kind} ${v.result}`.toLowerCase();
  if (/fail|rollback|rolled|abort/.test(s)) return 'bad';
  if (/pass|promot|succe|ok/.test(s)) return 'ok';
  if (/push/.test(s)) return 'info';
  return 'muted';
}

export function RolloutDetailPage({ ns, name }: { ns: string; name: string }) {
  const signedIn = useSignedIn();
  const r = useResource<Rollout>(`rollout:${ns}/${name}`, (s) => fetchRollout(ns, name, s), { refreshMs: 2000 });
  const [busy, setBusy] = useState<RolloutAction | ''>('');
  const act = async (a: RolloutAction) => {
    if (a === 'abort' && !confirm(`Abort ${name}? All traffic returns to ${r.data?.stable || 'the stable version'} in one push.`)) return;
    setBusy(a);
    try {
      await rolloutAction(ns, name, a);
      toast(`${a} sent to ${name}`, 'ok');
      r.refresh();
    } catch (e) {
      toast(`${a} failed: ${(e as Error).message}`, 'bad');
    } finally {
      setBusy('');
    }
  };
  const x = r.data;
  return (
    <div class="page">
      <PageHeader
        title={
          <>
            <a class="crumb" href="/rollouts">Rollouts</a> / {name}
          </>
        }
        sub={x ? `${x.strategy || 'canary'} of ${x.service} in ${ns}: ${x.stable} → ${x.candidate}` : ns}
      >
        <Updated at={r.updatedAt} loading={r.loading} error={r.error} />
        {x && (
          <div class="btn-group">
            {x.state === 'paused' ? (
              <button class="btn" disabled={!!busy || !signedIn} title={signedIn ? undefined : OPERATOR_HINT} onClick={() => act('resume')} data-testid="resume">Resume</button>
            ) : (
              <button class="btn" disabled={!!busy || NO_ACTION.has(x.state) || !signedIn} title={signedIn ? undefined : OPERATOR_HINT} onClick={() => act('pause')} data-testid="pause">Pause</button>
            )}
            <button class="btn" disabled={!!busy || NO_ACTION.has(x.state) || !signedIn} title={signedIn ? undefined : OPERATOR_HINT} onClick={() => act('promote')} data-testid="promote">Promote</button>
            <button class="btn danger" disabled={!!busy || NO_ACTION.has(x.state) || !signedIn} title={signedIn ? undefined : OPERATOR_HINT} onClick={() => act('abort')} data-testid="abort">Abort</button>
          </div>
        )}
      </PageHeader>
      {r.error && !x && <ErrorBox error={r.error} retry={r.refresh} />}
      {!x && !r.error && <Spinner />}
      {x && (
        <>
          {(x.state === 'rolledback' || x.state === 'rollingback' || x.state === 'failed') && (
            <div class="banner bad" data-testid="rollback-reason">
              <b>{x.state === 'rollingback' ? 'Rolling back' : x.state === 'failed' ? 'Failed' : 'Rolled back'}</b>: {bannerReason(x)}. All traffic goes to {x.stable}.
            </div>
          )}
          {x.state === 'succeeded' && <div class="banner ok">Promoted: {x.candidate} now takes all traffic.</div>}
          {x.state === 'paused' && <div class="banner warn">Paused at step {x.step + 1}{x.reason ? `: ${x.reason}` : ''}. Resume to continue judging.</div>}
          <div class="card">
            <div class="rollout-head">
              <StateBadge state={x.state} />
              <Steps r={x} />
            </div>
            <WeightBar r={x} />
          </div>
          <div class="grid-2">
            <div class="card">
              <h3 class="card-title">Verdicts and pushes</h3>
              {x.history.length === 0 ? (
                <div class="muted">No verdicts yet: the judge waits for the minimum number of requests in the step.</div>
              ) : (
                <ul class="timeline" data-testid="history">
                  {x.history.slice(0, 100).map((v) => (
                    <li class={`tl-${verdictKind(v)}`}>
                      <div class="tl-head">
                        <Badge kind={verdictKind(v)}>{v.result || v.kind}</Badge>
                        <span class="muted">step {v.step + 1}</span>
                        {v.weights && (
                          <span class="muted">
                            weights {v.weights.stable}/{v.weights.candidate}
                          </span>
                        )}
                        <span class="spacer" />
                        <span class="muted mono">{fmtClock(v.time)}</span>
                      </div>
                      {v.reason && <div class="tl-reason">{v.reason}</div>}
                      <Numbers n={v.numbers} />
                    </li>
                  ))}
                </ul>
              )}
            </div>
            <div class="card">
              <h3 class="card-title">
                {x.service} by version <a class="more" href={`/services/${ns}/${x.service}`}>service page →</a>
              </h3>
              {x.service ? <VersionCharts namespace={ns} service={x.service} range="15m" height={120} refreshMs={5000} /> : <div class="muted">No service named.</div>}
            </div>
          </div>
          <div class="card">
            <h3 class="card-title">Change history</h3>
            <ObjectHistory kind="Rollout" namespace={ns} name={name} />
          </div>
        </>
      )}
    </div>
  );
}

/**
 * bannerReason says why a rollout rolled back or failed. A rollback's own
 * reason comes first: the last message of a rolled-back rollout is only
 * the routes push that ended it.
 */
function bannerReason(x: Rollout): string {
  const why = x.state === 'failed' ? x.reason || x.rollbackReason : x.rollbackReason || x.reason;
  return (why || latestReason(x) || 'no reason recorded').replace(/\.\s*$/, '');
}

function latestReason(x: Rollout): string {
  return x.history.find((h) => h.reason && verdictKind(h) === 'bad')?.reason ?? '';
}

function NewRollout({ onClose }: { onClose: () => void }) {
  const signedIn = useSignedIn();
  const services = useResource<ServiceSummary[]>('services', (s) => fetchServices(s), { refreshMs: 0 });
  const [mode, setMode] = useState<'form' | 'yaml'>('form');
  const [f, setF] = useState<RolloutForm>({
    namespace: 'default',
    name: '',
    service: '',
    stable: '',
    candidate: '',
    steps: [10, 25, 50, 100],
    stepDuration: '30s',
    minRequests: 50,
    maxErrorRate: 0.05,
    maxP99Ms: 500,
  });
  const [stepsText, setStepsText] = useState('10, 25, 50, 100');
  const [yaml, setYaml] = useState('');
  const [errors, setErrors] = useState<LocatedError[]>([]);
  const [problem, setProblem] = useState('');
  const [busy, setBusy] = useState(false);
  const svc = services.data?.find((s) => s.name === f.service && s.namespace === f.namespace) ?? services.data?.find((s) => s.name === f.service);
  const versions = svc?.versions ?? [];

  // Sensible defaults once services are known: the first service with two versions.
  useEffect(() => {
    if (f.service || !services.data?.length) return;
    const s = services.data.find((x) => x.versions.length > 1) ?? services.data[0];
    setF((o) => ({ ...o, service: s.name, namespace: s.namespace || o.namespace, name: `${s.name}-canary`, stable: s.versions[0] ?? '', candidate: s.versions[1] ?? '' }));
  }, [services.data]);

  const formYaml = useMemo(() => rolloutYAML(f), [f]);
  const clientProblems = useMemo(() => {
    const p: string[] = [];
    if (!f.name) p.push('Give the rollout a name.');
    if (!f.service) p.push('Pick a service.');
    if (!f.stable || !f.candidate) p.push('Pick a stable and a candidate version.');
    if (f.stable && f.stable === f.candidate) p.push('Stable and candidate must differ.');
    if (!f.steps.length || f.steps.some((s) => !(s > 0 && s <= 100))) p.push('Steps are weights between 1 and 100, e.g. 10, 25, 50, 100.');
    return p;
  }, [f]);

  const submit = async () => {
    const text = mode === 'yaml' ? yaml : formYaml;
    if (mode === 'form' && clientProblems.length) {
      setProblem(clientProblems.join(' '));
      return;
    }
    setBusy(true);
    setProblem('');
    try {
      const res = await applyConfig(text);
      if (res.ok) {
        const m = /^\s*name:\s*(\S+)/m.exec(text.split(/^spec:/m)[0]);
        const n = /^\s*namespace:\s*(\S+)/m.exec(text.split(/^spec:/m)[0]);
        toast('Rollout created', 'ok');
        navigate(`/rollouts/${n?.[1] ?? f.namespace}/${m?.[1] ?? f.name}`);
      } else {
        // Errors are shown against the YAML, where the fields are.
        if (mode === 'form') {
          setYaml(text);
          setMode('yaml');
        }
        setErrors(locateErrors(text, res.errors));
        setProblem(res.message + ' — fix the marked lines and apply again.');
      }
    } catch (e) {
      setProblem((e as Error).message);
    } finally {
      setBusy(false);
    }
  };

  const set = <K extends keyof RolloutForm>(k: K, v: RolloutForm[K]) => setF((o) => ({ ...o, [k]: v }));
  return (
    <div class="card new-rollout" data-testid="rollout-form">
      <div class="card-head">
        <h3 class="card-title">New canary rollout</h3>
        <div class="tabs small">
          <button class={mode === 'form' ? 'on' : ''} onClick={() => setMode('form')}>Form</button>
          <button
            class={mode === 'yaml' ? 'on' : ''}
            onClick={() => {
              if (mode === 'form') setYaml(formYaml);
              setMode('yaml');
            }}
          >
            YAML
          </button>
        </div>
        <button class="close" onClick={onClose} aria-label="Close">×</button>
      </div>
      {mode === 'form' ? (
        <div class="form-grid">
          <label class="field">
            <span>Service</span>
            <select
              name="service"
              value={f.service}
              onChange={(e) => {
                const name = (e.target as HTMLSelectElement).value;
                const s = services.data?.find((x) => x.name === name);
                setF((o) => ({ ...o, service: name, namespace: s?.namespace || o.namespace, name: `${name}-canary`, stable: s?.versions[0] ?? '', candidate: s?.versions[1] ?? '' }));
              }}
            >
              {!services.data && <option value="">loading…</option>}
              {services.data?.map((s) => (
                <option value={s.name}>
                  {s.name} ({s.namespace})
                </option>
              ))}
            </select>
          </label>
          <label class="field">
            <span>Rollout name</span>
            <input name="name" value={f.name} onInput={(e) => set('name', (e.target as HTMLInputElement).value)} />
          </label>
          <label class="field">
            <span>Namespace</span>
            <input name="namespace" value={f.namespace} onInput={(e) => set('namespace', (e.target as HTMLInputElement).value)} />
          </label>
          <label class="field">
            <span>Stable version</span>
            <VersionInput name="stable" value={f.stable} versions={versions} onChange={(v) => set('stable', v)} />
          </label>
          <label class="field">
            <span>Candidate version</span>
            <VersionInput name="candidate" value={f.candidate} versions={versions} onChange={(v) => set('candidate', v)} />
          </label>
          <label class="field">
            <span>Weight steps (%)</span>
            <input
              name="steps"
              value={stepsText}
              onInput={(e) => {
                const t = (e.target as HTMLInputElement).value;
                setStepsText(t);
                set('steps', t.split(/[\s,]+/).filter(Boolean).map(Number));
              }}
            />
          </label>
          <label class="field">
            <span>Minimum time per step</span>
            <input name="stepDuration" value={f.stepDuration} onInput={(e) => set('stepDuration', (e.target as HTMLInputElement).value)} />
          </label>
          <label class="field">
            <span>Minimum requests per step</span>
            <input name="minRequests" type="number" min={1} value={f.minRequests} onInput={(e) => set('minRequests', Number((e.target as HTMLInputElement).value))} />
          </label>
          <label class="field">
            <span>Max error rate (%)</span>
            <input name="maxErrorRate" type="number" min={0} max={100} step={0.1} value={+(f.maxErrorRate * 100).toFixed(2)} onInput={(e) => set('maxErrorRate', Number((e.target as HTMLInputElement).value) / 100)} />
          </label>
          <label class="field">
            <span>Max p99 latency (ms)</span>
            <input name="maxP99Ms" type="number" min={1} value={f.maxP99Ms} onInput={(e) => set('maxP99Ms', Number((e.target as HTMLInputElement).value))} />
          </label>
          <label class="field">
            <span>Always route header (optional)</span>
            <input name="header" placeholder="e.g. x-canary" value={f.header ?? ''} onInput={(e) => set('header', (e.target as HTMLInputElement).value)} />
          </label>
          <label class="field">
            <span>…with value</span>
            <input name="headerValue" placeholder="e.g. always" value={f.headerValue ?? ''} onInput={(e) => set('headerValue', (e.target as HTMLInputElement).value)} />
          </label>
        </div>
      ) : (
        <>
          <YamlEditor value={yaml} onChange={(v) => { setYaml(v); }} errors={errors} rows={18} label="Rollout YAML" />
          <ErrorList errors={errors} />
        </>
      )}
      {problem && <div class="form-problem" role="alert">{problem}</div>}
      <div class="form-actions">
        <span class="muted">Applied as a <code>Rollout</code> (meshlens.io/v1alpha1) through the config API; needs an operator token.</span>
        <span class="spacer" />
        <button class="btn" onClick={onClose}>Cancel</button>
        <button class="btn primary" disabled={busy || !signedIn} title={signedIn ? undefined : OPERATOR_HINT} onClick={submit} data-testid="start-rollout">
          {busy ? 'Starting…' : 'Start rollout'}
        </button>
      </div>
    </div>
  );
}

function VersionInput({ name, value, versions, onChange }: { name: string; value: string; versions: string[]; onChange: (v: string) => void }) {
  if (!versions.length) return <input name={name} value={value} placeholder="e.g. v2" onInput={(e) => onChange((e.target as HTMLInputElement).value)} />;
  return (
    <select name={name} value={value} onChange={(e) => onChange((e.target as HTMLSelectElement).value)}>
      {!versions.includes(value) && <option value={value}>{value || 'choose…'}</option>}
      {versions.map((v) => (
        <option value={v}>{v}</option>
      ))}
    </select>
  );
}
