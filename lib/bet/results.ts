// The bet's results: per user and condition, perplexity, bits per byte and their bootstrap
// intervals on the validation and the test split, the encoded sizes and quantisation parameters,
// the per-user policy (chosen on validation, reported on test), the verdicts (on test), and the
// provenance (held-out text identifiers, base-model fingerprint, criteria hash and registration
// time, versions, seed).
//
// The file (default results/53_adapter_compress.json) is written atomically after every change:
// at the start (status "running", no users: the criteria's sha256 and registration time are on
// disk before any evaluation), after each user (verdicts and policy summary recomputed over the
// users done so far), and at the end ("complete") or on an error ("failed", with the message; the
// users done are kept). It carries a checksum: sha256 of the canonical JSON (criteria.ts) of the
// object without "checksum". Its JSON Schema, lib/bet/schema/adapter-compress.schema.json, is the
// one description of the format: the types (results-types.ts) are generated from it, the writer
// checks every state against it and the reader every file. The jobs live apart: results-format.ts
// (names, paths), results-analysis.ts (statistics of a user), results-writer.ts, results-reader.ts
// (schema, rules, checksum and the recomputation of every derived number).

export * from './results-format.js';
export * from './results-analysis.js';
export * from './results-writer.js';
export * from './results-reader.js';
export type {
  AdapterCompressResults,
  BaseModelFingerprint,
  BootstrapSettings,
  ConditionStats,
  EncodingInfo,
  Estimate,
  ResultsStatus,
  RunConfig,
  SeedRunResult,
  SplitStats,
  TextId,
  UserPolicy,
  UserResult,
  UserSeeds,
} from './results-types.js';
