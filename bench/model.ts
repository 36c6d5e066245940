// npm run bench:model: the model engine's speed and memory, measured in one
// run so every ratio compares numbers taken minutes apart on the same machine.
//
//   - training tokens/s, Trainer mode 'ternary' (ternary-aware) vs 'fp32'
//   - evaluation tokens/s, evaluate() with precision 'ternary' vs 'fp32' on the
//     same model and tokens, judged against the issue's targets
//   - adapter training seconds per user on the shipped base model
//   - peak resident memory of each of these parts
//
// at the default config and at a larger one. Each part runs in its own child
// process (this script with --part), so its peak RSS is its own; the parent
// collects the children's JSON, prints the table and writes
// bench/results/model.json atomically (bench/results/model-partial.json when
// any option changes what is measured).
//
//   node dist/bench/model.js [--help] [options]
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { getFixtures, USER_NAMES, type UserName } from '../lib/data/fixtures.js';
import { cpuInfo } from '../lib/kernels.js';
import { SplitMix64 } from '../lib/model/data.js';
import { defaultModelConfig, evaluate, Model, Trainer, type ModelConfig } from '../lib/model/model.js';
import { defaultAdapterRun, trainAdapter } from '../lib/model/train-adapter.js';
import { fmtBytes, fmtNum, fmtRatio, gitOutput, median, table, writeAtomic, type Target, type TargetPoint } from './report.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SCRIPT = fileURLToPath(import.meta.url);
const SCHEMA = 'ternorm.bench.model/1';
const PART_SCHEMA = 'ternorm.bench.model.part/1';

const CONFIGS = {
  default: { ...defaultModelConfig() },
  large: { ...defaultModelConfig(), dModel: 1024, nLayers: 8, nHeads: 16, nKvHeads: 16, dFf: 2816 },
} satisfies Record<string, ModelConfig>;
type ConfigName = keyof typeof CONFIGS;
const CONFIG_NAMES = Object.keys(CONFIGS) as ConfigName[];

// The issue's targets: ternary evaluation speed-up over fp32 weights, and the adapter budget.
const TARGET_EVAL_RATIO: Record<ConfigName, number> = { default: 2.5, large: 4 };
const ADAPTER_BUDGET_S = 30;

const PART_KINDS = ['train', 'eval', 'adapters'] as const;
type PartKind = (typeof PART_KINDS)[number];

const SEQ = 256;
const MODEL_SEED = 1;
const TOKEN_SEED = 0x7e5701;

interface Options {
  configs: ConfigName[];
  parts: PartKind[];
  threads: number[];
  /** Interleaved repetitions of each comparison (training and evaluation). */
  reps: number;
  /** Untimed steps per mode and thread count before the repetitions. */
  trainWarmup: number;
  /** Timed steps per training sample. */
  trainSteps: Record<ConfigName, number>;
  trainBatch: Record<ConfigName, number>;
  evalTokens: Record<ConfigName, number>;
  baseModel: string;
  adapterThreads: number;
}

function defaultOptions(): Options {
  const hw = availableParallelism();
  return {
    configs: [...CONFIG_NAMES],
    parts: [...PART_KINDS],
    threads: [...new Set([1, hw])],
    reps: 5,
    trainWarmup: 1,
    // A large step at batch 2 costs seconds on one core; 1 step per sample keeps the run in minutes.
    trainSteps: { default: 3, large: 1 },
    trainBatch: { default: 8, large: 2 },
    // The large fp32 evaluation scores ~200 tokens/s on one core: 2 k tokens is ~10 s a sample.
    evalTokens: { default: 8192, large: 2048 },
    baseModel: join(REPO, 'models', 'base.tnm'),
    adapterThreads: Math.min(2, hw),
  };
}

class BenchError extends Error {}

function fail(msg: string): never {
  throw new BenchError(msg);
}

const USAGE = `node dist/bench/model.js [options]
  --configs LIST         configs to measure: default,large (default both)
  --parts LIST           train,eval,adapters (default all)
  --threads LIST         thread counts (default 1 and this machine's ${availableParallelism()})
  --reps N               interleaved repetitions per comparison (default 5)
  --train-warmup N       untimed training steps per mode and thread count (default 1)
  --train-steps N        timed steps per training sample, every config (default 3 default, 1 large)
  --batch N              training batch (sequences of 256 tokens), every config (default 8 default, 2 large)
  --eval-tokens N        tokens scored per evaluation sample, every config (default 8192 default, 2048 large)
  --base-model PATH      base model for adapter training (default models/base.tnm)
  --adapter-threads N    threads for adapter training (default ${Math.min(2, availableParallelism())})
  --out FILE             results JSON (default bench/results/model.json; model-partial.json when
                         any option above changes what is measured)
Any option but --out and --base-model makes the run a partial run.
`;

