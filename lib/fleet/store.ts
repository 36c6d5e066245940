// The fleet's results in PostgreSQL: the one home of its SQL. A run is registered (its options and
// the results header with the criteria's sha256 and registration time) before any job is queued;
// each worker writes one row per (run, user) — the user's analysed results as JSONB plus the
// columns reports query (tier per scheme, chosen encoding, bytes, perplexities) — or, after the
// last attempt, the reason the user failed. The row's primary key (run, user) and an insert that
// keeps the first row make a user's result exactly once, whatever number of workers finished it.
//
// Schema changes are migrations appended to MIGRATIONS, applied in order inside one transaction
// each and recorded in schema_version; a database of a newer schema than this code is refused.
//
// Every statement runs through withRetry: a server that is briefly down (restart, failover) is
// retried with backoff for up to `retrySeconds` before the error reaches the caller, so a worker
// loses nothing when PostgreSQL comes back within that time.

import pg from 'pg';

import type { NoiseMeasured } from '../bet/noise.js';
import type { RegisteredRun, UserResult } from '../bet/results.js';
import type { Interval } from '../bet/stats.js';

/** Migrations, in order; the index + 1 is the schema version. Never edit one that has shipped: append. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE fleet_runs (
     id text PRIMARY KEY,
     created_at timestamptz NOT NULL DEFAULT now(),
     users_spec text NOT NULL,
     users_total integer NOT NULL CHECK (users_total > 0),
     criteria_sha256 text NOT NULL,
     options jsonb NOT NULL,
     registered jsonb NOT NULL
   );
   CREATE TABLE fleet_results (
     run_id text NOT NULL REFERENCES fleet_runs (id),
     user_name text NOT NULL,
     ordinal integer NOT NULL,
     family text NOT NULL,
     tiers jsonb NOT NULL,
     choice text NOT NULL,
     choice_bytes integer NOT NULL,
     no_adapter_ppl double precision NOT NULL,
     reference_ppl double precision NOT NULL,
     bet_ppl double precision NOT NULL,
     choice_ppl double precision NOT NULL,
     result jsonb NOT NULL,
     seconds double precision NOT NULL,
     cpu_seconds double precision NOT NULL,
     worker text NOT NULL,
     finished_at timestamptz NOT NULL DEFAULT now(),
     PRIMARY KEY (run_id, user_name)
   );
   CREATE INDEX fleet_results_finished ON fleet_results (run_id, finished_at);
   CREATE TABLE fleet_failures (
     run_id text NOT NULL REFERENCES fleet_runs (id),
     user_name text NOT NULL,
     ordinal integer NOT NULL,
     family text NOT NULL,
     attempts integer NOT NULL,
     reason text NOT NULL,
     worker text NOT NULL,
     failed_at timestamptz NOT NULL DEFAULT now(),
     PRIMARY KEY (run_id, user_name)
   );`,
  // 2: the run's generic adapter (PERSONAL-LOST), each user's score under it, the noise margins
  `CREATE TABLE fleet_generic (
     run_id text PRIMARY KEY REFERENCES fleet_runs (id),
     gains bytea NOT NULL,
     gains_sha256 text NOT NULL,
     train_bytes integer NOT NULL,
     pool jsonb NOT NULL,
     seconds double precision NOT NULL,
     cpu_seconds double precision NOT NULL,
     worker text NOT NULL,
     finished_at timestamptz NOT NULL DEFAULT now()
   );
   ALTER TABLE fleet_results ADD COLUMN generic jsonb;
   CREATE TABLE fleet_margins (
     run_id text NOT NULL REFERENCES fleet_runs (id),
     user_name text NOT NULL,
     measured jsonb NOT NULL,
     seconds double precision NOT NULL,
     cpu_seconds double precision NOT NULL,
     worker text NOT NULL,
     finished_at timestamptz NOT NULL DEFAULT now(),
     PRIMARY KEY (run_id, user_name),
     FOREIGN KEY (run_id, user_name) REFERENCES fleet_results (run_id, user_name)
   );`,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** What `fleet run` registers. `options` are what workers open the bet's pipeline with. */
export interface RunRecord {
  id: string;
  usersSpec: string;
  usersTotal: number;
  options: Record<string, unknown>;
  registered: RegisteredRun;
  createdAt?: string;
}

/** The users whose training texts the generic adapter was trained on, and those left out (their text could not be read). */
export interface GenericPool {
  /** Bytes of each pooled user's training text taken (a prefix; the whole text while the pool is under its bound). */
  users: { user: string; bytes: number }[];
  skipped: { user: string; reason: string }[];
  /** The bound on the pooled bytes the run registered. */
  maxBytes: number;
}

