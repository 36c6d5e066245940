// Flag parsing shared by the commands: strict parseArgs and flag readers
// whose errors name the flag and what was expected (exit code 2 via UsageError);
// numeric flags are range-checked by lib/cli/limits.ts.

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
export function parseWithPositionals(
  argv: string[],
  options: NonNullable<ParseArgsConfig['options']>,
): { values: Values; positionals: string[] } {
  try {
    const r = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean' } }, strict: true, allowPositionals: true });
    return { values: r.values as Values, positionals: r.positionals };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
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
