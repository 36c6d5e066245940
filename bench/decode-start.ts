// npm run bench:decode-start -- --base DIR: what starting to decode costs, this tree against a
// baseline tree (DIR, a built checkout of another revision), on the shipped model and the 107 M config, K = 1 and 16 sequences
// (each with its own f32 adapter), 1 thread, through the public Decoder (as generateBatch drives
// it: rows = max(the default, K), prompts in chunks of rows).
//
// Per rep, in a process that has loaded the model and run one warm-up rep: creating the decoder,
// starting every slot (adapter and sampler), the prompts' steps up to every sequence's first
// token (time to first token: the three together), then `steps` one-token steps (early steady
// state, median step); wall clock, process CPU time (user and system: page clearing is system
// time) and minor page faults of each phase. Then a 20-token answer through generateBatch end to
// end, and steady steps late in the context (a decoder prefilled to position `late`). Each
// (tree, model, K) is its own child process; rounds interleave the trees (alternating which goes
// first), and ratios are medians of per-round this / baseline. The load average is recorded
// before and after. Writes bench/results/decode-start.json atomically and the README paragraph
// between the bench:decode-start markers (from the JSON).
//
//   node dist/bench/decode-start.js --base DIR [--rounds N] [--reps R] [--out FILE] [--no-readme]
//   node dist/bench/decode-start.js --readme-from [FILE]
//   node dist/bench/decode-start.js --part child <root> <model> <tokens-file> <K> <reps> <prompt> <steps> <late>
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { getFixtures } from '../lib/data/fixtures.js';
import { Model } from '../lib/model/model.js';
import type { BpeTokenizer } from '../lib/tokenizer/bpe.js';
import { config107m, fmtNum, fmtRatio, gitOutput, median, writeAtomic, writeReadmeSection } from './report.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SCRIPT = fileURLToPath(import.meta.url);
const SCHEMA = 'ternorm.bench.decode-start/1';
const WORK = join(REPO, 'out', 'decode-start');
const README = join(REPO, 'README.md');
const MARK_BEGIN = '<!-- bench:decode-start (npm run bench:decode-start writes it from bench/results/decode-start.json) -->';
const MARK_END = '<!-- /bench:decode-start -->';
const MODELS = ['shipped', '107m'] as const;
type ModelName = (typeof MODELS)[number];
const KS = [1, 16];
const PROMPT = 8; // tokens per sequence
const STEPS = 8; // one-token steps timed per rep
const LATE = 224; // position of the late steady steps
const ANSWER = 20; // tokens of the end-to-end answer

// ---- child: one tree, one model, one K ----------------------------------------------------------

interface Phase {
  wall_ms: number;
  cpu_ms: number;
  sys_ms: number;
  faults: number;
}

interface ChildResult {
  create: Phase[];
  start: Phase[];
  prompt: Phase[];
  ttft: Phase[];
  step_ms: number[]; // per rep: the median one-token step (all K sequences), wall
  step_cpu_ms: number[]; // and its process CPU time
  answer_ms: number[]; // per rep: generateBatch of ANSWER tokens each, wall
  late_step_ms: number;
  late_step_cpu_ms: number;
}

interface Lib {
  Model: typeof Model;
  Decoder: new (
    m: Model,
    o: { sequences: number; rows: number },
  ) => {
    rows: number;
    start(slot: number, adapter: Float32Array, sampling: { temperature: number; seed: number }): void;
    step(entries: { slot: number; tokens: Int32Array; sample: boolean }[], o: { threads: number }): Promise<{ next: Int32Array }>;
  };
  generateLimits(): { rows: { default: number } };
}

function mark(): Phase {
  const u = process.cpuUsage();
  return {
    wall_ms: performance.now(),
    cpu_ms: (u.user + u.system) / 1e3,
    sys_ms: u.system / 1e3,
    faults: process.resourceUsage().minorPageFault,
  };
}

