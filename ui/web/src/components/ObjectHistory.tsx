// The history of one config object or rollout: its audit trail (GET
// /api/v1/audit?kind&namespace&name), each change with who made it, when,
// from where, the xDS config version it produced and what it changed.
import { useState } from 'preact/hooks';
import { fetchHistory, type AuditEntry } from '../api';
import { fmtAgo } from '../format';
import { useResource } from '../resource';
import { Badge, Empty, ErrorBox, Spinner, Updated } from './common';

export interface DiffLine {
  kind: 'add' | 'del' | 'same' | 'gap' | 'note';
  text: string;
}

/**
 * diffHunks reads an audit entry's diff ("+ " added, "- " removed, "  "
 * kept lines of the object's YAML; a rollout step's is a plain note) and
 * keeps what changed with `context` kept lines around it, removed lines
 * before added ones; a longer run of kept lines becomes one gap line saying
 * how many were left out.
 */
export function diffHunks(diff: string | undefined, context = 2): DiffLine[] {
  if (!diff) return [];
  const lines: DiffLine[] = diff
    .replace(/\n+$/, '')
    .split('\n')
    .map((l) => {
      const p = l.slice(0, 2);
      if (p === '+ ') return { kind: 'add', text: l.slice(2) };
      if (p === '- ') return { kind: 'del', text: l.slice(2) };
      if (p === '  ') return { kind: 'same', text: l.slice(2) };
      return { kind: 'note', text: l };
    });
  // Within a run of changed lines, the removed ones first (as diff -u shows them).
  for (let i = 0; i < lines.length; ) {
    let j = i;
    while (j < lines.length && (lines[j].kind === 'add' || lines[j].kind === 'del')) j++;
    if (j > i) lines.splice(i, j - i, ...lines.slice(i, j).filter((l) => l.kind === 'del'), ...lines.slice(i, j).filter((l) => l.kind === 'add'));
    i = j + 1;
  }
  const keep = lines.map(() => false);
  lines.forEach((l, i) => {
    if (l.kind === 'same') return;
    for (let j = Math.max(0, i - context); j <= Math.min(lines.length - 1, i + context); j++) keep[j] = true;
  });
  const out: DiffLine[] = [];
  for (let i = 0; i < lines.length; ) {
    if (keep[i]) {
      out.push(lines[i++]);
      continue;
    }
    let n = 0;
    while (i < lines.length && !keep[i]) {
      n++;
      i++;
    }
    out.push({ kind: 'gap', text: `… ${n} unchanged line${n > 1 ? 's' : ''}` });
  }
  return out;
}

/** fromLabel says where a change came from: the client's address for API calls, else its source. */
export function fromLabel(e: AuditEntry): string {
  if (e.remote) return e.remote;
  switch (e.source) {
    case 'dir':
      return 'config directory';
    case 'kubernetes':
      return 'Kubernetes API';
    case 'rollout':
      return 'rollout engine';
  }
  return e.source || '—';
}

/** actionKind is the badge colour of a change: deletions and rollbacks bad, creations and promotions good. */
export function actionKind(action: string): string {
  if (['delete', 'abort', 'alert', 'fail', 'give up', 'refuse'].includes(action)) return 'bad';
  if (['create', 'promote', 'complete', 'start'].includes(action)) return 'ok';
  if (action === 'pause') return 'warn';
  return 'info';
}

/** ObjectHistory lists every recorded change to one object, newest first. */
export function ObjectHistory({ kind, namespace, name }: { kind: string; namespace: string; name: string }) {
  const r = useResource<AuditEntry[]>(`history ${kind}/${namespace}/${name}`, (s) => fetchHistory(kind, namespace, name, s), { refreshMs: 10000 });
  return (
    <div class="object-history" data-testid="object-history">
      <div class="filters">
        <span class="muted">
          Changes to {kind} {namespace}/{name} recorded in the audit trail, newest first.
        </span>
        <div class="spacer" />
        <Updated at={r.updatedAt} loading={r.loading} error={r.error} />
      </div>
      {r.error && !r.data && <ErrorBox error={r.error} retry={r.refresh} compact />}
      {!r.data && !r.error && <Spinner />}
      {r.data && r.data.length === 0 && <Empty title="No recorded changes">Changes made from now on (API, CLI, config directory, Kubernetes, rollout steps) appear here.</Empty>}
      {r.data && r.data.length > 0 && (
        <ol class="history-list">
          {r.data.map((e) => (
            <HistoryEntry e={e} />
          ))}
        </ol>
      )}
    </div>
  );
}

function HistoryEntry({ e }: { e: AuditEntry }) {
  const [all, setAll] = useState(false);
  const t = Date.parse(e.time);
  const lines = diffHunks(e.diff, all ? Infinity : 2);
  return (
    <li data-testid="history-entry">
      <div class="history-head">
        <Badge kind={actionKind(e.action)}>{e.action}</Badge>
        <span title="who" data-testid="history-actor">
          {e.actor || '—'}
        </span>
        <span class="muted" title="from where">
          from {fromLabel(e)}
        </span>
        {e.configVersion ? (
          <span class="mono" title="the xDS config version this change produced" data-testid="history-version">
            config v{e.configVersion}
          </span>
        ) : null}
        <span class="spacer" />
        <time class="muted" dateTime={e.time} title={new Date(t).toLocaleString()}>
          {new Date(t).toLocaleString()} · {fmtAgo(t)}
        </time>
      </div>
      {e.message && <div class="history-message">{e.message}</div>}
      {lines.length > 0 && (
        <pre class="history-diff" data-testid="history-diff">
          {lines.map((l) => (
            <div class={`dl-${l.kind}`}>
              {l.kind === 'add' ? '+ ' : l.kind === 'del' ? '− ' : l.kind === 'same' ? '  ' : ''}
              {l.text}
            </div>
          ))}
        </pre>
      )}
      {lines.some((l) => l.kind === 'gap') && (
        <button class="btn small ghost" onClick={() => setAll(true)}>
          Show the whole object
        </button>
      )}
    </li>
  );
}

/** ObjectTabs is a config object's detail: its YAML in force, or its history. */
export function ObjectTabs({ kind, namespace, name, yaml }: { kind: string; namespace: string; name: string; yaml: string }) {
  const [tab, setTab] = useState<'yaml' | 'history'>('yaml');
  return (
    <div class="object-tabs">
      <div class="tabs small" role="tablist">
        <button role="tab" aria-selected={tab === 'yaml'} class={tab === 'yaml' ? 'on' : ''} onClick={() => setTab('yaml')}>
          YAML
        </button>
        <button role="tab" aria-selected={tab === 'history'} class={tab === 'history' ? 'on' : ''} onClick={() => setTab('history')} data-testid="history-tab">
          History
        </button>
      </div>
      {tab === 'yaml' ? <pre class="yaml">{yaml}</pre> : <ObjectHistory kind={kind} namespace={namespace} name={name} />}
    </div>
  );
}
