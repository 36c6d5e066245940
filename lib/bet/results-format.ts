// Where the bet's results file lives and what it is called: its format name and version, the default
// path, its JSON Schema (the one description of the format: lib/bet/results-types.ts is generated
// from it and lib/bet/results-reader.ts checks every file against it), and the two splits.

import { join } from 'node:path';

import { packageRoot } from '../util/package-root.js';

export const RESULTS_FORMAT = 'ternorm-adapter-compress';
/** Version 2 records the run configuration (run) and restricts user names. */
export const RESULTS_VERSION = 2;
export const DEFAULT_RESULTS_PATH = join('results', '53_adapter_compress.json');
/** The JSON Schema of the results file, relative to the package root. */
export const RESULTS_SCHEMA_FILE = join('lib', 'bet', 'schema', 'adapter-compress.schema.json');

export function resultsSchemaPath(): string {
  return join(packageRoot(), RESULTS_SCHEMA_FILE);
}

/** A sha256 as 64 lowercase hex digits. */
export const HEX64 = /^[0-9a-f]{64}$/;

export type SplitName = 'validation' | 'test';
export const SPLITS: readonly SplitName[] = ['validation', 'test'];

/** "results: ..." errors of the analysis and the writer. */
export function fail(msg: string): never {
  throw new Error(`results: ${msg}`);
}
