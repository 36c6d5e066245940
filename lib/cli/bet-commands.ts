// The bet's commands: `ternorm bet` (the main job), `ternorm fleet` (fleet totals from a results
// file) and `ternorm quantize` (writes one encoded adapter file).

import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

import { checkMethod, codecMethods, encodeAdapter } from '../adapter/codec.js';
import { fleetTotals, formatBytes, formatFleet } from '../bet/fleet.js';
import { NOISE_SEEDS, writeNoisePlot } from '../bet/noise.js';
import { ALL_USERS_FAMILY } from '../bet/conclusions.js';
import { writeFrontierPlot } from '../bet/frontier.js';
import { writePlot } from '../bet/plot.js';
import {
  defaultCalibrationTokens,
  DEFAULT_MODEL_PATH,
  defaultModelPath,
  defaultUsers,
  FIXTURE_USER_SETS,
  fixtureUsers,
  runBet,
  type BetOptions,
  type BetStage,
  type BetUser,
} from '../bet/protocol.js';
import { writeReport } from '../bet/report.js';
import { DEFAULT_RESULTS_PATH, readResults, type AdapterCompressResults } from '../bet/results.js';
import { Adapter } from '../adapter/adapter.js';
import { Model } from '../model/model.js';
import { coreLimits, orchestrationLimit, SEED_LIMIT } from '../model/limits.js';
import { adapterRunLimits } from '../model/train-adapter.js';
import { cmdFleetSub, FLEET_SUBCOMMANDS, FLEET_USAGE } from './fleet-commands.js';
import {
  defined,
  ensureDir,
  parse,
  parseWithPositionals,
  required,
  S,
  SHOW_HELP,
  ternariseFlag,
  TERNARISE_USAGE,
  UsageError,
  type Io,
} from './args.js';
import { actQuantFlag, checkNumericFlags, gradQuantFlag, narrowed, threadsLimit } from './limits.js';
import { formatDuration, ProgressBar } from './progress.js';
import { MAX_TEXT_BYTES, readTextFile } from '../util/files.js';
import { terminalText } from '../util/text.js';
import { DEFAULT_USER_SPLIT } from '../data/fixtures.js';

export const BET_USAGE = `  bet             the adapter-compression bet (the main job): per user, train the norm-only adapter,
                  encode it with every scheme, score held-out text, verdicts, per-user policy
    [--model ${DEFAULT_MODEL_PATH}] [--user name=text.txt ... | --users fixture:SET (${FIXTURE_USER_SETS})] [--adapter name=user.adapter ...]
    [--seeds 1] [--seed 0] [--criteria FILE] [--out ${DEFAULT_RESULTS_PATH}] [--report OUT.md] [--plot OUT.svg]
    [--fleet-users 215000] [--resume | --overwrite] [--threads N] [--max-steps N] [--calibration-tokens N (default 512, mixed)]
    [--eval-every 20] [--patience 3]  (adapter early stopping: steps between validation scores, scores without a new best)
    [--batch 8] [--lr 0.03] [--warmup 10]  (adapter training: sequences of 128 tokens per step, peak learning rate, warm-up
                  steps; a 6x cheaper, weaker recipe measured on the fleet: --max-steps 60 --batch 2 --lr 0.1 --warmup 6 --patience 2)
    [--eval-stride N]  (window step of every split score, 1..context; default context / 2; the context: each token once)
    [--grad-quant int8|f32]  (adapter training's gradient through the ternary linears; int8, the default: a
                  cheaper step, the same bits on every CPU and thread count, within int8 rounding of f32's)
    [--group-size 32] [--mixed-budget BYTES] [--resamples 2000]
    [--act-quant token|block256 (ternary activations per token, or per 256 values as llama.cpp)] [--json]
    [--train-bytes N] [--validation-bytes N] [--test-bytes N] [--split-windows N]  (split sizes of every
                  user but the near-base ones (24 / 6 / 6 KiB in 2 windows); default: the fixtures'
                  192 KiB / 16 KiB / 16 KiB in 8 windows, a --user text's scaled to it)
    ${TERNARISE_USAGE}
    [--noise [--noise-seeds 3]]  the noise margin: perturbed gains on a log grid of RMS gain error
    [--personal]                 the cross-user matrix, the generic adapter, the PERSONAL-LOST tier
    [--frontier [--frontier-plot OUT.svg]]  also the rate-distortion frontier: alloc and sparse_delta at
                  64 B ... 4.6 KB, the best encoding per budget chosen on validation, reported on test;
                  one plot per user family (OUT-<family>.svg when the users have more than one)
  fleet           bytes per user and fleet totals per scheme and for the per-user policy's mix
    [--results ${DEFAULT_RESULTS_PATH}] [--users 215000] [--json]
${FLEET_USAGE}  quantize        encode a trained adapter with one scheme into an encoded adapter file
    --scheme S [--model ${DEFAULT_MODEL_PATH}] [--text user-train.txt (int4_calibrated, mixed, alloc)]
    [--budget BYTES (mixed, sparse_delta, alloc)] [--group-size 32] [--calibration-tokens N (default 512)] [--ternarise ...]
    IN.adapter OUT.adapter
`;

