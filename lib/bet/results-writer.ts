// The results writer: the file is written atomically after every change: at the start (status
// "running", no users: the criteria's sha256 and registration time are on disk before any
// evaluation), after each user (verdicts and policy summary recomputed over the users done so far),
// and at the end ("complete") or on an error ("failed", with the message; the users done are kept).
// It carries a checksum: sha256 of the canonical JSON (criteria.ts) of the object without
// "checksum". Every state written is checked against the schema first.

import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { MIN_TEST_TOKENS } from '../data/fixtures.js';
import { writeFileAtomic } from '../util/files.js';
import { sha256Hex } from '../util/hash.js';
import { packageRoot } from '../util/package-root.js';
import { canonicalJson, checkConditionName, CRITERIA_VERSION, validateCriteria, type LoadedCriteria } from './criteria.js';
import { checkLadder, computeFrontier } from './frontier.js';
import { summarisePolicy } from './policy.js';
import { analysePersonal } from './personal.js';
import { analyseUser, summarise, type UserEvaluation } from './results-analysis.js';
import { fail, RESULTS_FORMAT, RESULTS_VERSION } from './results-format.js';
import { checkSchema, readResults } from './results-reader.js';
import {
  SHA256_PATTERN,
  type AdapterCompressResults,
  type BaseModelFingerprint,
  type PersonalMeasured,
  type RunConfig,
  type UserResult,
} from './results-types.js';
import { DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES } from './stats.js';

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
  run: RunConfig;
}

/** ternorm's version, Node's, and the file formats' versions. */
export function defaultVersions(): AdapterCompressResults['versions'] {
  const pj = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version?: unknown };
  return {
    ternorm: typeof pj.version === 'string' ? pj.version : 'unknown',
    node: process.version,
    resultsFormat: String(RESULTS_VERSION),
    criteriaFormat: String(CRITERIA_VERSION),
  };
}

/** A run's state before any user: what start() writes, with the criteria registered (sha256, time) at `now`. */
export type RegisteredRun = Omit<AdapterCompressResults, 'checksum'>;

/** Checks a header and registers its criteria at `now`: the state start() writes (status "running", no users). */
export function buildHeader(h: ResultsHeader, now: string): RegisteredRun {
  if (h === null || typeof h !== 'object') fail('expected a header object');
  if (typeof h.seed !== 'number' || !Number.isSafeInteger(h.seed) || h.seed < 0)
    fail(`"seed" must be an integer in [0, 2^53), got ${String(h.seed)}`);
  const seeds = h.seeds ?? 1;
  if (!Number.isSafeInteger(seeds) || seeds < 1) fail(`"seeds" must be a positive integer, got ${String(seeds)}`);
  const bm = h.baseModel;
  if (
    bm === null ||
    typeof bm !== 'object' ||
    typeof bm.name !== 'string' ||
    typeof bm.sha256 !== 'string' ||
    !SHA256_PATTERN.test(bm.sha256)
  ) {
    fail('"baseModel" must be { name, sha256 (64 lowercase hex), config }');
  }
  const config: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(bm.config ?? {})) {
    if (!(typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))))
      fail(`"baseModel.config.${k}" must be a string, finite number or boolean`);
    config[k] = v;
  }
  const criteria = validateCriteria(JSON.parse(JSON.stringify(h.criteria?.criteria ?? null)), 'results header');
  const sha = sha256Hex(canonicalJson(criteria));
  if (h.criteria.sha256 !== sha) fail(`the criteria's sha256 ${String(h.criteria.sha256)} does not match their content (${sha})`);
  if (!Array.isArray(h.conditions) || h.conditions.length === 0) fail('"conditions" must be a non-empty array of condition names');
  const conditions = h.conditions.map((c, i) => checkConditionName(c, `results: conditions[${i}]`));
  if (new Set(conditions).size !== conditions.length) fail(`"conditions" has a repeated name: ${conditions.join(', ')}`);
  for (const [role, name] of Object.entries(criteria.conditions)) {
    if (!conditions.includes(name))
      fail(`the criteria's ${role} condition "${name}" is not among the conditions (${conditions.join(', ')})`);
  }
  const b = h.bootstrap ?? {};
  const resamples = b.resamples ?? DEFAULT_RESAMPLES;
  const confidence = b.confidence ?? DEFAULT_CONFIDENCE;
  const blockLength = b.blockLength ?? 'auto';
  if (!Number.isSafeInteger(resamples) || resamples < 2) fail(`bootstrap resamples must be an integer >= 2, got ${String(resamples)}`);
  if (!(confidence > 0 && confidence < 1)) fail(`bootstrap confidence must be in (0, 1), got ${String(confidence)}`);
  if (blockLength !== 'auto' && !(Number.isSafeInteger(blockLength) && blockLength >= 1))
    fail(`bootstrap blockLength must be a positive integer or 'auto', got ${String(blockLength)}`);
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
    run: checkRunConfig(h.run),
    conditions,
    users: [],
    verdicts: [],
    policy: summarisePolicy([]),
    ...(h.run.frontier === undefined ? {} : { frontier: { ladder: [...h.run.frontier.ladder], users: [] } }),
  };
}

