// npm run bench:kernels: runs the measuring executable
// (out/native/ternorm_bench_kernels, bench/kernels.cpp), turns its raw
// medians into throughput, ratios to the fp32 GEMM, ratios of each SIMD path
// to the scalar reference and percentages of this machine's measured limits, judges the targets, prints a table and writes
// bench/results/kernels.json atomically. Every number is computed here from
// the same run's raw medians; nothing is typed in.
//
//   node dist/bench/kernels.js [--exe PATH] [--out FILE] [executable options]
//
// Executable options (--shapes, --tokens, --isa, --threads, --kernels, --quick, ...) are
// passed through; a run with any of them is a partial run and goes to
// bench/results/kernels-partial.json unless --out says otherwise.
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  fmtBytes,
  fmtNum,
  fmtPct,
  fmtRatio,
  fmtTime,
  gitOutput,
  table,
  writeAtomic,
  type Target as ReportTarget,
  type TargetPoint,
} from './report.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DEFAULT_EXE = join(REPO, 'out', 'native', 'ternorm_bench_kernels');
const RAW_SCHEMA = 'ternorm.bench.kernels.raw/1';
const SCHEMA = 'ternorm.bench.kernels/1';

// The targets of the issue, judged on the best ISA path.
const TARGET_GEMM_PEAK = 0.5; // GEMM n >= 128: >= 50 % of the measured int8 peak
const TARGET_GEMM_VS_FP32 = 3; // ... and >= 3x the fp32 GEMM in the same run
const TARGET_GEMV_BW = 0.7; // GEMV 4096 x 4096 (cold): >= 70 % of the DRAM read bandwidth
const GEMV_TARGET_SHAPE = { rows: 4096, cols: 4096 };

// ---- raw document (bench/kernels.cpp) ----------------------------------------------

interface RawTiming {
  median_s: number;
  min_s: number;
  max_s: number;
  samples: number;
  calls_per_sample: number;
  warmup_counted: boolean;
  reduced_samples: boolean;
  wall_s: number;
}

interface RawPeak extends RawTiming {
  pass: 'start' | 'end';
  isa: string;
  threads: number;
  instruction: string;
  macs_per_call: number;
}

interface RawRead extends RawTiming {
  pass: 'start' | 'end';
  label: 'cache' | 'dram';
  bytes: number;
  threads: number;
  isa: string;
  bytes_per_call: number;
}

interface RawCheck {
  kind?: string;
  against?: string;
  ok: boolean;
  rel_diff?: number;
  tol?: number;
}

type Kind =
  | 'gemm_i8'
  | 'gemm_f32'
  | 'act_quant'
  | 'read_cold'
  | 'gemv_i8_cold'
  | 'gemv_f32_cold'
  | 'matmul_f32'
  | 'matmul_f32_t'
  | 'rmsnorm_f32'
  | 'rmsnorm_i8'
  | 'softmax'
  | 'swiglu'
  | 'swiglu_backward';

// The kinds reported beside the GEMM table, by section of the results JSON.
const SECTIONS = {
  matmul_f32: ['matmul_f32', 'matmul_f32_t'],
  rmsnorm: ['rmsnorm_f32', 'rmsnorm_i8'],
  elementwise: ['softmax', 'swiglu', 'swiglu_backward'],
} as const satisfies Record<string, readonly Kind[]>;

interface RawPoint extends Partial<RawTiming> {
  kind: Kind;
  rows: number;
  cols: number;
  n: number;
  gain?: string;
  isa: string;
  threads: number;
  status: 'ok' | 'skipped' | 'error';
  reason?: string;
  weight_bytes?: number;
  copies?: number;
  rotation_bytes?: number;
  llc_bytes?: number;
  bytes_in?: number;
  bytes_per_call?: number;
  probe_isa?: string;
  check?: RawCheck;
  check_i8_vs_f32?: RawCheck;
}

interface RawMachine {
  cpu_model: string;
  os?: string;
  arch?: string;
  hardware_threads: number;
  features: string[];
  supported_isas: string[];
  best_isa: string;
  caches: { level: number; type: string; bytes: number; shared_cpu_list: string }[];
  llc_bytes: number;
  llc_source: string;
}

interface RawConfig {
  quick: boolean;
  shapes: [number, number][];
  tokens: number[];
  isas: string[];
  threads: number[];
  [key: string]: unknown;
}

interface RawDoc {
  schema: string;
  machine: RawMachine;
  build: Record<string, unknown>;
  config: RawConfig;
  limits: { peak_i8: RawPeak[]; read: RawRead[] };
  limits_end: { peak_i8: RawPeak[]; read: RawRead[] };
  points: RawPoint[];
  total_s: number;
}

// ---- derived ----------------------------------------------------------------------------

interface Measured {
  median_s: number;
  samples: number;
  calls_per_sample: number;
  reduced_samples: boolean;
  warmup_counted: boolean;
}

interface Limit {
  kind: 'int8 peak' | 'cache read' | 'dram read of the same copies';
  label: string;
  value: number;
  unit: 'GOPS' | 'GB/s';
}

