// The typed surface of the native kernels: ternary weights (TernaryMatrix),
// per-token int8 activations, fp32 GEMM and the fused RMSNorm-with-gain.
//
// Every argument is checked here first, so a mistake reads as
//   TypeError  "x must be a Float32Array"
//   RangeError "x must have n * cols = 12 elements, got 10"
// and the addon checks again (it is safe to call directly). NaN/Inf in inputs
// and non-finite scales are RangeErrors. Results are deterministic: the same on
// every ISA path bit for bit where the kernels promise it (int8 paths, RMSNorm),
// and independent of `threads`.
//
// Async variants run on the libuv thread pool on copies of their inputs taken
// when called, so the inputs may be mutated, transferred or detached at once.
// `c` of gemmF32Async is written when the promise settles; if it was detached
// meanwhile, the promise rejects. Calls share one native thread pool per
// addon instance; concurrent calls run their parallel regions one at a time.

import { types } from 'node:util';

import { loadAddon, type CpuFeatures, type GainSchemeName, type Isa, type NativeAddon } from './native.js';

export type { CpuFeatures, Isa } from './native.js';

/** Options every kernel call takes. */
export interface KernelOptions {
  /** Threads to split the work over, 1..cpuInfo().threads; default all of them. */
  threads?: number;
}

export interface CpuInfo {
  features: CpuFeatures;
  /** ISA paths this CPU and build can run, scalar first. */
  supportedIsas: Isa[];
  /** The path every kernel uses: TERNORM_ISA when set, else the best supported one. */
  defaultIsa: Isa;
  /** Size of the native thread pool (the hardware threads). */
  threads: number;
}

/**
 * CPU features and ISA paths as seen by one addon instance. Throws an Error
 * when TERNORM_ISA names an unknown path or one this CPU cannot run.
 */
export function cpuInfoOf(addon: NativeAddon): CpuInfo {
  const raw = addon.cpuInfo();
  if (raw.defaultIsa === null) throw new Error(raw.isaError ?? 'ternorm: no usable ISA path');
  return { features: raw.features, supportedIsas: raw.supportedIsas, defaultIsa: raw.defaultIsa, threads: raw.threads };
}

export function cpuInfo(): CpuInfo {
  return cpuInfoOf(loadAddon());
}

// ---- argument checks ------------------------------------------------------------------
const MAX_SIZE = 2 ** 31;

function size(v: unknown, name: string): number {
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number (an integer in 1..2^31), got ${typeof v}`);
  if (!Number.isInteger(v) || v < 1 || v > MAX_SIZE) {
    throw new RangeError(`${name} must be an integer in 1..2^31, got ${v}`);
  }
  return v;
}

function product(a: number, b: number, what: string): number {
  const p = a * b;
  if (!Number.isSafeInteger(p)) throw new RangeError(`${what} = ${a} * ${b} is too large`);
  return p;
}

type Guard<T> = (v: unknown) => v is T;
const isF32 = types.isFloat32Array as Guard<Float32Array>;
const isI8 = types.isInt8Array as Guard<Int8Array>;
const isU8 = types.isUint8Array as Guard<Uint8Array>;
const isU16 = types.isUint16Array as Guard<Uint16Array>;

function typed<T>(v: unknown, guard: Guard<T>, typeName: string, name: string): T {
  if (!guard(v)) throw new TypeError(`${name} must be ${typeName.startsWith('Int') ? 'an' : 'a'} ${typeName}`);
  return v;
}

function length(arr: { length: number }, expected: number, name: string, formula: string): void {
  if (arr.length !== expected) {
    throw new RangeError(`${name} must have ${formula} = ${expected} elements, got ${arr.length}`);
  }
}

function finite(arr: Float32Array, name: string): void {
  for (let i = 0; i < arr.length; i++) {
    const v = arr[i] as number;
    if (!Number.isFinite(v)) throw new RangeError(`${name}[${i}] is ${v}; expected finite values`);
  }
}

const FLT_MAX = 3.4028234663852886e38;

function floatNumber(v: unknown, name: string): number {
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number, got ${typeof v}`);
  if (!Number.isFinite(v) || Math.abs(v) > FLT_MAX) {
    throw new RangeError(`${name} must be a finite number within the float range, got ${v}`);
  }
  return v;
}

