// The three builds of the addon — node-gyp (build/Release), cmake-js
// (out/cmake-js/Release) and the prebuildify prebuild (prebuilds/<platform>-
// <arch>, found through node-gyp-build) — load and compute the same results,
// and a bad TERNORM_ISA gives a clear error instead of a wrong path.
// `npm test` builds all three first (pretest: each links the core compiled once by
// `npm run build:native`); a missing one fails here.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Worker } from 'node:worker_threads';
import { basename, dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { cpuInfoOf } from '../lib/kernels.js';
import { loadAddon, loadAddonFrom, loadPackageAddon, type NativeAddon, packageRoot, resolveAddonPath } from '../lib/native.js';
import { randomF32, randomTrits, rng } from './kernels-reference.js';

const root = packageRoot();
const scratch = mkdtempSync(join(tmpdir(), 'ternorm-builds-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Where node-gyp-build finds a prebuild when only prebuilds/ is present (as in an installed package). */
function prebuildPath(): string {
  const pkg = join(scratch, 'pkg');
  if (!existsSync(pkg)) {
    mkdirSync(pkg);
    symlinkSync(join(root, 'prebuilds'), join(pkg, 'prebuilds'), 'dir');
  }
  return resolveAddonPath(pkg);
}

/** Every kernel once on fixed random inputs; the results as byte arrays. */
function computeAll(addon: NativeAddon): Record<string, Uint8Array> {
  const rand = rng(99);
  const rows = 37;
  const cols = 75;
  const n = 5;
  const w = randomF32(rand, rows * cols);
  const { trits, scales } = addon.absmeanQuantize(w, rows, cols, true);
  const packed = addon.pack2(trits, rows, cols);
  const x = randomF32(rand, n * cols, 3);
  const { q, scales: xs } = addon.quantizeActivations(x, n, cols);
  const dy = randomF32(rand, n * rows);
  const a = randomF32(rand, 23 * 41);
  const b = randomF32(rand, 41 * 19);
  const d = 75;
  const wBase = randomF32(rand, d, 2);
  const gain = randomF32(rand, d, 1.5);
  const i8 = addon.rmsNormGainI8(x, n, d, wBase, 'raw_fp32', gain, undefined, 1e-5);
  const back = addon.rmsNormGainBackward(x, n, d, wBase, 'raw_fp32', gain, undefined, 1e-5, randomF32(rand, n * d));
  const out: Record<string, ArrayBufferView> = {
    trits,
    scales,
    packed,
    storage: addon.pack5(randomTrits(rand, 101)),
    q,
    xs,
    gemmI8: addon.gemmI8(packed, scales, rows, cols, q, xs, n),
    matmulF32: addon.matmulF32(packed, scales, rows, cols, x, n),
    matmulF32T: addon.matmulF32T(packed, scales, rows, cols, dy, n),
    gemmF32: addon.gemmF32(a, b, 23, 19, 41, false, false, 1, 0, undefined),
    rmsNormGain: addon.rmsNormGain(x, n, d, wBase, 'raw_fp32', gain, undefined, 1e-5),
    rmsNormGainI8q: i8.q,
    rmsNormGainI8scales: i8.scales,
    dx: back.dx,
    dGain: back.dGain,
  };
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, new Uint8Array(v.buffer, v.byteOffset, v.byteLength)]));
}

describe('the three builds of the addon', () => {
  const builds: Array<[string, () => string]> = [
    ['node-gyp (npm run build:gyp)', () => join(root, 'build', 'Release', 'ternorm.node')],
    ['cmake-js (npm run build:cmake)', () => join(root, 'out', 'cmake-js', 'Release', 'ternorm.node')],
    ['prebuildify via node-gyp-build (npm run prebuild)', prebuildPath],
  ];

  it('the default loader finds the node-gyp build first', () => {
    expect(resolveAddonPath(root)).toBe(join(root, 'build', 'Release', 'ternorm.node'));
    expect(loadAddon()).toBe(loadAddonFrom(join(root, 'build', 'Release', 'ternorm.node')));
  });

  it('node-gyp-build resolves the prebuild for this platform', () => {
    const path = prebuildPath();
    expect(basename(dirname(path))).toBe(`${process.platform}-${process.arch}`);
    expect(path.endsWith('.node')).toBe(true);
  });

  it('all three load and compute bit-identical results', () => {
    const results = builds.map(([name, where]) => {
      const addon = loadAddonFrom(where());
      const info = cpuInfoOf(addon);
      return { name, info, out: computeAll(addon) };
    });
    const [first, ...rest] = results;
    if (first === undefined) throw new Error('no builds');
    for (const r of rest) {
      expect(r.info.defaultIsa, r.name).toBe(first.info.defaultIsa);
      for (const [key, bytes] of Object.entries(first.out)) {
        expect(r.out[key], `${r.name}: ${key}`).toEqual(bytes);
      }
    }
  });
});

