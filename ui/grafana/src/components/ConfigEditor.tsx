import { DataSourcePluginOptionsEditorProps } from '@grafana/data';
import { FieldSet, InlineField, Input, SecretInput } from '@grafana/ui';
import React, { ChangeEvent } from 'react';

import { MeshlensOptions, MeshlensSecureJsonData } from '../types';

type Props = DataSourcePluginOptionsEditorProps<MeshlensOptions, MeshlensSecureJsonData>;

/** meshlens' URL, its API token (kept in secureJsonData) and the timeout of each call. */
export function ConfigEditor({ options, onOptionsChange }: Props) {
  const secure = options.secureJsonData ?? {};
  const tokenSet = Boolean(options.secureJsonFields?.token);
  return (
    <FieldSet label="meshlens">
      <InlineField
        label="URL"
        labelWidth={18}
        tooltip="meshlens' HTTP address (serve --http), without a path, e.g. http://meshlens.meshlens-system.svc:8080"
      >
        <Input
          id="meshlens-url"
          aria-label="meshlens URL"
          width={50}
          placeholder="http://meshlens.meshlens-system.svc:8080"
          value={options.url ?? ''}
          onChange={(e: ChangeEvent<HTMLInputElement>) => onOptionsChange({ ...options, url: e.currentTarget.value })}
        />
      </InlineField>
      <InlineField
        label="API token"
        labelWidth={18}
        tooltip="A viewer token of meshlens (--tokens file, or the Helm chart's meshlens-tokens Secret). Needed when meshlens listens beyond loopback."
      >
        <SecretInput
          id="meshlens-token"
          aria-label="meshlens API token"
          width={50}
          placeholder="viewer token"
          isConfigured={tokenSet}
          value={secure.token ?? ''}
          onChange={(e: ChangeEvent<HTMLInputElement>) =>
            onOptionsChange({ ...options, secureJsonData: { ...secure, token: e.currentTarget.value } })
          }
          onReset={() =>
            onOptionsChange({
              ...options,
              secureJsonFields: { ...options.secureJsonFields, token: false },
              secureJsonData: { ...secure, token: '' },
            })
          }
        />
      </InlineField>
      <InlineField label="Timeout (s)" labelWidth={18} tooltip="Each call to meshlens ends after this long with an error (default 30).">
        <Input
          id="meshlens-timeout"
          aria-label="timeout in seconds"
          type="number"
          min={1}
          max={600}
          width={12}
          placeholder="30"
          value={options.jsonData.timeoutSeconds ?? ''}
          onChange={(e: ChangeEvent<HTMLInputElement>) => {
            const n = parseInt(e.currentTarget.value, 10);
            onOptionsChange({ ...options, jsonData: { ...options.jsonData, timeoutSeconds: Number.isFinite(n) ? n : undefined } });
          }}
        />
      </InlineField>
    </FieldSet>
  );
}
