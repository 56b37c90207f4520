import { useRef, useState } from 'preact/hooks';
import { ApiError, deleteView, fetchViews, saveView, type SavedView } from '../api';
import { OPERATOR_HINT, useSignedIn } from '../session';
import { toast } from '../toast';

export interface ViewsMenuProps {
  /** the view on screen, to save under a name */
  current: () => Omit<SavedView, 'name'>;
  /** the name of the view last loaded or saved, offered when saving */
  loaded: string;
  onLoad: (v: SavedView) => void;
}

/**
 * ViewsMenu saves the view on screen under a name on the server (operator
 * token), lists the saved views of every user to load one, and deletes them.
 */
export function ViewsMenu({ current, loaded, onLoad }: ViewsMenuProps) {
  const ref = useRef<HTMLDetailsElement>(null);
  const signedIn = useSignedIn();
  const [views, setViews] = useState<SavedView[] | null>(null);
  const [error, setError] = useState('');
  const [name, setName] = useState(loaded);
  const [busy, setBusy] = useState(false);

  const refresh = async () => {
    try {
      setViews(await fetchViews());
      setError('');
    } catch (e) {
      setError(String((e as Error).message ?? e));
    }
  };
  const save = async () => {
    const n = name.trim();
    if (!n) {
      toast('Name the view first.', 'info');
      return;
    }
    setBusy(true);
    try {
      const v = await saveView({ ...current(), name: n });
      toast(`View "${v.name}" saved.`, 'ok');
      await refresh();
    } catch (e) {
      const field = e instanceof ApiError && e.body && typeof e.body === 'object' ? (e.body as { field?: string }).field : undefined;
      toast(`Saving the view failed${field ? ` (${field})` : ''}: ${(e as Error).message}`, 'bad');
    } finally {
      setBusy(false);
    }
  };
  const remove = async (n: string) => {
    if (!confirm(`Delete the saved view "${n}"?`)) return;
    try {
      await deleteView(n);
      toast(`View "${n}" deleted.`, 'ok');
      await refresh();
    } catch (e) {
      toast(`Deleting the view failed: ${(e as Error).message}`, 'bad');
    }
  };

  return (
    <details
      class="menu"
      ref={ref}
      data-testid="views-menu"
      onToggle={(e) => {
        const d = e.currentTarget as HTMLDetailsElement;
        if (d.open) void refresh();
        d.classList.toggle('align-left', d.getBoundingClientRect().left < window.innerWidth / 2);
      }}
    >
      <summary class="btn small" aria-label="Saved views">
        Views ▾
      </summary>
      <div class="menu-body" role="menu">
        <label class="field">
          <span>Save this view as</span>
          <span class="share">
            <input value={name} placeholder="name" maxLength={100} onInput={(e) => setName((e.target as HTMLInputElement).value)} data-testid="view-name"
              onKeyDown={(e) => e.key === 'Enter' && signedIn && !busy && void save()} />
            <button class="btn small" disabled={!signedIn || busy} title={signedIn ? 'Layout of moved nodes, grouping, filters, window and selection' : OPERATOR_HINT} onClick={save} data-testid="view-save">
              Save
            </button>
          </span>
        </label>
        <div class="menu-sep" />
        {error && <div class="muted tiny menu-note" data-testid="views-error">Saved views cannot be read: {error}</div>}
        {!error && views === null && <div class="muted tiny menu-note">Loading…</div>}
        {views?.length === 0 && <div class="muted tiny menu-note">No saved views yet.</div>}
        {views?.map((v) => (
          <div class="view-row" key={v.name}>
            <button
              role="menuitem"
              data-testid="view-load"
              data-name={v.name}
              title={`${v.graph} graph, ${v.window}${v.groupBy ? `, grouped by ${v.groupBy}` : ''}${v.owner ? ` — saved by ${v.owner}` : ''}`}
              onClick={() => {
                ref.current?.removeAttribute('open');
                setName(v.name);
                onLoad(v);
              }}
            >
              {v.name}
              <span class="muted">{v.groupBy ? `by ${v.groupBy.replace(/^label:/, '')}` : v.graph}</span>
            </button>
            <button class="btn small ghost" aria-label={`Delete view ${v.name}`} disabled={!signedIn} title={signedIn ? 'Delete' : OPERATOR_HINT} onClick={() => remove(v.name)} data-testid="view-delete">
              ×
            </button>
          </div>
        ))}
      </div>
    </details>
  );
}
