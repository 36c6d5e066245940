// npm run bench:fleet: what the fleet engine costs, measured on this machine, and what that means
// for 215 000 users on W workers x C cores.
//
// Measured (servers started here on loopback, at their durable-ish defaults: Redis in memory without
// persistence, PostgreSQL with fsync on; or --redis / --pg URLs):
//   - per-user CPU-seconds: one real user (the novelist fixture, shipped model, the bet's default
//     settings, one thread) through the bet's pipeline and analysis, as a worker runs it;
//   - BullMQ: enqueue rate (addBulk) and no-op job throughput of one worker process;
//   - Redis memory per queued job (INFO used_memory before/after N waiting jobs shaped like the fleet's);
//   - PostgreSQL: rate of the worker's per-user writes (done check + result insert transaction)
//     with the real user's row, from 4 concurrent connections; bytes per row (pg_column_size) and
//     table bytes per row (pg_total_relation_size / rows).
// Projected (the README table): wall time = users / min(W*C / cpuSeconds, queue jobs/s, PostgreSQL
// rows/s), CPU-hours = users * cpuSeconds / 3600, Redis peak = users * bytes per queued job (all
// queued at once), PostgreSQL = users * table bytes per row; the bottleneck is the smallest rate.
// --cpu-seconds X projects with X (e.g. a cheaper user measured elsewhere) instead of the measurement.
//
//   node dist/bench/fleet.js [--redis URL --pg URL] [--cpu-seconds X] [--jobs 5000] [--rows 500]
//   node dist/bench/fleet.js --from bench/results/fleet.json --cpu-seconds X   (re-project only)
import { readFileSync } from 'node:fs';
import { hostname, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { Worker } from 'bullmq';

import { defaultModelPath, defaultUsers, openBet } from '../lib/bet/protocol.js';
import { analyseUser, buildHeader, type UserResult } from '../lib/bet/results.js';
import { userTiers } from '../lib/fleet/distribution.js';
import { jobOptions, openQueue, QUEUE_NAME, redisConnection, type FleetJob } from '../lib/fleet/queue.js';
import { FleetStore, type ResultRow } from '../lib/fleet/store.js';
import { cpuInfo } from '../lib/kernels.js';
import { PostgresServer, RedisServer, serversMissing } from './fleet-servers.js';
import { fmtNum, gitOutput, writeAtomic } from './report.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SCHEMA = 'ternorm.bench.fleet/1';
const FLEET_USERS = 215_000;
const WORKERS = [1, 4, 16, 64, 256, 1024, 4096];
const CORES = 16;

const { values: a } = parseArgs({
  options: {
    redis: { type: 'string' },
    pg: { type: 'string' },
    'cpu-seconds': { type: 'string' },
    jobs: { type: 'string' },
    rows: { type: 'string' },
    from: { type: 'string' },
    help: { type: 'boolean' },
  },
});
if (a.help) {
  process.stdout.write(
    'node dist/bench/fleet.js [--redis URL --pg URL] [--cpu-seconds X] [--jobs 5000] [--rows 500] | --from FLEET.json --cpu-seconds X\n',
  );
  process.exit(0);
}
const positive = (v: string | undefined, def: number, what: string): number => {
  const n = v === undefined ? def : Number(v);
  if (!(Number.isFinite(n) && n > 0)) throw new Error(`--${what} must be a positive number, got ${v}`);
  return n;
};
const N_JOBS = Math.round(positive(a.jobs, 5000, 'jobs'));
const N_ROWS = Math.round(positive(a.rows, 500, 'rows'));

async function realUser(): Promise<{ result: UserResult; cpuSeconds: number; wallSeconds: number; row: Omit<ResultRow, 'run' | 'user'> }> {
  const user = defaultUsers()[0]!;
  const bet = openBet({ modelPath: defaultModelPath(), users: [user], seed: 0, seeds: 1, threads: 1 });
  const registered = buildHeader(bet.header, new Date().toISOString());
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const ev = await bet.measureUser(user, bet.readInputs(user));
  const criteria = registered.criteria.criteria;
  const result = analyseUser(ev, { criteria, conditions: registered.conditions, seed: registered.seed, bootstrap: registered.bootstrap });
  const cpu = process.cpuUsage(cpu0);
  const wallSeconds = (performance.now() - t0) / 1000;
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const ppl = (c: string): number => result.test.conditions[c]!.ppl.value!;
  return {
    result,
    cpuSeconds,
    wallSeconds,
    row: {
      ordinal: 0,
      family: 'novelist',
      tiers: userTiers(result, registered.conditions, criteria),
      result,
      ppl: {
        noAdapter: ppl(criteria.conditions.noAdapter),
        reference: ppl(criteria.conditions.reference),
        bet: ppl(criteria.conditions.bet),
        choice: result.policy.test.ppl.value!,
      },
      seconds: wallSeconds,
      cpuSeconds,
      worker: `${hostname()}:${process.pid}`,
    },
  };
}

async function usedMemory(redis: ReturnType<typeof redisConnection>): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)![1]);
}

