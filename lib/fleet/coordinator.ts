// The fleet's coordinator commands: register a run and enqueue its users (`fleet run`), its
// progress (`fleet status`) and its report from SQL (`fleet report`).

import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

import type { Queue } from 'bullmq';

import { canonicalJson } from '../bet/criteria.js';
import { coreLimits } from '../model/limits.js';
import { writePlot } from '../bet/plot.js';
import { openBet } from '../bet/protocol.js';
import { renderReport } from '../bet/report.js';
import { buildHeader, ResultsWriter, type AdapterCompressResults } from '../bet/results.js';
import { writeFileAtomic } from '../util/files.js';
import { distributionMarkdown, fleetDistribution, writeSafeBytesSvg, type FleetDistribution } from './distribution.js';
import { DEFAULT_ATTEMPTS, jobId, jobOptions, RUN_ID_PATTERN, type FleetJob } from './queue.js';
import { DEFAULT_FLEET_STEPS, fleetSteps, storedRunOptions, type FleetSteps } from './run-steps.js';
import type { FleetStore, RunRecord } from './store.js';
import { readFleetUsers } from './users.js';
import type { RunOptions } from './worker.js';

/** A new run id: UTC time and 4 random bytes, e.g. run-20261202T133000Z-1a2b3c4d. */
export function newRunId(now = new Date()): string {
  return `run-${now.toISOString().replace(/[-:]/g, '').replace(/\.\d+/, '')}-${randomBytes(4).toString('hex')}`;
}

export interface EnqueueResult {
  run: string;
  users: number;
  enqueued: number;
  skippedDone: number;
  /** True if the run was registered by this call; false for a rerun of an existing run. */
  registered: boolean;
}

/**
 * Registers the run in PostgreSQL (its criteria hashed and time-stamped, its options) before any
 * job exists, then enqueues one job per user not done yet. Rerunning the same run id with the same
 * options enqueues only the users without a row (the failed ones again, with fresh attempts).
 */
export async function enqueueRun(
  o: {
    store: FleetStore;
    queue: Queue<FleetJob>;
    usersSpec: string;
    options: RunOptions;
    /** The run-level steps (generic adapter, noise margins); default DEFAULT_FLEET_STEPS. */
    steps?: Partial<FleetSteps>;
    run?: string;
    attempts?: number;
  },
  now: () => Date = () => new Date(),
): Promise<EnqueueResult> {
  const run = o.run ?? newRunId(now());
  if (!RUN_ID_PATTERN.test(run))
    throw new Error(`--run ${run}: a run id is 1-64 letters, digits, '_', '.' or '-' (starting with a letter or digit)`);
  // workers read the users (the generic adapter's pool, the margin jobs) from the spec: an absolute path
  const usersSpec = o.usersSpec.startsWith('fixture:') ? o.usersSpec : resolve(o.usersSpec);
  const users = readFleetUsers(usersSpec);
  const options: RunOptions = {
    ...o.options,
    modelPath: resolve(o.options.modelPath),
    ...(o.options.criteriaPath === undefined ? {} : { criteriaPath: resolve(o.options.criteriaPath) }),
    // stored explicitly, so the run keeps its precision when the default changes (storedRunOptions)
    adapterRun: { ...o.options.adapterRun, gradQuant: o.options.adapterRun?.gradQuant ?? coreLimits().gradQuant.adapterDefault },
  };
  // the pipeline checks the options, loads the model and the criteria: the header workers must match
  const header = openBet({ ...options, users: users.map((u) => u.user) }).header;
  const registered = buildHeader(header, now().toISOString());
  const stored = { ...options, fleet: { ...DEFAULT_FLEET_STEPS, ...o.steps } };
  const fresh = await o.store.registerRun({
    id: run,
    usersSpec,
    usersTotal: users.length,
    options: stored,
    registered,
  });
  if (!fresh) {
    const old = (await o.store.getRun(run))!;
    const same = (a: unknown, b: unknown): boolean =>
      canonicalJson(JSON.parse(JSON.stringify(a))) === canonicalJson(JSON.parse(JSON.stringify(b)));
    if (old.registered.criteria.sha256 !== registered.criteria.sha256)
      throw new Error(`run "${run}" exists with other criteria; choose another --run`);
    if (
      !same({ ...old.options, ...storedRunOptions(old.options) }, stored) ||
      old.usersSpec !== usersSpec ||
      old.usersTotal !== users.length
    )
      throw new Error(`run "${run}" exists with other options or users; rerun it with the same ones or choose another --run`);
    if (!same(old.registered.baseModel, registered.baseModel)) throw new Error(`run "${run}" exists with another base model`);
  }
  const done = await o.store.doneUsers(run);
  const todo = users.filter((u) => !done.has(u.user.name));
  // a failed job kept in Redis would make the same id a no-op: remove it so the user runs again
  const failed = new Set((await o.store.failures(run)).map((f) => f.user));
  for (const u of todo) {
    if (!failed.has(u.user.name)) continue;
    const j = await o.queue.getJob(jobId(run, u.user.name));
    if (j !== undefined && (await j.getState()) === 'failed') await j.remove();
  }
  await o.store.clearFailures(
    run,
    todo.map((u) => u.user.name),
  );
  const attempts = o.attempts ?? DEFAULT_ATTEMPTS;
  for (let i = 0; i < todo.length; i += 1000) {
    await o.queue.addBulk(
      todo.slice(i, i + 1000).map((u) => ({
        name: 'user',
        data: { run, user: u.user, family: u.family, ordinal: u.ordinal },
        opts: jobOptions(run, u.user.name, attempts),
      })),
    );
  }
  // every user settled already (a rerun): the margins missing are queued again
  await enqueueMargins(o.store, o.queue, (await o.store.getRun(run))!, { retryFailed: true });
  return { run, users: users.length, enqueued: todo.length, skippedDone: users.length - todo.length, registered: fresh };
}

