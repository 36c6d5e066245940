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
// object without "checksum". Its JSON Schema is lib/bet/schema/adapter-compress.schema.json.
// readResults checks the shape, the checksum, and recomputes what is derived (perplexities from
// mean NLLs, ratios, policy choices, verdicts, policy summary).

import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { MIN_TEST_TOKENS, type ByteRange } from '../data/fixtures.js';
import { writeFileAtomic } from '../util/files.js';
import { sha256Hex } from '../util/hash.js';
import { packageRoot } from '../util/package-root.js';
import { canonicalJson, checkConditionName, CRITERIA_VERSION, validateCriteria, type Criteria, type LoadedCriteria } from './criteria.js';
import { choosePolicy, policyOnTest, summarisePolicy, type PolicyChoice, type PolicySummary } from './policy.js';
import {
  checkNll,
  DEFAULT_CONFIDENCE,
  DEFAULT_RESAMPLES,
  deriveSeed,
  PairedBootstrap,
  perplexity,
  seedSpread,
  type Interval,
  type NllArray,
  type SeedSpread,
} from './stats.js';
import { computeVerdicts, schemesOf, type SchemeVerdict } from './verdicts.js';

export const RESULTS_FORMAT = 'ternorm-adapter-compress';
export const RESULTS_VERSION = 1;
export const DEFAULT_RESULTS_PATH = join('results', '53_adapter_compress.json');
/** The JSON Schema of the results file, relative to the package root. */
export const RESULTS_SCHEMA_FILE = join('lib', 'bet', 'schema', 'adapter-compress.schema.json');

export function resultsSchemaPath(): string {
  return join(packageRoot(), RESULTS_SCHEMA_FILE);
}

export type SplitName = 'validation' | 'test';
export const SPLITS: readonly SplitName[] = ['validation', 'test'];

/** Identifies a held-out text: which fixture text and part, its byte ranges in the text, its sha256. */
export interface TextId {
  fixture: string;
  part: SplitName;
  ranges: ByteRange[];
  bytes: number;
  sha256: string;
}

/** A point estimate and its bootstrap interval. */
export interface Estimate {
  value: number;
  ci: Interval;
}

export interface ConditionStats {
  /** Mean per-token NLL, nats. */
  meanNll: number;
  /** exp(meanNll). */
  ppl: Estimate;
  /** Bits per byte of the split's text. */
  bpb: Estimate;
  /** ppl / ppl(reference), paired interval; null for the reference itself. */
  ratioToReference: Estimate | null;
  /** ppl / ppl(no adapter), paired interval; null for the no-adapter condition itself. */
  ratioToNoAdapter: Estimate | null;
}

export interface SplitStats {
  tokens: number;
  bytes: number;
  bootstrap: { seed: number; resamples: number; confidence: number; blockLength: number };
  conditions: Record<string, ConditionStats>;
}

/** An encoding of the user's adapter: exact encoded size and the quantisation parameters. */
export interface EncodingInfo {
  bytes: number;
  /** E.g. { scale: [...] }, { scale: [...], zeroPoint: [...] }, { centroids: [...] }. */
  params: Record<string, number[]>;
}

export interface UserPolicy extends PolicyChoice {
  /** The chosen encoding on the test split. */
  test: { ppl: Estimate; ratioToReference: Estimate; ratioToNoAdapter: Estimate; holds: boolean };
}

export interface SeedRunResult {
  seed: number;
  /** Test-split perplexity per condition evaluated for this seed. */
  ppl: Record<string, number>;
}

export interface UserSeeds {
  runs: SeedRunResult[];
  /** Per condition evaluated in every run: spread of ppl, and of ppl / ppl(reference) (null for the reference). */
  spread: Record<string, { ppl: SeedSpread; ratioToReference: SeedSpread | null }>;
}

export interface UserResult {
  user: string;
  texts: Record<SplitName, TextId>;
  encodings: Record<string, EncodingInfo>;
  validation: SplitStats;
  test: SplitStats;
  policy: UserPolicy;
  seeds: UserSeeds | null;
}

export interface BaseModelFingerprint {
  name: string;
  /** sha256 of the model file. */
  sha256: string;
  config: Record<string, string | number | boolean>;
}

export type ResultsStatus = 'running' | 'complete' | 'failed';

export interface BootstrapSettings {
  method: 'circular-block';
  interval: 'percentile';
  resamples: number;
  confidence: number;
  /** Tokens per block, or 'auto' = ceil(n^(1/3)) per split (the length used is in each split's stats). */
  blockLength: number | 'auto';
  /** Fewest tokens accepted in a split. */
  minTokens: number;
}

export interface AdapterCompressResults {
  format: typeof RESULTS_FORMAT;
  version: typeof RESULTS_VERSION;
  status: ResultsStatus;
  error: string | null;
  startedAt: string;
  updatedAt: string;
  /** Run seed (bootstrap streams are derived from it per user and split). */
  seed: number;
  /** Adapter-training seeds per user (--seeds N). */
  seeds: number;
  versions: Record<string, string>;
  baseModel: BaseModelFingerprint;
  criteria: { sha256: string; registeredAt: string; source: string; criteria: Criteria };
  bootstrap: BootstrapSettings;
  /** Every condition evaluated, in display order. */
  conditions: string[];
  users: UserResult[];
  /** Over the users done so far, on the test split; empty before the first user. */
  verdicts: SchemeVerdict[];
  policy: PolicySummary;
  checksum: string;
}

// ---- analysis of one user -----------------------------------------------------------------------

/** Per-token NLLs of one split under every condition, all on the same tokens. */
export interface SplitLosses {
  /** Bytes of the split's text (for bits per byte). */
  bytes: number;
  nll: Readonly<Record<string, NllArray>>;
}