function since(a: Phase, b: Phase = mark()): Phase {
  return { wall_ms: b.wall_ms - a.wall_ms, cpu_ms: b.cpu_ms - a.cpu_ms, sys_ms: b.sys_ms - a.sys_ms, faults: b.faults - a.faults };
}

async function childPart(args: string[]): Promise<void> {
  const [root, modelPath, tokensPath] = args as [string, string, string];
  const [K, reps, P, S, late] = args.slice(3).map(Number) as [number, number, number, number, number];
  const lib = (await import(pathToFileURL(join(root, 'dist', 'lib', 'index.js')).href)) as Lib;
  const model = lib.Model.load(modelPath);
  const ids = Int32Array.from(readFileSync(tokensPath, 'utf8').trim().split(/\s+/).map(Number));
  const prompt = (i: number, n: number) => ids.subarray(i * 7, i * 7 + n); // each sequence its own
  // Each sequence its own adapter (gains 1 +- 1/64), as distinct users.
  const adapters = Array.from({ length: K }, (_, i) =>
    Float32Array.from({ length: model.nGains }, (_, j) => 1 + (((i * 31 + j) % 17) - 8) / 512),
  );
  const rows = Math.max(lib.generateLimits().rows.default, K);
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('the child needs --expose-gc');

  // Starts K sequences with n-token prompts on a new decoder (chunks of `rows` rows, as generate
  // does) and returns the decoder, each sequence's first token and the phases.
  const begin = async (n: number) => {
    const t0 = mark();
    const dec = new lib.Decoder(model, { sequences: K, rows });
    const t1 = mark();
    for (let i = 0; i < K; i++) dec.start(i, adapters[i]!, { temperature: 0, seed: i });
    const t2 = mark();
    const next = new Int32Array(K);
    const fed = new Array<number>(K).fill(0);
    while (fed[K - 1]! < n) {
      const entries: { slot: number; tokens: Int32Array; sample: boolean }[] = [];
      let T = 0;
      for (let i = 0; i < K && T < rows; i++) {
        if (fed[i]! >= n) continue;
        const c = Math.min(rows - T, n - fed[i]!);
        entries.push({ slot: i, tokens: prompt(i, n).subarray(fed[i]!, fed[i]! + c), sample: fed[i]! + c === n });
        fed[i] = fed[i]! + c;
        T += c;
      }
      const r = await dec.step(entries, { threads: 1 });
      entries.forEach((e, j) => {
        if (e.sample) next[e.slot] = r.next[j]!;
      });
    }
    const t3 = mark();
    return { dec, next, create: since(t0, t1), start: since(t1, t2), prompt: since(t2, t3), ttft: since(t0, t3) };
  };
  const steps = async (dec: Awaited<ReturnType<typeof begin>>['dec'], next: Int32Array) => {
    const wall: number[] = [];
    const cpu: number[] = [];
    for (let s = 0; s < S; s++) {
      const t = mark();
      next = (
        await dec.step(
          Array.from({ length: K }, (_, i) => ({ slot: i, tokens: next.subarray(i, i + 1), sample: true })),
          { threads: 1 },
        )
      ).next;
      const d = since(t);
      wall.push(d.wall_ms);
      cpu.push(d.cpu_ms);
    }
    return { wall: median(wall), cpu: median(cpu) };
  };
  const answer = async () => {
    const t = performance.now();
    const reqs = Array.from({ length: K }, (_, i) => ({ prompt: prompt(i, P), adapter: adapters[i]!, maxTokens: ANSWER, temperature: 0 }));
    await model.generateBatch(reqs, { threads: 1 });
    return performance.now() - t;
  };

  const out: ChildResult = {
    create: [],
    start: [],
    prompt: [],
    ttft: [],
    step_ms: [],
    step_cpu_ms: [],
    answer_ms: [],
    late_step_ms: NaN,
    late_step_cpu_ms: NaN,
  };
  for (let r = -1; r < reps; r++) {
    gc(); // the previous decoders' memory goes back before the clock starts
    const b = await begin(P);
    const step = await steps(b.dec, b.next);
    gc();
    const a = await answer();
    if (r < 0) continue; // warm-up: the model's pages and the JIT
    out.create.push(b.create);
    out.start.push(b.start);
    out.prompt.push(b.prompt);
    out.ttft.push(b.ttft);
    out.step_ms.push(step.wall);
    out.step_cpu_ms.push(step.cpu);
    out.answer_ms.push(a);
  }
  gc();
  const l = await begin(late);
  const ls = await steps(l.dec, l.next);
  out.late_step_ms = ls.wall;
  out.late_step_cpu_ms = ls.cpu;
  process.stdout.write(JSON.stringify(out) + '\n');
}

