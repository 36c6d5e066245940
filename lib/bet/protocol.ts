// The bet's protocol, end to end (`ternorm bet`): for each user, split the text into adapter
// training / validation / test, train the adapter (or load one), encode it with every codec
// method, score the validation and test tokens under every condition (no adapter, each encoding
// decoded inside the norm kernel), and hand the per-token NLLs to the results writer, which
// computes every statistic, verdict and the policy. The criteria are registered in the results
// file before any evaluation; each user is written as soon as it is done, so an error in a later
// user (bad text, an adapter of another base) loses nothing already measured.
//
// What keeps the science honest:
//  - the test tokens are never seen in training, calibration or the policy choice: adapters
//    train on the train part (early stopping on its own tail), mixed scores candidates on train
//    tokens, int4_calibrated on the training tail no gradient step saw (calibratedClip), the
//    policy is chosen on the validation part;
//  - every condition scores exactly the same tokens of a split, so ratios are paired;
//  - conditions whose decoded gains are bit-identical (e.g. a lossless k-means codebook and the
//    raw adapter) share one evaluation, which gives the same NLLs the kernel would compute again.

import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

import { encodeAdapter, type EncodeOptions } from '../adapter/codec.js';
import {
  gather,
  getFixtures,
  MIN_TEST_TOKENS,
  planUserSplit,
  checkUserText,
  fileUserSplit,
  type UserSplitOptions,
  USER_NAMES,
  userFamily,
  type Fixtures,
  type UserName,
} from '../data/fixtures.js';
import { getFleetFixtures, type FleetFixtures } from '../data/fleet.js';
import { checkActQuant, checkLimit, coreLimits, defaultOf, type ActQuant } from '../model/limits.js';
import { Adapter, Encoding } from '../adapter/adapter.js';
import { evaluate, Model, type Ternarise } from '../model/model.js';
import { readTextFile } from '../util/files.js';
import { sha256Hex } from '../util/hash.js';
import { FileLock } from '../util/lock.js';
import { packageRoot } from '../util/package-root.js';
import {
  resolveAdapterRun,
  splitUserTokens,
  trainAdapter,
  type AdapterRunOptions,
  type TrainAdapterResult,
} from '../model/train-adapter.js';
import { loadCriteria, type LoadedCriteria } from './criteria.js';
import { checkLadder, FRONTIER_BUDGETS, FRONTIER_METHODS, frontierCondition } from './frontier.js';
import {
  checkUserName,
  readResults,
  ResultsWriter,
  type AdapterCompressResults,
  type ResultsHeader,
  type EncodingInfo,
  type RunConfig,
  type SplitName,
  type TextId,
  type UserEvaluation,
} from './results.js';
import { NOISE_DISTRIBUTIONS, NOISE_RMS_GRID, NOISE_SEEDS, noiseSeed, perturbGains, rmsError, type NoiseMeasured } from './noise.js';
import type { PersonalMeasured } from './personal.js';
import { deriveSeed, PairedBootstrap, type Interval, type NllArray } from './stats.js';

/**
 * The schemes the bet compares, in report order: the raw references, the bet, the six families,
 * then the low-rate menu (issue 10 §3: down to <= 128 B per user; adapter format 2).
 */
export const BET_METHODS = [
  'raw_fp32',
  'raw_fp16',
  'int8_per_tensor',
  'int8_group',
  'int8_asym',
  'int8_delta',
  'int4_delta',
  'kmeans16',
  'kmeans256',
  'int4_calibrated',
  'mixed',
  'int3_delta',
  'sign1_delta',
  'rice_int4_delta',
  'rice_int3_delta',
  'sparse_delta',
  'alloc',
] as const;

/**
 * The rest of the low-rate menu, measured under --frontier only: each is two more split evaluations
 * per user, which would take the default bet past its 120 s budget on 2 cores.
 */
export const FRONTIER_EXTRA_METHODS = ['int2_delta', 'kmeans2', 'kmeans4', 'kmeans8'] as const;

/** The byte budget of the bet's sparse_delta and alloc conditions: the menu's low end. */
export const BET_LOWRATE_BUDGET = 128;

/** The shipped base model, relative to the package root (defaultModelPath() resolves it). */
export const DEFAULT_MODEL_PATH = 'models/base.tnm';

/** The shipped base model's path, wherever the command runs from. */
export function defaultModelPath(): string {
  return join(packageRoot(), DEFAULT_MODEL_PATH);
}
/** Tokens of the user's training text that int4_calibrated and mixed score on, by default (the core's, native/model/limits.h). */
export function defaultCalibrationTokens(): number {
  return defaultOf(coreLimits().codec.calibrationTokens);
}
/**
 * int4_calibrated's clip factors in the bet: 1.0, 0.9, ..., 0.3 (at most 8 + 7 n loss evaluations
 * instead of the codec default's 15 + 14 n), which keeps three users inside the time budget.
 */
export const BET_CLIP_GRID: readonly number[] = [1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3];

/**
 * int4_calibrated's calibration slice: at most this many tokens from the start of the adapter
 * training's held-out tail (the early-stopping part, never a gradient step). The 512 first training
 * tokens it used before were text the adapter was fitted on, and too few: 141 loss evaluations on
 * them picked clips below 1 that lost on validation (the programmer's int4 at 1.243x raw where
 * clip 1 gives 1.008x).
 */
export const CALIBRATED_HELD_OUT_TOKENS = 2048;

