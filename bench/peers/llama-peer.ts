// llama.cpp as ternorm's peer, called from TypeScript (cross-check tests,
// bench:peers): thin wrappers that run the executables bench/peers/setup.sh
// builds into out/peers/ and parse their output. One process per call.
//
// Numerics: llama.cpp's defaults (f16 KV cache, flash attention "auto", which
// is on for the CPU) round attention through fp16; measured on a tiny F32
// llama GGUF against a float64 reference, max |dNLL| was 3.3e-3 with them and
// 1.0e-6 with { kv: 'f32', flashAttn: 'off' } (EXACT below), so compare
// numerics with EXACT and benchmark with the defaults.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRepo(): string {
  // From bench/peers/ (run from source) or dist/bench/peers/ (compiled), walk up to the repo.
  for (let d = dirname(fileURLToPath(import.meta.url)); ; d = dirname(d)) {
    if (existsSync(join(d, 'bench', 'peers', 'setup.sh'))) return d;
    if (dirname(d) === d)
      throw new Error('llama peer: cannot find the repository (bench/peers/setup.sh) above ' + fileURLToPath(import.meta.url));
  }
}

const REPO = findRepo();
export const PEER_PATHS = {
  setup: join(REPO, 'bench', 'peers', 'setup.sh'),
  llamaPeer: join(REPO, 'out', 'peers', 'llama_peer'),
  ggmlMulMat: join(REPO, 'out', 'peers', 'ggml_mul_mat'),
} as const;

export interface PeerNumerics {
  /** KV cache type; llama.cpp's default is f16. */
  kv?: 'f16' | 'f32';
  /** Flash attention; llama.cpp's default is auto (on for the CPU). */
  flashAttn?: 'auto' | 'on' | 'off';
}
/** The settings under which llama.cpp's fp32 numerics match a float reference (see the top). */
export const EXACT: PeerNumerics = { kv: 'f32', flashAttn: 'off' };

export interface PeerSettings {
  threads: number;
  kv_type: 'f16' | 'f32';
  flash_attn: 'auto' | 'on' | 'off';
  load_s: number;
  model_desc: string;
  n_vocab: number;
  llama_cpp: string;
}

export interface ScoreSummary extends PeerSettings {
  schema: 'ternorm.peers.llama.score/1' | 'ternorm.peers.llama.bench-score/1';
  n_tokens: number;
  n_scored: number;
  window: number;
  stride: number;
  n_windows: number;
  n_ctx: number;
  total_nll: number;
  mean_nll: number;
  perplexity: number;
  score_s: number;
  score_tokens_per_s: number;
}

export interface BenchScoreSummary extends ScoreSummary {
  score_s_reps: number[];
  pp_tokens: number;
  pp_s: number;
  pp_tokens_per_s: number;
  pp_s_reps: number[];
}

export interface DecodeSummary extends PeerSettings {
  schema: 'ternorm.peers.llama.decode/1';
  n_prompt: number;
  n: number;
  tokens: number[];
  prompt_s: number;
  prompt_tokens_per_s: number;
  decode_steps: number;
  decode_s: number;
  decode_step_median_s: number;
  decode_tokens_per_s: number | null;
}

/** Installs and builds the peer if needed (idempotent); throws setup.sh's one line on failure. */
export function setupPeers(): string {
  const r = spawnSync('bash', [PEER_PATHS.setup], { encoding: 'utf8' });
  const line = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  if (r.status !== 0) throw new Error(line || `llama peer: ${PEER_PATHS.setup} failed (${r.error?.message ?? `exit ${r.status}`})`);
  return line;
}

