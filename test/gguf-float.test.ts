// Float GGUFs ternarised on load (issue 9 §1, §3, §7): a latent-weight export of a trained
// checkpoint in f32 / f16 / bf16 / q8_0, re-imported by absmean per tensor or per row; export ->
// import -> export byte identity for every type; the bet on an imported float model. The model is
// a tiny GQA, untied-head base trained for 6 steps by the CLI (its checkpoint holds the latent
// weights; the shipped models/base.tnm does not).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { evaluate, Model } from '../lib/model/index.js';
import { packageRoot } from '../lib/util/package-root.js';
import { wordCorpus } from './word-corpus.js';

const main = join(packageRoot(), 'dist', 'lib', 'cli', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'ternorm-gguf-float-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [main, ...args], { cwd: dir, encoding: 'utf8', timeout: 600_000 });
}
function cli(args: string[]): string {
  const r = run(args);
  if (r.status !== 0) throw new Error(`ternorm ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

const ckpt = join(dir, 'tiny.ckpt');
const valText = join(dir, 'val.txt');
const FLOAT_TYPES = ['f32', 'f16', 'bf16', 'q8_0'] as const;
const ALL_TYPES = ['tq2_0', 'tq1_0', ...FLOAT_TYPES] as const;

async function nlls(m: Model): Promise<Float64Array> {
  const tokens = m.tokenizer!.encode(readFileSync(valText));
  return (await evaluate(m, null, tokens, { threads: 1 })).nll;
}
function mean(a: Float64Array): number {
  return a.reduce((s, x) => s + x, 0) / a.length;
}

beforeAll(() => {
  const train = join(dir, 'train.txt');
  writeFileSync(train, wordCorpus(1, 3000, undefined, 7));
  writeFileSync(valText, wordCorpus(2, 300, undefined, 7));
  // --stop-after writes the checkpoint (latent weights, ternary weights quantised from them) and stops.
  // d_model 256 so the rows are one 256-value TQ block; GQA (2 kv heads of 4) and an untied head.
  cli([
    'train-base',
    '--train-text',
    train,
    '--validation-text',
    valText,
    '--out',
    join(dir, 'tiny.tnm'),
    '--checkpoint',
    ckpt,
    '--vocab',
    '300',
    '--d-model',
    '256',
    '--layers',
    '2',
    '--heads',
    '4',
    '--kv-heads',
    '2',
    '--untied-head',
    '--d-ff',
    '256',
    '--context',
    '32',
    '--seq',
    '16',
    '--batch',
    '4',
    '--warmup',
    '2',
    '--steps',
    '8',
    '--stop-after',
    '6',
    '--eval-every',
    '0',
    '--threads',
    '1',
  ]);
  for (const t of FLOAT_TYPES) cli(['export', '--model', ckpt, '--type', t, '--weights', 'latent', '--out', join(dir, `latent-${t}.gguf`)]);
}, 600_000);

describe('latent-weight export, ternarised on load', () => {
  it('f32 latent -> import per tensor is the checkpoint bit for bit: same fingerprint, same NLLs', async () => {
    const ref = Model.load(ckpt);
    const im = Model.load(join(dir, 'latent-f32.gguf'));
    expect(im.info).toMatch(/block matrices f32, 14 ternarised on load by absmean per tensor \(post-training quantisation\)$/);
    // The fingerprint covers config, tokenizer, tables, norms, every trit and every scale.
    expect(im.fingerprint).toBe(ref.fingerprint);
    expect(await nlls(im)).toEqual(await nlls(ref));
  });

  it('f16 / bf16 / q8_0 latent -> import: perplexity within the stated bounds of the checkpoint', async () => {
    const ref = mean(await nlls(Model.load(ckpt)));
    // f16 / bf16 round each latent weight to 11 / 8 significant bits, q8_0 to amax/254 of its
    // block, which flips the few trits next to the absmean threshold. Measured on this model
    // (ratio of perplexities, import / checkpoint): f16 0.99995, bf16 0.99984, q8_0 0.99889.
    // Bounds, about 10x the measured distance from 1:
    const bounds = { f16: 1.0005, bf16: 1.002, q8_0: 1.01 } as const;
    for (const t of ['f16', 'bf16', 'q8_0'] as const) {
      const m = Model.load(join(dir, `latent-${t}.gguf`));
      expect(m.info).toContain('ternarised on load by absmean per tensor');
      const ratio = Math.exp(mean(await nlls(m)) - ref);
      expect(ratio, t).toBeLessThanOrEqual(bounds[t]);
      expect(ratio, t).toBeGreaterThanOrEqual(1 / bounds[t]);
    }
  });

  it('--ternarise per-row: another post-training quantisation, named in the info, saved and reloaded exactly', async () => {
    const perRow = Model.load(join(dir, 'latent-f32.gguf'), { ternarise: 'per-row' });
    expect(perRow.info).toMatch(/ternarised on load by absmean per row \(post-training quantisation\)$/);
    const perTensor = Model.load(join(dir, 'latent-f32.gguf'));
    expect(perRow.fingerprint).not.toBe(perTensor.fingerprint);
    const a = await nlls(perRow);
    expect(a).not.toEqual(await nlls(perTensor));
    // .tnm round trip keeps every row's scale (section ternary.row_scales).
    const tnm = join(dir, 'per-row.tnm');
    perRow.save(tnm);
    const back = Model.load(tnm);
    expect(back.fingerprint).toBe(perRow.fingerprint);
    expect(await nlls(back)).toEqual(a);
    // Exported as f32 (trit x row scale) it re-imports exactly; as tq2_0 each row's scale goes to its
    // blocks rounded to fp16 (relative error <= 2^-11), which moves the mean NLL by less than 1e-3.
    const f32 = Model.load(perRow.exportGguf('f32')!);
    expect(f32.info).toMatch(/ternary as stored$/);
    expect(f32.fingerprint).toBe(perRow.fingerprint);
    const tq = Model.load(perRow.exportGguf('tq2_0')!);
    expect(tq.info).toMatch(/ternary as stored$/);
    expect(Math.abs(mean(await nlls(tq)) - mean(a))).toBeLessThan(1e-3);
  });

  it('export -> import -> export is byte-identical for every type, of the ternary and of the latent weights', () => {
    const models = {
      checkpoint: Model.load(ckpt),
      'per-row import': Model.load(join(dir, 'latent-f32.gguf'), { ternarise: 'per-row' }),
    };
    for (const [what, m] of Object.entries(models)) {
      for (const t of ALL_TYPES) {
        const a = m.exportGguf(t)!;
        const b = Model.load(a).exportGguf(t)!;
        expect(Buffer.compare(Buffer.from(a), Buffer.from(b)), `${what} ${t}`).toBe(0);
      }
    }
    for (const t of FLOAT_TYPES) {
      const a = readFileSync(join(dir, `latent-${t}.gguf`));
      const m = Model.load(a);
      expect(m.hasLatentForExport).toBe(true);
      const b = m.exportGguf(t, { weights: 'latent' })!;
      expect(Buffer.compare(a, Buffer.from(b)), `latent ${t}`).toBe(0);
    }
  });

  it('bad requests: one line naming the problem, nothing written', () => {
    const base = join(packageRoot(), 'models', 'base.tnm');
    const noLatent = run(['export', '--model', base, '--type', 'f16', '--weights', 'latent', '--out', join(dir, 'x.gguf')]);
    expect(noLatent.status).toBe(1);
    expect(noLatent.stderr.trim().split('\n')).toHaveLength(1);
    expect(noLatent.stderr).toMatch(/has no latent weights/);
    const tq = run(['export', '--model', ckpt, '--type', 'tq2_0', '--weights', 'latent', '--out', join(dir, 'x.gguf')]);
    expect(tq.status).toBe(2);
    expect(tq.stderr).toMatch(/--weights latent writes floats/);
    const bad = run(['evaluate', '--model', join(dir, 'latent-f16.gguf'), '--text', valText, '--ternarise', 'per-block']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--ternarise must be per-tensor or per-row, got 'per-block'/);
    // the fleet takes the same flag (stored with the run, so every worker loads the model alike),
    // checked before any server is contacted
    const fleet = run([
      'fleet',
      'run',
      '--redis',
      'redis://127.0.0.1:1',
      '--pg',
      'postgresql://127.0.0.1:1/x',
      '--users',
      'fixture:fleet',
      '--model',
      join(dir, 'latent-f16.gguf'),
      '--ternarise',
      'per-block',
    ]);
    expect(fleet.status).toBe(2);
    expect(fleet.stderr).toMatch(/--ternarise must be per-tensor or per-row, got 'per-block'/);
    expect(() => readFileSync(join(dir, 'x.gguf'))).toThrow();
  });
});

describe('the bet on an imported float model', () => {
  it('bet --model X-f16.gguf (GQA, ternarised on load) runs end to end and records the model source', () => {
    const user = join(dir, 'user.txt');
    writeFileSync(user, wordCorpus(11, 2500, ['the', 'ship', 'sea', 'whale', 'captain', 'and', 'a'], 7));
    const out = join(dir, 'bet.json');
    cli([
      'bet',
      '--model',
      join(dir, 'latent-f16.gguf'),
      '--ternarise',
      'per-row',
      '--user',
      `sailor=${user}`,
      '--out',
      out,
      '--max-steps',
      '4',
      '--calibration-tokens',
      '64',
      '--resamples',
      '50',
      '--threads',
      '1',
    ]);
    const r = JSON.parse(readFileSync(out, 'utf8')) as {
      status: string;
      baseModel: { name: string; config: Record<string, unknown> };
      users: { user: string }[];
    };
    expect(r.status).toBe('complete');
    expect(r.users.map((u) => u.user)).toEqual(['sailor']);
    expect(r.baseModel.name).toBe('latent-f16.gguf');
    expect(r.baseModel.config.nKvHeads).toBe(2);
    expect(r.baseModel.config.source).toMatch(
      /block matrices f16, 14 ternarised on load by absmean per row \(post-training quantisation\)$/,
    );
  }, 300_000);
});
