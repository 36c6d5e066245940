import { describe, expect, it } from 'vitest';
import { DEFAULT_CRITERIA, validateCriteria, type Criteria } from '../lib/bet/criteria.js';
import { choosePolicy, policyOnTest, summarisePolicy } from '../lib/bet/policy.js';
import { analyseUser, type AnalysisContext, type SplitLosses, type TextId, type UserEvaluation } from '../lib/bet/results.js';
import { Xoshiro128 } from '../lib/bet/stats.js';

const criteria: Criteria = validateCriteria(JSON.parse(JSON.stringify(DEFAULT_CRITERIA)));
const CONDITIONS = ['no_adapter', 'raw_fp32', 'raw_fp16', 'int8_per_tensor', 'int4_delta', 'kmeans16'];
const BYTES: Record<string, number> = { raw_fp32: 9232, raw_fp16: 4624, int8_per_tensor: 2324, int4_delta: 1172, kmeans16: 1240 };

// ---- choosePolicy on point perplexities ---------------------------------------------------------

describe('choosePolicy', () => {
  // reference ppl 10, no adapter 13 (the adapter helps by 30%)
  const ppl = (over: Record<string, number>): Record<string, number> => ({
    no_adapter: 13,
    raw_fp32: 10,
    raw_fp16: 10.01,
    int8_per_tensor: 11,
    int4_delta: 12,
    kmeans16: 12.5,
    ...over,
  });

  it('ships the smallest encoding that passes', () => {
    const c = choosePolicy(ppl({}), BYTES, criteria);
    expect(c.choice).toBe('int4_delta');
    expect(c.bytes).toBe(1172);
    expect(c.fallback).toBe(false);
    expect(c.candidates.map((x) => x.condition)).toEqual(['int4_delta', 'kmeans16', 'int8_per_tensor', 'raw_fp16', 'raw_fp32']);
  });

  it('skips encodings beyond 1.5x the reference, then picks the next smallest', () => {
    expect(choosePolicy(ppl({ int4_delta: 15.01 }), BYTES, criteria).choice).toBe('kmeans16');
    // 1.5x exactly passes
    expect(choosePolicy(ppl({ int4_delta: 15, no_adapter: 16 }), BYTES, criteria).choice).toBe('int4_delta');
    expect(choosePolicy(ppl({ int4_delta: 16, kmeans16: 17 }), BYTES, criteria).choice).toBe('int8_per_tensor');
  });

  it('requires strictly beating no adapter', () => {
    // within 1.5x of the reference but no better than no adapter
    const c = choosePolicy(ppl({ int4_delta: 13, kmeans16: 13.2 }), BYTES, criteria);
    expect(c.candidates.find((x) => x.condition === 'int4_delta')).toMatchObject({ ratio: 1.3, beatsNoAdapter: false, passes: false });
    expect(c.choice).toBe('int8_per_tensor');
    // the rule can be relaxed in the criteria
    const relaxed = validateCriteria({ ...JSON.parse(JSON.stringify(criteria)), policy: { maxRatio: 1.5, mustBeatNoAdapter: false } });
    expect(choosePolicy(ppl({ int4_delta: 13 }), BYTES, relaxed).choice).toBe('int4_delta');
  });

  it('falls back to raw fp16 when nothing passes', () => {
    // the adapter itself is worse than no adapter on validation: nothing beats no adapter
    const c = choosePolicy(ppl({ no_adapter: 9.5 }), BYTES, criteria);
    expect(c).toMatchObject({ choice: 'raw_fp16', bytes: 4624, fallback: true });
    expect(c.candidates.every((x) => !x.passes)).toBe(true);
  });

  it('never ships more than the fallback, even if it passes', () => {
    const c = choosePolicy(ppl({ raw_fp16: 20, int8_per_tensor: 20, int4_delta: 20, kmeans16: 20 }), BYTES, criteria);
    expect(c.candidates.find((x) => x.condition === 'raw_fp32')).toMatchObject({ eligible: false, passes: false });
    expect(c).toMatchObject({ choice: 'raw_fp16', fallback: true });
  });

  it('breaks size ties by validation perplexity, then by name', () => {
    const bytes = { ...BYTES, kmeans16: 1172 };
    // int4_delta (12) beats kmeans16 (12.5) at the same size, whatever the names
    expect(choosePolicy(ppl({}), bytes, criteria).choice).toBe('int4_delta');
    // the regression: a worse encoding whose name sorts first must not win the tie
    expect(choosePolicy(ppl({ int4_delta: 12.9, kmeans16: 10.1 }), bytes, criteria).choice).toBe('kmeans16');
    const c = choosePolicy(ppl({ int4_delta: 12.9, kmeans16: 10.1 }), bytes, criteria);
    expect(c.candidates.slice(0, 2).map((x) => x.condition)).toEqual(['kmeans16', 'int4_delta']);
    // equal size and equal perplexity: name order
    const renamed = { ...bytes, a_first: 1172 };
    expect(choosePolicy(ppl({ a_first: 12 }), renamed, criteria).choice).toBe('a_first');
    expect(choosePolicy(ppl({ a_first: 12.2 }), renamed, criteria).choice).toBe('int4_delta');
  });

  it('reports on test without changing the choice', () => {
    const c = choosePolicy(ppl({}), BYTES, criteria);
    const good = policyOnTest(c.choice, ppl({}), criteria);
    expect(good).toEqual({ ppl: 12, ratioToReference: 1.2, ratioToNoAdapter: 12 / 13, holds: true });
    const bad = policyOnTest(c.choice, ppl({ int4_delta: 14 }), criteria);
    expect(bad.holds).toBe(false);
  });

  it('rejects incomplete inputs', () => {
    expect(() => choosePolicy(ppl({}), { ...BYTES, no_adapter: 1 }, criteria)).toThrow(
      /"no_adapter" is the no-adapter baseline and has no encoding/,
    );
    const { raw_fp16: _x, ...noFallback } = BYTES;
    expect(() => choosePolicy(ppl({}), noFallback, criteria)).toThrow(/no encoded size for the fallback "raw_fp16"/);
    expect(() => choosePolicy({ ...ppl({}), kmeans16: NaN }, BYTES, criteria)).toThrow(/validation ppl of "kmeans16" is NaN/);
    expect(() => choosePolicy(ppl({}), { ...BYTES, kmeans16: 0 }, criteria)).toThrow(/encoded size of "kmeans16" is 0/);
  });

  it('summarises choices over users', () => {
    expect(
      summarisePolicy([
        { user: 'a', choice: 'int4_delta', bytes: 1172, fallback: false, holdsOnTest: true },
        { user: 'b', choice: 'raw_fp16', bytes: 4624, fallback: true, holdsOnTest: false },
        { user: 'c', choice: 'int4_delta', bytes: 1172, fallback: false, holdsOnTest: false },
      ]),
    ).toEqual({ users: 3, choices: { int4_delta: 2, raw_fp16: 1 }, fallbacks: 1, holdsOnTest: 1, meanBytes: (1172 * 2 + 4624) / 3 });
  });
});

