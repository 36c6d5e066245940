// Child process of test/addon-detach.test.ts: starts every async binding of the
// raw addon, detaches (transfers away and garbage-collects) each typed array it
// was given while the call runs, and checks the result against the same call
// on untouched copies. A use-after-free here kills the process (SIGSEGV), which
// the parent test sees as a non-zero exit; reading reused memory gives wrong
// results or a rejection, which fail the assertions. Run with --expose-gc and
// UV_THREADPOOL_SIZE=1: a long gemm queued first (blocker) holds the only libuv
// thread, so every call under test is still waiting when its inputs are freed.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const root = process.argv[2];
const addon = require('node-gyp-build')(root);

function detach(...arrays) {
  for (const a of arrays) structuredClone(a.buffer, { transfer: [a.buffer] });
  globalThis.gc();
  for (const a of arrays) assert.equal(a.length, 0, 'the array was detached');
}

function random(n, seed) {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}

// Queues a gemm of ~0.1 s on the (single) libuv thread.
function blocker() {
  const m = 768;
  return addon.gemmF32Async(random(m * m, 9), random(m * m, 10), m, m, m, false, false, 1, 0, undefined, 1);
}

const only = process.argv[3];
const cases = {
  async gemmF32() {
    const m = 384,
      n = 384,
      k = 384;
    const a = random(m * k, 1),
      b = random(k * n, 2),
      c = random(m * n, 3);
    const want = addon.gemmF32(a.slice(), b.slice(), m, n, k, false, false, 1, 0.5, c.slice());
    blocker();
    const p = addon.gemmF32Async(a, b, m, n, k, false, false, 1, 0.5, c);
    detach(a, b);
    assert.deepEqual(await p, want);
    // c is an output too: detaching it drops the result with an error, never a write into freed memory.
    const c2 = c.slice(),
      a2 = random(m * k, 1),
      b2 = random(k * n, 2);
    blocker();
    const p2 = addon.gemmF32Async(a2, b2, m, n, k, false, false, 1, 0.5, c2);
    detach(a2, b2, c2);
    await assert.rejects(p2, /c was detached/);
    const p3 = addon.gemmF32Async(random(m * k, 1), random(k * n, 2), m, n, k, false, false, 1, 0, undefined);
    assert.deepEqual(await p3, addon.gemmF32(random(m * k, 1), random(k * n, 2), m, n, k, false, false, 1, 0, undefined));
  },
  async ternary() {
    const rows = 512,
      cols = 512,
      n = 256;
    const { trits, scales } = addon.absmeanQuantize(random(rows * cols, 4), rows, cols, true);
    const packed = addon.pack2(trits, rows, cols);
    const x = random(n * cols, 5);
    const { q, scales: xs } = addon.quantizeActivations(x, n, cols);
    const dy = random(n * rows, 6);
    const wantI8 = addon.gemmI8(packed, scales, rows, cols, q, xs, n);
    const wantF = addon.matmulF32(packed, scales, rows, cols, x, n);
    const wantT = addon.matmulF32T(packed, scales, rows, cols, dy, n);
    const copies = () => [packed.slice(), scales.slice()];
    let [p1, s1] = copies();
    const q1 = q.slice(),
      xs1 = xs.slice();
    blocker();
    const r1 = addon.gemmI8Async(p1, s1, rows, cols, q1, xs1, n);
    detach(p1, s1, q1, xs1);
    assert.deepEqual(await r1, wantI8);
    [p1, s1] = copies();
    const x1 = x.slice();
    blocker();
    const r2 = addon.matmulF32Async(p1, s1, rows, cols, x1, n);
    detach(p1, s1, x1);
    assert.deepEqual(await r2, wantF);
    [p1, s1] = copies();
    const dy1 = dy.slice();
    blocker();
    const r3 = addon.matmulF32TAsync(p1, s1, rows, cols, dy1, n);
    detach(p1, s1, dy1);
    assert.deepEqual(await r3, wantT);
  },
  async model() {
    const config = { vocab: 64, dModel: 32, nLayers: 2, nHeads: 2, dFf: 64, context: 32, normEps: 1e-5, ropeTheta: 10000 };
    // Token arrays of ~70 KB: freed memory is reused or unmapped while the call waits.
    const B = 1024;
    const train = {
      mode: 'ternary',
      batch: B,
      seq: 16,
      lr: 3e-3,
      minLr: 3e-4,
      warmup: 2,
      totalSteps: 10,
      beta1: 0.9,
      beta2: 0.95,
      eps: 1e-8,
      weightDecay: 0.1,
      gradClip: 1,
    };
    const tokens = Int32Array.from({ length: B * 17 }, (_, i) => (i * 7) % 64);
    const ma = addon.modelCreate(config, 1),
      mb = addon.modelCreate(config, 1);
    const ta = addon.trainerCreate(ma, train),
      tb = addon.trainerCreate(mb, train);
    const want = tb.step(tokens.slice(), B, 16);
    const t1 = tokens.slice();
    blocker();
    const p = ta.stepAsync(t1, B, 16);
    detach(t1);
    assert.deepEqual(await p, want);

    const evalTokens = Int32Array.from({ length: 20_000 }, (_, i) => (i * 11) % 64);
    const gains = Float32Array.from({ length: 5 * 32 }, (_, i) => 1 + 0.01 * Math.sin(i));
    const wantEval = await addon.evaluateAsync(ma, gains.slice(), evalTokens.slice(), 60_000, 'ternary', 0, 8);
    const e1 = evalTokens.slice(),
      g1 = gains.slice();
    blocker();
    const pe = addon.evaluateAsync(ma, g1, e1, 60_000, 'ternary', 0, 8);
    detach(e1, g1);
    assert.deepEqual(await pe, wantEval);

    const options = () => ({
      groupSize: 32,
      kmeansMaxIters: 100,
      clipGrid: new Float64Array([1, 0.9, 0.8]),
      calibrationPasses: 1,
      byteBudget: 0,
    });
    const calib = () => ({ tokens: evalTokens.slice(0, 4_000), nBytes: 12_000, stride: 32, batch: 8 });
    // int8_per_tensor copies its gains; int4_calibrated also scores candidates on calibration tokens (a short prefix: it evaluates many times).
    for (const method of ['int8_per_tensor', 'int4_calibrated']) {
      const wantEnc = await addon.adapterEncodeAsync(ma, gains.slice(), method, options(), calib());
      const g2 = gains.slice(),
        c2 = calib(),
        o2 = options();
      blocker();
      const pe2 = addon.adapterEncodeAsync(ma, g2, method, o2, c2);
      detach(g2, c2.tokens, o2.clipGrid);
      assert.deepEqual(await pe2, wantEnc);
    }

    // A decoder step: its slot, count, token and sample arrays detached while it waits.
    const sampling = { temperature: 0.9, topK: 0, topP: 1, minP: 0, seed: 5 };
    const step = (d, adapter) => {
      d.start(0, adapter, sampling);
      return d.stepAsync(Int32Array.of(0), Int32Array.of(24), evalTokens.slice(0, 24), Uint8Array.of(1), true);
    };
    const wantStep = await step(addon.decoderCreate(ma, 1, 32, 'ternary'), gains.slice());
    const dec = addon.decoderCreate(ma, 1, 32, 'ternary');
    dec.start(0, gains.slice(), sampling);
    const s1 = Int32Array.of(0),
      n1 = Int32Array.of(24),
      k1 = evalTokens.slice(0, 24),
      m1 = Uint8Array.of(1);
    blocker();
    const ps = dec.stepAsync(s1, n1, k1, m1, true);
    detach(s1, n1, k1, m1);
    assert.deepEqual(await ps, wantStep);
  },
};

for (const [name, run] of Object.entries(cases)) {
  if (only !== undefined && only !== name) continue;
  await run();
  console.log(`ok ${name}`);
}
