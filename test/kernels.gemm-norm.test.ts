// fp32 GEMM and the fused RMSNorm-with-gain through the typed API against the
// plain-JS references. Runs once per ISA path.
import { expect, it } from 'vitest';

import {
  cpuInfo,
  type Gain,
  gemmF32,
  gemmF32Async,
  quantizeActivations,
  rmsNormGain,
  rmsNormGainBackward,
  rmsNormGainI8,
} from '../lib/kernels.js';
import { describeOnIsa } from './isa-suite.js';
import {
  decodeGainRef,
  gemmRef,
  type NormRefArgs,
  randomF32,
  rmsNormBackwardRef,
  rmsNormRef,
  rng,
  worstViolation,
} from './kernels-reference.js';

function expectSameBits(got: Float32Array, want: Float32Array): void {
  expect(got.length).toBe(want.length);
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const b = new Uint32Array(want.buffer, want.byteOffset, want.length);
  const bad = a.findIndex((v, i) => v !== b[i]);
  expect(bad, bad < 0 ? '' : `first mismatch at ${bad}: ${got[bad]} vs ${want[bad]}`).toBe(-1);
}

/** Random finite binary16 patterns with magnitudes in about [2^-3, 2^2]. */
function randomF16(rand: () => number, d: number): Uint16Array {
  const out = new Uint16Array(d);
  for (let i = 0; i < d; i++) {
    const exp = 12 + Math.floor(rand() * 6);
    out[i] = (rand() < 0.5 ? 0x8000 : 0) | (exp << 10) | Math.floor(rand() * 1024);
  }
  return out;
}

function randomGain(rand: () => number, scheme: Gain['scheme'], d: number): Gain {
  if (scheme === 'raw_fp32') return { scheme, data: randomF32(rand, d, 1.5) };
  if (scheme === 'raw_fp16') return { scheme, data: randomF16(rand, d) };
  const data = new Int8Array(d);
  for (let i = 0; i < d; i++) data[i] = Math.floor(rand() * 256) - 128; // all of -128..127
  return { scheme, data, scale: 0.0123 };
}

function refArgs(x: Float32Array, n: number, d: number, wBase: Float32Array, gain: Gain, eps: number): NormRefArgs {
  const g = decodeGainRef(gain.scheme, gain.data, gain.scheme === 'int8_per_tensor' ? gain.scale : undefined);
  return { x, n, d, wBase, g, eps };
}

