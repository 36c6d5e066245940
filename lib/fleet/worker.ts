// A fleet worker: takes (run, user) jobs from the queue and runs each user through the same
// per-user pipeline as `ternorm bet` (protocol.ts, openBet), scores the user's validation and test
// text under the run's generic adapter, analyses it with the run's registered settings and writes
// the user's row to PostgreSQL. Any number of workers on any number of machines.
//
// Exactly once: a user already in PostgreSQL is not measured again (a job that ran to the row and
// then lost its lock, a rerun), and the row's key keeps one row whatever happens. A worker killed
// mid-user stops renewing its job's lock; after the lock expires BullMQ's stalled-job check hands
// the job to another worker. A user that fails its last attempt gets its reason stored.
//
// Run-level steps (run-steps.ts): the generic adapter is trained by the first worker that needs it,
// under the run's PostgreSQL advisory lock (released when that worker dies), and stored with the run
// (the first stored stays); the others wait for it. When every user is settled, the worker that sees
// it queues the noise-margin jobs of the users the bet's encoding loses most (job id per (run, user,
// 'margin'); a margin job re-measures the user with the noise sweep, checks it reproduces the user's
// row, and stores the sweep).
import { hostname } from 'node:os';

import { UnrecoverableError, Worker, type Job } from 'bullmq';

import { canonicalJson } from '../bet/criteria.js';
import { openBet, type BetOptions, type BetPipeline, type UserInputs } from '../bet/protocol.js';
import { analyseUser, buildHeader, type RegisteredRun, type UserEvaluation } from '../bet/results.js';
import { deriveSeed, meanNll, PairedBootstrap } from '../bet/stats.js';
import { sha256Hex } from '../util/hash.js';
import { enqueueMargins } from './coordinator.js';
import { userTiers } from './distribution.js';
import { openQueue, QUEUE_NAME, redisConnection, type FleetJob } from './queue.js';
import { fleetSteps, genericPool, storedRunOptions } from './run-steps.js';
import type { FleetStore, GenericRow, GenericScore, RunRecord } from './store.js';
import { readFleetUsers } from './users.js';

/** The bet's options a run stores for its workers (everything but the users and the output). */
export type RunOptions = Pick<
  BetOptions,
  'modelPath' | 'ternarise' | 'criteriaPath' | 'seed' | 'seeds' | 'adapterRun' | 'encode' | 'bootstrap' | 'evalStride'
>;

export interface WorkerOptions {
  redis: string;
  store: FleetStore;
  concurrency: number;
  /** Threads per user (default: the core's default). */
  threads?: number;
  /** A job whose worker stops renewing its lock for this long is handed to another worker (default 30). */
  lockSeconds?: number;
  /** A name for the rows this worker writes (default host:pid). */
  name?: string;
  log?: (line: string) => void;
}

/** What must be the same between the run's registration and a worker's pipeline for the rows to belong to one run. */
function identity(h: RegisteredRun): string {
  return canonicalJson({
    criteria: h.criteria.sha256,
    baseModel: h.baseModel,
    conditions: h.conditions,
    bootstrap: h.bootstrap,
    run: h.run,
    seed: h.seed,
    seeds: h.seeds,
  });
}

export interface FleetWorker {
  worker: Worker<FleetJob, string>;
  /** Finishes the jobs in hand, then closes the worker and its Redis connection. */
  close(): Promise<void>;
}

