import { describe, expect, it } from 'vitest';
import { applyResult, toWarnings } from './api';
import { applyStatus, codeTitle } from './analysis';
import { locateErrors } from './components/YamlEditor';

const yaml = `apiVersion: networking.istio.io/v1
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
`;

// What POST /api/v1/config answers for Istio's Bookinfo route when no registry knows "reviews".
const accepted = {
  version: 3,
  applied: [{ kind: 'VirtualService', namespace: 'default', name: 'reviews' }],
  warnings: [
    {
      code: 'IST0101',
      object: 'VirtualService/default/reviews',
      field: 'http[0].route[0].destination.host',
      message: 'Referenced host not found: "reviews.default.svc.cluster.local"',
    },
  ],
  warningCount: 1,
};

describe('config answers with analysis warnings', () => {
  it('reads an accepted apply with its warnings', () => {
    const r = applyResult(200, accepted);
    expect(r).toMatchObject({ ok: true, warningCount: 1 });
    if (!r?.ok) throw new Error('not accepted');
    expect(r.warnings[0]).toEqual(accepted.warnings[0]);
  });

  it('reads an answer without warnings as none, and a cut-short list by its count', () => {
    expect(toWarnings({ version: 1, applied: [] })).toEqual({ warnings: [], count: 0 });
    expect(toWarnings({ warnings: accepted.warnings, warningCount: 250 }).count).toBe(250);
  });

  it('reads a refusal of a huge batch as its first errors and their total', () => {
    const errors = Array.from({ length: 100 }, (_, i) => ({ object: `document 1 item ${i}`, field: 'metadata', message: 'required' }));
    const r = applyResult(400, { errors, errorCount: 2000000 });
    expect(r).toMatchObject({ ok: false, errorCount: 2000000, message: '2000000 validation errors (the first 100 shown)' });
    expect(applyResult(400, { errors: errors.slice(0, 1) })).toMatchObject({ ok: false, errorCount: 1, message: '1 validation error' });
    expect(applyResult(500, { error: 'boom' })).toBeUndefined();
  });

  it('marks the line of the field a warning names', () => {
    const [w] = locateErrors(yaml, accepted.warnings);
    expect(w.code).toBe('IST0101');
    expect(yaml.split('\n')[w.line]).toContain('host: reviews');
  });

  it('says an apply with warnings was applied, and why they matter', () => {
    expect(applyStatus(false, 0)).toEqual({ kind: 'ok', text: 'Applied. The objects are persisted and pushed to connected proxies.' });
    const s = applyStatus(true, 2);
    expect(s.kind).toBe('warn');
    expect(s.text).toMatch(/^Valid: applying it would be accepted\. 2 analysis warnings/);
    expect(codeTitle('IST0101')).toBe('ReferencedResourceNotFound');
    expect(codeTitle('X1')).toBe('X1');
  });
});