/** What the model engine produces for one user. */
export interface UserEvaluation {
  user: string;
  texts: Record<SplitName, TextId>;
  /** Every condition except the no-adapter baseline. */
  encodings: Readonly<Record<string, EncodingInfo>>;
  validation: SplitLosses;
  test: SplitLosses;
  /** With --seeds N: the test-split NLLs of adapters trained with each seed (any subset of conditions including the reference). */
  seedRuns?: readonly { seed: number; nll: Readonly<Record<string, NllArray>> }[];
}

export interface AnalysisContext {
  criteria: Criteria;
  conditions: readonly string[];
  seed: number;
  bootstrap: BootstrapSettings;
}

const HEX64 = /^[0-9a-f]{64}$/;

function fail(msg: string): never {
  throw new Error(`results: ${msg}`);
}

function checkTextId(t: unknown, user: string, split: SplitName): TextId {
  const w = `user "${user}" ${split} text`;
  if (t === null || typeof t !== 'object') fail(`${w}: expected { fixture, part, ranges, bytes, sha256 }`);
  const o = t as Record<string, unknown>;
  if (typeof o.fixture !== 'string' || o.fixture === '') fail(`${w}: "fixture" must be a non-empty string`);
  if (o.part !== split) fail(`${w}: "part" must be "${split}", got ${JSON.stringify(o.part)}`);
  if (typeof o.sha256 !== 'string' || !HEX64.test(o.sha256)) fail(`${w}: "sha256" must be 64 lowercase hex digits`);
  if (typeof o.bytes !== 'number' || !Number.isSafeInteger(o.bytes) || o.bytes <= 0) fail(`${w}: "bytes" must be a positive integer`);
  if (!Array.isArray(o.ranges) || o.ranges.length === 0) fail(`${w}: "ranges" must be a non-empty array of [start, end) byte ranges`);
  let total = 0;
  let prev = 0;
  for (const r of o.ranges as unknown[]) {
    if (!Array.isArray(r) || r.length !== 2 || !r.every((x) => Number.isSafeInteger(x)) || r[0] < prev || r[1] <= r[0]) {
      fail(`${w}: bad byte range ${JSON.stringify(r)}; expected sorted, non-overlapping [start, end) with start < end`);
    }
    prev = r[1];
    total += r[1] - r[0];
  }
  if (total !== o.bytes) fail(`${w}: its ranges cover ${total} bytes but "bytes" is ${o.bytes}`);
  return { fixture: o.fixture, part: split, ranges: (o.ranges as ByteRange[]).map(([s, e]) => [s, e]), bytes: o.bytes, sha256: o.sha256 };
}

function checkEncoding(e: unknown, user: string, c: string): EncodingInfo {
  const w = `user "${user}" encoding "${c}"`;
  if (e === null || typeof e !== 'object') fail(`${w}: expected { bytes, params }`);
  const o = e as Record<string, unknown>;
  if (typeof o.bytes !== 'number' || !Number.isSafeInteger(o.bytes) || o.bytes <= 0) {
    fail(`${w}: "bytes" must be the positive integer encoded size, got ${String(o.bytes)}`);
  }
  if (o.params === null || typeof o.params !== 'object' || Array.isArray(o.params)) fail(`${w}: "params" must be an object of name -> number[]`);
  const params: Record<string, number[]> = {};
  for (const [k, v] of Object.entries(o.params as Record<string, unknown>)) {
    const arr = ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>) : v;
    if (!Array.isArray(arr) || !arr.every((x) => typeof x === 'number' && Number.isFinite(x))) {
      fail(`${w}: parameter "${k}" must be an array of finite numbers`);
    }
    params[k] = arr as number[];
  }
  return { bytes: o.bytes, params };
}

function analyseSplit(user: string, split: SplitName, losses: SplitLosses, ctx: AnalysisContext): SplitStats {
  const w = `user "${user}" ${split} split`;
  if (losses === null || typeof losses !== 'object' || losses.nll === null || typeof losses.nll !== 'object') {
    fail(`${w}: expected { bytes, nll: { condition: Float64Array | Float32Array } }`);
  }
  const got = Object.keys(losses.nll);
  const missing = ctx.conditions.filter((c) => !got.includes(c));
  const extra = got.filter((c) => !ctx.conditions.includes(c));
  if (missing.length > 0 || extra.length > 0) {
    fail(`${w}: conditions differ from the run's` + (missing.length > 0 ? `; missing: ${missing.join(', ')}` : '') + (extra.length > 0 ? `; unexpected: ${extra.join(', ')}` : ''));
  }
  const series: Record<string, NllArray> = {};
  let n = -1;
  for (const c of ctx.conditions) {
    const a = checkNll(losses.nll[c], `${w}, condition "${c}"`, ctx.bootstrap.minTokens);
    if (n >= 0 && a.length !== n) fail(`${w}: condition "${c}" has ${a.length} tokens, "${ctx.conditions[0]}" has ${n}; every condition must score the same tokens`);
    n = a.length;
    series[c] = a;
  }
  if (typeof losses.bytes !== 'number' || !Number.isSafeInteger(losses.bytes) || losses.bytes <= 0) {
    fail(`${w}: "bytes" must be the positive integer byte count of the text, got ${String(losses.bytes)}`);
  }
  const seed = deriveSeed(ctx.seed, 'bootstrap', user, split);
  const pb = new PairedBootstrap(series, {
    seed,
    resamples: ctx.bootstrap.resamples,
    confidence: ctx.bootstrap.confidence,
    blockLength: ctx.bootstrap.blockLength,
  });
  const { reference, noAdapter } = ctx.criteria.conditions;
  const conditions: Record<string, ConditionStats> = {};
  for (const c of ctx.conditions) {
    const ppl = pb.perplexity(c);
    conditions[c] = {
      meanNll: pb.meanNll(c),
      ppl: { value: ppl, ci: pb.perplexityCi(c) },
      bpb: { value: pb.bitsPerByte(c, losses.bytes), ci: pb.bitsPerByteCi(c, losses.bytes) },
      ratioToReference: c === reference ? null : { value: ppl / pb.perplexity(reference), ci: pb.ratioCi(c, reference) },
      ratioToNoAdapter: c === noAdapter ? null : { value: ppl / pb.perplexity(noAdapter), ci: pb.ratioCi(c, noAdapter) },
    };
  }
  return {
    tokens: n,
    bytes: losses.bytes,
    bootstrap: { seed, resamples: pb.resamples, confidence: pb.confidence, blockLength: pb.blockLength },
    conditions,
  };
}

