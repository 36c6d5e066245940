// The training data pipeline: deterministic, seeded sampling of (seq + 1)-token
// windows from an encoded token stream. The generator's state is one 64-bit
// integer, saved in checkpoints so a resumed run draws exactly the windows the
// uninterrupted run would have drawn.

const MASK64 = (1n << 64n) - 1n;

/** splitmix64: tiny, well-mixed, and its whole state is one u64. */
export class SplitMix64 {
  private s: bigint;

  constructor(seed: bigint | number) {
    this.s = BigInt(seed) & MASK64;
  }

  next(): bigint {
    this.s = (this.s + 0x9e3779b97f4a7c15n) & MASK64;
    let z = this.s;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
    return z ^ (z >> 31n);
  }

  /** Uniform integer in [0, n), n in 1..2^53, unbiased (rejection). */
  below(n: number): number {
    if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`below(n): n must be a positive safe integer, got ${n}`);
    const N = BigInt(n);
    const limit = ((1n << 64n) / N) * N; // values >= limit would bias the low residues
    for (;;) {
      const x = this.next();
      if (x < limit) return Number(x % N);
    }
  }

  /** The state as 16 hex digits. */
  get state(): string {
    return this.s.toString(16).padStart(16, '0');
  }

  static fromState(hex: string): SplitMix64 {
    if (typeof hex !== 'string' || !/^[0-9a-f]{16}$/.test(hex)) {
      throw new RangeError(`a SplitMix64 state must be 16 lower-case hex digits, got ${JSON.stringify(hex)}`);
    }
    return new SplitMix64(BigInt('0x' + hex));
  }
}

/**
 * Draws batches of `batch` windows of seq + 1 consecutive tokens, each start
 * uniform over the stream, into one row-major Int32Array (the Trainer's input).
 */
export class WindowSampler {
  readonly rng: SplitMix64;

  constructor(
    readonly tokens: Int32Array,
    readonly seq: number,
    rng: SplitMix64,
  ) {
    if (!Number.isInteger(seq) || seq < 1) throw new RangeError(`seq must be a positive integer, got ${seq}`);
    if (tokens.length < seq + 1) {
      throw new RangeError(`the text is too short: it encodes to ${tokens.length} tokens, training needs at least seq + 1 = ${seq + 1}`);
    }
    this.rng = rng;
  }

  /** Number of distinct window starts. */
  get windows(): number {
    return this.tokens.length - this.seq;
  }

  nextBatch(batch: number): Int32Array {
    const w = this.seq + 1;
    const out = new Int32Array(batch * w);
    for (let b = 0; b < batch; b++) {
      const start = this.rng.below(this.windows);
      out.set(this.tokens.subarray(start, start + w), b * w);
    }
    return out;
  }
}

/** The seed of the data-order generator, derived from the run's seed (so it differs from the model init's). */
export function dataSeed(seed: number): bigint {
  return (BigInt(seed) * 0x2545f4914f6cdd1dn + 0x5851f42d4c957f2dn) & MASK64;
}