/**
 * The search's choice is kept only when it beats clip 1 (int4_delta) beyond noise on the rest of
 * the tail, tokens the search did not see (a minimum of a best-of-71 on its own tokens is biased
 * low): the upper end of the paired bootstrap interval (this confidence) of ppl(choice) /
 * ppl(clip 1) there is below 1. Otherwise, or when fewer than CALIBRATED_GATE_MIN_TOKENS remain,
 * every tensor gets clip 1.
 */
export const CALIBRATED_GATE_CONFIDENCE = 0.95;
export const CALIBRATED_GATE_MIN_TOKENS = 256;

export interface BetUser {
  name: string;
  /** A default user's fixture texts, a fleet fixture user's (lib/data/fleet.ts), or a text file split by the default recipe. */
  source: { kind: 'fixture'; user: UserName } | { kind: 'fleet'; user: string } | { kind: 'file'; path: string };
  /** A trained (f32) adapter file to use instead of training one. */
  adapterPath?: string;
}

export interface BetOptions {
  modelPath: string;
  /** A GGUF of float weights: absmean per tensor (default) or per row when ternarised on load. */
  ternarise?: Ternarise;
  users: BetUser[];
  /** Results JSON (written atomically after each user). */
  out: string;
  criteriaPath?: string;
  seed: number;
  /** Adapters trained per user (seeds seed, seed + 1, ...); > 1 reports the seed spread. */
  seeds: number;
  threads?: number;
  /** The ternary activation quantisation of every training step, calibration and evaluation (default 'token'). */
  actQuant?: ActQuant;
  /**
   * The window step (tokens, 1..context) of the split scores: every condition's validation and test
   * NLLs, the extra seeds', the noise sweep's and the cross-user matrix's. Default: the evaluator's
   * (context / 2). The context itself scores every token once in non-overlapping windows: the same
   * tokens, about half the forward work, less left context for the tokens early in a window.
   */
  evalStride?: number;
  /**
   * An existing results file: a complete run is replaced (the same command reproduces it); an
   * incomplete one is continued with `resume` (its users are kept and skipped) or replaced with
   * `overwrite`, and is an error otherwise, so no measured user is lost by accident.
   */
  resume?: boolean;
  overwrite?: boolean;
  adapterRun?: Partial<Omit<AdapterRunOptions, 'seed'>>;
  encode?: Pick<EncodeOptions, 'groupSize' | 'kmeansMaxIters' | 'clipGrid' | 'calibrationPasses'> & {
    calibrationTokens?: number;
    /** mixed: byte budget; default the bet's (int8_per_tensor) size of the same adapter. */
    mixedBudget?: number;
  };
  bootstrap?: { resamples?: number; confidence?: number; blockLength?: number | 'auto' };
  /** Split sizes (--train-bytes, ...): every user's but the near-base default users' (SHORT_USER_SPLIT); default: the recipe's. */
  split?: Partial<UserSplitOptions>;
  /** The noise margin sweep per user (noise.ts, issue 10 §5); `seeds` noise patterns per point. */
  noise?: { seeds?: number };
  /** The cross-user matrix and the generic adapter (personal.ts, issue 10 §6). */
  personal?: boolean;
  /**
   * The rate-distortion frontier (lib/bet/frontier.ts): the budgeted methods are also encoded at
   * every budget of the ladder (default FRONTIER_BUDGETS), each an extra condition "<method>-<budget>".
   */
  frontier?: { ladder?: readonly number[] };
}

export type BetStage = 'train' | 'encode' | 'evaluate' | 'seeds' | 'noise' | 'personal';

export interface BetHooks {
  /** A stage of a user starts; `total` units of work follow. */
  onStage?(user: string, stage: BetStage, total: number): void;
  /** Progress within the current stage. */
  onProgress?(done: number, total: number, detail: string): void;
  onUserDone?(user: string, seconds: number): void;
  onLog?(line: string): void;
}

interface UserTexts {
  train: Uint8Array;
  validation: Uint8Array;
  test: Uint8Array;
  ids: Record<SplitName, TextId>;
}

/**
 * Reads a user's three parts (fixtures, fleet fixtures, or a file split by the fixture recipe: the
 * sizes in `split`, else the default split scaled to the text; see fileUserSplit).
 */
export function userTexts(
  u: BetUser,
  fixtures: () => Fixtures = getFixtures,
  fleet: () => FleetFixtures = getFleetFixtures,
  split: Partial<UserSplitOptions> = {},
): UserTexts {
  if (u.source.kind === 'fleet') {
    const fx = fleet();
    const rec = fx.user(u.source.user);
    const fam = fx.manifest.families[rec.family];
    // Ranges of the family text, so the id names the bytes without the user's offset.
    const id = (part: SplitName): TextId => {
      const p = rec.parts[part];
      const ranges = p.ranges.map(([s, e]): [number, number] => [s + rec.range[0], e + rec.range[0]]);
      return { fixture: `fleet/${fam.file} (${fam.source}) user ${rec.name}`, part, ranges, bytes: p.bytes, sha256: p.sha256 };
    };
    const user = u.source.user;
    return {
      train: fx.read(user, 'train'),
      validation: fx.read(user, 'validation'),
      test: fx.read(user, 'test'),
      ids: { validation: id('validation'), test: id('test') },
    };
  }
  if (u.source.kind === 'fixture') {
    const fx = fixtures();
    const rec = fx.manifest.texts[u.source.user];
    const id = (part: SplitName): TextId => {
      const p = rec.parts[part]!;
      return { fixture: `${rec.file} (${rec.sources.join(', ')})`, part, ranges: p.ranges, bytes: p.bytes, sha256: p.sha256 };
    };
    return {
      train: fx.read(u.source.user, 'train'),
      validation: fx.read(u.source.user, 'validation'),
      test: fx.read(u.source.user, 'test'),
      ids: { validation: id('validation'), test: id('test') },
    };
  }
  const path = u.source.path;
  let plan;
  let text: Uint8Array;
  try {
    text = readTextFile(path);
    checkUserText(text, path);
    // +1: the first token of a part is context, not scored.
    plan = planUserSplit(text, fileUserSplit(text.length, MIN_TEST_TOKENS + 1, split, path), u.name);
  } catch (err) {
    throw new Error(`user "${u.name}": ${(err as Error).message.replace(/^fixtures: /, '')}`, { cause: err });
  }
  const part = (p: 'train' | SplitName) => gather(text, plan[p]!);
  const validation = part('validation');
  const test = part('test');
  const id = (p: SplitName, bytes: Uint8Array): TextId => ({
    fixture: `file:${resolve(path)}`,
    part: p,
    ranges: plan[p]!,
    bytes: bytes.length,
    sha256: sha256Hex(bytes),
  });
  return { train: part('train'), validation, test, ids: { validation: id('validation', validation), test: id('test', test) } };
}

