// Ternary kernels through the typed API against the plain-JS references, on
// random inputs with odd sizes and edge cases. Runs once per ISA path.
import { expect, it } from 'vitest';

import { ACT_BLOCK, cpuInfo, paddedCols, quantizeActivations, quantizeActivationsBlock, TernaryMatrix } from '../lib/kernels.js';
import { describeOnIsa } from './isa-suite.js';
import {
  absmeanRef,
  gemmI8BlockRef,
  gemmI8Ref,
  matmulRef,
  matmulTRef,
  pack2Ref,
  pack5Ref,
  paddedColsRef,
  quantizeQ8KRef,
  quantizeRef,
  randomF32,
  randomTrits,
  rng,
  worstViolation,
} from './kernels-reference.js';

const SHAPES: Array<[number, number]> = [
  [1, 1],
  [3, 5],
  [16, 16],
  [17, 31],
  [5, 100],
  [33, 17],
  [64, 64],
  [70, 257],
];
const TOKENS = [1, 2, 7];

function expectSameBits(got: Float32Array, want: Float32Array): void {
  expect(got.length).toBe(want.length);
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const b = new Uint32Array(want.buffer, want.byteOffset, want.length);
  const bad = a.findIndex((v, i) => v !== b[i]);
  expect(bad, bad < 0 ? '' : `first mismatch at ${bad}: ${got[bad]} vs ${want[bad]}`).toBe(-1);
}

