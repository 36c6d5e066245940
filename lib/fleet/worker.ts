// A fleet worker: takes (run, user) jobs from the queue and runs each user through the same
// per-user pipeline as `ternorm bet` (protocol.ts, openBet), analyses it with the run's registered
// settings and writes the user's row to PostgreSQL. Any number of workers on any number of machines.
//
// Exactly once: a user already in PostgreSQL is not measured again (a job that ran to the row and
// then lost its lock, a rerun), and the row's key keeps one row whatever happens. A worker killed
// mid-user stops renewing its job's lock; after the lock expires BullMQ's stalled-job check hands
// the job to another worker. A user that fails its last attempt gets its reason stored.

import { hostname } from 'node:os';

import { UnrecoverableError, Worker, type Job } from 'bullmq';

import { canonicalJson } from '../bet/criteria.js';
import { openBet, type BetOptions } from '../bet/protocol.js';
import { analyseUser, buildHeader, type RegisteredRun } from '../bet/results.js';
import { userTiers } from './distribution.js';
import { QUEUE_NAME, redisConnection, type FleetJob } from './queue.js';
import type { FleetStore, RunRecord } from './store.js';

/** The bet's options a run stores for its workers (everything but the users and the output). */
export type RunOptions = Pick<BetOptions, 'modelPath' | 'criteriaPath' | 'seed' | 'seeds' | 'adapterRun' | 'encode' | 'bootstrap'>;

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

  async function processJob(job: Job<FleetJob>): Promise<string> {
    const { run, user, family, ordinal } = job.data;
    let rec = runs.get(run);
    if (rec === undefined) {
      const r = await o.store.getRun(run);
      if (r === null) throw new UnrecoverableError(`run "${run}" is not registered in PostgreSQL`);
      runs.set(run, (rec = r));
    }
    if (await o.store.isDone(run, user.name)) {
      log(`${run}/${user.name}: already done, skipped`);
      return 'skipped';
    }
    log(`${run}/${user.name}: started (attempt ${job.attemptsMade + 1} of ${job.opts.attempts ?? 1})`);
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    try {
      const registered = rec.registered;
      const bet = openBet({ ...(rec.options as unknown as RunOptions), users: [user], threads: o.threads });
      // the model, criteria and settings this worker has must be the run's
      if (identity(buildHeader(bet.header, registered.criteria.registeredAt)) !== identity(registered))
        throw new UnrecoverableError(`run "${run}": this worker's model, criteria or settings differ from the run's registration`);
      const ev = await bet.measureUser(user, bet.readInputs(user));
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
        seconds: (performance.now() - t0) / 1000,
        cpuSeconds: (cpu.user + cpu.system) / 1e6,
        worker: name,
      });
      log(`${run}/${user.name}: ${wrote ? 'done' : 'done by another worker first'} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      return wrote ? 'done' : 'duplicate';
    } catch (err) {
      const msg = (err as Error).message ?? String(err);
      const reason = msg.startsWith(`user "${user.name}"`) ? msg : `user "${user.name}": ${msg}`;
      const attempts = job.opts.attempts ?? 1;
      const last = err instanceof UnrecoverableError || job.attemptsMade + 1 >= attempts;
      log(`${run}/${user.name}: attempt ${job.attemptsMade + 1} of ${attempts} failed: ${reason}`);
      if (last) await o.store.putFailure({ run, user: user.name, ordinal, family, attempts: job.attemptsMade + 1, reason, worker: name });
      throw err instanceof UnrecoverableError ? err : new Error(reason, { cause: err });
    }
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
    },
  };
}
