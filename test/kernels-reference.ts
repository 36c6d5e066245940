// Independent plain-JS references for the native kernels, written from the
// contracts in native/ternary/ternary.h, native/gemm/gemm.h and
// native/norm/rmsnorm.h (not from the C++ code). Integer paths are reproduced
// exactly with Math.fround; float paths are computed in double together with
// a magnitude bound for the tolerance.

const f = Math.fround;

/** Deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n floats, uniform in [-scale, scale). */
export function randomF32(rand: () => number, count: number, scale = 1): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = (rand() * 2 - 1) * scale;
  return out;
}

export function randomTrits(rand: () => number, count: number): Int8Array {
  const out = new Int8Array(count);
  for (let i = 0; i < count; i++) out[i] = Math.floor(rand() * 3) - 1;
  return out;
}

/** Round half to even of a double holding a float value (std::nearbyint in the default mode). */
export function roundHalfEven(v: number): number {
  const fl = Math.floor(v);
  const diff = v - fl;
  if (diff < 0.5) return fl;
  if (diff > 0.5) return fl + 1;
  return fl % 2 === 0 ? fl : fl + 1;
}

// ---- ternary --------------------------------------------------------------------------
/** absmean: scale = mean|w| (double sum in index order, rounded to float), trit = clamp(rne(w / scale)). */
export function absmeanRef(w: Float32Array, rows: number, cols: number, perRow: boolean): { trits: Int8Array; scales: Float32Array } {
  const trits = new Int8Array(rows * cols);
  const scales = new Float32Array(rows);
  const quantize = (start: number, count: number, scale: number): void => {
    for (let i = start; i < start + count; i++) {
      if (scale === 0) {
        trits[i] = 0;
        continue;
      }
      const v = roundHalfEven(f((w[i] as number) / scale));
      trits[i] = v > 1 ? 1 : v < -1 ? -1 : v;
    }
  };
  const meanAbs = (start: number, count: number): number => {
    let sum = 0;
    for (let i = start; i < start + count; i++) sum += Math.abs(w[i] as number);
    return f(sum / count);
  };
  if (perRow) {
    for (let r = 0; r < rows; r++) {
      scales[r] = meanAbs(r * cols, cols);
      quantize(r * cols, cols, scales[r] as number);
    }
  } else {
    const s = meanAbs(0, rows * cols);
    scales.fill(s);
    quantize(0, rows * cols, s);
  }
  return { trits, scales };
}

export const ROW_PANEL = 16;
export const COL_BLOCK = 16;
export const paddedColsRef = (cols: number): number => Math.ceil(cols / COL_BLOCK) * COL_BLOCK;

/**
 * The 2-bit compute layout of ternary.h: tile (p, b) = 64 bytes at (p * colBlocks + b) * 64;
 * byte i, bit pair j holds w + 1 for row p*16 + i/4, column b*16 + 4j + i%4; padding holds 1.
 */
export function pack2Ref(trits: Int8Array, rows: number, cols: number): Uint8Array {
  const panels = Math.ceil(rows / ROW_PANEL);
  const blocks = Math.ceil(cols / COL_BLOCK);
  const out = new Uint8Array(panels * blocks * 64);
  for (let p = 0; p < panels; p++) {
    for (let b = 0; b < blocks; b++) {
      for (let i = 0; i < 64; i++) {
        let byte = 0;
        for (let j = 0; j < 4; j++) {
          const r = p * ROW_PANEL + Math.floor(i / 4);
          const c = b * COL_BLOCK + 4 * j + (i % 4);
          const t = r < rows && c < cols ? (trits[r * cols + c] as number) : 0;
          byte |= (t + 1) << (2 * j);
        }
        out[(p * blocks + b) * 64 + i] = byte;
      }
    }
  }
  return out;
}

/** 5 trits per byte: byte = sum (t_i + 1) * 3^i; unused positions of the last byte are 0. */
export function pack5Ref(trits: Int8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(trits.length / 5));
  for (let i = 0; i < trits.length; i++) {
    const at = Math.floor(i / 5);
    out[at] = (out[at] as number) + ((trits[i] as number) + 1) * 3 ** (i % 5);
  }
  return out;
}

/**
 * Per-token absmax int8: scale = absmax / 127, q = clamp(rne(x * (127 / absmax)), -127, 127),
 * computed in float. For absmax < 2^-64 (where 127 / absmax could overflow) the row is first
 * scaled by 2^-64's inverse exactly, as act_quant_kernels.h documents.
 */
export function quantizeRef(x: Float32Array, n: number, cols: number): { q: Int8Array; scales: Float32Array } {
  const pc = paddedColsRef(cols);
  const q = new Int8Array(n * pc);
  const scales = new Float32Array(n);
  const two64 = 2 ** 64;
  for (let t = 0; t < n; t++) {
    let absmax = 0;
    for (let c = 0; c < cols; c++) absmax = Math.max(absmax, Math.abs(x[t * cols + c] as number));
    if (absmax === 0) continue;
    scales[t] = f(absmax / 127);
    const tiny = absmax < 1 / two64;
    const pre = tiny ? two64 : 1;
    const inv = tiny ? f(127 / f(absmax * two64)) : f(127 / absmax);
    for (let c = 0; c < cols; c++) {
      let v = roundHalfEven(f(f((x[t * cols + c] as number) * pre) * inv));
      v = v > 127 ? 127 : v < -127 ? -127 : v;
      q[t * pc + c] = v;
    }
  }
  return { q, scales };
}

