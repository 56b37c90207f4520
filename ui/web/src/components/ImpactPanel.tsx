import type { Graph, GraphNode, Impact } from '../api';
import type { Resource } from '../resource';
import { ErrorBox, Spinner } from './common';
import type { Selection } from './GraphCanvas';

/** nodeLabel names a node in lists: "reviews v2 (default)". */
export function nodeLabel(n: GraphNode | undefined, id: string): string {
  if (!n) return id;
  if (n.unknown) return 'unknown caller';
  const name = n.version ? `${n.service} ${n.version}` : n.workload || n.service;
  return n.namespace ? `${name} (${n.namespace})` : name;
}

export interface ImpactPanelProps {
  graph: Graph;
  node: string;
  impactOn: boolean;
  impact: Resource<Impact>;
  pathTo: string;
  path: Resource<string[]>;
  onImpact: (on: boolean) => void;
  onPathTo: (id: string) => void;
  onSelect: (s: Selection) => void;
}

/**
 * ImpactPanel answers "who breaks if this breaks" (the blast radius: every
 * caller with a call path to the node, GET /graph/nodes/{id}/impact) and "how
 * does traffic get from here to there" (GET /graph/paths), and highlights the
 * answer on the graph.
 */
export function ImpactPanel({ graph, node, impactOn, impact, pathTo, path, onImpact, onPathTo, onSelect }: ImpactPanelProps) {
  const byId = new Map(graph.nodes.map((n) => [n.id, n]));
  const others = graph.nodes.filter((n) => n.id !== node).sort((a, b) => nodeLabel(a, a.id).localeCompare(nodeLabel(b, b.id)));
  const link = (id: string) => (
    <button type="button" class="linkish" onClick={() => onSelect({ type: 'node', id })}>
      {nodeLabel(byId.get(id), id)}
    </button>
  );
  return (
    <section class="impact" data-testid="impact-panel" aria-label="Impact and paths">
      <h3>Impact</h3>
      <div class="impact-actions">
        <button type="button" class={`btn small${impactOn ? ' primary' : ''}`} aria-pressed={impactOn} onClick={() => onImpact(!impactOn)} data-testid="blast-radius">
          {impactOn ? 'Hide blast radius' : 'Show blast radius'}
        </button>
        <label class="field inline">
          <span>Path to</span>
          <select value={pathTo} onChange={(e) => onPathTo((e.target as HTMLSelectElement).value)} data-testid="path-to" aria-label="Show the call path to another node">
            <option value="">—</option>
            {others.map((n) => (
              <option value={n.id}>{nodeLabel(n, n.id)}</option>
            ))}
          </select>
        </label>
      </div>
      {impactOn && (
        <div data-testid="impact-result">
          {impact.error && <ErrorBox error={impact.error} retry={impact.refresh} compact />}
          {!impact.data && !impact.error && <Spinner label="Finding the blast radius…" />}
          {impact.data && (
            <>
              <p class="impact-summary">
                {impact.data.blastRadius === 0 ? (
                  <>Nothing calls this node in the window: a failure here reaches no caller.</>
                ) : (
                  <>
                    A failure here reaches <b data-testid="blast-radius-count">{impact.data.blastRadius}</b> caller{impact.data.blastRadius === 1 ? '' : 's'}
                    {impact.data.upstreamDepth > 1 && <>, up to {impact.data.upstreamDepth} hops away</>} ({impact.data.callers.length} direct).
                  </>
                )}{' '}
                It depends on {impact.data.dependencies.length} node{impact.data.dependencies.length === 1 ? '' : 's'}
                {impact.data.dependencyDepth > 1 && <>, {impact.data.dependencyDepth} hops deep</>}.
                {impact.data.inCycle && <> It is on a dependency cycle.</>}
              </p>
              {impact.data.affectedCallers.length > 0 && (
                <ul class="id-list" aria-label="Affected callers">
                  {impact.data.affectedCallers.slice(0, 30).map((id) => (
                    <li>{link(id)}</li>
                  ))}
                  {impact.data.affectedCallers.length > 30 && <li class="muted">and {impact.data.affectedCallers.length - 30} more</li>}
                </ul>
              )}
            </>
          )}
        </div>
      )}
      {pathTo && (
        <div data-testid="path-result">
          {path.error && <ErrorBox error={path.error} retry={path.refresh} compact />}
          {!path.data && !path.error && <Spinner label="Finding the path…" />}
          {path.data && path.data.length === 0 && <p class="muted">No call path from here to {nodeLabel(byId.get(pathTo), pathTo)} in this window.</p>}
          {path.data && path.data.length > 0 && (
            <ol class="path-list" aria-label="Call path">
              {path.data.map((id) => (
                <li>{link(id)}</li>
              ))}
            </ol>
          )}
        </div>
      )}
    </section>
  );
}