function pointPpl(s: SplitStats): Record<string, number> {
  return Object.fromEntries(Object.entries(s.conditions).map(([c, v]) => [c, v.ppl.value]));
}

function estimateOf(e: Estimate | null, what: string): Estimate {
  if (e === null) fail(`${what} is missing`);
  return e;
}

function userPolicy(validation: SplitStats, test: SplitStats, encodings: Record<string, EncodingInfo>, criteria: Criteria, user: string): UserPolicy {
  const bytes = Object.fromEntries(Object.entries(encodings).map(([c, e]) => [c, e.bytes]));
  // the choice sees the validation split only
  const choice = choosePolicy(pointPpl(validation), bytes, criteria);
  const outcome = policyOnTest(choice.choice, pointPpl(test), criteria);
  const t = test.conditions[choice.choice]!;
  const { reference } = criteria.conditions;
  const ratioToReference: Estimate =
    choice.choice === reference ? { value: 1, ci: { low: 1, high: 1 } } : estimateOf(t.ratioToReference, `user "${user}" test ratio of "${choice.choice}"`);
  return {
    ...choice,
    test: {
      ppl: t.ppl,
      ratioToReference,
      ratioToNoAdapter: estimateOf(t.ratioToNoAdapter, `user "${user}" test ratio to no adapter of "${choice.choice}"`),
      holds: outcome.holds,
    },
  };
}

function analyseSeeds(ev: UserEvaluation, tokens: number, ctx: AnalysisContext): UserSeeds | null {
  const runs = ev.seedRuns;
  if (runs === undefined || runs.length === 0) return null;
  const { reference } = ctx.criteria.conditions;
  const seen = new Set<number>();
  const results: SeedRunResult[] = runs.map((r, i) => {
    const w = `user "${ev.user}" seed run ${i}`;
    if (typeof r.seed !== 'number' || !Number.isSafeInteger(r.seed) || r.seed < 0) fail(`${w}: "seed" must be a non-negative integer`);
    if (seen.has(r.seed)) fail(`${w}: seed ${r.seed} appears twice`);
    seen.add(r.seed);
    if (r.nll === null || typeof r.nll !== 'object' || !(reference in r.nll)) fail(`${w}: needs the test NLLs of at least the reference "${reference}"`);
    const ppl: Record<string, number> = {};
    for (const c of Object.keys(r.nll)) {
      if (!ctx.conditions.includes(c)) fail(`${w}: unknown condition "${c}"`);
      const a = checkNll(r.nll[c], `${w}, condition "${c}"`, ctx.bootstrap.minTokens);
      if (a.length !== tokens) fail(`${w}: condition "${c}" has ${a.length} tokens but the test split has ${tokens}; seed runs score the same test text`);
      ppl[c] = perplexity(a);
    }
    return { seed: r.seed, ppl };
  });
  const spread: UserSeeds['spread'] = {};
  for (const c of ctx.conditions) {
    if (!results.every((r) => c in r.ppl)) continue;
    spread[c] = {
      ppl: seedSpread(results.map((r) => r.ppl[c]!)),
      ratioToReference: c === reference ? null : seedSpread(results.map((r) => r.ppl[c]! / r.ppl[reference]!)),
    };
  }
  return { runs: results, spread };
}

/** Analyses one user's evaluation: statistics of both splits, the policy (validation -> test), the seed spread. */
export function analyseUser(ev: UserEvaluation, ctx: AnalysisContext): UserResult {
  if (ev === null || typeof ev !== 'object') fail('expected a user evaluation object');
  if (typeof ev.user !== 'string' || ev.user === '') fail('"user" must be a non-empty string');
  const texts = {
    validation: checkTextId(ev.texts?.validation, ev.user, 'validation'),
    test: checkTextId(ev.texts?.test, ev.user, 'test'),
  };
  if (ev.encodings === null || typeof ev.encodings !== 'object') fail(`user "${ev.user}": "encodings" must be an object of condition -> { bytes, params }`);
  const { noAdapter } = ctx.criteria.conditions;
  const wantEnc = ctx.conditions.filter((c) => c !== noAdapter);
  const gotEnc = Object.keys(ev.encodings);
  for (const c of gotEnc) {
    if (c === noAdapter) fail(`user "${ev.user}": "${noAdapter}" is the no-adapter baseline and has no encoding`);
    if (!wantEnc.includes(c)) fail(`user "${ev.user}": encoding of unknown condition "${c}"`);
  }
  const encodings: Record<string, EncodingInfo> = {};
  for (const c of wantEnc) {
    if (!(c in ev.encodings)) fail(`user "${ev.user}": no encoding (size and parameters) for condition "${c}"`);
    encodings[c] = checkEncoding(ev.encodings[c], ev.user, c);
  }
  const validation = analyseSplit(ev.user, 'validation', ev.validation, ctx);
  const test = analyseSplit(ev.user, 'test', ev.test, ctx);
  for (const split of SPLITS) {
    const s = split === 'validation' ? validation : test;
    if (s.bytes !== texts[split].bytes) fail(`user "${ev.user}" ${split}: the losses are for ${s.bytes} bytes but the text id says ${texts[split].bytes}`);
  }
  return {
    user: ev.user,
    texts,
    encodings,
    validation,
    test,
    policy: userPolicy(validation, test, encodings, ctx.criteria, ev.user),
    seeds: analyseSeeds(ev, test.tokens, ctx),
  };
}