interface Row {
  rows: number;
  cols: number;
  n: number;
  isa: string;
  threads: number;
  cache: 'hot' | 'cold';
  status: 'ok' | 'skipped' | 'error';
  reason?: string;
  ternary?: Measured;
  fp32?: Measured;
  act_quant?: Measured;
  ops: number;
  weight_bytes: number;
  gops?: number;
  weight_gbps?: number;
  fp32_gops?: number;
  fp32_weight_gbps?: number;
  limit?: Limit;
  pct_of_limit?: number;
  pct_of_best_peak?: number;
  pct_of_dram_stream?: number;
  ratio_vs_fp32?: number;
  ratio_vs_fp32_dram_bound?: number;
  ratio_vs_fp32_incl_act_quant?: number;
  copies?: number;
  rotation_bytes?: number;
  checks: { name: string; ok: boolean; detail: string }[];
  notes: string[];
}

// One entry of the act_quant, matmul_f32, rmsnorm and elementwise sections:
// the point's median, its throughput, and its speed against the scalar
// reference path at the same threads (same kind, shape, n and gain).
interface SideEntry {
  kind: Kind;
  rows?: number;
  cols: number;
  n: number;
  gain?: string;
  isa: string;
  threads: number;
  status: 'ok' | 'skipped' | 'error';
  reason?: string;
  median_s?: number;
  samples?: number;
  gflops?: number;
  gbps_in?: number | null;
  ratio_vs_scalar?: number | null;
  ratio_vs_gemm_f32?: number | null;
  check: RawCheck | null;
}

// A kernel target also counts its passing points and names the worst one.
interface Target extends ReportTarget {
  passed: number;
  total: number;
  worst?: TargetPoint;
}

// ---- helpers --------------------------------------------------------------------------------

class BenchError extends Error {}

function fail(msg: string): never {
  throw new BenchError(msg);
}

function measured(p: RawPoint | undefined): Measured | undefined {
  if (!p || p.status !== 'ok' || p.median_s === undefined || !(p.median_s > 0)) return undefined;
  return {
    median_s: p.median_s,
    samples: p.samples ?? 0,
    calls_per_sample: p.calls_per_sample ?? 0,
    reduced_samples: p.reduced_samples ?? false,
    warmup_counted: p.warmup_counted ?? false,
  };
}

function packed2Bytes(rows: number, cols: number): number {
  const up = (v: number, m: number) => Math.ceil(v / m) * m;
  return (up(rows, 16) * up(cols, 16)) / 4;
}

// ---- running the executable --------------------------------------------------------------

interface Args {
  exe: string;
  out?: string;
  passthrough: string[];
  help: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { exe: DEFAULT_EXE, passthrough: [], help: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) fail(`option ${a} needs a value`);
      return v;
    };
    if (a === '--exe') args.exe = resolve(value());
    else if (a === '--out') args.out = resolve(value());
    else if (a === '--help' || a === '-h') args.help = true;
    else args.passthrough.push(a);
  }
  return args;
}

function runExecutable(exe: string, passthrough: string[]): RawDoc {
  if (!existsSync(exe) || !statSync(exe).isFile())
    fail(
      `the benchmark executable is not built: ${relative(process.cwd(), exe) || exe} does not exist.\n` +
        `Build it with \`npm run build:native\` (\`npm run bench:kernels\` builds it first), ` +
        `or point --exe at a build of the ternorm_bench_kernels target.`,
    );
  // stderr (progress) goes straight to the terminal; stdout is the JSON.
  const res = spawnSync(exe, passthrough, {
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 256 * 1024 * 1024,
    encoding: 'utf8',
  });
  if (res.error) fail(`could not run ${exe}: ${res.error.message}`);
  if (res.signal) fail(`${exe} was killed by ${res.signal}`);
  if (res.status !== 0) fail(`${exe} failed with exit code ${res.status} (its message is above)`);
  let doc: unknown;
  try {
    doc = JSON.parse(res.stdout);
  } catch (e) {
    fail(`${exe} printed something that is not JSON: ${(e as Error).message}`);
  }
  const d = doc as Partial<RawDoc>;
  if (d.schema !== RAW_SCHEMA) fail(`${exe} printed schema ${JSON.stringify(d.schema)}, expected ${RAW_SCHEMA}: rebuild it`);
  const limitsOk = (l: RawDoc['limits'] | undefined) => l !== undefined && Array.isArray(l.peak_i8) && Array.isArray(l.read);
  if (!d.machine || !d.config || !limitsOk(d.limits) || !limitsOk(d.limits_end) || !Array.isArray(d.points))
    fail(`${exe} printed a document without machine, config, limits (start and end) or points`);
  return d as RawDoc;
}

// ---- analysis ---------------------------------------------------------------------------------

// Each limit was measured at the start and at the end of the run; the higher
// rate is the limit (interference only ever lowers a probe), and the spread
// between the two is reported.
interface LimitValue {
  isa: string;
  threads: number;
  value: number;
  start?: number;
  end?: number;
  spread: number;
}

