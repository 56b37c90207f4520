import { QueryEditorProps } from '@grafana/data';
import { InlineField, InlineFieldRow, Input, RadioButtonGroup } from '@grafana/ui';
import React from 'react';

import type { DataSource } from '../datasource';
import { MeshlensOptions, MeshlensQuery, MeshlensVariableQuery } from '../types';

type Props = QueryEditorProps<DataSource, MeshlensQuery, MeshlensOptions, MeshlensVariableQuery>;

const KINDS: Array<{ value: MeshlensVariableQuery['kind']; label: string }> = [
  { value: 'namespaces', label: 'Namespaces' },
  { value: 'services', label: 'Services' },
  { value: 'versions', label: 'Versions' },
];

/** A template variable of namespaces, services (of a namespace) or versions (of a service) meshlens has seen. */
export function VariableQueryEditor({ query, onChange }: Props) {
  const q: MeshlensVariableQuery = { refId: query?.refId ?? 'A', kind: query?.kind ?? 'namespaces', namespace: query?.namespace, service: query?.service };
  return (
    <div>
      <InlineFieldRow>
        <InlineField label="Values" labelWidth={14}>
          <RadioButtonGroup options={KINDS} value={q.kind} onChange={(kind) => onChange({ ...q, kind })} />
        </InlineField>
      </InlineFieldRow>
      {q.kind !== 'namespaces' && (
        <InlineFieldRow>
          <InlineField label="Namespace" labelWidth={14} tooltip="e.g. bookinfo or $namespace; empty: all">
            <Input aria-label="Namespace" width={24} value={q.namespace ?? ''} onChange={(e) => onChange({ ...q, namespace: e.currentTarget.value || undefined })} />
          </InlineField>
          {q.kind === 'versions' && (
            <InlineField label="Service" labelWidth={14} tooltip="e.g. reviews or $service; empty: every service">
              <Input aria-label="Service" width={24} value={q.service ?? ''} onChange={(e) => onChange({ ...q, service: e.currentTarget.value || undefined })} />
            </InlineField>
          )}
        </InlineFieldRow>
      )}
    </div>
  );
}
