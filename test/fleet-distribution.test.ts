// What the fleet says, without servers: the tier fractions and their bootstrap intervals over users
// (labelShares), and the generic adapter's bounded pool (poolShares).
import { describe, expect, it } from 'vitest';

import { labelShares, TIERS, type Tier } from '../lib/fleet/distribution.js';
import { poolShares } from '../lib/fleet/run-steps.js';
import { Xoshiro128 } from '../lib/bet/stats.js';

const OPTS = { resamples: 2000, confidence: 0.95, seed: 7 };

describe('labelShares: fractions of users per tier with percentile-bootstrap intervals over users', () => {
  it('counts every user once and puts the point fraction inside its interval', () => {
    const of: Tier[] = ['STRICT', 'STRICT', 'LENIENT', 'CATASTROPHIC', 'STRICT', 'FAIL', 'STRICT', 'LENIENT'];
    const s = labelShares(TIERS, of, OPTS);
    expect(TIERS.map((t) => s[t].count)).toEqual([4, 2, 1, 1]);
    expect(s.STRICT.fraction).toBe(0.5);
    expect(s.LENIENT.fraction).toBe(0.25);
    for (const t of TIERS) {
      expect(s[t].users).toBe(8);
      expect(s[t].ci.low).toBeLessThanOrEqual(s[t].fraction);
      expect(s[t].ci.high).toBeGreaterThanOrEqual(s[t].fraction);
      expect(s[t].ci.low).toBeGreaterThanOrEqual(0);
      expect(s[t].ci.high).toBeLessThanOrEqual(1);
    }
    // 4 of 8: the interval is wide, not a point
    expect(s.STRICT.ci.high - s.STRICT.ci.low).toBeGreaterThan(0.4);
  });

  it('is deterministic in its seed, and another seed moves the interval', () => {
    const of: Tier[] = Array.from({ length: 40 }, (_, i) => TIERS[(i * 7) % 4]!);
    expect(labelShares(TIERS, of, OPTS)).toEqual(labelShares(TIERS, of, OPTS));
    const other = labelShares(TIERS, of, { ...OPTS, seed: 8 });
    expect(
      TIERS.some(
        (t) => other[t].ci.low !== labelShares(TIERS, of, OPTS)[t].ci.low || other[t].ci.high !== labelShares(TIERS, of, OPTS)[t].ci.high,
      ),
    ).toBe(true);
  });

  it('a tier every user is in has the interval [1, 1]; a tier none is in [0, 0]', () => {
    const s = labelShares(TIERS, Array<Tier>(12).fill('STRICT'), OPTS);
    expect(s.STRICT).toEqual({ count: 12, users: 12, fraction: 1, ci: { low: 1, high: 1 } });
    expect(s.FAIL).toEqual({ count: 0, users: 12, fraction: 0, ci: { low: 0, high: 0 } });
  });

  it('over many users the interval matches the binomial one (normal approximation) within 15%', () => {
    const rng = new Xoshiro128(3);
    const n = 400;
    const of = Array.from({ length: n }, () => (rng.nextFloat() < 0.3 ? 'lost' : 'kept') as 'lost' | 'kept');
    const s = labelShares(['lost', 'kept'] as const, of, OPTS);
    const p = s.lost.fraction;
    const half = 1.959964 * Math.sqrt((p * (1 - p)) / n);
    expect((s.lost.ci.high - s.lost.ci.low) / 2).toBeGreaterThan(half * 0.85);
    expect((s.lost.ci.high - s.lost.ci.low) / 2).toBeLessThan(half * 1.15);
    expect(Math.abs((s.lost.ci.high + s.lost.ci.low) / 2 - p)).toBeLessThan(half * 0.2);
    expect(s.lost.count + s.kept.count).toBe(n);
  });

  it('no users: 0 of 0; an unknown label is refused', () => {
    expect(labelShares(TIERS, [], OPTS).STRICT).toEqual({ count: 0, users: 0, fraction: 0, ci: { low: 0, high: 0 } });
    expect(() => labelShares(TIERS, ['SOMETIMES' as Tier], OPTS)).toThrow(/"SOMETIMES" is not one of STRICT, LENIENT, FAIL, CATASTROPHIC/);
  });
});

describe("poolShares: the generic adapter's pool of the users' training texts, bounded", () => {
  it('pools every text whole while they fit', () => {
    expect(poolShares([100, 50, 30], 180)).toEqual([100, 50, 30]);
    expect(poolShares([100, 50, 30], 1000)).toEqual([100, 50, 30]);
  });

  it('over the bound: exactly the bound, every user in, a short text whole and its unused share to the others', () => {
    const s = poolShares([1000, 10, 1000, 1000], 301);
    expect(s.reduce((a, b) => a + b, 0)).toBe(301);
    expect(s[1]).toBe(10);
    expect(s.filter((_, i) => i !== 1).every((x) => x === 97)).toBe(true);
    const many = Array.from({ length: 271 }, (_, i) => 24000 + (i % 7) * 100);
    const m = poolShares(many, 1024 * 1024);
    expect(m.reduce((a, b) => a + b, 0)).toBe(1024 * 1024);
    expect(Math.max(...m) - Math.min(...m)).toBeLessThanOrEqual(1);
    expect(m.every((x, i) => x > 0 && x <= many[i]!)).toBe(true);
    expect(() => poolShares([1], 0)).toThrow(/maxBytes must be a positive integer/);
  });
});