/**
 * llama.cpp's q8_K written from its definition, per block of 256 values of each token: max = the
 * first value of largest magnitude, iscale = -127 / max, q = min(127, rne(iscale * x)),
 * d = 1 / iscale; returned with the sign ternorm keeps (q and d negated when max > 0, so q * d is
 * unchanged). Blocks with absmax < 2^-64 are not covered (q8_K itself overflows there).
 */
export function quantizeQ8KRef(x: Float32Array, n: number, cols: number): { q: Int8Array; scales: Float32Array } {
  const pc = paddedColsRef(cols);
  const nb = Math.ceil(cols / 256);
  const q = new Int8Array(n * pc);
  const scales = new Float32Array(n * nb);
  for (let t = 0; t < n; t++) {
    for (let b = 0; b < nb; b++) {
      const c0 = b * 256;
      const c1 = Math.min(cols, c0 + 256);
      let max = 0;
      let amax = 0;
      for (let c = c0; c < c1; c++) {
        const v = x[t * cols + c] as number;
        if (Math.abs(v) > amax) {
          amax = Math.abs(v);
          max = v;
        }
      }
      if (amax === 0) continue;
      const iscale = f(-127 / max);
      const sign = max > 0 ? -1 : 1;
      scales[t * nb + b] = sign * f(1 / iscale);
      for (let c = c0; c < c1; c++) q[t * pc + c] = sign * Math.min(127, roundHalfEven(f(iscale * (x[t * cols + c] as number))));
    }
  }
  return { q, scales };
}

/** gemmI8Block's fold: acc = 0; acc += float(dot_b) * (xScales[t][b] * scales[r]) over blocks, in float. */
export function gemmI8BlockRef(
  trits: Int8Array,
  scales: Float32Array,
  rows: number,
  cols: number,
  q: Int8Array,
  xScales: Float32Array,
  n: number,
): Float32Array {
  const pc = paddedColsRef(cols);
  const nb = Math.ceil(cols / 256);
  const y = new Float32Array(n * rows);
  for (let t = 0; t < n; t++) {
    for (let r = 0; r < rows; r++) {
      let acc = 0;
      for (let b = 0; b < nb; b++) {
        let dot = 0;
        for (let c = b * 256; c < Math.min(cols, (b + 1) * 256); c++) dot += (trits[r * cols + c] as number) * (q[t * pc + c] as number);
        acc = f(acc + f(f(dot) * f((xScales[t * nb + b] as number) * (scales[r] as number))));
      }
      y[t * rows + r] = acc;
    }
  }
  return y;
}

/** y[t][r] = (float(dot) * xScales[t]) * scales[r], every step rounded to float: exact. */
export function gemmI8Ref(
  trits: Int8Array,
  scales: Float32Array,
  rows: number,
  cols: number,
  q: Int8Array,
  xScales: Float32Array,
  n: number,
): Float32Array {
  const pc = paddedColsRef(cols);
  const y = new Float32Array(n * rows);
  for (let t = 0; t < n; t++) {
    for (let r = 0; r < rows; r++) {
      let dot = 0;
      for (let c = 0; c < cols; c++) dot += (trits[r * cols + c] as number) * (q[t * pc + c] as number);
      y[t * rows + r] = f(f(f(dot) * (xScales[t] as number)) * (scales[r] as number));
    }
  }
  return y;
}

export interface Approx {
  value: Float64Array;
  /** Sum of |terms| per element: the scale of the rounding error of a float evaluation. */
  bound: Float64Array;
}

/** y = x W^T with W = trit * scale per row (x: n x cols, y: n x rows). */
export function matmulRef(trits: Int8Array, scales: Float32Array, rows: number, cols: number, x: Float32Array, n: number): Approx {
  const value = new Float64Array(n * rows);
  const bound = new Float64Array(n * rows);
  for (let t = 0; t < n; t++) {
    for (let r = 0; r < rows; r++) {
      let s = 0;
      let b = 0;
      for (let c = 0; c < cols; c++) {
        const term = (trits[r * cols + c] as number) * (x[t * cols + c] as number);
        s += term;
        b += Math.abs(term);
      }
      const sc = scales[r] as number;
      value[t * rows + r] = s * sc;
      bound[t * rows + r] = b * Math.abs(sc);
    }
  }
  return { value, bound };
}

/** dx = dy W (dy: n x rows, dx: n x cols). */
export function matmulTRef(trits: Int8Array, scales: Float32Array, rows: number, cols: number, dy: Float32Array, n: number): Approx {
  const value = new Float64Array(n * cols);
  const bound = new Float64Array(n * cols);
  for (let t = 0; t < n; t++) {
    for (let c = 0; c < cols; c++) {
      let s = 0;
      let b = 0;
      for (let r = 0; r < rows; r++) {
        const term = (trits[r * cols + c] as number) * (scales[r] as number) * (dy[t * rows + r] as number);
        s += term;
        b += Math.abs(term);
      }
      value[t * cols + c] = s;
      bound[t * cols + c] = b;
    }
  }
  return { value, bound };
}