function combine<T extends { pass: 'start' | 'end'; isa: string; threads: number }>(
  all: T[],
  keyOf: (x: T) => string,
  rate: (x: T) => number,
): Map<string, LimitValue & { sample: T }> {
  const out = new Map<string, LimitValue & { sample: T }>();
  for (const x of all) {
    const k = keyOf(x);
    const v = rate(x);
    const cur = out.get(k) ?? { isa: x.isa, threads: x.threads, value: 0, spread: 0, sample: x };
    cur[x.pass] = v;
    if (v > cur.value) {
      cur.value = v;
      cur.sample = x;
    }
    if (cur.start !== undefined && cur.end !== undefined) cur.spread = Math.abs(cur.start - cur.end) / Math.max(cur.start, cur.end);
    out.set(k, cur);
  }
  return out;
}

function analyse(raw: RawDoc) {
  const allPeaks = [...raw.limits.peak_i8, ...raw.limits_end.peak_i8];
  const allReads = [...raw.limits.read, ...raw.limits_end.read];
  const peakMap = combine(
    allPeaks,
    (p) => `${p.isa}/${p.threads}`,
    (p) => (2 * p.macs_per_call) / p.median_s / 1e9,
  );
  const peaks = new Map([...peakMap].map(([k, v]) => [k, { gops: v.value }]));
  const peakOut = [...peakMap.values()].map((v) => ({
    isa: v.isa,
    threads: v.threads,
    instruction: v.sample.instruction,
    gops: v.value,
    gops_start: v.start ?? null,
    gops_end: v.end ?? null,
    spread: v.spread,
  }));
  const readKey = (r: RawRead) => `${r.label}/${r.label === 'dram' ? 0 : r.bytes}/${r.threads}`;
  const readMap = combine(allReads, readKey, (r) => r.bytes_per_call / r.median_s / 1e9);
  const reads = new Map([...readMap].map(([k, v]) => [k, v.value]));
  const readOut = [...readMap.values()].map((v) => ({
    label: v.sample.label,
    bytes: v.sample.bytes,
    threads: v.threads,
    isa: v.isa,
    bytes_per_call: v.sample.bytes_per_call,
    gbps: v.value,
    gbps_start: v.start ?? null,
    gbps_end: v.end ?? null,
    spread: v.spread,
  }));
  const dramMax = (t: number) => reads.get(`dram/0/${t}`);
  const best = raw.machine.best_isa;

  const byKey = new Map<string, RawPoint>();
  const key = (kind: string, rows: number, cols: number, n: number, isa: string, t: number) => `${kind}|${rows}x${cols}|${n}|${isa}|${t}`;
  for (const p of raw.points) byKey.set(key(p.kind, p.rows, p.cols, p.n, p.isa, p.threads), p);
  // Activation quantisation depends on (cols, n) only: measured once.
  const aqByCols = new Map<string, RawPoint>();
  for (const p of raw.points) if (p.kind === 'act_quant') aqByCols.set(`${p.cols}|${p.n}|${p.isa}|${p.threads}`, p);

  const rows: Row[] = [];
  for (const p of raw.points) {
    if (p.kind !== 'gemm_i8' && p.kind !== 'gemv_i8_cold') continue;
    const cold = p.kind === 'gemv_i8_cold';
    const fp = byKey.get(key(cold ? 'gemv_f32_cold' : 'gemm_f32', p.rows, p.cols, p.n, p.isa, p.threads));
    const aq = aqByCols.get(`${p.cols}|${p.n}|${p.isa}|${p.threads}`);
    const ternary = measured(p);
    const fp32 = measured(fp);
    const actQuant = measured(aq);
    const ops = 2 * p.rows * p.cols * p.n;
    const weightBytes = p.weight_bytes ?? packed2Bytes(p.rows, p.cols);
    const row: Row = {
      rows: p.rows,
      cols: p.cols,
      n: p.n,
      isa: p.isa,
      threads: p.threads,
      cache: cold ? 'cold' : 'hot',
      status: p.status,
      ops,
      weight_bytes: weightBytes,
      checks: [],
      notes: [],
    };
    if (p.reason) row.reason = p.reason;
    if (p.copies !== undefined) row.copies = p.copies;
    if (p.rotation_bytes !== undefined) row.rotation_bytes = p.rotation_bytes;
    if (ternary) {
      row.ternary = ternary;
      row.gops = ops / ternary.median_s / 1e9;
      if (p.n === 1) row.weight_gbps = weightBytes / ternary.median_s / 1e9;
    }
    if (fp32) {
      row.fp32 = fp32;
      row.fp32_gops = ops / fp32.median_s / 1e9;
      if (p.n === 1) row.fp32_weight_gbps = (fp?.weight_bytes ?? 4 * p.rows * p.cols) / fp32.median_s / 1e9;
    }
    if (actQuant) row.act_quant = actQuant;
    if (ternary && fp32) {
      row.ratio_vs_fp32 = fp32.median_s / ternary.median_s;
      if (actQuant) row.ratio_vs_fp32_incl_act_quant = fp32.median_s / (ternary.median_s + actQuant.median_s);
    }
    // The limit this point is judged against.
    const dram = dramMax(p.threads);
    if (row.gops !== undefined) {
      if (p.n === 1) {
        const bytes = Math.ceil(weightBytes / 64) * 64;
        const probe = cold ? byKey.get(key('read_cold', p.rows, p.cols, 1, p.isa, p.threads)) : undefined;
        const coldBw =
          probe && measured(probe) && probe.bytes_per_call !== undefined
            ? probe.bytes_per_call / (probe.median_s as number) / 1e9
            : undefined;
        const bw = cold ? coldBw : reads.get(`cache/${bytes}/${p.threads}`);
        if (bw !== undefined && row.weight_gbps !== undefined) {
          row.limit = cold
            ? { kind: 'dram read of the same copies', label: `read ${fmtBytes(probe?.rotation_bytes ?? 0)} rot.`, value: bw, unit: 'GB/s' }
            : { kind: 'cache read', label: `read ${fmtBytes(bytes)}`, value: bw, unit: 'GB/s' };
          row.pct_of_limit = row.weight_gbps / bw;
        } else if (cold) {
          row.notes.push('no matched DRAM read probe: not judged');
        }
        if (cold && dram !== undefined && row.weight_gbps !== undefined) row.pct_of_dram_stream = row.weight_gbps / dram;
        // The best any fp32 GEMV could do: stream its 4-byte weights at the
        // DRAM bandwidth of the same run.
        if (cold && dram !== undefined && ternary) row.ratio_vs_fp32_dram_bound = (4 * p.rows * p.cols) / (dram * 1e9) / ternary.median_s;
      } else {
        const pk = peaks.get(`${p.isa}/${p.threads}`);
        if (pk) {
          row.limit = { kind: 'int8 peak', label: `${p.isa} peak`, value: pk.gops, unit: 'GOPS' };
          row.pct_of_limit = row.gops / pk.gops;
        }
        const bp = peaks.get(`${best}/${p.threads}`);
        if (bp) row.pct_of_best_peak = row.gops / bp.gops;
      }
    }
    // Correctness of what was timed.
    for (const [name, c] of [
      ['ternary output', p.check],
      ['fp32 output', fp?.check],
      ['ternary vs fp32', cold ? undefined : fp?.check_i8_vs_f32],
      ['act-quant output', aq?.check],
    ] as const) {
      if (!c) continue;
      const detail =
        c.rel_diff !== undefined
          ? `rel diff ${c.rel_diff.toExponential(2)} (tol ${c.tol})`
          : `${c.kind ?? ''}${c.against ? ` (${c.against})` : ''}`;
      row.checks.push({ name, ok: c.ok, detail });
    }
    if (p.status !== 'ok') row.notes.push(`${p.status}: ${p.reason ?? ''}`);
    // Companions of the point (its fp32 run, its act-quant, its read probe):
    // said once unless their reason differs from the point's own.
    const cold_probe = cold ? byKey.get(key('read_cold', p.rows, p.cols, 1, p.isa, p.threads)) : undefined;
    for (const [what, c] of [
      ['fp32', fp],
      ['act-quant', aq],
      ['read probe', cold_probe],
    ] as const) {
      if (!c || c.status === 'ok') continue;
      if (p.status !== 'ok' && c.reason === p.reason) continue;
      row.notes.push(`${what} ${c.status}: ${c.reason ?? ''}`);
    }
    if (row.pct_of_limit !== undefined && row.pct_of_limit > 1.05)
      row.notes.push('above its limit: the probe or this point ran under interference');
    if (ternary?.reduced_samples || fp32?.reduced_samples) row.notes.push('fewer samples than asked (time cap on a slow point)');
    for (const c of row.checks) if (!c.ok) row.notes.push(`CHECK FAILED: ${c.name}`);
    rows.push(row);
  }

  const targets = judge(rows, best);
  const side = {
    act_quant: sideEntries(raw, ['act_quant']),
    matmul_f32: sideEntries(raw, SECTIONS.matmul_f32),
    rmsnorm: sideEntries(raw, SECTIONS.rmsnorm),
    elementwise: sideEntries(raw, SECTIONS.elementwise),
  };
  return { peaks: peakOut, reads: readOut, rows, targets, best, side };
}