/** A user's texts and tokens, read and checked before the run writes anything. */
export interface UserInputs {
  texts: UserTexts;
  trainTokens: Int32Array;
  splitTokens: Record<SplitName, Int32Array>;
}

/** The run's settings beside adapter training and encoding, each recorded only when given. */
export interface RunSettings {
  split?: Partial<UserSplitOptions>;
  actQuant?: ActQuant;
  frontier?: BetOptions['frontier'];
  noise?: BetOptions['noise'];
  evalStride?: number;
}

/**
 * The run's configuration as recorded in the results (and compared on --resume): the resolved
 * adapter-training options (the seed is recorded apart) and the encoding options; null = the
 * codec's default of the recorded ternorm version.
 */
export function runConfig(
  adapterRun: AdapterRunOptions,
  encode: BetOptions['encode'],
  calibrationTokens: number,
  { split = {}, actQuant, frontier, noise, evalStride }: RunSettings = {},
): RunConfig {
  // the gradient precision is a named choice, recorded beside the numbers (when int8)
  const { seed: _seed, gradQuant, ...training } = adapterRun;
  const given = Object.fromEntries(Object.entries(split).filter(([, v]) => v !== undefined));
  return {
    // Recorded only when not the default, so default runs keep their files' bytes.
    ...(actQuant === undefined || actQuant === coreLimits().actQuant.default ? {} : { actQuant: actQuant as 'block256' }),
    ...(evalStride === undefined ? {} : { evalStride }),
    // absent means 'f32' in every file (the default before int8), whatever the core's default is
    ...(gradQuant === 'f32' ? {} : { gradQuant: 'int8' as const }),
    ...(frontier === undefined
      ? {}
      : { frontier: { ladder: checkLadder(frontier.ladder ?? FRONTIER_BUDGETS), methods: [...FRONTIER_METHODS] } }),
    // so a resumed run's users are all swept alike (or none is)
    ...(noise === undefined
      ? {}
      : { noise: { seeds: noise.seeds ?? NOISE_SEEDS, rmsGrid: [...NOISE_RMS_GRID], distributions: [...NOISE_DISTRIBUTIONS] } }),
    adapterRun: training,
    encode: {
      calibrationTokens,
      clipGrid: [...(encode?.clipGrid ?? BET_CLIP_GRID)],
      groupSize: encode?.groupSize ?? null,
      kmeansMaxIters: encode?.kmeansMaxIters ?? null,
      calibrationPasses: encode?.calibrationPasses ?? null,
      mixedBudget: encode?.mixedBudget ?? null,
    },
    // Absent when every size is the recipe's, so default runs read and compare as before.
    ...(Object.keys(given).length > 0 ? { split: given } : {}),
  };
}

/** Quantisation parameters of an encoding, named per tensor: "t<i>.<scheme>.<param>". */
export function encodingParams(e: Encoding, extra: Record<string, number[]> = {}): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  e.tensors.forEach((t, i) => {
    for (const [name, values] of Object.entries(t.namedParams)) out[`t${i}.${t.scheme}.${name}`] = values;
  });
  return { ...out, ...extra };
}

function gainsKey(g: Float32Array): string {
  return sha256Hex(new Uint8Array(g.buffer, g.byteOffset, g.byteLength));
}

function checkUsers(users: readonly BetUser[]): void {
  if (users.length === 0) throw new Error('no users: give --user name=path (repeatable) or none for the default users');
  const seen = new Set<string>();
  for (const u of users) {
    checkUserName(u.name, '--user');
    if (seen.has(u.name)) throw new Error(`user "${u.name}" is given twice; user names must be unique`);
    seen.add(u.name);
  }
}

/** The default users: the fixture users, far-domain then near-base (lib/data/fixtures.ts). */
export function defaultUsers(): BetUser[] {
  return USER_NAMES.map((u) => ({ name: u, source: { kind: 'fixture', user: u } }));
}

/** The names `fixtureUsers` takes: the default users, the whole fleet, or one fleet family ("fleet/<family>"). */
export const FIXTURE_USER_SETS = 'default, fleet, fleet/<family>';

/**
 * The users of a named fixture set: "default" (the default users), "fleet" (every fleet
 * fixture user, lib/data/fleet.ts) or "fleet/<family>" (one family of it). Builds the fleet
 * texts if needed.
 */