function bool(v: unknown, name: string): boolean {
  if (typeof v !== 'boolean') throw new TypeError(`${name} must be a boolean, got ${typeof v}`);
  return v;
}

let poolSize: number | undefined;

function threadsOf(opts: KernelOptions | undefined): number | undefined {
  if (opts === undefined || opts === null) return undefined;
  if (typeof opts !== 'object') throw new TypeError('options must be an object like { threads: 2 }');
  const t: unknown = opts.threads;
  if (t === undefined) return undefined;
  poolSize ??= loadAddon().cpuInfo().threads;
  if (typeof t !== 'number') throw new TypeError(`threads must be a number (an integer in 1..${poolSize}), got ${typeof t}`);
  if (!Number.isInteger(t) || t < 1 || t > poolSize) {
    throw new RangeError(`threads must be an integer in 1..${poolSize} (the native pool size), got ${t}`);
  }
  return t;
}

/** Row stride of per-token int8 activations: cols rounded up to the kernels' column block. */
export function paddedCols(cols: number): number {
  size(cols, 'cols');
  const block = loadAddon().ternaryLayout.colBlock;
  return Math.ceil(cols / block) * block;
}

// ---- per-token int8 activations ---------------------------------------------------------
/** n tokens of cols activations quantised to int8, rows zero-padded to paddedCols. */
export interface QuantizedActivations {
  /** n x paddedCols, row-major; the padding is zero. */
  q: Int8Array;
  /** n per-token scales: x ~= q * scale. */
  scales: Float32Array;
  n: number;
  cols: number;
  paddedCols: number;
}

/**
 * Per-token absmax int8 quantisation: scale = max|x| / 127,
 * q = clamp(round_half_even(x * 127 / max|x|), -127, 127); an all-zero row gets
 * scale 0. x is n x cols, finite.
 */
export function quantizeActivations(x: Float32Array, n: number, cols: number, opts?: KernelOptions): QuantizedActivations {
  typed(x, isF32, 'Float32Array', 'x');
  size(n, 'n');
  size(cols, 'cols');
  length(x, product(n, cols, 'n * cols'), 'x', 'n * cols');
  const { q, scales } = loadAddon().quantizeActivations(x, n, cols, threadsOf(opts));
  return { q, scales, n, cols, paddedCols: paddedCols(cols) };
}

/** Values per activation block of quantizeActivationsBlock (llama.cpp's QK_K). */
export const ACT_BLOCK = 256;

/**
 * Per-block int8 quantisation, llama.cpp's q8_K (the activations of its TQ1_0 / TQ2_0 matmuls):
 * each token's row is cut into blocks of ACT_BLOCK values (the last one holds the rest), each
 * quantised like a token of quantizeActivations with scale 1 / (127 / max|x|) instead of
 * max|x| / 127. scales has n * ceil(cols / 256) entries, token-major.
 */
export function quantizeActivationsBlock(x: Float32Array, n: number, cols: number, opts?: KernelOptions): QuantizedActivations {
  typed(x, isF32, 'Float32Array', 'x');
  size(n, 'n');
  size(cols, 'cols');
  length(x, product(n, cols, 'n * cols'), 'x', 'n * cols');
  const { q, scales } = loadAddon().quantizeActivationsBlock(x, n, cols, threadsOf(opts));
  return { q, scales, n, cols, paddedCols: paddedCols(cols) };
}

// ---- ternary weights ----------------------------------------------------------------------
/**
 * A ternary weight matrix W (rows x cols = out_features x in_features), W[r][c]
 * = trit[r][c] * scales[r] with trits in {-1, 0, 1}, held in the kernels' 2-bit
 * layout. Treat `packed` and `scales` as read-only: the kernels read them as is.
 */
