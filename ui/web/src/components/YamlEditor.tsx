import { useMemo, useRef } from 'preact/hooks';
import type { FieldError, Warning } from '../api';
import { codeTitle } from '../analysis';
import { locateField } from '../yaml';

export interface LocatedError extends FieldError {
  line: number; // 0-based, -1 when not found
}

export type LocatedWarning = Warning & LocatedError;

/** locateErrors finds the line of the field each error (or warning) names. */
export function locateErrors<E extends FieldError>(text: string, errors: E[]): (E & LocatedError)[] {
  return errors.map((e) => ({ ...e, line: locateField(text, e.object, e.field) }));
}

/**
 * YamlEditor is a plain textarea over a backdrop that marks the lines named
 * by validation errors and writes each error's message at the end of its
 * line, so the user sees the problem where it is.
 */
export function YamlEditor({ value, onChange, errors, rows = 22, label }: { value: string; onChange: (v: string) => void; errors: LocatedError[]; rows?: number; label: string }) {
  const ta = useRef<HTMLTextAreaElement>(null);
  const back = useRef<HTMLDivElement>(null);
  const gutter = useRef<HTMLDivElement>(null);
  const lines = value.split('\n');
  const byLine = useMemo(() => {
    const m = new Map<number, LocatedError[]>();
    for (const e of errors) if (e.line >= 0) m.set(e.line, [...(m.get(e.line) ?? []), e]);
    return m;
  }, [errors]);
  const sync = () => {
    if (!ta.current) return;
    if (back.current) {
      back.current.scrollTop = ta.current.scrollTop;
      back.current.scrollLeft = ta.current.scrollLeft;
    }
    if (gutter.current) gutter.current.scrollTop = ta.current.scrollTop;
  };
  return (
    <div class="yaml-editor" style={{ height: `${rows * 1.5 + 1}em` }}>
      <div class="ye-gutter" ref={gutter} aria-hidden="true">
        {lines.map((_, i) => (
          <div class={byLine.has(i) ? 'err' : ''}>{i + 1}</div>
        ))}
        <div>&nbsp;</div>
      </div>
      <div class="ye-main">
        <div class="ye-backdrop" ref={back} aria-hidden="true">
          {lines.map((l, i) => {
            const es = byLine.get(i);
            return (
              <div class={es ? 'ye-line err' : 'ye-line'}>
                <span class="ye-text">{l || ' '}</span>
                {es && <span class="ye-msg">⟵ {es.map((e) => `${e.field ? e.field + ': ' : ''}${e.message}`).join('; ')}</span>}
              </div>
            );
          })}
        </div>
        <textarea
          ref={ta}
          value={value}
          spellcheck={false}
          aria-label={label}
          wrap="off"
          onInput={(e) => onChange((e.target as HTMLTextAreaElement).value)}
          onScroll={sync}
          onKeyDown={(e) => {
            if (e.key === 'Tab') {
              e.preventDefault();
              const t = e.target as HTMLTextAreaElement;
              const s = t.selectionStart;
              onChange(t.value.slice(0, s) + '  ' + t.value.slice(t.selectionEnd));
              requestAnimationFrame(() => t.setSelectionRange(s + 2, s + 2));
            }
          }}
        />
      </div>
    </div>
  );
}

/** ErrorList lists validation errors; clicking one moves the caret to its line. */
export function ErrorList({ errors, onPick }: { errors: LocatedError[]; onPick?: (line: number) => void }) {
  if (!errors.length) return null;
  return (
    <ul class="error-list" data-testid="validation-errors">
      {errors.map((e) => (
        <li onClick={() => e.line >= 0 && onPick?.(e.line)}>
          <span class="mono obj">{e.object}</span>
          {e.field && <span class="mono field">{e.field}</span>}
          <span class="msg">{e.message}</span>
          {e.line >= 0 && <span class="muted line">line {e.line + 1}</span>}
        </li>
      ))}
    </ul>
  );
}

/**
 * WarningList lists analysis findings with their codes: accepted config that probably does not do what was
 * meant. count is the total when the server sent only the first ones.
 */
export function WarningList({ warnings, count, onPick }: { warnings: LocatedWarning[]; count?: number; onPick?: (line: number) => void }) {
  if (!warnings.length) return null;
  const more = (count ?? warnings.length) - warnings.length;
  return (
    <ul class="error-list warn-list" data-testid="analysis-warnings">
      {warnings.map((w) => (
        <li onClick={() => w.line >= 0 && onPick?.(w.line)}>
          <span class="mono code" title={codeTitle(w.code)}>{w.code}</span>
          <span class="mono obj">{w.object}</span>
          {w.field && <span class="mono field">{w.field}</span>}
          <span class="msg">{w.message}</span>
          {w.line >= 0 && <span class="muted line">line {w.line + 1}</span>}
        </li>
      ))}
      {more > 0 && <li class="muted">… and {more} more warnings</li>}
    </ul>
  );
}
