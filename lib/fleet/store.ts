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

import type { RegisteredRun, UserResult } from '../bet/results.js';

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
    private readonly pool: pg.Pool,
    private readonly retrySeconds: number,
    private readonly log: (line: string) => void,
  ) {}

  /** Connects and brings the schema up to date. */
  static async open(url: string, o: { retrySeconds?: number; log?: (line: string) => void } = {}): Promise<FleetStore> {
    const pool = new pg.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: 5000 });
    // An idle client whose server went away reports here; the next query reconnects (withRetry).
    pool.on('error', () => undefined);
    const s = new FleetStore(pool, o.retrySeconds ?? 60, o.log ?? (() => undefined));
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
             no_adapter_ppl, reference_ppl, bet_ppl, choice_ppl, result, seconds, cpu_seconds, worker)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
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

  /** The users' results in the run's user order. */
  async results(run: string): Promise<{ user: string; family: string; result: UserResult; tiers: Record<string, string> }[]> {
    return this.withRetry('results', async (c) =>
      (
        await c.query<{ user_name: string; family: string; result: UserResult; tiers: Record<string, string> }>(
          'SELECT user_name, family, result, tiers FROM fleet_results WHERE run_id = $1 ORDER BY ordinal, user_name',
          [run],
        )
      ).rows.map((r) => ({ user: r.user_name, family: r.family, result: r.result, tiers: r.tiers })),
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