const RUN_FLAGS: Record<string, string> = {
  maxSteps: '--max-steps',
  evalEvery: '--eval-every',
  patience: '--patience',
  calibrationTokens: '--calibration-tokens',
  groupSize: '--group-size',
  mixedBudget: '--mixed-budget',
  trainBytes: '--train-bytes',
  validationBytes: '--validation-bytes',
  testBytes: '--test-bytes',
  windows: '--split-windows',
};

function checkRunConfig(r: RunConfig): RunConfig {
  if (
    r === null ||
    typeof r !== 'object' ||
    r.adapterRun === null ||
    typeof r.adapterRun !== 'object' ||
    r.encode === null ||
    typeof r.encode !== 'object'
  ) {
    fail('"run" must be { adapterRun, encode }');
  }
  for (const [k, v] of Object.entries(r.adapterRun))
    if (typeof v !== 'number' || !Number.isFinite(v)) fail(`"run.adapterRun.${k}" must be a finite number`);
  const e = r.encode;
  if (!Number.isSafeInteger(e.calibrationTokens) || e.calibrationTokens < 2) fail('"run.encode.calibrationTokens" must be an integer >= 2');
  if (!Array.isArray(e.clipGrid) || !e.clipGrid.every((x) => typeof x === 'number' && Number.isFinite(x)))
    fail('"run.encode.clipGrid" must be an array of finite numbers');
  for (const k of ['groupSize', 'kmeansMaxIters', 'calibrationPasses', 'mixedBudget'] as const) {
    const v = e[k];
    if (v !== null && !(Number.isSafeInteger(v) && v >= 1)) fail(`"run.encode.${k}" must be a positive integer or null (the default)`);
  }
  const split = r.split;
  if (split !== undefined) {
    if (split === null || typeof split !== 'object') fail('"run.split" must be an object of split sizes');
    for (const [k, v] of Object.entries(split)) {
      if (!['trainBytes', 'validationBytes', 'testBytes', 'windows'].includes(k)) fail(`"run.split.${k}" is not a split size`);
      if (!(Number.isSafeInteger(v) && (v as number) >= 1)) fail(`"run.split.${k}" must be a positive integer`);
    }
  }
  const nz = r.noise;
  if (
    nz !== undefined &&
    (nz === null ||
      typeof nz !== 'object' ||
      !(Number.isSafeInteger(nz.seeds) && nz.seeds >= 1) ||
      !Array.isArray(nz.rmsGrid) ||
      !nz.rmsGrid.every((x) => typeof x === 'number' && x > 0 && Number.isFinite(x)) ||
      !Array.isArray(nz.distributions) ||
      !nz.distributions.every((x) => typeof x === 'string'))
  )
    fail('"run.noise" must be { seeds, rmsGrid, distributions }');
  if (r.actQuant !== undefined && r.actQuant !== 'block256') fail('"run.actQuant" must be "block256" or absent (the default, "token")');
  if (r.evalStride !== undefined && !(Number.isSafeInteger(r.evalStride) && r.evalStride >= 1))
    fail('"run.evalStride" must be a positive integer or absent (the default, context / 2)');
  if (r.gradQuant !== undefined && r.gradQuant !== 'int8')
    fail('"run.gradQuant" must be "int8" or absent ("f32", every file written before int8 was the default)');
  return {
    ...(r.actQuant === undefined ? {} : { actQuant: r.actQuant }),
    ...(r.evalStride === undefined ? {} : { evalStride: r.evalStride }),
    ...(r.gradQuant === undefined ? {} : { gradQuant: r.gradQuant }),
    adapterRun: { ...r.adapterRun },
    encode: {
      calibrationTokens: e.calibrationTokens,
      clipGrid: [...e.clipGrid],
      groupSize: e.groupSize,
      kmeansMaxIters: e.kmeansMaxIters,
      calibrationPasses: e.calibrationPasses,
      mixedBudget: e.mixedBudget,
    },
    ...(split === undefined ? {} : { split: { ...split } }),
    ...(r.frontier === undefined ? {} : { frontier: { ladder: checkLadder(r.frontier.ladder), methods: [...r.frontier.methods] } }),
    ...(r.noise === undefined
      ? {}
      : { noise: { seeds: r.noise.seeds, rmsGrid: [...r.noise.rmsGrid], distributions: [...r.noise.distributions] } }),
  };
}

