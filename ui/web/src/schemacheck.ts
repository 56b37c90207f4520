// A small OpenAPI 3.0 schema check for tests: enough of JSON Schema for
// query/openapi.yaml (type, nullable, required, properties,
// additionalProperties, items, enum, allOf, $ref). Properties the document
// does not name are reported, so a fixture cannot answer more than the API.

export interface Schema {
  $ref?: string;
  type?: string;
  nullable?: boolean;
  required?: string[];
  properties?: Record<string, Schema>;
  additionalProperties?: Schema | boolean;
  items?: Schema;
  enum?: unknown[];
  allOf?: Schema[];
}

type Doc = { components?: { schemas?: Record<string, Schema> } };

/** validate returns the problems of value against schema, each as "$.path: what". */
export function validate(value: unknown, schema: Schema, doc: Doc, at = '$'): string[] {
  if (schema.$ref) {
    const name = schema.$ref.replace('#/components/schemas/', '');
    const s = doc.components?.schemas?.[name];
    if (!s) return [`${at}: unknown $ref ${schema.$ref}`];
    return validate(value, s, doc, at);
  }
  if (schema.allOf) return schema.allOf.flatMap((s) => validate(value, s, doc, at));
  if (value === null) return schema.nullable ? [] : [`${at}: null`];
  const out: string[] = [];
  if (schema.enum && !schema.enum.includes(value)) out.push(`${at}: ${JSON.stringify(value)} is not one of ${schema.enum.join(', ')}`);
  switch (schema.type) {
    case 'string':
      if (typeof value !== 'string') out.push(`${at}: want string`);
      break;
    case 'number':
      if (typeof value !== 'number') out.push(`${at}: want number`);
      break;
    case 'integer':
      if (!Number.isInteger(value)) out.push(`${at}: want integer`);
      break;
    case 'boolean':
      if (typeof value !== 'boolean') out.push(`${at}: want boolean`);
      break;
    case 'array':
      if (!Array.isArray(value)) out.push(`${at}: want array`);
      else if (schema.items) value.forEach((v, i) => out.push(...validate(v, schema.items!, doc, `${at}[${i}]`)));
      break;
    case 'object': {
      if (typeof value !== 'object' || Array.isArray(value)) {
        out.push(`${at}: want object`);
        break;
      }
      const o = value as Record<string, unknown>;
      for (const k of schema.required ?? []) if (!(k in o)) out.push(`${at}: ${k} is required`);
      for (const [k, v] of Object.entries(o).sort(([a], [b]) => a.localeCompare(b))) {
        if (v === undefined) continue;
        const p = schema.properties?.[k];
        if (p) out.push(...validate(v, p, doc, `${at}.${k}`));
        else if (typeof schema.additionalProperties === 'object') out.push(...validate(v, schema.additionalProperties, doc, `${at}.${k}`));
        else if (schema.properties && schema.additionalProperties !== true) out.push(`${at}.${k}: not in the document`);
      }
      break;
    }
  }
  return out;
}
