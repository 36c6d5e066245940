import { describe, expect, it } from 'vitest';
import {
  autoBlockLength,
  bitsPerByte,
  bootstrapPerplexityCi,
  checkNll,
  deriveSeed,
  meanNll,
  PairedBootstrap,
  percentileInterval,
  perplexity,
  quantileSorted,
  seedSpread,
  unpairedRatioCi,
  Xoshiro128,
} from '../lib/bet/stats.js';
import { splitMix64 } from '../lib/util/splitmix64.js';

const SLOW = 60_000;

function gaussian(rng: Xoshiro128): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - rng.nextFloat())) * Math.cos(2 * Math.PI * rng.nextFloat());
}

describe('point statistics', () => {
  it('perplexity is exp(mean NLL), for Float64Array and Float32Array', () => {
    expect(perplexity(Float64Array.of(1, 2, 3))).toBe(Math.exp(2));
    expect(meanNll(Float64Array.of(0.5, 1.5))).toBe(1);
    expect(perplexity(Float32Array.of(0.5, 0.25, 0.75))).toBe(Math.exp(0.5));
    expect(perplexity(new Float64Array(7))).toBe(1);
  });

  it('bits per byte is sum NLL / ln 2 / bytes', () => {
    expect(bitsPerByte(Float64Array.of(1, 2, 3), 10)).toBe(6 / Math.LN2 / 10);
    // one token of ln 2 nats over one byte is exactly one bit per byte
    expect(bitsPerByte(Float64Array.of(Math.LN2), 1)).toBe(1);
    expect(() => bitsPerByte(Float64Array.of(1), 0)).toThrow(/byte count must be a positive integer, got 0/);
    expect(() => bitsPerByte(Float64Array.of(1), 2.5)).toThrow(/positive integer/);
  });

  it('rejects bad per-token losses with a message saying what was expected', () => {
    expect(() => perplexity([1, 2, 3] as unknown as Float64Array)).toThrow(/Float64Array or Float32Array, got Array/);
    expect(() => perplexity(new Int32Array(3) as unknown as Float64Array)).toThrow(/got Int32Array/);
    expect(() => perplexity(new Float64Array(0))).toThrow(/at least 1 per-token NLLs, got 0/);
    expect(() => perplexity(Float64Array.of(1, NaN))).toThrow(/index 1 is NaN/);
    expect(() => perplexity(Float64Array.of(1, Infinity))).toThrow(/index 1 is Infinity/);
    expect(() => perplexity(Float64Array.of(-0.5))).toThrow(/index 0 is -0.5; expected a finite value >= 0/);
    expect(() => checkNll(Float64Array.of(1, 2), 'x', 3)).toThrow(/x: expected at least 3/);
    expect(() => perplexity(Float64Array.of(800))).toThrow(/overflows/);
  });
});

describe('random numbers', () => {
  it('SplitMix64 matches the reference implementation', () => {
    // outputs of Vigna's splitmix64.c with x = 0
    expect(splitMix64(0n, 3)).toEqual([0xe220a8397b1dcdafn, 0x6e789e6aa1b965f4n, 0x06c45d188009454fn]);
  });

  it('xoshiro128** matches the reference implementation', () => {
    // outputs of Blackman & Vigna's xoshiro128starstar.c with s = {1, 2, 3, 4}
    const g = Xoshiro128.fromState([1, 2, 3, 4]);
    expect(Array.from({ length: 8 }, () => g.nextUint32())).toEqual([
      11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849,
    ]);
    // seeded from SplitMix64(42): state = low/high words of its first two outputs (computed with the C code)
    const h = new Xoshiro128(42);
    expect(Array.from({ length: 5 }, () => h.nextUint32())).toEqual([1776835114, 4165204688, 17111135, 2317295270, 2792088233]);
    expect(() => Xoshiro128.fromState([0, 0, 0, 0])).toThrow(/all zero/);
    expect(() => new Xoshiro128(-1)).toThrow(/seed must be an integer/);
    expect(() => new Xoshiro128(1.5)).toThrow(/seed must be an integer/);
  });

  it('draws bounded integers without bias and floats in [0, 1)', () => {
    const g = new Xoshiro128(3);
    const counts = new Array<number>(6).fill(0);
    const draws = 60_000;
    for (let i = 0; i < draws; i++) counts[g.nextInt(6)]!++;
    // chi-square with 5 degrees of freedom; 20.5 is its 0.999 quantile
    const chi2 = counts.reduce((s, c) => s + (c - draws / 6) ** 2 / (draws / 6), 0);
    expect(chi2).toBeLessThan(20.5);
    let lo = 1;
    let hi = 0;
    for (let i = 0; i < 10_000; i++) {
      const x = g.nextFloat();
      lo = Math.min(lo, x);
      hi = Math.max(hi, x);
    }
    expect(lo).toBeGreaterThanOrEqual(0);
    expect(hi).toBeLessThan(1);
    expect(lo).toBeLessThan(0.001);
    expect(hi).toBeGreaterThan(0.999);
    expect(() => g.nextInt(0)).toThrow(/n must be an integer/);
    expect(new Xoshiro128(9).nextInt(1)).toBe(0);
  });

  it('derives distinct, reproducible seeds per label', () => {
    expect(deriveSeed(7, 'novelist', 'test')).toBe(deriveSeed(7, 'novelist', 'test'));
    expect(deriveSeed(7, 'novelist', 'test')).not.toBe(deriveSeed(7, 'novelist', 'validation'));
    expect(deriveSeed(7, 'novelist', 'test')).not.toBe(deriveSeed(8, 'novelist', 'test'));
    // label boundaries matter: ("ab", "c") is not ("a", "bc")
    expect(deriveSeed(1, 'ab', 'c')).not.toBe(deriveSeed(1, 'a', 'bc'));
    expect(Number.isSafeInteger(deriveSeed(1))).toBe(true);
  });
});

