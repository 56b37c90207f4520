import { describe, expect, it } from 'vitest';
import { historyPath, type AuditEntry } from './api';
import { actionKind, diffHunks, fromLabel } from './components/ObjectHistory';

// The diff an update of a VirtualService's weights records (audit/changes.go:
// the object's YAML, "+ " added, "- " removed, "  " kept).
const update = [
  '  apiVersion: networking.istio.io/v1',
  '  kind: VirtualService',
  '  metadata:',
  '    name: reviews',
  '    namespace: default',
  '  spec:',
  '    hosts:',
  '    - reviews',
  '    http:',
  '    - route:',
  '      - destination:',
  '          host: reviews',
  '          subset: v1',
  '+       weight: 80',
  '-       weight: 90',
  '      - destination:',
  '          host: reviews',
  '          subset: v2',
  '-       weight: 10',
  '+       weight: 20',
  '',
].join('\n');

const entry = (over: Partial<AuditEntry>): AuditEntry => ({
  time: '2026-11-30T10:00:00Z', actor: 'token:1a2b3c4d (operator)', remote: '', source: 'api', action: 'update',
  kind: 'VirtualService', namespace: 'default', name: 'reviews', ...over,
});

describe('object history', () => {
  it('asks the audit trail for one object by kind, namespace and name', () => {
    const u = new URL(historyPath('VirtualService', 'team a', 'reviews'), 'http://x');
    expect(u.pathname).toBe('/api/v1/audit');
    expect(Object.fromEntries(u.searchParams)).toEqual({ kind: 'VirtualService', namespace: 'team a', name: 'reviews', limit: '100' });
  });

  it('shows the changed lines of a diff with two lines around each, and how many were left out', () => {
    const lines = diffHunks(update);
    expect(lines.filter((l) => l.kind === 'del').map((l) => l.text.trim())).toEqual(['weight: 90', 'weight: 10']);
    expect(lines.filter((l) => l.kind === 'add').map((l) => l.text.trim())).toEqual(['weight: 80', 'weight: 20']);
    expect(lines[0]).toEqual({ kind: 'gap', text: '… 11 unchanged lines' });
    // between the two changes: three kept lines, all within two of a change
    expect(lines.filter((l) => l.kind === 'same').map((l) => l.text.trim())).toEqual(['host: reviews', 'subset: v1', '- destination:', 'host: reviews', 'subset: v2']);
    expect(lines.some((l) => l.text.includes('apiVersion'))).toBe(false);
  });

  it('shows the removed lines of a change before the added ones', () => {
    const changed = diffHunks(update).filter((l) => l.kind === 'add' || l.kind === 'del');
    expect(changed.map((l) => `${l.kind} ${l.text.trim()}`)).toEqual(['del weight: 90', 'add weight: 80', 'del weight: 10', 'add weight: 20']);
  });

  it('keeps YAML list dashes of a removed line and shows the whole object when asked', () => {
    const all = diffHunks(update, Infinity);
    expect(all).toHaveLength(20);
    expect(all.some((l) => l.kind === 'gap')).toBe(false);
    expect(diffHunks('- - reviews\n+ - ratings\n')).toEqual([
      { kind: 'del', text: '- reviews' },
      { kind: 'add', text: '- ratings' },
    ]);
  });

  it("shows a rollout step's diff as it is, and nothing for no diff", () => {
    expect(diffHunks('state: progressing -> rollingback (step 1)')).toEqual([{ kind: 'note', text: 'state: progressing -> rollingback (step 1)' }]);
    expect(diffHunks(undefined)).toEqual([]);
    expect(diffHunks('')).toEqual([]);
  });

  it('says where a change came from: the client for API calls, else its source', () => {
    expect(fromLabel(entry({ remote: '10.0.0.7:51234' }))).toBe('10.0.0.7:51234');
    expect(fromLabel(entry({ source: 'dir', actor: 'dir:reviews.yaml' }))).toBe('config directory');
    expect(fromLabel(entry({ source: 'kubernetes' }))).toBe('Kubernetes API');
    expect(fromLabel(entry({ source: 'rollout', actor: 'alert:errors' }))).toBe('rollout engine');
  });

  it('colours deletions and rollbacks bad, creations and promotions good', () => {
    expect(actionKind('delete')).toBe('bad');
    expect(actionKind('alert')).toBe('bad');
    expect(actionKind('abort')).toBe('bad');
    expect(actionKind('create')).toBe('ok');
    expect(actionKind('promote')).toBe('ok');
    expect(actionKind('update')).toBe('info');
  });
});