describeOnIsa('gemmF32 and rmsNormGain', () => {
  it('gemmF32 matches a naive JS GEMM for every transpose, alpha/beta, odd sizes', async () => {
    const rand = rng(11);
    const dims: Array<[number, number, number]> = [
      [1, 1, 1],
      [3, 5, 7],
      [17, 33, 9],
      [40, 1, 65],
      [1, 50, 31],
      [70, 45, 130],
    ];
    for (const [m, n, k] of dims) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          const a = randomF32(rand, m * k);
          const b = randomF32(rand, k * n);
          const c0 = randomF32(rand, m * n);
          const tol = (k + 4) * 2 ** -24;
          // Without c (beta 0).
          const y = gemmF32({ a, b, m, n, k, transA, transB, alpha: 0.75 });
          expect(worstViolation(y, gemmRef(a, b, m, n, k, transA, transB, 0.75, 0, undefined), tol)).toBe(-1);
          expectSameBits(gemmF32({ a, b, m, n, k, transA, transB, alpha: 0.75 }, { threads: 1 }), y);
          expectSameBits(await gemmF32Async({ a, b, m, n, k, transA, transB, alpha: 0.75 }), y);
          // Accumulating into c, in place.
          const c = c0.slice();
          const out = gemmF32({ a, b, m, n, k, transA, transB, alpha: -1.5, beta: 0.5, c });
          expect(out).toBe(c);
          expect(worstViolation(c, gemmRef(a, b, m, n, k, transA, transB, -1.5, 0.5, c0), tol)).toBe(-1);
          const c2 = c0.slice();
          const outAsync = await gemmF32Async({ a, b, m, n, k, transA, transB, alpha: -1.5, beta: 0.5, c: c2 });
          expect(outAsync).toBe(c2);
          expectSameBits(c2, c);
        }
      }
    }
  });

  it('gemmF32 with beta 0 ignores NaN already in c', () => {
    const c = new Float32Array([NaN, NaN]);
    gemmF32({ a: new Float32Array([1, 2]), b: new Float32Array([3, 4, 5, 6]), m: 1, n: 2, k: 2, c });
    expect(Array.from(c)).toEqual([13, 16]);
  });

  for (const scheme of ['raw_fp32', 'raw_fp16', 'int8_per_tensor'] as const) {
    it(`rmsNormGain (${scheme} gain) matches the JS RMSNorm within the stated bound`, () => {
      const rand = rng(12);
      for (const d of [1, 7, 16, 33, 100, 257]) {
        for (const n of [1, 3, 8]) {
          const x = randomF32(rand, n * d, 3);
          const wBase = randomF32(rand, d, 2);
          const gain = randomGain(rand, scheme, d);
          const eps = 1e-5;
          const y = rmsNormGain({ x, n, d, wBase, gain, eps });
          const ref = rmsNormRef(refArgs(x, n, d, wBase, gain, eps));
          // rmsnorm.h: |y - y_exact| <= (ceil(d/16) + 12) * 2^-24 * |y_exact|.
          const rel = (Math.ceil(d / 16) + 12) * 2 ** -24;
          expect(worstViolation(y, { value: ref, bound: ref.map(Math.abs) }, rel, 1e-37)).toBe(-1);
          expectSameBits(rmsNormGain({ x, n, d, wBase, gain, eps }, { threads: 1 }), y);
          // The default eps is 1e-5.
          expectSameBits(rmsNormGain({ x, n, d, wBase, gain }), y);
        }
      }
    });

    it(`rmsNormGainI8 (${scheme} gain) equals rmsNormGain followed by quantizeActivations`, () => {
      const rand = rng(13);
      for (const d of [1, 15, 16, 33, 200]) {
        for (const n of [1, 5]) {
          const x = randomF32(rand, n * d, 3);
          if (n > 1) x.fill(0, 0, d); // a zero row
          const wBase = randomF32(rand, d, 2);
          const gain = randomGain(rand, scheme, d);
          const fused = rmsNormGainI8({ x, n, d, wBase, gain }, { threads: cpuInfo().threads });
          const split = quantizeActivations(rmsNormGain({ x, n, d, wBase, gain }), n, d);
          expect(fused.q).toEqual(split.q);
          expectSameBits(fused.scales, split.scales);
          expect(fused.paddedCols).toBe(split.paddedCols);
          expect(fused.n).toBe(n);
          expect(fused.cols).toBe(d);
        }
      }
    });

    it(`rmsNormGainBackward (${scheme} gain) matches the analytic JS gradients`, () => {
      const rand = rng(14);
      for (const d of [1, 9, 16, 47, 130]) {
        for (const n of [1, 4, 11]) {
          const x = randomF32(rand, n * d, 2);
          const wBase = randomF32(rand, d, 2);
          const gain = randomGain(rand, scheme, d);
          const dy = randomF32(rand, n * d, 1);
          const { dx, dGain } = rmsNormGainBackward({ x, n, d, wBase, gain, dy });
          const ref = rmsNormBackwardRef(refArgs(x, n, d, wBase, gain, 1e-5), dy);
          // Float sums over d (dx) and n (dGain) terms, a few roundings each.
          expect(worstViolation(dx, ref.dx, (d + 16) * 2 ** -23)).toBe(-1);
          expect(worstViolation(dGain, ref.dGain, (n + 16) * 2 ** -23)).toBe(-1);
          const again = rmsNormGainBackward({ x, n, d, wBase, gain, dy }, { threads: 1 });
          expectSameBits(again.dx, dx);
          expectSameBits(again.dGain, dGain);
        }
      }
    });
  }

  it('the JS backward reference agrees with finite differences of the JS forward', () => {
    // Guards the reference itself: L = sum(dy * y) in double, central differences.
    const rand = rng(15);
    const n = 3;
    const d = 6;
    const x = randomF32(rand, n * d, 2);
    const wBase = new Float32Array(d).fill(1); // so wg = g exactly and g can be perturbed freely
    const g = Float64Array.from(randomF32(rand, d, 1.5));
    const dy = randomF32(rand, n * d, 1);
    const eps = 1e-5;
    const loss = (xs: Float64Array, gs: Float64Array): number => {
      let l = 0;
      for (let t = 0; t < n; t++) {
        let ss = 0;
        for (let c = 0; c < d; c++) ss += (xs[t * d + c] as number) ** 2;
        const r = 1 / Math.sqrt(ss / d + Math.fround(eps));
        for (let c = 0; c < d; c++) l += (dy[t * d + c] as number) * (xs[t * d + c] as number) * r * (gs[c] as number);
      }
      return l;
    };
    const gf = Float32Array.from(g);
    const ref = rmsNormBackwardRef({ x, n, d, wBase, g: Float64Array.from(gf), eps }, dy);
    const xd = Float64Array.from(x);
    const gd = Float64Array.from(gf);
    const h = 1e-6;
    for (let c = 0; c < d; c++) {
      const gp = gd.slice();
      const gm = gd.slice();
      gp[c] = (gp[c] as number) + h;
      gm[c] = (gm[c] as number) - h;
      expect((loss(xd, gp) - loss(xd, gm)) / (2 * h)).toBeCloseTo(ref.dGain.value[c] as number, 6);
    }
    for (let i = 0; i < n * d; i++) {
      const xp = xd.slice();
      const xm = xd.slice();
      xp[i] = (xp[i] as number) + h;
      xm[i] = (xm[i] as number) - h;
      expect((loss(xp, gd) - loss(xm, gd)) / (2 * h)).toBeCloseTo(ref.dx.value[i] as number, 6);
    }
  });
});