/** Verdicts (test split) and policy summary over the users done. */
export function summarise(users: readonly UserResult[], conditions: readonly string[], criteria: Criteria): { verdicts: SchemeVerdict[]; policy: PolicySummary } {
  const verdicts =
    users.length === 0
      ? []
      : computeVerdicts(
          users.map((u) => ({ user: u.user, ppl: pointPpl(u.test) })),
          schemesOf(conditions, criteria),
          criteria,
        );
  const policy = summarisePolicy(
    users.map((u) => ({ user: u.user, choice: u.policy.choice, bytes: u.policy.bytes, fallback: u.policy.fallback, holdsOnTest: u.policy.test.holds })),
  );
  return { verdicts, policy };
}

// ---- the writer ---------------------------------------------------------------------------------

export interface ResultsHeader {
  seed: number;
  /** Adapter-training seeds per user; default 1. */
  seeds?: number;
  /** Extra versions (e.g. the addon's); ternorm, node and the file formats are filled in. */
  versions?: Record<string, string>;
  baseModel: BaseModelFingerprint;
  criteria: LoadedCriteria;
  conditions: readonly string[];
  bootstrap?: { resamples?: number; confidence?: number; blockLength?: number | 'auto' };
  /** Fewest tokens accepted in a split; default MIN_TEST_TOKENS. */
  minTokens?: number;
}

/** ternorm's version, Node's, and the file formats' versions. */
export function defaultVersions(): Record<string, string> {
  const pj = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version?: unknown };
  return {
    ternorm: typeof pj.version === 'string' ? pj.version : 'unknown',
    node: process.version,
    resultsFormat: String(RESULTS_VERSION),
    criteriaFormat: String(CRITERIA_VERSION),
  };
}

function buildHeader(h: ResultsHeader, now: string): Omit<AdapterCompressResults, 'checksum'> {
  if (h === null || typeof h !== 'object') fail('expected a header object');
  if (typeof h.seed !== 'number' || !Number.isSafeInteger(h.seed) || h.seed < 0) fail(`"seed" must be an integer in [0, 2^53), got ${String(h.seed)}`);
  const seeds = h.seeds ?? 1;
  if (!Number.isSafeInteger(seeds) || seeds < 1) fail(`"seeds" must be a positive integer, got ${String(seeds)}`);
  const bm = h.baseModel;
  if (bm === null || typeof bm !== 'object' || typeof bm.name !== 'string' || typeof bm.sha256 !== 'string' || !HEX64.test(bm.sha256)) {
    fail('"baseModel" must be { name, sha256 (64 lowercase hex), config }');
  }
  const config: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(bm.config ?? {})) {
    if (!(typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v)))) fail(`"baseModel.config.${k}" must be a string, finite number or boolean`);
    config[k] = v;
  }
  const criteria = validateCriteria(JSON.parse(JSON.stringify(h.criteria?.criteria ?? null)), 'results header');
  const sha = sha256Hex(canonicalJson(criteria));
  if (h.criteria.sha256 !== sha) fail(`the criteria's sha256 ${String(h.criteria.sha256)} does not match their content (${sha})`);
  if (!Array.isArray(h.conditions) || h.conditions.length === 0) fail('"conditions" must be a non-empty array of condition names');
  const conditions = h.conditions.map((c, i) => checkConditionName(c, `results: conditions[${i}]`));
  if (new Set(conditions).size !== conditions.length) fail(`"conditions" has a repeated name: ${conditions.join(', ')}`);
  for (const [role, name] of Object.entries(criteria.conditions)) {
    if (!conditions.includes(name)) fail(`the criteria's ${role} condition "${name}" is not among the conditions (${conditions.join(', ')})`);
  }
  const b = h.bootstrap ?? {};
  const resamples = b.resamples ?? DEFAULT_RESAMPLES;
  const confidence = b.confidence ?? DEFAULT_CONFIDENCE;
  const blockLength = b.blockLength ?? 'auto';
  if (!Number.isSafeInteger(resamples) || resamples < 2) fail(`bootstrap resamples must be an integer >= 2, got ${String(resamples)}`);
  if (!(confidence > 0 && confidence < 1)) fail(`bootstrap confidence must be in (0, 1), got ${String(confidence)}`);
  if (blockLength !== 'auto' && !(Number.isSafeInteger(blockLength) && blockLength >= 1)) fail(`bootstrap blockLength must be a positive integer or 'auto', got ${String(blockLength)}`);
  const minTokens = h.minTokens ?? MIN_TEST_TOKENS;
  if (!Number.isSafeInteger(minTokens) || minTokens < 2) fail(`"minTokens" must be an integer >= 2, got ${String(minTokens)}`);
  const versions = { ...defaultVersions(), ...(h.versions ?? {}) };
  for (const [k, v] of Object.entries(versions)) if (typeof v !== 'string') fail(`"versions.${k}" must be a string`);
  return {
    format: RESULTS_FORMAT,
    version: RESULTS_VERSION,
    status: 'running',
    error: null,
    startedAt: now,
    updatedAt: now,
    seed: h.seed,
    seeds,
    versions,
    baseModel: { name: bm.name, sha256: bm.sha256, config },
    criteria: { sha256: sha, registeredAt: now, source: String(h.criteria.source), criteria },
    bootstrap: { method: 'circular-block', interval: 'percentile', resamples, confidence, blockLength, minTokens },
    conditions,
    users: [],
    verdicts: [],
    policy: summarisePolicy([]),
  };
}

