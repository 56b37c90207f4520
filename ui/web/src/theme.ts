// Light and dark themes: the choice is kept in this browser; without one the
// system's preference decides. The theme is an attribute on <html> that the
// stylesheet's variables follow; the graph canvas restyles itself from it.
import { useEffect, useState } from 'preact/hooks';
import type { Theme } from './graphstyle';

export const THEME_KEY = 'meshlens.theme';
const listeners = new Set<(t: Theme) => void>();

export function currentTheme(): Theme {
  let t: string | null = null;
  try {
    t = localStorage.getItem(THEME_KEY);
  } catch {
    /* private mode */
  }
  if (t === 'light' || t === 'dark') return t;
  return typeof matchMedia !== 'undefined' && matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}

/** applyTheme sets the theme on the document (at start, before the first render, and on every change). */
export function applyTheme(t: Theme = currentTheme()): void {
  document.documentElement.dataset.theme = t;
}

export function setTheme(t: Theme): void {
  try {
    localStorage.setItem(THEME_KEY, t);
  } catch {
    /* private mode: for this page only */
  }
  applyTheme(t);
  listeners.forEach((l) => l(t));
}

export function useTheme(): Theme {
  const [t, set] = useState<Theme>(currentTheme);
  useEffect(() => {
    listeners.add(set);
    return () => void listeners.delete(set);
  }, []);
  return t;
}