describe('quantiles and block length', () => {
  it('type-7 quantiles (as R) and percentile intervals', () => {
    const s = Float64Array.of(1, 2, 3, 4);
    expect(quantileSorted(s, 0.5)).toBe(2.5);
    expect(quantileSorted(s, 0.25)).toBe(1.75);
    expect(quantileSorted(s, 0)).toBe(1);
    expect(quantileSorted(s, 1)).toBe(4);
    const reps = Array.from({ length: 101 }, (_, i) => 100 - i); // 0..100, unsorted
    const pi = percentileInterval(reps, 0.9);
    expect(pi.low).toBeCloseTo(5, 12);
    expect(pi.high).toBeCloseTo(95, 12);
    expect(() => percentileInterval(reps, 1)).toThrow(/confidence must be in \(0, 1\)/);
  });

  it('auto block length is ceil(n^(1/3))', () => {
    expect(autoBlockLength(1)).toBe(1);
    expect(autoBlockLength(8)).toBe(2);
    expect(autoBlockLength(9)).toBe(3);
    expect(autoBlockLength(1000)).toBe(10);
    expect(autoBlockLength(1001)).toBe(11);
    expect(autoBlockLength(4096)).toBe(16);
  });
});

describe('block bootstrap', () => {
  const rng = new Xoshiro128(1234);
  const g = gaussian(rng);
  const x = Float64Array.from({ length: 1000 }, () => 3 + Math.abs(g()));

  it('is deterministic for a seed and changes with it', () => {
    const a = new PairedBootstrap({ x }, { seed: 5, resamples: 300 });
    const b = new PairedBootstrap({ x }, { seed: 5, resamples: 300 });
    const c = new PairedBootstrap({ x }, { seed: 6, resamples: 300 });
    expect(a.perplexityCi('x')).toEqual(b.perplexityCi('x'));
    expect(a.meanReplicates('x')).toEqual(b.meanReplicates('x'));
    expect(a.perplexityCi('x')).not.toEqual(c.perplexityCi('x'));
    expect(a.blockLength).toBe(10);
    const ci = a.perplexityCi('x');
    expect(ci.low).toBeLessThan(a.perplexity('x'));
    expect(ci.high).toBeGreaterThan(a.perplexity('x'));
  });

  it('has known answers on degenerate resampling', () => {
    // one block as long as the text: every replicate is a rotation of the whole text, same mean
    const whole = new PairedBootstrap({ x }, { seed: 1, resamples: 50, blockLength: x.length });
    const p = whole.perplexity('x');
    const ci = whole.perplexityCi('x');
    expect(ci.low).toBeCloseTo(p, 10);
    expect(ci.high).toBeCloseTo(p, 10);
    // a constant shift of the losses: every replicate's ratio is exp(shift)
    const y = x.map((v) => v + 0.25);
    const pb = new PairedBootstrap({ y, x }, { seed: 2, resamples: 200 });
    const r = pb.ratioCi('y', 'x');
    expect(r.low).toBeCloseTo(Math.exp(0.25), 12);
    expect(r.high).toBeCloseTo(Math.exp(0.25), 12);
    expect(pb.ratio('y', 'x')).toBeCloseTo(Math.exp(0.25), 12);
    // identical series: ratio exactly 1
    expect(new PairedBootstrap({ a: x, b: x.slice() }, { seed: 3, resamples: 100 }).ratioCi('a', 'b')).toEqual({ low: 1, high: 1 });
  });

  it('bits-per-byte intervals are the perplexity intervals through the same replicates', () => {
    // 401 replicates: the 2.5% and 97.5% quantiles fall on order statistics, which commute with
    // the monotone map from mean NLL to perplexity or bits per byte
    const pb = new PairedBootstrap({ x }, { seed: 4, resamples: 401 });
    const bytes = 4321;
    expect(pb.bitsPerByte('x', bytes)).toBeCloseTo(bitsPerByte(x, bytes), 12);
    const k = x.length / Math.LN2 / bytes;
    const ppl = pb.perplexityCi('x');
    const bpb = pb.bitsPerByteCi('x', bytes);
    expect(bpb.low).toBeCloseTo(Math.log(ppl.low) * k, 10);
    expect(bpb.high).toBeCloseTo(Math.log(ppl.high) * k, 10);
  });

  it('rejects conditions scored on different tokens and bad options', () => {
    expect(() => new PairedBootstrap({ a: x, b: x.subarray(1) }, { seed: 1 })).toThrow(
      /"b" has 999 tokens but "a" has 1000; paired resampling needs/,
    );
    expect(() => new PairedBootstrap({ x }, { seed: 1, resamples: 1 })).toThrow(/resamples must be an integer >= 2/);
    expect(() => new PairedBootstrap({ x }, { seed: 1, blockLength: 0 })).toThrow(/blockLength must be a positive integer or 'auto'/);
    expect(() => new PairedBootstrap({ x }, { seed: 1, confidence: 95 })).toThrow(/confidence must be in \(0, 1\)/);
    expect(() => new PairedBootstrap({}, { seed: 1 })).toThrow(/no conditions/);
    expect(() => new PairedBootstrap({ x }, { seed: 1 }).perplexityCi('y')).toThrow(/unknown condition "y"/);
  });

  it(
    'covers the true perplexity at about the nominal rate (i.i.d. losses)',
    () => {
      // NLL ~ Exponential(mean 2): true perplexity e^2
      const r = new Xoshiro128(2024);
      const truth = Math.exp(2);
      let hits = 0;
      const trials = 200;
      for (let t = 0; t < trials; t++) {
        const nll = Float64Array.from({ length: 400 }, () => -2 * Math.log(1 - r.nextFloat()));
        const ci = bootstrapPerplexityCi(nll, { seed: t, resamples: 400 });
        if (ci.low <= truth && truth <= ci.high) hits++;
      }
      const coverage = hits / trials;
      expect(coverage).toBeGreaterThan(0.88);
      expect(coverage).toBeLessThan(0.99);
    },
    SLOW,
  );

  it(
    'resampling blocks keeps the coverage on autocorrelated losses, resampling single tokens does not',
    () => {
      // log NLL is AR(1) with phi = 0.7: NLL = exp(mu + a_t), E[NLL] = exp(mu + var(a) / 2)
      const phi = 0.7;
      const s = 0.5;
      const mu = 1;
      const varA = (s * s) / (1 - phi * phi);
      const truth = Math.exp(Math.exp(mu + varA / 2));
      const coverage = (blockLength: number | 'auto'): number => {
        const r = new Xoshiro128(99);
        const gg = gaussian(r);
        let hits = 0;
        const trials = 150;
        for (let t = 0; t < trials; t++) {
          let a = gg() * Math.sqrt(varA);
          const nll = Float64Array.from({ length: 400 }, () => {
            a = phi * a + s * gg();
            return Math.exp(mu + a);
          });
          const ci = bootstrapPerplexityCi(nll, { seed: t, resamples: 400, blockLength });
          if (ci.low <= truth && truth <= ci.high) hits++;
        }
        return hits / trials;
      };
      const block = coverage('auto');
      const single = coverage(1);
      expect(block).toBeGreaterThan(0.8);
      expect(single).toBeLessThan(0.75);
      expect(block - single).toBeGreaterThan(0.1);
    },
    SLOW,
  );

  it('the paired ratio interval is much narrower than the unpaired one when losses are correlated', () => {
    const r = new Xoshiro128(77);
    const gg = gaussian(r);
    const base = Float64Array.from({ length: 2000 }, () => 2 + 2 * Math.abs(gg()));
    const shifted = base.map((v) => Math.max(0, v + 0.1 + 0.05 * gg()));
    const pb = new PairedBootstrap({ q: shifted, raw: base }, { seed: 1, resamples: 1000 });
    const paired = pb.ratioCi('q', 'raw');
    const unpaired = unpairedRatioCi(shifted, base, { seed: 1, resamples: 1000 });
    const ratio = pb.ratio('q', 'raw');
    for (const ci of [paired, unpaired]) {
      expect(ci.low).toBeLessThan(ratio);
      expect(ci.high).toBeGreaterThan(ratio);
    }
    expect(paired.high - paired.low).toBeLessThan((unpaired.high - unpaired.low) / 5);
    // determinism of the unpaired version too
    expect(unpairedRatioCi(shifted, base, { seed: 1, resamples: 1000 })).toEqual(unpaired);
  });
});

describe('seed spread', () => {
  it('summarises values over seeds', () => {
    expect(seedSpread([1, 2, 3])).toEqual({ n: 3, mean: 2, sd: 1, min: 1, max: 3, maxOverMin: 3 });
    expect(seedSpread([5])).toEqual({ n: 1, mean: 5, sd: null, min: 5, max: 5, maxOverMin: 1 });
    expect(() => seedSpread([])).toThrow(/at least one value/);
    expect(() => seedSpread([1, NaN])).toThrow(/value 1 is NaN/);
  });
});
