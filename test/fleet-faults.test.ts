// The fleet on real servers: redis-server and PostgreSQL started here on loopback ports (skipped,
// with the reason in the suite's name, where their binaries are missing), a tiny model and
// synthetic users, the real `ternorm fleet` executable in separate processes. Faults: a worker
// killed with SIGKILL mid-user (another worker finishes that user: one row), a poison user (fails
// after its attempts, reason stored, the others finish), Redis killed and restarted mid-run (the
// run completes), PostgreSQL down for a while (retried, nothing lost), a worker killed while it
// trains the run's generic adapter (another trains it, one stored, every user scored under it).
// Then: a rerun skips the users done, and the report from SQL holds the very results `ternorm bet
// --personal` computes for the same users (the generic adapter's numbers and PERSONAL-LOST too),
// with the noise margins of the users int8 per tensor loses most, byte-identical when regenerated.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { runBet } from '../lib/bet/protocol.js';
import { readResults } from '../lib/bet/results.js';
import { storedRunOptions } from '../lib/fleet/run-steps.js';
import { FleetStore, SCHEMA_VERSION } from '../lib/fleet/store.js';
import { TIERS, type FleetDistribution } from '../lib/fleet/distribution.js';
import { Model } from '../lib/model/index.js';
import { BpeTokenizer } from '../lib/tokenizer/bpe.js';
import { packageRoot } from '../lib/util/package-root.js';
import { PostgresServer, RedisServer, serversMissing } from '../bench/fleet-servers.js';
import { wordCorpus } from './word-corpus.js';

const missing = serversMissing();
const root = packageRoot();
const main = join(root, 'dist', 'lib', 'cli', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'ternorm-fleet-'));

const COMMON = ['the', 'a', 'of', 'and', 'to', 'in', 'is', 'it'];
const SEA = [...COMMON, 'whale', 'ship', 'sea', 'captain', 'harpoon', 'deck', 'wave', 'sail'];
const CODE = [...COMMON, 'function', 'return', 'const', 'node', 'type', 'let', 'if', 'else'];
const TINY = { vocab: 320, dModel: 32, nLayers: 2, nHeads: 2, dFf: 64, context: 32 };
const modelPath = join(dir, 'base.tnm');
const GOOD = ['sea1', 'sea2', 'code1', 'code2', 'mixed1'];
// the same settings for `fleet run` and for the `bet` the report is compared with
const SETTINGS = ['--max-steps', '12', '--calibration-tokens', '256', '--resamples', '200', '--seed', '3'];
// the fleet's own steps, small: noise margins of the 2 worst users, 1 noise pattern per point
const STEPS = ['--margin-users', '2', '--noise-seeds', '1'];
const GENERIC_KILL_STEPS = 400;

let redis: RedisServer;
let pg: PostgresServer;
let store: FleetStore;
const children: ChildProcess[] = [];

function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Worker {
  proc: ChildProcess;
  name: string;
  log: () => string;
  exited: Promise<number | null>;
}