async function main(): Promise<void> {
  let redisServer: RedisServer | null = null;
  let pgServer: PostgresServer | null = null;
  if (a.redis === undefined || a.pg === undefined) {
    const missing = serversMissing();
    if (missing !== null) throw new Error(`cannot start the servers (${missing}); install them or give --redis and --pg`);
  }
  const redisUrl = a.redis ?? (redisServer = await RedisServer.start({ persist: false })).url;
  const pgUrl = a.pg ?? (pgServer = await PostgresServer.start({ fsync: true })).url;
  const run = `bench-${Date.now()}`;
  try {
    process.stderr.write('per-user CPU-s: one real user through the pipeline (novelist, shipped model, 1 thread)...\n');
    const user = await realUser();
    process.stderr.write(`  ${user.cpuSeconds.toFixed(1)} CPU-s, ${user.wallSeconds.toFixed(1)} s wall\n`);

    // BullMQ: enqueue, memory per queued job, no-op throughput
    const connection = redisConnection(redisUrl, false);
    const queue = openQueue(connection);
    await queue.obliterate({ force: true });
    const mem0 = await usedMemory(connection);
    const src = defaultUsers()[0]!;
    const t0 = performance.now();
    for (let i = 0; i < N_JOBS; i += 1000) {
      await queue.addBulk(
        Array.from({ length: Math.min(1000, N_JOBS - i) }, (_, k) => {
          const name = `user-${String(i + k).padStart(6, '0')}`;
          const data: FleetJob = {
            run,
            user: { name, source: { kind: 'file', path: `/srv/fleet/users/${name}.txt` } },
            family: 'family-0',
            ordinal: i + k,
          };
          return { name: 'user', data, opts: jobOptions(run, name, 3) };
        }),
      );
    }
    const enqueueSeconds = (performance.now() - t0) / 1000;
    const bytesPerQueuedJob = ((await usedMemory(connection)) - mem0) / N_JOBS;
    let done = 0;
    const t1 = performance.now();
    const finished = new Promise<void>((resolveDone) => {
      const wc = redisConnection(redisUrl, true);
      const w = new Worker<FleetJob>(QUEUE_NAME, async () => 'noop', { connection: wc, concurrency: 16 });
      w.on('completed', () => {
        if (++done === N_JOBS) void w.close().then(() => (wc.disconnect(), resolveDone()));
      });
    });
    await finished;
    const noopSeconds = (performance.now() - t1) / 1000;
    await queue.close();
    connection.disconnect();

    // PostgreSQL: the worker's per-user writes with the real row
    const store = await FleetStore.open(pgUrl);
    await store.registerRun({
      id: run,
      usersSpec: 'bench',
      usersTotal: N_ROWS,
      options: {},
      registered: buildHeader(openBet({ modelPath: defaultModelPath(), users: [src], seed: 0, seeds: 1 }).header, new Date().toISOString()),
    });
    let next = 0;
    const t2 = performance.now();
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (;;) {
          const i = next++;
          if (i >= N_ROWS) return;
          const name = `user-${String(i).padStart(6, '0')}`;
          await store.isDone(run, name);
          await store.putResult({ ...user.row, run, user: name, ordinal: i, result: { ...user.result, user: name } });
        }
      }),
    );
    const pgSeconds = (performance.now() - t2) / 1000;
    const size = await store.rowBytes(run);
    await store.close();

    const measured = {
      cpuSecondsPerUser: user.cpuSeconds,
      userWallSeconds: user.wallSeconds,
      queue: { jobs: N_JOBS, enqueuePerSecond: N_JOBS / enqueueSeconds, noopJobsPerSecond: N_JOBS / noopSeconds, workerConcurrency: 16 },
      redis: { bytesPerQueuedJob },
      postgres: {
        rows: N_ROWS,
        rowsPerSecond: N_ROWS / pgSeconds,
        connections: 4,
        meanRowBytes: size.meanBytes,
        tableBytesPerRow: size.tableBytes / size.rows,
      },
    };
    const cpuSeconds = a['cpu-seconds'] === undefined ? user.cpuSeconds : positive(a['cpu-seconds'], 0, 'cpu-seconds');
    const out = {
      schema: SCHEMA,
      when: new Date().toISOString(),
      git: gitOutput(REPO, ['rev-parse', 'HEAD']) ?? null,
      machine: { cpu: cpuInfo(), loadavg: loadavg(), note: 'a shared 2-core machine: rates are lower bounds of a dedicated one' },
      servers: {
        redis: a.redis === undefined ? 'redis-server, in memory (no persistence)' : 'given',
        postgres: a.pg === undefined ? 'PostgreSQL, fsync on' : 'given',
      },
      measured,
      projection: project(measured, cpuSeconds, a['cpu-seconds'] === undefined ? 'measured' : '--cpu-seconds'),
    };
    writeAtomic(join(REPO, 'bench', 'results', 'fleet.json'), JSON.stringify(out, null, 2) + '\n');
    process.stdout.write(markdown(out.projection, measured) + '\nwrote bench/results/fleet.json\n');
  } finally {
    await redisServer?.stop();
    await pgServer?.destroy();
  }
}