// The weight-shape kinds count 2 * rows * cols * n flops; the others depend on
// (cols, n) only and report the bytes they read.
const WEIGHT_KINDS: readonly Kind[] = SECTIONS.matmul_f32;

function sideEntries(raw: RawDoc, kinds: readonly Kind[]): SideEntry[] {
  const keyOf = (p: RawPoint, isa: string, kind: Kind = p.kind) => `${kind}|${p.rows}x${p.cols}|${p.n}|${p.gain ?? ''}|${isa}|${p.threads}`;
  const byKey = new Map(raw.points.map((p) => [keyOf(p, p.isa), p]));
  return raw.points
    .filter((p) => kinds.includes(p.kind))
    .map((p) => {
      const weights = WEIGHT_KINDS.includes(p.kind);
      const e: SideEntry = {
        kind: p.kind,
        ...(weights ? { rows: p.rows } : {}),
        cols: p.cols,
        n: p.n,
        ...(p.gain !== undefined ? { gain: p.gain } : {}),
        isa: p.isa,
        threads: p.threads,
        status: p.status,
        ...(p.reason ? { reason: p.reason } : {}),
        check: p.check ?? null,
      };
      const m = measured(p);
      if (m) {
        e.median_s = m.median_s;
        e.samples = m.samples;
        if (weights) e.gflops = (2 * p.rows * p.cols * p.n) / m.median_s / 1e9;
        else e.gbps_in = p.bytes_in !== undefined ? p.bytes_in / m.median_s / 1e9 : null;
        const scalar = measured(byKey.get(keyOf(p, 'scalar')));
        e.ratio_vs_scalar = scalar ? scalar.median_s / m.median_s : null;
        if (p.kind === 'matmul_f32') {
          // The same product on the dequantised fp32 weights, same path and threads.
          const fp = measured(byKey.get(keyOf(p, p.isa, 'gemm_f32')));
          e.ratio_vs_gemm_f32 = fp ? fp.median_s / m.median_s : null;
        }
      }
      return e;
    });
}

