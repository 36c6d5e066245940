// Flag parsing shared by the commands: strict parseArgs and flag readers
// whose errors name the flag and what was expected (exit code 2 via UsageError);
// numeric flags are range-checked by lib/cli/limits.ts.

import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';

import { TERNARISE_CHOICES, type Ternarise } from '../model/model.js';

export class UsageError extends Error {}

/** What a command returns for --help: the caller prints the usage. */
export const SHOW_HELP = -1;

export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WriteStream;
}

export type Values = Record<string, string | boolean | undefined>;

export function parse(argv: string[], options: NonNullable<ParseArgsConfig['options']>): Values {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: 'boolean' } }, strict: true, allowPositionals: false })
      .values as Values;
  } catch (err) {
    throw new UsageError(flagError(err, argv));
  }
}

/** Like parse, also returning the positional arguments. */
export function parseWithPositionals(
  argv: string[],
  options: NonNullable<ParseArgsConfig['options']>,
): { values: Values; positionals: string[] } {
  try {
    const r = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean' } }, strict: true, allowPositionals: true });
    return { values: r.values as Values, positionals: r.positionals };
  } catch (err) {
    throw new UsageError(flagError(err, argv));
  }
}

/** parseArgs' error as one line in this CLI's words (its own messages span lines and speak of "options"). */
function flagError(err: unknown, argv: string[]): string {
  const e = err as { code?: string; message?: string };
  const message = String(e.message ?? err);
  const flag = /'(--?[^' <]+)/.exec(message)?.[1];
  switch (e.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown flag '${flag}'`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument '${/'([^']*)'/.exec(message)?.[1]}' (values follow their flags: --flag value)`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      if (flag === undefined) break;
      if (/does not take an argument/.test(message)) return `${flag} takes no value`;
      if (/ambiguous/.test(message)) {
        const value = argv[argv.indexOf(flag) + 1];
        return `${flag} needs a value; '${value}' reads as a flag (a value starting with '-' is written ${flag}=${value})`;
      }
      return `${flag} needs a value`;
    }
  }
  return message.split('\n')[0]!;
}

export const S = { type: 'string' } as const;

export function required(v: Values, name: string): string {
  const raw = v[name];
  if (typeof raw !== 'string' || raw === '') throw new UsageError(`--${name} is required`);
  return raw;
}

/** Drops undefined values, so defaults apply. */
export function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, x]) => x !== undefined)) as Partial<T>;
}

export function ensureDir(file: string): void {
  mkdirSync(dirname(resolve(file)), { recursive: true });
}

/**
 * --ternarise per-tensor|per-row, for every command that loads a model: how a GGUF's float matrices
 * that are not ternary are ternarised on load (absmean, post-training quantisation). Default per-tensor.
 */
export function ternariseFlag(v: Values): Ternarise | undefined {
  const t = v.ternarise;
  if (t === undefined) return undefined;
  if (typeof t !== 'string' || !(TERNARISE_CHOICES as readonly string[]).includes(t)) {
    throw new UsageError(`--ternarise must be ${TERNARISE_CHOICES.join(' or ')}, got '${String(t)}'`);
  }
  return t as Ternarise;
}

/** The usage line of --ternarise. */
export const TERNARISE_USAGE = '[--ternarise per-tensor|per-row (a GGUF of float weights: absmean scale per tensor or per row)]';