interface Args {
  options: Options;
  changed: string[];
  out?: string;
  help: boolean;
  /** Child mode: run one part and print its JSON document. */
  part?: { kind: PartKind; config: ConfigName | null };
}

function int(raw: string, flag: string, min: number): number {
  const n = Number(raw);
  if (!/^[0-9]+$/.test(raw) || !Number.isSafeInteger(n) || n < min) fail(`${flag} must be an integer >= ${min}, got '${raw}'`);
  return n;
}

const posInt = (raw: string, flag: string): number => int(raw, flag, 1);

function list<T extends string>(raw: string, flag: string, allowed: readonly T[]): T[] {
  const items = raw.split(',').map((s) => s.trim());
  for (const i of items) if (!allowed.includes(i as T)) fail(`${flag}: unknown '${i}', expected some of ${allowed.join(',')}`);
  return [...new Set(items as T[])];
}

function parseArgs(argv: string[]): Args {
  const o = defaultOptions();
  const args: Args = { options: o, changed: [], help: false };
  const maxThreads = availableParallelism();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) fail(`option ${a} needs a value`);
      return v;
    };
    const perConfig = (n: number): Record<ConfigName, number> => ({ default: n, large: n });
    switch (a) {
      case '--configs':
        o.configs = list(value(), a, CONFIG_NAMES);
        break;
      case '--parts':
        o.parts = list(value(), a, PART_KINDS);
        break;
      case '--threads':
        o.threads = [
          ...new Set(
            value()
              .split(',')
              .map((s) => posInt(s.trim(), a)),
          ),
        ];
        for (const t of o.threads) if (t > maxThreads) fail(`--threads: ${t} is more than this machine's ${maxThreads} hardware threads`);
        break;
      case '--reps':
        o.reps = posInt(value(), a);
        break;
      case '--train-warmup':
        o.trainWarmup = int(value(), a, 0);
        break;
      case '--train-steps':
        o.trainSteps = perConfig(posInt(value(), a));
        break;
      case '--batch':
        o.trainBatch = perConfig(posInt(value(), a));
        break;
      case '--eval-tokens':
        o.evalTokens = perConfig(int(value(), a, 2));
        break;
      case '--adapter-threads':
        o.adapterThreads = posInt(value(), a);
        if (o.adapterThreads > maxThreads) fail(`${a}: more than ${maxThreads} hardware threads`);
        break;
      case '--base-model':
        o.baseModel = resolve(value());
        continue;
      case '--out':
        args.out = resolve(value());
        continue;
      case '--options':
        args.options = JSON.parse(value()) as Options;
        continue;
      case '--part': {
        const [kind, config] = value().split(':');
        if (!PART_KINDS.includes(kind as PartKind)) fail(`--part: unknown part '${kind}'`);
        if (config !== undefined && !CONFIG_NAMES.includes(config as ConfigName)) fail(`--part: unknown config '${config}'`);
        args.part = { kind: kind as PartKind, config: (config as ConfigName | undefined) ?? null };
        continue;
      }
      case '--help':
      case '-h':
        args.help = true;
        continue;
      default:
        fail(`unknown option ${a} (see --help)`);
    }
    args.changed.push(a);
  }
  return args;
}

// ---- measuring (child processes) -------------------------------------------------------------

function progress(msg: string): void {
  process.stderr.write(`  ${msg}\n`);
}

/** Deterministic token ids: speed does not depend on their values, and random ids need no tokenizer. */
function randomTokens(n: number, vocab: number, seed: number): Int32Array {
  const rng = new SplitMix64(seed);
  const t = new Int32Array(n);
  for (let i = 0; i < n; i++) t[i] = rng.below(vocab);
  return t;
}

// Alternate which variant goes first, so a slow drift of the machine's load hits both alike.
function interleaved<T>(rep: number, a: T, b: T): [T, T] {
  return rep % 2 === 0 ? [a, b] : [b, a];
}