function run(exe: string, args: string[]): string {
  if (!existsSync(exe)) throw new Error(`llama peer: ${exe} is missing; run bash bench/peers/setup.sh`);
  const r = spawnSync(exe, args, { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.error) throw new Error(`llama peer: cannot run ${exe}: ${r.error.message}`);
  if (r.status !== 0) throw new Error((r.stderr ?? '').trim() || `llama peer: ${exe} exited with ${r.status}`);
  return r.stdout;
}

function withTemp<T>(fn: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'ternorm-peer-'));
  try {
    return fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function numericsArgs(o: PeerNumerics): string[] {
  return [...(o.kv ? ['--kv', o.kv] : []), ...(o.flashAttn ? ['--flash-attn', o.flashAttn] : [])];
}

function tokensText(tokens: ArrayLike<number>): string {
  return Array.from(tokens, (t) => String(t)).join(' ') + '\n';
}

/** llama.cpp's token ids for text (UTF-8 bytes passed through exactly). bos: add the model's BOS/EOS as it says (default true). special: parse special-token text. */
export function llamaTokenize(model: string, text: string | Uint8Array, o: { bos?: boolean; special?: boolean } = {}): Int32Array {
  return withTemp((dir) => {
    const file = join(dir, 'text');
    writeFileSync(file, text);
    const args = ['tokenize', resolve(model), file, ...(o.bos === false ? ['--no-bos'] : []), ...(o.special ? ['--special'] : [])];
    const line = run(PEER_PATHS.llamaPeer, args).trim();
    return Int32Array.from(line === '' ? [] : line.split(' ').map(Number));
  });
}

export interface TokenizeBench {
  schema: 'ternorm.peers.llama.bench-tokenize/1';
  bytes: number;
  n_tokens: number;
  tokenize_s: number;
  mb_per_s: number;
  tokenize_s_reps: number[];
  load_s: number;
  n_vocab: number;
}

/** Tokenization speed: the whole text tokenized reps times after one untimed call; median. */
export function llamaBenchTokenize(
  model: string,
  text: string | Uint8Array,
  o: { bos?: boolean; special?: boolean; reps?: number } = {},
): TokenizeBench {
  return withTemp((dir) => {
    const file = join(dir, 'text');
    writeFileSync(file, text);
    const args = [
      'bench-tokenize',
      resolve(model),
      file,
      '--reps',
      String(o.reps ?? 5),
      ...(o.bos === false ? ['--no-bos'] : []),
      ...(o.special ? ['--special'] : []),
    ];
    return JSON.parse(run(PEER_PATHS.llamaPeer, args)) as TokenizeBench;
  });
}

export interface ScoreOptions extends PeerNumerics {
  /** ternorm's context: the window W = min(ctx, n_tokens - 1). */
  ctx: number;
  /** Window step, 1..ctx; default ctx / 2 (ternorm's default). */
  stride?: number;
  threads?: number;
}

function scoreArgs(cmd: string, model: string, file: string, o: ScoreOptions): string[] {
  return [
    cmd,
    resolve(model),
    file,
    '--ctx',
    String(o.ctx),
    ...(o.stride ? ['--stride', String(o.stride)] : []),
    '--threads',
    String(o.threads ?? 1),
    ...numericsArgs(o),
  ];
}

/** Per-token NLLs with ternorm's windowing: nll[i] = -ln p(tokens[i + 1] | its window), as EvalResult.nll. */
export function llamaScore(model: string, tokens: ArrayLike<number>, o: ScoreOptions): { summary: ScoreSummary; nll: Float64Array } {
  return withTemp((dir) => {
    const file = join(dir, 'tokens');
    const out = join(dir, 'nll.f64');
    writeFileSync(file, tokensText(tokens));
    const summary = JSON.parse(run(PEER_PATHS.llamaPeer, [...scoreArgs('score', model, file, o), '--nll-out', out])) as ScoreSummary;
    const buf = readFileSync(out);
    const nll = new Float64Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    if (nll.length !== tokens.length - 1) throw new Error(`llama peer: ${nll.length} NLLs for ${tokens.length} tokens`);
    return { summary, nll };
  });
}

/** Scoring repeated reps times after a warm-up, plus prompt processing of the first window; medians and every rep. */
export function llamaBenchScore(model: string, tokens: ArrayLike<number>, o: ScoreOptions & { reps?: number }): BenchScoreSummary {
  return withTemp((dir) => {
    const file = join(dir, 'tokens');
    writeFileSync(file, tokensText(tokens));
    return JSON.parse(
      run(PEER_PATHS.llamaPeer, [...scoreArgs('bench-score', model, file, o), '--reps', String(o.reps ?? 1)]),
    ) as BenchScoreSummary;
  });
}

/** Greedy decoding of n tokens after the prompt, with timings. */
export function llamaDecode(model: string, prompt: ArrayLike<number>, o: PeerNumerics & { n: number; threads?: number }): DecodeSummary {
  return withTemp((dir) => {
    const file = join(dir, 'prompt');
    writeFileSync(file, tokensText(prompt));
    return JSON.parse(
      run(PEER_PATHS.llamaPeer, [
        'decode',
        resolve(model),
        '--prompt-tokens',
        file,
        '--n',
        String(o.n),
        '--threads',
        String(o.threads ?? 1),
        ...numericsArgs(o),
      ]),
    ) as DecodeSummary;
  });
}

export interface MulMatPoint {
  kind: 'ggml_mul_mat';
  type: 'tq2_0' | 'tq1_0';
  /** f32: quantised to q8_K inside the call and timed; q8_K: quantised beforehand, product only. */
  act: 'f32' | 'q8_K';
  rows: number;
  cols: number;
  n: number;
  threads: number;
  weight_bytes: number;
  check: { rel_diff: number; tol: number; ok: boolean };
  median_s?: number;
  min_s?: number;
  max_s?: number;
  samples?: number;
  calls_per_sample?: number;
  gops?: number;
}

export interface MulMatDoc {
  schema: 'ternorm.peers.ggml.mul_mat.raw/1';
  backend: { device: string; library_dir: string; features: string[] };
  points: MulMatPoint[];
  total_s: number;
}

/** ggml's TQ2_0 / TQ1_0 mul_mat timings (ggml_mul_mat options: --shapes, --tokens, --types, --act, --threads, --quick, ...). */
export function ggmlMulMat(args: string[] = []): MulMatDoc {
  return JSON.parse(run(PEER_PATHS.ggmlMulMat, args)) as MulMatDoc;
}