/**
 * Once every user of the run is settled (done or failed), queues one noise-margin job per (run,
 * user, 'margin') for the `marginUsers` done users with the largest test ppl ratio of the bet's
 * encoding to the reference that have no margin row yet. Idempotent: the job ids make a second call
 * a no-op while the jobs exist, and a margin row ends the user's need. `retryFailed` (a rerun of
 * `fleet run`) removes a margin job kept failed so it runs again. Returns the jobs asked for.
 */
export async function enqueueMargins(
  store: FleetStore,
  queue: Queue<FleetJob>,
  rec: RunRecord,
  o: { retryFailed?: boolean } = {},
): Promise<number> {
  const steps = fleetSteps(rec.options);
  if (steps.marginUsers === 0) return 0;
  const p = await store.progress(rec.id, 1);
  if (p.done + p.failed < rec.usersTotal) return 0;
  const have = new Set((await store.margins(rec.id)).map((m) => m.user));
  const todo = (await store.worstBetUsers(rec.id, steps.marginUsers)).filter((w) => !have.has(w.user));
  if (todo.length === 0) return 0;
  const users = new Map(readFleetUsers(rec.usersSpec).map((u) => [u.user.name, u.user]));
  const gone = todo.find((w) => !users.has(w.user));
  if (gone !== undefined)
    throw new Error(`run "${rec.id}": user "${gone.user}" is no longer in ${rec.usersSpec}; restore the run's users file`);
  if (o.retryFailed === true) {
    for (const w of todo) {
      const j = await queue.getJob(jobId(rec.id, w.user, 'margin'));
      if (j !== undefined && (await j.getState()) === 'failed') await j.remove();
    }
  }
  await queue.addBulk(
    todo.map((w) => ({
      name: 'margin',
      data: { run: rec.id, user: users.get(w.user)!, family: w.family, ordinal: w.ordinal, kind: 'margin' as const },
      opts: jobOptions(rec.id, w.user, DEFAULT_ATTEMPTS, 'margin'),
    })),
  );
  return todo.length;
}

export interface RunStatus {
  run: string;
  users: number;
  done: number;
  failed: number;
  running: number;
  waiting: number;
  /** Users per minute over the last `windowSeconds` (0 with none done there). */
  usersPerMinute: number;
  windowSeconds: number;
  etaSeconds: number | null;
  cpuSecondsPerUser: number | null;
  failures: { user: string; attempts: number; reason: string }[];
  /** The run's generic adapter: stored (by which worker, in how many seconds) or not yet. */
  generic: { worker: string; seconds: number; trainBytes: number } | null;
  /** Noise-margin follow-ups: how many the run asks for, stored, running now. */
  margins: { users: number; done: number; running: number };
}

