// The model engine through its typed surface: files (round trip, corruption,
// other bases), training (loss goes down, determinism, exact resume),
// evaluation (ppl = exp(mean nll), thread-count independence), adapters.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { cpuInfo } from '../lib/kernels.js';
import { Adapter } from '../lib/adapter/adapter.js';
import { evaluate, Model, SplitMix64, Trainer, WindowSampler, trainAdapter, trainBase } from '../lib/model/index.js';
import { BpeTokenizer } from '../lib/tokenizer/bpe.js';
import { wordCorpusBytes as corpus } from './word-corpus.js';

const dir = mkdtempSync(join(tmpdir(), 'ternorm-model-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const TEXT = corpus(1, 400);
const VAL = corpus(2, 60);
const TOK = BpeTokenizer.train(TEXT, { vocabSize: 300 });
const TINY = { vocab: 300, dModel: 32, nLayers: 2, nHeads: 2, dFf: 64, context: 32 };
const TRAIN = { mode: 'ternary' as const, batch: 4, seq: 16, lr: 3e-3, minLr: 3e-4, warmup: 2, totalSteps: 40 };
const TOKENS = TOK.encode(TEXT);

function batches(seed: number, n: number): Int32Array[] {
  const s = new WindowSampler(TOKENS, TRAIN.seq, new SplitMix64(seed));
  return Array.from({ length: n }, () => s.nextBatch(TRAIN.batch));
}

function flip(bytes: Uint8Array, at: number): Uint8Array {
  const c = bytes.slice();
  c[at] = c[at]! ^ 0x10;
  return c;
}

describe('model files', () => {
  const model = Model.create(TINY, 7, TOK);
  const bytes = model.toBytes({ note: 'x' });

  it('round-trips bit for bit and keeps fingerprint, tokenizer and meta', async () => {
    const again = Model.load(bytes);
    expect(again.config).toEqual(model.config);
    expect(again.meta).toEqual({ note: 'x' });
    expect(again.fingerprint).toBe(model.fingerprint);
    expect(again.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(again.tokenizer).toBeInstanceOf(BpeTokenizer);
    expect(Buffer.from((again.tokenizer as BpeTokenizer).serialize()).equals(Buffer.from(TOK.serialize()))).toBe(true);
    expect(again.hasLatent).toBe(false);
    expect(Buffer.from(again.toBytes({ note: 'x' })).equals(Buffer.from(bytes))).toBe(true);
    const a = await evaluate(model, null, TOKENS.subarray(0, 200));
    const b = await evaluate(again, null, TOKENS.subarray(0, 200));
    expect(Array.from(b.nll)).toEqual(Array.from(a.nll));
    const path = join(dir, 'm.tnm');
    model.save(path, { note: 'x' });
    expect(Buffer.from(readFileSync(path)).equals(Buffer.from(bytes))).toBe(true);
    expect(Model.load(path).fingerprint).toBe(model.fingerprint);
  });

  it('different seeds give different fingerprints; the same seed the same bytes', () => {
    expect(Buffer.from(Model.create(TINY, 7, TOK).toBytes({ note: 'x' })).equals(Buffer.from(bytes))).toBe(true);
    const other = Model.create(TINY, 8, TOK);
    other.toBytes();
    expect(other.fingerprint).not.toBe(model.fingerprint);
  });

  it('refuses truncated, corrupt, wrong-kind, wrong-version and oversized files with clear errors', () => {
    expect(() => Model.load(bytes.subarray(0, bytes.length - 5))).toThrow(/truncated/);
    expect(() => Model.load(bytes.subarray(0, 30))).toThrow(/truncated|too short|header/i);
    expect(() => Model.load(flip(bytes, Math.floor(bytes.length / 2)))).toThrow(/checksum mismatch in section/);
    expect(() => Model.load(flip(bytes, 20))).toThrow(/header checksum/);
    const v2 = bytes.slice();
    v2[8] = 2;
    expect(() => Model.load(v2)).toThrow(/version 2, this build reads 1/);
    expect(() => Model.load(new TextEncoder().encode('hello, not a model at all, clearly not'))).toThrow(/not a ternorm file|magic/i);
    expect(() => Model.load(bytes, { maxBytes: 1000 })).toThrow(/limit/);
    const adapter = Adapter.identity(model).toBytes(model);
    expect(() => Model.load(adapter)).toThrow(/expected a model file, got an adapter file/);
    expect(() => Model.load(join(dir, 'missing.tnm'))).toThrow(/missing\.tnm/);
    const junkPath = join(dir, 'junk.tnm');
    writeFileSync(junkPath, bytes.subarray(0, 1000));
    expect(() => Model.load(junkPath)).toThrow(/junk\.tnm.*truncated|truncated.*junk/);
  });

  it('checks arguments', () => {
    expect(() => Model.create({ ...TINY, nHeads: 3 })).toThrow(RangeError);
    expect(() => Model.create(TINY, -1)).toThrow(/seed/);
    expect(() => Model.load(42 as unknown as string)).toThrow(TypeError);
    expect(() => new Trainer(model, { ...TRAIN, seq: 64 })).toThrow(/seq must be an integer in 1..32/);
    expect(() => new Trainer(model, TRAIN).step(new Int32Array(5))).toThrow(/batch \* \(seq \+ 1\)/);
    const bad = new Int32Array(4 * 17).fill(999);
    expect(() => new Trainer(Model.create(TINY, 1, TOK), TRAIN).step(bad)).toThrow(/token id 999 is out of range/);
  });
});

describe('adapters', () => {
  const base = Model.create(TINY, 3, TOK);
  base.toBytes();
  const other = Model.create(TINY, 4, TOK);
  other.toBytes();
  const gains = new Float32Array(base.nGains).map((_, i) => 1 + 0.001 * i);

  it('round-trips and records the base; another base is refused', () => {
    const bytes = new Adapter(gains, { user: 'u' }).toBytes(base);
    const back = Adapter.load(base, bytes);
    expect(Array.from(back.gains)).toEqual(Array.from(gains));
    expect(back.meta).toEqual({ user: 'u' });
    expect(() => Adapter.load(other, bytes)).toThrow(/trained on base model [0-9a-f]{16}\.\.\. but the loaded base model is/);
    expect(() => Adapter.load(base, bytes.subarray(0, bytes.length - 1))).toThrow(/truncated/);
    expect(() => Adapter.load(base, flip(bytes, bytes.length - 10))).toThrow(/checksum/);
    expect(() => Adapter.load(base, base.toBytes())).toThrow(/is a model file, not an adapter/);
    const path = join(dir, 'u.adapter');
    new Adapter(gains).save(base, path);
    expect(Array.from(Adapter.load(base, path).gains)).toEqual(Array.from(gains));
  });

  it('refuses gains of the wrong size or non-finite', () => {
    expect(() => new Adapter(new Float32Array(3)).toBytes(base)).toThrow(/needs n_norms \* d_model = 160/);
    expect(() => new Adapter(new Float32Array([1, NaN]))).toThrow(/gains\[1\] is NaN/);
  });

  it('cannot be saved against a base that changed since it was saved', () => {
    const m = Model.create(TINY, 5, TOK);
    expect(() => Adapter.identity(m).toBytes(m)).toThrow(/no fingerprint yet/);
  });
});

describe('training and evaluation', () => {
  it('training steps lower the loss, deterministically for a seed', async () => {
    const run = async () => {
      const m = Model.create(TINY, 11, TOK);
      const t = new Trainer(m, TRAIN);
      const losses: number[] = [];
      for (const b of batches(5, 30)) losses.push((await t.stepAsync(b)).loss);
      return { losses, bytes: m.toBytes() };
    };
    const a = await run();
    const b = await run();
    expect(a.losses).toEqual(b.losses);
    expect(Buffer.from(a.bytes).equals(Buffer.from(b.bytes))).toBe(true);
    const first = a.losses.slice(0, 3).reduce((x, y) => x + y) / 3;
    const last = a.losses.slice(-3).reduce((x, y) => x + y) / 3;
    expect(last).toBeLessThan(first - 0.3);
  });

  it('a checkpoint resumes bit for bit (ternary and fp32 modes)', async () => {
    for (const mode of ['ternary', 'fp32'] as const) {
      const data = batches(9, 8);
      const straight = Model.create(TINY, 12, TOK);
      const ts = new Trainer(straight, { ...TRAIN, mode });
      for (const b of data) await ts.stepAsync(b);
      if (mode === 'fp32') straight.quantize();

      const first = Model.create(TINY, 12, TOK);
      const tf = new Trainer(first, { ...TRAIN, mode });
      for (const b of data.slice(0, 3)) await tf.stepAsync(b);
      if (mode === 'fp32') first.quantize();
      const ck = join(dir, `resume-${mode}.ckpt`);
      first.saveCheckpoint(ck, tf, { any: 'state' });
      const { model: resumed, checkpoint } = Model.loadWithCheckpoint(ck);
      expect(checkpoint!.step).toBe(3);
      expect(checkpoint!.state).toEqual({ any: 'state' });
      expect(resumed.hasLatent).toBe(true);
      const tr = new Trainer(resumed, { ...TRAIN, mode });
      tr.restore(checkpoint!);
      for (const b of data.slice(3)) await tr.stepAsync(b);
      if (mode === 'fp32') resumed.quantize();
      expect(Buffer.from(resumed.toBytes()).equals(Buffer.from(straight.toBytes()))).toBe(true);
    }
  });

  it('a model file without latent weights refuses base training and f32 evaluation', async () => {
    const m = Model.load(Model.create(TINY, 1, TOK).toBytes());
    expect(() => new Trainer(m, TRAIN)).toThrow(/latent weights/);
    await expect(evaluate(m, null, TOKENS.subarray(0, 50), { precision: 'fp32' })).rejects.toThrow(/latent weights/);
    expect(() => m.quantize()).toThrow(/latent weights/);
  });

  it('evaluate: ppl = exp(mean nll), nll per token, bpb from the bytes; threads 1 and 2 agree', async () => {
    const m = Model.create(TINY, 2, TOK);
    const tokens = TOKENS.subarray(0, 150);
    const r1 = await evaluate(m, null, tokens, { threads: 1 });
    expect(r1.nll.length).toBe(tokens.length - 1);
    const mean = r1.nll.reduce((a, b) => a + b, 0) / r1.nll.length;
    expect(r1.meanNll).toBeCloseTo(mean, 12);
    expect(r1.perplexity).toBeCloseTo(Math.exp(mean), 9);
    const bytes = TOK.decode(tokens.subarray(1)).length;
    expect(r1.nBytes).toBe(bytes);
    expect(r1.bitsPerByte).toBeCloseTo(r1.totalNll / Math.LN2 / bytes, 12);
    expect(r1.perplexity).toBeGreaterThan(100); // an untrained model over 300 tokens
    const threads = Math.min(2, cpuInfo().threads);
    const r2 = await evaluate(m, null, tokens, { threads });
    expect(Array.from(r2.nll)).toEqual(Array.from(r1.nll));
    const withIdentity = await evaluate(m, Adapter.identity(m), tokens);
    expect(Array.from(withIdentity.nll)).toEqual(Array.from(r1.nll));
    await expect(evaluate(m, null, new Int32Array([1]))).rejects.toThrow(/at least 2 tokens/);
    await expect(evaluate(m, new Float32Array(3), tokens)).rejects.toThrow(/gains must have/);
  });

  it('training threads 1 vs 2 give identical weights', async () => {
    const threads = Math.min(2, cpuInfo().threads);
    const run = async (t: number) => {
      const m = Model.create(TINY, 21, TOK);
      const tr = new Trainer(m, TRAIN);
      for (const b of batches(3, 4)) await tr.stepAsync(b, TRAIN.batch, t);
      return m.toBytes();
    };
    expect(Buffer.from(await run(1)).equals(Buffer.from(await run(threads)))).toBe(true);
  });

  it("gradQuant 'int8': adapter gains the same at 1 and 2 threads, near f32's; base modes and bad names are refused", async () => {
    const threads = Math.min(2, cpuInfo().threads);
    const m = Model.create(TINY, 21, TOK);
    m.quantize();
    const run = async (gradQuant: 'f32' | 'int8', t: number) => {
      const tr = new Trainer(m, { mode: 'adapter', batch: TRAIN.batch, seq: TRAIN.seq, totalSteps: 4, warmup: 1, gradQuant });
      for (const b of batches(3, 4)) await tr.stepAsync(b, TRAIN.batch, t);
      return tr.gains();
    };
    const g8 = await run('int8', 1);
    expect(Buffer.from(g8.buffer).equals(Buffer.from((await run('int8', threads)).buffer))).toBe(true);
    const g32 = await run('f32', 1);
    let dd = 0;
    let d32 = 0;
    for (let i = 0; i < g8.length; ++i) {
      dd += (g8[i]! - g32[i]!) ** 2;
      d32 += (g32[i]! - 1) ** 2;
    }
    expect(d32).toBeGreaterThan(0);
    expect(Math.sqrt(dd / d32)).toBeLessThan(0.1); // the updates agree to 10 %
    expect(() => new Trainer(m, { mode: 'ternary', seq: 16, gradQuant: 'int8' })).toThrow(/is for the adapter mode/);
    expect(() => new Trainer(m, { mode: 'adapter', seq: 16, gradQuant: 'f16' })).toThrow(/gradQuant must be one of 'f32', 'int8'/);
  });

  it('the model is locked while an async call runs on it', async () => {
    const m = Model.create(TINY, 2, TOK);
    const t = new Trainer(m, TRAIN);
    const [b] = batches(1, 1);
    const p = t.stepAsync(b!);
    expect(() => t.step(b!)).toThrow(/busy/);
    await p;
    expect(t.step(b!).step).toBe(2);
  });
});

describe('runs', () => {
  const run = { config: TINY, steps: 8, batch: 4, seq: 16, warmup: 2, evalEvery: 4, evalTokens: 200, checkpointEvery: 3, seed: 5 };

  it('trainBase: stopped and resumed equals uninterrupted, byte for byte', async () => {
    const a = join(dir, 'a.tnm');
    const b = join(dir, 'b.tnm');
    const ra = await trainBase({ trainText: TEXT, validationText: VAL, out: a, run });
    expect(ra.status).toBe('done');
    expect(ra.history.map((h) => h.step)).toEqual([4]);
    const stop = await trainBase({ trainText: TEXT, validationText: VAL, out: b, run, stopAfter: 4 });
    expect(stop.status).toBe('stopped');
    expect(stop.stepsDone).toBe(4);
    const res = await trainBase({ trainText: TEXT, validationText: VAL, out: b, resume: stop.checkpoint! });
    expect(res.status).toBe('done');
    expect(Buffer.from(readFileSync(b)).equals(Buffer.from(readFileSync(a)))).toBe(true);
    await expect(trainBase({ trainText: VAL, validationText: VAL, out: b, resume: stop.checkpoint! })).rejects.toThrow(
      /training text differs/,
    );
    await expect(trainBase({ trainText: TEXT, validationText: VAL, out: b, resume: a })).rejects.toThrow(/not a checkpoint/);
  });

  it('trainAdapter: improves on the base for its user, keeps the best gains, saves against the base', async () => {
    const basePath = join(dir, 'base-for-adapter.tnm');
    await trainBase({ trainText: TEXT, validationText: VAL, out: basePath, run: { ...run, steps: 30, checkpointEvery: 0 } });
    const base = Model.load(basePath);
    const user = corpus(77, 150);
    const r = await trainAdapter(base, user, { seq: 16, batch: 4, maxSteps: 40, evalEvery: 5, patience: 3, seed: 1 });
    const again = await trainAdapter(base, user, { seq: 16, batch: 4, maxSteps: 40, evalEvery: 5, patience: 3, seed: 1 });
    expect(Array.from(again.adapter.gains)).toEqual(Array.from(r.adapter.gains));
    expect(r.bestLoss).toBeLessThanOrEqual(r.baselineLoss);
    expect(r.history.length).toBeGreaterThan(0);
    const best = Math.min(r.baselineLoss, ...r.history.map((h) => h.loss));
    expect(r.bestLoss).toBe(best);
    const path = join(dir, 'user.adapter');
    r.adapter.save(base, path);
    expect(Array.from(Adapter.load(base, path).gains)).toEqual(Array.from(r.adapter.gains));
    await expect(trainAdapter(base, new TextEncoder().encode('too short'), { seq: 16 })).rejects.toThrow(/too short/);
  });
});
