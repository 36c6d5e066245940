// npm run bench:user-floor: the arithmetic one user's bet pipeline cannot avoid, and the CPU-seconds
// it takes at the best rates the kernel benchmark measured on this machine: a floor under the
// measured per-user cost (issue 12 §2), which no kernel speed-up can pass at the same recipe.
//
// Counted per user from a results file (the model's shape, the recipe, the users' split token
// counts, and the distinct conditions: conditions whose decoded gains are identical share one
// evaluation and so have identical NLLs), in multiply-accumulates (MACs):
//   - training: maxSteps steps of batch x seq tokens (the most the recipe allows: a floor for users
//     who train to the last step, as the far-domain users do; early stopping's validation scores are
//     left out): the ternary linears' forward and the gradient through them (int8, the default),
//     the tied head forward and backward (fp32), attention (fp32: the forward's causal-block
//     products, and twice as many in the backward);
//   - scoring: every distinct condition on validation and test, window by window as evaluate() runs
//     them (context-wide windows at stride context / 2: every row through every layer but the last,
//     whose output projection, feed-forward and the head run on the scored rows only).
// Left out: encoding (the codec searches' loss evaluations), norms, softmax, activation
// quantisation, the optimiser.
// Rates (one thread, bench/results/kernels.json): the best ternary GEMM point and the best fp32 GEMM
// point with n >= 128 on any path; and the int8 instruction peak, for the int8 work alone.
//
//   node dist/bench/user-floor.js [--results results/53_adapter_compress.json] [--kernels bench/results/kernels.json] [--out FILE]
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { readResults } from '../lib/bet/results-reader.js';
import { blockLinearMacs, fmtNum, writeAtomic } from './report.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SCHEMA = 'ternorm.bench.user-floor/1';
const ATTENTION_BLOCK = 64; // query rows per causal block (native/model/attention.cpp)

const { values: a } = parseArgs({
  options: { results: { type: 'string' }, kernels: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean' } },
});
if (a.help) {
  process.stdout.write('node dist/bench/user-floor.js [--results FILE.json] [--kernels bench/results/kernels.json] [--out FILE]\n');
  process.exit(0);
}
const resultsPath = resolve(a.results ?? resolve(REPO, 'results/53_adapter_compress.json'));
const kernelsPath = resolve(a.kernels ?? resolve(REPO, 'bench/results/kernels.json'));
const outPath = resolve(a.out ?? resolve(REPO, 'bench/results/user-floor.json'));

const r = readResults(resultsPath);
/** A positive number of the results' model config or adapter recipe (0 allowed where `zero`). */
function count(o: Record<string, unknown>, key: string, zero = false): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < (zero ? 0 : 1))
    throw new Error(`${resultsPath}: ${key} must be a ${zero ? 'non-negative' : 'positive'} integer, got ${String(v)}`);
  return v;
}
const cfg = r.baseModel.config;
const d = count(cfg, 'dModel'),
  L = count(cfg, 'nLayers'),
  H = count(cfg, 'nHeads'),
  C = count(cfg, 'context'),
  V = count(cfg, 'vocab'),
  dFf = count(cfg, 'dFf'),
  nKv = count(cfg, 'nKvHeads', true);
const hd = d / H;
const lin = blockLinearMacs({ dModel: d, nLayers: L, nHeads: H, nKvHeads: nKv, dFf });
const afterAttention = lin.o + lin.gateUp + lin.down;

/** The forward attention products of one sequence of T rows, every head: QK^T and PV per causal row block. */
function attentionForward(T: number): number {
  let m = 0;
  for (let i0 = 0; i0 < T; i0 += ATTENTION_BLOCK) {
    const i1 = Math.min(T, i0 + ATTENTION_BLOCK);
    m += 2 * (i1 - i0) * i1 * hd;
  }
  return m * H;
}

interface Macs {
  int8: number;
  fp32: number;
}

/** Scoring n tokens as evaluate() does at its default stride (context / 2). */
function score(n: number): Macs {
  const W = Math.min(C, n - 1);
  const stride = Math.max(1, Math.floor(C / 2));
  const starts: number[] = [];
  for (let s = 0; ; s += stride) {
    starts.push(Math.min(s, n - 1 - W));
    if (starts[starts.length - 1]! + W >= n - 1) break;
  }
  let int8 = 0,
    fp32 = 0,
    scoredTo = 0;
  for (const s of starts) {
    const scored = s + W - Math.max(scoredTo, s);
    scoredTo = s + W;
    int8 += W * lin.perLayer * (L - 1) + W * lin.qkv + scored * afterAttention;
    fp32 += attentionForward(W) * L + scored * V * d;
  }
  return { int8, fp32 };
}

const run = r.run.adapterRun;
const steps = count(run, 'maxSteps'),
  batch = count(run, 'batch'),
  seq = count(run, 'seq');
const stepMacs: Macs = {
  int8: 2 * batch * seq * lin.perToken,
  fp32: 2 * batch * seq * V * d + 3 * batch * attentionForward(seq) * L,
};

