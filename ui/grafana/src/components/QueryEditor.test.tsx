import { fireEvent, render, screen } from '@testing-library/react';
import React from 'react';
import { describe, expect, it, vi } from 'vitest';

import type { DataSource } from '../datasource';
import { Stateful } from '../test/stateful';
import { MeshlensQuery } from '../types';
import { QueryEditor } from './QueryEditor';

function setup(initial: MeshlensQuery) {
  const onChange = vi.fn();
  const onRunQuery = vi.fn();
  render(
    <Stateful
      initial={initial}
      spy={onChange}
      render={(q, set) => <QueryEditor query={q} onChange={set} onRunQuery={onRunQuery} datasource={{} as DataSource} />}
    />
  );
  return { onChange, onRunQuery, last: () => onChange.mock.lastCall![0] as MeshlensQuery };
}

describe('QueryEditor', () => {
  it('offers every query type', () => {
    setup({ refId: 'A', queryType: 'topology' });
    for (const label of ['Topology', 'Series', 'Access logs', 'Trace', 'Trace search', 'Rollout events']) {
      expect(screen.getByRole('radio', { name: label })).toBeTruthy();
    }
  });

  it('topology asks for a view, a source and a namespace, not a service', () => {
    const { last, onRunQuery } = setup({ refId: 'A', queryType: 'topology' });
    expect(screen.queryByRole('textbox', { name: 'Service' })).toBeNull();
    fireEvent.click(screen.getByRole('radio', { name: 'Workload' }));
    expect(last().view).toBe('workload');
    fireEvent.click(screen.getByRole('radio', { name: 'ClickHouse' }));
    expect(last()).toMatchObject({ view: 'workload', source: 'clickhouse' });
    fireEvent.click(screen.getByRole('radio', { name: 'Auto' }));
    expect(last().source).toBeUndefined();
    expect(onRunQuery).toHaveBeenCalledTimes(3);
  });

  it('a text field changes the query as typed and runs it on blur', () => {
    const { last, onRunQuery } = setup({ refId: 'A', queryType: 'topology' });
    const ns = screen.getByLabelText('Namespace');
    fireEvent.change(ns, { target: { value: '$namespace' } });
    expect(last().namespace).toBe('$namespace');
    expect(onRunQuery).not.toHaveBeenCalled();
    fireEvent.blur(ns);
    expect(onRunQuery).toHaveBeenCalledTimes(1);
    fireEvent.change(ns, { target: { value: '' } });
    expect(last().namespace).toBeUndefined();
  });

  it('series: switching type shows service, version and metrics; ticked metrics are sent', () => {
    const { last } = setup({ refId: 'A', queryType: 'topology' });
    fireEvent.click(screen.getByRole('radio', { name: 'Series' }));
    expect(last().queryType).toBe('series');
    fireEvent.change(screen.getByLabelText('Service'), { target: { value: 'reviews' } });
    fireEvent.change(screen.getByLabelText('Version'), { target: { value: 'v2' } });
    fireEvent.click(screen.getByLabelText('p99'));
    fireEvent.click(screen.getByLabelText('error rate'));
    expect(last()).toMatchObject({ queryType: 'series', service: 'reviews', version: 'v2', metrics: ['p99', 'errorRate'] });
    fireEvent.click(screen.getByLabelText('p99'));
    fireEvent.click(screen.getByLabelText('error rate'));
    expect(last().metrics).toBeUndefined();
  });

  it('logs: status code and limit are numbers, path and trace id strings', () => {
    const { last } = setup({ refId: 'A', queryType: 'logs' });
    fireEvent.change(screen.getByLabelText('Status code'), { target: { value: '503' } });
    fireEvent.change(screen.getByLabelText('Limit'), { target: { value: '50' } });
    fireEvent.change(screen.getByLabelText('Path'), { target: { value: '/api/*' } });
    expect(last()).toMatchObject({ code: 503, limit: 50, path: '/api/*' });
    fireEvent.change(screen.getByLabelText('Status code'), { target: { value: 'abc' } });
    expect(last().code).toBeUndefined();
    expect((screen.getByLabelText('Status code') as HTMLInputElement).value).toBe('abc');
  });

  it('trace asks only for a trace id, trimmed', () => {
    const { last } = setup({ refId: 'A', queryType: 'trace' });
    expect(screen.queryByLabelText('Namespace')).toBeNull();
    fireEvent.change(screen.getByLabelText('Trace ID'), { target: { value: ' 4bf92f3577b34da6a3ce929d0e0e4736 ' } });
    expect(last().traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
  });
});
