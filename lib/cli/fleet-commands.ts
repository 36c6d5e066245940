// `ternorm fleet run | worker | status | report`: the bet over a fleet of users, queued on Redis
// (BullMQ) and stored in PostgreSQL (lib/fleet/). `ternorm fleet` with no subcommand stays the fleet
// totals of a results file (bet-commands.ts).

import { existsSync } from 'node:fs';

import { defaultModelPath } from '../bet/protocol.js';
import { enqueueRun, fleetReport, runStatus } from '../fleet/coordinator.js';
import { openQueue, redisConnection, DEFAULT_ATTEMPTS } from '../fleet/queue.js';
import { FleetStore } from '../fleet/store.js';
import { startWorker } from '../fleet/worker.js';
import { GENERIC_POOL_BYTES, MARGIN_NOISE_SEEDS, MARGIN_USERS } from '../fleet/run-steps.js';
import { coreLimits, orchestrationLimit, SEED_LIMIT } from '../model/limits.js';
import { adapterRunLimits } from '../model/train-adapter.js';
import { defined, parse, required, S, SHOW_HELP, ternariseFlag, TERNARISE_USAGE, UsageError, type Io } from './args.js';
import { checkNumericFlags, gradQuantFlag, narrowed, threadsLimit } from './limits.js';
import { formatDuration } from './progress.js';
import { terminalText } from '../util/text.js';

export const FLEET_SUBCOMMANDS = ['run', 'worker', 'status', 'report'] as const;

export const FLEET_USAGE = `  fleet run       register a fleet run in PostgreSQL (criteria hashed first) and queue one job per user on Redis
    --redis redis://HOST:PORT --pg postgresql://... --users fixture:NAME|users.jsonl [--run ID] [--attempts ${DEFAULT_ATTEMPTS}]
    [--model M] [--criteria FILE] [--seed 0] [--seeds 1] [--max-steps N] [--batch 8] [--lr 0.03] [--warmup 10] [--eval-every 20] [--patience 3] [--eval-stride N] [--grad-quant int8|f32] [--calibration-tokens N] [--group-size 32]
    [--mixed-budget BYTES] [--resamples 2000] [--margin-users ${MARGIN_USERS}] [--noise-seeds ${MARGIN_NOISE_SEEDS}]
    [--generic-pool-bytes ${GENERIC_POOL_BYTES}] [--json]   (the same ID again: queues only the users not done)
    ${TERNARISE_USAGE}
    the generic adapter (PERSONAL-LOST) is trained once per run on the users' training texts pooled (at most
    --generic-pool-bytes); when every user is settled, the --margin-users users int8 per tensor loses most get a noise-margin job
  fleet worker    run queued users (the bet's per-user pipeline), one row per user in PostgreSQL; any number of machines
    --redis URL --pg URL [--concurrency 1] [--threads N] [--lock-seconds 30] [--until-empty]
  fleet status    done / failed / running, users per minute, ETA   --redis URL --pg URL --run ID [--json]
  fleet report    the bet's JSON / Markdown / SVG report from SQL, plus tiers and PERSONAL-LOST over users with CIs,
                  the minimum safe bytes (quantiles, histogram) and the worst users' margin factors
    --pg URL --run ID --out DIR [--fleet-users 215000] [--json]
`;

const DEFAULT_FLEET_USERS = 215000;