const k = JSON.parse(readFileSync(kernelsPath, 'utf8')) as {
  limits: { peak_i8: { isa: string; threads: number; gops: number }[] };
  results: { isa?: string; threads?: number; n?: number; gops?: number }[];
  matmul_f32: { isa: string; threads: number; n: number; gflops: number }[];
};
const best = (xs: number[], what: string): number => {
  if (xs.length === 0) throw new Error(`${kernelsPath}: no ${what} point at one thread`);
  return Math.max(...xs);
};
// GOPS and GFLOPS count a multiply-accumulate as 2 operations
const rates = {
  int8PeakMacs: best(
    k.limits.peak_i8.filter((p) => p.threads === 1).map((p) => p.gops / 2),
    'int8 peak',
  ),
  ternaryGemmMacs: best(
    k.results.filter((p) => p.threads === 1 && (p.n ?? 0) >= 128 && p.gops !== undefined).map((p) => p.gops! / 2),
    'ternary GEMM n >= 128',
  ),
  fp32GemmMacs: best(
    k.matmul_f32.filter((p) => p.threads === 1 && p.n >= 128).map((p) => p.gflops / 2),
    'fp32 GEMM n >= 128',
  ),
};

const users = r.users.map((u) => {
  // conditions with bit-identical gains share one evaluation, so distinct NLLs count the evaluations (one fewer where an adapter left every gain at 1 and scored as no adapter does)
  const distinct = new Set(Object.values(u.test.conditions).map((c) => c.meanNll)).size;
  const v = score(u.validation.tokens + 1),
    t = score(u.test.tokens + 1);
  const train: Macs = { int8: steps * stepMacs.int8, fp32: steps * stepMacs.fp32 };
  const scoring: Macs = { int8: distinct * (v.int8 + t.int8), fp32: distinct * (v.fp32 + t.fp32) };
  const int8 = train.int8 + scoring.int8,
    fp32 = train.fp32 + scoring.fp32;
  const headMacs = steps * 2 * batch * seq * V * d + distinct * (u.validation.tokens + u.test.tokens) * V * d;
  return {
    user: u.user,
    family: u.family ?? null,
    tokens: { validation: u.validation.tokens, test: u.test.tokens },
    distinctConditions: distinct,
    macs: { train, scoring, int8, fp32, head: headMacs },
    seconds: {
      int8AtPeak: int8 / (rates.int8PeakMacs * 1e9),
      atBestGemmRates: int8 / (rates.ternaryGemmMacs * 1e9) + fp32 / (rates.fp32GemmMacs * 1e9),
      int8: int8 / (rates.ternaryGemmMacs * 1e9),
      fp32: fp32 / (rates.fp32GemmMacs * 1e9),
      head: headMacs / (rates.fp32GemmMacs * 1e9),
    },
  };
});

/** A path inside the repository as written from its root (else as given). */
const rel = (p: string): string => (p.startsWith(REPO + '/') ? p.slice(REPO.length + 1) : p);
const doc = {
  schema: SCHEMA,
  results: { path: rel(resultsPath), checksum: r.checksum },
  kernels: { path: rel(kernelsPath) },
  model: { vocab: V, dModel: d, nLayers: L, nHeads: H, nKvHeads: nKv, dFf, context: C, linearMacsPerToken: lin.perToken },
  recipe: { maxSteps: steps, batch, seq, gradQuant: r.run.gradQuant ?? 'f32' },
  ratesGMacPerSecond: rates,
  users,
};
writeAtomic(outPath, JSON.stringify(doc, null, 1) + '\n');

const T = (x: number): string => fmtNum(x / 1e12, 3);
const s = (x: number): string => x.toFixed(1);
const lines = [
  `Rates, one thread (G MAC/s, ${rel(kernelsPath)}): ternary GEMM ${s(rates.ternaryGemmMacs)}, fp32 GEMM ${s(rates.fp32GemmMacs)}, int8 peak ${s(rates.int8PeakMacs)}.`,
  '',
  '| user | conditions with distinct NLLs | training int8 / fp32 (T MAC) | scoring int8 / fp32 (T MAC) | floor CPU-s (int8 + fp32) | of which the head | int8 alone at the peak |',
  '|---|---:|---:|---:|---:|---:|---:|',
  ...users.map(
    (u) =>
      `| ${u.user} | ${u.distinctConditions} | ${T(u.macs.train.int8)} / ${T(u.macs.train.fp32)} | ${T(u.macs.scoring.int8)} / ${T(u.macs.scoring.fp32)} | ` +
      `${s(u.seconds.atBestGemmRates)} (${s(u.seconds.int8)} + ${s(u.seconds.fp32)}) | ${s(u.seconds.head)} | ${s(u.seconds.int8AtPeak)} |`,
  ),
];
process.stdout.write(lines.join('\n') + `\n\nwrote ${outPath}\n`);
