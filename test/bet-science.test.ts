// Issue 10 §5, §6, §8: the noise margin, the personal signal (PERSONAL-LOST) and the computed
// conclusions, on a synthetic run: their analyses, the reader's recomputation (a tampered number
// is refused), the report sections and the noise plot; and the generic adapter's pooled text.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { sha256Hex } from '../lib/util/hash.js';
import { canonicalJson, DEFAULT_CRITERIA, loadCriteria, validateCriteria, type LoadedCriteria } from '../lib/bet/criteria.js';
import { computeConclusions } from '../lib/bet/conclusions.js';
import {
  analyseNoise,
  firstCrossing,
  NOISE_DISTRIBUTIONS,
  NOISE_RMS_GRID,
  NOISE_SEEDS,
  perturbGains,
  renderNoisePlot,
  rmsError,
  type NoiseMeasured,
} from '../lib/bet/noise.js';
import type { PersonalMeasured } from '../lib/bet/personal.js';
import { interleave, POOL_PIECES, runConfig } from '../lib/bet/protocol.js';
import { runConfigDiffs } from '../lib/bet/results-writer.js';
import { Model } from '../lib/index.js';
import { resolveAdapterRun } from '../lib/model/train-adapter.js';
import { renderReport } from '../lib/bet/report.js';
import {
  parseResults,
  ResultsWriter,
  type AdapterCompressResults,
  type ResultsHeader,
  type SplitLosses,
  type TextId,
  type UserEvaluation,
} from '../lib/bet/results.js';
import { Xoshiro128 } from '../lib/bet/stats.js';

const CONDITIONS = ['no_adapter', 'raw_fp32', 'raw_fp16', 'int8_per_tensor', 'int4_delta'];
const TOKENS = 400;
// ppl ratio to raw_fp32; the programmer's int8 is worse than no adapter, and so is the scientist's
const USERS: Record<string, Record<string, number>> = {
  novelist: { no_adapter: 1.3, raw_fp32: 1, raw_fp16: 1.001, int8_per_tensor: 1.05, int4_delta: 1.2 },
  scientist: { no_adapter: 1.1, raw_fp32: 1, raw_fp16: 1.001, int8_per_tensor: 1.12, int4_delta: 1.4 },
  programmer: { no_adapter: 1.05, raw_fp32: 1, raw_fp16: 1.001, int8_per_tensor: 1.1, int4_delta: 1.6 },
};
const NAMES = Object.keys(USERS);

function losses(seed: number, ratios: Record<string, number>): SplitLosses {
  const rng = new Xoshiro128(seed);
  const d = Float64Array.from({ length: TOKENS }, () => 1 - Math.log(1 - rng.nextFloat()));
  const nll: Record<string, Float64Array> = {};
  for (const c of CONDITIONS) nll[c] = Float64Array.from(d, (v) => v + Math.log(ratios[c]!));
  return { bytes: TOKENS * 4, nll };
}

function textId(user: string, part: 'validation' | 'test'): TextId {
  return { fixture: user, part, ranges: [[0, TOKENS * 4]], bytes: TOKENS * 4, sha256: sha256Hex(`${user}.${part}`) };
}

const RMS = [0.001, 0.01, 0.1, 1];
/** A noise sweep whose ratio grows as 1 + (rms / scale)^2 (seed s shifts it a little). */
function noise(user: string): NoiseMeasured {
  const refNll = 1; // moved to the user's own reference mean by evaluation()
  return {
    split: 'test',
    rms: RMS,
    seeds: [7, 8],
    meanNll: {
      uniform: [0, 1].map((s) => RMS.map((x) => refNll + Math.log(1 + (x / (0.05 + 0.01 * s)) ** 2))),
      gaussian: [0, 1].map((s) => RMS.map((x) => refNll + Math.log(1 + (x / (0.04 + 0.01 * s)) ** 2))),
    },
    schemeRms: { raw_fp32: 0, raw_fp16: 1e-4, int8_per_tensor: user === 'programmer' ? 0.004 : 0.002, int4_delta: 0.03 },
  };
}