function worker(...extra: string[]): Worker {
  const proc = spawn(
    process.execPath,
    [main, 'fleet', 'worker', '--redis', redis.url, '--pg', pg.url, '--lock-seconds', '2', '--threads', '1', ...extra],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  children.push(proc);
  let log = '';
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  return { proc, name: `${hostname()}:${proc.pid}`, log: () => log, exited: new Promise((r) => proc.on('exit', (code) => r(code))) };
}

async function until(what: string, ok: () => Promise<boolean> | boolean, seconds = 400): Promise<void> {
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function settled(run: string, total: number): Promise<void> {
  await until(`run ${run} to settle`, async () => {
    const p = await store.progress(run, 600);
    return p.done + p.failed === total;
  });
}

async function rows(run: string): Promise<{ user: string; worker: string }[]> {
  return store.withRetry('test rows', async (c) => {
    const r = await c.query<{ user_name: string; worker: string }>(
      'SELECT user_name, worker FROM fleet_results WHERE run_id = $1 ORDER BY user_name',
      [run],
    );
    return r.rows.map((x) => ({ user: x.user_name, worker: x.worker }));
  });
}

/** `ternorm fleet run` of `run` over `users` on this suite's servers and model, then `extra`. */
function fleetRun(run: string, users: string, ...extra: string[]): ReturnType<typeof cli> {
  return cli('fleet', 'run', '--redis', redis.url, '--pg', pg.url, '--users', users, '--run', run, '--model', modelPath, ...extra);
}

function enqueue(
  run: string,
  users: string,
  ...extra: string[]
): { run: string; users: number; enqueued: number; skippedDone: number; registered: boolean } {
  const r = fleetRun(run, users, '--json', ...SETTINGS, ...STEPS, ...extra);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

describe.skipIf(missing !== null)(`ternorm fleet on real Redis and PostgreSQL${missing === null ? '' : ` (skipped: ${missing})`}`, () => {
  const goodUsers = join(dir, 'users.jsonl');
  const withPoison = join(dir, 'users-poison.jsonl');

  beforeAll(async () => {
    execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], {
      stdio: 'inherit',
    });
    const corpus = (seed: number, words: readonly string[]) => wordCorpus(seed, 2000, words, 9);
    const base = wordCorpus(1, 6000, [...SEA, ...CODE], 9);
    Model.create(TINY, 5, BpeTokenizer.train(new TextEncoder().encode(base), { vocabSize: TINY.vocab })).save(modelPath);
    const words: Record<string, readonly string[]> = { sea1: SEA, sea2: SEA, code1: CODE, code2: CODE, mixed1: [...SEA, ...CODE] };
    const lines = GOOD.map((u, i) => {
      writeFileSync(join(dir, `${u}.txt`), corpus(10 + i, words[u]!));
      return JSON.stringify({ name: u, text: `${u}.txt`, family: u.replace(/\d+$/, '') });
    });
    writeFileSync(goodUsers, lines.join('\n') + '\n');
    // bad text: far too short for the held-out splits, fails the same way on every attempt
    writeFileSync(join(dir, 'poison.txt'), 'the whale. '.repeat(40));
    writeFileSync(
      withPoison,
      [...lines.slice(0, 3), JSON.stringify({ name: 'poison', text: 'poison.txt', family: 'bad' }), ...lines.slice(3)].join('\n') + '\n',
    );
    [redis, pg] = await Promise.all([RedisServer.start(), PostgresServer.start()]);
    store = await FleetStore.open(pg.url);
  }, 180_000);

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await store?.close();
    await Promise.all([redis?.stop(), pg?.destroy()]);
    rmSync(dir, { recursive: true, force: true });
  }, 480_000);

  it('registers the run (criteria hashed) before any job; schema versioned; bad --users refused in one line', async () => {
    expect(await store.schemaVersion()).toBe(SCHEMA_VERSION);
    const r = enqueue('faults', withPoison, '--attempts', '2');
    expect(r).toEqual({ run: 'faults', users: 6, enqueued: 6, skippedDone: 0, registered: true });
    const rec = (await store.getRun('faults'))!;
    expect(rec.usersTotal).toBe(6);
    expect(rec.registered.criteria.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(rec.registered.users).toEqual([]);
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, '{"name": "x", "text": "x.txt"}\n{"name": "x y", "text": "y.txt"}\n');
    const b = cli('fleet', 'run', '--redis', redis.url, '--pg', pg.url, '--users', bad, '--model', modelPath);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/^ternorm: --users .*bad\.jsonl line 2: user name "x y" must be .*\n$/);
  });

  it('a worker killed with SIGKILL mid-user: another finishes that user, one row; a poison user fails after its attempts with its reason', async () => {
    const a = worker();
    await until('worker A to start a user', () => /faults\/(\S+): started/.test(a.log()));
    const victim = /faults\/(\S+): started/.exec(a.log())![1]!;
    a.proc.kill('SIGKILL');
    await a.exited;
    const b = worker();
    const c = worker();
    await settled('faults', 6);
    const got = await rows('faults');
    expect(got.map((r) => r.user)).toEqual([...GOOD].sort());
    // the killed worker wrote nothing; the user it held was finished by another
    expect(got.every((r) => r.worker !== a.name)).toBe(true);
    if (victim !== 'poison') expect([b.name, c.name]).toContain(got.find((r) => r.user === victim)!.worker);
    const failures = await store.failures('faults');
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatchObject({ user: 'poison', attempts: 2 });
    expect(failures[0]!.reason).toMatch(/^user "poison": .*(tokens|too short|bytes)/);
    const s = cli('fleet', 'status', '--redis', redis.url, '--pg', pg.url, '--run', 'faults', '--json');
    expect(s.code, s.stderr).toBe(0);
    const st = JSON.parse(s.stdout);
    expect(st).toMatchObject({ users: 6, done: 5, failed: 1, running: 0, waiting: 0, etaSeconds: 0 });
    expect(st.usersPerMinute).toBeGreaterThan(0);
    expect(st.failures[0].user).toBe('poison');
    b.proc.kill('SIGTERM');
    c.proc.kill('SIGTERM');
    expect(await b.exited).toBe(0);
    expect(await c.exited).toBe(0);
  }, 480_000);

  it('Redis killed and restarted mid-run: the run completes', async () => {
    enqueue('redis-restart', goodUsers);
    const w = worker('--until-empty');
    await until('a first row', async () => (await rows('redis-restart')).length >= 1);
    await redis.kill();
    await new Promise((r) => setTimeout(r, 1500));
    await redis.start();
    await settled('redis-restart', 5);
    expect((await rows('redis-restart')).map((r) => r.user)).toEqual([...GOOD].sort());
    expect(await store.failures('redis-restart')).toEqual([]);
    expect(await w.exited).toBe(0);
  }, 480_000);

  it('PostgreSQL down for a while: the workers wait and retry, nothing is lost', async () => {
    enqueue('pg-down', goodUsers);
    const w = worker('--until-empty');
    await until('a user started', () => /pg-down\/\S+: started/.test(w.log()));
    await pg.stop();
    await new Promise((r) => setTimeout(r, 4000));
    await pg.start();
    await settled('pg-down', 5);
    expect(await w.exited).toBe(0);
    expect(w.log()).toMatch(/PostgreSQL unavailable .*; retrying in/);
    expect((await rows('pg-down')).map((r) => r.user)).toEqual([...GOOD].sort());
    expect(await store.failures('pg-down')).toEqual([]);
  }, 480_000);

  it('a worker killed while it trains the generic adapter: another worker trains it, one is stored, every user is scored under it', async () => {
    // more steps than the other runs (later flags win) so the generic training lasts long enough to be killed in
    enqueue('generic-kill', goodUsers, '--max-steps', String(GENERIC_KILL_STEPS), '--margin-users', '0');
    const a = worker();
    await until('worker A to train the generic adapter', () => /generic-kill: generic adapter: training/.test(a.log()));
    a.proc.kill('SIGKILL');
    await a.exited;
    expect(await store.getGeneric('generic-kill')).toBeNull();
    const b = worker('--until-empty');
    const c = worker('--until-empty');
    await settled('generic-kill', 5);
    expect(await b.exited).toBe(0);
    expect(await c.exited).toBe(0);
    const g = (await store.getGeneric('generic-kill'))!;
    expect([b.name, c.name]).toContain(g.worker);
    expect(g.pool.users.map((u) => u.user)).toEqual(GOOD);
    expect(g.pool.skipped).toEqual([]);
    // trained once after the kill: exactly one of the survivors logged the training
    expect([b, c].filter((w) => /generic-kill: generic adapter: training/.test(w.log()))).toHaveLength(1);
    const got = await store.results('generic-kill');
    expect(got.map((r) => r.user).sort()).toEqual([...GOOD].sort());
    const sha = createHash('sha256').update(new Uint8Array(g.gains.buffer)).digest('hex');
    for (const r of got) expect(r.generic!.gainsSha256).toBe(sha);
    expect(await store.failures('generic-kill')).toEqual([]);
  }, 480_000);

  it('a worker killed mid-margin: another worker finishes that noise margin, one row', async () => {
    enqueue('margin-kill', goodUsers, '--margin-users', '1');
    const a = worker();
    await until('worker A to start the noise margin', () => /margin-kill\/\S+\/margin: started/.test(a.log()));
    const victim = /margin-kill\/(\S+)\/margin: started/.exec(a.log())![1]!;
    a.proc.kill('SIGKILL');
    await a.exited;
    expect(await store.margins('margin-kill')).toEqual([]);
    const b = worker('--until-empty');
    expect(await b.exited).toBe(0);
    const m = await store.margins('margin-kill');
    expect(m.map((x) => [x.user, x.worker])).toEqual([[victim, b.name]]);
    expect(b.log()).toMatch(new RegExp(`margin-kill/${victim}/margin: done`));
  }, 480_000);

  it('a rerun queues only the users not done; rerunning with other options is refused', async () => {
    expect(enqueue('pg-down', goodUsers)).toEqual({ run: 'pg-down', users: 5, enqueued: 0, skippedDone: 5, registered: false });
    const other = fleetRun('pg-down', goodUsers, '--max-steps', '5');
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/run "pg-down" exists with other options/);
  });

  it('the report from SQL holds the very results `ternorm bet` computes for the same users, plus the tiers over users', async () => {
    const out = join(dir, 'report');
    const r = cli('fleet', 'report', '--pg', pg.url, '--run', 'pg-down', '--out', out, '--fleet-users', '1000', '--json');
    expect(r.code, r.stderr).toBe(0);
    const fleet = readResults(join(out, 'results.json'));
    expect(fleet.status).toBe('complete');
    const bet = await runBet({
      modelPath,
      users: GOOD.map((u) => ({ name: u, source: { kind: 'file', path: join(dir, `${u}.txt`) } })),
      out: join(dir, 'bet.json'),
      seed: 3,
      seeds: 1,
      threads: 1,
      adapterRun: { maxSteps: 12 },
      encode: { calibrationTokens: 256 },
      bootstrap: { resamples: 200 },
      personal: true,
      noise: { seeds: 1 },
    });
    expect(fleet.users).toEqual(bet.users.map(({ noise: _noise, ...u }) => u));
    expect(fleet.verdicts).toEqual(bet.verdicts);
    expect(fleet.policy).toEqual(bet.policy);
    expect(fleet.criteria.sha256).toBe(bet.criteria.sha256);
    const md = readFileSync(join(out, 'report.md'), 'utf8');
    expect(md).toContain('## Tiers over users');
    expect(md).toContain('Fleet of 1000 users');
    const dist = JSON.parse(readFileSync(join(out, 'distribution.json'), 'utf8')) as FleetDistribution;
    expect(dist.groups.map((g) => g.family)).toEqual(['all', 'code', 'mixed', 'sea']);
    // every scheme's tiers count every user once, and the interval holds the point share
    for (const g of dist.groups) {
      for (const sh of Object.values(g.schemes)) {
        expect(TIERS.reduce((n, t) => n + sh.tiers[t].count, 0)).toBe(g.users);
        for (const x of [...TIERS.map((t) => sh.tiers[t]), sh.personalLost!]) {
          expect(x.ci.low).toBeLessThanOrEqual(x.fraction + 1e-12);
          expect(x.ci.high).toBeGreaterThanOrEqual(x.fraction - 1e-12);
        }
        expect(sh.personalLost!.users).toBe(g.users);
      }
    }
    // the generic adapter: the same pool (every text whole, under the bound), recipe and seed as
    // `bet --personal`, so the same numbers, and the same PERSONAL-LOST counts
    const m = bet.personal!.measured;
    const sqlRows = await store.results('pg-down');
    for (const r of sqlRows) {
      const k = m.users.indexOf(r.user);
      expect(r.generic!.validation.meanNll).toBe(m.genericMeanNll.validation[k]);
      expect(r.generic!.test.meanNll).toBe(m.genericMeanNll.test[k]);
      expect(r.generic!.validation.ci).toEqual(m.ci.genericOverOwn.validation[k]);
      expect(r.generic!.test.ci).toEqual(m.ci.genericOverOwn.test[k]);
    }
    expect((await store.getGeneric('pg-down'))!.trainBytes).toBe(m.generic.trainBytes);
    for (const lost of bet.personal!.analysis.personalLost!) {
      expect(dist.groups[0]!.schemes[lost.scheme]!.personalLost!.count).toBe(lost.validation.count);
      expect(dist.groups[0]!.schemes[lost.scheme]!.personalLostTest).toBe(lost.test.count);
    }
    // the noise margins: the 2 users int8 per tensor loses most, each sweep the bet's --noise one
    const ratio = (u: (typeof fleet.users)[number]): number =>
      u.test.conditions.int8_per_tensor!.ppl.value / u.test.conditions.raw_fp32!.ppl.value;
    const worst = [...fleet.users].sort((a, b) => ratio(b) - ratio(a) || (a.user < b.user ? -1 : 1)).slice(0, 2);
    const margins = await store.margins('pg-down');
    expect(margins.map((x) => x.user)).toEqual(worst.map((u) => u.user).sort());
    expect(dist.betLosers.users.map((l) => l.user).slice(0, 2)).toEqual(worst.map((u) => u.user));
    for (const l of dist.betLosers.users) {
      const b = bet.users.find((u) => u.user === l.user)!;
      if (!worst.some((u) => u.user === l.user)) {
        expect(l.margin).toBeNull();
        continue;
      }
      expect(margins.find((x) => x.user === l.user)!.measured).toEqual(b.noise!.measured);
      for (const d of ['uniform', 'gaussian'] as const) {
        const c = b.noise!.analysis.curves[d];
        expect(l.margin!.curves[d]).toEqual({
          strict: { spread: c.margin.strict, where: c.crossings.strict.map((x) => x.where) },
          noAdapter: { spread: c.margin.noAdapter, where: c.crossings.noAdapter.map((x) => x.where) },
        });
      }
    }
    expect(md).toContain('## Minimum safe bytes');
    expect(md).toContain('PERSONAL-LOST');
    expect(dist.safeBytes.users + dist.safeBytes.none).toBe(5);
    expect(dist.safeBytes.histogram.reduce((n, h) => n + h.users, 0)).toBe(dist.safeBytes.users);
    expect(readFileSync(join(out, 'report.svg'), 'utf8')).toMatch(/<svg[\s>]/);
    expect(readFileSync(join(out, 'min-safe-bytes.svg'), 'utf8')).toMatch(/<svg[\s>]/);
    // regenerated from the same rows: the same bytes, file by file
    const again = join(dir, 'report-again');
    const r2 = cli('fleet', 'report', '--pg', pg.url, '--run', 'pg-down', '--out', again, '--fleet-users', '1000');
    expect(r2.code, r2.stderr).toBe(0);
    const files = readdirSync(out).sort();
    expect(readdirSync(again).sort()).toEqual(files);
    for (const f of files) expect(readFileSync(join(again, f)).equals(readFileSync(join(out, f))), f).toBe(true);
  });

  it('a run stored without a gradient precision (registered before int8 was the default) stays an f32 run: rerun with --grad-quant f32, not without', async () => {
    // fleet run stores the precision explicitly: a later default cannot change what the run trains with
    const rec = (await store.getRun('pg-down'))!;
    expect((rec.options.adapterRun as { gradQuant?: string }).gradQuant).toBe('int8');
    expect(storedRunOptions(rec.options).adapterRun!.gradQuant).toBe('int8');
    // the stored options as a run registered before int8 was the default has them (it trained in f32)
    await store.withRetry('test: an f32-era run', (c) =>
      c.query(`UPDATE fleet_runs SET options = options #- '{adapterRun,gradQuant}' WHERE id = 'pg-down'`),
    );
    const old = (await store.getRun('pg-down'))!;
    expect('gradQuant' in (old.options.adapterRun as object)).toBe(false);
    expect(storedRunOptions(old.options).adapterRun!.gradQuant).toBe('f32');
    expect(enqueue('pg-down', goodUsers, '--grad-quant', 'f32')).toEqual({
      run: 'pg-down',
      users: 5,
      enqueued: 0,
      skippedDone: 5,
      registered: false,
    });
    const now = fleetRun('pg-down', goodUsers, ...SETTINGS, ...STEPS);
    expect(now.code).toBe(1);
    expect(now.stderr).toMatch(/run "pg-down" exists with other options/);
  });
});
