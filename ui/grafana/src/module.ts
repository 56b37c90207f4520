import { DataSourcePlugin } from '@grafana/data';

import { ConfigEditor } from './components/ConfigEditor';
import { QueryEditor } from './components/QueryEditor';
import { DataSource } from './datasource';
import { MeshlensOptions, MeshlensQuery, MeshlensSecureJsonData } from './types';

export const plugin = new DataSourcePlugin<DataSource, MeshlensQuery, MeshlensOptions, MeshlensSecureJsonData>(DataSource)
  .setConfigEditor(ConfigEditor)
  .setQueryEditor(QueryEditor);
