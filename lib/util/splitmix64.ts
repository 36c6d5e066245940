// splitmix64 (Steele, Lea & Flood; Vigna's reference constants): tiny, well mixed, and its whole
// state is one u64, so a checkpoint can save it. The training data sampler draws from it and the
// bootstrap seeds its xoshiro128** from its first outputs.

const MASK64 = (1n << 64n) - 1n;

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

/** The first `count` outputs of SplitMix64 seeded with `seed`. */
export function splitMix64(seed: bigint, count: number): bigint[] {
  const g = new SplitMix64(seed);
  return Array.from({ length: count }, () => g.next());
}