const DEFAULT_FLEET_USERS = 215000;
const FLEET_USERS_LIMIT = orchestrationLimit(1, Number.MAX_SAFE_INTEGER, true, DEFAULT_FLEET_USERS, 'users in the fleet');

function pairs(flag: string, raw: unknown): Map<string, string> {
  const out = new Map<string, string>();
  const list = raw === undefined ? [] : (raw as string[]);
  for (const item of list) {
    const eq = item.indexOf('=');
    if (eq <= 0 || eq === item.length - 1) throw new UsageError(`--${flag} expects name=path, got '${item}'`);
    const name = item.slice(0, eq);
    if (out.has(name)) throw new UsageError(`--${flag} names "${name}" twice`);
    out.set(name, item.slice(eq + 1));
  }
  return out;
}

function withSuffix(path: string, ext: string): string {
  return path.endsWith('.json') ? `${path.slice(0, -'.json'.length)}${ext}` : `${path}${ext}`;
}

const STAGE_LABEL: Record<BetStage, string> = {
  train: 'train adapter',
  encode: 'encode',
  evaluate: 'evaluate',
  seeds: 'extra seeds',
  noise: 'noise sweep',
  personal: 'cross-user matrix',
};

export async function cmdBet(argv: string[], io: Io): Promise<number> {
  const multi = { type: 'string', multiple: true } as const;
  const v = parse(argv, {
    model: S,
    ternarise: S,
    user: multi,
    users: S,
    adapter: multi,
    seeds: S,
    seed: S,
    criteria: S,
    out: S,
    report: S,
    plot: S,
    'fleet-users': S,
    resume: { type: 'boolean' },
    overwrite: { type: 'boolean' },
    threads: S,
    'act-quant': S,
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
    'train-bytes': S,
    'validation-bytes': S,
    'test-bytes': S,
    'split-windows': S,
    noise: { type: 'boolean' },
    'noise-seeds': S,
    personal: { type: 'boolean' },
    frontier: { type: 'boolean' },
    'frontier-plot': S,
    json: { type: 'boolean' },
  });
  if (v.help) return SHOW_HELP;
  const c = coreLimits().codec;
  const partBytes = (what: string) => orchestrationLimit(1, MAX_TEXT_BYTES, true, null, what);
  const n = checkNumericFlags(v, {
    seeds: orchestrationLimit(1, 100, true, 1, 'training seeds per user'),
    seed: SEED_LIMIT,
    'fleet-users': FLEET_USERS_LIMIT,
    threads: threadsLimit(),
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
    'train-bytes': partBytes('bytes of adapter-training text per user'),
    'validation-bytes': partBytes('bytes of validation text per user'),
    'test-bytes': partBytes('bytes of test text per user'),
    'split-windows': orchestrationLimit(1, 4096, true, DEFAULT_USER_SPLIT.windows, 'regions of a text each split part takes a piece from'),
    'noise-seeds': orchestrationLimit(1, 100, true, NOISE_SEEDS, 'noise patterns per grid point'),
  });
  if (v['noise-seeds'] !== undefined && v.noise !== true) throw new UsageError('--noise-seeds needs --noise');
  if (v.resume === true && v.overwrite === true) throw new UsageError('--resume and --overwrite exclude each other');
  const userFiles = pairs('user', v.user);
  const adapters = pairs('adapter', v.adapter);
  const set = v.users as string | undefined;
  if (set !== undefined && userFiles.size > 0) throw new UsageError('--users and --user exclude each other');
  if (set !== undefined && !set.startsWith('fixture:'))
    throw new UsageError(`--users expects fixture:SET (${FIXTURE_USER_SETS}), got '${set}'`);
  const users: BetUser[] =
    set !== undefined
      ? fixtureUsers(set.slice('fixture:'.length))
      : userFiles.size === 0
        ? defaultUsers()
        : [...userFiles].map(([name, path]) => ({ name, source: { kind: 'file', path: resolve(path) } }));
  for (const [name, path] of adapters) {
    const u = users.find((x) => x.name === name);
    if (u === undefined) throw new UsageError(`--adapter ${name}=...: no user "${name}" (users: ${users.map((x) => x.name).join(', ')})`);
    u.adapterPath = resolve(path);
  }
  const out = (v.out as string | undefined) ?? DEFAULT_RESULTS_PATH;
  const modelPath = (v.model as string | undefined) ?? defaultModelPath();
  if (!existsSync(modelPath)) {
    throw new Error(
      v.model === undefined
        ? `the shipped base model ${modelPath} is missing (run from the package root, or rebuild it with the command in models/README.md)`
        : `--model ${modelPath}: no such file`,
    );
  }
  const fleetUsers = n['fleet-users'] ?? DEFAULT_FLEET_USERS;
  const maxSteps = n['max-steps'];
  const resamples = n.resamples;
  const opts: BetOptions = {
    modelPath,
    ternarise: ternariseFlag(v),
    users,
    out,
    criteriaPath: v.criteria as string | undefined,
    seed: n.seed ?? 0,
    seeds: n.seeds ?? 1,
    threads: n.threads,
    actQuant: actQuantFlag(v['act-quant']),
    resume: v.resume === true,
    overwrite: v.overwrite === true,
    adapterRun: defined({
      maxSteps,
      batch: n.batch,
      lr: n.lr,
      warmup: n.warmup,
      evalEvery: n['eval-every'],
      patience: n.patience,
      gradQuant: gradQuantFlag(v['grad-quant']),
    }),
    evalStride: n['eval-stride'],
    encode: defined({
      calibrationTokens: n['calibration-tokens'],
      groupSize: n['group-size'],
      mixedBudget: n['mixed-budget'],
    }),
    bootstrap: defined({ resamples }),
    split: defined({
      trainBytes: n['train-bytes'],
      validationBytes: n['validation-bytes'],
      testBytes: n['test-bytes'],
      windows: n['split-windows'],
    }),
    noise: v.noise === true ? defined({ seeds: n['noise-seeds'] }) : undefined,
    personal: v.personal === true,
    ...(v.frontier === true ? { frontier: {} } : {}),
  };
  if (v.frontier !== true && v['frontier-plot'] !== undefined) throw new UsageError('--frontier-plot needs --frontier');
  const bar = new ProgressBar(io.stderr, 25);
  let stage: { user: string; stage: BetStage } | null = null;
  const t0 = performance.now();
  const results = await runBet(opts, {
    onStage: (user, s) => {
      bar.done();
      stage = { user, stage: s };
    },
    onProgress: (done, total, detail) => {
      if (stage !== null) bar.stage(`${stage.user}: ${STAGE_LABEL[stage.stage]}`, done, total, detail);
    },
    onLog: (line) => bar.log(line),
    onUserDone: (user, sec) => bar.log(`${user}: done in ${formatDuration(sec)}`),
  });
  bar.done();
  const seconds = (performance.now() - t0) / 1000;
  const { report, plot, noisePlot, frontierPlots } = writeOutputs(out, results, v, fleetUsers);
  const written = [out, report, plot, ...(noisePlot === null ? [] : [noisePlot]), ...frontierPlots].join(', ');
  if (v.json) {
    io.stdout.write(
      `${JSON.stringify({ results: out, report, plot, noisePlot, frontierPlots, seconds, verdicts: results.verdicts, policy: results.policy, conclusions: results.conclusions })}\n`,
    );
  } else {
    io.stdout.write(terminalText(summary(results, fleetUsers), true));
    io.stdout.write(terminalText(`\nwrote ${written} (${formatDuration(seconds)})\n`, true));
  }
  return 0;
}