interface TrainSample {
  mode: 'ternary' | 'fp32';
  threads: number;
  rep: number;
  steps: number;
  seconds: number;
  tokens_per_s: number;
  last_loss: number;
}

function trainPart(name: ConfigName, o: Options) {
  const config = CONFIGS[name];
  const batch = o.trainBatch[name];
  const steps = o.trainSteps[name];
  // Two models from the same seed, one per mode: fp32 steps leave a model's ternary weights stale.
  const trainers = {
    ternary: new Trainer(Model.create(config, MODEL_SEED), { mode: 'ternary', batch, seq: SEQ }),
    fp32: new Trainer(Model.create(config, MODEL_SEED), { mode: 'fp32', batch, seq: SEQ }),
  };
  const batches = Array.from({ length: 4 }, (_, k) => randomTokens(batch * (SEQ + 1), config.vocab, TOKEN_SEED + k));
  let next = 0;
  const step = (mode: 'ternary' | 'fp32', threads: number): number => {
    const st = trainers[mode].step(batches[next++ % batches.length]!, batch, threads);
    return st.loss;
  };
  const samples: TrainSample[] = [];
  const checks: { name: string; ok: boolean; detail: string }[] = [];
  for (const threads of o.threads) {
    for (const mode of ['ternary', 'fp32'] as const) for (let s = 0; s < o.trainWarmup; s++) step(mode, threads);
    for (let rep = 0; rep < o.reps; rep++) {
      for (const mode of interleaved(rep, 'ternary' as const, 'fp32' as const)) {
        const t0 = performance.now();
        let loss = NaN;
        for (let s = 0; s < steps; s++) loss = step(mode, threads);
        const seconds = (performance.now() - t0) / 1000;
        const tps = (steps * batch * SEQ) / seconds;
        samples.push({ mode, threads, rep, steps, seconds, tokens_per_s: tps, last_loss: loss });
        progress(`train ${name} t${threads} rep ${rep + 1}/${o.reps} ${mode.padEnd(7)} ${fmtNum(tps)} tok/s`);
      }
    }
  }
  const bad = samples.filter((s) => !Number.isFinite(s.last_loss));
  checks.push({
    name: 'finite training loss',
    ok: bad.length === 0,
    detail: bad.length === 0 ? 'every sample' : `${bad.length} samples with a non-finite loss`,
  });
  return {
    config: name,
    model_config: config,
    n_params: trainers.ternary.model.nParams,
    batch,
    seq: SEQ,
    steps_per_sample: steps,
    warmup_steps: o.trainWarmup,
    samples,
    checks,
  };
}

interface EvalSample {
  precision: 'ternary' | 'fp32';
  threads: number;
  rep: number;
  seconds: number;
  tokens_per_s: number;
  mean_nll: number;
  total_nll: number;
}

async function evalPart(name: ConfigName, o: Options) {
  const config = CONFIGS[name];
  // A created model keeps its latent fp32 weights beside the ternary ones, so both precisions run on it.
  const model = Model.create(config, MODEL_SEED);
  const tokens = randomTokens(o.evalTokens[name], config.vocab, TOKEN_SEED);
  // nBytes only scales bits per byte, which this benchmark does not report.
  const run = (precision: 'ternary' | 'fp32', threads: number, t = tokens) =>
    evaluate(model, null, t, { precision, threads, nBytes: t.length - 1 });
  const samples: EvalSample[] = [];
  let shape = { windows: 0, window: 0, stride: 0 };
  for (const threads of o.threads) {
    const warm = tokens.subarray(0, Math.min(tokens.length, 2 * config.context));
    for (const p of ['ternary', 'fp32'] as const) await run(p, threads, warm);
    for (let rep = 0; rep < o.reps; rep++) {
      for (const precision of interleaved(rep, 'ternary' as const, 'fp32' as const)) {
        const t0 = performance.now();
        const r = await run(precision, threads);
        const seconds = (performance.now() - t0) / 1000;
        shape = { windows: r.nWindows, window: r.window, stride: r.stride };
        const tps = r.nll.length / seconds;
        samples.push({ precision, threads, rep, seconds, tokens_per_s: tps, mean_nll: r.meanNll, total_nll: r.totalNll });
        progress(`eval ${name} t${threads} rep ${rep + 1}/${o.reps} ${precision.padEnd(7)} ${fmtNum(tps)} tok/s`);
      }
    }
  }
  // What was timed must be right: evaluation is deterministic and thread-count independent.
  const checks = (['ternary', 'fp32'] as const).map((p) => {
    const nll = new Set(samples.filter((s) => s.precision === p).map((s) => s.total_nll));
    const finite = [...nll].every(Number.isFinite);
    return {
      name: `${p} NLL identical across repetitions and thread counts`,
      ok: nll.size === 1 && finite,
      detail: nll.size === 1 ? `total NLL ${[...nll][0]}` : `${nll.size} different totals`,
    };
  });
  return {
    config: name,
    model_config: config,
    n_params: model.nParams,
    tokens: tokens.length,
    scored_tokens: tokens.length - 1,
    ...shape,
    samples,
    checks,
  };
}