function sideLabel(e: SideEntry): string {
  const shape = e.rows !== undefined ? `${e.rows}x${e.cols}` : `width ${e.cols}`;
  return `${e.kind}${e.gain ? `[${e.gain}]` : ''} ${shape} n=${e.n} ${e.isa} t${e.threads}`;
}

function rowLabel(r: Row): string {
  return `${r.rows}x${r.cols} n=${r.n} ${r.isa} t${r.threads}${r.cache === 'cold' ? ' cold' : ''}`;
}

function target(
  id: string,
  description: string,
  threshold: number,
  unit: string,
  rows: Row[],
  value: (r: Row) => number | undefined,
): Target {
  const points: TargetPoint[] = rows.map((r) => {
    const v = value(r);
    const checksOk = r.checks.every((c) => c.ok);
    if (v === undefined) return { label: rowLabel(r), value: null, pass: null, note: r.reason ?? 'not measured' };
    const pt: TargetPoint = { label: rowLabel(r), value: v, pass: v >= threshold && checksOk };
    if (!checksOk) pt.note = 'output check failed';
    return pt;
  });
  const judged = points.filter((p) => p.pass !== null);
  const passed = judged.filter((p) => p.pass).length;
  let verdict: Target['verdict'];
  if (judged.length === 0) verdict = 'not measured';
  else if (passed < judged.length) verdict = 'fail';
  else if (judged.length < points.length) verdict = 'incomplete';
  else verdict = 'pass';
  const t: Target = { id, description, threshold, unit, verdict, passed, total: points.length, points };
  const worst = judged.reduce<TargetPoint | undefined>((w, p) => (w === undefined || (p.value ?? 0) < (w.value ?? 0) ? p : w), undefined);
  if (worst) t.worst = worst;
  if (points.length === 0) t.note = 'this run has no such point (a partial run, or the best path was not selected)';
  return t;
}

function judge(rows: Row[], best: string): Target[] {
  const gemm = rows.filter((r) => r.isa === best && r.cache === 'hot' && r.n >= 128);
  const gemv = rows.filter(
    (r) => r.isa === best && r.cache === 'cold' && r.n === 1 && r.rows === GEMV_TARGET_SHAPE.rows && r.cols === GEMV_TARGET_SHAPE.cols,
  );
  return [
    target(
      'gemm_peak',
      `GEMM n >= 128 (${best}) reaches >= ${TARGET_GEMM_PEAK * 100}% of the measured int8 peak (same threads)`,
      TARGET_GEMM_PEAK,
      'fraction of peak',
      gemm,
      (r) => r.pct_of_limit,
    ),
    target(
      'gemm_vs_fp32',
      `GEMM n >= 128 (${best}) is >= ${TARGET_GEMM_VS_FP32}x faster than the fp32 GEMM (same shape, path, threads, run)`,
      TARGET_GEMM_VS_FP32,
      'speed-up',
      gemm,
      (r) => r.ratio_vs_fp32,
    ),
    target(
      'gemv_bandwidth',
      `GEMV ${GEMV_TARGET_SHAPE.rows}x${GEMV_TARGET_SHAPE.cols} cold-cache (${best}) streams its 2-bit weights at >= ${TARGET_GEMV_BW * 100}% of the DRAM read bandwidth (read of the same copies, same threads)`,
      TARGET_GEMV_BW,
      'fraction of bandwidth',
      gemv,
      (r) => r.pct_of_limit,
    ),
  ];
}

// ---- report ---------------------------------------------------------------------------------