/** The run's generic adapter, as the worker that trained it stored it. */
export interface GenericRow {
  run: string;
  gains: Float32Array;
  trainBytes: number;
  pool: GenericPool;
  seconds: number;
  cpuSeconds: number;
  worker: string;
}

/** One split of a user under the generic adapter: its mean NLL and the paired bootstrap interval of ppl(generic) / ppl(own). */
export interface GenericSplitScore {
  meanNll: number;
  ci: Interval;
}

/** A user's scores under the run's generic adapter (the PERSONAL-LOST tier is derived from them and the row's statistics). */
export interface GenericScore {
  gainsSha256: string;
  validation: GenericSplitScore;
  test: GenericSplitScore;
}

/** A user's noise sweep (a follow-up job for the users the bet's encoding loses most). */
export interface MarginRow {
  run: string;
  user: string;
  measured: NoiseMeasured;
  seconds: number;
  cpuSeconds: number;
  worker: string;
}

/** One user's row, as a worker writes it. */
export interface ResultRow {
  run: string;
  user: string;
  ordinal: number;
  family: string;
  /** Scheme -> the user's tier on the test split (fleet/distribution.ts). */
  tiers: Record<string, string>;
  result: UserResult;
  /** Test-split perplexities: the criteria's no-adapter, reference and bet conditions, and the policy's choice. */
  ppl: { noAdapter: number; reference: number; bet: number; choice: number };
  /** The user under the run's generic adapter (workers always score it; bench/fleet.ts's synthetic rows leave it out). */
  generic?: GenericScore;
  seconds: number;
  cpuSeconds: number;
  worker: string;
}

export interface FailureRow {
  run: string;
  user: string;
  ordinal: number;
  family: string;
  attempts: number;
  reason: string;
  worker: string;
}

export interface RunProgress {
  done: number;
  failed: number;
  firstFinished: Date | null;
  lastFinished: Date | null;
  /** Rows finished in the last `window` seconds. */
  recent: number;
  cpuSeconds: number;
}

// Connection-level failures worth waiting out: the server is (re)starting, shutting down or unreachable.
const TRANSIENT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  '57P01',
  '57P02',
  '57P03',
  '08000',
  '08001',
  '08003',
  '08006',
]);

function transient(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown };
  if (typeof e?.code === 'string' && TRANSIENT_CODES.has(e.code)) return true;
  const msg = typeof e?.message === 'string' ? e.message : '';
  return /Connection terminated|connection is closed|Client has encountered a connection error/i.test(msg);
}

export class FleetStore {
  private constructor(
    private readonly url: string,
    private readonly pool: pg.Pool,
    private readonly retrySeconds: number,
    private readonly log: (line: string) => void,
  ) {}