function withChecksum(body: Omit<AdapterCompressResults, 'checksum'>): AdapterCompressResults {
  const { checksum: _drop, ...rest } = body as AdapterCompressResults;
  return { ...rest, checksum: sha256Hex(canonicalJson(rest)) };
}

/**
 * Writes the results file incrementally and atomically. start() registers the criteria (sha256
 * and timestamp) on disk before any evaluation; addUser() analyses and appends one user;
 * complete() / fail() close the run. A failed user (bad input) throws from addUser and leaves the
 * file as it was; fail() then records the error keeping every user done.
 */
export class ResultsWriter {
  private state: Omit<AdapterCompressResults, 'checksum'>;

  private constructor(
    readonly path: string,
    state: Omit<AdapterCompressResults, 'checksum'>,
    private readonly clock: () => Date,
  ) {
    this.state = state;
  }

  /**
   * Starts a run: writes the header (status "running", no users). An existing results file is not
   * replaced unless `overwrite` is set, so users done by an earlier run are not lost by accident
   * (continue that run with resume()).
   */
  static start(path: string, header: ResultsHeader, options: { now?: () => Date; overwrite?: boolean } = {}): ResultsWriter {
    const clock = options.now ?? (() => new Date());
    if (options.overwrite !== true && existsSync(path)) {
      let what = 'an unreadable results file';
      try {
        const old = readResults(path);
        what = `a ${old.status} run with ${old.users.length} user(s) done`;
      } catch {
        // described as unreadable
      }
      fail(`${path} already holds ${what}; resume it, choose another path, or overwrite it explicitly`);
    }
    const w = new ResultsWriter(path, buildHeader(header, clock().toISOString()), clock);
    w.write();
    return w;
  }

  /**
   * Continues an interrupted or failed run from its file: the users done are kept (doneUsers),
   * provided the seed, criteria, conditions and bootstrap settings are the same.
   */
  static resume(path: string, header: ResultsHeader, options: { now?: () => Date } = {}): ResultsWriter {
    const clock = options.now ?? (() => new Date());
    const old = readResults(path);
    const fresh = buildHeader(header, clock().toISOString());
    if (old.status === 'complete') fail(`${path} is a complete run; start a new one instead of resuming`);
    const same = (what: string, a: unknown, b: unknown): void => {
      if (canonicalJson(a) !== canonicalJson(b)) fail(`cannot resume ${path}: its ${what} differs from this run's`);
    };
    same('seed', old.seed, fresh.seed);
    same('seed count', old.seeds, fresh.seeds);
    same('criteria (sha256)', old.criteria.sha256, fresh.criteria.sha256);
    same('conditions', old.conditions, fresh.conditions);
    same('bootstrap settings', old.bootstrap, fresh.bootstrap);
    same('base model', old.baseModel, fresh.baseModel);
    const { checksum: _c, ...body } = old;
    const w = new ResultsWriter(path, { ...body, status: 'running', error: null }, clock);
    w.write();
    return w;
  }

  /** A copy of the current results. */
  get results(): AdapterCompressResults {
    return withChecksum(structuredClone(this.state));
  }

  get doneUsers(): string[] {
    return this.state.users.map((u) => u.user);
  }

  /** Analyses one user's evaluation, appends it and rewrites the file. Returns the user's result. */
  addUser(ev: UserEvaluation): UserResult {
    if (this.state.status !== 'running') fail(`cannot add a user to a ${this.state.status} run`);
    if (this.doneUsers.includes(ev?.user)) fail(`user "${ev.user}" is already in the results`);
    const u = analyseUser(ev, {
      criteria: this.state.criteria.criteria,
      conditions: this.state.conditions,
      seed: this.state.seed,
      bootstrap: this.state.bootstrap,
    });
    const users = [...this.state.users, u];
    this.state = { ...this.state, users, ...summarise(users, this.state.conditions, this.state.criteria.criteria) };
    this.write();
    return structuredClone(u);
  }

  /** Marks the run complete. */
  complete(): AdapterCompressResults {
    if (this.state.users.length === 0) fail('cannot complete a run with no users');
    this.state = { ...this.state, status: 'complete', error: null };
    this.write();
    return this.results;
  }

  /** Marks the run failed with the error's message; the users done stay in the file. */
  fail(error: unknown): void {
    const msg = error instanceof Error ? error.message : String(error);
    this.state = { ...this.state, status: 'failed', error: msg === '' ? 'unknown error' : msg };
    this.write();
  }

  private write(): void {
    this.state = { ...this.state, updatedAt: this.clock().toISOString() };
    mkdirSync(dirname(this.path), { recursive: true });
    writeFileAtomic(this.path, JSON.stringify(withChecksum(this.state), null, 2) + '\n');
  }
}

// ---- reading and validation ---------------------------------------------------------------------

class Shape {
  constructor(private readonly where: string) {}

  fail(path: string, msg: string): never {
    throw new Error(`results${this.where === '' ? '' : ` (${this.where})`}: ${path} ${msg}`);
  }