type Measured = {
  queue: { noopJobsPerSecond: number };
  postgres: { rowsPerSecond: number; tableBytesPerRow: number };
  redis: { bytesPerQueuedJob: number };
};

/** 215 000 users on W x CORES cores: each row's rate is the smallest of compute, the queue and PostgreSQL. */
function project(m: Measured, cpuSeconds: number, source: string) {
  return {
    fleetUsers: FLEET_USERS,
    cpuSecondsPerUser: cpuSeconds,
    cpuSecondsSource: source,
    cpuHours: (FLEET_USERS * cpuSeconds) / 3600,
    redisPeakBytes: FLEET_USERS * m.redis.bytesPerQueuedJob,
    postgresBytes: FLEET_USERS * m.postgres.tableBytesPerRow,
    rows: WORKERS.map((w) => {
      const rates = { compute: (w * CORES) / cpuSeconds, queue: m.queue.noopJobsPerSecond, postgres: m.postgres.rowsPerSecond };
      const [bottleneck, rate] = Object.entries(rates).sort((x, y) => x[1] - y[1])[0]!;
      return { workers: w, cores: CORES, usersPerSecond: rate, wallSeconds: FLEET_USERS / rate, bottleneck, rates };
    }),
  };
}

function hours(s: number): string {
  return s < 3600 ? `${(s / 60).toFixed(1)} min` : s < 86400 * 2 ? `${(s / 3600).toFixed(1)} h` : `${(s / 86400).toFixed(1)} days`;
}

function markdown(
  p: {
    fleetUsers: number;
    cpuSecondsPerUser: number;
    cpuHours: number;
    redisPeakBytes: number;
    postgresBytes: number;
    rows: { workers: number; cores: number; wallSeconds: number; bottleneck: string; usersPerSecond: number }[];
  },
  m: {
    queue: { noopJobsPerSecond: number };
    postgres: { rowsPerSecond: number; tableBytesPerRow: number };
    redis: { bytesPerQueuedJob: number };
  },
): string {
  const mib = (b: number): string => `${fmtNum(b / 2 ** 20)} MiB`;
  return [
    `${p.fleetUsers} users at ${p.cpuSecondsPerUser.toFixed(1)} CPU-s each: ${p.cpuHours.toFixed(0)} CPU-hours whatever W; Redis peak ${mib(p.redisPeakBytes)} (${m.redis.bytesPerQueuedJob.toFixed(0)} B per queued job, all queued at once); PostgreSQL ${mib(p.postgresBytes)} (${m.postgres.tableBytesPerRow.toFixed(0)} B per user). Ceilings: queue ${m.queue.noopJobsPerSecond.toFixed(0)} jobs/s, PostgreSQL ${m.postgres.rowsPerSecond.toFixed(0)} users/s.`,
    '',
    '| workers x cores | users/s | wall time | bottleneck |',
    '|---|---:|---:|---|',
    ...p.rows.map((r) => `| ${r.workers} x ${r.cores} | ${r.usersPerSecond.toFixed(1)} | ${hours(r.wallSeconds)} | ${r.bottleneck} |`),
  ].join('\n');
}

if (a.from !== undefined) {
  // the projection of earlier measurements at another per-user cost; nothing is measured or written
  const earlier = JSON.parse(readFileSync(a.from, 'utf8')) as { schema?: unknown; measured: Measured };
  if (earlier.schema !== SCHEMA) throw new Error(`--from ${a.from}: not a ${SCHEMA} file`);
  if (a['cpu-seconds'] === undefined) throw new Error('--from needs --cpu-seconds X');
  process.stdout.write(
    markdown(project(earlier.measured, positive(a['cpu-seconds'], 0, 'cpu-seconds'), '--cpu-seconds'), earlier.measured) + '\n',
  );
} else {
  await main();
}