function render(raw: RawDoc, a: ReturnType<typeof analyse>, complete: boolean, outPath: string): string {
  const m = raw.machine;
  const out: string[] = [];
  const threads = [...new Set(a.peaks.map((p) => p.threads))].sort((x, y) => x - y);
  out.push(`ternorm kernel benchmark${complete ? '' : ' (PARTIAL RUN: a subset or quick settings)'}`);
  out.push(`  ${m.cpu_model}, ${m.hardware_threads} hardware threads, LLC ${fmtBytes(m.llc_bytes)} (${m.llc_source})`);
  out.push(
    `  paths: ${m.supported_isas.join(', ')} (best ${m.best_isa}); ${String(raw.build['compiler'] ?? '')}` +
      `${raw.build['optimized'] === false ? ', NOT OPTIMISED' : ''}${raw.build['sanitized'] === true ? ', SANITIZED' : ''}; ` +
      `run took ${raw.total_s.toFixed(0)} s`,
  );
  out.push('');
  out.push('Machine limits, measured in this run at its start and at its end (medians; the higher is the limit)');
  const instr = new Map(a.peaks.map((p) => [p.isa, p.instruction]));
  const spread = (xs: { spread: number }[]) => fmtPct(Math.max(0, ...xs.map((x) => x.spread)));
  out.push(
    table(
      ['int8 peak', ...threads.map((t) => `t${t} GOPS`), 'start/end spread', 'probe'],
      [...instr.keys()].map((isa) => [
        isa,
        ...threads.map((t) => fmtNum(a.peaks.find((p) => p.isa === isa && p.threads === t)?.gops)),
        spread(a.peaks.filter((p) => p.isa === isa)),
        instr.get(isa) ?? '',
      ]),
    ),
  );
  out.push('');
  const readKeys = [...new Map(a.reads.map((r) => [`${r.label}/${r.bytes}`, r])).values()];
  out.push(
    table(
      ['read bandwidth', ...threads.map((t) => `t${t} GB/s`), 'start/end spread', 'probe'],
      readKeys.map((r) => [
        `${r.label === 'dram' ? 'DRAM' : 'cache'} ${fmtBytes(r.bytes)}`,
        ...threads.map((t) => fmtNum(a.reads.find((x) => x.label === r.label && x.bytes === r.bytes && x.threads === t)?.gbps)),
        spread(a.reads.filter((x) => x.label === r.label && x.bytes === r.bytes)),
        `${r.isa} loads${r.label === 'cache' ? `, ${r.bytes_per_call / r.bytes} passes per call` : ''}`,
      ]),
    ),
  );
  out.push('  GOPS = 2 x int8 multiply-accumulates per second. Cache reads: the working set of each hot GEMV.');
  out.push('  A large start/end spread means the machine was not quiet: treat every percentage below with care.');
  const dramProbe = a.reads.find((r) => r.label === 'dram');
  if (dramProbe && dramProbe.bytes < 4 * m.llc_bytes)
    out.push(`  WARNING: the DRAM probe buffer (${fmtBytes(dramProbe.bytes)}) is under 4x the LLC: part of it may be read from cache.`);
  if (a.rows.length > 0) renderGemm(a, m, out);
  renderSide(a.side, out);
  out.push('');
  out.push(`Targets (best path ${a.best})`);
  for (const t of a.targets) {
    const v = t.verdict === 'pass' ? 'PASS' : t.verdict === 'fail' ? 'FAIL' : t.verdict.toUpperCase();
    const fmt = (x: number | null) => (x === null ? '-' : t.unit === 'speed-up' ? fmtRatio(x) : fmtPct(x));
    const worst = t.worst ? `; worst ${fmt(t.worst.value)} at ${t.worst.label}` : '';
    out.push(`  ${v.padEnd(12)} ${t.description}`);
    out.push(`  ${''.padEnd(12)} ${t.note ?? `${t.passed}/${t.total} points pass${worst}`}`);
    for (const p of t.points.filter((x) => x.pass !== true))
      out.push(`  ${''.padEnd(12)}   ${p.pass === false ? 'below' : 'missing'}: ${p.label} ${fmt(p.value)}${p.note ? ` (${p.note})` : ''}`);
  }
  // act_quant's checks already count in the GEMM rows when those ran.
  const sideAll = [...a.side.matmul_f32, ...a.side.rmsnorm, ...a.side.elementwise, ...(a.rows.length === 0 ? a.side.act_quant : [])];
  const failed = [
    ...a.rows.flatMap((r) => r.checks.filter((c) => !c.ok).map((c) => `${rowLabel(r)}: ${c.name} ${c.detail}`)),
    ...sideAll.filter((e) => e.check && !e.check.ok).map((e) => `${sideLabel(e)}: ${checkDetail(e.check as RawCheck)}`),
  ];
  const total = a.rows.reduce((s, r) => s + r.checks.length, 0) + sideAll.filter((e) => e.check).length;
  out.push('');
  out.push(
    failed.length === 0
      ? `Output checks: all ${total} passed (every path bit-identical to the first; fp32 within tolerance).`
      : `OUTPUT CHECKS FAILED (${failed.length}): the timings of these points measure a wrong result\n    ${failed.join('\n    ')}`,
  );
  out.push(`Results: ${relative(process.cwd(), outPath) || outPath}`);
  return out.join('\n');
}

function checkDetail(c: RawCheck): string {
  return c.rel_diff !== undefined
    ? `rel diff ${c.rel_diff.toExponential(2)} (tol ${c.tol})`
    : `${c.kind ?? ''}${c.against ? ` (${c.against})` : ''}`;
}

