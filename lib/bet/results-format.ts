// Where the bet's results file lives and what it is called: its format name and version, the default
// path, its JSON Schema (the one description of the format: lib/bet/results-types.ts is generated
// from it and lib/bet/results-reader.ts checks every file against it), and the two splits.

import { join } from 'node:path';

import { packageRoot } from '../util/package-root.js';
import { USER_NAME_PATTERN } from './results-types.js';

export const RESULTS_FORMAT = 'ternorm-adapter-compress';
/** Version 2 records the run configuration (run) and restricts user names. */
export const RESULTS_VERSION = 2;
export const DEFAULT_RESULTS_PATH = join('results', '53_adapter_compress.json');
/** The JSON Schema of the results file, relative to the package root. */
export const RESULTS_SCHEMA_FILE = join('lib', 'bet', 'schema', 'adapter-compress.schema.json');

export function resultsSchemaPath(): string {
  return join(packageRoot(), RESULTS_SCHEMA_FILE);
}

export type SplitName = 'validation' | 'test';
export const SPLITS: readonly SplitName[] = ['validation', 'test'];

/**
 * Returns `name` if it is a valid user name (the schema's userName: 1-64 letters, digits, '_', '.'
 * or '-', starting with a letter or digit), else throws naming `where`.
 */
export function checkUserName(name: unknown, where: string): string {
  if (typeof name !== 'string' || !USER_NAME_PATTERN.test(name)) {
    throw new Error(
      `${where}: user name ${JSON.stringify(name)} must be 1-64 letters, digits, '_', '.' or '-' (starting with a letter or digit)`,
    );
  }
  return name;
}

/** "results: ..." errors of the analysis and the writer. */
export function fail(msg: string): never {
  throw new Error(`results: ${msg}`);
}
