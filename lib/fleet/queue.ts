// The fleet's queue on Redis (BullMQ): one queue for every run, one job per (run, user) whose id
// "<run>/<user>" makes enqueueing the same user twice a no-op (BullMQ refuses ':' in custom ids;
// '/' is in neither a run id nor a user name), and, once every user is settled, one noise-margin job
// per (run, user, 'margin') for the users the bet's encoding loses most ("<run>/<user>/margin"). A
// job carries the user, never the results: those go to PostgreSQL (store.ts).

import { Queue, type ConnectionOptions, type JobsOptions } from 'bullmq';
import { Redis } from 'ioredis';

import type { BetUser } from '../bet/protocol.js';

export const QUEUE_NAME = 'ternorm-fleet';

export const RUN_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export interface FleetJob {
  run: string;
  user: BetUser;
  family: string;
  ordinal: number;
  /** 'user' (the bet's per-user pipeline; absent in jobs queued before margins existed) or 'margin' (its noise sweep). */
  kind?: 'user' | 'margin';
}

export function jobId(run: string, user: string, kind: 'user' | 'margin' = 'user'): string {
  return kind === 'user' ? `${run}/${user}` : `${run}/${user}/${kind}`;
}

/** Attempts per user before it is recorded as failed, and the wait before a retry (doubling). */
export const DEFAULT_ATTEMPTS = 3;
export const RETRY_BACKOFF_MS = 1000;

export function jobOptions(run: string, user: string, attempts: number, kind: 'user' | 'margin' = 'user'): JobsOptions {
  return {
    jobId: jobId(run, user, kind),
    attempts,
    backoff: { type: 'exponential', delay: RETRY_BACKOFF_MS },
    // the results live in PostgreSQL; a finished job only costs Redis memory
    removeOnComplete: true,
    removeOnFail: { age: 7 * 24 * 3600 },
  };
}

/**
 * A Redis connection for BullMQ. `blocking` (workers): commands wait for a reconnection instead of
 * failing (BullMQ requires maxRetriesPerRequest null there); otherwise a command fails after a few
 * reconnection attempts so `run` and `status` report an unreachable server.
 */
export function redisConnection(url: string, blocking: boolean): Redis {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`--redis ${url}: not a URL (expected redis://host:port)`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:')
    throw new Error(`--redis ${url}: expected a redis:// or rediss:// URL`);
  const r = new Redis(url, blocking ? { maxRetriesPerRequest: null } : { maxRetriesPerRequest: 2, connectTimeout: 5000 });
  // errors surface through the commands; the event is only noise while reconnecting
  r.on('error', () => undefined);
  return r;
}

export function openQueue(connection: ConnectionOptions): Queue<FleetJob> {
  return new Queue<FleetJob>(QUEUE_NAME, { connection });
}
