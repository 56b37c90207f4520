import { DataSourceJsonData } from '@grafana/data';
import { DataQuery } from '@grafana/schema';

/** What a query asks meshlens for; the backend (pkg/plugin/datasource.go: Query) reads the same JSON. */
export type QueryType = 'topology' | 'series' | 'logs' | 'trace' | 'traceSearch' | 'annotations';

export type View = 'service' | 'version' | 'workload';

export type Source = '' | 'live' | 'clickhouse' | 'prometheus';

export type SeriesMetric = 'rps' | 'errorRate' | 'p50' | 'p90' | 'p99';

export interface MeshlensQuery extends DataQuery {
  queryType?: QueryType;
  view?: View;
  source?: Source;
  namespace?: string;
  service?: string;
  version?: string;
  metrics?: SeriesMetric[];
  code?: number;
  path?: string;
  traceId?: string;
  minDurationMs?: number;
  limit?: number;
}

export const DEFAULT_QUERY: Partial<MeshlensQuery> = { queryType: 'topology', view: 'version' };

/** jsonData of the datasource; the URL is Grafana's own field, the token is in secureJsonData. */
export interface MeshlensOptions extends DataSourceJsonData {
  timeoutSeconds?: number;
}

export interface MeshlensSecureJsonData {
  token?: string;
}

/** A template variable query: which values to list. */
export interface MeshlensVariableQuery {
  refId: string;
  kind: 'namespaces' | 'services' | 'versions';
  namespace?: string;
  service?: string;
}

export const QUERY_TYPES: Array<{ value: QueryType; label: string; description: string }> = [
  { value: 'topology', label: 'Topology', description: 'nodes and edges for the Node Graph panel' },
  { value: 'series', label: 'Series', description: 'requests/s, error rate, p50/p90/p99 per version over time' },
  { value: 'logs', label: 'Access logs', description: 'access-log search for the logs panel' },
  { value: 'trace', label: 'Trace', description: 'one trace, by id, for the trace view' },
  { value: 'traceSearch', label: 'Trace search', description: 'traces of a service, as a table' },
  { value: 'annotations', label: 'Rollout events', description: 'rollout transitions, verdicts and weight pushes' },
];

export const METRICS: Array<{ value: SeriesMetric; label: string }> = [
  { value: 'rps', label: 'requests/s' },
  { value: 'errorRate', label: 'error rate' },
  { value: 'p50', label: 'p50' },
  { value: 'p90', label: 'p90' },
  { value: 'p99', label: 'p99' },
];