describe('loading errors', () => {
  it('no build at all: the error says how to build one', () => {
    const empty = join(scratch, 'empty');
    mkdirSync(empty);
    expect(() => loadPackageAddon(empty)).toThrow(/could not be loaded: No native build was found/);
    expect(() => loadPackageAddon(empty)).toThrow(/npm run build:gyp.*needs g\+\+, make and python3/);
  });

  it("a broken build: the error carries the loader's reason and the build hint", () => {
    const broken = join(scratch, 'broken');
    mkdirSync(join(broken, 'build', 'Release'), { recursive: true });
    writeFileSync(join(broken, 'build', 'Release', 'ternorm.node'), 'not an ELF file');
    expect(() => loadPackageAddon(broken)).toThrow(/could not be loaded: .*(invalid ELF header|too short)[\s\S]*npm run build:gyp/);
    expect(() => loadAddonFrom(join(broken, 'nothing.node'))).toThrow(/no addon at .*nothing\.node.*npm run build:gyp/);
  });
});

describe('TERNORM_ISA', () => {
  // The addon reads TERNORM_ISA when it loads, so each case loads a fresh copy.
  function loadWithIsa(value: string, tag: string): NativeAddon {
    const copy = join(scratch, `ternorm-${tag}.node`);
    copyFileSync(join(root, 'build', 'Release', 'ternorm.node'), copy);
    const saved = process.env.TERNORM_ISA;
    process.env.TERNORM_ISA = value;
    try {
      return loadAddonFrom(copy);
    } finally {
      if (saved === undefined) delete process.env.TERNORM_ISA;
      else process.env.TERNORM_ISA = saved;
    }
  }

  it('an unknown value gives a clear error from cpuInfo and from every kernel, not a crash', () => {
    const addon = loadWithIsa('avx9', 'unknown');
    const raw = addon.cpuInfo();
    expect(raw.defaultIsa).toBeNull();
    expect(raw.supportedIsas).toContain('scalar');
    expect(() => cpuInfoOf(addon)).toThrow(/TERNORM_ISA=avx9 cannot be used \(unknown ISA 'avx9': expected scalar, avx2, avx512 or neon\)/);
    expect(() => addon.quantizeActivations(new Float32Array(4), 1, 4)).toThrow(/TERNORM_ISA=avx9 cannot be used/);
    expect(() => addon.gemmF32(new Float32Array(1), new Float32Array(1), 1, 1, 1, false, false, 1, 0, undefined)).toThrow(Error);
  });

  it('a path this CPU or build cannot run gives a clear error', () => {
    const foreign = process.arch === 'arm64' ? 'avx2' : 'neon';
    const addon = loadWithIsa(foreign, 'foreign');
    expect(() => cpuInfoOf(addon)).toThrow(
      new RegExp(`TERNORM_ISA=${foreign} cannot be used .*not supported by this CPU or build.*this CPU and build support: scalar`),
    );
  });

  it('an empty value means the best path; every supported value is honoured', () => {
    const best = cpuInfoOf(loadWithIsa('', 'empty'));
    expect(best.defaultIsa).toBe(best.supportedIsas[best.supportedIsas.length - 1]);
    for (const isa of best.supportedIsas) {
      expect(cpuInfoOf(loadWithIsa(isa, `forced-${isa}`)).defaultIsa).toBe(isa);
    }
  });
});

describe('worker threads', () => {
  // Each thread gets its own addon instance (N-API instance data: its own pool
  // and ISA path); results match the main thread's.
  const workerCode = `
    const { parentPort, workerData } = require('node:worker_threads');
    const addon = require(workerData.file);
    const { a, b, m, n, k, mode } = workerData;
    if (mode === 'compute') {
      parentPort.postMessage({ info: addon.cpuInfo(), c: addon.gemmF32(a, b, m, n, k, false, true, 1, 0, undefined) });
    } else {
      // Start long async calls and report; the parent terminates this thread while they run.
      for (let i = 0; i < 4; i++) addon.gemmF32Async(a, b, m, n, k, false, true, 1, 0, undefined);
      parentPort.postMessage({ started: true });
    }
  `;

  function runWorker(mode: 'compute' | 'terminate', m: number, n: number, k: number, seed: number): Promise<unknown> {
    const rand = rng(seed);
    const a = randomF32(rand, m * k);
    const b = randomF32(rand, n * k);
    const file = join(root, 'build', 'Release', 'ternorm.node');
    const worker = new Worker(workerCode, { eval: true, workerData: { file, a, b, m, n, k, mode } });
    return new Promise((resolve, reject) => {
      worker.once('error', reject);
      worker.once('message', (msg: unknown) => {
        if (mode === 'compute') {
          void worker.terminate().then(() => resolve({ msg, a, b }));
        } else {
          void worker.terminate().then((code) => resolve(code));
        }
      });
    });
  }

  it('computes the same result as the main thread', async () => {
    const { msg, a, b } = (await runWorker('compute', 13, 21, 34, 7)) as {
      msg: { info: { defaultIsa: string; threads: number }; c: Float32Array };
      a: Float32Array;
      b: Float32Array;
    };
    const main = loadAddon();
    expect(msg.info.defaultIsa).toBe(main.cpuInfo().defaultIsa);
    expect(msg.info.threads).toBe(main.cpuInfo().threads);
    expect(msg.c).toEqual(main.gemmF32(a, b, 13, 21, 34, false, true, 1, 0, undefined));
  });

  it('survives a thread terminated while its async kernels run', async () => {
    await runWorker('terminate', 300, 300, 300, 8);
    await runWorker('terminate', 300, 300, 300, 9);
    // The main thread's addon still works.
    const c = loadAddon().gemmF32(new Float32Array([2]), new Float32Array([3]), 1, 1, 1, false, false, 1, 0, undefined);
    expect(Array.from(c)).toEqual([6]);
  });
});
