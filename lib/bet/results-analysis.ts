// The analysis of one user's evaluation: from the per-token NLLs of every condition on both splits
// to perplexities, bits per byte, paired bootstrap intervals and ratios, the per-user policy
// (chosen on validation, reported on test) and the seed spread; and the verdicts and policy summary
// over the users done. The reader recomputes the derived numbers with the same functions.

import { computeConclusions, type Conclusions } from './conclusions.js';
import type { Criteria } from './criteria.js';
import { analyseNoise, type NoiseMeasured } from './noise.js';
import { choosePolicy, policyOnTest, summarisePolicy, type PolicySummary } from './policy.js';
import type { ByteRange } from '../data/fixtures.js';
import { checkUserName, fail, SPLITS, type SplitName } from './results-format.js';
import {
  SHA256_PATTERN,
  type BootstrapSettings,
  type ConditionStats,
  type EncodingInfo,
  type Estimate,
  type PersonalSignal,
  type SeedRunResult,
  type SplitStats,
  type TextId,
  type UserPolicy,
  type UserResult,
  type UserSeeds,
} from './results-types.js';
import { checkNll, deriveSeed, PairedBootstrap, perplexity, seedSpread, type NllArray } from './stats.js';
import { computeVerdicts, schemesOf, type SchemeVerdict } from './verdicts.js';

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
  /** The user family the conclusions group the user in (absent: one family of all users). */
  family?: string;
  /** With --noise: the noise sweep's measurements (noise.ts). */
  noise?: NoiseMeasured;
}

export interface AnalysisContext {
  criteria: Criteria;
  conditions: readonly string[];
  seed: number;
  bootstrap: BootstrapSettings;
}

function checkTextId<S extends SplitName>(t: unknown, user: string, split: S): TextId & { part: S } {
  const w = `user "${user}" ${split} text`;
  if (t === null || typeof t !== 'object') fail(`${w}: expected { fixture, part, ranges, bytes, sha256 }`);
  const o = t as Record<string, unknown>;
  if (typeof o.fixture !== 'string' || o.fixture === '') fail(`${w}: "fixture" must be a non-empty string`);
  if (o.part !== split) fail(`${w}: "part" must be "${split}", got ${JSON.stringify(o.part)}`);
  if (typeof o.sha256 !== 'string' || !SHA256_PATTERN.test(o.sha256)) fail(`${w}: "sha256" must be 64 lowercase hex digits`);
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
  if (o.params === null || typeof o.params !== 'object' || Array.isArray(o.params))
    fail(`${w}: "params" must be an object of name -> number[]`);
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
    fail(
      `${w}: conditions differ from the run's` +
        (missing.length > 0 ? `; missing: ${missing.join(', ')}` : '') +
        (extra.length > 0 ? `; unexpected: ${extra.join(', ')}` : ''),
    );
  }
  const series: Record<string, NllArray> = {};
  let n = -1;
  for (const c of ctx.conditions) {
    const a = checkNll(losses.nll[c], `${w}, condition "${c}"`, ctx.bootstrap.minTokens);
    if (n >= 0 && a.length !== n)
      fail(`${w}: condition "${c}" has ${a.length} tokens, "${ctx.conditions[0]}" has ${n}; every condition must score the same tokens`);
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

export function userPolicy(
  validation: SplitStats,
  test: SplitStats,
  encodings: Record<string, EncodingInfo>,
  criteria: Criteria,
  user: string,
): UserPolicy {
  const bytes = Object.fromEntries(Object.entries(encodings).map(([c, e]) => [c, e.bytes]));
  // the choice sees the validation split only
  const choice = choosePolicy(pointPpl(validation), bytes, criteria);
  const outcome = policyOnTest(choice.choice, pointPpl(test), criteria);
  const t = test.conditions[choice.choice]!;
  const { reference } = criteria.conditions;
  const ratioToReference: Estimate =
    choice.choice === reference
      ? { value: 1, ci: { low: 1, high: 1 } }
      : estimateOf(t.ratioToReference, `user "${user}" test ratio of "${choice.choice}"`);
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
    if (r.nll === null || typeof r.nll !== 'object' || !(reference in r.nll))
      fail(`${w}: needs the test NLLs of at least the reference "${reference}"`);
    const ppl: Record<string, number> = {};
    for (const c of Object.keys(r.nll)) {
      if (!ctx.conditions.includes(c)) fail(`${w}: unknown condition "${c}"`);
      const a = checkNll(r.nll[c], `${w}, condition "${c}"`, ctx.bootstrap.minTokens);
      if (a.length !== tokens)
        fail(`${w}: condition "${c}" has ${a.length} tokens but the test split has ${tokens}; seed runs score the same test text`);
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
  checkUserName(ev.user, 'results');
  const texts = {
    validation: checkTextId(ev.texts?.validation, ev.user, 'validation'),
    test: checkTextId(ev.texts?.test, ev.user, 'test'),
  };
  if (ev.encodings === null || typeof ev.encodings !== 'object')
    fail(`user "${ev.user}": "encodings" must be an object of condition -> { bytes, params }`);
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
    if (s.bytes !== texts[split].bytes)
      fail(`user "${ev.user}" ${split}: the losses are for ${s.bytes} bytes but the text id says ${texts[split].bytes}`);
  }
  const out: UserResult = {
    user: ev.user,
    texts,
    encodings,
    validation,
    test,
    policy: userPolicy(validation, test, encodings, ctx.criteria, ev.user),
    seeds: analyseSeeds(ev, test.tokens, ctx),
  };
  if (ev.family !== undefined) {
    if (typeof ev.family !== 'string' || ev.family === '') fail(`user "${ev.user}": "family" must be a non-empty string`);
    out.family = ev.family;
  }
  if (ev.noise !== undefined) {
    const measured = structuredClone(ev.noise);
    out.noise = { measured, analysis: analyseNoise(measured, test, ctx.criteria, ctx.conditions, ev.user) };
  }
  return out;
}

/** Verdicts (test split), policy summary and conclusions over the users done; `frontierLadder`: run.frontier.ladder. */
export function summarise(
  users: readonly UserResult[],
  conditions: readonly string[],
  criteria: Criteria,
  personal?: PersonalSignal,
  frontierLadder?: readonly number[],
): { verdicts: SchemeVerdict[]; policy: PolicySummary; conclusions: Conclusions } {
  const verdicts =
    users.length === 0
      ? []
      : computeVerdicts(
          users.map((u) => ({ user: u.user, ppl: pointPpl(u.test) })),
          schemesOf(conditions, criteria),
          criteria,
        );
  const policy = summarisePolicy(
    users.map((u) => ({
      user: u.user,
      choice: u.policy.choice,
      bytes: u.policy.bytes,
      fallback: u.policy.fallback,
      holdsOnTest: u.policy.test.holds,
    })),
  );
  return { verdicts, policy, conclusions: computeConclusions(users, criteria, personal, frontierLadder) };
}
