// The training data pipeline: deterministic, seeded sampling of (seq + 1)-token
// windows from an encoded token stream. The generator's state is one 64-bit
// integer, saved in checkpoints so a resumed run draws exactly the windows the
// uninterrupted run would have drawn.

import { SplitMix64 } from '../util/splitmix64.js';

export { SplitMix64 };

const MASK64 = (1n << 64n) - 1n;

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