describeOnIsa('ternary kernels', () => {
  it('absmean quantisation matches the reference (per tensor and per row, zero rows)', () => {
    const rand = rng(1);
    for (const [rows, cols] of SHAPES) {
      const w = randomF32(rand, rows * cols, 0.2);
      if (rows > 2) w.fill(0, cols, 2 * cols); // an all-zero row
      for (const perRow of [false, true]) {
        const m = TernaryMatrix.fromFloat32(w, rows, cols, { perRow });
        const ref = absmeanRef(w, rows, cols, perRow);
        expect(m.rows).toBe(rows);
        expect(m.cols).toBe(cols);
        expectSameBits(m.scales, ref.scales);
        expect(m.toTrits()).toEqual(ref.trits);
        expect(m.packed).toEqual(pack2Ref(ref.trits, rows, cols));
        if (perRow && rows > 2) expect(m.scales[1]).toBe(0);
      }
    }
    // Exact halves round to even: mean|w| = 1, so 0.5 -> 0, -0.5 -> 0, 1.5 -> 2 -> 1.
    const tieW = new Float32Array([0.5, 1.5, 1, -0.5, -1.5, -1]);
    const ties = TernaryMatrix.fromFloat32(tieW, 1, 6);
    expect(Array.from(ties.toTrits())).toEqual([0, 1, 1, 0, -1, -1]);
    expect(ties.toTrits()).toEqual(absmeanRef(tieW, 1, 6, false).trits);
    // A zero tensor: scale 0, all trits 0.
    const z = TernaryMatrix.fromFloat32(new Float32Array(12), 3, 4);
    expect(Array.from(z.scales)).toEqual([0, 0, 0]);
    expect(z.toTrits().every((t) => t === 0)).toBe(true);
  });

  it('round-trips trits through the 2-bit and the 5-per-byte layouts', () => {
    const rand = rng(2);
    for (const [rows, cols] of SHAPES) {
      const trits = randomTrits(rand, rows * cols);
      const scales = randomF32(rand, rows, 1);
      const m = TernaryMatrix.fromTrits(trits, scales, rows, cols);
      expect(m.packed).toEqual(pack2Ref(trits, rows, cols));
      expect(m.toTrits()).toEqual(trits);
      expectSameBits(m.scales, scales);
      const storage = m.toStorage();
      expect(storage).toEqual(pack5Ref(trits));
      const back = TernaryMatrix.fromStorage(storage, m.scales, rows, cols);
      expect(back.packed).toEqual(m.packed);
      expect(back.toTrits()).toEqual(trits);
    }
  });

  it('fromTrits broadcasts a per-tensor scale and copies the scales', () => {
    const scales = new Float32Array([0.5]);
    const m = TernaryMatrix.fromTrits(new Int8Array([1, -1, 0, 1, 1, 0]), scales, 3, 2);
    expect(Array.from(m.scales)).toEqual([0.5, 0.5, 0.5]);
    const own = new Float32Array([1, 2, 3]);
    const m2 = TernaryMatrix.fromTrits(new Int8Array(6), own, 3, 2);
    own[0] = 9;
    expect(m2.scales[0]).toBe(1);
  });

  it('quantizeActivations matches the JS absmax quantiser bit for bit', () => {
    const rand = rng(3);
    for (const cols of [1, 5, 16, 17, 31, 100, 257]) {
      for (const n of [1, 3, 9]) {
        const x = randomF32(rand, n * cols, 4);
        if (n > 1) x.fill(0, cols, 2 * cols); // zero row -> scale 0
        if (n > 2) for (let c = 0; c < cols; c++) x[2 * cols + c] = (rand() - 0.5) * 1e-25; // below 2^-64
        const qa = quantizeActivations(x, n, cols);
        const ref = quantizeRef(x, n, cols);
        expect(qa.paddedCols).toBe(paddedColsRef(cols));
        expect(qa.n).toBe(n);
        expect(qa.cols).toBe(cols);
        expect(qa.q).toEqual(ref.q);
        expectSameBits(qa.scales, ref.scales);
      }
    }
    // Exact halves round to even: absmax 127 makes q = rne(x).
    const halves = new Float32Array([127, 0.5, 1.5, 2.5, -0.5, -2.5, 63.5, -126.5]);
    const qh = quantizeActivations(halves, 1, halves.length);
    expect(Array.from(qh.q.subarray(0, halves.length))).toEqual([127, 0, 2, 2, 0, -2, 64, -126]);
    expect(qh.q).toEqual(quantizeRef(halves, 1, halves.length).q);
    // Extremes: the largest floats, a single value.
    const x = new Float32Array([3.4e38, -3.4e38, 1.7e38, 0, 63.5, 0.5, 127, -1, 1.5, 2.5]);
    const qa = quantizeActivations(x, 1, x.length);
    expect(qa.q).toEqual(quantizeRef(x, 1, x.length).q);
    expectSameBits(qa.scales, quantizeRef(x, 1, x.length).scales);
  });

  it('gemmI8 equals (fround(dot) * xs) * ws exactly, sync and async, any thread count', async () => {
    const rand = rng(4);
    const threads = cpuInfo().threads;
    for (const [rows, cols] of SHAPES) {
      const trits = randomTrits(rand, rows * cols);
      const m = TernaryMatrix.fromTrits(trits, randomF32(rand, rows, 0.1), rows, cols);
      for (const n of TOKENS) {
        const x = randomF32(rand, n * cols, 3);
        const qa = quantizeActivations(x, n, cols);
        const want = gemmI8Ref(trits, m.scales, rows, cols, qa.q, qa.scales, n);
        const y = m.gemmI8(qa.q, qa.scales, n);
        expect(y.length).toBe(n * rows);
        expectSameBits(y, want);
        expectSameBits(m.gemmI8(qa.q, qa.scales, n, { threads: 1 }), want);
        expectSameBits(m.gemmI8(qa.q, qa.scales, n, { threads }), want);
        expectSameBits(await m.gemmI8Async(qa.q, qa.scales, n), want);
      }
    }
  });

  it("quantizeActivationsBlock is llama.cpp's q8_K, gemmI8Block its fold, bit for bit", () => {
    const rand = rng(14);
    const threads = cpuInfo().threads;
    for (const [rows, cols] of [
      [5, 17],
      [16, 256],
      [33, 257],
      [20, 768],
      [40, 1000],
    ] as const) {
      const trits = randomTrits(rand, rows * cols);
      const m = TernaryMatrix.fromTrits(trits, randomF32(rand, rows, 0.1), rows, cols);
      for (const n of [1, 3, 20]) {
        const x = randomF32(rand, n * cols, 3);
        x.fill(0, 0, Math.min(cols, 256)); // an all-zero block
        if (n > 1) x[cols + Math.floor(rand() * cols)] = 4e3; // an outlier: its block's scale only
        const qa = quantizeActivationsBlock(x, n, cols);
        const ref = quantizeQ8KRef(x, n, cols);
        expect(qa.scales.length).toBe(n * Math.ceil(cols / ACT_BLOCK));
        expect(qa.q).toEqual(ref.q);
        expectSameBits(qa.scales, ref.scales);
        const want = gemmI8BlockRef(trits, m.scales, rows, cols, qa.q, qa.scales, n);
        expectSameBits(m.gemmI8Block(qa.q, qa.scales, n, { threads: 1 }), want);
        expectSameBits(m.gemmI8Block(qa.q, qa.scales, n, { threads }), want);
      }
    }
    const m = TernaryMatrix.fromTrits(new Int8Array(4 * 300), new Float32Array(4).fill(1), 4, 300);
    const qa = quantizeActivationsBlock(new Float32Array(600).fill(1), 2, 300);
    expect(() => m.gemmI8Block(qa.q, qa.scales.subarray(0, 2), 2)).toThrow(/xScales/);
  }, 60_000);

  it('gemmI8 is exact at the int8 extremes (q = +-127, every trit)', () => {
    const rows = 19;
    const cols = 300;
    const trits = new Int8Array(rows * cols).map((_, i) => (i % 3) - 1);
    const m = TernaryMatrix.fromTrits(trits, new Float32Array([1e-3]), rows, cols);
    const pc = m.paddedCols;
    const q = new Int8Array(2 * pc);
    for (let c = 0; c < cols; c++) {
      q[c] = 127;
      q[pc + c] = c % 2 ? -127 : 127;
    }
    const xs = new Float32Array([0.5, 3.25]);
    expectSameBits(m.gemmI8(q, xs, 2), gemmI8Ref(trits, m.scales, rows, cols, q, xs, 2));
  });

  it('matmulF32 and matmulF32T match the JS ternary matmul within float rounding', async () => {
    const rand = rng(5);
    for (const [rows, cols] of SHAPES) {
      const trits = randomTrits(rand, rows * cols);
      const m = TernaryMatrix.fromTrits(trits, randomF32(rand, rows, 0.1), rows, cols);
      for (const n of TOKENS) {
        const x = randomF32(rand, n * cols, 2);
        const y = m.matmulF32(x, n);
        expect(y.length).toBe(n * rows);
        // A float sum of `cols` terms: |err| <= cols * 2^-24 * sum|terms| (plus the scale's rounding).
        expect(worstViolation(y, matmulRef(trits, m.scales, rows, cols, x, n), (cols + 2) * 2 ** -24)).toBe(-1);
        expectSameBits(m.matmulF32(x, n, { threads: 1 }), y);
        expectSameBits(await m.matmulF32Async(x, n), y);

        const dy = randomF32(rand, n * rows, 2);
        const dx = m.matmulF32T(dy, n);
        expect(dx.length).toBe(n * cols);
        expect(worstViolation(dx, matmulTRef(trits, m.scales, rows, cols, dy, n), (rows + 2) * 2 ** -24)).toBe(-1);
        expectSameBits(m.matmulF32T(dy, n, { threads: 1 }), dx);
        expectSameBits(await m.matmulF32TAsync(dy, n), dx);
      }
    }
  });

  it('runs many async calls at once, each equal to its sync result', async () => {
    const rand = rng(6);
    const rows = 40;
    const cols = 90;
    const m = TernaryMatrix.fromFloat32(randomF32(rand, rows * cols), rows, cols);
    const jobs = Array.from({ length: 12 }, (_, i) => {
      const n = 1 + (i % 5);
      const qa = quantizeActivations(randomF32(rand, n * cols), n, cols);
      const x = randomF32(rand, n * cols);
      return { n, qa, x };
    });
    const results = await Promise.all(
      jobs.flatMap(({ n, qa, x }) => [m.gemmI8Async(qa.q, qa.scales, n), m.matmulF32Async(x, n, { threads: 1 })]),
    );
    jobs.forEach(({ n, qa, x }, i) => {
      expectSameBits(results[2 * i] as Float32Array, m.gemmI8(qa.q, qa.scales, n));
      expectSameBits(results[2 * i + 1] as Float32Array, m.matmulF32(x, n));
    });
  });

  it('paddedCols rounds up to the column block', () => {
    expect([1, 15, 16, 17, 32, 33].map(paddedCols)).toEqual([16, 16, 16, 32, 32, 48]);
  });
});
