import { DataSourceSettings } from '@grafana/data';
import { fireEvent, render, screen } from '@testing-library/react';
import React from 'react';
import { describe, expect, it, vi } from 'vitest';

import { MeshlensOptions, MeshlensSecureJsonData } from '../types';
import { Stateful } from '../test/stateful';
import { ConfigEditor } from './ConfigEditor';

function settings(patch: Partial<DataSourceSettings<MeshlensOptions, MeshlensSecureJsonData>> = {}) {
  return {
    id: 1,
    uid: 'meshlens',
    orgId: 1,
    name: 'meshlens',
    type: 'meshlens-datasource',
    typeName: 'meshlens',
    typeLogoUrl: '',
    access: 'proxy',
    url: '',
    user: '',
    database: '',
    basicAuth: false,
    basicAuthUser: '',
    isDefault: false,
    jsonData: {},
    secureJsonFields: {},
    readOnly: false,
    withCredentials: false,
    ...patch,
  } as DataSourceSettings<MeshlensOptions, MeshlensSecureJsonData>;
}

describe('ConfigEditor', () => {
  it('writes the URL to Grafana’s url field', () => {
    const onOptionsChange = vi.fn();
    render(<ConfigEditor options={settings()} onOptionsChange={onOptionsChange} />);
    fireEvent.change(screen.getByLabelText('meshlens URL'), { target: { value: 'http://meshlens:8080' } });
    expect(onOptionsChange).toHaveBeenLastCalledWith(expect.objectContaining({ url: 'http://meshlens:8080' }));
  });

  it('keeps the token in secureJsonData, never in jsonData', () => {
    const onOptionsChange = vi.fn();
    render(<ConfigEditor options={settings()} onOptionsChange={onOptionsChange} />);
    fireEvent.change(screen.getByLabelText('meshlens API token'), { target: { value: 'viewer-token-123' } });
    const next = onOptionsChange.mock.lastCall![0];
    expect(next.secureJsonData).toEqual({ token: 'viewer-token-123' });
    expect(JSON.stringify(next.jsonData)).not.toContain('viewer-token-123');
  });

  it('shows a saved token as configured and resets it', () => {
    const onOptionsChange = vi.fn();
    render(<ConfigEditor options={settings({ secureJsonFields: { token: true } })} onOptionsChange={onOptionsChange} />);
    expect((screen.getByLabelText('meshlens API token') as HTMLInputElement).value).toBe('configured');
    fireEvent.click(screen.getByRole('button', { name: /reset/i }));
    const next = onOptionsChange.mock.lastCall![0];
    expect(next.secureJsonFields.token).toBe(false);
    expect(next.secureJsonData.token).toBe('');
  });

  it('stores the timeout as a number of seconds', () => {
    const onOptionsChange = vi.fn();
    render(<Stateful initial={settings()} spy={onOptionsChange} render={(o, set) => <ConfigEditor options={o} onOptionsChange={set} />} />);
    fireEvent.change(screen.getByLabelText('timeout in seconds'), { target: { value: '5' } });
    expect(onOptionsChange.mock.lastCall![0].jsonData).toEqual({ timeoutSeconds: 5 });
    fireEvent.change(screen.getByLabelText('timeout in seconds'), { target: { value: '' } });
    expect(onOptionsChange.mock.lastCall![0].jsonData).toEqual({ timeoutSeconds: undefined });
  });
});
