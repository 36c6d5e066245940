// npm run bench:peers: ternorm against llama.cpp (node-llama-cpp 3.21.1's prebuilt CPU
// libraries, bench/peers/) on the same GGUF and the same tokens.
//
//   - scoring (the bet's workload: logits for every window position + NLL) and prompt
//     processing: out/native/ternorm_peer bench-score vs out/peers/llama_peer bench-score
//   - n = 1 greedy decoding: ternorm_peer decode vs llama_peer decode
//   - batched decoding (ternorm): K = 1, 4, 16, 64 sequences in one call per step vs K calls
//   - kernels: ternorm's gemm_i8 (+ act_quant) vs ggml's TQ2_0 / TQ1_0 mul_mat at bench:kernels'
//     shapes (out/native/ternorm_bench_kernels vs out/peers/ggml_mul_mat)
//   - tokenizer MB/s on the same text and the same GGUF vocabulary
//
// on the shipped model (models/base.tnm) and a 107 M-parameter config (d_model 1024, 8 layers,
// d_ff 2816, random weights from Model.create, ternarised), both exported to TQ2_0 GGUF by
// ternorm's exporter, at 1 and 2 threads. Every measurement is its own process; rounds are
// interleaved (each round runs every pair once, ternorm and llama.cpp alternating first), and the
// reported numbers are medians and medians of per-round paired ratios. The load average is
// recorded before and after. Writes bench/results/peers.json atomically and rewrites the table in
// README.md between the bench:peers markers (from the JSON; --no-readme leaves README alone).
//
//   node dist/bench/peers.js [--quick] [--rounds N] [--threads 1,2] [--out FILE] [--no-readme]
//   node dist/bench/peers.js --readme-from [FILE]   (README table from a results file)
//   node dist/bench/peers.js --part tokenize <gguf> <text-file> <reps>   (child process)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { getFixtures, snapCut } from '../lib/data/fixtures.js';
import { Model, type ModelConfig } from '../lib/model/model.js';
import type { BpeTokenizer } from '../lib/tokenizer/bpe.js';
import { VocabTokenizer } from '../lib/tokenizer/vocab.js';
import {
  ggmlMulMat,
  llamaBenchScore,
  llamaBenchTokenize,
  llamaDecode,
  setupPeers,
  type BenchScoreSummary,
  type DecodeSummary,
  type MulMatDoc,
  type TokenizeBench,
} from './peers/llama-peer.js';
import {
  blockLinearMacs,
  config107m,
  fmtNum,
  fmtRatio,
  gitOutput,
  median,
  writeAtomic,
  writeReadmeSection,
  type Target,
  type TargetPoint,
} from './report.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SCRIPT = fileURLToPath(import.meta.url);
const SCHEMA = 'ternorm.bench.peers/1';
const TERNORM_PEER = join(REPO, 'out', 'native', 'ternorm_peer');
const TERNORM_KERNELS = join(REPO, 'out', 'native', 'ternorm_bench_kernels');
const WORK = join(REPO, 'out', 'peers', 'bench');
const README = join(REPO, 'README.md');
const MARK_BEGIN = '<!-- bench:peers table (npm run bench:peers writes it from bench/results/peers.json) -->';
const MARK_END = '<!-- /bench:peers table -->';

// The issues' targets (issue 9 §6, issue 11 §3), judged on this run's paired ratios.
const TARGET_SCORE_VS_LLAMA = 3;
const TARGET_GEMM_VS_GGML = 3;
const TARGET_THREAD_SCALING = 1.9;
const TARGET_DECODE_VS_LLAMA: Record<ConfigName, number> = { shipped: 1.2, '107m': 1.5 };
const TARGET_BATCHED_K16 = 8;

const CONFIGS = {
  shipped: null, // models/base.tnm as shipped
  '107m': config107m(),
} satisfies Record<string, ModelConfig | null>;
type ConfigName = keyof typeof CONFIGS;
const CONFIG_NAMES = Object.keys(CONFIGS) as ConfigName[];
const MODEL_SEED = 1;

interface Options {
  quick: boolean;
  rounds: number;
  threads: number[];
  scoreTokens: Record<ConfigName, number>;
  decodePrompt: number;
  decodeN: number;
  batchedK: number[];
  batchedSteps: number;
  tokenizeBytes: number;
  out: string;
  readme: boolean;
}

function parseOptions(argv: string[]): Options {
  const quick = argv.includes('--quick');
  const o: Options = {
    quick,
    rounds: quick ? 2 : 5,
    threads: [...new Set([1, Math.min(2, availableParallelism())])],
    scoreTokens: quick ? { shipped: 1025, '107m': 385 } : { shipped: 4097, '107m': 1025 },
    decodePrompt: 32,
    decodeN: quick ? 33 : 65,
    batchedK: [1, 4, 16, 64],
    // A shipped-model step takes ~0.1 ms: fewer steps time little but noise.
    batchedSteps: quick ? 16 : 32,
    tokenizeBytes: quick ? 128 * 1024 : 512 * 1024,
    out: join(REPO, 'bench', 'results', quick ? 'peers-quick.json' : 'peers.json'),
    readme: !quick,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick') continue;
    if (a === '--no-readme') o.readme = false;
    else if (a === '--rounds') {
      o.rounds = Number(argv[++i]);
      if (!Number.isInteger(o.rounds) || o.rounds < 1 || o.rounds > 100) throw new Error('--rounds must be an integer in [1, 100]');
    } else if (a === '--threads') {
      o.threads = (argv[++i] ?? '').split(',').map(Number);
      if (o.threads.length === 0 || o.threads.some((t) => !Number.isInteger(t) || t < 1 || t > 64))
        throw new Error('--threads must be a comma-separated list of integers in [1, 64]');
    } else if (a === '--out') {
      const v = argv[++i];
      if (!v) throw new Error('--out needs a file');
      o.out = resolve(v);
    } else if (a === '--help' || a === '-h') {
      console.log('node dist/bench/peers.js [--quick] [--rounds N] [--threads 1,2] [--out FILE] [--no-readme] | --readme-from [FILE]');
      process.exit(0);
    } else throw new Error(`unknown option ${a} (try --help)`);
  }
  return o;
}