function evaluation(user: string, k: number, withNoise: boolean): UserEvaluation {
  const ev: UserEvaluation = {
    user,
    texts: { validation: textId(user, 'validation'), test: textId(user, 'test') },
    encodings: {
      raw_fp32: { bytes: 9232, params: {} },
      raw_fp16: { bytes: 4624, params: {} },
      int8_per_tensor: { bytes: 2324, params: {} },
      int4_delta: { bytes: 1172, params: {} },
    },
    validation: losses(10 + k, USERS[user]!),
    test: losses(20 + k, USERS[user]!),
  };
  if (withNoise) {
    const m = noise(user);
    // measured around the user's own reference mean NLL
    const ref = Array.from(ev.test.nll.raw_fp32!).reduce((s, v) => s + v, 0) / TOKENS;
    for (const d of ['uniform', 'gaussian'] as const) m.meanNll[d] = m.meanNll[d].map((row) => row.map((v) => v - 1 + ref));
    ev.noise = m;
  }
  return ev;
}

const criteria: LoadedCriteria = loadCriteria();
const header = (): ResultsHeader => ({
  seed: 3,
  baseModel: { name: 'tiny', sha256: sha256Hex('model'), config: { layers: 2 } },
  criteria,
  conditions: CONDITIONS,
  bootstrap: { resamples: 200 },
  minTokens: 100,
  run: {
    adapterRun: { maxSteps: 10 },
    encode: { calibrationTokens: 512, clipGrid: [1], groupSize: null, kmeansMaxIters: null, calibrationPasses: null, mixedBudget: null },
  },
});

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A complete synthetic run with noise sweeps and the personal signal; generic's ratio to own per user given. */
function run(genericOverOwn: Record<string, number> = { novelist: 1.2, scientist: 1.05, programmer: 1.01 }): AdapterCompressResults {
  const dir = mkdtempSync(join(tmpdir(), 'ternorm-science-'));
  dirs.push(dir);
  let t = Date.parse('2026-01-01T00:00:00Z');
  const w = ResultsWriter.start(join(dir, 'r.json'), header(), { now: () => new Date((t += 1000)) });
  NAMES.forEach((u, k) => w.addUser(evaluation(u, k, true)));
  const users = w.results.users;
  const ref = (j: number, split: 'validation' | 'test'): number => users[j]![split].conditions.raw_fp32!.meanNll;
  const measured: PersonalMeasured = {
    users: NAMES,
    generic: { seed: 3, trainBytes: 12345 },
    testMeanNll: NAMES.map((_, i) => NAMES.map((_, j) => (i === j ? ref(j, 'test') : ref(j, 'test') + 0.5 + 0.1 * i))),
    genericMeanNll: {
      validation: NAMES.map((u, j) => ref(j, 'validation') + Math.log(genericOverOwn[u]!)),
      test: NAMES.map((u, j) => ref(j, 'test') + Math.log(genericOverOwn[u]!)),
    },
    ci: {
      othersOverOwn: NAMES.map((_, j) => NAMES.map((_, i) => (i === j ? null : { low: 1.5, high: 1.9 }))),
      genericOverOwn: { validation: NAMES.map(() => ({ low: 1, high: 1.3 })), test: NAMES.map(() => ({ low: 1, high: 1.3 })) },
    },
  };
  w.setPersonal(measured);
  return w.complete();
}

/** Re-serialises a tampered results object with a valid checksum, so only the recomputation can catch it. */
function resealed(r: AdapterCompressResults, edit: (x: AdapterCompressResults) => void): string {
  const x = structuredClone(r);
  edit(x);
  const { checksum: _c, ...body } = x;
  return JSON.stringify({ ...body, checksum: sha256Hex(canonicalJson(body)) });
}