export class TernaryMatrix {
  readonly rows: number;
  readonly cols: number;
  /** rows scales; a per-tensor scale is repeated on every row. */
  readonly scales: Float32Array;
  /** The 2-bit compute layout (16-row panels x 16-column blocks). */
  readonly packed: Uint8Array;

  private constructor(packed: Uint8Array, scales: Float32Array, rows: number, cols: number) {
    this.packed = packed;
    this.scales = scales;
    this.rows = rows;
    this.cols = cols;
  }

  /** Row stride of the activations gemmI8 takes. */
  get paddedCols(): number {
    return paddedCols(this.cols);
  }

  /**
   * absmean quantisation of a float matrix (row-major): scale = mean|W| over
   * the tensor (or each row with perRow), trit = clamp(round_half_even(W / scale), -1, 1).
   */
  static fromFloat32(w: Float32Array, rows: number, cols: number, opts: { perRow?: boolean } = {}): TernaryMatrix {
    typed(w, isF32, 'Float32Array', 'w');
    size(rows, 'rows');
    size(cols, 'cols');
    length(w, product(rows, cols, 'rows * cols'), 'w', 'rows * cols');
    const perRow = opts.perRow === undefined ? false : bool(opts.perRow, 'perRow');
    const addon = loadAddon();
    const { trits, scales } = addon.absmeanQuantize(w, rows, cols, perRow);
    return new TernaryMatrix(addon.pack2(trits, rows, cols), scales, rows, cols);
  }

  /**
   * From trits (rows x cols, each -1, 0 or 1) and finite scales: one per row, or
   * a single per-tensor scale. The scales are copied.
   */
  static fromTrits(trits: Int8Array, scales: Float32Array, rows: number, cols: number): TernaryMatrix {
    typed(trits, isI8, 'Int8Array', 'trits');
    size(rows, 'rows');
    size(cols, 'cols');
    length(trits, product(rows, cols, 'rows * cols'), 'trits', 'rows * cols');
    const rowScales = TernaryMatrix.rowScales(scales, rows);
    return new TernaryMatrix(loadAddon().pack2(trits, rows, cols), rowScales, rows, cols);
  }

  /** From the 5-trits-per-byte storage layout (see toStorage) and scales as in fromTrits. */
  static fromStorage(bytes: Uint8Array, scales: Float32Array, rows: number, cols: number): TernaryMatrix {
    typed(bytes, isU8, 'Uint8Array', 'bytes');
    size(rows, 'rows');
    size(cols, 'cols');
    const count = product(rows, cols, 'rows * cols');
    length(bytes, Math.ceil(count / 5), 'bytes', 'ceil(rows * cols / 5)');
    const rowScales = TernaryMatrix.rowScales(scales, rows);
    const addon = loadAddon();
    const trits = addon.unpack5(bytes, count);
    return new TernaryMatrix(addon.pack2(trits, rows, cols), rowScales, rows, cols);
  }

  private static rowScales(scales: Float32Array, rows: number): Float32Array {
    typed(scales, isF32, 'Float32Array', 'scales');
    if (scales.length !== rows && scales.length !== 1) {
      throw new RangeError(`scales must have rows = ${rows} elements (or 1, per tensor), got ${scales.length}`);
    }
    finite(scales, 'scales');
    return scales.length === rows ? scales.slice() : new Float32Array(rows).fill(scales[0] as number);
  }

  /** The trits, rows x cols row-major. */
  toTrits(): Int8Array {
    return loadAddon().unpack2(this.packed, this.rows, this.cols);
  }

  /**
   * The trits in the 5-per-byte storage layout (1.6 bits per weight):
   * byte = sum_{i<5} (t_i + 1) * 3^i over consecutive row-major trits. The
   * scales are stored separately.
   */
  toStorage(): Uint8Array {
    const addon = loadAddon();
    return addon.pack5(addon.unpack2(this.packed, this.rows, this.cols));
  }