function renderSide(side: ReturnType<typeof analyse>['side'], out: string[]): void {
  const time = (e: SideEntry) => (e.status === 'ok' ? fmtTime(e.median_s) : e.status.toUpperCase());
  const check = (e: SideEntry) => (e.check === null ? '-' : e.check.ok ? 'ok' : 'FAILED');
  const note = (e: SideEntry) => (e.status !== 'ok' ? `${e.status}: ${e.reason ?? ''}` : '');
  if (side.matmul_f32.length > 0) {
    out.push('');
    out.push('Ternary x fp32 training products (matmul_f32: y = x W^T, matmul_f32_t: dx = dy W; packed 2-bit weights');
    out.push('  decoded into the fp32 GEMM\'s panels). "x scalar": the scalar path\'s median / this one, same threads;');
    out.push('  "x gemm_f32": gemm_f32 on the dequantised fp32 weights (same shape, path, threads) / matmul_f32.');
    out.push(
      table(
        ['kind', 'shape', 'n', 'isa', 't', 'time', 'GFLOPS', 'x scalar', 'x gemm_f32', 'check', 'notes'],
        side.matmul_f32.map((e) => [
          e.kind,
          `${e.rows}x${e.cols}`,
          String(e.n),
          e.isa,
          String(e.threads),
          time(e),
          fmtNum(e.gflops),
          fmtRatio(e.ratio_vs_scalar ?? undefined),
          fmtRatio(e.ratio_vs_gemm_f32 ?? undefined),
          check(e),
          note(e),
        ]),
      ),
    );
  }
  for (const [title, entries] of [
    ['Fused RMSNorm with gain (rmsnorm_gain_f32 / rmsnorm_gain_i8: fp32 or int8 out; the gain decoded in every call)', side.rmsnorm],
    ['Element-wise kernels (softmax: cross_entropy_forward in place; swiglu_forward / swiglu_backward, f = width)', side.elementwise],
    ['Activation quantisation (quantize_activations)', side.act_quant],
  ] as const) {
    if (entries.length === 0) continue;
    out.push('');
    out.push(title);
    out.push(
      table(
        ['kind', 'gain', 'width', 'n', 'isa', 't', 'time', 'GB/s in', 'x scalar', 'check', 'notes'],
        entries.map((e) => [
          e.kind,
          e.gain ?? '-',
          String(e.cols),
          String(e.n),
          e.isa,
          String(e.threads),
          time(e),
          fmtNum(e.gbps_in ?? undefined),
          fmtRatio(e.ratio_vs_scalar ?? undefined),
          check(e),
          note(e),
        ]),
      ),
    );
  }
}

function renderGemm(a: ReturnType<typeof analyse>, m: RawMachine, out: string[]): void {
  out.push('');
  out.push('Ternary int8 GEMM (gemm_i8 alone; activation quantisation timed separately, "aq") vs fp32 GEMM (gemm_f32, Y = X W^T)');
  out.push('  same shape, ISA path and threads, same run. n = 1 is the GEMV: GB/s = packed 2-bit weight bytes / time,');
  out.push('  judged against a streaming read of the same bytes: hot = the weights stay in cache between calls (read probe of');
  out.push('  that working set); cold = each call reads the next of several copies of the weights, together >= 4x the LLC');
  out.push("  (read probe of the same copies, measured just before). n >= 128: % of the same path's int8 peak.");
  const body = a.rows.map((r) => [
    `${r.rows}x${r.cols}`,
    String(r.n),
    r.isa,
    String(r.threads),
    r.cache,
    r.status === 'ok' ? fmtTime(r.ternary?.median_s) : r.status.toUpperCase(),
    fmtNum(r.gops),
    fmtNum(r.weight_gbps),
    fmtPct(r.pct_of_limit),
    r.limit?.label ?? '-',
    fmtPct(r.pct_of_best_peak),
    fmtTime(r.fp32?.median_s),
    fmtRatio(r.ratio_vs_fp32),
    fmtTime(r.act_quant?.median_s),
    fmtRatio(r.ratio_vs_fp32_incl_act_quant),
    `${r.ternary?.samples ?? 0}/${r.fp32?.samples ?? 0}`,
    r.notes.join('; '),
  ]);
  out.push(
    table(
      [
        'shape',
        'n',
        'isa',
        't',
        'cache',
        'ternary',
        'GOPS',
        'W GB/s',
        '% limit',
        'limit',
        '% best pk',
        'fp32',
        'x fp32',
        'aq',
        'x fp32 w/ aq',
        'samples',
        'notes',
      ],
      body,
    ),
  );
  out.push('  "% best pk": GOPS as a share of the best path\'s int8 peak at the same threads. samples: ternary/fp32.');
  const cold = a.rows.filter((r) => r.cache === 'cold');
  if (cold.length > 0) {
    out.push('');
    out.push('Cold-cache GEMV: weights from DRAM (the honest GEMV number for a model larger than the cache)');
    const dramLabel = fmtBytes(a.reads.find((r) => r.label === 'dram')?.bytes ?? 0);
    out.push(
      table(
        [
          'shape',
          'isa',
          't',
          'ternary',
          'W GB/s',
          'same-copies read GB/s',
          '% of it',
          `DRAM stream ${dramLabel} GB/s`,
          '% of it',
          'fp32 (gemm_f32)',
          'x fp32',
          'x fp32 at DRAM bound',
        ],
        cold.map((r) => [
          `${r.rows}x${r.cols}`,
          r.isa,
          String(r.threads),
          r.status === 'ok' ? fmtTime(r.ternary?.median_s) : r.status.toUpperCase(),
          fmtNum(r.weight_gbps),
          fmtNum(r.limit?.value),
          fmtPct(r.pct_of_limit),
          fmtNum(a.reads.find((x) => x.label === 'dram' && x.threads === r.threads)?.gbps),
          fmtPct(r.pct_of_dram_stream),
          fmtTime(r.fp32?.median_s),
          fmtRatio(r.ratio_vs_fp32),
          fmtRatio(r.ratio_vs_fp32_dram_bound),
        ]),
      ),
    );
    out.push('  "x fp32 at DRAM bound": against the fastest any fp32 GEMV could be (its 4-byte weights at the DRAM stream rate).');
  }
}

