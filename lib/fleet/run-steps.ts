// The run-level steps of a fleet run beyond each user's bet (issue 12 §5): the generic adapter the
// PERSONAL-LOST tier compares every user with, trained once per run on the users' training texts
// pooled (bounded), and the noise margins of the users the bet's encoding loses most. Their settings
// are registered with the run (options.fleet) so every worker uses the same ones.

import { userTexts } from '../bet/protocol.js';
import type { GenericPool } from './store.js';
import type { FleetUser } from './users.js';
import type { RunOptions } from './worker.js';

export interface FleetSteps {
  /** Noise-margin follow-up jobs: the users with the largest test ppl ratio of the bet's encoding to the reference. */
  marginUsers: number;
  /** Noise patterns per distribution and grid point in each margin sweep (noise.ts). */
  noiseSeeds: number;
  /** At most this many bytes of the users' training texts pooled for the generic adapter. */
  genericPoolBytes: number;
}

/**
 * 1 MiB: about twice the default bet's three users' training texts (3 x 192 KiB, which `bet
 * --personal` pools whole), so small runs pool every byte, as the bet does; a 271-user fleet pools
 * about 3.8 KiB of each user. The generic adapter's early-stopping tail is a fraction of the pool,
 * so the bound also bounds its training cost.
 */
export const GENERIC_POOL_BYTES = 1024 * 1024;
export const MARGIN_USERS = 10;
/** Two noise patterns per point (the default bet's --noise uses 3); enough for the crossings' spread on 10 users. */
export const MARGIN_NOISE_SEEDS = 2;

export const DEFAULT_FLEET_STEPS: Readonly<FleetSteps> = Object.freeze({
  marginUsers: MARGIN_USERS,
  noiseSeeds: MARGIN_NOISE_SEEDS,
  genericPoolBytes: GENERIC_POOL_BYTES,
});

/** The run's step settings from its registered options. */
export function fleetSteps(options: Record<string, unknown>): FleetSteps {
  const f = options.fleet as Partial<FleetSteps> | undefined;
  return { ...DEFAULT_FLEET_STEPS, ...f };
}

/**
 * The pipeline options a run stored (its `fleet` steps aside). `fleet run` stores the gradient
 * precision explicitly; a run registered before int8 became adapter training's default stored none
 * and trained in f32, so a missing one reads as 'f32', whatever the default is now.
 */
export function storedRunOptions(stored: Record<string, unknown>): RunOptions {
  const { fleet: _steps, ...o } = stored as unknown as RunOptions & { fleet?: unknown };
  return { ...o, adapterRun: { gradQuant: 'f32', ...o.adapterRun } };
}

/**
 * Bytes of each text to pool under `maxBytes`: every text whole if they fit; otherwise water-filling
 * in text order (each text gets an equal share of what is left, a shorter text gives its unused share
 * to the others), so every user is in the pool and the pool is exactly min(total, maxBytes) bytes.
 */
export function poolShares(lengths: readonly number[], maxBytes: number): number[] {
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1)
    throw new RangeError(`generic pool: maxBytes must be a positive integer, got ${maxBytes}`);
  const total = lengths.reduce((a, b) => a + b, 0);
  if (total <= maxBytes) return [...lengths];
  const out = new Array<number>(lengths.length).fill(0);
  // shortest first decides who is capped; ties by position keep it deterministic
  const order = lengths.map((len, i) => ({ len, i })).sort((a, b) => a.len - b.len || a.i - b.i);
  let left = maxBytes;
  order.forEach(({ len, i }, k) => {
    const share = Math.floor(left / (order.length - k));
    out[i] = Math.min(len, share);
    left -= out[i]!;
  });
  // what the floors left over goes one byte each to the first capped texts
  for (let i = 0; i < out.length && left > 0; i++) {
    if (out[i]! < lengths[i]!) {
      out[i]!++;
      left--;
    }
  }
  return out;
}

/**
 * The training texts of the run's users, each cut to its pool share (a prefix), in the run's user
 * order, and what was pooled. A user whose text cannot be read (a poison user) is left out and named.
 */
export function genericPool(users: readonly FleetUser[], maxBytes: number): { texts: Uint8Array[]; pool: GenericPool } {
  const read: { user: string; train: Uint8Array }[] = [];
  const skipped: GenericPool['skipped'] = [];
  for (const u of users) {
    try {
      read.push({ user: u.user.name, train: userTexts(u.user).train });
    } catch (err) {
      skipped.push({ user: u.user.name, reason: (err as Error).message });
    }
  }
  if (read.length === 0) throw new Error('generic adapter: no user of the run has a readable training text');
  const shares = poolShares(
    read.map((r) => r.train.length),
    maxBytes,
  );
  return {
    texts: read.map((r, i) => r.train.subarray(0, shares[i]!)),
    pool: { users: read.map((r, i) => ({ user: r.user, bytes: shares[i]! })), skipped, maxBytes },
  };
}
