// Statistics of the adapter-compression bet, computed from per-token negative log-likelihoods
// (natural log) of one text under one or more conditions.
//
//  - perplexity = exp(mean NLL); bits per byte = (sum NLL) / ln 2 / (bytes of the text).
//  - Confidence intervals: the circular block bootstrap (Politis & Romano 1992). Token losses of a
//    language model are autocorrelated (a hard passage makes several tokens in a row hard), so
//    resampling single tokens would understate the uncertainty; resampling blocks of consecutive
//    tokens keeps the short-range dependence. A replicate is ceil(n / L) blocks of L tokens, each
//    starting at a uniformly drawn token and wrapping round the end of the text (so every token is
//    equally likely to be drawn), concatenated and cut to n tokens. The default block length is
//    L = ceil(n^(1/3)) (the order that balances bias and variance of the block bootstrap variance
//    estimate, Hall, Horowitz & Jing 1995); it can be set explicitly and is recorded in the results.
//  - Paired resampling: every condition of one split scores the same tokens, so one set of block
//    draws is applied to all of them; a perplexity ratio's replicate is exp(mean_a* - mean_b*) on
//    the same resampled tokens. The token-to-token difficulty common to both then cancels, which is
//    what makes the ratio interval much narrower than resampling the two independently.
//  - Intervals are percentile intervals: the (1-c)/2 and (1+c)/2 quantiles of the replicates,
//    quantiles by linear interpolation between order statistics (Hyndman & Fan type 7, R's default).
//  - Random numbers: xoshiro128** 1.1 (Blackman & Vigna), its 128-bit state filled from SplitMix64
//    of the seed, as its authors recommend. Same seed -> same intervals, on every platform.

import { sha256Hex } from '../util/hash.js';
import { splitMix64 } from '../util/splitmix64.js';

/** Per-token negative log-likelihoods (natural log), one per scored token. */
export type NllArray = Float64Array | Float32Array;

/** A closed interval [low, high]. */
export interface Interval {
  low: number;
  high: number;
}

// ---- point statistics ---------------------------------------------------------------------------

/**
 * Checks that `nll` is a Float64Array or Float32Array of at least `minTokens` finite, non-negative
 * values (a token's probability is at most 1, so its NLL is >= 0) and returns it.
 */
export function checkNll(nll: unknown, what: string, minTokens = 1): NllArray {
  if (!(nll instanceof Float64Array) && !(nll instanceof Float32Array)) {
    const got = nll === null ? 'null' : typeof nll === 'object' ? (nll.constructor?.name ?? 'object') : typeof nll;
    throw new TypeError(`${what}: expected per-token NLLs as a Float64Array or Float32Array, got ${got}`);
  }
  if (nll.length < minTokens) {
    throw new RangeError(`${what}: expected at least ${minTokens} per-token NLLs, got ${nll.length}`);
  }
  for (let i = 0; i < nll.length; i++) {
    const v = nll[i]!;
    if (!Number.isFinite(v) || v < 0) {
      throw new RangeError(`${what}: per-token NLL at index ${i} is ${v}; expected a finite value >= 0 (natural log)`);
    }
  }
  return nll;
}

function sum(nll: NllArray): number {
  let s = 0;
  for (let i = 0; i < nll.length; i++) s += nll[i]!;
  return s;
}

/** Mean per-token NLL (nats per token). */
export function meanNll(nll: NllArray): number {
  checkNll(nll, 'meanNll');
  return sum(nll) / nll.length;
}

/** exp(mean NLL); throws if it overflows a double. */
export function perplexityFromMean(mean: number): number {
  const p = Math.exp(mean);
  if (!Number.isFinite(p)) throw new RangeError(`perplexity: exp(${mean}) overflows; the mean NLL is implausibly large`);
  return p;
}

/** Perplexity = exp(mean per-token NLL). */
export function perplexity(nll: NllArray): number {
  return perplexityFromMean(meanNll(nll));
}

function checkBytes(bytes: unknown, what: string): number {
  if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new RangeError(`${what}: the text's byte count must be a positive integer, got ${String(bytes)}`);
  }
  return bytes;
}

/** Bits per byte = (sum of per-token NLL) / ln 2 / (bytes of the scored text). */
export function bitsPerByte(nll: NllArray, bytes: number): number {
  checkNll(nll, 'bitsPerByte');
  checkBytes(bytes, 'bitsPerByte');
  return sum(nll) / Math.LN2 / bytes;
}

// ---- random numbers -----------------------------------------------------------------------------

function checkSeed(seed: unknown, what: string): number {
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(`${what}: the seed must be an integer in [0, 2^53), got ${String(seed)}`);
  }
  return seed;
}

