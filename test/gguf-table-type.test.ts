// A GGUF's F16/BF16 token tables (issues 9/11): exportGguf / `ternorm export --table-type` writes
// them, a load keeps them as stored, and the model computes exactly what its fp32 expansion
// computes (widening is exact): the shipped model's NLLs through an f16-table GGUF equal, bit for
// bit, those through the same GGUF re-exported with f32 tables. A 16-bit model re-exports its
// tables unchanged by default.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { evaluate, Model } from '../lib/model/index.js';
import { packageRoot } from '../lib/util/package-root.js';

const base = join(packageRoot(), 'models', 'base.tnm');
const main = join(packageRoot(), 'dist', 'lib', 'cli', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'ternorm-gguf-table-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const TEXT = 'The quick brown fox jumps over the lazy dog. '.repeat(12);

async function nlls(m: Model, threads: number): Promise<Float64Array> {
  const tokens = m.tokenizer!.encode(new TextEncoder().encode(TEXT));
  return (await evaluate(m, null, tokens, { threads })).nll;
}

describe('GGUF token table type', () => {
  for (const tableType of ['f16', 'bf16'] as const) {
    it(`${tableType} tables score like their fp32 expansion, bit for bit`, async () => {
      const half = Model.load(base).exportGguf('tq2_0', { tableType })!;
      const m16 = Model.load(half);
      // Default: as the model stores them (the same bytes).
      expect(Buffer.from(m16.exportGguf('tq2_0')!).equals(Buffer.from(half))).toBe(true);
      const m32 = Model.load(m16.exportGguf('tq2_0', { tableType: 'f32' })!);
      // The f32 file holds twice the table bytes.
      const v = m16.config.vocab * m16.config.dModel;
      expect(m16.exportGguf('tq2_0', { tableType: 'f32' })!.length - half.length).toBeGreaterThanOrEqual(2 * v);
      for (const threads of [1, 2]) {
        const a = await nlls(m16, threads);
        const b = await nlls(m32, threads);
        expect(a.length).toBeGreaterThan(16);
        expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
      }
    });
  }

  it('ternorm export --table-type writes the type and refuses others', () => {
    const out = join(dir, 'f16.gguf');
    const r = spawnSync(process.execPath, [main, 'export', '--model', base, '--type', 'tq2_0', '--table-type', 'f16', '--out', out], {
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('f16 token tables');
    expect(Buffer.from(readFileSync(out)).equals(Buffer.from(Model.load(base).exportGguf('tq2_0', { tableType: 'f16' })!))).toBe(true);
    const bad = spawnSync(process.execPath, [main, 'export', '--model', base, '--type', 'tq2_0', '--table-type', 'q8_0', '--out', out], {
      encoding: 'utf8',
    });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain("--table-type must be f32, f16, bf16, got 'q8_0'");
    expect(() => Model.load(base).exportGguf('tq2_0', { tableType: 'q8_0' as 'f16' })).toThrow(/tableType must be one of f32, f16, bf16/);
  });
});