export async function runStatus(store: FleetStore, queue: Queue<FleetJob>, run: string, windowSeconds = 600): Promise<RunStatus> {
  const rec = await store.getRun(run);
  if (rec === null) throw new Error(`no run "${run}" in PostgreSQL`);
  const p = await store.progress(run, windowSeconds);
  const failures = await store.failures(run);
  const prefix = `${run}/`;
  const active = (await queue.getActive()).filter((j) => j.id?.startsWith(prefix) === true);
  const running = active.filter((j) => j.data.kind !== 'margin').length;
  const generic = await store.getGeneric(run);
  const margins = {
    users: Math.min(fleetSteps(rec.options).marginUsers, p.done),
    done: (await store.margins(run)).length,
    running: active.length - running,
  };
  // over the window, or since the first row if the run is younger than the window
  const span = p.firstFinished === null ? 0 : Math.min(windowSeconds, (Date.now() - p.firstFinished.getTime()) / 1000);
  const usersPerMinute = span > 0 ? (p.recent / span) * 60 : 0;
  const left = rec.usersTotal - p.done - p.failed;
  return {
    run,
    users: rec.usersTotal,
    done: p.done,
    failed: p.failed,
    running,
    waiting: Math.max(0, left - running),
    usersPerMinute,
    windowSeconds,
    etaSeconds: left === 0 ? 0 : usersPerMinute > 0 ? (left / usersPerMinute) * 60 : null,
    cpuSecondsPerUser: p.done > 0 ? p.cpuSeconds / p.done : null,
    failures: failures.map((f) => ({ user: f.user, attempts: f.attempts, reason: f.reason })),
    generic: generic === null ? null : { worker: generic.worker, seconds: generic.seconds, trainBytes: generic.trainBytes },
    margins,
  };
}

export interface FleetReport {
  results: AdapterCompressResults;
  distribution: FleetDistribution;
  paths: { results: string; report: string; plot: string; distribution: string; safeBytes: string };
}

/**
 * The run's report from SQL: the bet's results file (the registered header, every user's row, the
 * verdicts and policy recomputed over them), its Markdown report with the fleet totals of the real
 * policy mix and what the fleet says (distribution.ts: tiers and PERSONAL-LOST over users with
 * intervals, minimum safe bytes, the bet's worst users and their noise margins), the plot, the
 * minimum safe bytes histogram and the distribution as JSON. The same rows give the same bytes: the
 * results' update time is the last row's.
 */
export async function fleetReport(store: FleetStore, run: string, outDir: string, fleetUsers: number): Promise<FleetReport> {
  const rec = await store.getRun(run);
  if (rec === null) throw new Error(`no run "${run}" in PostgreSQL`);
  const rows = await store.results(run);
  if (rows.length === 0) throw new Error(`run "${run}" has no user done yet; nothing to report`);
  const failures = await store.failures(run);
  const status =
    rows.length === rec.usersTotal
      ? 'complete'
      : failures.length > 0 && rows.length + failures.length === rec.usersTotal
        ? 'failed'
        : 'running';
  const error =
    failures.length === 0
      ? null
      : `${failures.length} user(s) failed: ${failures.map((f) => `${f.user} after ${f.attempts} attempt(s): ${f.reason}`).join('; ')}`;
  mkdirSync(outDir, { recursive: true });
  const paths = {
    results: join(outDir, 'results.json'),
    report: join(outDir, 'report.md'),
    plot: join(outDir, 'report.svg'),
    distribution: join(outDir, 'distribution.json'),
    safeBytes: join(outDir, 'min-safe-bytes.svg'),
  };
  const last = new Date(Math.max(...rows.map((r) => r.finishedAt.getTime())));
  const results = ResultsWriter.assemble(
    paths.results,
    rec.registered,
    rows.map((r) => r.result),
    { status, error: status === 'failed' ? error : null, now: () => last },
  );
  const steps = fleetSteps(rec.options);
  const generic = await store.getGeneric(run);
  const margins = await store.margins(run);
  const distribution = fleetDistribution(results, Object.fromEntries(rows.map((r) => [r.user, r.family])), {
    generic: Object.fromEntries(rows.map((r) => [r.user, r.generic])),
    margins: Object.fromEntries(margins.map((m) => [m.user, m.measured])),
    worst: Math.max(steps.marginUsers, 10),
  });
  const pool =
    generic === null
      ? 'no generic adapter stored'
      : `generic adapter trained on ${generic.pool.users.length} users' training texts pooled (${generic.trainBytes} bytes, at most ${generic.pool.maxBytes}` +
        `${generic.pool.skipped.length > 0 ? `; left out: ${generic.pool.skipped.map((s) => s.user).join(', ')}` : ''})`;
  const head =
    `Fleet run ${run}: ${rec.usersTotal} users (${rec.usersSpec}), ${rows.length} done, ${failures.length} failed; ${pool}; ` +
    `noise margins of ${margins.length} of the ${Math.min(steps.marginUsers, rows.length)} users the bet's encoding loses most (noise patterns per point: ${steps.noiseSeeds}).\n\n`;
  writeFileAtomic(
    paths.report,
    head + renderReport(results, { fleetUsers }) + '\n' + distributionMarkdown(distribution, 'min-safe-bytes.svg'),
  );
  writePlot(paths.plot, results);
  writeSafeBytesSvg(paths.safeBytes, distribution);
  writeFileAtomic(paths.distribution, JSON.stringify({ run, ...distribution }, null, 2) + '\n');
  return { results, distribution, paths };
}
