// Adapter encodings through the typed surface: every method encodes, the norm kernel decodes the
// blob to exactly the gains the codec reports, the bet's int8 rule matches an independent decoder
// written here, encoded adapter files round trip and bad blobs, files and options are refused.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { codecMethods, encodeAdapter } from '../lib/adapter/codec.js';
import { Adapter, Encoding } from '../lib/adapter/adapter.js';
import { evaluate, Model } from '../lib/model/index.js';
import { BpeTokenizer } from '../lib/tokenizer/bpe.js';
import { wordCorpusBytes } from './word-corpus.js';

const dir = mkdtempSync(join(tmpdir(), 'ternorm-codec-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const WORDS = ['gain', 'norm', 'scale', 'tensor', 'a', 'the', 'of', 'quantised', 'adapter', 'user', 'ships', 'bytes', 'per', 'fleet'];
const corpus = (seed: number, sentences: number) => wordCorpusBytes(seed, sentences, WORDS);
const TOK = BpeTokenizer.train(corpus(1, 500), { vocabSize: 300 });
const TINY = { vocab: 300, dModel: 32, nLayers: 2, nHeads: 2, dFf: 64, context: 32 };
const model = Model.create(TINY, 11, TOK);
model.toBytes(); // gives the model its fingerprint
const other = Model.create(TINY, 12, TOK);
other.toBytes();
const TOKENS = TOK.encode(corpus(2, 200));
const gains = new Float32Array(model.nGains).map((_, i) => 1 + 0.04 * Math.sin(i * 0.37) + (i % 17 === 0 ? 0.2 : 0));
const calibration = { tokens: TOKENS.subarray(0, 300) };
const N_NORMS = 2 * TINY.nLayers + 1;

/** An independent decoder of the bet's scheme: u32 version, u32 n, then per record u32 scheme, u32 d, u32 nParams, f32 params, i8 q. */
function decodeInt8PerTensor(blob: Uint8Array): Float32Array {
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  expect(dv.getUint32(0, true)).toBe(1);
  const n = dv.getUint32(4, true);
  const out: number[] = [];
  let at = 8;
  for (let t = 0; t < n; t++) {
    expect(dv.getUint32(at, true)).toBe(2); // int8_per_tensor
    const d = dv.getUint32(at + 4, true);
    expect(dv.getUint32(at + 8, true)).toBe(1);
    const scale = dv.getFloat32(at + 12, true);
    for (let i = 0; i < d; i++) out.push(Math.fround(dv.getInt8(at + 16 + i) * scale));
    at += 16 + d;
  }
  expect(at).toBe(blob.length);
  return Float32Array.from(out);
}

describe('adapter encodings', () => {
  it('lists the methods, the searching and budgeted ones marked', () => {
    const m = codecMethods();
    expect(m.map((x) => x.name)).toEqual([
      'raw_fp32',
      'raw_fp16',
      'int8_per_tensor',
      'int8_group',
      'int8_asym',
      'int8_delta',
      'int4_delta',
      'kmeans16',
      'kmeans256',
      'int4_calibrated',
      'mixed',
      'int3_delta',
      'int2_delta',
      'sign1_delta',
      'kmeans2',
      'kmeans4',
      'kmeans8',
      'sparse_delta',
      'rice_int4_delta',
      'rice_int3_delta',
      'alloc',
    ]);
    expect(m.filter((x) => x.needsLoss).map((x) => x.name)).toEqual(['int4_calibrated', 'mixed', 'alloc']);
    expect(m.filter((x) => x.needsBudget).map((x) => x.name)).toEqual(['mixed', 'sparse_delta', 'alloc']);
  });

  it('every method: the kernel decodes the blob to the reported gains; files round trip bit for bit', async () => {
    const raw = await evaluate(model, gains, TOKENS);
    for (const { name } of codecMethods()) {
      const r = await encodeAdapter(model, gains, name, { calibration, byteBudget: 1200 });
      expect(r.encoding.method).toBe(name);
      expect(r.encoding.blob.length).toBe(r.encoding.bytes);
      expect(r.encoding.tensors).toHaveLength(N_NORMS);
      // format 1: 8-byte adapter header; format 2 (the low-rate methods): 12 bytes, compact records
      expect(r.encoding.tensors.reduce((s, t) => s + t.recordBytes, r.encoding.format === 1 ? 8 : 12)).toBe(r.encoding.bytes);
      if (name === 'sparse_delta' || name === 'alloc') expect(r.encoding.bytes).toBeLessThanOrEqual(1200);
      const viaBlob = await evaluate(model, r.encoding, TOKENS);
      const viaGains = await evaluate(model, r.encoding.gains, TOKENS);
      expect(Array.from(viaBlob.nll)).toEqual(Array.from(viaGains.nll));
      if (name === 'raw_fp32') expect(Array.from(viaBlob.nll)).toEqual(Array.from(raw.nll));
      const maxErr = r.encoding.gains.reduce((m, g, i) => Math.max(m, Math.abs(g - gains[i]!)), 0);
      // int4_calibrated clips large deltas on purpose (chosen by loss, not weight error): no bound.
      // The low-rate methods' bounds are checked in native/tests/codec_lowrate_test.cpp.
      const lowRate = r.encoding.format === 2;
      if (name !== 'int4_calibrated' && !lowRate) expect(maxErr).toBeLessThan(name === 'mixed' || name === 'int4_delta' ? 0.05 : 0.01);
      const path = join(dir, `${name}.adapter`);
      Adapter.fromEncoding(r.encoding, { scheme: name }).save(model, path);
      const back = Adapter.load(model, path);
      expect(back.scheme).toBe(name);
      expect(Buffer.from(back.encoding!.blob).equals(Buffer.from(r.encoding.blob))).toBe(true);
      expect(Array.from(back.gains)).toEqual(Array.from(r.encoding.gains));
      expect(() => Adapter.load(other, path)).toThrow(/trained on base model/);
    }
  });

  it("the bet's int8: scale = max|g| / 127, q = round(g / scale), decoded as q * scale (checked by a decoder written here)", async () => {
    const r = await encodeAdapter(model, gains, 'int8_per_tensor');
    expect(Array.from(decodeInt8PerTensor(r.encoding.blob))).toEqual(Array.from(r.encoding.gains));
    const d = model.config.dModel;
    r.encoding.tensors.forEach((t, i) => {
      const g = gains.subarray(i * d, (i + 1) * d);
      const max = g.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
      const scale = t.params[0]!;
      expect(scale * 127).toBeGreaterThanOrEqual(max);
      expect(scale).toBeCloseTo(max / 127, 6);
      for (let k = 0; k < d; k++) expect(Math.abs(r.encoding.gains[i * d + k]! - g[k]!)).toBeLessThanOrEqual(scale / 2 + 1e-7);
    });
  });

  it('int4_calibrated and mixed report their search, scored on the calibration tokens', async () => {
    const c = await encodeAdapter(model, gains, 'int4_calibrated', { calibration, clipGrid: [1, 0.8, 0.6] });
    expect(c.calibration!.grid).toEqual([1, 0.8, 0.6]);
    expect(c.calibration!.clip).toHaveLength(N_NORMS);
    expect(c.calibration!.lossEvals).toBeGreaterThanOrEqual(3);
    // the reported loss is the calibration loss of the returned encoding
    const again = await evaluate(model, c.encoding, calibration.tokens, { stride: model.config.context });
    expect(c.calibration!.loss).toBe(again.meanNll);
    const m = await encodeAdapter(model, gains, 'mixed', { calibration, byteBudget: 900 });
    expect(m.mixed!.bytes).toBeLessThanOrEqual(900);
    expect(m.encoding.bytes).toBe(m.mixed!.bytes);
    expect(m.mixed!.choice).toHaveLength(N_NORMS);
  });

  it('is deterministic', async () => {
    for (const name of ['kmeans16', 'int4_calibrated']) {
      const a = await encodeAdapter(model, gains, name, { calibration });
      const b = await encodeAdapter(model, gains, name, { calibration, threads: 1 });
      expect(Buffer.from(a.encoding.blob).equals(Buffer.from(b.encoding.blob))).toBe(true);
    }
  });

  it('bad input: clear errors', async () => {
    await expect(encodeAdapter(model, gains, 'int3')).rejects.toThrow(/unknown encoding 'int3'; expected one of raw_fp32/);
    await expect(encodeAdapter(model, gains, 'int4_calibrated')).rejects.toThrow(/training-text loss: pass options.calibration/);
    await expect(encodeAdapter(model, gains, 'mixed', { calibration })).rejects.toThrow(/byteBudget/);
    await expect(encodeAdapter(model, gains, 'sparse_delta')).rejects.toThrow(/sparse_delta needs options.byteBudget/);
    await expect(encodeAdapter(model, gains, 'alloc', { byteBudget: 200 })).rejects.toThrow(/training-text loss/);
    await expect(encodeAdapter(model, gains, 'alloc', { calibration, byteBudget: 20 })).rejects.toThrow(/below the smallest allocation/);
    await expect(encodeAdapter(model, gains.subarray(1), 'int8_per_tensor')).rejects.toThrow(/n_norms \* d_model/);
    const nan = gains.slice();
    nan[5] = NaN;
    await expect(encodeAdapter(model, nan, 'int8_per_tensor')).rejects.toThrow(/not finite|finite/);
    await expect(encodeAdapter(model, gains, 'int8_group', { groupSize: 0 })).rejects.toThrow(/groupSize/);
    const ok = (await encodeAdapter(model, gains, 'int8_per_tensor')).encoding;
    // A blob cut short, with a flipped scheme id, or of another shape is refused by the parser.
    await expect(evaluate(model, ok.blob.subarray(0, ok.blob.length - 1), TOKENS)).rejects.toThrow(/gain record|adapter/);
    const bad = ok.blob.slice();
    bad[8] = 99;
    await expect(evaluate(model, bad, TOKENS)).rejects.toThrow(/scheme/);
    const wide = Model.create({ ...TINY, dModel: 64, nHeads: 2 }, 1, TOK);
    expect(() => Encoding.fromBlob(wide, 'int8_per_tensor', ok.blob)).toThrow(/d|gains|tensors/);
    // An encoded file that names one method but holds another's records is refused when written.
    const i4 = (await encodeAdapter(model, gains, 'int4_delta')).encoding;
    expect(() =>
      Adapter.fromEncoding(new Encoding('int8_per_tensor', { ...i4, tensors: [...i4.tensors], method: 'int8_per_tensor' })).toBytes(model),
    ).toThrow(/tensor 0 is encoded as int4_delta, which this method never produces/);
  });
});