  obj(v: unknown, path: string, keys: readonly string[]): Record<string, unknown> {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) this.fail(path, 'must be an object');
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!keys.includes(k)) this.fail(`${path}.${k}`, `is not a known field (expected ${keys.join(', ')})`);
    for (const k of keys) if (!(k in o)) this.fail(`${path}.${k}`, 'is missing');
    return o;
  }

  record(v: unknown, path: string): Record<string, unknown> {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) this.fail(path, 'must be an object');
    return v as Record<string, unknown>;
  }

  arr(v: unknown, path: string, min = 0): unknown[] {
    if (!Array.isArray(v) || v.length < min) this.fail(path, min > 0 ? `must be an array of at least ${min}` : 'must be an array');
    return v;
  }

  str(v: unknown, path: string, re?: RegExp): string {
    if (typeof v !== 'string' || (re !== undefined && !re.test(v))) this.fail(path, re === undefined ? 'must be a string' : `must be a string matching ${re}`);
    return v;
  }

  num(v: unknown, path: string, min = -Infinity, int = false): number {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || (int && !Number.isSafeInteger(v))) {
      this.fail(path, `must be a finite ${int ? 'integer' : 'number'}${min > -Infinity ? ` >= ${min}` : ''}, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  bool(v: unknown, path: string): boolean {
    if (typeof v !== 'boolean') this.fail(path, 'must be true or false');
    return v;
  }

  interval(v: unknown, path: string, min: number): void {
    const o = this.obj(v, path, ['low', 'high']);
    const lo = this.num(o.low, `${path}.low`, min);
    const hi = this.num(o.high, `${path}.high`, min);
    if (lo > hi) this.fail(path, `has low ${lo} > high ${hi}`);
  }

  estimate(v: unknown, path: string, min: number): number {
    const o = this.obj(v, path, ['value', 'ci']);
    this.interval(o.ci, `${path}.ci`, min);
    return this.num(o.value, `${path}.value`, min);
  }

  spread(v: unknown, path: string): void {
    const o = this.obj(v, path, ['n', 'mean', 'sd', 'min', 'max', 'maxOverMin']);
    this.num(o.n, `${path}.n`, 1, true);
    for (const k of ['mean', 'min', 'max', 'maxOverMin']) this.num(o[k], `${path}.${k}`, 0);
    if (o.sd !== null) this.num(o.sd, `${path}.sd`, 0);
  }
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

function checkShape(v: unknown, s: Shape): AdapterCompressResults {
  const top = s.obj(v, '$', [
    'format', 'version', 'status', 'error', 'startedAt', 'updatedAt', 'seed', 'seeds', 'versions', 'baseModel',
    'criteria', 'bootstrap', 'conditions', 'users', 'verdicts', 'policy', 'checksum',
  ]);
  if (top.format !== RESULTS_FORMAT) s.fail('$.format', `must be "${RESULTS_FORMAT}", got ${JSON.stringify(top.format)}`);
  if (top.version !== RESULTS_VERSION) s.fail('$.version', `is ${JSON.stringify(top.version)}; this ternorm reads results version ${RESULTS_VERSION}`);
  if (!['running', 'complete', 'failed'].includes(top.status as string)) s.fail('$.status', 'must be "running", "complete" or "failed"');
  if (top.error !== null) s.str(top.error, '$.error');
  if ((top.status === 'failed') !== (top.error !== null)) s.fail('$.error', 'must be a message exactly when the status is "failed"');
  s.str(top.startedAt, '$.startedAt', ISO_TIME);
  s.str(top.updatedAt, '$.updatedAt', ISO_TIME);
  s.num(top.seed, '$.seed', 0, true);
  s.num(top.seeds, '$.seeds', 1, true);
  for (const [k, x] of Object.entries(s.record(top.versions, '$.versions'))) s.str(x, `$.versions.${k}`);
  const bm = s.obj(top.baseModel, '$.baseModel', ['name', 'sha256', 'config']);
  s.str(bm.name, '$.baseModel.name');
  s.str(bm.sha256, '$.baseModel.sha256', HEX64);
  for (const [k, x] of Object.entries(s.record(bm.config, '$.baseModel.config'))) {
    if (!(typeof x === 'string' || typeof x === 'boolean' || (typeof x === 'number' && Number.isFinite(x)))) s.fail(`$.baseModel.config.${k}`, 'must be a string, finite number or boolean');
  }
  const cr = s.obj(top.criteria, '$.criteria', ['sha256', 'registeredAt', 'source', 'criteria']);
  s.str(cr.sha256, '$.criteria.sha256', HEX64);
  s.str(cr.registeredAt, '$.criteria.registeredAt', ISO_TIME);
  s.str(cr.source, '$.criteria.source');
  const criteria = validateCriteria(cr.criteria, 'in the results file');
  if (sha256Hex(canonicalJson(criteria)) !== cr.sha256) s.fail('$.criteria.sha256', 'does not match the recorded criteria');
  const bs = s.obj(top.bootstrap, '$.bootstrap', ['method', 'interval', 'resamples', 'confidence', 'blockLength', 'minTokens']);
  if (bs.method !== 'circular-block') s.fail('$.bootstrap.method', 'must be "circular-block"');
  if (bs.interval !== 'percentile') s.fail('$.bootstrap.interval', 'must be "percentile"');
  s.num(bs.resamples, '$.bootstrap.resamples', 2, true);
  const conf = s.num(bs.confidence, '$.bootstrap.confidence', 0);
  if (!(conf > 0 && conf < 1)) s.fail('$.bootstrap.confidence', 'must be in (0, 1)');
  if (bs.blockLength !== 'auto') s.num(bs.blockLength, '$.bootstrap.blockLength', 1, true);
  s.num(bs.minTokens, '$.bootstrap.minTokens', 2, true);
  const conditions = s.arr(top.conditions, '$.conditions', 1).map((c, i) => {
    try {
      return checkConditionName(c, `$.conditions[${i}]`);
    } catch (e) {
      return s.fail(`$.conditions[${i}]`, (e as Error).message);
    }
  });
  if (new Set(conditions).size !== conditions.length) s.fail('$.conditions', 'has a repeated name');
  for (const [role, name] of Object.entries(criteria.conditions)) {
    if (!conditions.includes(name)) s.fail('$.conditions', `lacks the criteria's ${role} condition "${name}"`);
  }
  const { noAdapter, reference } = criteria.conditions;
  const users = s.arr(top.users, '$.users');
  const names = new Set<string>();
  users.forEach((uv, ui) => {
    const p = `$.users[${ui}]`;
    const u = s.obj(uv, p, ['user', 'texts', 'encodings', 'validation', 'test', 'policy', 'seeds']);
    const name = s.str(u.user, `${p}.user`);
    if (name === '' || names.has(name)) s.fail(`${p}.user`, 'must be a non-empty name not used by another user');
    names.add(name);
    const texts = s.obj(u.texts, `${p}.texts`, ['validation', 'test']);
    for (const split of SPLITS) {
      const tp = `${p}.texts.${split}`;
      const t = s.obj(texts[split], tp, ['fixture', 'part', 'ranges', 'bytes', 'sha256']);
      s.str(t.fixture, `${tp}.fixture`);
      if (t.part !== split) s.fail(`${tp}.part`, `must be "${split}"`);
      s.num(t.bytes, `${tp}.bytes`, 1, true);
      s.str(t.sha256, `${tp}.sha256`, HEX64);
      s.arr(t.ranges, `${tp}.ranges`, 1).forEach((r, ri) => {
        const rr = s.arr(r, `${tp}.ranges[${ri}]`);
        if (rr.length !== 2) s.fail(`${tp}.ranges[${ri}]`, 'must be [start, end)');
        const a = s.num(rr[0], `${tp}.ranges[${ri}][0]`, 0, true);
        const b = s.num(rr[1], `${tp}.ranges[${ri}][1]`, 0, true);
        if (b <= a) s.fail(`${tp}.ranges[${ri}]`, 'must have start < end');
      });
    }
    const enc = s.record(u.encodings, `${p}.encodings`);
    for (const c of conditions) {
      if (c === noAdapter) continue;
      const ep = `${p}.encodings.${c}`;
      const e = s.obj(enc[c], ep, ['bytes', 'params']);
      s.num(e.bytes, `${ep}.bytes`, 1, true);
      for (const [k, arr] of Object.entries(s.record(e.params, `${ep}.params`))) s.arr(arr, `${ep}.params.${k}`).forEach((x, xi) => s.num(x, `${ep}.params.${k}[${xi}]`));
    }
    if (Object.keys(enc).length !== conditions.length - 1) s.fail(`${p}.encodings`, `must have exactly the conditions other than "${noAdapter}"`);
    for (const split of SPLITS) {
      const sp = `${p}.${split}`;
      const st = s.obj(u[split], sp, ['tokens', 'bytes', 'bootstrap', 'conditions']);
      s.num(st.tokens, `${sp}.tokens`, 2, true);
      s.num(st.bytes, `${sp}.bytes`, 1, true);
      const b = s.obj(st.bootstrap, `${sp}.bootstrap`, ['seed', 'resamples', 'confidence', 'blockLength']);
      s.num(b.seed, `${sp}.bootstrap.seed`, 0, true);
      s.num(b.resamples, `${sp}.bootstrap.resamples`, 2, true);
      s.num(b.confidence, `${sp}.bootstrap.confidence`, 0);
      s.num(b.blockLength, `${sp}.bootstrap.blockLength`, 1, true);
      const cs = s.record(st.conditions, `${sp}.conditions`);
      if (Object.keys(cs).length !== conditions.length) s.fail(`${sp}.conditions`, 'must have exactly the run\'s conditions');
      for (const c of conditions) {
        const cp = `${sp}.conditions.${c}`;
        const x = s.obj(cs[c], cp, ['meanNll', 'ppl', 'bpb', 'ratioToReference', 'ratioToNoAdapter']);
        s.num(x.meanNll, `${cp}.meanNll`, 0);
        s.estimate(x.ppl, `${cp}.ppl`, 1);
        s.estimate(x.bpb, `${cp}.bpb`, 0);
        if ((c === reference) !== (x.ratioToReference === null)) s.fail(`${cp}.ratioToReference`, c === reference ? 'must be null for the reference' : 'is missing');
        if (x.ratioToReference !== null) s.estimate(x.ratioToReference, `${cp}.ratioToReference`, 0);
        if ((c === noAdapter) !== (x.ratioToNoAdapter === null)) s.fail(`${cp}.ratioToNoAdapter`, c === noAdapter ? 'must be null for the no-adapter condition' : 'is missing');
        if (x.ratioToNoAdapter !== null) s.estimate(x.ratioToNoAdapter, `${cp}.ratioToNoAdapter`, 0);
      }
    }
    const pp = `${p}.policy`;
    const pol = s.obj(u.policy, pp, ['choice', 'bytes', 'fallback', 'candidates', 'test']);
    s.str(pol.choice, `${pp}.choice`);
    s.num(pol.bytes, `${pp}.bytes`, 1, true);
    s.bool(pol.fallback, `${pp}.fallback`);
    s.arr(pol.candidates, `${pp}.candidates`).forEach((cv, ci) => {
      const cp = `${pp}.candidates[${ci}]`;
      const c = s.obj(cv, cp, ['condition', 'bytes', 'ppl', 'ratio', 'beatsNoAdapter', 'eligible', 'passes']);
      s.str(c.condition, `${cp}.condition`);
      s.num(c.bytes, `${cp}.bytes`, 1, true);
      s.num(c.ppl, `${cp}.ppl`, 1);
      s.num(c.ratio, `${cp}.ratio`, 0);
      for (const k of ['beatsNoAdapter', 'eligible', 'passes']) s.bool(c[k], `${cp}.${k}`);
    });
    const pt = s.obj(pol.test, `${pp}.test`, ['ppl', 'ratioToReference', 'ratioToNoAdapter', 'holds']);
    s.estimate(pt.ppl, `${pp}.test.ppl`, 1);
    s.estimate(pt.ratioToReference, `${pp}.test.ratioToReference`, 0);
    s.estimate(pt.ratioToNoAdapter, `${pp}.test.ratioToNoAdapter`, 0);
    s.bool(pt.holds, `${pp}.test.holds`);
    if (u.seeds !== null) {
      const sd = s.obj(u.seeds, `${p}.seeds`, ['runs', 'spread']);
      s.arr(sd.runs, `${p}.seeds.runs`, 1).forEach((rv, ri) => {
        const rp = `${p}.seeds.runs[${ri}]`;
        const r = s.obj(rv, rp, ['seed', 'ppl']);
        s.num(r.seed, `${rp}.seed`, 0, true);
        for (const [c, x] of Object.entries(s.record(r.ppl, `${rp}.ppl`))) {
          if (!conditions.includes(c)) s.fail(`${rp}.ppl.${c}`, 'is not a condition of the run');
          s.num(x, `${rp}.ppl.${c}`, 1);
        }
      });
      for (const [c, x] of Object.entries(s.record(sd.spread, `${p}.seeds.spread`))) {
        const o = s.obj(x, `${p}.seeds.spread.${c}`, ['ppl', 'ratioToReference']);
        s.spread(o.ppl, `${p}.seeds.spread.${c}.ppl`);
        if (o.ratioToReference !== null) s.spread(o.ratioToReference, `${p}.seeds.spread.${c}.ratioToReference`);
      }
    }
  });
  s.arr(top.verdicts, '$.verdicts');
  s.record(top.policy, '$.policy');
  s.str(top.checksum, '$.checksum', HEX64);
  return v as AdapterCompressResults;
}