export function fixtureUsers(set: string, fleet: () => FleetFixtures = getFleetFixtures): BetUser[] {
  if (set === 'default') return defaultUsers();
  const m = /^fleet(?:\/([a-z]+))?$/.exec(set);
  if (m === null) throw new Error(`unknown fixture user set "${set}" (expected one of: ${FIXTURE_USER_SETS})`);
  const fx = fleet();
  const family = m[1];
  if (family !== undefined && !(family in fx.manifest.families)) {
    throw new Error(`unknown fleet family "${family}" (expected one of: ${Object.keys(fx.manifest.families).join(', ')})`);
  }
  return fx.manifest.users
    .filter((u) => family === undefined || u.family === family)
    .map((u) => ({ name: u.name, source: { kind: 'fleet', user: u.name } }));
}

/**
 * One run's per-user pipeline: the options checked, the criteria, model and given adapters loaded
 * and the results header built once; then per user readInputs (texts read, split, tokenised and
 * checked) and measureUser (train, encode, score every condition). `ternorm bet` runs its users
 * through it one after the other; the fleet's workers (lib/fleet/worker.ts) run one user per job.
 */
export interface BetPipeline {
  header: ResultsHeader;
  readInputs(u: BetUser): UserInputs;
  measureUser(u: BetUser, inputs: UserInputs): Promise<UserEvaluation>;
  /** --personal, after every user: the cross-user matrix and the generic adapter (personal.ts). */
  measurePersonal(r: AdapterCompressResults): Promise<PersonalMeasured>;
  /** The generic adapter: the run's training recipe and seed on these training texts, interleaved (interleave). */
  trainGeneric(texts: readonly Uint8Array[]): Promise<{ gains: Float32Array; trainBytes: number }>;
  /** Per-token NLLs of a user's validation and test tokens under other gains (the fleet's generic adapter). */
  scoreGains(gains: Float32Array, inputs: UserInputs): Promise<Record<SplitName, NllArray>>;
}