/** Where the report and plots of a results file go: flags, else next to `out`. */
interface OutputFlags {
  report?: unknown;
  plot?: unknown;
  'frontier-plot'?: unknown;
}

/**
 * Writes the Markdown report, the rate-distortion plot, the noise plot (when a user has a sweep)
 * and one frontier plot per user family (when the run has the frontier; a run whose users have one
 * family, or none, gets one plot) of `results`; returns their paths.
 */
function writeOutputs(out: string, results: AdapterCompressResults, v: OutputFlags, fleetUsers: number) {
  const report = (v.report as string | undefined) ?? withSuffix(out, '.md');
  const plot = (v.plot as string | undefined) ?? withSuffix(out, '.svg');
  writeReport(report, results, { fleetUsers });
  writePlot(plot, results);
  const noisePlot = results.users.some((u) => u.noise !== undefined) ? withSuffix(out, '_noise.svg') : null;
  if (noisePlot !== null) writeNoisePlot(noisePlot, results);
  const frontierPlots: string[] = [];
  if (results.frontier !== undefined) {
    const path = (v['frontier-plot'] as string | undefined) ?? withSuffix(out, '-frontier.svg');
    const families = new Map<string, string[]>();
    for (const u of results.users)
      families.set(u.family ?? ALL_USERS_FAMILY, [...(families.get(u.family ?? ALL_USERS_FAMILY) ?? []), u.user]);
    for (const [family, users] of families) {
      const file =
        families.size === 1
          ? path
          : `${path.endsWith('.svg') ? path.slice(0, -'.svg'.length) : path}-${family.replace(/[^A-Za-z0-9_-]+/g, '_')}.svg`;
      const title = families.size === 1 ? 'Rate-distortion frontier per user' : `Rate-distortion frontier, ${family} users`;
      writeFrontierPlot(
        file,
        { ...results.frontier, users: results.frontier.users.filter((f) => users.includes(f.user)) },
        results.criteria.criteria,
        `${title} (chosen on validation)`,
      );
      frontierPlots.push(file);
    }
  }
  return { report, plot, noisePlot, frontierPlots };
}

