import { fetchAlerts, type Alert } from '../api';
import { Badge, Empty, ErrorBox, PageHeader, Spinner, Updated } from '../components/common';
import { fmtAgo } from '../format';
import { useResource, type Resource } from '../resource';

export function AlertsPage() {
  const r = useResource<Alert[]>('alerts', (s) => fetchAlerts(s), { refreshMs: 5000 });
  return (
    <div class="page">
      <PageHeader title="Alerts" sub="Alerts firing now, from meshlens' own rules and from Alertmanager webhooks.">
        <Updated at={r.updatedAt} loading={r.loading} error={r.error} />
      </PageHeader>
      <AlertsTable r={r} />
    </div>
  );
}

export function AlertsTable({ r, compact }: { r: Resource<Alert[]>; compact?: boolean }) {
  if (r.error && !r.data) return <ErrorBox error={r.error} retry={r.refresh} compact={compact} />;
  if (!r.data) return <Spinner />;
  if (!r.data.length)
    return compact ? (
      <div class="card muted" data-testid="alerts-empty">No alerts firing.</div>
    ) : (
      <Empty title="No alerts firing" icon="✓">
        Rules are defined as <code>AlertRule</code> objects on the Config page; a rule with <code>action: rollback</code> rolls back the rollout it names.
      </Empty>
    );
  return (
    <div class="card flush">
      <table class="table" data-testid="alerts">
        <thead>
          <tr>
            <th>Alert</th>
            <th>Severity</th>
            <th>Summary</th>
            <th>Labels</th>
            <th>Since</th>
          </tr>
        </thead>
        <tbody>
          {r.data.map((a) => (
            <tr>
              <td>
                <i class={`hdot h-${a.state === 'firing' ? 'failing' : 'idle'}`} />
                <b>{a.name}</b>
              </td>
              <td>{a.severity && <Badge kind={a.severity === 'critical' || a.severity === 'page' ? 'bad' : 'warn'}>{a.severity}</Badge>}</td>
              <td>
                {a.summary}
                {a.value && <span class="muted"> (value {a.value})</span>}
                {a.action && <div class="muted tiny">action: {a.action}</div>}
              </td>
              <td>
                {Object.entries(a.labels)
                  .filter(([k]) => k !== 'alertname' && k !== 'severity')
                  .map(([k, v]) => (
                    <span class="label-chip">
                      {k}={v}
                    </span>
                  ))}
              </td>
              <td class="muted">{fmtAgo(a.since)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