/** xoshiro128** 1.1: a small, fast generator with a 2^128 - 1 period. */
export class Xoshiro128 {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /** Seeds the state with the first two SplitMix64 outputs of `seed` (low word first). */
  constructor(seed: number) {
    checkSeed(seed, 'Xoshiro128');
    const [a, b] = splitMix64(BigInt(seed), 2) as [bigint, bigint];
    this.s0 = Number(a & 0xffffffffn) | 0;
    this.s1 = Number(a >> 32n) | 0;
    this.s2 = Number(b & 0xffffffffn) | 0;
    this.s3 = Number(b >> 32n) | 0;
  }

  /** A generator with an explicit state (not all zero), e.g. to compare with the C reference. */
  static fromState(state: readonly [number, number, number, number]): Xoshiro128 {
    if (state.every((w) => (w | 0) === 0)) throw new RangeError('Xoshiro128: the state must not be all zero');
    const g = new Xoshiro128(0);
    g.s0 = state[0] | 0;
    g.s1 = state[1] | 0;
    g.s2 = state[2] | 0;
    g.s3 = state[3] | 0;
    return g;
  }

  /** Next 32 random bits as an unsigned integer. */
  nextUint32(): number {
    const s1 = this.s1;
    const r = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return r;
  }

  /** Uniform double in [0, 1) with 53 random bits. */
  nextFloat(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [0, n), 1 <= n <= 2^32, without modulo bias (rejection). */
  nextInt(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > 4294967296)
      throw new RangeError(`Xoshiro128.nextInt: n must be an integer in [1, 2^32], got ${n}`);
    const limit = 4294967296 - (4294967296 % n);
    for (;;) {
      const x = this.nextUint32();
      if (x < limit) return x % n;
    }
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/**
 * A seed for one independent random stream, derived from a run seed and labels (e.g. a user name
 * and a split): the first 48 bits of sha256 of the seed and labels, NUL-separated.
 */
export function deriveSeed(seed: number, ...labels: string[]): number {
  checkSeed(seed, 'deriveSeed');
  const h = sha256Hex(['ternorm-seed', String(seed), ...labels].join('\0'));
  return parseInt(h.slice(0, 12), 16);
}

// ---- quantiles and intervals --------------------------------------------------------------------

/** Type-7 quantile (linear interpolation between order statistics) of an ascending array. */
export function quantileSorted(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) throw new RangeError('quantile: no values');
  if (!(p >= 0 && p <= 1)) throw new RangeError(`quantile: p must be in [0, 1], got ${p}`);
  const h = (n - 1) * p;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, n - 1);
  const a = sorted[lo]!;
  const b = sorted[hi]!;
  return a + (h - lo) * (b - a);
}

/** Percentile interval of bootstrap replicates at confidence `confidence` (e.g. 0.95). */
export function percentileInterval(replicates: ArrayLike<number>, confidence: number): Interval {
  checkConfidence(confidence);
  const sorted = Float64Array.from(replicates).sort();
  for (let i = 0; i < sorted.length; i++) {
    if (!Number.isFinite(sorted[i]!)) throw new RangeError('percentileInterval: a bootstrap replicate is not finite');
  }
  const a = (1 - confidence) / 2;
  return { low: quantileSorted(sorted, a), high: quantileSorted(sorted, 1 - a) };
}

function checkConfidence(c: unknown): number {
  if (typeof c !== 'number' || !(c > 0 && c < 1)) throw new RangeError(`bootstrap: confidence must be in (0, 1), got ${String(c)}`);
  return c;
}

// ---- block bootstrap ----------------------------------------------------------------------------

export const DEFAULT_RESAMPLES = 2000;
export const DEFAULT_CONFIDENCE = 0.95;

export interface BootstrapOptions {
  /** Seed of the block draws. */
  seed: number;
  /** Number of bootstrap replicates (default 2000). */
  resamples?: number;
  /** Confidence level of the percentile intervals (default 0.95). */
  confidence?: number;
  /** Tokens per block, or 'auto' = ceil(n^(1/3)) (default). */
  blockLength?: number | 'auto';
}

/** The default block length for n tokens: ceil(n^(1/3)), at least 1 and at most n. */
export function autoBlockLength(n: number): number {
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`autoBlockLength: n must be a positive integer, got ${n}`);
  // the small epsilon keeps exact cubes (n = 1000 -> 10) from rounding up
  return Math.min(n, Math.max(1, Math.ceil(Math.cbrt(n) - 1e-9)));
}

interface ResolvedBootstrap {
  seed: number;
  resamples: number;
  confidence: number;
  blockLength: number;
}