// ---- processes -------------------------------------------------------------------------

function runJson<T>(exe: string, args: string[]): T {
  if (!existsSync(exe)) throw new Error(`${relative(REPO, exe)} is missing (npm run bench:peers builds it)`);
  const r = spawnSync(exe, args, { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error((r.stderr ?? '').trim() || `${exe} exited with ${r.status}`);
  return JSON.parse(r.stdout) as T;
}

interface TernormScore {
  schema: 'ternorm.peers.ternorm.bench-score/1';
  isa: string;
  threads: number;
  load_s: number;
  n_params: number;
  n_tokens: number;
  n_windows: number;
  window: number;
  mean_nll: number;
  score_s: number;
  score_tokens_per_s: number;
  pp_tokens: number;
  pp_s: number;
  pp_tokens_per_s: number;
}

interface TernormDecode {
  schema: 'ternorm.peers.ternorm.decode/1';
  isa: string;
  threads: number;
  n_prompt: number;
  n: number;
  prompt_s: number;
  decode_steps: number;
  decode_s: number;
  decode_step_median_s: number;
  decode_tokens_per_s: number;
  tokens: number[];
}

interface TernormBatched {
  schema: 'ternorm.peers.ternorm.batched/1';
  isa: string;
  threads: number;
  steps: number;
  rows: BatchedMeasure[];
}

interface BatchedMeasure {
  k: number;
  batched_tokens_per_s: number;
  separate_tokens_per_s: number;
  ratio: number;
  /** one sequence decoded alone (K = 1, separate), run next to each batched run */
  one_stream_tokens_per_s: number;
  /** median over reps of batched total tokens/s / the one-stream run beside it */
  vs_one_stream: number;
}

interface TokenizePart {
  bytes: number;
  n_tokens: number;
  tokenize_s: number;
  mb_per_s: number;
}

// ---- statistics --------------------------------------------------------------------------

/** Paired comparison of ternorm and llama.cpp over rounds: medians of each side and of the per-round ratios. */
interface Paired {
  ternorm: number;
  llama: number;
  /** median over rounds of ternorm / llama (throughputs: > 1 means ternorm is faster) */
  ratio: number;
  ternorm_reps: number[];
  llama_reps: number[];
}

function paired(t: number[], l: number[]): Paired {
  return { ternorm: median(t), llama: median(l), ratio: median(t.map((x, i) => x / l[i]!)), ternorm_reps: t, llama_reps: l };
}

// ---- preparation ---------------------------------------------------------------------------

interface Prepared {
  gguf: Record<ConfigName, string>;
  tokens: Record<ConfigName, string>;
  prompt: string;
  nParams: Record<ConfigName, number>;
  /** multiply-accumulates of one token through the block linears (bench/report.ts blockLinearMacs) and the head */
  linearMacs: Record<ConfigName, number>;
  headMacs: Record<ConfigName, number>;
  /** the model's context: ternorm's window and llama_peer's --ctx */
  context: Record<ConfigName, number>;
  text: string;
  textBytes: number;
}

function prepare(o: Options): Prepared {
  mkdirSync(WORK, { recursive: true });
  const shipped = Model.load(join(REPO, 'models', 'base.tnm'));
  const tokenizer = shipped.tokenizer as BpeTokenizer;
  const gguf = {} as Record<ConfigName, string>;
  const tokens = {} as Record<ConfigName, string>;
  const nParams = {} as Record<ConfigName, number>;
  const linearMacs = {} as Record<ConfigName, number>;
  const headMacs = {} as Record<ConfigName, number>;
  const context = {} as Record<ConfigName, number>;
  const fx = getFixtures();
  const sotu = fx.read('base', 'validation');
  const ids = tokenizer.encode(sotu);
  for (const name of CONFIG_NAMES) {
    const cfg = CONFIGS[name];
    const model = cfg === null ? shipped : Model.create(cfg, MODEL_SEED, tokenizer);
    gguf[name] = join(WORK, `${name}.tq2_0.gguf`);
    model.exportGguf('tq2_0', { path: gguf[name] });
    nParams[name] = nParamsOf(model.config);
    linearMacs[name] = blockLinearMacs(model.config).perToken;
    headMacs[name] = model.config.vocab * model.config.dModel;
    context[name] = model.config.context;
    const n = o.scoreTokens[name];
    if (ids.length < n) throw new Error(`the validation text has ${ids.length} tokens, fewer than ${n}`);
    tokens[name] = join(WORK, `${name}.tokens`);
    writeFileSync(tokens[name], Array.from(ids.subarray(0, n)).join(' ') + '\n');
  }
  const prompt = join(WORK, 'prompt.tokens');
  writeFileSync(prompt, Array.from(ids.subarray(0, o.decodePrompt)).join(' ') + '\n');
  const novel = fx.read('novelist', 'train');
  const cut = novel.subarray(0, snapCut(novel, Math.min(novel.length, o.tokenizeBytes)));
  const text = join(WORK, 'tokenize.txt');
  writeFileSync(text, cut);
  return { gguf, tokens, prompt, nParams, linearMacs, headMacs, context, text, textBytes: cut.length };
}

/** Parameters of a llama-arch config (embedding tied, norms included). */
function nParamsOf(c: ModelConfig): number {
  // the block linears, two norms a layer, the token table and the final norm
  return c.vocab * c.dModel + c.nLayers * (blockLinearMacs(c).perLayer + 2 * c.dModel) + c.dModel;
}

// ---- the measurements ------------------------------------------------------------------------

interface ScoreRow {
  config: ConfigName;
  threads: number;
  window: number;
  n_tokens: number;
  score_tokens_per_s: Paired;
  pp_tokens_per_s: Paired;
  ternorm_mean_nll: number;
  llama_mean_nll: number;
}

interface DecodeRow {
  config: ConfigName;
  threads: number;
  n_prompt: number;
  steps: number;
  decode_tokens_per_s: Paired;
  same_tokens: boolean;
}

interface ScalingRow {
  config: ConfigName;
  what: 'score' | 'pp' | 'decode';
  /** median over rounds of (2-thread throughput / 1-thread throughput), each side */
  ternorm: number;
  llama: number;
}

function measurePairs(o: Options, p: Prepared, log: (s: string) => void) {
  const score = new Map<string, { t: TernormScore[]; l: BenchScoreSummary[] }>();
  const decode = new Map<string, { t: TernormDecode[]; l: DecodeSummary[] }>();
  const key = (c: ConfigName, th: number) => `${c}|${th}`;
  for (let r = 0; r < o.rounds; r++) {
    for (const c of CONFIG_NAMES)
      for (const th of o.threads) {
        const k = key(c, th);
        if (!score.has(k)) score.set(k, { t: [], l: [] });
        if (!decode.has(k)) decode.set(k, { t: [], l: [] });
        const s = score.get(k)!;
        const d = decode.get(k)!;
        const runT = () =>
          s.t.push(runJson<TernormScore>(TERNORM_PEER, ['bench-score', p.gguf[c], p.tokens[c], '--threads', String(th), '--reps', '1']));
        const runL = () => s.l.push(llamaBenchScore(p.gguf[c], readIds(p.tokens[c]), { ctx: p.context[c], threads: th, reps: 1 }));
        const decT = () =>
          d.t.push(
            runJson<TernormDecode>(TERNORM_PEER, [
              'decode',
              p.gguf[c],
              '--prompt-tokens',
              p.prompt,
              '--n',
              String(o.decodeN),
              '--threads',
              String(th),
            ]),
          );
        const decL = () => d.l.push(llamaDecode(p.gguf[c], readIds(p.prompt), { n: o.decodeN, threads: th }));
        // Alternate who goes first, round by round.
        const order = r % 2 === 0 ? [runT, runL, decT, decL] : [runL, runT, decL, decT];
        for (const run of order) run();
        log(
          `  round ${r + 1}/${o.rounds} ${c} ${th}t: score ${fmtNum(s.t.at(-1)!.score_tokens_per_s)} vs ${fmtNum(s.l.at(-1)!.score_tokens_per_s)} tok/s, ` +
            `decode ${fmtNum(d.t.at(-1)!.decode_tokens_per_s)} vs ${fmtNum(d.l.at(-1)!.decode_tokens_per_s ?? NaN)} tok/s`,
        );
      }
  }
  const scoreRows: ScoreRow[] = [];
  const decodeRows: DecodeRow[] = [];
  for (const c of CONFIG_NAMES)
    for (const th of o.threads) {
      const s = score.get(key(c, th))!;
      const d = decode.get(key(c, th))!;
      scoreRows.push({
        config: c,
        threads: th,
        window: s.t[0]!.window,
        n_tokens: s.t[0]!.n_tokens,
        score_tokens_per_s: paired(
          s.t.map((x) => x.score_tokens_per_s),
          s.l.map((x) => x.score_tokens_per_s),
        ),
        pp_tokens_per_s: paired(
          s.t.map((x) => x.pp_tokens_per_s),
          s.l.map((x) => x.pp_tokens_per_s),
        ),
        ternorm_mean_nll: s.t[0]!.mean_nll,
        llama_mean_nll: s.l[0]!.mean_nll,
      });
      decodeRows.push({
        config: c,
        threads: th,
        n_prompt: d.t[0]!.n_prompt,
        steps: d.t[0]!.decode_steps,
        decode_tokens_per_s: paired(
          d.t.map((x) => x.decode_tokens_per_s),
          d.l.map((x) => x.decode_tokens_per_s ?? NaN),
        ),
        same_tokens: d.t.every((x, i) => x.tokens.join(',') === d.l[i]!.tokens.join(',')),
      });
    }
  // Thread scaling, paired within each round (the 1- and 2-thread runs of a round are minutes apart at most).
  const scaling: ScalingRow[] = [];
  if (o.threads.length === 2) {
    const [t1, t2] = o.threads as [number, number];
    for (const c of CONFIG_NAMES) {
      const s1 = score.get(key(c, t1))!,
        s2 = score.get(key(c, t2))!;
      const d1 = decode.get(key(c, t1))!,
        d2 = decode.get(key(c, t2))!;
      const ratio = (a: number[], b: number[]) => median(b.map((x, i) => x / a[i]!));
      scaling.push({
        config: c,
        what: 'score',
        ternorm: ratio(
          s1.t.map((x) => x.score_tokens_per_s),
          s2.t.map((x) => x.score_tokens_per_s),
        ),
        llama: ratio(
          s1.l.map((x) => x.score_tokens_per_s),
          s2.l.map((x) => x.score_tokens_per_s),
        ),
      });
      scaling.push({
        config: c,
        what: 'pp',
        ternorm: ratio(
          s1.t.map((x) => x.pp_tokens_per_s),
          s2.t.map((x) => x.pp_tokens_per_s),
        ),
        llama: ratio(
          s1.l.map((x) => x.pp_tokens_per_s),
          s2.l.map((x) => x.pp_tokens_per_s),
        ),
      });
      scaling.push({
        config: c,
        what: 'decode',
        ternorm: ratio(
          d1.t.map((x) => x.decode_tokens_per_s),
          d2.t.map((x) => x.decode_tokens_per_s),
        ),
        llama: ratio(
          d1.l.map((x) => x.decode_tokens_per_s ?? NaN),
          d2.l.map((x) => x.decode_tokens_per_s ?? NaN),
        ),
      });
    }
  }
  return { scoreRows, decodeRows, scaling, isa: score.values().next().value!.t[0]!.isa };
}

function readIds(file: string): number[] {
  return readFileSync(file, 'utf8').trim().split(/\s+/).map(Number);
}

interface BatchedRow extends BatchedMeasure {
  config: ConfigName;
  threads: number;
  /**
   * The most batched decoding could reach over one stream if the block linears ran at this run's
   * int8 peak, the head at its best fp32 GEMM rate, and nothing else took time (attention, norms,
   * sampling): tokens/s so bounded / one stream's tokens/s. Absent in files written before it was
   * recorded.
   */
  ceiling_vs_one_stream?: number;
}

function measureBatched(o: Options, p: Prepared): BatchedRow[] {
  const rows: BatchedRow[] = [];
  for (const c of CONFIG_NAMES)
    for (const th of o.threads) {
      const b = runJson<TernormBatched>(TERNORM_PEER, [
        'batched',
        p.gguf[c],
        '--prompt-tokens',
        p.prompt,
        '--steps',
        String(o.batchedSteps),
        '--k',
        o.batchedK.join(','),
        '--threads',
        String(th),
        '--reps',
        String(o.quick ? 3 : 5),
      ]);
      for (const r of b.rows)
        rows.push({
          config: c,
          threads: th,
          k: r.k,
          batched_tokens_per_s: r.batched_tokens_per_s,
          separate_tokens_per_s: r.separate_tokens_per_s,
          ratio: r.ratio,
          one_stream_tokens_per_s: r.one_stream_tokens_per_s,
          vs_one_stream: r.vs_one_stream,
        });
    }
  return rows;
}

interface KernelRow {
  rows: number;
  cols: number;
  n: number;
  threads: number;
  isa: string;
  ternorm_gemm_i8_s: number;
  ternorm_act_quant_s: number | null;
  ggml: { type: 'tq2_0' | 'tq1_0'; act: 'f32' | 'q8_K'; median_s: number }[];
  /** ggml tq2_0 q8_K product time / ternorm gemm_i8 time (both: integer product only) */
  vs_tq2_0_product: number;
  vs_tq1_0_product: number;
  /** ggml tq2_0 with f32 activations (q8_K quantisation inside) / (ternorm act_quant + gemm_i8) */
  vs_tq2_0_with_act_quant: number;
}

interface RawKernelPoint {
  kind: string;
  rows: number;
  cols: number;
  n: number;
  isa: string;
  threads: number;
  status: string;
  median_s?: number;
}

/**
 * The rates of this run that bound batched decoding: the int8 dot-product instruction's
 * (ternorm_bench_kernels' probe, at its start and end) and the best fp32 GEMM point with n >= 128.
 */
interface BoundingRates {
  isa: string;
  threads: number;
  instruction: string;
  gmacs_start: number;
  gmacs_end: number;
  /** absent in files written before it was recorded */
  f32_gemm_gmacs?: number;
}

/** The int8 peak a ceiling assumes: the higher of the probe's start and end (an upper bound). */
const int8PeakOf = (q: BoundingRates): number => Math.max(q.gmacs_start, q.gmacs_end);

interface RawPeak {
  isa: string;
  threads: number;
  instruction: string;
  macs_per_call: number;
  median_s: number;
}

function measureKernels(o: Options, isa: string): { rows: KernelRow[]; ggml_backend: MulMatDoc['backend']; int8_peak: BoundingRates[] } {
  const threads = o.threads.join(',');
  const timing = o.quick ? ['--quick'] : ['--min-time', '0.1', '--min-samples', '5', '--max-time', '1'];
  const out = join(WORK, 'kernels.json');
  const r = spawnSync(TERNORM_KERNELS, ['--kernels', 'gemm,act_quant', '--isa', isa, '--threads', threads, ...timing, '--out', out], {
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  if (r.status !== 0) throw new Error(`ternorm_bench_kernels failed: ${(r.stderr ?? '').trim()}`);
  const t = JSON.parse(readFileSync(out, 'utf8')) as {
    points: RawKernelPoint[];
    limits: { peak_i8: RawPeak[] };
    limits_end: { peak_i8: RawPeak[] };
  };
  const gmacs = (q: RawPeak | undefined) => (q === undefined ? NaN : q.macs_per_call / q.median_s / 1e9);
  const int8_peak = t.limits.peak_i8
    .filter((q) => q.isa === isa)
    .map((q) => ({
      isa,
      threads: q.threads,
      instruction: q.instruction,
      gmacs_start: gmacs(q),
      gmacs_end: gmacs(t.limits_end.peak_i8.find((e) => e.isa === isa && e.threads === q.threads)),
      f32_gemm_gmacs: Math.max(
        ...t.points
          .filter((f) => f.kind === 'gemm_f32' && f.isa === isa && f.threads === q.threads && f.n >= 128 && f.median_s !== undefined)
          .map((f) => (f.rows * f.cols * f.n) / f.median_s! / 1e9),
      ),
    }));
  const g = ggmlMulMat(['--types', 'tq2_0,tq1_0', '--act', 'q8_K,f32', '--threads', threads, ...timing]);
  const rows: KernelRow[] = [];
  for (const p of t.points) {
    if (p.kind !== 'gemm_i8' || p.status !== 'ok' || p.median_s === undefined || p.isa !== isa) continue;
    const aq = t.points.find((q) => q.kind === 'act_quant' && q.cols === p.cols && q.n === p.n && q.isa === isa && q.threads === p.threads);
    const mine = g.points.filter(
      (q) => q.rows === p.rows && q.cols === p.cols && q.n === p.n && q.threads === p.threads && q.median_s !== undefined,
    );
    if (mine.length === 0) continue;
    const at = (type: string, act: string) => mine.find((q) => q.type === type && q.act === act)?.median_s ?? NaN;
    const aqs = aq?.median_s ?? null;
    rows.push({
      rows: p.rows,
      cols: p.cols,
      n: p.n,
      threads: p.threads,
      isa,
      ternorm_gemm_i8_s: p.median_s,
      ternorm_act_quant_s: aqs,
      ggml: mine.map((q) => ({ type: q.type, act: q.act, median_s: q.median_s! })),
      vs_tq2_0_product: at('tq2_0', 'q8_K') / p.median_s,
      vs_tq1_0_product: at('tq1_0', 'q8_K') / p.median_s,
      vs_tq2_0_with_act_quant: aqs === null ? NaN : at('tq2_0', 'f32') / (p.median_s + aqs),
    });
  }
  return { rows, ggml_backend: g.backend, int8_peak };
}

interface TokenizeRow {
  rounds: number;
  bytes: number;
  /** ternorm's own BPE (the model's tokenizer; ternorm.tokenizer in the GGUF) */
  ternorm_bpe_mb_per_s: number;
  /** the core's gpt2 BPE on the GGUF's tokenizer.ggml.* vocabulary, the one llama.cpp reads */
  ternorm_gguf_vocab_mb_per_s: number;
  llama_mb_per_s: number;
  /** medians of per-round ratios to llama.cpp */
  ratio_bpe: number;
  ratio_gguf_vocab: number;
}

function measureTokenize(o: Options, p: Prepared): TokenizeRow {
  const t: { bpe: TokenizePart; vocab: TokenizePart }[] = [];
  const l: TokenizeBench[] = [];
  const text = readFileSync(p.text);
  for (let r = 0; r < o.rounds; r++) {
    const ours = () => {
      const res = spawnSync(process.execPath, [SCRIPT, '--part', 'tokenize', p.gguf.shipped, p.text, '3'], { encoding: 'utf8' });
      if (res.status !== 0)
        throw new Error(`tokenize part failed (${res.error?.message ?? `exit ${res.status}`}): ${(res.stderr ?? '').trim()}`);
      t.push(JSON.parse(res.stdout) as { bpe: TokenizePart; vocab: TokenizePart });
    };
    const theirs = () => l.push(llamaBenchTokenize(p.gguf.shipped, text, { bos: false, reps: 3 }));
    for (const run of r % 2 === 0 ? [ours, theirs] : [theirs, ours]) run();
  }
  return {
    rounds: o.rounds,
    bytes: p.textBytes,
    ternorm_bpe_mb_per_s: median(t.map((x) => x.bpe.mb_per_s)),
    ternorm_gguf_vocab_mb_per_s: median(t.map((x) => x.vocab.mb_per_s)),
    llama_mb_per_s: median(l.map((x) => x.mb_per_s)),
    ratio_bpe: median(t.map((x, i) => x.bpe.mb_per_s / l[i]!.mb_per_s)),
    ratio_gguf_vocab: median(t.map((x, i) => x.vocab.mb_per_s / l[i]!.mb_per_s)),
  };
}

/** Child: times ternorm's two tokenizers of the GGUF on the text (median of reps after one untimed call). */
function tokenizePart(gguf: string, textFile: string, reps: number): void {
  const model = Model.load(gguf);
  const bytes = readFileSync(textFile);
  const vocab = new VocabTokenizer(model.ggufVocab!);
  const time = (enc: (b: Uint8Array) => ArrayLike<number>): TokenizePart => {
    const n = enc(bytes).length;
    const s: number[] = [];
    for (let i = 0; i < reps; i++) {
      const t0 = process.hrtime.bigint();
      enc(bytes);
      s.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    const m = median(s);
    return { bytes: bytes.length, n_tokens: n, tokenize_s: m, mb_per_s: bytes.length / 1e6 / m };
  };
  const out = {
    bpe: time((b) => model.tokenizer!.encode(b)),
    vocab: time((b) => vocab.encode(b, { addSpecial: false, parseSpecial: false })),
  };
  process.stdout.write(JSON.stringify(out) + '\n');
}

// ---- targets and report ---------------------------------------------------------------------

function target(id: string, description: string, threshold: number, points: TargetPoint[]): Target {
  const measured = points.filter((p) => p.value !== null && Number.isFinite(p.value));
  const verdict =
    measured.length === 0 ? 'not measured' : measured.length < points.length ? 'incomplete' : points.every((p) => p.pass) ? 'pass' : 'fail';
  return { id, description, threshold, unit: 'x', verdict, points };
}

const pt = (label: string, value: number, threshold: number): TargetPoint => ({
  label,
  value: Number.isFinite(value) ? value : null,
  pass: Number.isFinite(value) ? value >= threshold : null,
});

interface Results {
  schema: typeof SCHEMA;
  generated_at: string;
  complete: boolean;
  arguments: string[];
  quick: boolean;
  rounds: number;
  machine: { cpu: string; cores: number; loadavg_start: number[]; loadavg_end: number[] };
  build: { commit?: string; dirty: boolean; isa: string; llama_cpp: string; ggml_backend: MulMatDoc['backend'] };
  method: string;
  models: {
    config: ConfigName;
    gguf: string;
    n_params: number;
    block_linear_macs_per_token?: number;
    head_macs_per_token?: number;
    score_tokens: number;
  }[];
  score: ScoreRow[];
  decode: DecodeRow[];
  scaling: ScalingRow[];
  batched: BatchedRow[];
  kernels: KernelRow[];
  /** absent in files written before it was recorded */
  int8_peak?: BoundingRates[];
  /** null when the tokenizer part failed (errors says why) */
  tokenize: TokenizeRow | null;
  errors: string[];
  targets: Target[];
  total_s: number;
}

function targetsOf(r: Omit<Results, 'targets' | 'total_s'>): Target[] {
  const t: Target[] = [];
  t.push(
    target(
      'score_vs_llama',
      'scoring throughput >= 3x llama.cpp TQ2_0 at 1 and 2 threads, both configs (issue 9 §6)',
      TARGET_SCORE_VS_LLAMA,
      r.score.map((s) => pt(`${s.config} ${s.threads}t`, s.score_tokens_per_s.ratio, TARGET_SCORE_VS_LLAMA)),
    ),
  );
  t.push(
    target(
      'score_thread_scaling',
      'ternorm scoring 2 threads / 1 thread >= 1.9x on the 107 M config (issue 9 §6)',
      TARGET_THREAD_SCALING,
      r.scaling.filter((s) => s.what === 'score' && s.config === '107m').map((s) => pt(s.config, s.ternorm, TARGET_THREAD_SCALING)),
    ),
  );
  t.push(
    target(
      'gemm_vs_ggml',
      'kernel GEMM n >= 128: ternorm gemm_i8 >= 3x ggml TQ2_0 mul_mat (integer product, q8_K activations) (issue 9 §6)',
      TARGET_GEMM_VS_GGML,
      r.kernels
        .filter((k) => k.n >= 128)
        .map((k) => pt(`${k.rows}x${k.cols} n=${k.n} ${k.threads}t`, k.vs_tq2_0_product, TARGET_GEMM_VS_GGML)),
    ),
  );
  t.push(
    target(
      'decode_vs_llama',
      'n = 1 decode >= 1.5x llama.cpp TQ2_0 on the 107 M config, >= 1.2x on the shipped model, 1 and 2 threads (issue 11 §3)',
      1.2,
      r.decode.map((d) =>
        pt(
          `${d.config} ${d.threads}t (>= ${TARGET_DECODE_VS_LLAMA[d.config]}x)`,
          d.decode_tokens_per_s.ratio,
          TARGET_DECODE_VS_LLAMA[d.config],
        ),
      ),
    ),
  );
  t.push(
    target(
      'batched_k16',
      'batched K = 16 total throughput >= 8x one stream (issue 11 §3)',
      TARGET_BATCHED_K16,
      r.batched
        .filter((b) => b.k === 16)
        .map((b) => ({
          ...pt(`${b.config} ${b.threads}t`, b.vs_one_stream, TARGET_BATCHED_K16),
          ...(b.ceiling_vs_one_stream === undefined ? {} : { note: `ceiling ${fmtRatio(b.ceiling_vs_one_stream)}` }),
        })),
    ),
  );
  return t;
}

function markdown(r: Results): string {
  const f = (v: number) => fmtNum(v, 4);
  const lines: string[] = [];
  lines.push(
    `Measured ${r.generated_at.slice(0, 10)}${r.quick ? ' with --quick' : ''} (${r.machine.cpu}, ${r.machine.cores} cores, load average ${r.machine.loadavg_start.map((x) => x.toFixed(1)).join(' ')} at the start, ` +
      `${r.machine.loadavg_end.map((x) => x.toFixed(1)).join(' ')} at the end; ${r.rounds} interleaved rounds, medians; ratios are medians of per-round ternorm / llama.cpp; ` +
      `ternorm ${r.build.isa}, llama.cpp ${r.build.llama_cpp} TQ2_0 with its defaults${peakText(r)}). From \`bench/results/${r.quick ? 'peers-quick.json' : 'peers.json'}\`.`,
  );
  lines.push('');
  lines.push(
    '| model | threads | scoring tok/s ternorm | llama.cpp | ratio | prompt tok/s ternorm | llama.cpp | ratio | decode tok/s ternorm | llama.cpp | ratio |',
  );
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const s of r.score) {
    const d = r.decode.find((x) => x.config === s.config && x.threads === s.threads)!;
    lines.push(
      `| ${s.config} | ${s.threads} | ${f(s.score_tokens_per_s.ternorm)} | ${f(s.score_tokens_per_s.llama)} | ${fmtRatio(s.score_tokens_per_s.ratio)} | ` +
        `${f(s.pp_tokens_per_s.ternorm)} | ${f(s.pp_tokens_per_s.llama)} | ${fmtRatio(s.pp_tokens_per_s.ratio)} | ` +
        `${f(d.decode_tokens_per_s.ternorm)} | ${f(d.decode_tokens_per_s.llama)} | ${fmtRatio(d.decode_tokens_per_s.ratio)} |`,
    );
  }
  lines.push('');
  lines.push('| thread scaling (2 / 1 threads) | ternorm | llama.cpp |');
  lines.push('|---|---:|---:|');
  for (const s of r.scaling) lines.push(`| ${s.config} ${s.what} | ${fmtRatio(s.ternorm)} | ${fmtRatio(s.llama)} |`);
  lines.push('');
  const ceiling = r.batched.some((b) => b.ceiling_vs_one_stream !== undefined);
  lines.push(
    '| batched decode (ternorm) | threads | K | batched tok/s | K separate streams tok/s | ratio | one stream tok/s | vs one stream |' +
      (ceiling ? ' ceiling (int8 peak, fp32 head) |' : ''),
  );
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|' + (ceiling ? '---:|' : ''));
  for (const b of r.batched)
    lines.push(
      `| ${b.config} | ${b.threads} | ${b.k} | ${f(b.batched_tokens_per_s)} | ${f(b.separate_tokens_per_s)} | ${fmtRatio(b.ratio)} | ` +
        `${f(b.one_stream_tokens_per_s)} | ${fmtRatio(b.vs_one_stream)} |` +
        (ceiling ? ` ${fmtRatio(b.ceiling_vs_one_stream)} |` : ''),
    );
  lines.push('');
  lines.push(
    '| kernel rows x cols | n | threads | ternorm gemm_i8 | ggml TQ2_0 (q8_K) | ratio | ggml TQ1_0 (q8_K) | ratio | ratio incl. activation quantisation (TQ2_0) |',
  );
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const k of r.kernels) {
    const g = (type: string) => k.ggml.find((x) => x.type === type && x.act === 'q8_K')?.median_s;
    const us = (s: number | undefined) => (s === undefined ? '-' : `${fmtNum(s * 1e6, 4)} us`);
    lines.push(
      `| ${k.rows}x${k.cols} | ${k.n} | ${k.threads} | ${us(k.ternorm_gemm_i8_s)} | ${us(g('tq2_0'))} | ${fmtRatio(k.vs_tq2_0_product)} | ${us(g('tq1_0'))} | ${fmtRatio(k.vs_tq1_0_product)} | ${fmtRatio(k.vs_tq2_0_with_act_quant)} |`,
    );
  }
  lines.push('');
  const tk = r.tokenize;
  if (tk === null) lines.push(`Tokenizer: not measured (${r.errors.join('; ')}).`);
  else
    lines.push(
      `Tokenizer (${(tk.bytes / 1024).toFixed(0)} KiB of Moby-Dick, the shipped GGUF): ternorm's BPE ${f(tk.ternorm_bpe_mb_per_s)} MB/s (${fmtRatio(tk.ratio_bpe)}), ` +
        `the core's gpt2 BPE on the GGUF vocabulary ${f(tk.ternorm_gguf_vocab_mb_per_s)} MB/s (${fmtRatio(tk.ratio_gguf_vocab)}), llama.cpp ${f(tk.llama_mb_per_s)} MB/s.`,
    );
  lines.push('');
  lines.push('| target | verdict | points |');
  lines.push('|---|---|---|');
  for (const t of r.targets)
    lines.push(
      `| ${t.description} | ${t.verdict} | ${t.points.map((p) => `${p.label} ${p.value === null ? '-' : fmtRatio(p.value)}${p.note === undefined ? '' : ` (${p.note})`}`).join(', ')} |`,
    );
  return lines.join('\n');
}

/** The header's note of the int8 peak this run measured (per thread count), if recorded. */
function peakText(r: Results): string {
  if (r.int8_peak === undefined || r.int8_peak.length === 0) return '';
  const at = (q: BoundingRates) => `${fmtNum(int8PeakOf(q), 4)} at ${q.threads}t`;
  const f32 = r.int8_peak.filter((q) => q.f32_gemm_gmacs !== undefined);
  return (
    `; this run's int8 peak (${r.int8_peak[0]!.instruction}) ${r.int8_peak.map(at).join(', ')} G MAC/s` +
    (f32.length === 0 ? '' : `, best fp32 GEMM ${f32.map((q) => `${fmtNum(q.f32_gemm_gmacs, 4)} at ${q.threads}t`).join(', ')} G MAC/s`)
  );
}

/**
 * Each batched row's ceiling: the block linears at this run's int8 peak (the higher of its start and
 * end probes, for the row's thread count), the head at the best fp32 GEMM rate, nothing else; against
 * the one stream beside the row.
 */
function withCeilings(batched: BatchedRow[], peak: BoundingRates[], p: Pick<Prepared, 'linearMacs' | 'headMacs'>): BatchedRow[] {
  return batched.map((b) => {
    const q = peak.find((x) => x.threads === b.threads);
    if (q === undefined || q.f32_gemm_gmacs === undefined || !Number.isFinite(q.f32_gemm_gmacs)) return b;
    const secondsPerToken = p.linearMacs[b.config] / (int8PeakOf(q) * 1e9) + p.headMacs[b.config] / (q.f32_gemm_gmacs * 1e9);
    return { ...b, ceiling_vs_one_stream: 1 / secondsPerToken / b.one_stream_tokens_per_s };
  });
}

// ---- main -------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--part') {
    if (argv[1] !== 'tokenize' || argv.length !== 5) throw new Error('--part tokenize <gguf> <text-file> <reps>');
    tokenizePart(argv[2]!, argv[3]!, Number(argv[4]));
    return;
  }
  if (argv[0] === '--readme-from') {
    // Rewrites the README table from a results file (e.g. one run elsewhere).
    const file = resolve(argv[1] ?? join(REPO, 'bench', 'results', 'peers.json'));
    const r = JSON.parse(readFileSync(file, 'utf8')) as Results;
    if (r.schema !== SCHEMA) throw new Error(`${file} is not a ${SCHEMA} document`);
    writeReadmeSection(README, MARK_BEGIN, MARK_END, markdown(r));
    console.log(`README table rewritten from ${relative(REPO, file)}`);
    return;
  }
  const o = parseOptions(argv);
  const t0 = Date.now();
  const loadStart = loadavg();
  const log = (s: string) => console.log(s);
  log(`bench:peers: ${setupPeers()}`);
  if (!existsSync(TERNORM_PEER) || !existsSync(TERNORM_KERNELS))
    throw new Error('out/native/ternorm_peer or ternorm_bench_kernels is missing (npm run bench:peers builds them)');
  const p = prepare(o);
  log(`models exported to ${relative(REPO, WORK)}; ${o.rounds} rounds, threads ${o.threads.join(',')}`);
  const pairs = measurePairs(o, p, log);
  log('batched decode ...');
  const batched = measureBatched(o, p);
  log('kernels ...');
  const kernels = measureKernels(o, pairs.isa);
  log('tokenizer ...');
  // The last part: its failure is recorded and the rest is still written.
  const errors: string[] = [];
  let tokenize: TokenizeRow | null = null;
  try {
    tokenize = measureTokenize(o, p);
  } catch (e) {
    errors.push(`tokenizer: ${e instanceof Error ? e.message : String(e)}`);
  }
  const llamaVersion = JSON.parse(readFileSync(join(REPO, 'bench', 'peers', 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
  };
  const partial: Omit<Results, 'targets' | 'total_s'> = {
    schema: SCHEMA,
    generated_at: new Date().toISOString(),
    complete: errors.length === 0,
    arguments: argv,
    quick: o.quick,
    rounds: o.rounds,
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: availableParallelism(), loadavg_start: loadStart, loadavg_end: loadavg() },
    build: {
      commit: gitOutput(REPO, ['rev-parse', 'HEAD']),
      dirty: (gitOutput(REPO, ['status', '--porcelain']) ?? '') !== '',
      isa: pairs.isa,
      llama_cpp: `node-llama-cpp ${llamaVersion.dependencies['node-llama-cpp'] ?? '?'}`,
      ggml_backend: kernels.ggml_backend,
    },
    method:
      'Each measurement is one process (out/native/ternorm_peer, out/peers/llama_peer, ggml_mul_mat, ternorm_bench_kernels); ' +
      'rounds interleave ternorm and llama.cpp (who runs first alternates); scoring = every window position scored ' +
      '(the model context, stride context / 2) after one untimed run; prompt = the first window into an empty KV cache; ' +
      'decode = greedy one-token steps after a prompt. Ratios are ternorm / llama.cpp throughput, per round, then the median.',
    models: CONFIG_NAMES.map((c) => ({
      config: c,
      gguf: relative(REPO, p.gguf[c]),
      n_params: p.nParams[c],
      block_linear_macs_per_token: p.linearMacs[c],
      head_macs_per_token: p.headMacs[c],
      score_tokens: o.scoreTokens[c],
    })),
    score: pairs.scoreRows,
    decode: pairs.decodeRows,
    scaling: pairs.scaling,
    batched: withCeilings(batched, kernels.int8_peak, p),
    kernels: kernels.rows,
    int8_peak: kernels.int8_peak,
    tokenize,
    errors,
  };
  const results: Results = { ...partial, targets: targetsOf(partial), total_s: (Date.now() - t0) / 1000 };
  writeAtomic(o.out, JSON.stringify(results, null, 2) + '\n');
  const md = markdown(results);
  console.log('\n' + md);
  if (o.readme) writeReadmeSection(README, MARK_BEGIN, MARK_END, md);
  console.log(`\nwrote ${relative(REPO, o.out)}${o.readme ? ' and the README table' : ''} in ${results.total_s.toFixed(0)} s`);
}

main().catch((e: unknown) => {
  console.error(`bench:peers: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
