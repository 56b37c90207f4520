import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError } from '../api';
import { fmtAgo } from '../format';

export function Spinner({ label }: { label?: string }) {
  return (
    <div class="loading" role="status">
      <span class="spinner" aria-hidden="true" />
      {label ?? 'Loading…'}
    </div>
  );
}

export function Empty({ title, children, icon }: { title: string; children?: ComponentChildren; icon?: string }) {
  return (
    <div class="empty">
      <div class="empty-icon" aria-hidden="true">{icon ?? '◌'}</div>
      <div class="empty-title">{title}</div>
      {children && <div class="empty-body">{children}</div>}
    </div>
  );
}

/** ErrorBox explains a failed call and what to do about it. */
export function ErrorBox({ error, retry, compact }: { error: Error; retry?: () => void; compact?: boolean }) {
  let hint = 'The page keeps retrying; check the meshlens logs if this persists.';
  if (error instanceof ApiError) {
    if (error.unauthorized) hint = 'Sign in with an operator or viewer token (top right).';
    else if (error.status === 404) hint = 'This object or endpoint does not exist on this meshlens server; it may have been deleted or the server is older than this UI.';
    else if (error.status === 0) hint = 'Start it with `meshlens serve` (or `make run`), then this page recovers by itself.';
    else if (error.status >= 500) hint = 'meshlens had an internal error; its log has the details.';
  }
  return (
    <div class={`error-box${compact ? ' compact' : ''}`} role="alert">
      <div>
        <strong>{error.message}</strong>
        {!compact && <div class="hint">{hint}</div>}
      </div>
      {retry && (
        <button class="btn small" onClick={retry}>
          Retry
        </button>
      )}
    </div>
  );
}

export function Badge({ kind, children }: { kind: string; children: ComponentChildren }) {
  return <span class={`badge badge-${kind}`}>{children}</span>;
}

/** Updated shows when data was last refreshed, and a pulse while a call is in flight. */
export function Updated({ at, loading, error }: { at: number; loading: boolean; error?: Error }) {
  const [, tick] = useState(0);
  useEffect(() => {
    const t = setInterval(() => tick((n) => n + 1), 1000);
    return () => clearInterval(t);
  }, []);
  return (
    <span class={`updated${error ? ' stale' : ''}`} title={error ? error.message : undefined}>
      <span class={`dot${loading ? ' pulse' : ''}${error ? ' bad' : ''}`} />
      {error ? (at ? `stale — updated ${fmtAgo(at)}` : 'unavailable') : at ? `updated ${fmtAgo(at)}` : 'loading'}
    </span>
  );
}

export function PageHeader({ title, sub, children }: { title: ComponentChildren; sub?: ComponentChildren; children?: ComponentChildren }) {
  return (
    <div class="page-header">
      <div>
        <h1>{title}</h1>
        {sub && <div class="sub">{sub}</div>}
      </div>
      <div class="page-actions">{children}</div>
    </div>
  );
}

export function Stat({ label, value, tone }: { label: string; value: ComponentChildren; tone?: string }) {
  return (
    <div class={`stat${tone ? ` tone-${tone}` : ''}`}>
      <div class="stat-value">{value}</div>
      <div class="stat-label">{label}</div>
    </div>
  );
}

export function Segmented<T extends string>({ value, options, onChange, label }: { value: T; options: { value: T; label: string }[]; onChange: (v: T) => void; label: string }) {
  return (
    <div class="segmented" role="radiogroup" aria-label={label}>
      {options.map((o) => (
        <button role="radio" aria-checked={o.value === value} class={o.value === value ? 'on' : ''} onClick={() => onChange(o.value)}>
          {o.label}
        </button>
      ))}
    </div>
  );
}

/** CodeBar draws response codes as a stacked bar with a legend. */
export function CodeBar({ codes }: { codes: Record<string, number> }) {
  const entries = Object.entries(codes).filter(([, n]) => n > 0).sort(([a], [b]) => a.localeCompare(b));
  const total = entries.reduce((s, [, n]) => s + n, 0);
  if (!total) return <div class="muted">No responses in this window.</div>;
  const cls = (c: string) => (c.startsWith('2') ? 'ok' : c.startsWith('3') ? 'redir' : c.startsWith('4') ? 'client' : c.startsWith('5') || c === '0' ? 'server' : 'other');
  return (
    <div>
      <div class="codebar">
        {entries.map(([c, n]) => (
          <span class={`seg code-${cls(c)}`} style={{ width: `${(n / total) * 100}%` }} title={`${c}: ${n}`} />
        ))}
      </div>
      <div class="codelegend">
        {entries.map(([c, n]) => (
          <span>
            <i class={`sw code-${cls(c)}`} />
            {c} <b>{((n / total) * 100).toFixed(n / total < 0.1 ? 1 : 0)}%</b> <span class="muted">({n})</span>
          </span>
        ))}
      </div>
    </div>
  );
}