function resolveBootstrap(o: BootstrapOptions, n: number): ResolvedBootstrap {
  if (o === null || typeof o !== 'object') throw new TypeError('bootstrap: options with at least a seed are required');
  const seed = checkSeed(o.seed, 'bootstrap');
  const resamples = o.resamples ?? DEFAULT_RESAMPLES;
  if (!Number.isSafeInteger(resamples) || resamples < 2) {
    throw new RangeError(`bootstrap: resamples must be an integer >= 2, got ${String(resamples)}`);
  }
  const confidence = checkConfidence(o.confidence ?? DEFAULT_CONFIDENCE);
  const bl = o.blockLength ?? 'auto';
  let blockLength: number;
  if (bl === 'auto') blockLength = autoBlockLength(n);
  else if (typeof bl === 'number' && Number.isSafeInteger(bl) && bl >= 1) blockLength = Math.min(bl, n);
  else throw new RangeError(`bootstrap: blockLength must be a positive integer or 'auto', got ${String(bl)}`);
  return { seed, resamples, confidence, blockLength };
}

function prefixSums(x: NllArray): Float64Array {
  const p = new Float64Array(x.length + 1);
  for (let i = 0; i < x.length; i++) p[i + 1] = p[i]! + x[i]!;
  return p;
}

/** Sum of x[start], ..., x[start + len - 1] with indices taken modulo n, from prefix sums p. */
function circularSum(p: Float64Array, n: number, start: number, len: number): number {
  const end = start + len;
  return end <= n ? p[end]! - p[start]! : p[n]! - p[start]! + p[end - n]!;
}

/**
 * Resampled means of several series with the same block draws (a paired circular block bootstrap).
 * Returns one Float64Array of `resamples` replicate means per series.
 */
function blockBootstrapMeans(series: readonly NllArray[], o: ResolvedBootstrap, rng: Xoshiro128): Float64Array[] {
  const n = series[0]!.length;
  const L = o.blockLength;
  const blocks = Math.ceil(n / L);
  const lastLen = n - (blocks - 1) * L;
  const prefix = series.map(prefixSums);
  const out = series.map(() => new Float64Array(o.resamples));
  const starts = new Int32Array(blocks);
  for (let r = 0; r < o.resamples; r++) {
    for (let b = 0; b < blocks; b++) starts[b] = rng.nextInt(n);
    for (let k = 0; k < series.length; k++) {
      const p = prefix[k]!;
      let s = 0;
      for (let b = 0; b < blocks; b++) s += circularSum(p, n, starts[b]!, b === blocks - 1 ? lastLen : L);
      out[k]![r] = s / n;
    }
  }
  return out;
}

/**
 * The paired block bootstrap of several conditions scored on the same tokens: one set of block
 * draws, applied to every condition, from which the perplexity, bits-per-byte and perplexity-ratio
 * intervals are read.
 */
export class PairedBootstrap {
  readonly tokens: number;
  readonly seed: number;
  readonly resamples: number;
  readonly confidence: number;
  readonly blockLength: number;
  private readonly names: string[];
  private readonly means: Map<string, number>;
  private readonly replicates: Map<string, Float64Array>;

  /** `series`: condition name -> per-token NLLs, all of the same length (the same tokens). */
  constructor(series: Readonly<Record<string, NllArray>>, options: BootstrapOptions) {
    if (series === null || typeof series !== 'object')
      throw new TypeError('PairedBootstrap: expected an object of condition name -> NLL array');
    this.names = Object.keys(series);
    if (this.names.length === 0) throw new RangeError('PairedBootstrap: no conditions given');
    const arrays = this.names.map((k) => checkNll(series[k], `PairedBootstrap: condition "${k}"`, 2));
    const n = arrays[0]!.length;
    arrays.forEach((a, i) => {
      if (a.length !== n) {
        throw new RangeError(
          `PairedBootstrap: condition "${this.names[i]}" has ${a.length} tokens but "${this.names[0]}" has ${n}; ` +
            'paired resampling needs every condition scored on the same tokens',
        );
      }
    });
    const o = resolveBootstrap(options, n);
    this.tokens = n;
    this.seed = o.seed;
    this.resamples = o.resamples;
    this.confidence = o.confidence;
    this.blockLength = o.blockLength;
    const reps = blockBootstrapMeans(arrays, o, new Xoshiro128(o.seed));
    this.means = new Map(this.names.map((k, i) => [k, sum(arrays[i]!) / n]));
    this.replicates = new Map(this.names.map((k, i) => [k, reps[i]!]));
  }

  get conditions(): readonly string[] {
    return this.names;
  }