export const REPORT_USAGE = `  report          the Markdown report and SVG plots of a results file again (read, checked and recomputed first)
    --results ${DEFAULT_RESULTS_PATH} [--report OUT.md] [--plot OUT.svg] [--frontier-plot OUT.svg] [--fleet-users 215000]
`;

export async function cmdReport(argv: string[], io: Io): Promise<number> {
  const v = parse(argv, { results: S, report: S, plot: S, 'frontier-plot': S, 'fleet-users': S });
  if (v.help) return SHOW_HELP;
  const n = checkNumericFlags(v, { 'fleet-users': FLEET_USERS_LIMIT });
  const path = (v.results as string | undefined) ?? DEFAULT_RESULTS_PATH;
  const results = readResults(path);
  const written = writeOutputs(path, results, v, n['fleet-users'] ?? DEFAULT_FLEET_USERS);
  const paths = [written.report, written.plot, ...(written.noisePlot === null ? [] : [written.noisePlot]), ...written.frontierPlots];
  io.stdout.write(terminalText(`wrote ${paths.join(', ')}\n`, true));
  return 0;
}

/** The console summary: the bet's table, every scheme's verdict, the policy. All from the results. */
function summary(r: AdapterCompressResults, fleetUsers: number): string {
  const { noAdapter, reference, bet } = r.criteria.criteria.conditions;
  const lines: string[] = [];
  lines.push(`The bet (${bet}, test split; ppl = perplexity of the held-out tokens):`);
  lines.push(
    `  ${'user'.padEnd(12)} ${'no adapter'.padStart(10)} ${'raw'.padStart(10)} ${bet.padStart(16)} ${'x raw'.padStart(8)} ${'x none'.padStart(8)}`,
  );
  for (const u of r.users) {
    const c = u.test.conditions;
    lines.push(
      `  ${u.user.padEnd(12)} ${c[noAdapter]!.ppl.value.toFixed(3).padStart(10)} ${c[reference]!.ppl.value.toFixed(3).padStart(10)} ` +
        `${c[bet]!.ppl.value.toFixed(3).padStart(16)} ${c[bet]!.ratioToReference!.value.toFixed(4).padStart(8)} ${c[bet]!.ratioToNoAdapter!.value.toFixed(4).padStart(8)}`,
    );
  }
  lines.push('', 'Verdicts (test split):');
  for (const vd of r.verdicts) {
    const bytes = r.users.map((u) => u.encodings[vd.scheme]?.bytes ?? 0);
    lines.push(`  ${vd.scheme.padEnd(16)} ${vd.verdict.padEnd(12)} ${formatBytes(Math.max(...bytes)).padStart(9)} per user`);
  }
  lines.push('', 'Per-user policy (chosen on validation, checked on test):');
  for (const u of r.users) {
    lines.push(
      `  ${u.user.padEnd(12)} ${u.policy.choice.padEnd(16)} ${formatBytes(u.policy.bytes).padStart(9)}  test x raw ${u.policy.test.ratioToReference.value.toFixed(4)}, ` +
        `x none ${u.policy.test.ratioToNoAdapter.value.toFixed(4)} (${u.policy.test.holds ? 'rule holds' : 'rule fails'} on test)`,
    );
  }
  lines.push('', formatFleet(fleetTotals(r, fleetUsers)));
  return `${lines.join('\n')}\n`;
}

