import { dateTime } from '@grafana/data';
import { describe, expect, it } from 'vitest';

import { applyVariables, valuesFrame, variableRequest } from './datasource';

describe('datasource helpers', () => {
  it('replaces template variables in the text fields only', () => {
    const vars: Record<string, string> = { $ns: 'shop', $svc: 'reviews' };
    const q = applyVariables({ refId: 'A', queryType: 'series', namespace: '$ns', service: '$svc', metrics: ['rps'], limit: 5 }, (s) => vars[s] ?? s);
    expect(q).toEqual({ refId: 'A', queryType: 'series', namespace: 'shop', service: 'reviews', metrics: ['rps'], limit: 5 });
  });

  it('asks the backend for variable values with the dashboard range in unix ms', () => {
    const range = { from: dateTime(1000), to: dateTime(61000), raw: { from: 'now-1m', to: 'now' } };
    expect(variableRequest({ refId: 'A', kind: 'versions', namespace: 'shop', service: 'reviews' }, range)).toEqual({
      path: 'versions',
      params: { namespace: 'shop', service: 'reviews', from: '1000', to: '61000' },
    });
    expect(variableRequest({ refId: 'A', kind: 'namespaces' })).toEqual({ path: 'namespaces', params: {} });
  });

  it('gives variable values as a text/value frame', () => {
    const f = valuesFrame([{ text: 'v1', value: 'v1' }]);
    expect(f.fields.map((x) => x.name)).toEqual(['text', 'value']);
    expect(f.fields[1].values[0]).toBe('v1');
  });
});
