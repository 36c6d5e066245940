// Loads the native addon (native/addon, N-API) through node-gyp-build from the
// package root: build/Release (node-gyp) first, then prebuilds/<platform>-<arch>
// (prebuildify). The raw addon checks every argument itself and never reads out
// of bounds; lib/kernels.ts is the typed surface with the friendlier messages.
//
// The package root is lib/util/package-root.ts's (it runs as lib/... under
// vitest and as dist/lib/... after tsc).

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';

import { packageRoot } from './util/package-root.js';

const require = createRequire(import.meta.url);

export type Isa = 'scalar' | 'avx2' | 'avx512' | 'neon';

export interface CpuFeatures {
  avx2: boolean;
  fma: boolean;
  f16c: boolean;
  avx512f: boolean;
  avx512bw: boolean;
  avx512vl: boolean;
  avx512dq: boolean;
  avx512vnni: boolean;
  neon: boolean;
}

export interface RawCpuInfo {
  features: CpuFeatures;
  supportedIsas: Isa[];
  /** null when TERNORM_ISA names an unknown or unsupported path (see isaError). */
  defaultIsa: Isa | null;
  isaError: string | null;
  /** Size of this addon instance's thread pool (the hardware threads). */
  threads: number;
}

/** The gain schemes the fused norm kernels take directly, by their codec registry names. */
export type GainSchemeName = 'raw_fp32' | 'raw_fp16' | 'int8_per_tensor';
export type GainData = Float32Array | Uint16Array | Int8Array;

/** The same call run off the event loop (on copies of its inputs), resolving to the result. */
type Async<F> = F extends (...args: infer A) => infer R ? (...args: A) => Promise<R> : never;

/** Ternary (2-bit packed, one scale per row) GEMM with int8 activations and their scales. */
type TernaryGemmI8 = (
  packed: Uint8Array,
  scales: Float32Array,
  rows: number,
  cols: number,
  q: Int8Array,
  xScales: Float32Array,
  n: number,
  threads?: number,
) => Float32Array;
/** Ternary matrix times fp32 activations (n rows of x). */
type TernaryMatmulF32 = (
  packed: Uint8Array,
  scales: Float32Array,
  rows: number,
  cols: number,
  x: Float32Array,
  n: number,
  threads?: number,
) => Float32Array;
type GemmF32 = (
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
  threads?: number,
) => Float32Array;

/**
 * The addon's exports, positional and unchecked by TypeScript beyond these
 * types. Sizes are integers in 1..2^31; `threads` undefined means the whole pool.
 * The Async variants run on copies of their inputs (see KernelCall in
 * native/addon/addon.h): the inputs may be mutated or detached at once.
 */
export interface NativeAddon {
  ternaryLayout: { rowPanel: number; colBlock: number };
  cpuInfo(): RawCpuInfo;
  /** The core's ranges and defaults (lib/model/limits.ts types them). */
  limits(): unknown;
  absmeanQuantize(w: Float32Array, rows: number, cols: number, perRow: boolean): { trits: Int8Array; scales: Float32Array };
  pack2(trits: Int8Array, rows: number, cols: number): Uint8Array;
  unpack2(packed: Uint8Array, rows: number, cols: number): Int8Array;
  pack5(trits: Int8Array): Uint8Array;
  unpack5(bytes: Uint8Array, count: number): Int8Array;
  quantizeActivations(x: Float32Array, n: number, cols: number, threads?: number): { q: Int8Array; scales: Float32Array };
  quantizeActivationsBlock(x: Float32Array, n: number, cols: number, threads?: number): { q: Int8Array; scales: Float32Array };
  gemmI8Block: TernaryGemmI8;
  gemmI8: TernaryGemmI8;
  gemmI8Async: Async<TernaryGemmI8>;
  matmulF32: TernaryMatmulF32;
  matmulF32Async: Async<TernaryMatmulF32>;
  /** dx = dy · W (the backward of matmulF32): its activations are dy, n x rows. */
  matmulF32T: TernaryMatmulF32;
  matmulF32TAsync: Async<TernaryMatmulF32>;
  gemmF32: GemmF32;
  gemmF32Async: Async<GemmF32>;
  rmsNormGain(
    x: Float32Array,
    n: number,
    d: number,
    wBase: Float32Array,
    scheme: GainSchemeName,
    gain: GainData,
    gainScale: number | undefined,
    eps: number,
    threads?: number,
  ): Float32Array;
  rmsNormGainI8(
    x: Float32Array,
    n: number,
    d: number,
    wBase: Float32Array,
    scheme: GainSchemeName,
    gain: GainData,
    gainScale: number | undefined,
    eps: number,
    threads?: number,
  ): { q: Int8Array; scales: Float32Array };
  rmsNormGainBackward(
    x: Float32Array,
    n: number,
    d: number,
    wBase: Float32Array,
    scheme: GainSchemeName,
    gain: GainData,
    gainScale: number | undefined,
    eps: number,
    dy: Float32Array,
    threads?: number,
  ): { dx: Float32Array; dGain: Float32Array };
}

export { packageRoot };

function buildHint(root: string): string {
  return (
    `Build it in ${root} with \`npm run build:gyp\` (node-gyp; needs g++, make and python3), ` +
    `or install a prebuilt binary under prebuilds/${process.platform}-${process.arch}/ (\`npm run prebuild\`).`
  );
}

function asAddon(mod: unknown, from: string): NativeAddon {
  const m = mod as Partial<NativeAddon> | null;
  if (m === null || typeof m !== 'object' || typeof m.cpuInfo !== 'function' || typeof m.gemmI8 !== 'function') {
    throw new Error(`ternorm: ${from} is not the ternorm addon (no cpuInfo/gemmI8 exports)`);
  }
  return m as NativeAddon;
}

/**
 * The addon of the package in `dir` through node-gyp-build (build/Release,
 * then prebuilds/). Throws an Error that says how to build it when no loadable
 * build is found.
 */
export function loadPackageAddon(dir: string): NativeAddon {
  let mod: unknown;
  try {
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
    mod = nodeGypBuild(dir);
  } catch (err) {
    const reason = err instanceof Error ? err.message.trim() : String(err);
    throw new Error(`ternorm: the native addon could not be loaded: ${reason}\n${buildHint(dir)}`, { cause: err });
  }
  return asAddon(mod, `the addon node-gyp-build found in ${dir}`);
}

let cached: NativeAddon | undefined;

/** The addon of this package (see loadPackageAddon), loaded once. */
export function loadAddon(): NativeAddon {
  cached ??= loadPackageAddon(packageRoot());
  return cached;
}

/**
 * Loads one build of the addon by its file path (e.g. out/cmake-js/Release/
 * ternorm.node). Each distinct file is a separate addon instance with its own
 * thread pool; its ISA path is read from TERNORM_ISA when it loads.
 */
export function loadAddonFrom(file: string): NativeAddon {
  const path = resolve(file);
  if (!existsSync(path)) throw new Error(`ternorm: no addon at ${path}. ${buildHint(packageRoot())}`);
  return asAddon(require(path), path);
}

/** Where node-gyp-build would load the addon from for the package in `dir`. */
export function resolveAddonPath(dir: string): string {
  const nodeGypBuild = require('node-gyp-build') as { path(dir: string): string };
  return nodeGypBuild.path(dir);
}
