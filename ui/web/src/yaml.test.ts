import { describe, expect, it } from 'vitest';
import { locateField, toYAML } from './yaml';

const text = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: default
spec:
  host: reviews
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts:
  - reviews
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 90
    - destination:
        host: reviews
        subset: v3
      weight: 20
`;

const lineOf = (s: string, nth = 0) => text.split('\n').findIndex((l, i, a) => l.includes(s) && a.slice(0, i).filter((x) => x.includes(s)).length === nth);

describe('locateField', () => {
  it.each([
    ['http[1].route[1].weight', lineOf('weight: 20')],
    ['http[1].route[0].weight', lineOf('weight: 90')],
    ['http[1].route[1].destination.subset', lineOf('subset: v3')],
    ['http[0].route[0].destination.subset', lineOf('subset: v2')],
    ['http[0].match[0].headers', lineOf('- headers:')],
    ['hosts', lineOf('hosts:')],
    ['metadata.name', lineOf('name: reviews', 1)],
  ])('finds %s of the VirtualService on line %i', (field, want) => {
    expect(locateField(text, 'VirtualService/default/reviews', field)).toBe(want);
  });

  it('falls back to the nearest found parent when the field is absent', () => {
    expect(locateField(text, 'VirtualService/default/reviews', 'http[1].timeout')).toBe(lineOf('  - route:'));
  });

  it('finds a document by number and says -1 for an unknown object', () => {
    expect(locateField(text, 'document 2', '')).toBe(lineOf('apiVersion', 1));
    expect(locateField(text, 'Gateway/default/nope', 'x')).toBe(-1);
  });

  it('finds the object in the other document of the same name', () => {
    expect(locateField(text, 'DestinationRule/default/reviews', 'host')).toBe(lineOf('host: reviews'));
  });
});

describe('toYAML', () => {
  it('writes nested objects and lists as block YAML', () => {
    expect(toYAML({ a: 1, b: { c: 'x', d: [1, { e: true }] }, f: [], g: '' })).toBe(
      'a: 1\nb:\n  c: x\n  d:\n  - 1\n  - e: true\nf: []\ng: ""',
    );
  });
  it('quotes strings that would read as other types', () => {
    expect(toYAML({ a: 'true', b: '123', c: 'a: b', d: 'plain' })).toBe('a: "true"\nb: "123"\nc: "a: b"\nd: plain');
  });
});