// ---- parent ---------------------------------------------------------------------------------------

interface Options {
  rounds: number;
  reps: number;
  base: string | undefined;
  out: string;
  readme: boolean;
}

function parseArgs(argv: string[]): Options & { base: string } {
  const o: Options = { rounds: 5, reps: 5, base: undefined, out: join(REPO, 'bench', 'results', 'decode-start.json'), readme: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`missing value after ${a}`);
      return x;
    };
    if (a === '--rounds') o.rounds = Number(v());
    else if (a === '--reps') o.reps = Number(v());
    else if (a === '--base') o.base = resolve(v());
    else if (a === '--out') o.out = resolve(v());
    else if (a === '--no-readme') o.readme = false;
    else throw new Error(`unknown option ${a}`);
  }
  for (const [k, n] of [
    ['rounds', o.rounds],
    ['reps', o.reps],
  ] as const)
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${k} must be a positive integer, got ${n}`);
  if (o.base === undefined)
    throw new Error('--base DIR is required: a built checkout to compare against (git worktree add DIR REV; npm ci there)');
  if (!existsSync(join(o.base, 'dist', 'lib', 'index.js'))) throw new Error(`--base ${o.base} has no dist/lib/index.js (a built tree)`);
  return o as Options & { base: string };
}

function runChild(root: string, modelPath: string, tokens: string, K: number, reps: number): ChildResult {
  const args = [
    '--expose-gc',
    SCRIPT,
    '--part',
    'child',
    root,
    modelPath,
    tokens,
    String(K),
    String(reps),
    String(PROMPT),
    String(STEPS),
    String(LATE),
  ];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`child ${root} K=${K} ${modelPath} failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as ChildResult;
}

// What each (model, K) row reports: per tree the medians over its rounds, and the medians of the
// per-round ratios this / base.
const METRICS = {
  ttft_ms: (c: ChildResult) => median(c.ttft.map((p) => p.wall_ms)),
  ttft_cpu_ms: (c: ChildResult) => median(c.ttft.map((p) => p.cpu_ms)),
  ttft_sys_ms: (c: ChildResult) => median(c.ttft.map((p) => p.sys_ms)),
  ttft_faults: (c: ChildResult) => median(c.ttft.map((p) => p.faults)),
  create_ms: (c: ChildResult) => median(c.create.map((p) => p.wall_ms)),
  create_faults: (c: ChildResult) => median(c.create.map((p) => p.faults)),
  start_ms: (c: ChildResult) => median(c.start.map((p) => p.wall_ms)),
  prompt_ms: (c: ChildResult) => median(c.prompt.map((p) => p.wall_ms)),
  prompt_faults: (c: ChildResult) => median(c.prompt.map((p) => p.faults)),
  step_ms: (c: ChildResult) => median(c.step_ms),
  step_cpu_ms: (c: ChildResult) => median(c.step_cpu_ms),
  answer_ms: (c: ChildResult) => median(c.answer_ms),
  late_step_ms: (c: ChildResult) => c.late_step_ms,
  late_step_cpu_ms: (c: ChildResult) => c.late_step_cpu_ms,
};
type Metric = keyof typeof METRICS;
const RATIOS: Metric[] = [
  'ttft_ms',
  'ttft_cpu_ms',
  'ttft_sys_ms',
  'create_ms',
  'answer_ms',
  'step_ms',
  'step_cpu_ms',
  'late_step_ms',
  'late_step_cpu_ms',
];