// ---- the choice from per-token losses: validation decides, test only reports ------------------

const TOKENS = 600;

/** Per-token losses: a shared difficulty d_t (so conditions are correlated) plus ln(ratio) per condition. */
function losses(seed: number, ratios: Record<string, number>, noise = 0.05): SplitLosses {
  const rng = new Xoshiro128(seed);
  const d = Float64Array.from({ length: TOKENS }, () => 1 - Math.log(1 - rng.nextFloat()));
  const nll: Record<string, Float64Array> = {};
  for (const c of CONDITIONS) {
    const shift = Math.log(ratios[c]!);
    nll[c] = d.map((v) => Math.max(0, v + shift + (c === 'raw_fp32' ? 0 : noise * (rng.nextFloat() - 0.5))));
  }
  return { bytes: TOKENS * 4, nll };
}

const RATIOS: Record<string, number> = {
  no_adapter: 1.3,
  raw_fp32: 1,
  raw_fp16: 1.001,
  int8_per_tensor: 1.05,
  int4_delta: 1.2,
  kmeans16: 1.1,
};

function textId(part: 'validation' | 'test'): TextId {
  return {
    fixture: 'novelist',
    part,
    ranges: [[part === 'validation' ? 0 : 5000, part === 'validation' ? TOKENS * 4 : 5000 + TOKENS * 4]],
    bytes: TOKENS * 4,
    sha256: 'a'.repeat(64),
  };
}