const close = (a: number, b: number): boolean => Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(a), Math.abs(b));

/** Recomputes what is derived from the recorded numbers and checks it matches. */
function checkDerived(r: AdapterCompressResults, s: Shape): void {
  const criteria = r.criteria.criteria;
  const { reference, noAdapter } = criteria.conditions;
  r.users.forEach((u, ui) => {
    for (const split of SPLITS) {
      const st = u[split];
      if (st.bytes !== u.texts[split].bytes) s.fail(`$.users[${ui}].${split}.bytes`, 'differs from the text id\'s bytes');
      for (const c of r.conditions) {
        const x = st.conditions[c]!;
        const cp = `$.users[${ui}].${split}.conditions.${c}`;
        if (!close(x.ppl.value, Math.exp(x.meanNll))) s.fail(`${cp}.ppl.value`, `is not exp(meanNll) = ${Math.exp(x.meanNll)}`);
        if (!close(x.bpb.value, (x.meanNll * st.tokens) / Math.LN2 / st.bytes)) s.fail(`${cp}.bpb.value`, 'is not meanNll * tokens / ln 2 / bytes');
        if (x.ratioToReference !== null && !close(x.ratioToReference.value, x.ppl.value / st.conditions[reference]!.ppl.value)) {
          s.fail(`${cp}.ratioToReference.value`, 'is not ppl / ppl(reference)');
        }
        if (x.ratioToNoAdapter !== null && !close(x.ratioToNoAdapter.value, x.ppl.value / st.conditions[noAdapter]!.ppl.value)) {
          s.fail(`${cp}.ratioToNoAdapter.value`, 'is not ppl / ppl(no adapter)');
        }
      }
    }
    const again = userPolicy(u.validation, u.test, u.encodings, criteria, u.user);
    if (canonicalJson(again) !== canonicalJson(u.policy)) s.fail(`$.users[${ui}].policy`, 'differs from the policy recomputed from the validation split');
  });
  const sum = summarise(r.users, r.conditions, criteria);
  if (canonicalJson(sum.verdicts) !== canonicalJson(r.verdicts)) s.fail('$.verdicts', 'differ from the verdicts recomputed from the users\' test perplexities');
  if (canonicalJson(sum.policy) !== canonicalJson(r.policy)) s.fail('$.policy', 'differs from the summary recomputed from the users\' policies');
}

/** Validates a parsed results object (shape, checksum, derived values) and returns it typed. */
export function validateResults(value: unknown, where = ''): AdapterCompressResults {
  const s = new Shape(where);
  const r = checkShape(value, s);
  const { checksum, ...body } = r;
  const sum = sha256Hex(canonicalJson(body));
  if (sum !== checksum) s.fail('$.checksum', `does not match the content (stored ${checksum}, computed ${sum}); the file was modified or truncated`);
  checkDerived(r, s);
  return r;
}

export function parseResults(text: string, where = ''): AdapterCompressResults {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`results${where === '' ? '' : ` (${where})`}: not valid JSON (truncated or corrupt?): ${(e as Error).message}`);
  }
  return validateResults(v, where);
}

export function readResults(path: string): AdapterCompressResults {
  if (!existsSync(path)) throw new Error(`results: no results file at ${path}`);
  return parseResults(readFileSync(path, 'utf8'), path);
}