async function adaptersPart(o: Options) {
  const model = Model.load(o.baseModel);
  const fx = getFixtures();
  const users = [];
  for (const user of USER_NAMES) {
    const r = await trainAdapter(model, fx.read(user as UserName, 'train'), {}, {}, o.adapterThreads);
    users.push({
      user,
      seconds: r.seconds,
      steps: r.stepsDone,
      max_steps: r.options.maxSteps,
      stopped_early: r.stoppedEarly,
      best_step: r.bestStep,
      baseline_loss: r.baselineLoss,
      best_loss: r.bestLoss,
      train_tokens: r.trainTokens,
      validation_tokens: r.validationTokens,
      within_budget: r.seconds <= ADAPTER_BUDGET_S,
    });
    progress(`adapter ${user}: ${r.seconds.toFixed(1)} s, ${r.stepsDone} steps${r.stoppedEarly ? ' (stopped early)' : ''}`);
  }
  return {
    base_model: relative(REPO, o.baseModel),
    fingerprint: model.fingerprint,
    threads: o.adapterThreads,
    options: defaultAdapterRun(),
    budget_s: ADAPTER_BUDGET_S,
    users,
  };
}

async function runPart(kind: PartKind, config: ConfigName | null, o: Options): Promise<void> {
  const rssStart = process.memoryUsage().rss;
  const t0 = performance.now();
  let result: unknown;
  if (kind === 'adapters') result = await adaptersPart(o);
  else if (config === null) fail(`--part ${kind} needs a config (${kind}:default)`);
  else result = kind === 'train' ? trainPart(config, o) : await evalPart(config, o);
  const doc = {
    schema: PART_SCHEMA,
    part: kind,
    config,
    wall_s: (performance.now() - t0) / 1000,
    rss_start_bytes: rssStart,
    // maxRSS is in KiB on Linux and macOS: the process's peak, so the part's own peak.
    max_rss_bytes: process.resourceUsage().maxRSS * 1024,
    result,
  };
  process.stdout.write(JSON.stringify(doc) + '\n');
}

// ---- the parent: run the parts, analyse, report -----------------------------------------------

type TrainResult = ReturnType<typeof trainPart>;
type EvalResult = Awaited<ReturnType<typeof evalPart>>;
type AdaptersResult = Awaited<ReturnType<typeof adaptersPart>>;

interface PartDoc<R> {
  part: PartKind;
  config: ConfigName | null;
  status: 'ok' | 'skipped' | 'error';
  reason?: string;
  wall_s?: number;
  rss_start_bytes?: number;
  max_rss_bytes?: number;
  result?: R;
}

