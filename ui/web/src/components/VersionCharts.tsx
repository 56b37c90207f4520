import { useMemo } from 'preact/hooks';
import { fetchService, type ServiceDetail } from '../api';
import { fmtMs, fmtPct, fmtRps } from '../format';
import { useResource } from '../resource';
import { Chart, VERSION_COLORS, type Series } from './Chart';
import { ErrorBox, Spinner } from './common';

export function versionColor(versions: string[], v: string): string {
  const i = versions.indexOf(v);
  return VERSION_COLORS[(i < 0 ? 0 : i) % VERSION_COLORS.length];
}

/** VersionCharts loads a service's per-version series and draws QPS, error rate and latency. */
export function VersionCharts({ namespace, service, range, highlight, latency = 'p99', height, refreshMs = 10000 }: { namespace: string; service: string; range: string; highlight?: string; latency?: 'p99' | 'all'; height?: number; refreshMs?: number }) {
  const key = service ? `svc:${namespace}/${service}?${range}` : null;
  const r = useResource<ServiceDetail>(key, (s) => fetchService(namespace, service, range, s), { refreshMs });
  const charts = useMemo(() => {
    const d = r.data;
    if (!d) return null;
    const names = d.versions.map((v) => v.version);
    const mk = (pickY: (v: ServiceDetail['versions'][number]) => number[]): Series[] =>
      d.versions.map((v) => ({ label: v.version, color: versionColor(names, v.version), t: v.t, y: pickY(v), dash: !!highlight && v.version !== highlight }));
    let lat: Series[];
    if (latency === 'all' && d.versions.length) {
      lat = d.versions.flatMap((v) => [
        { label: `${v.version} p50`, color: versionColor(names, v.version), t: v.t, y: v.p50Ms, dash: true },
        { label: `${v.version} p99`, color: versionColor(names, v.version), t: v.t, y: v.p99Ms },
      ]);
    } else lat = mk((v) => v.p99Ms);
    return { qps: mk((v) => v.qps), err: mk((v) => v.errorRate), lat };
  }, [r.data, highlight, latency]);

  if (r.error && !r.data) return <ErrorBox error={r.error} retry={r.refresh} compact />;
  if (!charts) return <Spinner label="Loading per-version series…" />;
  return (
    <div class="charts">
      <Chart title="Requests / s" series={charts.qps} fmt={fmtRps} height={height} />
      <Chart title="Error rate" series={charts.err} fmt={fmtPct} height={height} />
      <Chart title={latency === 'all' ? 'Latency p50 / p99' : 'Latency p99'} series={charts.lat} fmt={fmtMs} height={height} />
    </div>
  );
}
