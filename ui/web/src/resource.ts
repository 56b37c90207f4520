// Stale-while-revalidate data loading: a page shows the last answer for a
// key at once, refreshes in the background, aborts calls it no longer needs
// and never starts a second call for a key while one is in flight, so a
// slow backend never blocks or piles up requests.

import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

interface Entry {
  data: unknown;
  at: number;
}
const cache = new Map<string, Entry>();
const MAX_ENTRIES = 200;

function remember(key: string, data: unknown) {
  cache.delete(key);
  cache.set(key, { data, at: Date.now() });
  if (cache.size > MAX_ENTRIES) cache.delete(cache.keys().next().value as string);
}

export interface Resource<T> {
  data: T | undefined;
  error: Error | undefined;
  /** a call is in flight */
  loading: boolean;
  /** ms time of the data shown */
  updatedAt: number;
  refresh: () => void;
}

export interface ResourceOptions {
  /**
   * refetch period in ms while the tab is visible; 0 = never. A new period
   * applies from the next refresh on (changing it does not refetch at once).
   */
  refreshMs?: number;
}

export function useResource<T>(
  key: string | null,
  fetcher: (signal: AbortSignal) => Promise<T>,
  opts: ResourceOptions = {},
): Resource<T> {
  const cached = key ? cache.get(key) : undefined;
  const [state, setState] = useState<{ key: string | null; data: T | undefined; error: Error | undefined; loading: boolean; updatedAt: number }>({
    key,
    data: cached?.data as T | undefined,
    error: undefined,
    loading: false,
    updatedAt: cached?.at ?? 0,
  });
  const inflight = useRef<AbortController | null>(null);
  const fetcherRef = useRef(fetcher);
  fetcherRef.current = fetcher;
  const keyRef = useRef(key);
  const periodRef = useRef(opts.refreshMs ?? 0);
  periodRef.current = opts.refreshMs ?? 0;
  const refreshing = periodRef.current > 0;

  // A key change shows that key's cached data (or nothing) at once.
  if (state.key !== key) {
    const c = key ? cache.get(key) : undefined;
    setState({ key, data: c?.data as T | undefined, error: undefined, loading: false, updatedAt: c?.at ?? 0 });
  }

  const load = useCallback(() => {
    const k = keyRef.current;
    if (!k || inflight.current) return;
    const ctl = new AbortController();
    inflight.current = ctl;
    setState((s) => ({ ...s, loading: true }));
    fetcherRef.current(ctl.signal).then(
      (data) => {
        if (ctl.signal.aborted || keyRef.current !== k) return;
        remember(k, data);
        setState({ key: k, data, error: undefined, loading: false, updatedAt: Date.now() });
      },
      (error: Error) => {
        if (ctl.signal.aborted || keyRef.current !== k) return;
        setState((s) => ({ ...s, error, loading: false }));
      },
    ).finally(() => {
      if (inflight.current === ctl) inflight.current = null;
    });
  }, []);

  useEffect(() => {
    keyRef.current = key;
    inflight.current?.abort();
    inflight.current = null;
    if (!key) return;
    load();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const next = () => {
      timer = setTimeout(() => {
        if (periodRef.current > 0 && (typeof document === 'undefined' || document.visibilityState !== 'hidden')) load();
        next();
      }, periodRef.current || 1000);
    };
    if (refreshing) next();
    return () => {
      if (timer) clearTimeout(timer);
      inflight.current?.abort();
      inflight.current = null;
    };
  }, [key, refreshing, load]);

  const sameKey = state.key === key;
  return {
    data: sameKey ? state.data : (cached?.data as T | undefined),
    error: sameKey ? state.error : undefined,
    loading: sameKey ? state.loading : true,
    updatedAt: sameKey ? state.updatedAt : (cached?.at ?? 0),
    refresh: load,
  };
}
