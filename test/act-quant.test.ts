// The activation quantisation modes of the ternary precision through the model API and the CLI:
// 'token' (the default, unchanged by the option) and 'block256' (llama.cpp's q8_K): results that do
// not depend on the thread count, training through the mode, and bad values refused in one line.
// The kernels themselves are checked per ISA path in test/kernels.ternary.test.ts and
// native/tests/act_quant_block_test.cpp; the agreement with llama.cpp in test/peers-llama.test.ts.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { runConfig } from '../lib/bet/protocol.js';
import { runConfigDiffs } from '../lib/bet/results-writer.js';
import { coreLimits, cpuInfo, evaluate, Model, Trainer } from '../lib/index.js';
import { resolveAdapterRun } from '../lib/model/train-adapter.js';
import { packageRoot } from '../lib/util/package-root.js';

const main = join(packageRoot(), 'dist', 'lib', 'cli', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'ternorm-actq-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// d_ff 600: the down projection's input is two full blocks of 256 and a partial one of 88.
const CONFIG = { vocab: 300, dModel: 256, nLayers: 2, nHeads: 4, dFf: 600, context: 32 };

function tokens(seed: number, n: number): Int32Array {
  let s = seed;
  return Int32Array.from({ length: n }, () => (s = (s * 1103515245 + 12345) % 2 ** 31) % CONFIG.vocab);
}

describe('actQuant', () => {
  it('the core names the modes and the default', () => {
    expect(coreLimits().actQuant).toEqual({ names: ['token', 'block256'], default: 'token' });
  });

  it("'token' is the default's bits; 'block256' differs from it, and neither depends on threads", async () => {
    const model = Model.create(CONFIG, 5);
    model.quantize();
    const t = tokens(1, 200);
    const o = { nBytes: 800, stride: 16 };
    const def = await evaluate(model, null, t, o);
    const token = await evaluate(model, null, t, { ...o, actQuant: 'token' });
    expect(Buffer.from(token.nll.buffer).equals(Buffer.from(def.nll.buffer))).toBe(true);
    const block = await evaluate(model, null, t, { ...o, actQuant: 'block256', threads: 1 });
    const blockAll = await evaluate(model, null, t, { ...o, actQuant: 'block256', threads: cpuInfo().threads });
    expect(Buffer.from(blockAll.nll.buffer).equals(Buffer.from(block.nll.buffer))).toBe(true);
    let maxDiff = 0;
    for (let i = 0; i < block.nll.length; i++) maxDiff = Math.max(maxDiff, Math.abs(block.nll[i]! - def.nll[i]!));
    expect(maxDiff).toBeGreaterThan(0);
    // Both are int8 roundings of the same fp32-activation function.
    const f32act = await evaluate(model, null, t, { ...o, precision: 'ternary-fp32act' });
    expect(Math.abs(block.meanNll - f32act.meanNll)).toBeLessThan(0.05);
  });

  it('adapter training runs through the mode, deterministically', async () => {
    const model = Model.create(CONFIG, 6);
    model.quantize();
    const batch = tokens(2, 4 * 17);
    const run = async () => {
      const tr = new Trainer(model, { mode: 'adapter', batch: 4, seq: 16, totalSteps: 2, warmup: 1, actQuant: 'block256' });
      const a = await tr.stepAsync(batch, 4);
      const b = await tr.stepAsync(batch, 4);
      return [a.loss, b.loss, tr.gains()] as const;
    };
    const [l1, l2, g] = await run();
    const [m1, m2, h] = await run();
    expect([l1, l2]).toEqual([m1, m2]);
    expect(Buffer.from(g.buffer).equals(Buffer.from(h.buffer))).toBe(true);
    expect(l2).not.toBe(l1);
  });

  it('bad values are refused before any work', async () => {
    const model = Model.create(CONFIG, 5);
    model.quantize();
    const t = tokens(3, 40);
    await expect(evaluate(model, null, t, { nBytes: 100, actQuant: 'q8' as never })).rejects.toThrow(
      /actQuant must be one of 'token', 'block256'/,
    );
    await expect(evaluate(model, null, t, { nBytes: 100, actQuant: 'block256', precision: 'fp32' })).rejects.toThrow(
      /applies to precision 'ternary' only/,
    );
    expect(() => new Trainer(model, { mode: 'fp32', seq: 16, actQuant: 'block256' })).toThrow(/needs a ternary mode/);
    const text = join(dir, 't.txt');
    writeFileSync(text, 'some text to score '.repeat(40));
    const r = spawnSync(
      process.execPath,
      [main, 'evaluate', '--model', join(packageRoot(), 'models', 'base.tnm'), '--text', text, '--act-quant', 'tile'],
      {
        encoding: 'utf8',
      },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--act-quant must be one of token, block256/);
    const ok = spawnSync(
      process.execPath,
      [main, 'evaluate', '--model', join(packageRoot(), 'models', 'base.tnm'), '--text', text, '--act-quant', 'block256', '--json'],
      { encoding: 'utf8' },
    );
    expect(ok.status).toBe(0);
    expect(Number.isFinite((JSON.parse(ok.stdout) as { meanNll: number }).meanNll)).toBe(true);
  });

  it("the bet records a non-default mode in run.actQuant and --resume's check names a change", () => {
    const model = Model.create(CONFIG, 5);
    const run = resolveAdapterRun(model, {});
    const token = runConfig(run, undefined, 512, { actQuant: 'token' });
    const block = runConfig(run, undefined, 512, { actQuant: 'block256' });
    expect('actQuant' in token).toBe(false); // default runs keep their files' bytes
    expect(block.actQuant).toBe('block256');
    expect(runConfigDiffs(token, runConfig(run, undefined, 512))).toEqual([]);
    expect(runConfigDiffs(block, token)).toEqual(['actQuant (--act-quant): block256 in the file, token now']);
  });
});