describe('noise margin', () => {
  it('perturbs the gains with exactly the RMS asked, deterministically, per distribution and seed', () => {
    const g = Float32Array.from({ length: 2304 }, (_, i) => 1 + 0.1 * Math.sin(i));
    for (const d of ['uniform', 'gaussian'] as const) {
      for (const x of [1e-3, 0.05, 0.7]) {
        const p = perturbGains(g, x, d, 11);
        expect(Math.abs(rmsError(p, g) / x - 1)).toBeLessThan(1e-4); // f32 rounding of g + e only
        expect(perturbGains(g, x, d, 11)).toEqual(p);
        expect(perturbGains(g, x, d, 12)).not.toEqual(p);
      }
    }
    const u = perturbGains(g, 0.1, 'uniform', 1);
    const n = perturbGains(g, 0.1, 'gaussian', 1);
    // uniform noise is bounded by sqrt(3) * rms; Gaussian noise of the same RMS goes beyond it
    const maxDev = (p: Float32Array): number => Math.max(...Array.from(p, (v, i) => Math.abs(v - g[i]!)));
    expect(maxDev(u)).toBeLessThanOrEqual(Math.sqrt(3) * 0.1 * 1.001);
    expect(maxDev(n)).toBeGreaterThan(Math.sqrt(3) * 0.1);
    expect(() => perturbGains(g, 0, 'uniform', 1)).toThrow(/rms must be a positive/);
  });

  it('interpolates the first crossing on the log grid and says when it is outside the grid', () => {
    const rms = [0.01, 0.1, 1];
    // log-linear between (0.1, 1.2) and (1, 4.8): 1.5 is a quarter of the way in log ratio... exactly
    const c = firstCrossing(rms, [1, 1.2, 4.8], 1.5);
    const t = Math.log(1.5 / 1.2) / Math.log(4.8 / 1.2);
    expect(c.where).toBe('within');
    expect(c.rms).toBeCloseTo(Math.exp(Math.log(0.1) + t * Math.log(10)), 12);
    expect(firstCrossing(rms, [1, 1.1, 1.2], 1.5)).toEqual({ where: 'aboveGrid', rms: null });
    expect(firstCrossing(rms, [1.6, 2, 3], 1.5)).toEqual({ where: 'belowGrid', rms: null });
    // a dip after a first crossing does not move it
    expect(firstCrossing(rms, [1, 2, 1.1], 1.5).rms).toBeLessThan(0.1);
    expect(NOISE_RMS_GRID[0]).toBe(0.001);
    expect(NOISE_RMS_GRID.at(-1)).toBe(1);
  });

  it('derives thresholds, crossings and margin factors from the measured sweep', () => {
    const r = run();
    const u = r.users[0]!;
    const a = u.noise!.analysis;
    expect(a.thresholds.strict).toBe(1.5);
    expect(a.thresholds.noAdapter).toBeCloseTo(1.3, 10);
    expect(a.bet).toEqual({ scheme: 'int8_per_tensor', rms: 0.002 });
    expect(a.schemes.int4_delta!.ratio).toBeCloseTo(1.2, 10);
    const cu = a.curves.uniform;
    expect(cu.crossings.strict.every((c) => c.where === 'within')).toBe(true);
    // ratio = 1 + (x / s)^2 crosses 1.5 at x = s / sqrt(2) in the continuum; the grid interpolation
    // brackets it between 0.01 and 0.1
    for (const c of cu.crossings.strict) expect(c.rms!).toBeGreaterThan(0.01);
    expect(cu.margin.strict!.median).toBeCloseTo(cu.tolerance.strict!.median / 0.002, 10);
    expect(cu.tolerance.noAdapter!.max).toBeLessThan(cu.tolerance.strict!.min); // 1.3 is crossed before 1.5
    expect(analyseNoise(u.noise!.measured, u.test, criteria.criteria, CONDITIONS, u.user)).toEqual(a);
  });

  it('the reader refuses a tampered noise number and a malformed sweep', () => {
    const r = run();
    expect(() => parseResults(resealed(r, (x) => (x.users[1]!.noise!.analysis.curves.gaussian.margin.noAdapter!.median *= 1.01)))).toThrow(
      /noise\.analysis differs from the analysis recomputed/,
    );
    expect(() => parseResults(resealed(r, (x) => (x.users[1]!.noise!.measured.meanNll.uniform[0]![2]! += 0.01)))).toThrow(
      /noise\.analysis differs/,
    );
    expect(() => parseResults(resealed(r, (x) => x.users[0]!.noise!.measured.meanNll.uniform[0]!.pop()))).toThrow(
      /"meanNll\.uniform" must be 2 rows of 4 mean NLLs/,
    );
    expect(parseResults(JSON.stringify(r))).toEqual(r);
  });

  it('is recorded in the run, so --resume refuses a run swept otherwise (or not at all)', () => {
    const run = resolveAdapterRun(Model.create({ vocab: 300, dModel: 64, nLayers: 1, nHeads: 2, dFf: 128, context: 32 }, 5), {});
    const none = runConfig(run, undefined, 512);
    const three = runConfig(run, undefined, 512, { noise: {} });
    const two = runConfig(run, undefined, 512, { noise: { seeds: 2 } });
    expect('noise' in none).toBe(false); // runs without --noise keep their files' bytes
    expect(three.noise).toEqual({ seeds: NOISE_SEEDS, rmsGrid: [...NOISE_RMS_GRID], distributions: [...NOISE_DISTRIBUTIONS] });
    expect(runConfigDiffs(three, runConfig(run, undefined, 512, { noise: { seeds: NOISE_SEEDS } }))).toEqual([]);
    expect(runConfigDiffs(three, two)).toEqual([
      `noise (--noise, --noise-seeds): ${JSON.stringify(three.noise)} in the file, ${JSON.stringify(two.noise)} now`,
    ]);
    expect(runConfigDiffs(none, two)).toEqual([`noise (--noise, --noise-seeds): absent in the file, ${JSON.stringify(two.noise)} now`]);
  });

  it('plots every scheme as a point and the noise curves as lines', () => {
    const svg = renderNoisePlot(run());
    expect(svg.match(/class="noise-curve"/g)).toHaveLength(2 * NAMES.length);
    // raw_fp32 has no error and no point on a log axis; fp16, int8 and int4 per user
    expect(svg.match(/class="scheme"/g)).toHaveLength(3 * NAMES.length);
    expect(svg).toContain('data-scheme="int8_per_tensor" data-rms="0.004"');
  });
});

