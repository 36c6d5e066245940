// Llama-shaped models: grouped-query attention (fewer key/value heads than
// query heads) and an untied output head, trained by the CLI, saved, loaded
// and evaluated; and the shipped model, whose file does not change with them.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Adapter } from '../lib/adapter/adapter.js';
import { evaluate, Model, trainAdapter } from '../lib/model/index.js';
import { packageRoot } from '../lib/native.js';
import { wordCorpus as corpus } from './word-corpus.js';

const root = packageRoot();
const main = join(root, 'dist', 'lib', 'cli', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'ternorm-gqa-'));

function cli(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [main, ...args], { cwd: dir, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const SHAPE = ['--vocab', '300', '--d-model', '32', '--layers', '2', '--heads', '4', '--d-ff', '64', '--context', '32'];
const RUN = [
  '--train-text',
  'train.txt',
  '--validation-text',
  'val.txt',
  ...SHAPE,
  '--seq',
  '16',
  '--batch',
  '4',
  '--warmup',
  '2',
  '--steps',
  '6',
  '--eval-every',
  '0',
  '--eval-tokens',
  '200',
  '--checkpoint-every',
  '0',
];

beforeAll(() => {
  execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], {
    stdio: 'inherit',
  });
  writeFileSync(join(dir, 'train.txt'), corpus(1, 400));
  writeFileSync(join(dir, 'val.txt'), corpus(2, 60));
}, 180_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('grouped-query attention and the untied head', () => {
  it('train-base trains a GQA + untied model; save/load keeps bytes, fingerprint and NLLs', async () => {
    const r = cli('train-base', ...RUN, '--kv-heads', '2', '--untied-head', '--out', 'gqa.tnm', '--seed', '5');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/wrote gqa\.tnm .*: 6 steps, validation loss \d/);
    const path = join(dir, 'gqa.tnm');
    const model = Model.load(path);
    expect(model.config.nHeads).toBe(4);
    expect(model.config.nKvHeads).toBe(2);
    expect(model.config.tiedHead).toBe(false);
    // The untied head adds vocab x d_model parameters; k and v (2 layers) are half as wide as q.
    const mha = Model.create({ ...model.config, nKvHeads: 4, tiedHead: true }, 0);
    const d = 32;
    expect(model.nParams - mha.nParams).toBe(300 * d - 2 * 2 * (d / 2) * d);

    const text = model.tokenizer!.encode(readFileSync(join(dir, 'val.txt'))).subarray(0, 300);
    const a = await evaluate(model, null, text, { stride: 8 });
    expect(Number.isFinite(a.meanNll)).toBe(true);
    const bytes = model.toBytes(model.meta);
    expect(Buffer.from(bytes).equals(readFileSync(path))).toBe(true);
    const again = Model.load(bytes);
    expect(again.fingerprint).toBe(model.fingerprint);
    const b = await evaluate(again, null, text, { stride: 8 });
    expect(Array.from(b.nll)).toEqual(Array.from(a.nll));
    // Deterministic: the same run again writes the same file.
    expect(cli('train-base', ...RUN, '--kv-heads', '2', '--untied-head', '--out', 'gqa2.tnm', '--seed', '5').code).toBe(0);
    expect(readFileSync(join(dir, 'gqa2.tnm')).equals(readFileSync(path))).toBe(true);
    // Tied again (or 4 kv heads): another model, another fingerprint.
    expect(cli('train-base', ...RUN, '--kv-heads', '2', '--out', 'tied.tnm', '--seed', '5').code).toBe(0);
    expect(Model.load(join(dir, 'tied.tnm')).fingerprint).not.toBe(model.fingerprint);

    // An adapter trains on top (the base, its output head included, stays frozen) and helps.
    const userText = new TextEncoder().encode(corpus(77, 150));
    const user = model.tokenizer!.encode(userText);
    const t = await trainAdapter(model, userText, { maxSteps: 6, evalEvery: 3, batch: 4, seq: 16, seed: 1 });
    expect(t.bestLoss).toBeLessThanOrEqual(t.baselineLoss);
    expect(model.fingerprint).toBe(again.fingerprint);
    const loaded = Adapter.load(model, t.adapter.toBytes(model));
    const withAdapter = await evaluate(model, loaded, user.subarray(0, 200));
    expect(Number.isFinite(withAdapter.meanNll)).toBe(true);
  }, 300_000);

  it('refuses bad head counts with a clear usage error', () => {
    const bad = cli('train-base', ...RUN, '--kv-heads', '3', '--out', 'bad.tnm');
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/nKvHeads|n_kv_heads/);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(() => Model.create({ vocab: 300, dModel: 32, nLayers: 1, nHeads: 4, nKvHeads: 8, dFf: 64, context: 32 })).toThrow(RangeError);
    expect(() => Model.create({ vocab: 300, dModel: 32, nLayers: 1, nHeads: 4, nKvHeads: 3, dFf: 64, context: 32 })).toThrow(
      /divisible by config.nKvHeads/,
    );
    // nHeads alone stays multi-head.
    expect(Model.create({ vocab: 300, dModel: 32, nLayers: 1, nHeads: 8, dFf: 64, context: 32 }).config.nKvHeads).toBe(8);
  });

  it('the shipped model re-saves byte for byte and keeps its recorded fingerprint', () => {
    const path = join(root, 'models', 'base.tnm');
    const model = Model.load(path);
    expect(model.config.nKvHeads).toBe(model.config.nHeads);
    expect(model.config.tiedHead).toBe(true);
    const recorded = /fingerprint \(SHA-256 of the file sections\) \| `([0-9a-f]{64})`/.exec(
      readFileSync(join(root, 'models', 'README.md'), 'utf8'),
    );
    expect(recorded).not.toBeNull();
    expect(model.fingerprint).toBe(recorded![1]);
    expect(Buffer.from(model.toBytes(model.meta)).equals(readFileSync(path))).toBe(true);
  });
});
