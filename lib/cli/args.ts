// Flag parsing shared by the commands: strict parseArgs, typed flag readers
// whose errors name the flag and what was expected (exit code 2 via UsageError).

import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';

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
    throw new UsageError((err as Error).message);
  }
}

/** Like parse, also returning the positional arguments. */
export function parseWithPositionals(argv: string[], options: NonNullable<ParseArgsConfig['options']>): { values: Values; positionals: string[] } {
  try {
    const r = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean' } }, strict: true, allowPositionals: true });
    return { values: r.values as Values, positionals: r.positionals };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export const S = { type: 'string' } as const;

export function intFlag(v: Values, name: string, lo = 0, hi = Number.MAX_SAFE_INTEGER): number | undefined {
  const raw = v[name];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (typeof raw !== 'string' || !/^[0-9]+$/.test(raw) || !Number.isSafeInteger(n) || n < lo || n > hi) {
    throw new UsageError(`--${name} must be an integer in ${lo}..${hi}, got '${String(raw)}'`);
  }
  return n;
}

export function numFlag(v: Values, name: string): number | undefined {
  const raw = v[name];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (typeof raw !== 'string' || raw.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got '${String(raw)}'`);
  return n;
}

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

