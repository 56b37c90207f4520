// Short-lived notices for the result of an action.
export interface Toast {
  id: number;
  text: string;
  kind: 'ok' | 'bad' | 'info';
}
type Listener = (ts: Toast[]) => void;
let toasts: Toast[] = [];
let next = 1;
const listeners = new Set<Listener>();

export function toast(text: string, kind: Toast['kind'] = 'info'): void {
  const t = { id: next++, text, kind };
  toasts = [...toasts, t].slice(-4);
  listeners.forEach((l) => l(toasts));
  setTimeout(() => {
    toasts = toasts.filter((x) => x.id !== t.id);
    listeners.forEach((l) => l(toasts));
  }, kind === 'bad' ? 8000 : 4000);
}

export function onToasts(l: Listener): () => void {
  listeners.add(l);
  return () => listeners.delete(l);
}
