// npm run bench:train-step: CPU-seconds of one adapter-training step on the shipped base (the
// bet's recipe: 8 x 128 tokens of a default user's training text, gains from 1.0), with the
// gradient through the ternary linears in f32 (--grad-quant f32) and in int8 (the default).
// Repetitions are interleaved (f32, int8, f32, ...), each a fresh trainer running `steps` steps on
// the same batches; a step's CPU time is process.cpuUsage() around it (the trainer runs on the
// calling thread at --threads 1). Reports the median per mode, their ratio and the load average
// at the start and end; writes bench/results/train-step.json atomically.
//
//   node dist/bench/train-step.js [--reps 5] [--steps 10] [--threads 1] [--user novelist] [--only f32|int8] [--out FILE]
//
// --only runs one mode (for a profiler; nothing is written).
import { loadavg } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { getFixtures, USER_NAMES, type UserName } from '../lib/data/fixtures.js';
import { cpuInfo } from '../lib/kernels.js';
import { dataSeed, SplitMix64, WindowSampler } from '../lib/model/data.js';
import { checkGradQuant, coreLimits, type GradQuant } from '../lib/model/limits.js';
import { Model, Trainer } from '../lib/model/model.js';
import { defaultAdapterRun } from '../lib/model/train-adapter.js';
import { gitOutput, median, writeAtomic } from './report.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SCHEMA = 'ternorm.bench.train-step/1';

function positive(raw: string | undefined, def: number, flag: string): number {
  if (raw === undefined) return def;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`--${flag} must be a positive integer, got '${raw}'`);
  return n;
}

const { values: v } = parseArgs({
  options: {
    reps: { type: 'string' },
    steps: { type: 'string' },
    threads: { type: 'string' },
    user: { type: 'string' },
    out: { type: 'string' },
    only: { type: 'string' },
    help: { type: 'boolean' },
  },
});
if (v.help) {
  process.stdout.write(
    'node dist/bench/train-step.js [--reps 5] [--steps 10] [--threads 1] [--user novelist] [--only f32|int8] [--out FILE]\n',
  );
  process.exit(0);
}
const reps = positive(v.reps, 5, 'reps');
const steps = positive(v.steps, 10, 'steps');
const threads = positive(v.threads, 1, 'threads');
const user = (v.user ?? 'novelist') as UserName;
if (!USER_NAMES.includes(user)) throw new RangeError(`--user must be one of ${USER_NAMES.join(', ')}, got '${user}'`);
const out = v.out ?? join(REPO, 'bench/results/train-step.json');

const modelPath = join(REPO, 'models/base.tnm');
const model = Model.load(modelPath);
const run = { ...defaultAdapterRun(), seq: Math.min(defaultAdapterRun().seq, model.config.context) };
const tokens = model.tokenizer!.encode(getFixtures().read(user, 'train'));
const sampler = new WindowSampler(tokens, run.seq, new SplitMix64(dataSeed(0)));
const batches = Array.from({ length: steps }, () => sampler.nextBatch(run.batch));
const only = v.only === undefined ? undefined : checkGradQuant(v.only, '--only');
const modes = only === undefined ? coreLimits().gradQuant.names : [only];

const loadStart = loadavg();
const samples: Record<GradQuant, number[]> = { f32: [], int8: [] };
const losses: Record<GradQuant, number[]> = { f32: [], int8: [] };
for (let r = 0; r < reps; ++r)
  for (const gq of modes) {
    const trainer = new Trainer(model, {
      mode: 'adapter',
      batch: run.batch,
      seq: run.seq,
      lr: run.lr,
      minLr: run.minLr,
      warmup: run.warmup,
      totalSteps: run.maxSteps,
      weightDecay: run.weightDecay,
      gradClip: run.gradClip,
      gradQuant: gq,
    });
    for (const b of batches) {
      const c0 = process.cpuUsage();
      const st = trainer.step(b, run.batch, threads);
      const c = process.cpuUsage(c0);
      samples[gq].push((c.user + c.system) / 1e6);
      if (r === 0) losses[gq].push(st.loss);
    }
    process.stderr.write(`rep ${r + 1}/${reps} ${gq}: median ${median(samples[gq]).toFixed(4)} CPU-s/step\n`);
  }
const loadEnd = loadavg();
if (only !== undefined) process.exit(0);

const med = { f32: median(samples.f32), int8: median(samples.int8) };
const result = {
  schema: SCHEMA,
  date: new Date().toISOString(),
  commit: gitOutput(REPO, ['rev-parse', 'HEAD']),
  cpu: cpuInfo(),
  base_model: relative(REPO, modelPath),
  user,
  batch: run.batch,
  seq: run.seq,
  threads,
  reps,
  steps_per_rep: steps,
  load_average_start: loadStart,
  load_average_end: loadEnd,
  cpu_s_per_step_median: med,
  int8_over_f32: med.int8 / med.f32,
  // the first repetition's losses (before each update): the two runs part as the gains do
  losses_first_rep: losses,
  samples,
};
writeAtomic(out, `${JSON.stringify(result, null, 2)}\n`);
process.stdout.write(
  `CPU-s per step (median of ${reps} x ${steps}, ${threads} thread${threads > 1 ? 's' : ''}): f32 ${med.f32.toFixed(4)}, ` +
    `int8 ${med.int8.toFixed(4)} (x${(med.int8 / med.f32).toFixed(3)}); load ${loadStart.map((x) => x.toFixed(2)).join(' ')} -> ` +
    `${loadEnd.map((x) => x.toFixed(2)).join(' ')}\nwrote ${relative(REPO, out)}\n`,
);