/** C = alpha op(A) op(B) + beta C in double. */
export function gemmRef(
  a: Float32Array,
  b: Float32Array,
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
  alpha: number,
  beta: number,
  c: Float32Array | undefined,
): Approx {
  const value = new Float64Array(m * n);
  const bound = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      let bd = 0;
      for (let p = 0; p < k; p++) {
        const av = a[transA ? p * m + i : i * k + p] as number;
        const bv = b[transB ? j * k + p : p * n + j] as number;
        s += av * bv;
        bd += Math.abs(av * bv);
      }
      const cv = c === undefined || beta === 0 ? 0 : (c[i * n + j] as number);
      value[i * n + j] = alpha * s + beta * cv;
      bound[i * n + j] = Math.abs(alpha) * bd + Math.abs(beta * cv);
    }
  }
  return { value, bound };
}

/** Asserts |got - ref| <= rel * bound + abs element-wise; returns the worst index or -1. */
export function worstViolation(got: Float32Array, ref: Approx, rel: number, abs = 0): number {
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs((got[i] as number) - (ref.value[i] as number));
    if (!(err <= rel * (ref.bound[i] as number) + abs)) return i;
  }
  return -1;
}

// ---- RMSNorm with gain --------------------------------------------------------------------
/** IEEE binary16 bits -> number. */
export function f16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** The gains g[c] as fp32 values. */
export function decodeGainRef(
  scheme: 'raw_fp32' | 'raw_fp16' | 'int8_per_tensor',
  data: Float32Array | Uint16Array | Int8Array,
  scale?: number,
): Float64Array {
  const g = new Float64Array(data.length);
  for (let c = 0; c < data.length; c++) {
    const v = data[c] as number;
    g[c] = scheme === 'raw_fp32' ? v : scheme === 'raw_fp16' ? f16ToNumber(v) : f(v * (scale as number));
  }
  return g;
}

export interface NormRefArgs {
  x: Float32Array;
  n: number;
  d: number;
  wBase: Float32Array;
  g: Float64Array;
  eps: number;
}

/** Effective per-channel weight, rounded to float as the kernel forms it once per call. */
function effectiveWeight(a: NormRefArgs): Float64Array {
  const wg = new Float64Array(a.d);
  for (let c = 0; c < a.d; c++) wg[c] = f((a.wBase[c] as number) * (a.g[c] as number));
  return wg;
}

function invRms(a: NormRefArgs, t: number): number {
  let ss = 0;
  for (let c = 0; c < a.d; c++) ss += (a.x[t * a.d + c] as number) ** 2;
  return 1 / Math.sqrt(ss / a.d + f(a.eps));
}

/** y = x * invRms * wBase * g in double (from the float effective weight). */
export function rmsNormRef(a: NormRefArgs): Float64Array {
  const wg = effectiveWeight(a);
  const y = new Float64Array(a.n * a.d);
  for (let t = 0; t < a.n; t++) {
    const r = invRms(a, t);
    for (let c = 0; c < a.d; c++) y[t * a.d + c] = (a.x[t * a.d + c] as number) * r * (wg[c] as number);
  }
  return y;
}

/**
 * Analytic gradients of L = sum(dy * y) in double, with their magnitude bounds:
 * dg[c] = sum_t dy x r wBase;  dx = r wg dy - x r^3 / d * sum_j dy_j wg_j x_j.
 */
export function rmsNormBackwardRef(a: NormRefArgs, dy: Float32Array): { dx: Approx; dGain: Approx } {
  const wg = effectiveWeight(a);
  const dx: Approx = { value: new Float64Array(a.n * a.d), bound: new Float64Array(a.n * a.d) };
  const dGain: Approx = { value: new Float64Array(a.d), bound: new Float64Array(a.d) };
  for (let t = 0; t < a.n; t++) {
    const r = invRms(a, t);
    let dot = 0;
    let dotAbs = 0;
    for (let j = 0; j < a.d; j++) {
      const v = (dy[t * a.d + j] as number) * (wg[j] as number) * (a.x[t * a.d + j] as number);
      dot += v;
      dotAbs += Math.abs(v);
    }
    for (let c = 0; c < a.d; c++) {
      const i = t * a.d + c;
      const xv = a.x[i] as number;
      const dyv = dy[i] as number;
      const first = r * (wg[c] as number) * dyv;
      const coef = (xv * r * r * r) / a.d;
      dx.value[i] = first - coef * dot;
      dx.bound[i] = Math.abs(first) + Math.abs(coef) * dotAbs;
      const gterm = dyv * xv * r * (a.wBase[c] as number);
      dGain.value[c] = (dGain.value[c] as number) + gterm;
      dGain.bound[c] = (dGain.bound[c] as number) + Math.abs(gterm);
    }
  }
  return { dx, dGain };
}
