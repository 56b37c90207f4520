import type { ComponentChildren } from 'preact';
import type { Graph, GraphEdge, GraphNode } from '../api';
import { fmtMs, fmtPct, fmtRps, worstHealth, type Health } from '../format';
import { drawnEdge, groupMembers, groupTitle, nodeTraffic } from '../graph';
import { Badge, CodeBar, Stat } from './common';
import type { Selection } from './GraphCanvas';
import { VersionCharts } from './VersionCharts';

function nodeName(n: GraphNode | undefined, id: string): string {
  if (!n) return id;
  if (n.unknown) return 'unknown caller';
  return n.version ? `${n.service} ${n.version}` : n.workload || n.service;
}

function mergeCodes(es: GraphEdge[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of es) for (const [c, n] of Object.entries(e.codes)) out[c] = (out[c] ?? 0) + n;
  return out;
}

function p99Of(es: GraphEdge[]): number {
  // The slowest caller's p99 bounds what a user saw; a weighted mean of p99s is not a p99.
  return es.reduce((m, e) => Math.max(m, e.p99Ms), 0);
}

function tone(h: Health) {
  return h === 'failing' ? 'bad' : h === 'degraded' ? 'warn' : undefined;
}

export function DetailPanel({ graph, selection, onSelect, onClose, range, nodeExtra, groupBy = '', collapsed }: { graph: Graph; selection: Selection; onSelect: (s: Selection) => void; onClose: () => void; range: string; nodeExtra?: ComponentChildren; groupBy?: string; collapsed?: Set<string> }) {
  const byId = new Map(graph.nodes.map((n) => [n.id, n]));
  /** a node's name, or a collapsed group's ("app reviews (3)") */
  const endName = (id: string) => {
    if (!groupBy || !id.startsWith(`group:${groupBy}=`)) return nodeName(byId.get(id), id);
    return `${groupTitle(groupBy, id.slice(`group:${groupBy}=`.length))} (${groupMembers(graph, id, groupBy).length})`;
  };
  let body;
  if (selection.type === 'edge') {
    // An edge with an end in a collapsed group stands for the graph's edges to or from its members.
    const e = drawnEdge(graph, selection.id, groupBy, collapsed);
    if (!e) body = <div class="muted">This edge has no traffic in the current window.</div>;
    else {
      const dst = byId.get(e.target);
      const merged = e.parts && e.parts.length > 1;
      // Percentiles do not add: a merged edge's are its slowest part's, an upper bound.
      const atMost = merged ? '≤ ' : '';
      body = (
        <>
          <div class="panel-kicker">{merged ? `Edge · the sum of ${e.parts!.length} edges` : 'Edge'}</div>
          <h2 class="panel-title" data-testid="detail-title">
            <button type="button" class="linkish" onClick={() => onSelect({ type: 'node', id: e.source })}>{endName(e.source)}</button>
            <span class="arrow">→</span>
            <button type="button" class="linkish" onClick={() => onSelect({ type: 'node', id: e.target })}>{endName(e.target)}</button>
          </h2>
          <div class="stats">
            <Stat label="rps" value={fmtRps(e.rps)} />
            <Stat label="errors" value={fmtPct(e.errorRate)} tone={tone(e.health)} />
            <Stat label="p50" value={atMost + fmtMs(e.p50Ms)} />
            <Stat label="p90" value={atMost + fmtMs(e.p90Ms)} />
            <Stat label="p99" value={atMost + fmtMs(e.p99Ms)} />
          </div>
          {e.parts && (
            <>
              <p class="muted" data-testid="merged-edge-note">
                {merged ? `It stands for ${e.parts.length} edges` : 'It stands for one edge'} between the members of the collapsed
                {e.source.startsWith('group:') && e.target.startsWith('group:') ? ' groups' : ' group'}. Rates, requests, errors
                and the counts by code are their sums; the error rate is the summed errors over the summed requests
                {merged && '; p50, p90 and p99 are the slowest of theirs, an upper bound (percentiles do not add); the health is the worst of theirs'}.
              </p>
              <EdgeList title="Edges summed" edges={e.parts} other={(p) => `${nodeName(byId.get(p.source), p.source)} → ${nodeName(byId.get(p.target), p.target)}`} byId={new Map()} onSelect={onSelect} />
            </>
          )}
          <div class="kv">
            <span>Requests in window</span>
            <b>{e.requests.toLocaleString()}</b>
            {e.protocol && (
              <>
                <span>Protocol</span>
                <b>{e.protocol}</b>
              </>
            )}
            <span>mTLS</span>
            <b>{e.mtls >= 0.999 ? <Badge kind="ok">mutual TLS</Badge> : e.mtls > 0 ? <Badge kind="warn">{fmtPct(e.mtls)} mTLS</Badge> : <Badge kind="muted">plaintext</Badge>}</b>
          </div>
          <h3>Response codes</h3>
          <CodeBar codes={e.codes} />
          {Object.keys(e.grpc ?? {}).length > 0 && (
            <>
              <h3>gRPC status</h3>
              <Counts counts={e.grpc ?? {}} ok={(k) => k === '0' || k === 'OK'} />
            </>
          )}
          {Object.keys(e.flags ?? {}).filter((f) => f && f !== '-').length > 0 && (
            <>
              <h3>Envoy response flags</h3>
              <Counts counts={Object.fromEntries(Object.entries(e.flags ?? {}).filter(([f]) => f && f !== '-'))} ok={() => false} />
            </>
          )}
          {dst && !dst.unknown && (
            <>
              <h3>
                {dst.service} by version <a class="more" href={`/services/${dst.namespace}/${dst.service}`}>service page →</a>
              </h3>
              <VersionCharts namespace={dst.namespace} service={dst.service} range={range} highlight={dst.version || undefined} height={110} />
            </>
          )}
        </>
      );
    }
  } else {
    const isGroup = selection.id.startsWith('group:');
    const members = isGroup ? groupMembers(graph, selection.id, groupBy) : graph.nodes.filter((n) => n.id === selection.id);
    // A group by label: "team=checkout", its members from any service.
    const labelGroup = isGroup && groupBy ? groupTitle(groupBy, selection.id.slice(`group:${groupBy}=`.length)) : '';
    const n = members[0];
    if (!n) body = <div class="muted">This node has no traffic in the current window.</div>;
    else {
      const t = nodeTraffic(graph, new Set(members.map((m) => m.id)));
      body = (
        <>
          <div class="panel-kicker">{n.unknown ? 'Unknown caller' : labelGroup ? `Group of ${members.length}` : isGroup ? 'Service' : n.version ? 'Version' : 'Service'}</div>
          <h2 class="panel-title" data-testid="detail-title">
            {labelGroup || (isGroup ? n.service : nodeName(n, n.id))}
            {n.namespace && !labelGroup && <span class="ns">{n.namespace}</span>}
          </h2>
          {isGroup && (
            <div class="chips">
              {members.map((m) => (
                <button class="chip" onClick={() => onSelect({ type: 'node', id: m.id })}>
                  {labelGroup ? nodeName(m, m.id) : m.version || m.workload}
                </button>
              ))}
            </div>
          )}
          <div class="stats">
            <Stat label="in rps" value={fmtRps(t.rpsIn)} />
            <Stat label="in errors" value={fmtPct(t.errorRateIn)} tone={tone(isGroup ? worstHealth(members.map((m) => m.health)) : n.health)} />
            <Stat label="in p99" value={fmtMs(p99Of(t.inbound))} />
            <Stat label="out rps" value={fmtRps(t.rpsOut)} />
            <Stat label="out errors" value={fmtPct(t.errorRateOut)} tone={tone(worstHealth(t.outbound.map((e) => e.health)))} />
          </div>
          {!isGroup && nodeExtra}
          {t.inbound.length > 0 && (
            <>
              <h3>Inbound response codes</h3>
              <CodeBar codes={mergeCodes(t.inbound)} />
            </>
          )}
          <EdgeList title="Callers" edges={t.inbound} other={(e) => e.source} byId={byId} onSelect={onSelect} />
          <EdgeList title="Calls" edges={t.outbound} other={(e) => e.target} byId={byId} onSelect={onSelect} />
          {!n.unknown && (
            <>
              <h3>
                Per-version traffic <a class="more" href={`/services/${n.namespace}/${n.service}`}>service page →</a>
              </h3>
              <VersionCharts namespace={n.namespace} service={n.service} range={range} highlight={isGroup ? undefined : n.version || undefined} height={110} />
            </>
          )}
        </>
      );
    }
  }
  return (
    <aside
      class="detail-panel"
      data-testid="detail-panel"
      aria-label="Details"
      onKeyDown={(k) => {
        if (k.key === 'Escape') onClose();
      }}
    >
      <button class="close" onClick={onClose} aria-label="Close details">
        ×
      </button>
      {body}
    </aside>
  );
}

