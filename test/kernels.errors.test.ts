// Bad input gets the right error class and a message that says what was
// expected, through the typed API and through the raw addon (which must check
// everything itself). The process survives every case.
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
  TernaryMatrix,
} from '../lib/kernels.js';
import { loadAddon } from '../lib/native.js';
import { describeOnIsa } from './isa-suite.js';

// Deliberately wrong arguments, past the static types.
const any = (v: unknown): never => v as never;

function matrix(rows = 3, cols = 5): TernaryMatrix {
  const trits = new Int8Array(rows * cols).map((_, i) => (i % 3) - 1);
  return TernaryMatrix.fromTrits(trits, new Float32Array(rows).fill(0.5), rows, cols);
}

const wBase = new Float32Array([1, 1, 1, 1]);
const gainF32: Gain = { scheme: 'raw_fp32', data: new Float32Array([1, 1, 1, 1]) };
const x8 = new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]);

describeOnIsa('bad input', () => {
  it('wrong typed-array types are TypeErrors naming the expected type', () => {
    const m = matrix();
    expect(() => quantizeActivations(any(new Float64Array(4)), 2, 2)).toThrow(new TypeError('x must be a Float32Array'));
    expect(() => quantizeActivations(any([1, 2, 3, 4]), 2, 2)).toThrow(TypeError);
    expect(() => TernaryMatrix.fromTrits(any(new Uint8Array(4)), new Float32Array(2), 2, 2)).toThrow(
      new TypeError('trits must be an Int8Array'),
    );
    expect(() => TernaryMatrix.fromTrits(new Int8Array(4), any(new Float64Array(2)), 2, 2)).toThrow(/scales must be a Float32Array/);
    expect(() => TernaryMatrix.fromStorage(any(new Int8Array(1)), new Float32Array(1), 1, 1)).toThrow(/bytes must be a Uint8Array/);
    expect(() => m.gemmI8(any(new Uint8Array(16)), new Float32Array(1), 1)).toThrow(new TypeError('q must be an Int8Array'));
    expect(() => m.matmulF32(any(new Int32Array(5)), 1)).toThrow(new TypeError('x must be a Float32Array'));
    expect(() => m.matmulF32T(any(null), 1)).toThrow(new TypeError('dy must be a Float32Array'));
    expect(() => gemmF32({ a: any(new Float64Array(1)), b: new Float32Array(1), m: 1, n: 1, k: 1 })).toThrow(/a must be a Float32Array/);
    expect(() => gemmF32({ a: new Float32Array(1), b: new Float32Array(1), m: 1, n: 1, k: 1, transA: any(1) })).toThrow(
      /transA must be a boolean/,
    );
    expect(() => rmsNormGain({ x: x8, n: 2, d: 4, wBase, gain: { scheme: 'raw_fp16', data: any(new Float32Array(4)) } })).toThrow(
      new TypeError("gain.data (scheme 'raw_fp16') must be a Uint16Array"),
    );
    expect(() => rmsNormGain({ x: x8, n: 2, d: 4, wBase, gain: any({ scheme: 3, data: new Float32Array(4) }) })).toThrow(TypeError);
    expect(() => rmsNormGain({ x: x8, n: 2, d: 4, wBase, gain: any(undefined) })).toThrow(TypeError);
    expect(() => quantizeActivations(x8, any('2'), 4)).toThrow(/n must be a number/);
  });

  it('wrong lengths are RangeErrors stating the expected length', () => {
    const m = matrix(3, 5);
    expect(() => quantizeActivations(new Float32Array(5), 2, 3)).toThrow(new RangeError('x must have n * cols = 6 elements, got 5'));
    expect(() => m.gemmI8(new Int8Array(5), new Float32Array(1), 1)).toThrow(
      new RangeError('q must have n * paddedCols = 16 elements, got 5'),
    );
    expect(() => m.gemmI8(new Int8Array(32), new Float32Array(1), 2)).toThrow(/xScales must have n = 2 elements, got 1/);
    expect(() => m.matmulF32(new Float32Array(4), 1)).toThrow(/x must have n \* cols = 5 elements, got 4/);
    expect(() => m.matmulF32T(new Float32Array(5), 1)).toThrow(/dy must have n \* rows = 3 elements, got 5/);
    expect(() => TernaryMatrix.fromTrits(new Int8Array(6), new Float32Array(2), 3, 2)).toThrow(
      /scales must have rows = 3 elements \(or 1, per tensor\), got 2/,
    );
    expect(() => TernaryMatrix.fromStorage(new Uint8Array(1), new Float32Array(1), 2, 3)).toThrow(
      /bytes must have ceil\(rows \* cols \/ 5\) = 2 elements, got 1/,
    );
    expect(() => gemmF32({ a: new Float32Array(5), b: new Float32Array(6), m: 2, n: 2, k: 3 })).toThrow(
      /a must have m \* k = 6 elements, got 5/,
    );
    expect(() => gemmF32({ a: new Float32Array(6), b: new Float32Array(6), m: 2, n: 2, k: 3, c: new Float32Array(3) })).toThrow(
      /c must have m \* n = 4 elements, got 3/,
    );
    expect(() => rmsNormGain({ x: x8, n: 2, d: 4, wBase: new Float32Array(3), gain: gainF32 })).toThrow(
      /wBase must have d = 4 elements, got 3/,
    );
    expect(() => rmsNormGain({ x: x8, n: 2, d: 4, wBase, gain: { scheme: 'int8_per_tensor', data: new Int8Array(5), scale: 1 } })).toThrow(
      /gain.data must have d = 4 elements, got 5/,
    );
    expect(() => rmsNormGainBackward({ x: x8, n: 2, d: 4, wBase, gain: gainF32, dy: new Float32Array(4) })).toThrow(
      /dy must have n \* d = 8 elements, got 4/,
    );
  });

  it('zero, negative, fractional and huge sizes are RangeErrors', () => {
    for (const bad of [0, -1, 1.5, NaN, Infinity, 2 ** 31 + 1]) {
      expect(() => quantizeActivations(x8, bad, 4)).toThrow(RangeError);
      expect(() => quantizeActivations(x8, bad, 4)).toThrow(/n must be an integer in 1\.\.2\^31/);
      expect(() => TernaryMatrix.fromFloat32(x8, 2, bad)).toThrow(/cols must be an integer in 1\.\.2\^31/);
      expect(() => gemmF32({ a: x8, b: x8, m: bad, n: 1, k: 8 })).toThrow(RangeError);
    }
    expect(() => matrix().gemmI8(new Int8Array(0), new Float32Array(0), 0)).toThrow(RangeError);
  });

  it('threads outside 1..pool size are RangeErrors', () => {
    const pool = cpuInfo().threads;
    const m = matrix();
    for (const threads of [0, -1, pool + 1, 1.5, NaN]) {
      expect(() => quantizeActivations(x8, 2, 4, { threads })).toThrow(new RegExp(`threads must be an integer in 1\\.\\.${pool}`));
      expect(() => m.matmulF32(new Float32Array(5), 1, { threads })).toThrow(RangeError);
      expect(() => gemmF32({ a: x8, b: x8, m: 1, n: 1, k: 8 }, { threads })).toThrow(RangeError);
      expect(() => rmsNormGain({ x: x8, n: 2, d: 4, wBase, gain: gainF32 }, { threads })).toThrow(RangeError);
    }
    expect(() => quantizeActivations(x8, 2, 4, { threads: any('2') })).toThrow(TypeError);
    expect(Array.from(quantizeActivations(x8, 2, 4, { threads: pool }).scales)).toHaveLength(2);
  });

  it('NaN/Inf inputs and non-finite scales are RangeErrors', async () => {
    const m = matrix(3, 5);
    const bad = new Float32Array([1, 2, NaN, 4, 5]);
    expect(() => quantizeActivations(bad, 1, 5)).toThrow(RangeError);
    expect(() => quantizeActivations(bad, 1, 5)).toThrow(/NaN or Inf/);
    expect(() => m.matmulF32(bad, 1)).toThrow(/x\[2\] is nan; expected finite values/);
    expect(() => m.matmulF32T(new Float32Array([0, Infinity, 0]), 1)).toThrow(/dy\[1\] is inf/);
    expect(() => TernaryMatrix.fromFloat32(bad, 1, 5)).toThrow(/not finite/);
    expect(() => TernaryMatrix.fromTrits(new Int8Array(5), new Float32Array([NaN]), 1, 5)).toThrow(
      new RangeError('scales[0] is NaN; expected finite values'),
    );
    const qa = quantizeActivations(new Float32Array(5).fill(1), 1, 5);
    expect(() => m.gemmI8(qa.q, new Float32Array([Infinity]), 1)).toThrow(/xScales\[0\] is Infinity/);
    expect(() => gemmF32({ a: bad, b: new Float32Array(5), m: 1, n: 1, k: 5 })).toThrow(/a\[2\] is nan/);
    expect(() => gemmF32({ a: new Float32Array(1), b: new Float32Array(1), m: 1, n: 1, k: 1, alpha: Infinity })).toThrow(RangeError);
    expect(() => gemmF32({ a: new Float32Array(1), b: new Float32Array(1), m: 1, n: 1, k: 1, alpha: 1e39 })).toThrow(/float range/);
    const c = new Float32Array([NaN]);
    expect(() => gemmF32({ a: new Float32Array(1), b: new Float32Array(1), m: 1, n: 1, k: 1, beta: 1, c })).toThrow(/c\[0\] is nan/);
    const xNaN = x8.slice();
    xNaN[5] = NaN;
    expect(() => rmsNormGain({ x: xNaN, n: 2, d: 4, wBase, gain: gainF32 })).toThrow(RangeError);
    expect(() => rmsNormGainI8({ x: xNaN, n: 2, d: 4, wBase, gain: gainF32 })).toThrow(/x\[1\]\[1\]/);
    expect(() =>
      rmsNormGain({ x: x8, n: 2, d: 4, wBase, gain: { scheme: 'int8_per_tensor', data: new Int8Array(4), scale: NaN } }),
    ).toThrow(/gain.scale must be a finite number/);
    expect(() =>
      rmsNormGain({ x: x8, n: 2, d: 4, wBase, gain: { scheme: 'raw_fp16', data: new Uint16Array([0x3c00, 0x7c00, 0, 0]) } }),
    ).toThrow(RangeError);
    expect(() => rmsNormGain({ x: x8, n: 2, d: 4, wBase: new Float32Array([1, NaN, 1, 1]), gain: gainF32 })).toThrow(/w_base\[1\]/);
    for (const eps of [0, -1e-5, NaN]) {
      expect(() => rmsNormGain({ x: x8, n: 2, d: 4, wBase, gain: gainF32, eps })).toThrow(RangeError);
    }
    // Async variants reject with the same class, whether the TS layer or the worker finds it.
    await expect(m.matmulF32Async(bad, 1)).rejects.toThrow(RangeError);
    await expect(m.matmulF32Async(bad, 1)).rejects.toThrow(/x\[2\] is nan/);
    await expect(m.gemmI8Async(qa.q, new Float32Array([NaN]), 1)).rejects.toThrow(RangeError);
    await expect(gemmF32Async({ a: bad, b: new Float32Array(5), m: 1, n: 1, k: 5 })).rejects.toThrow(/a\[2\] is nan/);
    await expect(m.matmulF32TAsync(any(new Float64Array(3)), 1)).rejects.toThrow(TypeError);
  });

  it('invalid values are RangeErrors: trits, corrupt storage, gain scheme, beta without c, aliasing', () => {
    expect(() => TernaryMatrix.fromTrits(new Int8Array([0, 2, 0]), new Float32Array([1]), 1, 3)).toThrow(RangeError);
    expect(() => TernaryMatrix.fromTrits(new Int8Array([0, 2, 0]), new Float32Array([1]), 1, 3)).toThrow(/col 1/);
    expect(() => TernaryMatrix.fromStorage(new Uint8Array([243]), new Float32Array([1]), 1, 5)).toThrow(RangeError);
    // 2 trits in the last byte: a nonzero code in an unused position is corruption.
    expect(() => TernaryMatrix.fromStorage(new Uint8Array([4 + 9 * 2]), new Float32Array([1]), 1, 2)).toThrow(RangeError);
    expect(() => rmsNormGain({ x: x8, n: 2, d: 4, wBase, gain: any({ scheme: 'f8', data: new Float32Array(4) }) })).toThrow(
      new RangeError("gain.scheme must be 'raw_fp32', 'raw_fp16' or 'int8_per_tensor', got 'f8'"),
    );
    const a = new Float32Array(4);
    expect(() => gemmF32({ a, b: a, m: 2, n: 2, k: 2, beta: 1 })).toThrow(/beta = 1 needs c/);
    expect(() => gemmF32({ a, b: new Float32Array(4), m: 2, n: 2, k: 2, c: a })).toThrow(/c must not share memory with a or b/);
    const shared = new Float32Array(8);
    expect(() => gemmF32({ a: shared.subarray(0, 4), b: new Float32Array(4), m: 2, n: 2, k: 2, c: shared.subarray(2, 6) })).toThrow(
      /must not share memory/,
    );
    // Disjoint views of one buffer are fine.
    gemmF32({ a: shared.subarray(0, 4), b: new Float32Array(4), m: 2, n: 2, k: 2, c: shared.subarray(4, 8) });
  });

  it('the raw addon checks its arguments itself (no out-of-bounds reads, no crash)', () => {
    const addon = loadAddon();
    const m = matrix(3, 5);
    const q = new Int8Array(16);
    const xs = new Float32Array(1);
    expect(() => (addon.gemmI8 as unknown as () => unknown)()).toThrow(new TypeError('packed must be a Uint8Array'));
    expect(() => addon.gemmI8(new Uint8Array(10), m.scales, 3, 5, q, xs, 1)).toThrow(
      /packed must have padded_rows\(rows\) \* padded_cols\(cols\) \/ 4 = 64 elements, got 10/,
    );
    expect(() => addon.gemmI8(m.packed, m.scales, 3, 5, q, xs, 2)).toThrow(/q must have n \* paddedCols = 32 elements, got 16/);
    expect(() => addon.gemmI8(m.packed, m.scales, 40, 5, q, xs, 1)).toThrow(RangeError); // packed too short for 40 rows
    expect(() => addon.gemmI8(m.packed, new Float32Array(2), 3, 5, q, xs, 1)).toThrow(/scales must have rows = 3 elements, got 2/);
    const padded = q.slice();
    padded[7] = 1; // past cols = 5: the padding must be zero
    expect(() => addon.gemmI8(m.packed, m.scales, 3, 5, padded, xs, 1)).toThrow(/padding/);
    expect(() => addon.matmulF32(m.packed, m.scales, 3, 5, new Float32Array(4), 1)).toThrow(RangeError);
    expect(() => addon.matmulF32T(m.packed, m.scales, 3, 5, new Float32Array(5), 1)).toThrow(RangeError);
    expect(() => addon.quantizeActivations(x8, 2 ** 31, 2 ** 31)).toThrow(RangeError);
    expect(() => addon.quantizeActivations(x8, 2, 4, 0)).toThrow(/threads must be an integer/);
    expect(() => addon.quantizeActivations(x8, 2, 4, any('all'))).toThrow(TypeError);
    expect(() => addon.unpack5(new Uint8Array(1), 6)).toThrow(/count must be an integer in 1\.\.5/);
    expect(() => addon.unpack5(new Uint8Array(3), 6)).toThrow(/bytes must have ceil\(count \/ 5\) = 2 elements, got 3/);
    expect(() => addon.unpack2(new Uint8Array(63), 3, 5)).toThrow(RangeError);
    expect(() => addon.pack2(new Int8Array([5]), 1, 1)).toThrow(RangeError);
    expect(() => addon.pack5(new Int8Array(0))).toThrow(/must not be empty/);
    expect(() => addon.absmeanQuantize(x8, 3, 3, false)).toThrow(/w must have rows \* cols = 9 elements, got 8/);
    expect(() => addon.absmeanQuantize(x8, 2, 4, any(1))).toThrow(new TypeError('perRow must be a boolean'));
    expect(() => addon.gemmF32(x8, x8, 1, 1, 8, false, false, 1, 0, x8)).toThrow(/c must have m \* n = 1 elements, got 8/);
    expect(() => addon.gemmF32(x8, x8, 2, 2, 4, false, true, 1, 1, undefined)).toThrow(/needs c/);
    expect(() => addon.gemmF32(x8.subarray(0, 4), x8.subarray(0, 4), 2, 2, 2, false, false, 1, 0, x8.subarray(2, 6))).toThrow(
      /must not share memory/,
    );
    expect(() => addon.rmsNormGain(x8, 2, 4, wBase, any('q4'), new Float32Array(4), undefined, 1e-5)).toThrow(RangeError);
    expect(() => addon.rmsNormGain(x8, 2, 4, wBase, 'int8_per_tensor', new Int8Array(4), undefined, 1e-5)).toThrow(
      /gain.scale must be a number/,
    );
    expect(() => addon.rmsNormGain(x8, 2, 4, wBase, 'raw_fp16', new Float32Array(4), undefined, 1e-5)).toThrow(TypeError);
    expect(() => addon.rmsNormGainBackward(x8, 2, 4, wBase, 'raw_fp32', new Float32Array(4), undefined, 1e-5, new Float32Array(7))).toThrow(
      /dy must have n \* d = 8 elements, got 7/,
    );
    // A detached buffer reads as length 0, never as its old memory.
    const detached = new Float32Array(8);
    structuredClone(detached.buffer, { transfer: [detached.buffer] });
    expect(detached.length).toBe(0);
    expect(() => addon.quantizeActivations(detached, 2, 4)).toThrow(/x must have n \* cols = 8 elements, got 0/);
    expect(() => quantizeActivations(detached, 2, 4)).toThrow(RangeError);
  });

  it('still computes correctly after all those errors', () => {
    const m = matrix(3, 5);
    const y = m.matmulF32(new Float32Array([1, 2, 3, 4, 5]), 1);
    // trits by row: [-1 0 1 -1 0], [1 -1 0 1 -1], [0 1 -1 0 1]; scale 0.5
    expect(Array.from(y)).toEqual([0.5 * (-1 + 3 - 4), 0.5 * (1 - 2 + 4 - 5), 0.5 * (2 - 3 + 5)]);
  });
});
