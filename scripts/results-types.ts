// `npm run results:types`: writes lib/bet/results-types.ts, the TypeScript types of the results
// file, from its JSON Schema (lib/bet/schema/adapter-compress.schema.json), so the schema is the one
// description of the format: the reader checks files against it at run time and the code is typed
// by it. test/bet-report.test.ts checks that the committed file is what this script writes.
//
// It covers the schema keywords the results schema uses: type (one or a list), const, enum, oneOf,
// $ref to $defs (with sibling properties: an intersection), properties / required /
// additionalProperties, items, prefixItems; a $def or a node with an identifier `title` becomes a
// named type, descriptions become doc comments, and the pattern of a string $def becomes a RegExp
// constant (userName -> USER_NAME_PATTERN), the one home of that pattern.

import { readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { writeFileAtomic } from '../lib/util/files.js';
import { packageRoot } from '../lib/util/package-root.js';

type Schema = Record<string, unknown>;

export const RESULTS_SCHEMA = join('lib', 'bet', 'schema', 'adapter-compress.schema.json');
export const RESULTS_TYPES = join('lib', 'bet', 'results-types.ts');

const IDENT = /^[A-Z][A-Za-z0-9]*$/;
const lit = (v: unknown): string => (typeof v === 'string' ? `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'` : JSON.stringify(v));
const pascal = (s: string): string => s[0]!.toUpperCase() + s.slice(1);

/** The TypeScript source of the types of `schema`; its root type is named `rootName`. */
export function renderSchemaTypes(schema: Schema, rootName: string, source: string): string {
  const defs = (schema.$defs ?? {}) as Record<string, Schema>;
  const named = new Map<string, string>(); // type name -> declaration
  const order: string[] = [];
  const nameOfDef = (d: string): string => {
    const t = defs[d]?.title;
    return typeof t === 'string' && IDENT.test(t) ? t : pascal(d);
  };

  const doc = (s: Schema, indent: string): string =>
    typeof s.description === 'string' ? `${indent}/** ${s.description.replace(/\*\//g, '*\\/')} */\n` : '';

  function declare(name: string, s: Schema): string {
    if (!named.has(name)) {
      named.set(name, '');
      const body = ts(s, '', true);
      named.set(name, `${doc(s, '')}${body.startsWith('{\n') ? `export interface ${name} ${body}` : `export type ${name} = ${body};`}\n`);
      order.push(name);
    }
    return name;
  }

  function ts(s: Schema, indent: string, top = false): string {
    if (!top && typeof s.title === 'string' && IDENT.test(s.title)) return declare(s.title, s);
    const parts: string[] = [];
    if (typeof s.$ref === 'string') {
      const m = /^#\/\$defs\/(.+)$/.exec(s.$ref);
      if (m === null) throw new Error(`unsupported $ref ${s.$ref}`);
      parts.push(declare(nameOfDef(m[1]!), defs[m[1]!]!));
      if (s.properties === undefined) return parts[0]!;
    }
    if (s.const !== undefined) return lit(s.const);
    if (Array.isArray(s.enum)) return s.enum.map(lit).join(' | ');
    if (Array.isArray(s.oneOf)) return s.oneOf.map((x) => ts(x as Schema, indent)).join(' | ');
    const types = Array.isArray(s.type)
      ? (s.type as string[])
      : typeof s.type === 'string'
        ? [s.type]
        : s.properties !== undefined
          ? ['object']
          : [];
    if (types.length === 0) throw new Error(`cannot type ${JSON.stringify(s).slice(0, 80)}`);
    const alts = types.map((t) => {
      switch (t) {
        case 'string':
          return 'string';
        case 'number':
        case 'integer':
          return 'number';
        case 'boolean':
          return 'boolean';
        case 'null':
          return 'null';
        case 'array':
          if (Array.isArray(s.prefixItems)) return `[${s.prefixItems.map((x) => ts(x as Schema, indent)).join(', ')}]`;
          return `${wrap(ts((s.items ?? {}) as Schema, indent))}[]`;
        case 'object':
          return objectType(s, indent);
        default:
          throw new Error(`unsupported type ${t}`);
      }
    });
    parts.push(alts.join(' | '));
    return parts.join(' & ');
  }

  function wrap(t: string): string {
    return /[|&]/.test(t) && !t.startsWith('{') ? `(${t})` : t;
  }

  function objectType(s: Schema, indent: string): string {
    const props = (s.properties ?? {}) as Record<string, Schema>;
    const required = new Set((s.required ?? []) as string[]);
    const extra = s.additionalProperties;
    const inner = `${indent}  `;
    const lines: string[] = [];
    for (const [k, v] of Object.entries(props)) {
      const key = /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(k) ? k : lit(k);
      lines.push(`${doc(v, inner)}${inner}${key}${required.has(k) ? '' : '?'}: ${ts(v, inner)};`);
    }
    if (extra !== undefined && extra !== false && typeof extra === 'object') {
      if (lines.length === 0) return `Record<string, ${ts(extra as Schema, indent)}>`;
      lines.push(`${inner}[key: string]: ${ts(extra as Schema, inner)};`);
    }
    if (lines.length === 0) return 'Record<string, unknown>';
    return `{\n${lines.join('\n')}\n${indent}}`;
  }

  declare(rootName, schema);
  const patterns = Object.entries(defs)
    .filter(([, d]) => d.type === 'string' && typeof d.pattern === 'string')
    .map(
      ([k, d]) =>
        `export const ${k.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()}_PATTERN = /${(d.pattern as string).replace(/\//g, '\\/')}/;\n`,
    );
  return (
    `// Generated by \`npm run results:types\` (scripts/results-types.ts) from ${source}. Do not edit:\n` +
    '// change the schema and run the script again.\n\n' +
    [...patterns, ...order.map((n) => named.get(n)!)].join('\n')
  );
}

export function resultsTypesSource(root = packageRoot()): string {
  const schema = JSON.parse(readFileSync(join(root, RESULTS_SCHEMA), 'utf8')) as Schema;
  return renderSchemaTypes(schema, 'AdapterCompressResults', RESULTS_SCHEMA);
}

if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))) {
  const file = join(packageRoot(), RESULTS_TYPES);
  writeFileAtomic(file, resultsTypesSource());
  console.log(`wrote ${file}`);
}