function EdgeList({ title, edges, other, byId, onSelect }: { title: string; edges: GraphEdge[]; other: (e: GraphEdge) => string; byId: Map<string, GraphNode>; onSelect: (s: Selection) => void }) {
  if (!edges.length) return null;
  return (
    <>
      <h3>{title}</h3>
      <table class="mini">
        <tbody>
          {[...edges].sort((a, b) => b.rps - a.rps).slice(0, 12).map((e) => (
            <tr
              class="clickable"
              tabIndex={0}
              aria-label={`${title === 'Callers' ? 'from ' : title === 'Calls' ? 'to ' : ''}${nodeName(byId.get(other(e)), other(e))}, ${e.health}: open the edge`}
              onClick={() => onSelect({ type: 'edge', id: `${e.source}->${e.target}` })}
              onKeyDown={(k) => {
                if (k.key === 'Enter' || k.key === ' ') {
                  k.preventDefault();
                  onSelect({ type: 'edge', id: `${e.source}->${e.target}` });
                }
              }}
            >
              <td>
                <i class={`hdot h-${e.health}`} title={e.health} />
                {nodeName(byId.get(other(e)), other(e))}
              </td>
              <td class="num">{fmtRps(e.rps)} rps</td>
              <td class="num">{fmtPct(e.errorRate)}</td>
              <td class="num">{fmtMs(e.p99Ms)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

function Counts({ counts, ok }: { counts: Record<string, number>; ok: (k: string) => boolean }) {
  return (
    <div class="chips">
      {Object.entries(counts)
        .sort((a, b) => b[1] - a[1])
        .map(([k, n]) => (
          <span class={`label-chip${ok(k) ? '' : ' warn'}`}>
            {k} <b>{n.toLocaleString()}</b>
          </span>
        ))}
    </div>
  );
}