async function withStore<T>(url: string, log: (line: string) => void, fn: (s: FleetStore) => Promise<T>): Promise<T> {
  const store = await FleetStore.open(url, { log });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

export async function cmdFleetSub(sub: (typeof FLEET_SUBCOMMANDS)[number], argv: string[], io: Io): Promise<number> {
  const log = (line: string): void => void io.stderr.write(terminalText(`${line}\n`, true));
  switch (sub) {
    case 'run': {
      const v = parse(argv, {
        redis: S,
        pg: S,
        users: S,
        run: S,
        attempts: S,
        model: S,
        ternarise: S,
        criteria: S,
        seed: S,
        seeds: S,
        'max-steps': S,
        batch: S,
        lr: S,
        warmup: S,
        'eval-every': S,
        patience: S,
        'eval-stride': S,
        'grad-quant': S,
        'calibration-tokens': S,
        'group-size': S,
        'mixed-budget': S,
        resamples: S,
        'margin-users': S,
        'noise-seeds': S,
        'generic-pool-bytes': S,
        json: { type: 'boolean' },
      });
      if (v.help) return SHOW_HELP;
      const c = coreLimits().codec;
      const n = checkNumericFlags(v, {
        attempts: orchestrationLimit(1, 100, true, DEFAULT_ATTEMPTS, 'attempts per user'),
        seed: SEED_LIMIT,
        seeds: orchestrationLimit(1, 100, true, 1, 'training seeds per user'),
        'max-steps': adapterRunLimits().maxSteps,
        batch: adapterRunLimits().batch,
        lr: adapterRunLimits().lr,
        warmup: adapterRunLimits().warmup,
        'eval-every': adapterRunLimits().evalEvery,
        patience: adapterRunLimits().patience,
        'eval-stride': narrowed(coreLimits().eval.stride, { min: 1 }),
        'calibration-tokens': c.calibrationTokens,
        'group-size': c.groupSize,
        'mixed-budget': narrowed(c.byteBudget, { min: 1 }),
        resamples: orchestrationLimit(2, 1_000_000, true, null, 'bootstrap resamples'),
        'margin-users': orchestrationLimit(0, 100_000, true, MARGIN_USERS, 'users given a noise-margin job'),
        'noise-seeds': orchestrationLimit(1, 100, true, MARGIN_NOISE_SEEDS, 'noise patterns per margin point'),
        'generic-pool-bytes': orchestrationLimit(1024, 1 << 30, true, GENERIC_POOL_BYTES, "bytes of the users' training texts pooled"),
      });
      const redis = required(v, 'redis');
      const pg = required(v, 'pg');
      const usersSpec = required(v, 'users');
      const modelPath = (v.model as string | undefined) ?? defaultModelPath();
      const ternarise = ternariseFlag(v);
      const gradQuant = gradQuantFlag(v['grad-quant']);
      if (!existsSync(modelPath)) throw new Error(`--model ${modelPath}: no such file`);
      const connection = redisConnection(redis, false);
      const queue = openQueue(connection);
      try {
        const r = await withStore(pg, log, (store) =>
          enqueueRun({
            store,
            queue,
            usersSpec,
            run: v.run as string | undefined,
            attempts: n.attempts,
            steps: defined({ marginUsers: n['margin-users'], noiseSeeds: n['noise-seeds'], genericPoolBytes: n['generic-pool-bytes'] }),
            options: {
              modelPath,
              ...defined({ ternarise }),
              criteriaPath: v.criteria as string | undefined,
              seed: n.seed ?? 0,
              seeds: n.seeds ?? 1,
              adapterRun: defined({
                maxSteps: n['max-steps'],
                batch: n.batch,
                lr: n.lr,
                warmup: n.warmup,
                evalEvery: n['eval-every'],
                patience: n.patience,
                gradQuant,
              }),
              ...defined({ evalStride: n['eval-stride'] }),
              encode: defined({ calibrationTokens: n['calibration-tokens'], groupSize: n['group-size'], mixedBudget: n['mixed-budget'] }),
              bootstrap: defined({ resamples: n.resamples }),
            },
          }),
        );
        io.stdout.write(
          v.json
            ? `${JSON.stringify(r)}\n`
            : `run ${r.run}: ${r.registered ? 'registered' : 'rerun'}; ${r.enqueued} of ${r.users} users queued` +
                `${r.skippedDone > 0 ? ` (${r.skippedDone} done already)` : ''}\n`,
        );
        return 0;
      } finally {
        await queue.close();
        connection.disconnect();
      }
    }
    case 'worker': {
      const v = parse(argv, { redis: S, pg: S, concurrency: S, threads: S, 'lock-seconds': S, 'until-empty': { type: 'boolean' } });
      if (v.help) return SHOW_HELP;
      const n = checkNumericFlags(v, {
        concurrency: orchestrationLimit(1, 1024, true, 1, 'users a worker runs at once'),
        threads: threadsLimit(),
        'lock-seconds': orchestrationLimit(1, 3600, true, 30, 'seconds before a silent worker loses its job'),
      });
      const redis = required(v, 'redis');
      const store = await FleetStore.open(required(v, 'pg'), { log });
      const worker = startWorker({
        redis,
        store,
        concurrency: n.concurrency ?? 1,
        threads: n.threads,
        lockSeconds: n['lock-seconds'],
        log,
      });
      const stop = new Promise<void>((resolve) => {
        const onSignal = (): void => resolve();
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        if (v['until-empty'] === true) {
          const connection = redisConnection(redis, false);
          const queue = openQueue(connection);
          let idle = 0;
          const timer = setInterval(() => {
            queue
              .getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'waiting-children')
              .then((c) => {
                idle = Object.values(c).every((x) => x === 0) ? idle + 1 : 0;
                if (idle >= 2) {
                  clearInterval(timer);
                  void queue.close().then(() => connection.disconnect());
                  resolve();
                }
              })
              .catch(() => (idle = 0));
          }, 1000);
        }
      });
      log(`worker ${process.pid}: waiting for jobs (concurrency ${n.concurrency ?? 1})`);
      await stop;
      await worker.close();
      await store.close();
      return 0;
    }
    case 'status': {
      const v = parse(argv, { redis: S, pg: S, run: S, json: { type: 'boolean' } });
      if (v.help) return SHOW_HELP;
      const connection = redisConnection(required(v, 'redis'), false);
      const queue = openQueue(connection);
      try {
        const s = await withStore(required(v, 'pg'), log, (store) => runStatus(store, queue, required(v, 'run')));
        if (v.json) io.stdout.write(`${JSON.stringify(s)}\n`);
        else {
          const lines = [
            `run ${s.run}: ${s.users} users: ${s.done} done, ${s.failed} failed, ${s.running} running, ${s.waiting} waiting`,
            `rate ${s.usersPerMinute.toFixed(2)} users/min (last ${s.windowSeconds / 60} min)` +
              `${s.cpuSecondsPerUser === null ? '' : `, ${s.cpuSecondsPerUser.toFixed(1)} CPU-s per user`}; ETA ${s.etaSeconds === null ? 'unknown (no user done recently)' : formatDuration(s.etaSeconds)}`,
            `generic adapter: ${s.generic === null ? 'not trained yet' : `stored by ${s.generic.worker} (${s.generic.seconds.toFixed(1)} s, ${s.generic.trainBytes} bytes pooled)`}; ` +
              `noise margins: ${s.margins.done} of ${s.margins.users} done, ${s.margins.running} running`,
            ...s.failures.map((f) => `failed: ${f.user} after ${f.attempts} attempt(s): ${f.reason}`),
          ];
          io.stdout.write(terminalText(lines.join('\n') + '\n', true));
        }
        return 0;
      } finally {
        await queue.close();
        connection.disconnect();
      }
    }
    case 'report': {
      const v = parse(argv, { pg: S, run: S, out: S, 'fleet-users': S, json: { type: 'boolean' } });
      if (v.help) return SHOW_HELP;
      const n = checkNumericFlags(v, {
        'fleet-users': orchestrationLimit(1, Number.MAX_SAFE_INTEGER, true, DEFAULT_FLEET_USERS, 'users in the fleet'),
      });
      const r = await withStore(required(v, 'pg'), log, (store) =>
        fleetReport(store, required(v, 'run'), required(v, 'out'), n['fleet-users'] ?? DEFAULT_FLEET_USERS),
      );
      io.stdout.write(
        v.json
          ? `${JSON.stringify({ ...r.paths, status: r.results.status, users: r.results.users.length, verdicts: r.results.verdicts.map((x) => ({ scheme: x.scheme, verdict: x.verdict })) })}\n`
          : terminalText(`wrote ${Object.values(r.paths).join(', ')} (${r.results.users.length} users, ${r.results.status})\n`, true),
      );
      return 0;
    }
    default:
      throw new UsageError(`unknown fleet subcommand '${String(sub)}'`);
  }
}