export async function cmdFleet(argv: string[], io: Io): Promise<number> {
  const sub = FLEET_SUBCOMMANDS.find((x) => x === argv[0]);
  if (sub !== undefined) return cmdFleetSub(sub, argv.slice(1), io);
  const v = parse(argv, { results: S, users: S, json: { type: 'boolean' } });
  if (v.help) return SHOW_HELP;
  const n = checkNumericFlags(v, { users: FLEET_USERS_LIMIT });
  const path = (v.results as string | undefined) ?? DEFAULT_RESULTS_PATH;
  if (!existsSync(path)) throw new Error(`no results at ${path}: run \`ternorm bet\` first (or pass --results)`);
  const r = readResults(path);
  const s = fleetTotals(r, n.users ?? DEFAULT_FLEET_USERS);
  // names come from a file: no escape sequence of theirs reaches the terminal
  io.stdout.write(v.json ? `${JSON.stringify(s)}\n` : terminalText(`${formatFleet(s)}\n`, true));
  return 0;
}

export async function cmdQuantize(argv: string[], io: Io): Promise<number> {
  const { values: v, positionals } = parseWithPositionals(argv, {
    scheme: S,
    model: S,
    ternarise: S,
    text: S,
    budget: S,
    'group-size': S,
    'calibration-tokens': S,
    threads: S,
  });
  if (v.help) return SHOW_HELP;
  const c = coreLimits().codec;
  const n = checkNumericFlags(v, {
    budget: narrowed(c.byteBudget, { min: 1 }),
    'group-size': c.groupSize,
    'calibration-tokens': c.calibrationTokens,
    threads: threadsLimit(),
  });
  if (positionals.length !== 2) throw new UsageError(`quantize expects IN.adapter OUT.adapter, got ${positionals.length} path(s)`);
  const [inPath, outPath] = positionals as [string, string];
  const scheme = required(v, 'scheme');
  try {
    checkMethod(scheme);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { needsLoss, needsBudget } = codecMethods().find((m) => m.name === scheme)!;
  if (needsLoss && v.text === undefined)
    throw new UsageError(`--scheme ${scheme} chooses its encoding on the user's training text: --text is required`);
  if (needsBudget && v.budget === undefined) throw new UsageError(`--scheme ${scheme} needs --budget BYTES`);
  const model = Model.load((v.model as string | undefined) ?? defaultModelPath(), { ternarise: ternariseFlag(v) });
  const adapter = Adapter.load(model, inPath);
  if (adapter.encoding !== null) throw new Error(`${inPath} is already encoded (${adapter.scheme}); quantize a trained (f32) adapter`);
  let calibration;
  if (needsLoss) {
    const tokens = model.tokenizer!.encode(readTextFile(v.text as string, '--text'));
    const count = n['calibration-tokens'] ?? defaultCalibrationTokens();
    if (tokens.length < 2) throw new Error(`--text ${String(v.text)} encodes to ${tokens.length} token(s); calibration needs at least 2`);
    calibration = { tokens: tokens.subarray(0, Math.min(count, tokens.length)) };
  }
  const r = await encodeAdapter(model, adapter, scheme, {
    calibration,
    byteBudget: n.budget,
    groupSize: n['group-size'],
    threads: n.threads,
  });
  ensureDir(outPath);
  Adapter.fromEncoding(r.encoding, {
    format: 'ternorm.quantize',
    version: 1,
    source: resolve(inPath),
    scheme,
    calibration: r.calibration,
    mixed: r.mixed,
  }).save(model, outPath);
  const maxErr = r.encoding.gains.reduce((m, g, i) => Math.max(m, Math.abs(g - adapter.gains[i]!)), 0);
  io.stdout.write(
    `wrote ${outPath}: ${scheme}, ${r.encoding.bytes} bytes encoded (raw f32 ${adapter.gains.length * 4} bytes), max |gain error| ${maxErr.toExponential(3)}\n`,
  );
  return 0;
}
