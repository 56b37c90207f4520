import { QueryEditorProps } from '@grafana/data';
import { Checkbox, InlineField, InlineFieldRow, Input, RadioButtonGroup } from '@grafana/ui';
import React, { useState } from 'react';

import type { DataSource } from '../datasource';
import { METRICS, MeshlensOptions, MeshlensQuery, QUERY_TYPES, QueryType, SeriesMetric, Source, View } from '../types';

type Props = QueryEditorProps<DataSource, MeshlensQuery, MeshlensOptions>;

const VIEWS: Array<{ value: View; label: string }> = [
  { value: 'service', label: 'Service' },
  { value: 'version', label: 'Version' },
  { value: 'workload', label: 'Workload' },
];

const SOURCES: Array<{ value: Source; label: string; description: string }> = [
  { value: '', label: 'Auto', description: 'live when the range ends now, ClickHouse history otherwise' },
  { value: 'live', label: 'Live', description: "meshlens' in-memory graph" },
  { value: 'clickhouse', label: 'ClickHouse', description: 'per-minute and per-hour rollups' },
  { value: 'prometheus', label: 'Prometheus', description: "Istio's standard metrics (serve --prometheus)" },
];

/** Which fields each query type uses. */
const FIELDS: Record<QueryType, Array<'view' | 'source' | 'namespace' | 'service' | 'version' | 'metrics' | 'code' | 'path' | 'traceId' | 'minDurationMs' | 'limit'>> = {
  topology: ['view', 'source', 'namespace'],
  series: ['namespace', 'service', 'version', 'metrics', 'source'],
  logs: ['namespace', 'service', 'version', 'code', 'path', 'traceId', 'limit'],
  trace: ['traceId'],
  traceSearch: ['service', 'minDurationMs', 'limit'],
  annotations: ['namespace', 'service'],
};

export function fieldsOf(t: QueryType | undefined) {
  return FIELDS[t ?? 'topology'];
}

/** A text field that updates the query as typed and runs it on blur. */
function TextField(props: { label: string; value?: string; placeholder?: string; tooltip?: string; width?: number; onChange: (v: string) => void; onCommit: () => void }) {
  return (
    <InlineField label={props.label} labelWidth={14} tooltip={props.tooltip}>
      <Input
        aria-label={props.label}
        width={props.width ?? 24}
        placeholder={props.placeholder}
        value={props.value ?? ''}
        onChange={(e) => props.onChange(e.currentTarget.value)}
        onBlur={props.onCommit}
      />
    </InlineField>
  );
}

function parseNumber(s: string): number | undefined {
  if (s.trim() === '') {
    return undefined;
  }
  const n = Number(s);
  return Number.isFinite(n) ? n : undefined;
}

export function QueryEditor({ query, onChange, onRunQuery }: Props) {
  const type: QueryType = query.queryType ?? 'topology';
  const fields = fieldsOf(type);
  const has = (f: (typeof fields)[number]) => fields.includes(f);
  const set = (patch: Partial<MeshlensQuery>, run = false) => {
    onChange({ ...query, ...patch });
    if (run) {
      onRunQuery();
    }
  };
  // Numbers are kept as typed until they parse, so "1." can be typed.
  const [codeText, setCodeText] = useState(query.code !== undefined ? String(query.code) : '');
  const metrics = query.metrics ?? [];
  const toggleMetric = (m: SeriesMetric) => {
    const next = metrics.includes(m) ? metrics.filter((x) => x !== m) : [...metrics, m];
    set({ metrics: next.length ? next : undefined }, true);
  };
  return (
    <div>
      <InlineFieldRow>
        <InlineField label="Query" labelWidth={14}>
          <RadioButtonGroup<QueryType>
            options={QUERY_TYPES.map((q) => ({ value: q.value, label: q.label, description: q.description }))}
            value={type}
            onChange={(v) => set({ queryType: v }, true)}
          />
        </InlineField>
      </InlineFieldRow>
      <InlineFieldRow>
        {has('view') && (
          <InlineField label="View" labelWidth={14}>
            <RadioButtonGroup<View> options={VIEWS} value={query.view ?? 'service'} onChange={(v) => set({ view: v }, true)} />
          </InlineField>
        )}
        {has('source') && (
          <InlineField label="Source" labelWidth={14}>
            <RadioButtonGroup<Source> options={SOURCES} value={query.source ?? ''} onChange={(v) => set({ source: v || undefined }, true)} />
          </InlineField>
        )}
      </InlineFieldRow>
      <InlineFieldRow>
        {has('namespace') && (
          <TextField label="Namespace" placeholder="all" tooltip="e.g. bookinfo or $namespace" value={query.namespace} onChange={(v) => set({ namespace: v || undefined })} onCommit={onRunQuery} />
        )}
        {has('service') && (
          <TextField label="Service" placeholder={type === 'series' ? 'required' : 'all'} value={query.service} onChange={(v) => set({ service: v || undefined })} onCommit={onRunQuery} />
        )}
        {has('version') && (
          <TextField label="Version" placeholder="all" value={query.version} onChange={(v) => set({ version: v || undefined })} onCommit={onRunQuery} />
        )}
      </InlineFieldRow>
      {has('metrics') && (
        <InlineFieldRow>
          <InlineField label="Metrics" labelWidth={14} tooltip="none ticked: all">
            <div style={{ display: 'flex', gap: 12, alignItems: 'center' }}>
              {METRICS.map((m) => (
                <Checkbox key={m.value} label={m.label} value={metrics.includes(m.value)} onChange={() => toggleMetric(m.value)} />
              ))}
            </div>
          </InlineField>
        </InlineFieldRow>
      )}
      <InlineFieldRow>
        {has('code') && (
          <TextField
            label="Status code"
            width={10}
            placeholder="any"
            value={codeText}
            onChange={(v) => {
              setCodeText(v);
              set({ code: parseNumber(v) });
            }}
            onCommit={onRunQuery}
          />
        )}
        {has('path') && (
          <TextField label="Path" placeholder="/api/* (prefix)" value={query.path} onChange={(v) => set({ path: v || undefined })} onCommit={onRunQuery} />
        )}
        {has('traceId') && (
          <TextField label="Trace ID" width={36} placeholder={type === 'trace' ? 'required' : 'any'} value={query.traceId} onChange={(v) => set({ traceId: v.trim() || undefined })} onCommit={onRunQuery} />
        )}
        {has('minDurationMs') && (
          <TextField
            label="Min duration (ms)"
            width={10}
            value={query.minDurationMs !== undefined ? String(query.minDurationMs) : ''}
            onChange={(v) => set({ minDurationMs: parseNumber(v) })}
            onCommit={onRunQuery}
          />
        )}
        {has('limit') && (
          <TextField
            label="Limit"
            width={10}
            placeholder={type === 'logs' ? '100 (max 1000)' : '20 (max 100)'}
            value={query.limit !== undefined ? String(query.limit) : ''}
            onChange={(v) => set({ limit: parseNumber(v) })}
            onCommit={onRunQuery}
          />
        )}
      </InlineFieldRow>
    </div>
  );
}