  private rep(name: string): Float64Array {
    const r = this.replicates.get(name);
    if (r === undefined) throw new RangeError(`PairedBootstrap: unknown condition "${name}" (have ${this.names.join(', ')})`);
    return r;
  }

  /** Mean NLL of a condition over all its tokens. */
  meanNll(name: string): number {
    this.rep(name);
    return this.means.get(name)!;
  }

  /** The replicate mean NLLs of a condition (a copy). */
  meanReplicates(name: string): Float64Array {
    return this.rep(name).slice();
  }

  perplexity(name: string): number {
    return perplexityFromMean(this.meanNll(name));
  }

  perplexityCi(name: string): Interval {
    return percentileInterval(this.rep(name).map(Math.exp), this.confidence);
  }

  /** Bits per byte of a text of `bytes` bytes: sum NLL / ln 2 / bytes = mean * n / ln 2 / bytes. */
  bitsPerByte(name: string, bytes: number): number {
    checkBytes(bytes, 'PairedBootstrap.bitsPerByte');
    return (this.meanNll(name) * this.tokens) / Math.LN2 / bytes;
  }

  /** Interval of bits per byte; the byte count is the text's and is not resampled. */
  bitsPerByteCi(name: string, bytes: number): Interval {
    checkBytes(bytes, 'PairedBootstrap.bitsPerByteCi');
    const k = this.tokens / Math.LN2 / bytes;
    return percentileInterval(
      this.rep(name).map((m) => m * k),
      this.confidence,
    );
  }

  /** Perplexity ratio ppl(num) / ppl(den) from the point perplexities. */
  ratio(num: string, den: string): number {
    return this.perplexity(num) / this.perplexity(den);
  }

  /** Paired interval of ppl(num) / ppl(den): replicate r is exp(mean_num*_r - mean_den*_r). */
  ratioCi(num: string, den: string): Interval {
    const a = this.rep(num);
    const b = this.rep(den);
    const r = new Float64Array(this.resamples);
    for (let i = 0; i < r.length; i++) r[i] = Math.exp(a[i]! - b[i]!);
    return percentileInterval(r, this.confidence);
  }
}

/** Perplexity interval of one series (a PairedBootstrap of one condition). */
export function bootstrapPerplexityCi(nll: NllArray, options: BootstrapOptions): Interval {
  return new PairedBootstrap({ x: nll }, options).perplexityCi('x');
}

/**
 * Interval of ppl(a) / ppl(b) when a and b were scored on different tokens (e.g. different texts):
 * each is resampled with its own block draws (streams derived from the seed). For two conditions
 * on the same tokens use PairedBootstrap.ratioCi, which is narrower and correct for them.
 */
export function unpairedRatioCi(a: NllArray, b: NllArray, options: BootstrapOptions): Interval {
  checkNll(a, 'unpairedRatioCi: numerator', 2);
  checkNll(b, 'unpairedRatioCi: denominator', 2);
  const seed = checkSeed(options.seed, 'unpairedRatioCi');
  const oa = resolveBootstrap({ ...options, seed: deriveSeed(seed, 'unpaired', 'numerator') }, a.length);
  const ob = resolveBootstrap({ ...options, seed: deriveSeed(seed, 'unpaired', 'denominator') }, b.length);
  const [ra] = blockBootstrapMeans([a], oa, new Xoshiro128(oa.seed)) as [Float64Array];
  const [rb] = blockBootstrapMeans([b], ob, new Xoshiro128(ob.seed)) as [Float64Array];
  const r = new Float64Array(oa.resamples);
  for (let i = 0; i < r.length; i++) r[i] = Math.exp(ra[i]! - rb[i]!);
  return percentileInterval(r, oa.confidence);
}

// ---- spread over seeds --------------------------------------------------------------------------

/** Spread of one quantity over adapter-training seeds: the noise floor of the measurement. */
export interface SeedSpread {
  n: number;
  mean: number;
  /** Sample standard deviation (n - 1 in the denominator); null when n < 2. */
  sd: number | null;
  min: number;
  max: number;
  /** max / min: the relative spread, comparable with a perplexity ratio. */
  maxOverMin: number;
}

export function seedSpread(values: readonly number[]): SeedSpread {
  if (!Array.isArray(values) || values.length === 0) throw new RangeError('seedSpread: expected at least one value');
  values.forEach((v, i) => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new RangeError(`seedSpread: value ${i} is ${String(v)}; expected a positive finite number`);
    }
  });
  const n = values.length;
  const mean = values.reduce((s, v) => s + v, 0) / n;
  const sd = n < 2 ? null : Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1));
  const min = Math.min(...values);
  const max = Math.max(...values);
  return { n, mean, sd, min, max, maxOverMin: max / min };
}
