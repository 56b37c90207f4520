import {
  CustomVariableSupport,
  DataFrame,
  DataQueryRequest,
  DataQueryResponse,
  DataSourceInstanceSettings,
  FieldType,
  ScopedVars,
  TimeRange,
  createDataFrame,
} from '@grafana/data';
import { DataSourceWithBackend, getTemplateSrv } from '@grafana/runtime';
import { Observable, from, map } from 'rxjs';

import { VariableQueryEditor } from './components/VariableQueryEditor';
import { DEFAULT_QUERY, MeshlensOptions, MeshlensQuery, MeshlensVariableQuery } from './types';

/** The fields of a query that may hold template variables. */
const TEMPLATED: Array<'namespace' | 'service' | 'version' | 'path' | 'traceId'> = [
  'namespace',
  'service',
  'version',
  'path',
  'traceId',
];

export function applyVariables(query: MeshlensQuery, replace: (s: string) => string): MeshlensQuery {
  const out: MeshlensQuery = { ...query };
  for (const k of TEMPLATED) {
    const v = out[k];
    if (typeof v === 'string' && v !== '') {
      out[k] = replace(v);
    }
  }
  return out;
}

/** The resource path and parameters of a variable query (pkg/plugin/resources.go). */
export function variableRequest(q: MeshlensVariableQuery, range?: TimeRange): { path: string; params: Record<string, string> } {
  const params: Record<string, string> = {};
  if (q.namespace) {
    params.namespace = q.namespace;
  }
  if (q.kind === 'versions' && q.service) {
    params.service = q.service;
  }
  if (range) {
    params.from = String(range.from.valueOf());
    params.to = String(range.to.valueOf());
  }
  return { path: q.kind, params };
}

export function valuesFrame(values: Array<{ text: string; value: string }>): DataFrame {
  return createDataFrame({
    fields: [
      { name: 'text', type: FieldType.string, values: values.map((v) => v.text) },
      { name: 'value', type: FieldType.string, values: values.map((v) => v.value) },
    ],
  });
}

export class DataSource extends DataSourceWithBackend<MeshlensQuery, MeshlensOptions> {
  constructor(instanceSettings: DataSourceInstanceSettings<MeshlensOptions>) {
    super(instanceSettings);
    this.variables = new MeshlensVariableSupport(this);
    // Rollout events on any dashboard's time axis, through the backend.
    this.annotations = {
      getDefaultQuery: () => ({ queryType: 'annotations' }) as MeshlensQuery,
    };
  }

  getDefaultQuery(): Partial<MeshlensQuery> {
    return DEFAULT_QUERY;
  }

  applyTemplateVariables(query: MeshlensQuery, scopedVars: ScopedVars): MeshlensQuery {
    const srv = getTemplateSrv();
    return applyVariables(query, (s) => srv.replace(s, scopedVars));
  }

  filterQuery(query: MeshlensQuery): boolean {
    if (query.hide) {
      return false;
    }
    if (query.queryType === 'trace') {
      return !!query.traceId;
    }
    if (query.queryType === 'series') {
      return !!query.namespace && !!query.service;
    }
    return true;
  }

  /** Values of a template variable: namespaces, services or versions meshlens has seen in the range. */
  fetchVariableValues(q: MeshlensVariableQuery, range?: TimeRange): Promise<Array<{ text: string; value: string }>> {
    const srv = getTemplateSrv();
    const resolved: MeshlensVariableQuery = {
      ...q,
      namespace: q.namespace ? srv.replace(q.namespace) : undefined,
      service: q.service ? srv.replace(q.service) : undefined,
    };
    const { path, params } = variableRequest(resolved, range);
    return this.getResource(path, params);
  }
}

export class MeshlensVariableSupport extends CustomVariableSupport<DataSource, MeshlensVariableQuery> {
  editor = VariableQueryEditor;

  constructor(private readonly ds: DataSource) {
    super();
  }

  query(request: DataQueryRequest<MeshlensVariableQuery>): Observable<DataQueryResponse> {
    const q = request.targets[0] ?? { refId: 'A', kind: 'namespaces' };
    return from(this.ds.fetchVariableValues(q, request.range)).pipe(map((values) => ({ data: [valuesFrame(values)] })));
  }
}