describe('personal signal', () => {
  it('registers PERSONAL-LOST in the default criteria; older criteria without it stay valid', () => {
    expect(DEFAULT_CRITERIA.personalLost).toEqual({ minFraction: '2/3' });
    const { personalLost: _p, ...old } = structuredClone(DEFAULT_CRITERIA) as typeof DEFAULT_CRITERIA;
    expect(validateCriteria(old).personalLost).toBeUndefined();
    expect(validateCriteria({ ...old, personalLost: { minFraction: '4/6' } }).personalLost).toEqual({ minFraction: '2/3' });
    expect(() => validateCriteria({ ...old, personalLost: { minFraction: '3/2' } })).toThrow(/personalLost\.minFraction.*at most 1/);
    expect(() => validateCriteria({ ...old, personalLost: { minFraction: '1', x: 1 } })).toThrow(/unknown key "personalLost\.x"/);
  });

  it('decides PERSONAL-LOST on validation and reports it on test', () => {
    const r = run();
    const lost = r.personal!.analysis.personalLost!.filter((o) => o.scheme !== 'raw_fp16');
    const by = Object.fromEntries(lost.map((o) => [o.scheme, o]));
    // int8: novelist 1.05 < 1.2 (kept), scientist 1.12 > 1.05, programmer 1.1 > 1.01 (lost): 2 of 3
    expect(by.int8_per_tensor!.users.map((u) => u.lostOnValidation)).toEqual([false, true, true]);
    expect(by.int8_per_tensor!.validation).toEqual({ count: 2, holds: true });
    expect(by.int8_per_tensor!.users[0]!.validationRatio).toBeCloseTo(1.05 / 1.2, 10);
    // the reference is not a scheme
    expect(by.raw_fp32).toBeUndefined();
    expect(r.personal!.analysis.users[2]!.genericOverOwn.test.value).toBeCloseTo(1.01, 10);
    expect(r.personal!.analysis.users[0]!.othersOverOwn.map((x) => x.adapter)).toEqual(['scientist', 'programmer']);
    // a generic adapter worse than everybody's compressed one: nothing lost
    const none = run({ novelist: 2, scientist: 2, programmer: 2 }).personal!.analysis.personalLost!;
    expect(none.every((o) => o.validation.count === 0 && !o.validation.holds)).toBe(true);
  });

  it('the reader refuses a tampered matrix, tier or a diagonal that is not the reference', () => {
    const r = run();
    expect(() => parseResults(resealed(r, (x) => (x.personal!.analysis.personalLost![1]!.validation.holds = false)))).toThrow(
      /personal\.analysis differs/,
    );
    expect(() => parseResults(resealed(r, (x) => (x.personal!.measured.genericMeanNll.validation[0]! += 0.2)))).toThrow(
      /personal\.analysis differs/,
    );
    expect(() => parseResults(resealed(r, (x) => (x.personal!.measured.testMeanNll[1]![1]! += 1e-9)))).toThrow(
      /testMeanNll\[1\]\[1\] is not user "scientist"'s raw_fp32 test mean NLL/,
    );
  });
});

