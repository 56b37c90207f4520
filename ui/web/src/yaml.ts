// Just enough YAML for the UI: writing an object as YAML to show it, and
// finding the line of a field named in a validation error
// ("http[0].route[1].weight") in the text the user typed.

export function toYAML(v: unknown, indent = 0): string {
  const pad = '  '.repeat(indent);
  if (Array.isArray(v)) {
    if (!v.length) return '[]';
    return v
      .map((x) => {
        const body = toYAML(x, indent + 1);
        if (isPlainObject(x) || Array.isArray(x)) return `${pad}- ${body.trimStart()}`;
        return `${pad}- ${body}`;
      })
      .join('\n');
  }
  if (isPlainObject(v)) {
    const entries = Object.entries(v).filter(([, x]) => x !== undefined);
    if (!entries.length) return '{}';
    return entries
      .map(([k, x]) => {
        if (Array.isArray(x) && x.length) return `${pad}${key(k)}:\n${toYAML(x, indent)}`;
        if (isPlainObject(x) && Object.keys(x).length) return `${pad}${key(k)}:\n${toYAML(x, indent + 1)}`;
        return `${pad}${key(k)}: ${toYAML(x, indent + 1)}`;
      })
      .join('\n');
  }
  return scalar(v);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function key(k: string): string {
  return /^[A-Za-z0-9_.\-/]+$/.test(k) ? k : JSON.stringify(k);
}

function scalar(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  const s = String(v);
  if (s === '' || /^[\s\-?:,[\]{}#&*!|>'"%@`]|:\s|\s#|^(true|false|null|yes|no|~)$|^[\d.+-]+$/i.test(s) || s.includes('\n')) return JSON.stringify(s);
  return s;
}

interface Line {
  n: number; // 0-based line number in the whole text
  indent: number;
  text: string; // without indent
}

/** documents splits multi-document YAML at "---" lines, keeping line numbers. */
function documents(text: string): Line[][] {
  const docs: Line[][] = [[]];
  text.split('\n').forEach((raw, n) => {
    if (/^---\s*$/.test(raw)) {
      docs.push([]);
      return;
    }
    const stripped = raw.replace(/\s+#.*$/, '');
    if (!stripped.trim() || stripped.trim().startsWith('#')) return;
    docs[docs.length - 1].push({ n, indent: stripped.length - stripped.trimStart().length, text: stripped.trim() });
  });
  return docs.filter((d) => d.length);
}

function topValue(doc: Line[], k: string): string {
  const l = doc.find((x) => x.indent === 0 && x.text.startsWith(`${k}:`));
  return l ? unquote(l.text.slice(k.length + 1).trim()) : '';
}

function nestedValue(doc: Line[], parent: string, k: string): string {
  const i = doc.findIndex((x) => x.indent === 0 && x.text === `${parent}:`);
  if (i < 0) return '';
  for (let j = i + 1; j < doc.length && doc[j].indent > 0; j++) {
    if (doc[j].text.startsWith(`${k}:`)) return unquote(doc[j].text.slice(k.length + 1).trim());
  }
  return '';
}

function unquote(s: string): string {
  return s.replace(/^["']|["']$/g, '');
}

interface Logical {
  n: number;
  indent: number;
  text: string;
  dash: boolean;
}

/** logical splits "- key: v" into a dash marker and a "key: v" line two columns in. */
function logical(doc: Line[]): Logical[] {
  const out: Logical[] = [];
  for (const l of doc) {
    let ind = l.indent;
    let t = l.text;
    while (t === '-' || t.startsWith('- ')) {
      out.push({ n: l.n, indent: ind, text: '', dash: true });
      const rest = t.slice(1);
      ind += 1 + rest.length - rest.trimStart().length;
      t = rest.trimStart();
    }
    if (t) out.push({ n: l.n, indent: ind, text: t, dash: false });
  }
  return out;
}

interface YNode {
  line: number;
  map?: Map<string, YNode>;
  seq?: YNode[];
}

function mapKey(text: string): [string, string] | null {
  const m = /^("(?:[^"\\]|\\.)*"|'[^']*'|[^:]+?)\s*:(?:\s+(.*))?$/.exec(text);
  if (!m) return null;
  return [unquote(m[1]), (m[2] ?? '').trim()];
}

function parseBlock(ls: Logical[], i: number, line: number): [YNode, number] {
  if (i >= ls.length) return [{ line }, i];
  const ind = ls[i].indent;
  if (ls[i].dash) {
    const seq: YNode[] = [];
    while (i < ls.length && ls[i].dash && ls[i].indent === ind) {
      const itemLine = ls[i].n;
      i++;
      if (i < ls.length && ls[i].indent > ind) {
        let child: YNode;
        [child, i] = parseBlock(ls, i, itemLine);
        seq.push({ ...child, line: itemLine });
      } else seq.push({ line: itemLine });
    }
    return [{ line, seq }, i];
  }
  const map = new Map<string, YNode>();
  while (i < ls.length && ls[i].indent >= ind && !(ls[i].dash && ls[i].indent === ind)) {
    const l = ls[i];
    i++;
    if (l.indent > ind || l.dash) continue; // continuation of a scalar we do not model
    const kv = mapKey(l.text);
    if (!kv) continue;
    let child: YNode = { line: l.n };
    if (kv[1] === '' && i < ls.length && (ls[i].indent > ind || (ls[i].dash && ls[i].indent === ind))) {
      [child, i] = parseBlock(ls, i, l.n);
      child = { ...child, line: l.n };
    }
    map.set(kv[0], child);
  }
  return [{ line, map }, i];
}

/**
 * locateField returns the 0-based line of field (a path like
 * "http[0].route[1].weight", relative to spec unless it starts with
 * metadata/apiVersion/kind/spec) in the document of object
 * ("Kind/namespace/name" or "document N", 1-based), or the line of the
 * deepest part of the path that exists, or -1 when the object is not found.
 */
export function locateField(text: string, object: string, field: string): number {
  const docs = documents(text);
  let doc: Line[] | undefined;
  const dm = /^document (\d+)$/.exec(object);
  if (dm) doc = docs[Number(dm[1]) - 1];
  else {
    const [kind, ns, name] = object.split('/');
    doc =
      docs.find((d) => topValue(d, 'kind') === kind && nestedValue(d, 'metadata', 'name') === name && (nestedValue(d, 'metadata', 'namespace') || 'default') === (ns || 'default')) ??
      docs.find((d) => topValue(d, 'kind') === kind && nestedValue(d, 'metadata', 'name') === name);
  }
  if (!doc) return -1;
  const segs: (string | number)[] = [];
  for (const s of field ? field.split('.') : []) {
    const m = /^([^[\]]*)((?:\[\d+\])*)$/.exec(s);
    if (!m) {
      segs.push(s);
      continue;
    }
    if (m[1]) segs.push(m[1]);
    for (const x of m[2].matchAll(/\[(\d+)\]/g)) segs.push(Number(x[1]));
  }
  if (segs.length && !['metadata', 'spec', 'apiVersion', 'kind', 'status'].includes(String(segs[0]))) segs.unshift('spec');
  let [node] = parseBlock(logical(doc), 0, doc[0].n);
  for (const seg of segs) {
    const next = typeof seg === 'number' ? node.seq?.[seg] : node.map?.get(seg);
    if (!next) break;
    node = next;
  }
  return node.line;
}