/** Opens the per-user pipeline of a run (see BetPipeline); `o.out`, `resume` and `overwrite` are runBet's. */
export function openBet(o: Omit<BetOptions, 'out' | 'resume' | 'overwrite'>, hooks: BetHooks = {}): BetPipeline {
  checkUsers(o.users);
  if (!Number.isSafeInteger(o.seeds) || o.seeds < 1 || o.seeds > 100)
    throw new RangeError(`seeds must be an integer in 1..100, got ${String(o.seeds)}`);
  if (!Number.isSafeInteger(o.seed) || o.seed < 0) throw new RangeError(`seed must be a non-negative integer, got ${String(o.seed)}`);
  const noiseSeeds = o.noise?.seeds ?? NOISE_SEEDS;
  if (!Number.isSafeInteger(noiseSeeds) || noiseSeeds < 1 || noiseSeeds > 100)
    throw new RangeError(`noise seeds must be an integer in 1..100, got ${String(noiseSeeds)}`);
  if (o.personal === true && o.users.length < 2) throw new Error('--personal compares users with each other: give at least 2 users');
  const calibrationTokens = checkLimit(
    coreLimits().codec.calibrationTokens,
    o.encode?.calibrationTokens ?? defaultCalibrationTokens(),
    'calibration tokens',
  );
  const criteria: LoadedCriteria = loadCriteria(o.criteriaPath);
  const model = Model.load(o.modelPath, { ternarise: o.ternarise });
  if (model.tokenizer === null) throw new Error(`${o.modelPath} has no tokenizer`);
  const tokenizer = model.tokenizer;
  // Every named adapter file must belong to this base: refuse before any work is done.
  const given = new Map<string, Adapter>();
  for (const u of o.users) {
    if (u.adapterPath === undefined) continue;
    let a: Adapter;
    try {
      a = Adapter.load(model, u.adapterPath);
    } catch (err) {
      throw new Error(`user "${u.name}": adapter ${u.adapterPath}: ${(err as Error).message}`);
    }
    if (a.encoding !== null) {
      throw new Error(
        `user "${u.name}": adapter ${u.adapterPath} is already encoded (${a.scheme}); the bet needs the trained f32 adapter as its reference`,
      );
    }
    given.set(u.name, a);
  }
  if (o.seeds > 1 && given.size > 0) {
    throw new Error(`user "${[...given.keys()][0]}": --seeds retrains adapters, which cannot be combined with a given --adapter`);
  }
  const adapterRun = resolveAdapterRun(model, o.adapterRun);
  const { noAdapter } = criteria.criteria.conditions;
  // 1..context (the evaluator's 0, "context / 2", is what leaving it out means)
  const evalStride =
    o.evalStride === undefined
      ? undefined
      : checkLimit({ ...coreLimits().eval.stride, min: 1 }, o.evalStride, 'eval stride', model.config.context);
  const run = runConfig(adapterRun, o.encode, calibrationTokens, {
    split: o.split,
    actQuant: o.actQuant,
    frontier: o.frontier,
    noise: o.noise,
    evalStride,
  });
  // --frontier: each budgeted method at each budget of the ladder, after the menu
  const frontierEncodings =
    run.frontier === undefined
      ? []
      : run.frontier.methods.flatMap((m) =>
          run.frontier!.ladder.map((b) => ({ condition: frontierCondition(m, b), method: m, budget: b })),
        );
  const menu: readonly string[] = run.frontier === undefined ? BET_METHODS : [...BET_METHODS, ...FRONTIER_EXTRA_METHODS];
  const conditions = [noAdapter, ...menu, ...frontierEncodings.map((f) => f.condition)];
  const header: ResultsHeader = {
    seed: o.seed,
    seeds: o.seeds,
    baseModel: {
      name: basename(o.modelPath),
      sha256: sha256Hex(readFileSync(o.modelPath)),
      // A GGUF also records where its ternary weights came from (as stored, or post-training
      // quantisation per tensor / per row); a .tnm's header stays as it was.
      config: { ...model.config, fingerprint: model.fingerprint ?? '', ...(model.isGguf ? { source: model.info } : {}) },
    },
    criteria,
    conditions,
    bootstrap: o.bootstrap,
    minTokens: MIN_TEST_TOKENS,
    run,
  };
  const threads = o.threads;
  const actQuant = o.actQuant === undefined ? undefined : checkActQuant(o.actQuant);
  // the options of every split score (evaluate's default stride when evalStride is not given)
  const splitEval = { threads, actQuant, ...(evalStride === undefined ? {} : { stride: evalStride }) };
  // --personal: what the cross-user matrix and the generic adapter need of each user
  const kept = new Map<
    string,
    { gains: Float32Array; train: Uint8Array; tokens: Record<SplitName, Int32Array>; own: Record<SplitName, NllArray> }
  >();
  // Built (or loaded and verified) once per run, and only if a default user needs them.
  let fx: Fixtures | undefined;
  const fixtures = (): Fixtures => (fx ??= getFixtures({ userSplit: o.split }));
  let fleetFx: FleetFixtures | undefined;
  const fleet = (): FleetFixtures => (fleetFx ??= getFleetFixtures());
  return { header, readInputs, measureUser, measurePersonal, trainGeneric, scoreGains };

  async function trainGeneric(texts: readonly Uint8Array[]): Promise<{ gains: Float32Array; trainBytes: number }> {
    const pooled = interleave(texts);
    return { gains: (await train('generic', pooled, o.seed)).adapter.gains, trainBytes: pooled.length };
  }

  async function scoreGains(gains: Float32Array, { splitTokens }: UserInputs): Promise<Record<SplitName, NllArray>> {
    return {
      validation: (await evaluate(model, gains, splitTokens.validation, { threads, actQuant })).nll,
      test: (await evaluate(model, gains, splitTokens.test, { threads, actQuant })).nll,
    };
  }

  function readInputs(u: BetUser): UserInputs {
    const texts = userTexts(u, fixtures, fleet, o.split);
    const trainTokens = tokenizer.encode(texts.train);
    const splitTokens = { validation: tokenizer.encode(texts.validation), test: tokenizer.encode(texts.test) };
    for (const s of ['validation', 'test'] as const) {
      // evaluate scores n - 1 tokens of a split
      if (splitTokens[s].length - 1 < MIN_TEST_TOKENS) {
        throw new Error(
          `user "${u.name}": the ${s} part encodes to ${splitTokens[s].length} tokens; the bet scores at least ${MIN_TEST_TOKENS} held-out tokens per split (give a longer text)`,
        );
      }
    }
    // adapter training needs enough tokens after its early-stopping tail
    if (!given.has(u.name)) splitUserTokens(trainTokens, adapterRun);
    return { texts, trainTokens, splitTokens };
  }

  async function measureUser(u: BetUser, { texts, trainTokens, splitTokens }: UserInputs): Promise<UserEvaluation> {
    // CPU-seconds of the process (every thread) per stage: what a user costs a fleet.
    const cpu = (): number => {
      const c = process.cpuUsage();
      return (c.user + c.system) / 1e6;
    };
    const stageCpu: [string, number][] = [];
    let mark = cpu();
    const lap = (stage: string): void => {
      const now = cpu();
      stageCpu.push([stage, now - mark]);
      mark = now;
    };
    const adapter = given.get(u.name) ?? (await train(u.name, texts.train, o.seed)).adapter;
    lap('train');
    const calibration = { tokens: trainTokens.subarray(0, Math.min(trainTokens.length, calibrationTokens)), actQuant };
    const tail = splitUserTokens(trainTokens, adapterRun).validation;
    // the search on the first half of the tail (at most CALIBRATED_HELD_OUT_TOKENS), the gate on the rest
    const searchEnd = Math.min(tail.length, Math.max(2, Math.min(Math.ceil(tail.length / 2), CALIBRATED_HELD_OUT_TOKENS)));
    const heldOut = { search: tail.subarray(0, searchEnd), gate: tail.subarray(searchEnd) };
    const nEnc = menu.length + frontierEncodings.length;
    hooks.onStage?.(u.name, 'encode', nEnc);
    const encodings = await encodeAll(u.name, adapter, calibration, heldOut, (i, m) => hooks.onProgress?.(i, nEnc, m));
    lap('encode');
    hooks.onStage?.(u.name, 'evaluate', 2 * conditions.length);
    const nll: Record<SplitName, Record<string, NllArray>> = { validation: {}, test: {} };
    let done = 0;
    const cache = new Map<string, Record<SplitName, NllArray>>();
    for (const c of conditions) {
      const enc = c === noAdapter ? null : encodings.get(c)!.encoding;
      const key = enc === null ? 'none' : gainsKey(enc.gains);
      let r = cache.get(key);
      if (r === undefined) {
        r = {
          validation: (await evaluate(model, enc, splitTokens.validation, splitEval)).nll,
          test: (await evaluate(model, enc, splitTokens.test, splitEval)).nll,
        };
        cache.set(key, r);
      }
      nll.validation[c] = r.validation;
      nll.test[c] = r.test;
      done += 2;
      hooks.onProgress?.(done, 2 * conditions.length, c);
    }
    lap(`evaluate (${cache.size} distinct of ${conditions.length} conditions)`);
    const ev: UserEvaluation = {
      user: u.name,
      texts: texts.ids,
      encodings: Object.fromEntries([...encodings].map(([m, e]) => [m, e.info])),
      validation: { bytes: texts.ids.validation.bytes, nll: nll.validation },
      test: { bytes: texts.ids.test.bytes, nll: nll.test },
      // a default user's family (far-domain, near-base) groups the conclusions
      ...(u.source.kind === 'fixture' ? { family: userFamily(u.source.user) } : {}),
    };
    if (o.noise !== undefined) ev.noise = await measureNoise(u.name, adapter.gains, encodings, splitTokens.test);
    if (o.personal === true) {
      const { reference } = criteria.criteria.conditions;
      kept.set(u.name, {
        gains: adapter.gains,
        train: texts.train,
        tokens: splitTokens,
        own: { validation: nll.validation[reference]!, test: nll.test[reference]! },
      });
    }
    if (o.seeds > 1) {
      const { reference, bet } = criteria.criteria.conditions;
      const seedRuns: { seed: number; nll: Record<string, NllArray> }[] = [
        { seed: o.seed, nll: { [reference]: nll.test[reference]!, [bet]: nll.test[bet]! } },
      ];
      hooks.onStage?.(u.name, 'seeds', o.seeds - 1);
      for (let k = 1; k < o.seeds; k++) {
        const a = (await train(u.name, texts.train, o.seed + k, true)).adapter;
        const score = async (method: string) =>
          (await evaluate(model, (await encodeAdapter(model, a, method, { ...o.encode, threads })).encoding, splitTokens.test, splitEval))
            .nll;
        seedRuns.push({ seed: o.seed + k, nll: { [reference]: await score(reference), [bet]: await score(bet) } });
        hooks.onProgress?.(k, o.seeds - 1, `seed ${o.seed + k}`);
      }
      ev.seedRuns = seedRuns;
      lap('extra seeds');
    }
    const total = stageCpu.reduce((a, [, v]) => a + v, 0);
    hooks.onLog?.(`${u.name}: ${total.toFixed(1)} CPU-s: ${stageCpu.map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}`);
    return ev;
  }

  async function train(user: string, text: Uint8Array, seed: number, quiet = false): Promise<TrainAdapterResult> {
    if (!quiet) hooks.onStage?.(user, 'train', resolveAdapterRun(model, o.adapterRun).maxSteps);
    const r = await trainAdapter(
      model,
      text,
      { ...o.adapterRun, seed },
      {
        onStep: (step, max, loss) => {
          if (!quiet) hooks.onProgress?.(step, max, `loss ${loss.toFixed(4)}`);
        },
      },
      threads,
      actQuant,
    );
    hooks.onLog?.(
      `${user}: adapter seed ${seed}: validation loss ${r.baselineLoss.toFixed(4)} (base) -> ${r.bestLoss.toFixed(4)} at step ${r.bestStep} ` +
        `(${r.stepsDone} steps${r.stoppedEarly ? ', stopped early' : ''}, ${r.seconds.toFixed(1)} s)`,
    );
    return r;
  }

  async function encodeAll(
    user: string,
    adapter: Adapter,
    calibration: { tokens: Int32Array; actQuant?: ActQuant },
    heldOut: { search: Int32Array; gate: Int32Array },
    progress: (done: number, method: string) => void,
  ): Promise<Map<string, { encoding: Encoding; info: EncodingInfo }>> {
    const out = new Map<string, { encoding: Encoding; info: EncodingInfo }>();
    const common: EncodeOptions = { clipGrid: BET_CLIP_GRID, ...o.encode, threads, calibration };
    let i = 0;
    for (const m of menu) {
      const budget =
        m === 'mixed'
          ? (o.encode?.mixedBudget ?? out.get('int8_per_tensor')!.info.bytes)
          : m === 'sparse_delta' || m === 'alloc'
            ? BET_LOWRATE_BUDGET
            : undefined;
      const extra: Record<string, number[]> = {};
      const r =
        m === 'int4_calibrated'
          ? await calibratedClip(user, adapter, heldOut, out.get('int4_delta')!.encoding, extra)
          : await encodeAdapter(model, adapter, m, { ...common, byteBudget: budget });
      if (r.calibration !== null) {
        extra['calibration.grid'] = r.calibration.grid;
        extra['calibration.clip'] = r.calibration.clip;
        extra['calibration.trainLoss'] = [r.calibration.loss];
      }
      if (r.mixed !== null) {
        // mixed's choice, or alloc's (the report of both budgeted per-tensor choices)
        extra[`${m}.budget`] = [r.mixed.budget];
        extra[`${m}.choice`] = r.mixed.choice;
        extra[`${m}.trainLoss`] = [r.mixed.loss];
      }
      if (m === 'sparse_delta') extra['sparse_delta.budget'] = [BET_LOWRATE_BUDGET];
      out.set(m, { encoding: r.encoding, info: { bytes: r.encoding.bytes, params: encodingParams(r.encoding, extra) } });
      progress(++i, m);
    }
    for (const f of frontierEncodings) {
      const r = await encodeAdapter(model, adapter, f.method, { ...common, byteBudget: f.budget });
      const extra: Record<string, number[]> = { [`${f.method}.budget`]: [f.budget] };
      if (r.mixed !== null) {
        extra[`${f.method}.choice`] = r.mixed.choice;
        extra[`${f.method}.trainLoss`] = [r.mixed.loss];
      }
      out.set(f.condition, { encoding: r.encoding, info: { bytes: r.encoding.bytes, params: encodingParams(r.encoding, extra) } });
      progress(++i, f.condition);
    }
    return out;
  }

  /**
   * int4_calibrated chosen on held-out training tokens, kept only when it beats clip 1 beyond noise
   * on held-out tokens the search did not see; `extra` records the slices and the gate. Deterministic.
   */
  async function calibratedClip(
    user: string,
    adapter: Adapter,
    heldOut: { search: Int32Array; gate: Int32Array },
    clipOne: Encoding,
    extra: Record<string, number[]>,
  ): Promise<Awaited<ReturnType<typeof encodeAdapter>>> {
    const opts: EncodeOptions = { clipGrid: BET_CLIP_GRID, ...o.encode, threads, calibration: { tokens: heldOut.search, actQuant } };
    extra['calibration.heldOutTokens'] = [heldOut.search.length, heldOut.gate.length];
    const fallBack = () => encodeAdapter(model, adapter, 'int4_calibrated', { ...opts, clipGrid: [1] });
    // Too few tokens for the gate: no clip but 1 could be kept, so the search (8 + 7 n loss
    // evaluations) is not run. Its choice would be clip 1 on every tensor either way.
    if (heldOut.gate.length - 1 < CALIBRATED_GATE_MIN_TOKENS) return fallBack();
    const searched = await encodeAdapter(model, adapter, 'int4_calibrated', opts);
    if (searched.calibration!.clip.every((c) => c === 1)) return searched;
    // non-overlapping windows, as the search scores (codec.ts's default stride)
    const score = async (e: Encoding) => (await evaluate(model, e, heldOut.gate, { threads, stride: model.config.context, actQuant })).nll;
    const pb = new PairedBootstrap(
      { choice: await score(searched.encoding), clipOne: await score(clipOne) },
      {
        seed: deriveSeed(o.seed, 'calibrated-gate', user),
        resamples: o.bootstrap?.resamples,
        confidence: CALIBRATED_GATE_CONFIDENCE,
        blockLength: o.bootstrap?.blockLength,
      },
    );
    const ci = pb.ratioCi('choice', 'clipOne');
    const accepted = ci.high < 1;
    // [ratio, ci low, ci high, kept (1) or fell back to clip 1 (0)]
    extra['calibration.gate'] = [pb.ratio('choice', 'clipOne'), ci.low, ci.high, accepted ? 1 : 0];
    return accepted ? searched : fallBack();
  }

  /** The noise sweep of one user on its test split (noise.ts). */
  async function measureNoise(
    user: string,
    gains: Float32Array,
    encodings: Map<string, { encoding: Encoding }>,
    tokens: Int32Array,
  ): Promise<NoiseMeasured> {
    const rms = [...NOISE_RMS_GRID];
    const seeds = Array.from({ length: noiseSeeds }, (_, k) => noiseSeed(o.seed, user, k));
    const total = NOISE_DISTRIBUTIONS.length * seeds.length * rms.length;
    hooks.onStage?.(user, 'noise', total);
    let done = 0;
    const meanNll = {} as NoiseMeasured['meanNll'];
    for (const d of NOISE_DISTRIBUTIONS) {
      meanNll[d] = [];
      for (const seed of seeds) {
        const row: number[] = [];
        for (const x of rms) {
          row.push((await evaluate(model, perturbGains(gains, x, d, seed), tokens, splitEval)).meanNll);
          hooks.onProgress?.(++done, total, `${d} rms ${x}`);
        }
        meanNll[d].push(row);
      }
    }
    const schemeRms: Record<string, number> = {};
    for (const [m, e] of encodings) schemeRms[m] = rmsError(e.encoding.gains, gains);
    return { split: 'test', rms, seeds, meanNll, schemeRms };
  }

  /**
   * The cross-user matrix (every user's adapter on every user's test text) and the generic adapter
   * (the same recipe and seed on every user's training text, interleaved so its early-stopping
   * tail holds every user), each against the own adapter with paired bootstrap intervals.
   */
  async function measurePersonal(r: AdapterCompressResults): Promise<PersonalMeasured> {
    const names = r.users.map((u) => u.user);
    const n = names.length;
    const { reference } = criteria.criteria.conditions;
    const bs = r.bootstrap;
    const ratioCi = (own: NllArray, other: NllArray, ...labels: string[]): { meanNll: number; ci: Interval } => {
      const pb = new PairedBootstrap(
        { own, other },
        {
          seed: deriveSeed(o.seed, 'personal', ...labels),
          resamples: bs.resamples,
          confidence: bs.confidence,
          blockLength: bs.blockLength,
        },
      );
      return { meanNll: pb.meanNll('other'), ci: pb.ratioCi('other', 'own') };
    };
    const user = (name: string) => kept.get(name)!;
    hooks.onStage?.('all users', 'personal', n * (n - 1));
    const testMeanNll: number[][] = names.map((_, i) =>
      names.map((_, j) => (i === j ? r.users[j]!.test.conditions[reference]!.meanNll : NaN)),
    );
    const othersOverOwn: (Interval | null)[][] = names.map(() => names.map(() => null));
    let done = 0;
    for (let j = 0; j < n; j++) {
      for (let i = 0; i < n; i++) {
        if (i === j) continue;
        const nllOther = (await evaluate(model, user(names[i]!).gains, user(names[j]!).tokens.test, splitEval)).nll;
        const x = ratioCi(user(names[j]!).own.test, nllOther, 'cross', names[j]!, names[i]!);
        testMeanNll[i]![j] = x.meanNll;
        othersOverOwn[j]![i] = x.ci;
        hooks.onProgress?.(++done, n * (n - 1), `${names[i]} adapter on ${names[j]} text`);
      }
    }
    const { gains: generic, trainBytes } = await trainGeneric(names.map((u) => user(u).train));
    hooks.onStage?.('generic', 'evaluate', 2 * n);
    const genericMeanNll: PersonalMeasured['genericMeanNll'] = { validation: [], test: [] };
    const genericOverOwn: PersonalMeasured['ci']['genericOverOwn'] = { validation: [], test: [] };
    done = 0;
    for (const split of ['validation', 'test'] as const) {
      for (const name of names) {
        const nll = (await evaluate(model, generic, user(name).tokens[split], splitEval)).nll;
        const x = ratioCi(user(name).own[split], nll, 'generic', name, split);
        genericMeanNll[split].push(x.meanNll);
        genericOverOwn[split].push(x.ci);
        hooks.onProgress?.(++done, 2 * n, `generic on ${name} ${split}`);
      }
    }
    return {
      users: names,
      generic: { seed: o.seed, trainBytes },
      testMeanNll,
      genericMeanNll,
      ci: { othersOverOwn, genericOverOwn },
    };
  }
}