  private checkI8(q: Int8Array, xScales: Float32Array, n: number, blocks = 1): void {
    typed(q, isI8, 'Int8Array', 'q');
    typed(xScales, isF32, 'Float32Array', 'xScales');
    size(n, 'n');
    length(q, product(n, this.paddedCols, 'n * paddedCols'), 'q', 'n * paddedCols');
    length(xScales, n * blocks, 'xScales', blocks === 1 ? 'n' : 'n * ceil(cols / 256)');
    finite(xScales, 'xScales');
  }

  /**
   * y = x W^T from int8 activations (see quantizeActivations): q is n x paddedCols
   * with zero padding, xScales has n entries; y is n x rows with
   * y[t][r] = (float(dot(trit[r], q[t])) * xScales[t]) * scales[r], exact on every ISA path.
   */
  gemmI8(q: Int8Array, xScales: Float32Array, n: number, opts?: KernelOptions): Float32Array {
    this.checkI8(q, xScales, n);
    return loadAddon().gemmI8(this.packed, this.scales, this.rows, this.cols, q, xScales, n, threadsOf(opts));
  }

  /**
   * y = x W^T from per-block int8 activations (see quantizeActivationsBlock): xScales has
   * n * ceil(cols / 256) entries; y[t][r] = sum over blocks b, in order from 0.0f, of
   * float(dot_b(trit[r], q[t])) * (xScales[t][b] * scales[r]), the same bits on every ISA path.
   */
  gemmI8Block(q: Int8Array, xScales: Float32Array, n: number, opts?: KernelOptions): Float32Array {
    this.checkI8(q, xScales, n, Math.ceil(this.cols / ACT_BLOCK));
    return loadAddon().gemmI8Block(this.packed, this.scales, this.rows, this.cols, q, xScales, n, threadsOf(opts));
  }

  /** gemmI8 on the libuv pool (on copies of q and xScales). */
  async gemmI8Async(q: Int8Array, xScales: Float32Array, n: number, opts?: KernelOptions): Promise<Float32Array> {
    this.checkI8(q, xScales, n);
    return loadAddon().gemmI8Async(this.packed, this.scales, this.rows, this.cols, q, xScales, n, threadsOf(opts));
  }

  private checkF32(v: Float32Array, name: string, n: number, width: number, formula: string): void {
    typed(v, isF32, 'Float32Array', name);
    size(n, 'n');
    length(v, product(n, width, formula), name, formula);
  }

  /** y = x W^T in fp32: x is n x cols (finite), y is n x rows. */
  matmulF32(x: Float32Array, n: number, opts?: KernelOptions): Float32Array {
    this.checkF32(x, 'x', n, this.cols, 'n * cols');
    return loadAddon().matmulF32(this.packed, this.scales, this.rows, this.cols, x, n, threadsOf(opts));
  }

  async matmulF32Async(x: Float32Array, n: number, opts?: KernelOptions): Promise<Float32Array> {
    this.checkF32(x, 'x', n, this.cols, 'n * cols');
    return loadAddon().matmulF32Async(this.packed, this.scales, this.rows, this.cols, x, n, threadsOf(opts));
  }

  /** dx = dy W (the backward of matmulF32 w.r.t. x): dy is n x rows (finite), dx is n x cols. */
  matmulF32T(dy: Float32Array, n: number, opts?: KernelOptions): Float32Array {
    this.checkF32(dy, 'dy', n, this.rows, 'n * rows');
    return loadAddon().matmulF32T(this.packed, this.scales, this.rows, this.cols, dy, n, threadsOf(opts));
  }

  async matmulF32TAsync(dy: Float32Array, n: number, opts?: KernelOptions): Promise<Float32Array> {
    this.checkF32(dy, 'dy', n, this.rows, 'n * rows');
    return loadAddon().matmulF32TAsync(this.packed, this.scales, this.rows, this.cols, dy, n, threadsOf(opts));
  }
}

