import { fireEvent, render, screen } from '@testing-library/react';
import React from 'react';
import { describe, expect, it, vi } from 'vitest';

import type { DataSource } from '../datasource';
import { Stateful } from '../test/stateful';
import { MeshlensQuery, MeshlensVariableQuery } from '../types';
import { VariableQueryEditor } from './VariableQueryEditor';

function setup(initial: MeshlensVariableQuery) {
  const onChange = vi.fn();
  render(
    <Stateful
      initial={initial}
      spy={onChange}
      render={(q, set) => (
        <VariableQueryEditor
          query={q as unknown as MeshlensQuery & MeshlensVariableQuery}
          onChange={set as unknown as (q: MeshlensQuery) => void}
          onRunQuery={() => {}}
          datasource={{} as DataSource}
        />
      )}
    />
  );
  return { last: () => onChange.mock.lastCall![0] as MeshlensVariableQuery };
}

describe('VariableQueryEditor', () => {
  it('namespaces need nothing else', () => {
    setup({ refId: 'A', kind: 'namespaces' });
    expect(screen.getByRole('radio', { name: 'Namespaces' })).toBeTruthy();
    expect(screen.queryByLabelText('Namespace')).toBeNull();
  });

  it('services of a namespace, which may be another variable', () => {
    const { last } = setup({ refId: 'A', kind: 'namespaces' });
    fireEvent.click(screen.getByRole('radio', { name: 'Services' }));
    expect(screen.queryByLabelText('Service')).toBeNull();
    fireEvent.change(screen.getByLabelText('Namespace'), { target: { value: '$namespace' } });
    expect(last()).toEqual({ refId: 'A', kind: 'services', namespace: '$namespace', service: undefined });
  });

  it('versions of a service', () => {
    const { last } = setup({ refId: 'A', kind: 'namespaces' });
    fireEvent.click(screen.getByRole('radio', { name: 'Versions' }));
    fireEvent.change(screen.getByLabelText('Namespace'), { target: { value: 'shop' } });
    fireEvent.change(screen.getByLabelText('Service'), { target: { value: 'reviews' } });
    expect(last()).toEqual({ refId: 'A', kind: 'versions', namespace: 'shop', service: 'reviews' });
  });
});