/**
 * Runs the bet. Returns the complete results; on an error the results file records it (status
 * "failed", every user done kept) and the error is rethrown.
 */
export async function runBet(o: BetOptions, hooks: BetHooks = {}): Promise<AdapterCompressResults> {
  if (o.personal === true && o.resume === true)
    throw new Error('--personal needs every user of the run in memory: run it fresh (--overwrite), not with --resume');
  const { header, readInputs, measureUser, measurePersonal } = openBet(o, hooks);

  // One writer at a time: the lock is taken before the file is looked at and held to the end.
  mkdirSync(dirname(resolve(o.out)), { recursive: true });
  const lock = FileLock.acquire(o.out, hooks.onLog);
  try {
    // Every input of the users still to do is read, split, tokenised and checked before the results
    // file is created or changed, so bad input leaves no file (and no failed run) behind.
    const alreadyDone = new Set(o.resume === true ? readResults(o.out).users.map((u) => u.user) : []);
    const inputs = new Map<string, UserInputs>();
    for (const u of o.users) {
      if (alreadyDone.has(u.name)) continue;
      try {
        inputs.set(u.name, readInputs(u));
      } catch (err) {
        const msg = (err as Error).message ?? String(err);
        throw new Error(msg.startsWith(`user "${u.name}"`) ? msg : `user "${u.name}": ${msg}`, { cause: err });
      }
    }
    let writer: ResultsWriter;
    if (o.resume === true) {
      writer = ResultsWriter.resume(o.out, header);
    } else {
      let overwrite = o.overwrite === true;
      if (!overwrite && existsSync(o.out)) {
        try {
          overwrite = readResults(o.out).status === 'complete';
        } catch {
          // an unreadable file is not replaced: start() says so
        }
      }
      writer = ResultsWriter.start(o.out, header, { overwrite });
    }
    try {
      for (const u of o.users) {
        if (alreadyDone.has(u.name)) {
          hooks.onLog?.(`${u.name}: already in ${o.out} (resumed run), skipped`);
          continue;
        }
        const t0 = performance.now();
        let ev: UserEvaluation;
        try {
          ev = await measureUser(u, inputs.get(u.name)!);
        } catch (err) {
          const msg = (err as Error).message ?? String(err);
          throw new Error(msg.startsWith(`user "${u.name}"`) ? msg : `user "${u.name}": ${msg}`, { cause: err });
        }
        writer.addUser(ev);
        hooks.onUserDone?.(u.name, (performance.now() - t0) / 1000);
      }
      if (o.personal === true) writer.setPersonal(await measurePersonal(writer.results));
      return writer.complete();
    } catch (err) {
      try {
        writer.fail(err);
      } catch {
        // the file cannot be written either (a full disk): the first error says why
      }
      throw err;
    }
  } finally {
    lock.release();
  }
}

/** Pieces of the generic adapter's pooled training text per user (round robin). */
export const POOL_PIECES = 16;

/**
 * The users' training texts pooled: each cut into POOL_PIECES pieces (at a newline when one is in
 * the piece's last quarter), taken round robin, so every part of the pool, its early-stopping tail
 * included, holds every user.
 */
export function interleave(texts: readonly Uint8Array[]): Uint8Array {
  const pieces = texts.map((t) => {
    const out: Uint8Array[] = [];
    let start = 0;
    for (let k = 1; k <= POOL_PIECES; k++) {
      let end = Math.floor((t.length * k) / POOL_PIECES);
      if (k < POOL_PIECES) {
        const nl = t.lastIndexOf(0x0a, end - 1);
        if (nl >= start && nl >= end - Math.floor(t.length / POOL_PIECES / 4)) end = nl + 1;
      }
      out.push(t.subarray(start, end));
      start = end;
    }
    return out;
  });
  const total = texts.reduce((s, t) => s + t.length, 0);
  const pooled = new Uint8Array(total);
  let at = 0;
  for (let k = 0; k < POOL_PIECES; k++) {
    for (const p of pieces) {
      pooled.set(p[k]!, at);
      at += p[k]!.length;
    }
  }
  return pooled;
}