  /** Connects and brings the schema up to date. */
  static async open(url: string, o: { retrySeconds?: number; log?: (line: string) => void } = {}): Promise<FleetStore> {
    const pool = new pg.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: 5000 });
    // An idle client whose server went away reports here; the next query reconnects (withRetry).
    pool.on('error', () => undefined);
    const s = new FleetStore(url, pool, o.retrySeconds ?? 60, o.log ?? (() => undefined));
    try {
      await s.migrate();
    } catch (err) {
      await pool.end();
      throw new Error(`PostgreSQL ${redactUrl(url)}: ${(err as Error).message}`, { cause: err });
    }
    return s;
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  /** Runs fn, retrying connection failures with backoff (0.2 s doubling to 5 s) for up to retrySeconds. */
  async withRetry<T>(what: string, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const deadline = performance.now() + this.retrySeconds * 1000;
    let wait = 200;
    for (;;) {
      let client: pg.PoolClient | undefined;
      try {
        client = await this.pool.connect();
        const r = await fn(client);
        client.release();
        return r;
      } catch (err) {
        // a broken client is destroyed, not returned to the pool
        client?.release(transient(err) ? (err as Error) : undefined);
        if (!transient(err) || performance.now() + wait > deadline) throw err;
        this.log(`PostgreSQL unavailable (${(err as Error).message}) during ${what}; retrying in ${(wait / 1000).toFixed(1)} s`);
        await new Promise((r) => setTimeout(r, wait));
        wait = Math.min(wait * 2, 5000);
      }
    }
  }

  private async migrate(): Promise<void> {
    await this.withRetry('migration', async (c) => {
      await c.query(
        'CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())',
      );
      // one migrator at a time (several workers may start together)
      await c.query('BEGIN');
      try {
        await c.query('LOCK TABLE schema_version IN EXCLUSIVE MODE');
        const { rows } = await c.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_version');
        const have = rows[0]?.v ?? 0;
        if (have > SCHEMA_VERSION)
          throw new Error(`the database's fleet schema is version ${have}, newer than this ternorm's (${SCHEMA_VERSION}); upgrade ternorm`);
        for (let v = have + 1; v <= SCHEMA_VERSION; v++) {
          await c.query(MIGRATIONS[v - 1]!);
          await c.query('INSERT INTO schema_version (version) VALUES ($1)', [v]);
        }
        await c.query('COMMIT');
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    });
  }

  async schemaVersion(): Promise<number> {
    return this.withRetry(
      'schema version',
      async (c) => (await c.query<{ v: number }>('SELECT max(version) AS v FROM schema_version')).rows[0]!.v,
    );
  }

  /** Registers a run; false if a run of that id exists already (the caller compares it). */
  async registerRun(r: RunRecord): Promise<boolean> {
    return this.withRetry('run registration', async (c) => {
      const res = await c.query(
        `INSERT INTO fleet_runs (id, users_spec, users_total, criteria_sha256, options, registered)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING`,
        [r.id, r.usersSpec, r.usersTotal, r.registered.criteria.sha256, JSON.stringify(r.options), JSON.stringify(r.registered)],
      );
      return res.rowCount === 1;
    });
  }

  async getRun(id: string): Promise<RunRecord | null> {
    return this.withRetry('run lookup', async (c) => {
      const { rows } = await c.query<{
        id: string;
        users_spec: string;
        users_total: number;
        options: Record<string, unknown>;
        registered: RegisteredRun;
        created_at: Date;
      }>('SELECT id, users_spec, users_total, options, registered, created_at FROM fleet_runs WHERE id = $1', [id]);
      const r = rows[0];
      return r === undefined
        ? null
        : {
            id: r.id,
            usersSpec: r.users_spec,
            usersTotal: r.users_total,
            options: r.options,
            registered: r.registered,
            createdAt: r.created_at.toISOString(),
          };
    });
  }

  async isDone(run: string, user: string): Promise<boolean> {
    return this.withRetry(
      'done check',
      async (c) => (await c.query('SELECT 1 FROM fleet_results WHERE run_id = $1 AND user_name = $2', [run, user])).rowCount === 1,
    );
  }

  async doneUsers(run: string): Promise<Set<string>> {
    return this.withRetry(
      'done users',
      async (c) =>
        new Set((await c.query<{ u: string }>('SELECT user_name AS u FROM fleet_results WHERE run_id = $1', [run])).rows.map((r) => r.u)),
    );
  }

  /** Writes a user's row unless one exists (the first finisher's row stays); true if this call wrote it. A failure recorded by an earlier attempt is cleared. */
  async putResult(r: ResultRow): Promise<boolean> {
    return this.withRetry('result write', async (c) => {
      await c.query('BEGIN');
      try {
        const u = r.result;
        const res = await c.query(
          `INSERT INTO fleet_results (run_id, user_name, ordinal, family, tiers, choice, choice_bytes,
             no_adapter_ppl, reference_ppl, bet_ppl, choice_ppl, result, seconds, cpu_seconds, worker, generic)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
           ON CONFLICT (run_id, user_name) DO NOTHING`,
          [
            r.run,
            r.user,
            r.ordinal,
            r.family,
            JSON.stringify(r.tiers),
            u.policy.choice,
            u.policy.bytes,
            r.ppl.noAdapter,
            r.ppl.reference,
            r.ppl.bet,
            r.ppl.choice,
            JSON.stringify(u),
            r.seconds,
            r.cpuSeconds,
            r.worker,
            r.generic === undefined ? null : JSON.stringify(r.generic),
          ],
        );
        await c.query('DELETE FROM fleet_failures WHERE run_id = $1 AND user_name = $2', [r.run, r.user]);
        await c.query('COMMIT');
        return res.rowCount === 1;
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    });
  }

  /** Records (or updates) why a user failed after its last attempt. */
  async putFailure(f: FailureRow): Promise<void> {
    await this.withRetry('failure write', (c) =>
      c.query(
        `INSERT INTO fleet_failures (run_id, user_name, ordinal, family, attempts, reason, worker) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (run_id, user_name) DO UPDATE SET attempts = EXCLUDED.attempts, reason = EXCLUDED.reason, worker = EXCLUDED.worker, failed_at = now()`,
        [f.run, f.user, f.ordinal, f.family, f.attempts, f.reason, f.worker],
      ),
    );
  }

  /** Forgets the recorded failures of users about to be enqueued again. */
  async clearFailures(run: string, users: readonly string[]): Promise<void> {
    if (users.length === 0) return;
    await this.withRetry('failure clearing', (c) =>
      c.query('DELETE FROM fleet_failures WHERE run_id = $1 AND user_name = ANY($2)', [run, users]),
    );
  }

  async failures(run: string): Promise<FailureRow[]> {
    return this.withRetry('failures', async (c) =>
      (
        await c.query<{ user_name: string; ordinal: number; family: string; attempts: number; reason: string; worker: string }>(
          'SELECT user_name, ordinal, family, attempts, reason, worker FROM fleet_failures WHERE run_id = $1 ORDER BY ordinal',
          [run],
        )
      ).rows.map((r) => ({
        run,
        user: r.user_name,
        ordinal: r.ordinal,
        family: r.family,
        attempts: r.attempts,
        reason: r.reason,
        worker: r.worker,
      })),
    );
  }

  /** The users' results in the run's user order (`generic` null in rows written before schema 2). */
  async results(
    run: string,
  ): Promise<
    { user: string; family: string; result: UserResult; tiers: Record<string, string>; generic: GenericScore | null; finishedAt: Date }[]
  > {
    return this.withRetry('results', async (c) =>
      (
        await c.query<{
          user_name: string;
          family: string;
          result: UserResult;
          tiers: Record<string, string>;
          generic: GenericScore | null;
          finished_at: Date;
        }>(
          'SELECT user_name, family, result, tiers, generic, finished_at FROM fleet_results WHERE run_id = $1 ORDER BY ordinal, user_name',
          [run],
        )
      ).rows.map((r) => ({
        user: r.user_name,
        family: r.family,
        result: r.result,
        tiers: r.tiers,
        generic: r.generic,
        finishedAt: r.finished_at,
      })),
    );
  }

  /** One user's stored result, or null. */
  async resultOf(run: string, user: string): Promise<UserResult | null> {
    return this.withRetry(
      'result lookup',
      async (c) =>
        (await c.query<{ result: UserResult }>('SELECT result FROM fleet_results WHERE run_id = $1 AND user_name = $2', [run, user]))
          .rows[0]?.result ?? null,
    );
  }

  // ---- the generic adapter: trained once per run, by whichever worker first holds the run's lock ----

  async getGeneric(run: string): Promise<GenericRow | null> {
    return this.withRetry('generic adapter lookup', async (c) => {
      const { rows } = await c.query<{
        gains: Buffer;
        gains_sha256: string;
        train_bytes: number;
        pool: GenericPool;
        seconds: number;
        cpu_seconds: number;
        worker: string;
      }>('SELECT gains, gains_sha256, train_bytes, pool, seconds, cpu_seconds, worker FROM fleet_generic WHERE run_id = $1', [run]);
      const r = rows[0];
      if (r === undefined) return null;
      if (r.gains.length % 4 !== 0) throw new Error(`run "${run}": the stored generic adapter is ${r.gains.length} bytes, not f32 gains`);
      // a copy: the Buffer may be a view into a shared pool, not 4-byte aligned
      const gains = new Float32Array(new Uint8Array(r.gains).buffer);
      return { run, gains, trainBytes: r.train_bytes, pool: r.pool, seconds: r.seconds, cpuSeconds: r.cpu_seconds, worker: r.worker };
    });
  }

  /** Stores the run's generic adapter unless one is stored (the first stays); true if this call stored it. */
  async putGeneric(g: GenericRow, sha256: string): Promise<boolean> {
    return this.withRetry('generic adapter write', async (c) => {
      const bytes = Buffer.from(g.gains.buffer, g.gains.byteOffset, g.gains.byteLength);
      const res = await c.query(
        `INSERT INTO fleet_generic (run_id, gains, gains_sha256, train_bytes, pool, seconds, cpu_seconds, worker)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (run_id) DO NOTHING`,
        [g.run, bytes, sha256, g.trainBytes, JSON.stringify(g.pool), g.seconds, g.cpuSeconds, g.worker],
      );
      return res.rowCount === 1;
    });
  }

  /**
   * Runs fn while holding the run's generic-training lock (a session advisory lock on a connection
   * of its own), or returns undefined at once if another session holds it. A worker that dies drops
   * its connection and PostgreSQL releases the lock; so does a server restart, after which a second
   * worker may train too: the deterministic training gives the same gains and putGeneric keeps one.
   */
  async withGenericLock<T>(run: string, fn: () => Promise<T>): Promise<T | undefined> {
    const client = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: 5000 });
    client.on('error', () => undefined);
    const key = `ternorm-fleet-generic:${run}`;
    try {
      let held: boolean;
      try {
        await client.connect();
        held = (await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS ok', [key])).rows[0]!.ok;
      } catch (err) {
        // the server is (re)starting: not acquired this time; the caller polls again
        if (transient(err)) return undefined;
        throw err;
      }
      if (!held) return undefined;
      try {
        return await fn();
      } finally {
        await client.query('SELECT pg_advisory_unlock(hashtext($1))', [key]).catch(() => undefined);
      }
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  // ---- noise margins ----

  /** The done users with the largest test ppl ratio of the bet's encoding to the reference, largest first (ties by name). */
  async worstBetUsers(run: string, n: number): Promise<{ user: string; family: string; ordinal: number; ratio: number }[]> {
    return this.withRetry('worst users', async (c) =>
      (
        await c.query<{ user_name: string; family: string; ordinal: number; ratio: number }>(
          `SELECT user_name, family, ordinal, bet_ppl / reference_ppl AS ratio FROM fleet_results WHERE run_id = $1
           ORDER BY bet_ppl / reference_ppl DESC, user_name COLLATE "C" LIMIT $2`,
          [run, n],
        )
      ).rows.map((r) => ({ user: r.user_name, family: r.family, ordinal: r.ordinal, ratio: r.ratio })),
    );
  }

  async putMargin(m: MarginRow): Promise<boolean> {
    return this.withRetry('margin write', async (c) => {
      const res = await c.query(
        `INSERT INTO fleet_margins (run_id, user_name, measured, seconds, cpu_seconds, worker)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (run_id, user_name) DO NOTHING`,
        [m.run, m.user, JSON.stringify(m.measured), m.seconds, m.cpuSeconds, m.worker],
      );
      return res.rowCount === 1;
    });
  }

  async margins(run: string): Promise<MarginRow[]> {
    return this.withRetry('margins', async (c) =>
      (
        await c.query<{ user_name: string; measured: NoiseMeasured; seconds: number; cpu_seconds: number; worker: string }>(
          'SELECT user_name, measured, seconds, cpu_seconds, worker FROM fleet_margins WHERE run_id = $1 ORDER BY user_name COLLATE "C"',
          [run],
        )
      ).rows.map((r) => ({
        run,
        user: r.user_name,
        measured: r.measured,
        seconds: r.seconds,
        cpuSeconds: r.cpu_seconds,
        worker: r.worker,
      })),
    );
  }

  async progress(run: string, windowSeconds: number): Promise<RunProgress> {
    return this.withRetry('progress', async (c) => {
      const { rows } = await c.query<{
        done: string;
        first: Date | null;
        last: Date | null;
        recent: string;
        cpu: number | null;
        failed: string;
      }>(
        `SELECT count(*) AS done, min(finished_at) AS first, max(finished_at) AS last,
                count(*) FILTER (WHERE finished_at > now() - make_interval(secs => $2)) AS recent,
                sum(cpu_seconds) AS cpu,
                (SELECT count(*) FROM fleet_failures f WHERE f.run_id = $1) AS failed
           FROM fleet_results WHERE run_id = $1`,
        [run, windowSeconds],
      );
      const r = rows[0]!;
      return {
        done: Number(r.done),
        failed: Number(r.failed),
        firstFinished: r.first,
        lastFinished: r.last,
        recent: Number(r.recent),
        cpuSeconds: r.cpu ?? 0,
      };
    });
  }

  /** Bytes PostgreSQL stores per result row (the row and its TOASTed JSONB, measured by pg_column_size). */
  async rowBytes(run: string): Promise<{ rows: number; meanBytes: number; tableBytes: number }> {
    return this.withRetry('row size', async (c) => {
      const { rows } = await c.query<{ n: string; mean: string | null; total: string }>(
        `SELECT count(*) AS n, avg(pg_column_size(r.*)) AS mean, pg_total_relation_size('fleet_results') AS total
           FROM fleet_results r WHERE run_id = $1`,
        [run],
      );
      // avg() of integers is numeric, which pg returns as a string
      return { rows: Number(rows[0]!.n), meanBytes: Number(rows[0]!.mean ?? 0), tableBytes: Number(rows[0]!.total) };
    });
  }
}

/** A URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}