/** The options in which two run configurations differ, each with both values, e.g. "maxSteps (--max-steps): 100 in the file, 5 now". */
export function runConfigDiffs(file: RunConfig, now: RunConfig): string[] {
  const out: string[] = [];
  const show = (v: unknown): string => (v === undefined ? 'absent' : v === null ? 'default' : JSON.stringify(v));
  const aq = (r: RunConfig): string => r.actQuant ?? 'token';
  if (aq(file) !== aq(now)) out.push(`actQuant (--act-quant): ${aq(file)} in the file, ${aq(now)} now`);
  if (file.evalStride !== now.evalStride)
    out.push(`evalStride (--eval-stride): ${show(file.evalStride)} in the file, ${show(now.evalStride)} now`);
  const gq = (r: RunConfig): string => r.gradQuant ?? 'f32';
  if (gq(file) !== gq(now)) out.push(`gradQuant (--grad-quant): ${gq(file)} in the file, ${gq(now)} now`);
  for (const part of ['adapterRun', 'encode', 'split'] as const) {
    const a = (file[part] ?? {}) as Record<string, unknown>;
    const b = (now[part] ?? {}) as Record<string, unknown>;
    for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])]) {
      if (canonicalJson(a[k] ?? null) === canonicalJson(b[k] ?? null) && k in a === k in b) continue;
      out.push(`${k}${RUN_FLAGS[k] === undefined ? '' : ` (${RUN_FLAGS[k]})`}: ${show(a[k])} in the file, ${show(b[k])} now`);
    }
  }
  if (canonicalJson(file.frontier ?? null) !== canonicalJson(now.frontier ?? null))
    out.push(`frontier (--frontier): ${show(file.frontier)} in the file, ${show(now.frontier)} now`);
  if (canonicalJson(file.noise ?? null) !== canonicalJson(now.noise ?? null))
    out.push(`noise (--noise, --noise-seeds): ${show(file.noise)} in the file, ${show(now.noise)} now`);
  return out;
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
    same(`seed (--seed: ${old.seed} in the file, ${fresh.seed} now)`, old.seed, fresh.seed);
    same(`seed count (--seeds: ${old.seeds} in the file, ${fresh.seeds} now)`, old.seeds, fresh.seeds);
    same('criteria (sha256)', old.criteria.sha256, fresh.criteria.sha256);
    same('conditions', old.conditions, fresh.conditions);
    same('bootstrap settings (--resamples)', old.bootstrap, fresh.bootstrap);
    same('base model', old.baseModel, fresh.baseModel);
    const differ = runConfigDiffs(old.run, fresh.run);
    if (differ.length > 0) fail(`cannot resume ${path}: it was run with other options: ${differ.join('; ')}`);
    const { checksum: _c, ...body } = old;
    const w = new ResultsWriter(path, { ...body, status: 'running', error: null }, clock);
    w.write();
    return w;
  }

  /**
   * Writes a run whose users were analysed elsewhere (analyseUser with the run's settings; the
   * fleet's workers, lib/fleet/): the state registered by buildHeader when the run began, the users'
   * results, and the verdicts and policy summary recomputed over them as addUser does.
   */
  static assemble(
    path: string,
    registered: RegisteredRun,
    users: readonly UserResult[],
    end: { status: AdapterCompressResults['status']; error: string | null; now?: () => Date },
  ): AdapterCompressResults {
    const criteria = registered.criteria.criteria;
    const ladder = registered.run.frontier?.ladder;
    const summary = summarise(users, registered.conditions, criteria, undefined, ladder);
    // the frontier over every user, as addUser keeps it
    const frontier = ladder === undefined ? {} : { frontier: computeFrontier(users, ladder, criteria) };
    const state = {
      ...structuredClone(registered),
      users: structuredClone([...users]),
      ...summary,
      ...frontier,
      status: end.status,
      error: end.error,
    };
    const w = new ResultsWriter(path, state, end.now ?? (() => new Date()));
    w.write();
    return w.results;
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
    const criteria = this.state.criteria.criteria;
    const ladder = this.state.run.frontier?.ladder;
    this.state = { ...this.state, users, ...summarise(users, this.state.conditions, criteria, this.state.personal, ladder) };
    if (this.state.run.frontier !== undefined)
      this.state = { ...this.state, frontier: computeFrontier(users, this.state.run.frontier.ladder, criteria) };
    this.write();
    return structuredClone(u);
  }

  /** Records the personal-signal measurement (personal.ts) over the users done and rewrites the file. */
  setPersonal(measured: PersonalMeasured): void {
    if (this.state.status !== 'running') fail(`cannot add the personal signal to a ${this.state.status} run`);
    const m = structuredClone(measured);
    const { users, conditions } = this.state;
    const criteria = this.state.criteria.criteria;
    const personal = { measured: m, analysis: analysePersonal(m, users, conditions, criteria) };
    this.state = { ...this.state, personal, ...summarise(users, conditions, criteria, personal, this.state.run.frontier?.ladder) };
    this.write();
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
    const out = withChecksum(this.state);
    checkSchema(out, this.path);
    mkdirSync(dirname(this.path), { recursive: true });
    writeFileAtomic(this.path, JSON.stringify(out, null, 2) + '\n');
  }
}