function evaluation(validation: SplitLosses, test: SplitLosses): UserEvaluation {
  const encodings = Object.fromEntries(Object.entries(BYTES).map(([c, b]) => [c, { bytes: b, params: { scale: [0.01] } }]));
  return { user: 'novelist', texts: { validation: textId('validation'), test: textId('test') }, encodings, validation, test };
}

const ctx: AnalysisContext = {
  criteria,
  conditions: CONDITIONS,
  seed: 11,
  bootstrap: { method: 'circular-block', interval: 'percentile', resamples: 200, confidence: 0.95, blockLength: 'auto', minTokens: 100 },
};

describe('the policy on per-token losses', () => {
  it('is chosen on validation: changing the test losses never changes the choice', () => {
    const val = losses(1, RATIOS);
    const base = analyseUser(evaluation(val, losses(2, RATIOS)), ctx);
    expect(base.policy.choice).toBe('int4_delta');
    expect(base.policy.test.holds).toBe(true);
    const rng = new Xoshiro128(5);
    const seen = new Set<number>();
    for (let k = 0; k < 12; k++) {
      // arbitrary test-split outcomes, including ones where the chosen encoding is catastrophic on test
      const testRatios = Object.fromEntries(CONDITIONS.map((c) => [c, c === 'raw_fp32' ? 1 : 0.8 + 1.6 * rng.nextFloat()]));
      const u = analyseUser(evaluation(val, losses(100 + k, testRatios)), ctx);
      expect(u.policy.choice).toBe(base.policy.choice);
      expect(u.policy.candidates).toEqual(base.policy.candidates);
      expect(u.validation).toEqual(base.validation);
      seen.add(u.policy.test.ppl.value);
      // what is reported is the test split's own number
      expect(u.policy.test.ppl).toEqual(u.test.conditions.int4_delta!.ppl);
      expect(u.policy.test.holds).toBe(
        u.test.conditions.int4_delta!.ratioToReference!.value <= 1.5 &&
          u.test.conditions.int4_delta!.ppl.value < u.test.conditions.no_adapter!.ppl.value,
      );
    }
    expect(seen.size).toBe(12);
  });

  it('does follow the validation split (the check above can fail)', () => {
    const test = losses(2, RATIOS);
    const worseInt4 = analyseUser(evaluation(losses(1, { ...RATIOS, int4_delta: 1.6 }), test), ctx);
    expect(worseInt4.policy.choice).toBe('kmeans16');
    const hurting = analyseUser(evaluation(losses(1, { ...RATIOS, no_adapter: 0.9 }), test), ctx);
    expect(hurting.policy).toMatchObject({ choice: 'raw_fp16', fallback: true });
    // the test split still says how the fallback does
    expect(hurting.policy.test.ppl).toEqual(hurting.test.conditions.raw_fp16!.ppl);
  });

  it('is deterministic for a seed', () => {
    const ev = evaluation(losses(1, RATIOS), losses(2, RATIOS));
    expect(analyseUser(ev, ctx)).toEqual(analyseUser(ev, ctx));
    const other = analyseUser(ev, { ...ctx, seed: 12 });
    expect(other.test.conditions.int8_per_tensor!.ppl.ci).not.toEqual(analyseUser(ev, ctx).test.conditions.int8_per_tensor!.ppl.ci);
  });
});