export function startWorker(o: WorkerOptions): FleetWorker {
  const log = o.log ?? (() => undefined);
  const name = o.name ?? `${hostname()}:${process.pid}`;
  const runs = new Map<string, RunRecord>();
  const lock = (o.lockSeconds ?? 30) * 1000;
  // margin jobs are queued from here; a blocking connection waits out a Redis restart
  let followUps: { connection: ReturnType<typeof redisConnection>; queue: ReturnType<typeof openQueue> } | undefined;
  const followUpQueue = (): ReturnType<typeof openQueue> => {
    if (followUps === undefined) {
      const connection = redisConnection(o.redis, true);
      followUps = { connection, queue: openQueue(connection) };
    }
    return followUps.queue;
  };

  async function runOf(run: string): Promise<RunRecord> {
    let rec = runs.get(run);
    if (rec === undefined) {
      const r = await o.store.getRun(run);
      if (r === null) throw new UnrecoverableError(`run "${run}" is not registered in PostgreSQL`);
      runs.set(run, (rec = r));
    }
    return rec;
  }

  // Pipelines a job gave back, per run and settings. A job takes one another job of the run left
  // rather than opening its own (the model loaded and checked, the fleet texts verified: ~0.2 CPU-s
  // a user, and the model's workspaces and encoding losses stay warm); one per job in flight, as a
  // model runs one call at a time. The model and settings are the run's, so the rows are the same.
  const idle = new Map<string, BetPipeline[]>();

  /** The bet's pipeline for a job of the run, checked against the run's registration; back with `give` when the job succeeded. */
  function pipeline(rec: RunRecord, user: FleetJob['user'], extra: Pick<BetOptions, 'noise'> = {}): { bet: BetPipeline; give: () => void } {
    const key = `${rec.id}\n${canonicalJson(extra)}`;
    const free = idle.get(key) ?? [];
    idle.set(key, free);
    const give = (bet: BetPipeline) => () => void free.push(bet);
    const kept = free.pop();
    if (kept !== undefined) return { bet: kept, give: give(kept) };
    const bet = openBet({ ...storedRunOptions(rec.options), ...extra, users: [user], threads: o.threads });
    // the model, criteria and settings this worker has must be the run's (a margin job's noise sweep,
    // which the header records as run.noise, is the follow-up's own setting, not the run's)
    const mine = buildHeader(bet.header, rec.registered.criteria.registeredAt);
    const { noise: _sweep, ...run } = mine.run;
    if (identity({ ...mine, run }) !== identity(rec.registered))
      throw new UnrecoverableError(`run "${rec.id}": this worker's model, criteria or settings differ from the run's registration`);
    return { bet, give: give(bet) };
  }

  /** The run's generic adapter: stored, or trained here under the run's lock, or waited for while another worker trains it. */
  async function genericOf(rec: RunRecord, bet: BetPipeline): Promise<GenericRow> {
    for (let waited = false; ; waited = true) {
      const stored = await o.store.getGeneric(rec.id);
      if (stored !== null) return stored;
      const trained = await o.store.withGenericLock(rec.id, async () => {
        const again = await o.store.getGeneric(rec.id);
        if (again !== null) return again;
        const { texts, pool } = genericPool(readFleetUsers(rec.usersSpec), fleetSteps(rec.options).genericPoolBytes);
        log(
          `${rec.id}: generic adapter: training on ${pool.users.length} users' training texts pooled (${pool.users.reduce((a, u) => a + u.bytes, 0)} bytes)`,
        );
        const t0 = performance.now();
        const cpu0 = process.cpuUsage();
        const g = await bet.trainGeneric(texts);
        const cpu = process.cpuUsage(cpu0);
        const row: GenericRow = {
          run: rec.id,
          gains: g.gains,
          trainBytes: g.trainBytes,
          pool,
          seconds: (performance.now() - t0) / 1000,
          cpuSeconds: (cpu.user + cpu.system) / 1e6,
          worker: name,
        };
        const wrote = await o.store.putGeneric(row, sha256Hex(new Uint8Array(g.gains.buffer, g.gains.byteOffset, g.gains.byteLength)));
        log(`${rec.id}: generic adapter: ${wrote ? 'stored' : 'stored by another worker first'} in ${row.seconds.toFixed(1)} s`);
        return (await o.store.getGeneric(rec.id))!;
      });
      if (trained !== undefined) return trained;
      if (!waited) log(`${rec.id}: waiting for another worker's generic adapter`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  /** The user under the generic adapter: mean NLLs and paired intervals against the own adapter (the bet's --personal numbers). */
  async function genericScore(rec: RunRecord, bet: BetPipeline, ev: UserEvaluation, inputs: UserInputs): Promise<GenericScore> {
    const generic = await genericOf(rec, bet);
    const nll = await bet.scoreGains(generic.gains, inputs);
    const { reference } = rec.registered.criteria.criteria.conditions;
    const bs = rec.registered.bootstrap;
    const split = (s: 'validation' | 'test'): GenericScore['test'] => {
      const pb = new PairedBootstrap(
        { own: ev[s].nll[reference]!, other: nll[s] },
        {
          seed: deriveSeed(rec.registered.seed, 'personal', 'generic', ev.user, s),
          resamples: bs.resamples,
          confidence: bs.confidence,
          blockLength: bs.blockLength,
        },
      );
      return { meanNll: pb.meanNll('other'), ci: pb.ratioCi('other', 'own') };
    };
    const g = generic.gains;
    return {
      gainsSha256: sha256Hex(new Uint8Array(g.buffer, g.byteOffset, g.byteLength)),
      validation: split('validation'),
      test: split('test'),
    };
  }

  /** After a user settles: if every user is, queue the margin jobs (idempotent; the rerun of a settled job queues them again). */
  async function settle(rec: RunRecord): Promise<void> {
    const n = await enqueueMargins(o.store, followUpQueue(), rec);
    if (n > 0) log(`${rec.id}: every user settled; queued ${n} noise-margin job(s)`);
  }

  async function processJob(job: Job<FleetJob>): Promise<string> {
    return job.data.kind === 'margin' ? processMargin(job) : processUser(job);
  }

  async function processMargin(job: Job<FleetJob>): Promise<string> {
    const { run, user } = job.data;
    const rec = await runOf(run);
    const tag = `${run}/${user.name}/margin`;
    if ((await o.store.margins(run)).some((m) => m.user === user.name)) {
      log(`${tag}: already done, skipped`);
      return 'skipped';
    }
    const row = await o.store.resultOf(run, user.name);
    if (row === null) throw new UnrecoverableError(`${tag}: the user has no result row to take the margin of`);
    log(`${tag}: started (attempt ${job.attemptsMade + 1} of ${job.opts.attempts ?? 1})`);
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    const { bet, give } = pipeline(rec, user, { noise: { seeds: fleetSteps(rec.options).noiseSeeds } });
    const ev = await bet.measureUser(user, bet.readInputs(user));
    give();
    // the sweep belongs to the row only if the re-measured user is the row's user (same adapter, same scores)
    for (const c of rec.registered.conditions) {
      if (meanNll(ev.test.nll[c]!) !== row.test.conditions[c]!.meanNll)
        throw new UnrecoverableError(
          `${tag}: re-measuring the user does not reproduce its row (${c} test mean NLL ${meanNll(ev.test.nll[c]!)} vs ${row.test.conditions[c]!.meanNll}); this worker's core differs from the one that measured it`,
        );
    }
    const cpu = process.cpuUsage(cpu0);
    const wrote = await o.store.putMargin({
      run,
      user: user.name,
      measured: ev.noise!,
      seconds: (performance.now() - t0) / 1000,
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      worker: name,
    });
    log(`${tag}: ${wrote ? 'done' : 'done by another worker first'} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return wrote ? 'done' : 'duplicate';
  }

  async function processUser(job: Job<FleetJob>): Promise<string> {
    const { run, user, family, ordinal } = job.data;
    const rec = await runOf(run);
    if (await o.store.isDone(run, user.name)) {
      log(`${run}/${user.name}: already done, skipped`);
      await settle(rec);
      return 'skipped';
    }
    log(`${run}/${user.name}: started (attempt ${job.attemptsMade + 1} of ${job.opts.attempts ?? 1})`);
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    let outcome: string;
    try {
      const registered = rec.registered;
      const { bet, give } = pipeline(rec, user);
      const inputs = bet.readInputs(user);
      const ev = await bet.measureUser(user, inputs);
      const generic = await genericScore(rec, bet, ev, inputs);
      give();
      const criteria = registered.criteria.criteria;
      const result = analyseUser(ev, {
        criteria,
        conditions: registered.conditions,
        seed: registered.seed,
        bootstrap: registered.bootstrap,
      });
      const test = (c: string): number => result.test.conditions[c]!.ppl.value!;
      const cpu = process.cpuUsage(cpu0);
      const wrote = await o.store.putResult({
        run,
        user: user.name,
        ordinal,
        family,
        tiers: userTiers(result, registered.conditions, criteria),
        result,
        ppl: {
          noAdapter: test(criteria.conditions.noAdapter),
          reference: test(criteria.conditions.reference),
          bet: test(criteria.conditions.bet),
          choice: result.policy.test.ppl.value!,
        },
        generic,
        seconds: (performance.now() - t0) / 1000,
        cpuSeconds: (cpu.user + cpu.system) / 1e6,
        worker: name,
      });
      log(`${run}/${user.name}: ${wrote ? 'done' : 'done by another worker first'} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      outcome = wrote ? 'done' : 'duplicate';
    } catch (err) {
      const msg = (err as Error).message ?? String(err);
      const reason = msg.startsWith(`user "${user.name}"`) ? msg : `user "${user.name}": ${msg}`;
      const attempts = job.opts.attempts ?? 1;
      const last = err instanceof UnrecoverableError || job.attemptsMade + 1 >= attempts;
      log(`${run}/${user.name}: attempt ${job.attemptsMade + 1} of ${attempts} failed: ${reason}`);
      if (last) {
        await o.store.putFailure({ run, user: user.name, ordinal, family, attempts: job.attemptsMade + 1, reason, worker: name });
        // a rerun of `fleet run` queues the margins too, should this fail
        await settle(rec).catch((e: Error) => log(`${run}: queueing the noise margins failed: ${e.message}`));
      }
      throw err instanceof UnrecoverableError ? err : new Error(reason, { cause: err });
    }
    // outside the user's try: the row is written; a failure here retries the job, which skips to settle again
    await settle(rec);
    return outcome;
  }

  // a connection given to BullMQ stays open after the worker closes: close() disconnects it
  const connection = redisConnection(o.redis, true);
  const w = new Worker<FleetJob, string>(QUEUE_NAME, processJob, {
    connection,
    concurrency: o.concurrency,
    lockDuration: lock,
    stalledInterval: lock,
    // a job whose worker died more than twice is failed rather than handed out forever
    maxStalledCount: 2,
  });
  w.on('error', (err) => log(`worker: ${err.message}`));
  return {
    worker: w,
    close: async () => {
      await w.close();
      connection.disconnect();
      if (followUps !== undefined) {
        await followUps.queue.close();
        followUps.connection.disconnect();
      }
    },
  };
}
