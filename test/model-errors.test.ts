// Defect 7 (the core's messages): a model file given as an adapter says so (not a size limit);
// a diverging run says "training diverged at step N"; an adapter gain of -1e30 is refused by
// norm name and index instead of surfacing as NaN activations deep in a kernel.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { Adapter } from '../lib/adapter/adapter.js';
import { evaluate, Model, SplitMix64, Trainer, WindowSampler } from '../lib/model/index.js';
import { packageRoot } from '../lib/native.js';
import { BpeTokenizer } from '../lib/tokenizer/bpe.js';
import { wordCorpusBytes as corpus } from './word-corpus.js';

const dir = mkdtempSync(join(tmpdir(), 'ternorm-model-errors-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const TEXT = corpus(1, 400);
const TOK = BpeTokenizer.train(TEXT, { vocabSize: 300 });
const TINY = { vocab: 300, dModel: 32, nLayers: 2, nHeads: 2, dFf: 64, context: 32 };
const TOKENS = TOK.encode(TEXT);
const model = Model.create(TINY, 7, TOK);
const modelPath = join(dir, 'base.tnm');
model.save(modelPath);
const base = Model.load(modelPath);

describe('a model file given as an adapter', () => {
  it('is named a model file, by path and by bytes', () => {
    expect(() => Adapter.load(base, modelPath)).toThrow(`${modelPath} is a model file, not an adapter`);
    expect(() => Adapter.load(base, base.toBytes())).toThrow('the adapter bytes is a model file, not an adapter');
  });

  it('the CLI says so too (exit 1)', () => {
    writeFileSync(join(dir, 'text.txt'), TEXT);
    const main = join(packageRoot(), 'dist', 'lib', 'cli', 'main.js');
    const r = spawnSync(
      process.execPath,
      [main, 'evaluate', '--model', modelPath, '--adapter', modelPath, '--text', join(dir, 'text.txt')],
      { encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toContain('is a model file, not an adapter');
    expect(r.stderr).not.toContain('limit');
  });
});

describe('training divergence', () => {
  const batches = (seq: number) => {
    const s = new WindowSampler(TOKENS, seq, new SplitMix64(3));
    return () => s.nextBatch(4);
  };

  for (const mode of ['adapter', 'ternary', 'fp32'] as const) {
    it(`${mode}: lr 1e30 stops with "training diverged at step N"`, async () => {
      const m = Model.create(TINY, 7, TOK);
      const t = new Trainer(m, { mode, batch: 4, seq: 16, lr: 1e30, minLr: 0, warmup: 0, totalSteps: 50 });
      const next = batches(16);
      let error: unknown = null;
      for (let i = 0; i < 50 && error === null; i++) {
        try {
          await t.stepAsync(next());
        } catch (err) {
          error = err;
        }
      }
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toMatch(/^training diverged at step \d+ \(loss is NaN\/inf\); lower the learning rate/);
    });
  }
});

describe('adapter gains out of range', () => {
  it('-1e30 is refused naming the norm and the index; NaN naming the index', async () => {
    const g = new Float32Array(base.nGains).fill(1);
    g[3 * 32 + 17] = -1e30;
    await expect(evaluate(base, g, TOKENS.subarray(0, 100))).rejects.toThrow(
      'adapter: gain vector 3 (layers.1.ffn_norm): gain[17] is -1.00000002e+30; a gain must be a number in [-65504, 65504]',
    );
    const adapterPath = join(dir, 'huge.adapter');
    new Adapter(g).save(base, adapterPath);
    await expect(evaluate(base, Adapter.load(base, adapterPath), TOKENS.subarray(0, 100))).rejects.toThrow(
      /gain vector 3 \(layers\.1\.ffn_norm\): gain\[17\]/,
    );
    g[3 * 32 + 17] = NaN;
    await expect(evaluate(base, g, TOKENS.subarray(0, 100))).rejects.toThrow(/adapter gains\[113\] is nan/);
  });
});
