// lazy loads a component's module on first use, so the first page does not
// wait for the code of the others (Vite splits each import() into a chunk).

import type { ComponentType, JSX } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { Spinner } from './components/common';

export interface Lazy<P> {
  (props: P): JSX.Element;
  /** preload starts loading the module without rendering it. */
  preload(): Promise<ComponentType<P>>;
}

export function lazy<P extends object>(load: () => Promise<ComponentType<P>>, fallback: () => JSX.Element = () => <Spinner />): Lazy<P> {
  let loaded: ComponentType<P> | null = null;
  let pending: Promise<ComponentType<P>> | null = null;
  const preload = () =>
    (pending ??= load().then(
      (c) => (loaded = c),
      (e) => {
        pending = null; // let a later render try again
        throw e;
      },
    ));
  const L = (props: P) => {
    const [C, setC] = useState<ComponentType<P> | null>(() => loaded);
    const [failed, setFailed] = useState<unknown>(null);
    useEffect(() => {
      if (C) return;
      let live = true;
      preload().then(
        (c) => live && setC(() => c),
        (e) => live && setFailed(e),
      );
      return () => {
        live = false;
      };
    }, []);
    if (C) return <C {...props} />;
    if (failed) return <div class="page"><div class="banner bad">Could not load this part of the UI: {String(failed)}. Reload to try again.</div></div>;
    return fallback();
  };
  L.preload = preload;
  return L;
}