function spawnPart(kind: PartKind, config: ConfigName | null, o: Options): PartDoc<unknown> {
  const label = config === null ? kind : `${kind}:${config}`;
  process.stderr.write(`${label}\n`);
  const res = spawnSync(process.execPath, [SCRIPT, '--part', label, '--options', JSON.stringify(o)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  const err = (reason: string): PartDoc<unknown> => ({ part: kind, config, status: 'error', reason });
  if (res.error) return err(`could not run the child process: ${res.error.message}`);
  if (res.signal) return err(`the child process was killed by ${res.signal}`);
  if (res.status !== 0) return err(`the child process failed with exit code ${res.status} (its message is above)`);
  const line = res.stdout.trim().split('\n').pop() ?? '';
  let doc: Partial<PartDoc<unknown>> & { schema?: string };
  try {
    doc = JSON.parse(line) as typeof doc;
  } catch (e) {
    return err(`the child process printed something that is not JSON: ${(e as Error).message}`);
  }
  if (doc.schema !== PART_SCHEMA) return err(`the child process printed schema ${JSON.stringify(doc.schema)}, expected ${PART_SCHEMA}`);
  return {
    part: kind,
    config,
    status: 'ok',
    wall_s: doc.wall_s!,
    rss_start_bytes: doc.rss_start_bytes!,
    max_rss_bytes: doc.max_rss_bytes!,
    result: doc.result,
  };
}

interface Comparison {
  config: ConfigName;
  threads: number;
  ternary_tokens_per_s: number;
  fp32_tokens_per_s: number;
  /** Median ternary tokens/s / median fp32 tokens/s. */
  ratio: number;
  /** Range of the per-repetition ratios (each repetition's two variants ran back to back). */
  paired_ratio_min: number;
  paired_ratio_max: number;
  samples: number;
}

function compare<S extends { threads: number; rep: number; tokens_per_s: number }>(
  config: ConfigName,
  samples: S[],
  isTernary: (s: S) => boolean,
  threads: number[],
): Comparison[] {
  return threads.flatMap((t) => {
    const a = samples.filter((s) => s.threads === t && isTernary(s));
    const b = samples.filter((s) => s.threads === t && !isTernary(s));
    if (a.length === 0 || b.length === 0) return [];
    const paired = a.flatMap((x) => {
      const y = b.find((s) => s.rep === x.rep);
      return y === undefined ? [] : [x.tokens_per_s / y.tokens_per_s];
    });
    const ta = median(a.map((s) => s.tokens_per_s));
    const tb = median(b.map((s) => s.tokens_per_s));
    return [
      {
        config,
        threads: t,
        ternary_tokens_per_s: ta,
        fp32_tokens_per_s: tb,
        ratio: ta / tb,
        paired_ratio_min: Math.min(...paired),
        paired_ratio_max: Math.max(...paired),
        samples: a.length,
      },
    ];
  });
}

function verdictOf(points: TargetPoint[]): Target['verdict'] {
  const judged = points.filter((p) => p.pass !== null);
  if (judged.length === 0) return 'not measured';
  if (judged.some((p) => !p.pass)) return 'fail';
  return judged.length < points.length ? 'incomplete' : 'pass';
}

function analyse(o: Options, parts: PartDoc<unknown>[]) {
  const ok = <R>(kind: PartKind) =>
    parts.filter((p): p is PartDoc<R> & { result: R } => p.part === kind && p.status === 'ok' && p.result !== undefined);
  const train = ok<TrainResult>('train').flatMap((p) => compare(p.config!, p.result.samples, (s) => s.mode === 'ternary', o.threads));
  const evalRows = ok<EvalResult>('eval').flatMap((p) => compare(p.config!, p.result.samples, (s) => s.precision === 'ternary', o.threads));
  const adapters = ok<AdaptersResult>('adapters')[0]?.result;
  const checks = parts.flatMap((p) => {
    const r = p.result as { checks?: { name: string; ok: boolean; detail: string }[] } | undefined;
    return (r?.checks ?? []).map((c) => ({ part: p.config === null ? p.part : `${p.part}:${p.config}`, ...c }));
  });

  const targets: Target[] = [];
  for (const config of CONFIG_NAMES) {
    const want = TARGET_EVAL_RATIO[config];
    const part = parts.find((p) => p.part === 'eval' && p.config === config);
    const checkOk = checks.filter((c) => c.part === `eval:${config}`).every((c) => c.ok);
    const points: TargetPoint[] =
      part === undefined
        ? []
        : o.threads.map((t) => {
            const row = evalRows.find((r) => r.config === config && r.threads === t);
            if (row === undefined) return { label: `${config} t${t}`, value: null, pass: null, note: part.status };
            const pt: TargetPoint = { label: `${config} t${t}`, value: row.ratio, pass: row.ratio >= want && checkOk };
            if (!checkOk) pt.note = 'output check failed';
            return pt;
          });
    const t: Target = {
      id: `eval_ratio_${config}`,
      description: `ternary evaluation >= ${want}x the same model evaluated with fp32 weights (${config} config, every thread count)`,
      threshold: want,
      unit: 'speed-up',
      verdict: verdictOf(points),
      points,
    };
    if (part === undefined) t.note = 'this run did not evaluate this config';
    else if (part.status !== 'ok') t.note = part.reason ?? part.status;
    targets.push(t);
  }
  if (o.parts.includes('adapters')) {
    const part = parts.find((p) => p.part === 'adapters');
    const points: TargetPoint[] = adapters
      ? adapters.users.map((u) => ({ label: u.user, value: u.seconds, pass: u.within_budget }))
      : USER_NAMES.map((u) => ({ label: u, value: null, pass: null }));
    const t: Target = {
      id: 'adapter_budget',
      description: `each default user's adapter trains in <= ${ADAPTER_BUDGET_S} s (${o.adapterThreads} threads, default options)`,
      threshold: ADAPTER_BUDGET_S,
      unit: 'seconds (at most)',
      verdict: verdictOf(points),
      points,
    };
    if (part?.status !== 'ok') t.note = part?.reason ?? 'not measured';
    targets.push(t);
  }
  return { train, eval: evalRows, adapters: adapters ?? null, checks, targets };
}

function render(
  o: Options,
  parts: PartDoc<unknown>[],
  a: ReturnType<typeof analyse>,
  complete: boolean,
  info: { cpu: string; hw: number; isa: string; totalS: number; load: number[][] },
  outPath: string,
): string {
  const out: string[] = [];
  out.push(`ternorm model benchmark${complete ? '' : ' (PARTIAL RUN: a subset or changed settings)'}`);
  out.push(
    `  ${info.cpu}, ${info.hw} hardware threads, ISA path ${info.isa}, Node ${process.version}; run took ${info.totalS.toFixed(0)} s`,
  );
  out.push(
    `  load average at start ${info.load[0]!.map((x) => x.toFixed(2)).join(' ')}, at end ${info.load[1]!.map((x) => x.toFixed(2)).join(' ')}` +
      (info.load[0]![0]! > 0.5 ? '  (the machine was not idle: absolute numbers are low, ratios still compare like with like)' : ''),
  );
  const cfg = (n: ConfigName) => {
    const c = CONFIGS[n];
    return `${n}: vocab ${c.vocab}, d_model ${c.dModel}, ${c.nLayers} layers, ${c.nHeads} heads, d_ff ${c.dFf}, context ${c.context}`;
  };
  for (const n of o.configs) out.push(`  ${cfg(n)}`);
  const cmpTable = (rows: Comparison[], a1: string, b1: string) =>
    table(
      ['config', 'threads', `${a1} tok/s`, `${b1} tok/s`, `${a1}/${b1}`, 'per-rep range', 'reps'],
      rows.map((r) => [
        r.config,
        String(r.threads),
        fmtNum(r.ternary_tokens_per_s),
        fmtNum(r.fp32_tokens_per_s),
        fmtRatio(r.ratio),
        `${fmtRatio(r.paired_ratio_min)}..${fmtRatio(r.paired_ratio_max)}`,
        String(r.samples),
      ]),
    );
  const failed = (kind: PartKind) =>
    parts.filter((p) => p.part === kind && p.status !== 'ok').map((p) => `  ${p.config ?? p.part}: ${p.status.toUpperCase()}: ${p.reason}`);

  if (o.parts.includes('train')) {
    out.push('');
    out.push(
      `Training tokens/s: Trainer mode 'ternary' (ternary-aware) vs 'fp32', seq ${SEQ}, batch ${o.configs.map((c) => `${o.trainBatch[c]} (${c})`).join(', ')}`,
    );
    out.push(
      `  median of ${o.reps} samples of ${o.configs.map((c) => `${o.trainSteps[c]} (${c})`).join(', ')} steps each, after ${o.trainWarmup} warm-up step(s); the modes alternate`,
    );
    out.push(cmpTable(a.train, 'ternary', 'fp32'));
    out.push(...failed('train'));
  }
  if (o.parts.includes('eval')) {
    out.push('');
    out.push(`Evaluation tokens/s: evaluate() precision 'ternary' vs 'fp32' (the same model's latent fp32 weights), same tokens`);
    const shapes = parts
      .filter((p) => p.part === 'eval' && p.status === 'ok')
      .map((p) => {
        const r = p.result as EvalResult;
        return `${r.config}: ${r.tokens} tokens, ${r.windows} windows of ${r.window}, stride ${r.stride}`;
      });
    out.push(`  median of ${o.reps} interleaved samples; tokens/s = scored tokens / time. ${shapes.join('; ')}`);
    out.push(cmpTable(a.eval, 'ternary', 'fp32'));
    out.push(...failed('eval'));
  }
  if (o.parts.includes('adapters')) {
    out.push('');
    const p = parts.find((x) => x.part === 'adapters');
    if (a.adapters === null) {
      out.push(`Adapter training: ${p?.status.toUpperCase() ?? 'NOT RUN'}: ${p?.reason ?? ''}`);
    } else {
      const ad = a.adapters;
      out.push(
        `Adapter training per user: base ${ad.base_model} (${ad.fingerprint?.slice(0, 16)}...), trainAdapter defaults, ${ad.threads} threads; one run each (absolute time)`,
      );
      out.push(
        table(
          ['user', 'seconds', 'steps', 'stopped early', 'best step', 'val loss base', 'val loss adapter', `<= ${ADAPTER_BUDGET_S} s`],
          ad.users.map((u) => [
            u.user,
            u.seconds.toFixed(1),
            `${u.steps}/${u.max_steps}`,
            u.stopped_early ? 'yes' : 'no',
            String(u.best_step),
            u.baseline_loss.toFixed(4),
            u.best_loss.toFixed(4),
            u.within_budget ? 'yes' : 'NO',
          ]),
        ),
      );
    }
  }
  out.push('');
  out.push('Peak resident memory of each part (its own child process: process.resourceUsage().maxRSS)');
  out.push(
    table(
      ['part', 'peak RSS', 'RSS at start', 'wall', 'status', 'holds'],
      parts.map((p) => [
        p.config === null ? p.part : `${p.part}:${p.config}`,
        p.max_rss_bytes === undefined ? '-' : fmtBytes(p.max_rss_bytes),
        p.rss_start_bytes === undefined ? '-' : fmtBytes(p.rss_start_bytes),
        p.wall_s === undefined ? '-' : `${p.wall_s.toFixed(0)} s`,
        p.status === 'ok' ? 'ok' : p.status.toUpperCase(),
        p.part === 'train'
          ? 'two models + trainers (ternary, fp32)'
          : p.part === 'eval'
            ? 'one model (latent fp32 + ternary weights)'
            : 'base model file (ternary) + fixtures',
      ]),
    ),
  );
  out.push('');
  out.push('Targets');
  for (const t of a.targets) {
    const v = t.verdict === 'pass' ? 'PASS' : t.verdict === 'fail' ? 'FAIL' : t.verdict.toUpperCase();
    out.push(`  ${v.padEnd(12)} ${t.description}`);
    const fmt = (x: number | null) => (x === null ? '-' : t.unit === 'speed-up' ? fmtRatio(x) : `${x.toFixed(1)} s`);
    if (t.points.length > 0)
      out.push(
        `  ${''.padEnd(12)} ${t.points.map((p) => `${p.label} ${fmt(p.value)}${p.pass === false ? (t.unit === 'speed-up' ? ' (below)' : ' (over)') : p.note ? ` (${p.note})` : ''}`).join(', ')}`,
      );
    if (t.note) out.push(`  ${''.padEnd(12)} ${t.note}`);
  }
  out.push('');
  const bad = a.checks.filter((c) => !c.ok);
  if (a.checks.length === 0) out.push('Output checks: none in this run (they come with the training and evaluation parts).');
  else
    out.push(
      bad.length === 0
        ? `Output checks: all ${a.checks.length} passed (evaluation NLL identical across repetitions and thread counts; finite training losses).`
        : `OUTPUT CHECKS FAILED (${bad.length}): the timings of these parts measure a wrong result\n    ${bad.map((c) => `${c.part}: ${c.name}: ${c.detail}`).join('\n    ')}`,
    );
  out.push(`Results: ${relative(process.cwd(), outPath) || outPath}`);
  return out.join('\n');
}

function main(args: Args): number {
  const o = args.options;
  const startedAt = new Date();
  const loadStart = loadavg();
  const t0 = performance.now();
  const info = cpuInfo();
  const parts: PartDoc<unknown>[] = [];
  for (const config of o.configs) {
    for (const kind of ['train', 'eval'] as const) if (o.parts.includes(kind)) parts.push(spawnPart(kind, config, o));
  }
  if (o.parts.includes('adapters')) {
    // A random model would time the same work but not the shipped model's early stopping: never substitute one.
    if (!existsSync(o.baseModel)) {
      const reason = `the base model ${relative(REPO, o.baseModel)} does not exist (not trained yet: see models/README.md); adapter training was not measured`;
      process.stderr.write(`adapters: SKIPPED: ${reason}\n`);
      parts.push({ part: 'adapters', config: null, status: 'skipped', reason });
    } else {
      parts.push(spawnPart('adapters', null, o));
    }
  }
  const totalS = (performance.now() - t0) / 1000;
  const complete = args.changed.length === 0;
  const outPath = args.out ?? join(REPO, 'bench', 'results', complete ? 'model.json' : 'model-partial.json');
  const a = analyse(o, parts);
  const commit = gitOutput(REPO, ['rev-parse', 'HEAD']);
  const dirty = gitOutput(REPO, ['status', '--porcelain']);
  const machine = {
    cpu_model: cpus()[0]?.model ?? 'unknown',
    hardware_threads: availableParallelism(),
    total_memory_bytes: totalmem(),
    isa: info.defaultIsa,
    supported_isas: info.supportedIsas,
    isa_forced: process.env['TERNORM_ISA'] ?? null,
    load_average_start: loadStart,
    load_average_end: loadavg(),
  };
  const doc = {
    schema: SCHEMA,
    generated_at: new Date().toISOString(),
    started_at: startedAt.toISOString(),
    complete,
    arguments: process.argv.slice(2),
    machine,
    build: { git_commit: commit ?? null, git_dirty: dirty === undefined ? null : dirty.length > 0, node: process.version },
    configs: Object.fromEntries(o.configs.map((c) => [c, CONFIGS[c]])),
    options: { ...o, baseModel: relative(REPO, o.baseModel), seq: SEQ, model_seed: MODEL_SEED, token_seed: TOKEN_SEED },
    method: {
      statistic:
        "median tokens/s over the repetitions; ratio = median ternary tokens/s / median fp32 tokens/s; per-rep range = min and max of each repetition's own ratio",
      interleaving:
        'in each repetition both variants run back to back, the first one alternating between repetitions; thread counts run one after another',
      training:
        'Trainer.step (one AdamW update) on random token ids, two models from the same seed (one per mode); tokens/s = steps * batch * seq / time',
      evaluation:
        "evaluate() on random token ids with precision 'ternary' (ternary weights, int8 activations) and 'fp32' (the same model's latent fp32 weights); tokens/s = scored tokens / time (windows overlap by context - stride)",
      adapters:
        "trainAdapter with default options on each default user's train part of the fixtures; seconds include tokenisation and validation, as trainAdapter reports them",
      memory: 'each part runs in its own child process; max_rss_bytes = process.resourceUsage().maxRSS at its end',
    },
    training: a.train,
    evaluation: a.eval,
    adapters: a.adapters ?? {
      status: parts.find((p) => p.part === 'adapters')?.status ?? 'not run',
      reason: parts.find((p) => p.part === 'adapters')?.reason ?? null,
    },
    memory: parts.map((p) => ({
      part: p.part,
      config: p.config,
      status: p.status,
      max_rss_bytes: p.max_rss_bytes ?? null,
      rss_start_bytes: p.rss_start_bytes ?? null,
      wall_s: p.wall_s ?? null,
    })),
    targets: a.targets,
    checks: a.checks,
    checks_ok: a.checks.every((c) => c.ok),
    parts,
    total_s: totalS,
  };
  writeAtomic(outPath, JSON.stringify(doc, null, 1) + '\n');
  process.stdout.write(
    render(
      o,
      parts,
      a,
      complete,
      { cpu: machine.cpu_model, hw: machine.hardware_threads, isa: info.defaultIsa, totalS, load: [loadStart, machine.load_average_end] },
      outPath,
    ) + '\n',
  );
  // A benchmark that timed a wrong result, or lost a part, must not look like a success.
  return doc.checks_ok && parts.every((p) => p.status !== 'error') ? 0 : 1;
}

try {
  const args = parseArgs(process.argv.slice(2));
  if (args.help) process.stdout.write(USAGE);
  else if (args.part !== undefined) await runPart(args.part.kind, args.part.config, args.options);
  else process.exitCode = main(args);
} catch (e) {
  if (e instanceof BenchError) {
    process.stderr.write(`bench:model: ${e.message}\n`);
    process.exitCode = 1;
  } else {
    throw e;
  }
}