// ---- fp32 GEMM ------------------------------------------------------------------------------
export interface GemmF32Args {
  /** op(A) is m x k: A is stored m x k, or k x m with transA. */
  a: Float32Array;
  /** op(B) is k x n: B is stored k x n, or n x k with transB. */
  b: Float32Array;
  m: number;
  n: number;
  k: number;
  transA?: boolean;
  transB?: boolean;
  /** Default 1. */
  alpha?: number;
  /** Default 0; nonzero needs c. */
  beta?: number;
  /** m x n; when given, the result is written into it (C = alpha op(A) op(B) + beta C) and it is returned. */
  c?: Float32Array;
}

type GemmCall = Parameters<NativeAddon['gemmF32']>;

function gemmArgs(args: GemmF32Args, opts: KernelOptions | undefined): GemmCall {
  if (typeof args !== 'object' || args === null) throw new TypeError('gemmF32 takes an object { a, b, m, n, k, ... }');
  const a = typed(args.a, isF32, 'Float32Array', 'a');
  const b = typed(args.b, isF32, 'Float32Array', 'b');
  const m = size(args.m, 'm');
  const n = size(args.n, 'n');
  const k = size(args.k, 'k');
  const transA = args.transA === undefined ? false : bool(args.transA, 'transA');
  const transB = args.transB === undefined ? false : bool(args.transB, 'transB');
  const alpha = args.alpha === undefined ? 1 : floatNumber(args.alpha, 'alpha');
  const beta = args.beta === undefined ? 0 : floatNumber(args.beta, 'beta');
  length(a, product(m, k, 'm * k'), 'a', transA ? 'k * m' : 'm * k');
  length(b, product(k, n, 'k * n'), 'b', transB ? 'n * k' : 'k * n');
  let c: Float32Array | undefined;
  if (args.c !== undefined) {
    c = typed(args.c, isF32, 'Float32Array', 'c');
    length(c, product(m, n, 'm * n'), 'c', 'm * n');
    if (c.buffer === a.buffer || c.buffer === b.buffer) {
      const overlaps = (x: Float32Array): boolean =>
        x.buffer === c!.buffer && x.byteOffset < c!.byteOffset + c!.byteLength && c!.byteOffset < x.byteOffset + x.byteLength;
      if (overlaps(a) || overlaps(b)) throw new RangeError('c must not share memory with a or b (it is written while they are read)');
    }
  } else if (beta !== 0) {
    throw new RangeError(`beta = ${beta} needs c to accumulate into; pass c, or leave beta at 0`);
  }
  return [a, b, m, n, k, transA, transB, alpha, beta, c, threadsOf(opts)];
}

/** C = alpha op(A) op(B) + beta C, row-major fp32; inputs must be finite. */
export function gemmF32(args: GemmF32Args, opts?: KernelOptions): Float32Array {
  return loadAddon().gemmF32(...gemmArgs(args, opts));
}

/** gemmF32 on the libuv pool (on copies of a, b and c; c receives the result when it settles). */
export async function gemmF32Async(args: GemmF32Args, opts?: KernelOptions): Promise<Float32Array> {
  return loadAddon().gemmF32Async(...gemmArgs(args, opts));
}

// ---- RMSNorm with a per-channel gain -----------------------------------------------------
/** A gain vector (d entries) in one of its stored encodings. */
export type Gain =
  | { scheme: 'raw_fp32'; data: Float32Array }
  /** IEEE binary16 bit patterns. */
  | { scheme: 'raw_fp16'; data: Uint16Array }
  /** g = data * scale (per-tensor int8). */
  | { scheme: 'int8_per_tensor'; data: Int8Array; scale: number };

export interface RmsNormGainArgs {
  /** n x d, finite. */
  x: Float32Array;
  n: number;
  d: number;
  /** d base RMSNorm weights. */
  wBase: Float32Array;
  gain: Gain;
  /** Default 1e-5; finite and > 0. */
  eps?: number;
}