describe('conclusions', () => {
  it('are computed from the numbers: the finding per family, margins, the schemes that keep the personal signal', () => {
    const r = run();
    const c = r.conclusions!;
    // int8 is worse than no adapter for the scientist (1.12 > 1.1) and the programmer (1.1 > 1.05): 2 of 3
    expect(c.families).toEqual([
      { family: 'all users', users: NAMES, scheme: 'int8_per_tensor', worseThanNoAdapter: 2, required: 2, reproduces: true },
    ]);
    expect(c.margins!.map((m) => m.user)).toEqual(NAMES);
    expect(c.margins![0]!.uniform).toEqual(r.users[0]!.noise!.analysis.curves.uniform.margin.noAdapter);
    expect(c.personal!.find((x) => x.scheme === 'int8_per_tensor')!.keeps).toBe(false);
    expect(c.frontier).toBeNull();
    expect(computeConclusions(r.users, r.criteria.criteria, r.personal)).toEqual(c);
    // families are grouped by the users' recorded family
    const fam = structuredClone(r.users);
    fam[0]!.family = 'near-base';
    const split = computeConclusions(fam, r.criteria.criteria, undefined);
    expect(split.families.map((x) => [x.family, x.users.length, x.reproduces])).toEqual([
      ['near-base', 1, false],
      ['all users', 2, true],
    ]);
    expect(split.personal).toBeNull();
  });

  it('a tampered conclusion is detected, and the report prints the computed one', () => {
    const r = run();
    expect(() => parseResults(resealed(r, (x) => (x.conclusions!.families[0]!.reproduces = false)))).toThrow(
      /\$\.conclusions differ from the conclusions recomputed/,
    );
    expect(() => parseResults(resealed(r, (x) => (x.conclusions!.margins![2]!.gaussian = null)))).toThrow(/\$\.conclusions differ/);
    // a file of an older version, without the section, still reads
    expect(parseResults(resealed(r, (x) => delete x.conclusions)).conclusions).toBeUndefined();
    const md = renderReport(r);
    expect(md).toContain('## Noise margin (test split)');
    expect(md).toContain('## Personal signal');
    const last = md.slice(md.lastIndexOf('\n## '));
    expect(last).toMatch(/^\n## Conclusions \(computed from the numbers above\)/);
    expect(last).toContain(
      "all users (3 user(s)): int8_per_tensor is worse than no adapter for 2 of 3 (the catalogue's finding needs 2): the finding reproduces.",
    );
    expect(last).toContain('Keep the personal signal: raw_fp16.');
  });
});

describe('generic adapter', () => {
  it('pools every byte of every training text, interleaved so each part holds every user', () => {
    const texts = ['a'.repeat(5000), 'b\n'.repeat(3000), 'c'.repeat(100)].map((s) => new TextEncoder().encode(s));
    const pooled = interleave(texts);
    expect(pooled.length).toBe(texts.reduce((s, t) => s + t.length, 0));
    const count = (a: Uint8Array, ch: string): number => a.filter((b) => b === ch.charCodeAt(0)).length;
    for (const ch of ['a', 'b', 'c']) expect(count(pooled, ch)).toBe(count(texts[['a', 'b', 'c'].indexOf(ch)]!, ch));
    // the last 5 % (the early-stopping tail) holds every user
    const tail = pooled.subarray(Math.floor(pooled.length * 0.95));
    for (const ch of ['a', 'b', 'c']) expect(count(tail, ch)).toBeGreaterThan(0);
    expect(POOL_PIECES).toBeGreaterThan(1);
  });
});