// Complete = the default grid at the default settings.
function isComplete(raw: RawDoc, passthrough: string[]): boolean {
  return passthrough.length === 0 && !raw.config.quick;
}

function main(): number {
  const args = parseArgs(process.argv.slice(2));
  if (args.help) {
    process.stdout.write(
      'node dist/bench/kernels.js [--exe PATH] [--out FILE] [executable options]\n' +
        `  --exe PATH   the measuring executable (default ${relative(process.cwd(), DEFAULT_EXE)})\n` +
        '  --out FILE   results JSON (default bench/results/kernels.json; bench/results/kernels-partial.json\n' +
        '               when executable options make it a partial run)\n' +
        'Executable options, passed through:\n',
    );
    if (existsSync(args.exe)) spawnSync(args.exe, ['--help'], { stdio: 'inherit' });
    else process.stdout.write(`  (${args.exe} is not built: run npm run build:native)\n`);
    return 0;
  }
  const startedAt = new Date();
  const raw = runExecutable(args.exe, args.passthrough);
  const complete = isComplete(raw, args.passthrough);
  const outPath = args.out ?? join(REPO, 'bench', 'results', complete ? 'kernels.json' : 'kernels-partial.json');
  const a = analyse(raw);
  const checksOk =
    a.rows.every((r) => r.checks.every((c) => c.ok)) &&
    Object.values(a.side)
      .flat()
      .every((e) => e.check === null || e.check.ok);
  const commit = gitOutput(REPO, ['rev-parse', 'HEAD']);
  const dirty = gitOutput(REPO, ['status', '--porcelain']);
  const doc = {
    schema: SCHEMA,
    generated_at: new Date().toISOString(),
    started_at: startedAt.toISOString(),
    complete,
    arguments: args.passthrough,
    machine: raw.machine,
    build: {
      ...raw.build,
      executable: relative(REPO, args.exe),
      git_commit: commit ?? null,
      git_dirty: dirty === undefined ? null : dirty.length > 0,
      node: process.version,
    },
    config: raw.config,
    method: {
      statistic: 'median of samples; each sample times a batch of calls lasting >= sample_time_s and divides by its call count',
      ternary_timing:
        'gemm_i8 alone on pre-quantised int8 activations; activation quantisation (quantize_activations) is timed separately as act_quant',
      ops: '2 * rows * cols * n per GEMM (int8 multiply-accumulate = 2 ops)',
      weight_gbps: 'packed 2-bit weight bytes (packed2_bytes) / median time, n = 1 only',
      ratio_vs_fp32: 'fp32 median / ternary median (> 1: ternary faster); *_incl_act_quant adds act_quant to the ternary time',
      ratio_vs_scalar:
        'act_quant, matmul_f32, rmsnorm, elementwise: the scalar path median / this path median at the same threads, kind, shape, n and gain (> 1: faster than the reference)',
      side_throughput:
        'matmul_f32*: gflops = 2 * rows * cols * n / median; the others: gbps_in = bytes read (x; SwiGLU: gate and up, and dy) / median',
      limits:
        'int8 peak: register-only multiply-accumulate probe per path; read: SIMD streaming sum over a DRAM buffer >> LLC, over each hot GEMV working set, and over the cold GEMV weight copies (measured just before that GEMV)',
      cold_gemv:
        'each call reads the next of copies >= 4x LLC of the weights; judged against the read of the same copies (pct_of_limit) and reported against the DRAM stream (pct_of_dram_stream)',
    },
    limits: { peak_i8: a.peaks, read: a.reads },
    results: a.rows,
    act_quant: a.side.act_quant,
    matmul_f32: a.side.matmul_f32,
    rmsnorm: a.side.rmsnorm,
    elementwise: a.side.elementwise,
    targets: a.targets,
    checks_ok: checksOk,
    raw_limits: { start: raw.limits, end: raw.limits_end },
    raw_points: raw.points,
    total_s: raw.total_s,
  };
  writeAtomic(outPath, JSON.stringify(doc, null, 1) + '\n');
  process.stdout.write(render(raw, a, complete, outPath) + '\n');
  // A benchmark that timed a wrong result must not look like a success.
  return checksOk ? 0 : 1;
}

try {
  process.exitCode = main();
} catch (e) {
  if (e instanceof BenchError) {
    process.stderr.write(`bench:kernels: ${e.message}\n`);
    process.exitCode = 1;
  } else {
    throw e;
  }
}