export interface RmsNormGainBackwardArgs extends RmsNormGainArgs {
  /** n x d upstream gradient of y. */
  dy: Float32Array;
}

type NormCall = [
  Float32Array,
  number,
  number,
  Float32Array,
  GainSchemeName,
  Float32Array | Uint16Array | Int8Array,
  number | undefined,
  number,
];

function normArgs(args: RmsNormGainArgs): NormCall {
  if (typeof args !== 'object' || args === null) throw new TypeError('expected an object { x, n, d, wBase, gain, eps? }');
  const x = typed(args.x, isF32, 'Float32Array', 'x');
  const n = size(args.n, 'n');
  const d = size(args.d, 'd');
  const wBase = typed(args.wBase, isF32, 'Float32Array', 'wBase');
  length(x, product(n, d, 'n * d'), 'x', 'n * d');
  length(wBase, d, 'wBase', 'd');
  const gain: unknown = args.gain;
  if (typeof gain !== 'object' || gain === null)
    throw new TypeError("gain must be an object { scheme: 'raw_fp32' | 'raw_fp16' | 'int8_per_tensor', data, scale? }");
  const g = gain as { scheme?: unknown; data?: unknown; scale?: unknown };
  let data: Float32Array | Uint16Array | Int8Array;
  let scale: number | undefined;
  switch (g.scheme) {
    case 'raw_fp32':
      data = typed(g.data, isF32, 'Float32Array', "gain.data (scheme 'raw_fp32')");
      break;
    case 'raw_fp16':
      data = typed(g.data, isU16, 'Uint16Array', "gain.data (scheme 'raw_fp16')");
      break;
    case 'int8_per_tensor':
      data = typed(g.data, isI8, 'Int8Array', "gain.data (scheme 'int8_per_tensor')");
      scale = floatNumber(g.scale, 'gain.scale');
      break;
    default:
      if (typeof g.scheme !== 'string') throw new TypeError("gain.scheme must be 'raw_fp32', 'raw_fp16' or 'int8_per_tensor'");
      throw new RangeError(`gain.scheme must be 'raw_fp32', 'raw_fp16' or 'int8_per_tensor', got '${g.scheme}'`);
  }
  length(data, d, 'gain.data', 'd');
  const eps = args.eps === undefined ? 1e-5 : floatNumber(args.eps, 'eps');
  if (!(eps > 0)) throw new RangeError(`eps must be > 0, got ${eps}`);
  return [x, n, d, wBase, g.scheme, data, scale, eps];
}

/**
 * y[t][c] = x[t][c] / sqrt(mean_c(x[t]^2) + eps) * wBase[c] * g[c], fp32 out,
 * bit-identical on every ISA path; g decoded from the gain's encoding.
 */
export function rmsNormGain(args: RmsNormGainArgs, opts?: KernelOptions): Float32Array {
  return loadAddon().rmsNormGain(...normArgs(args), threadsOf(opts));
}

/** rmsNormGain followed by quantizeActivations, fused, bit for bit the same. */
export function rmsNormGainI8(args: RmsNormGainArgs, opts?: KernelOptions): QuantizedActivations {
  const call = normArgs(args);
  const { q, scales } = loadAddon().rmsNormGainI8(...call, threadsOf(opts));
  return { q, scales, n: call[1], cols: call[2], paddedCols: paddedCols(call[2]) };
}

/** Gradients of rmsNormGain for upstream dy: dx (n x d) and dGain (d, w.r.t. the decoded g). */
export function rmsNormGainBackward(args: RmsNormGainBackwardArgs, opts?: KernelOptions): { dx: Float32Array; dGain: Float32Array } {
  const call = normArgs(args);
  const dy = typed(args.dy, isF32, 'Float32Array', 'dy');
  length(dy, call[1] * call[2], 'dy', 'n * d');
  return loadAddon().rmsNormGainBackward(...call, dy, threadsOf(opts));
}
