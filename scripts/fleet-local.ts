// npm run fleet:local: a whole fleet run on this one machine, through the real engine: Redis and
// PostgreSQL started on loopback with their files kept in --data (so a killed run resumes: rerunning
// the same command starts the servers on the same files and `fleet run --run ID` queues only the
// users without a row), `ternorm fleet run`, W `ternorm fleet worker --until-empty` processes, the
// status every minute, then `ternorm fleet report` into --out and a log of the run beside it
// (command, git revision, wall time, CPU-seconds of the workers, load average).
//
//   node dist/scripts/fleet-local.js [--users fixture:fleet] [--run ID] [--workers 2] [--threads 1]
//     [--data out/fleet-local] [--out results/12_fleet] [-- <more flags for `fleet run`>]
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { PostgresServer, RedisServer, serversMissing } from '../bench/fleet-servers.js';
import { writeAtomic } from '../bench/report.js';

interface RunLog {
  schema: 'ternorm.fleet-local/1';
  run: string;
  users: string;
  sessions: {
    command: string;
    gitRevision: string;
    workers: number;
    threadsPerWorker: number;
    wallSeconds: number;
    workerCpuSeconds: number;
    loadAverage1m: number[];
  }[];
}

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = join(REPO, 'dist', 'lib', 'cli', 'main.js');

const { values: a, positionals: runFlags } = parseArgs({
  allowPositionals: true,
  options: {
    users: { type: 'string', default: 'fixture:fleet' },
    run: { type: 'string' },
    workers: { type: 'string', default: '2' },
    threads: { type: 'string', default: '1' },
    data: { type: 'string', default: join(REPO, 'out', 'fleet-local') },
    out: { type: 'string', default: join(REPO, 'results', '12_fleet') },
  },
});
const count = (v: string, what: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`--${what} must be an integer in [1, 64], got "${v}"`);
  return n;
};
const workers = count(a.workers!, 'workers');
const threads = count(a.threads!, 'threads');
const runId = a.run ?? a.users!.replace(/[^A-Za-z0-9_-]+/g, '-');

/** Children's CPU seconds (user + system) of this process so far, from /proc (cutime + cstime). */
function childCpuSeconds(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); cutime and cstime are fields 16 and 17
  const ticks = Number(fields[13]) + Number(fields[14]);
  const hz = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  return ticks / hz;
}

function cli(args: string[], quiet = false): Promise<string> {
  return new Promise((resolveRun, reject) => {
    const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', quiet ? 'ignore' : 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.once('error', reject);
    p.once('exit', (code, signal) =>
      code === 0 ? resolveRun(out) : reject(new Error(`ternorm ${args[0]} ${args[1]} exited with ${signal ?? code}`)),
    );
  });
}

async function main(): Promise<void> {
  // a resumed run: its earlier invocations' sessions are kept, this one is appended
  const logPath = join(a.out!, 'run-log.json');
  const earlier = existsSync(logPath) ? (JSON.parse(readFileSync(logPath, 'utf8')) as RunLog) : null;
  if (earlier !== null && (earlier.schema !== 'ternorm.fleet-local/1' || !Array.isArray(earlier.sessions)))
    throw new Error(`${logPath}: not a ternorm.fleet-local/1 run log; move it away or choose another --out`);
  const missing = serversMissing();
  if (missing !== null) throw new Error(`fleet:local needs Redis and PostgreSQL: ${missing}`);
  const redis = await RedisServer.start({ dir: join(a.data!, 'redis') });
  const pg = await PostgresServer.start({ dir: join(a.data!, 'pg'), fsync: true });
  const load: number[][] = [loadavg()];
  const started = Date.now();
  const cpu0 = childCpuSeconds();
  try {
    const servers = ['--redis', redis.url, '--pg', pg.url];
    await cli(['fleet', 'run', ...servers, '--users', a.users!, '--run', runId, ...runFlags]);
    const workerArgs = ['fleet', 'worker', ...servers, '--until-empty', '--threads', String(threads)];
    const done = Promise.all(Array.from({ length: workers }, () => cli(workerArgs)));
    const tick = setInterval(() => {
      load.push(loadavg());
      cli(['fleet', 'status', ...servers, '--run', runId], true).then(
        (s) => process.stderr.write(s),
        () => undefined,
      );
    }, 60_000);
    try {
      await done;
    } finally {
      clearInterval(tick);
    }
    process.stderr.write(await cli(['fleet', 'status', ...servers, '--run', runId]));
    await cli(['fleet', 'report', '--pg', pg.url, '--run', runId, '--out', a.out!]);
    load.push(loadavg());
    const session = {
      command: ['node', 'dist/scripts/fleet-local.js', ...process.argv.slice(2)].join(' '),
      gitRevision: execFileSync('git', ['-C', REPO, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim(),
      workers,
      threadsPerWorker: threads,
      wallSeconds: (Date.now() - started) / 1000,
      workerCpuSeconds: childCpuSeconds() - cpu0,
      loadAverage1m: load.map((l) => l[0]!),
    };
    const log: RunLog = {
      schema: 'ternorm.fleet-local/1',
      run: runId,
      users: a.users!,
      sessions: [...(earlier?.run === runId ? earlier.sessions : []), session],
    };
    writeAtomic(logPath, `${JSON.stringify(log, null, 2)}\n`);
    process.stderr.write(
      `fleet:local: ${runId} done in ${session.wallSeconds.toFixed(0)} s, ${session.workerCpuSeconds.toFixed(0)} CPU-s\n`,
    );
  } finally {
    await redis.kill();
    await pg.stop();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`fleet:local: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
