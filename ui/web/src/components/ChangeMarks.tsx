// Change marks on the time scrubber: every config change and rollout step of
// the audit trail (GET /api/v1/audit) in the scrubber's range, as a tick a
// click turns into "the diff of the span before and after this change".

import { fetchChanges, type AuditEntry } from '../api';
import { useResource } from '../resource';
import { setQuery } from '../router';

/** changeLabel says what an audit entry changed, in one line. */
export function changeLabel(e: AuditEntry): string {
  const obj = `${e.kind} ${e.namespace ? `${e.namespace}/` : ''}${e.name}`;
  return `${e.action} ${obj} (${e.actor || e.source})`;
}

/** useChanges is the audit trail of the last 24 h, refreshed every minute. */
export function useChanges() {
  return useResource<AuditEntry[]>('audit 24h', (s) => fetchChanges('24h', s), { refreshMs: 60000 });
}

/** diffAround opens the diff of the span before and after t. */
export function diffAround(t: string, span = '10m') {
  setQuery({ diff: '1', around: t, span, beforeStart: undefined, beforeEnd: undefined, afterStart: undefined, afterEnd: undefined });
}

/** ChangeMarks draws the changes over a range input covering the last `minutes`. */
export function ChangeMarks({ minutes }: { minutes: number }) {
  const r = useChanges();
  const now = Date.now();
  const marks = (r.data ?? [])
    .map((e) => ({ e, ago: (now - Date.parse(e.time)) / 60000 }))
    .filter((m) => m.ago >= 0 && m.ago <= minutes)
    .slice(0, 100);
  if (!marks.length) return null;
  return (
    <div class="change-marks" aria-label="Config changes and rollout steps">
      {marks.map(({ e, ago }) => (
        <button
          type="button"
          class={`change-mark ${e.source === 'rollout' ? 'rollout' : 'config'}`}
          style={{ left: `${(100 * (minutes - ago)) / minutes}%` }}
          title={`${new Date(e.time).toLocaleString()}: ${changeLabel(e)} — compare the 10 minutes before and after`}
          aria-label={`Compare before and after: ${changeLabel(e)}`}
          data-testid="change-mark"
          onClick={() => diffAround(e.time)}
        />
      ))}
    </div>
  );
}