interface Row {
  model: ModelName;
  k: number;
  base: Record<Metric, number>;
  this: Record<Metric, number>;
  ratio: Partial<Record<Metric, number>>; // median of per-round this / base
  rounds: { base: Record<Metric, number>; this: Record<Metric, number> }[];
}

interface Results {
  schema: string;
  date: string;
  git: { this: string | undefined; base: string | undefined; dirty: boolean };
  machine: { cpu: string; cores: number; loadavg_start: number[]; loadavg_end: number[] };
  setup: {
    threads: 1;
    prompt: number;
    steps: number;
    late: number;
    answer_tokens: number;
    rounds: number;
    reps: number;
    base_root: string;
  };
  rows: Row[];
  total_s: number;
}

function markdown(r: Results): string {
  const la = (v: number[]) => v.map((x) => x.toFixed(1)).join(' ');
  const lines = [
    `Measured ${r.date.slice(0, 10)} (${r.machine.cpu}, ${r.machine.cores} cores, load average ${la(r.machine.loadavg_start)} at the start, ` +
      `${la(r.machine.loadavg_end)} at the end; ${r.setup.rounds} interleaved rounds of ${r.setup.reps} reps, 1 thread, ${r.setup.prompt}-token prompts, ` +
      `f32 adapters; ratios are medians of per-round this / before). From \`bench/results/decode-start.json\`.`,
    '',
    `| model | K | first token ms (before → now) | ratio | CPU ratio | of it: creating the decoder ms | of it: system CPU ms (page faults) | ` +
      `one step ms | ratio | CPU ratio | a step at position ${r.setup.late} ms | ratio | CPU ratio | ${r.setup.answer_tokens}-token answer ms | ratio |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  // The summary: what starting costs, per model at the largest K.
  const big = r.rows.filter((w) => w.k === Math.max(...r.rows.map((x) => x.k)));
  const range = (m: Metric) => {
    const v = r.rows.map((w) => w.this[m]);
    return `${fmtNum(Math.min(...v))}–${fmtNum(Math.max(...v))}`;
  };
  lines.unshift(
    `Creating a decoder costs ${range('create_ms')} ms (its activations; the cache comes with the first step). ` +
      big
        .map(
          (w, i) =>
            `${i === 0 ? 'The' : 'the'} ${w.model === 'shipped' ? 'shipped model' : '107 M config'} at K = ${w.k}: the first tokens after ${fmtNum(w.this.ttft_ms)} ms (${fmtRatio(w.ratio.ttft_ms)} the time before, ` +
            `${fmtNum(w.base.ttft_sys_ms)} → ${fmtNum(w.this.ttft_sys_ms)} ms of it system time, the page faults), then ${fmtNum(w.this.step_ms)} ms a step ` +
            `(${fmtRatio(w.ratio.step_ms)})`,
        )
        .join('; ') +
      '.',
    '',
  );
  for (const w of r.rows) {
    const ba = (m: Metric) => `${fmtNum(w.base[m])} → ${fmtNum(w.this[m])}`;
    const x = (m: Metric) => fmtRatio(w.ratio[m]);
    lines.push(
      `| ${w.model} | ${w.k} | ${ba('ttft_ms')} | ${x('ttft_ms')} | ${x('ttft_cpu_ms')} | ${ba('create_ms')} | ${ba('ttft_sys_ms')} | ` +
        `${ba('step_ms')} | ${x('step_ms')} | ${x('step_cpu_ms')} | ${ba('late_step_ms')} | ${x('late_step_ms')} | ${x('late_step_cpu_ms')} | ` +
        `${ba('answer_ms')} | ${x('answer_ms')} |`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--part') {
    if (argv[1] !== 'child' || argv.length !== 10)
      throw new Error('--part child <root> <model> <tokens> <K> <reps> <prompt> <steps> <late>');
    await childPart(argv.slice(2));
    return;
  }
  if (argv[0] === '--readme-from') {
    const file = resolve(argv[1] ?? join(REPO, 'bench', 'results', 'decode-start.json'));
    writeReadmeSection(README, MARK_BEGIN, MARK_END, markdown(JSON.parse(readFileSync(file, 'utf8')) as Results));
    return;
  }
  const o = parseArgs(argv);
  const t0 = Date.now();
  const loadStart = loadavg();
  mkdirSync(WORK, { recursive: true });
  const shipped = join(REPO, 'models', 'base.tnm');
  const tokenizer = Model.load(shipped).tokenizer as BpeTokenizer;
  const paths: Record<ModelName, string> = { shipped, '107m': join(WORK, '107m.tnm') };
  Model.create(config107m(), 1, tokenizer).save(paths['107m']);
  const ids = tokenizer.encode(getFixtures().read('base', 'validation'));
  const need = LATE + 7 * 16;
  if (ids.length < need) throw new Error(`the validation text has ${ids.length} tokens, fewer than ${need}`);
  const tokens = join(WORK, 'prompt.tokens');
  writeAtomic(tokens, Array.from(ids.subarray(0, need)).join(' ') + '\n');

  const trees = { base: o.base, this: REPO } as const;
  const rows: Row[] = [];
  for (const model of MODELS)
    for (const k of KS)
      rows.push({ model, k, base: {} as Record<Metric, number>, this: {} as Record<Metric, number>, ratio: {}, rounds: [] });
  for (let round = 0; round < o.rounds; round++) {
    for (const w of rows) {
      const order = (round + w.k) % 2 === 0 ? (['base', 'this'] as const) : (['this', 'base'] as const);
      const got = {} as Record<'base' | 'this', Record<Metric, number>>;
      for (const t of order) {
        const c = runChild(trees[t], paths[w.model], tokens, w.k, o.reps);
        got[t] = Object.fromEntries(Object.entries(METRICS).map(([m, f]) => [m, f(c)])) as Record<Metric, number>;
      }
      w.rounds.push(got);
      console.log(
        `round ${round + 1}/${o.rounds} ${w.model} K=${w.k}: first token ${fmtNum(got.base.ttft_ms)} -> ${fmtNum(got.this.ttft_ms)} ms, ` +
          `step ${fmtNum(got.base.step_ms)} -> ${fmtNum(got.this.step_ms)} ms (load ${loadavg()[0]!.toFixed(1)})`,
      );
    }
  }
  for (const w of rows) {
    for (const m of Object.keys(METRICS) as Metric[]) {
      w.base[m] = median(w.rounds.map((r) => r.base[m]));
      w.this[m] = median(w.rounds.map((r) => r.this[m]));
    }
    for (const m of RATIOS) w.ratio[m] = median(w.rounds.map((r) => r.this[m] / r.base[m]));
  }
  const results: Results = {
    schema: SCHEMA,
    date: new Date().toISOString(),
    git: {
      this: gitOutput(REPO, ['rev-parse', 'HEAD']),
      base: gitOutput(o.base, ['rev-parse', 'HEAD']),
      dirty: gitOutput(REPO, ['status', '--porcelain']) !== '',
    },
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: availableParallelism(), loadavg_start: loadStart, loadavg_end: loadavg() },
    setup: {
      threads: 1,
      prompt: PROMPT,
      steps: STEPS,
      late: LATE,
      answer_tokens: ANSWER,
      rounds: o.rounds,
      reps: o.reps,
      base_root: o.base,
    },
    rows,
    total_s: (Date.now() - t0) / 1000,
  };
  writeAtomic(o.out, JSON.stringify(results, null, 2) + '\n');
  const md = markdown(results);
  console.log('\n' + md);
  if (o.readme) writeReadmeSection(README, MARK_BEGIN, MARK_END, md);
  console.log(`\nwrote ${relative(REPO, o.out)}${o.readme ? ' and the README paragraph' : ''} in ${results.total_s.toFixed(0)} s`);
}

main().catch((e: unknown) => {
  console.error(`bench:decode-start: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
