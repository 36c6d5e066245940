// ternorm against llama.cpp on the same GGUF: `ternorm export` writes models llama.cpp loads, and
// llama.cpp (node-llama-cpp's prebuilt CPU library, bench/peers) must score them like ternorm and
// tokenize like ternorm. setupPeers() installs the peer from the npm registry when it is missing.
//  - F32 export of the shipped model, llama.cpp with exact numerics (--kv f32 --flash-attn off)
//    against ternorm's 'ternary-fp32act' evaluation of the .tnm: max |ΔNLL| <= 1e-3.
//  - the same for a tiny grouped-query, untied-head model trained by the CLI;
//  - token ids of ternorm's BPE and llama.cpp's tokenize on the exported gpt2-style vocabulary;
//  - export -> import -> export byte-identical through the CLI; `bet --model X.gguf` end to end.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { EXACT, llamaScore, llamaTokenize, setupPeers } from '../bench/peers/llama-peer.js';
import { evaluate, Model } from '../lib/model/index.js';
import { packageRoot } from '../lib/util/package-root.js';
import { wordCorpus } from './word-corpus.js';

const root = packageRoot();
const main = join(root, 'dist', 'lib', 'cli', 'main.js');
const basePath = join(root, 'models', 'base.tnm');
const dir = mkdtempSync(join(tmpdir(), 'ternorm-peers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function cli(args: string[]): string {
  const r = spawnSync(process.execPath, [main, ...args], { cwd: dir, encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`ternorm ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

function maxAbsDiff(a: Float64Array, b: Float64Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

// Fixture prose: the README (English, code, digits, punctuation).
const fixture = readFileSync(join(root, 'README.md')).subarray(0, 14_000);

beforeAll(() => {
  setupPeers();
}, 600_000);

describe('the shipped model through GGUF', () => {
  const f32 = join(dir, 'base-f32.gguf');
  beforeAll(() => {
    cli(['export', '--model', basePath, '--type', 'f32', '--out', f32]);
  }, 300_000);

  it('loads back with the .tnm fingerprint (an f32 export is lossless)', () => {
    const tnm = Model.load(basePath);
    const gguf = Model.load(f32);
    expect(gguf.fingerprint).toBe(tnm.fingerprint);
    expect(gguf.info).toMatch(/ternary as stored/);
  });

  it('llama.cpp scores the f32 export like ternorm with fp32 activations: max |ΔNLL| <= 1e-3', async () => {
    const model = Model.load(basePath);
    const tokens = model.tokenizer!.encode(fixture);
    expect(tokens.length).toBeGreaterThan(2000);
    const ctx = model.config.context;
    const ours = await evaluate(model, null, tokens, { precision: 'ternary-fp32act', stride: ctx / 2 });
    const theirs = llamaScore(f32, tokens, { ...EXACT, ctx, stride: ctx / 2 });
    const d = maxAbsDiff(ours.nll, theirs.nll);
    console.log(`base.tnm f32 GGUF: ${tokens.length} tokens, max |ΔNLL| ${d.toExponential(2)}`);
    expect(d).toBeLessThanOrEqual(1e-3);
  }, 300_000);

  it('llama.cpp tokenizes like ternorm on fixture texts and edge cases', () => {
    const model = Model.load(basePath);
    const enc = new TextEncoder();
    const cases: [string, Uint8Array][] = [
      ['readme', fixture],
      ['corpus', enc.encode(wordCorpus(7, 400, undefined, 5))],
      ['whitespace runs', enc.encode('a  b   c\t\t d \n\n\n  e          f\n \n')],
      ['digits', enc.encode('1 12 123 1234 12345 3.14159 2026-12-02 0x1F 1,000,000')],
      ['emoji', enc.encode('ok 👍🏽 fine 🇫🇷 family 👨‍👩‍👧 done')],
      ['CRLF', enc.encode('line one\r\nline two\r\n\r\nend\r')],
      ['contractions', enc.encode("it's we're they've I'm you'll he'd 'sa DON'T")],
      ['accents', enc.encode('café naïve Größe señor ÅNGSTRÖM')],
      ['invalid UTF-8', Uint8Array.from([0x61, 0xff, 0x62, 0xc3, 0x20, 0xe2, 0x82, 0x41, 0x80, 0x80])],
    ];
    const f32 = join(dir, 'base-f32.gguf');
    const report: string[] = [];
    let identical = 0;
    for (const [name, text] of cases) {
      const ours = Array.from(model.tokenizer!.encode(text));
      const theirs = Array.from(llamaTokenize(f32, text, { bos: false }));
      const same = ours.length === theirs.length && ours.every((t, i) => t === theirs[i]);
      identical += same ? 1 : 0;
      report.push(`${name}: ${same ? 'identical' : 'DIFFERENT'} (${ours.length} vs ${theirs.length} ids)`);
    }
    console.log(`tokenizer ids identical on ${identical}/${cases.length} texts:\n  ${report.join('\n  ')}`);
    expect(report.filter((r) => r.includes('DIFFERENT') && !r.startsWith('invalid UTF-8'))).toEqual([]);
  }, 300_000);

  it('export -> import -> export is byte-identical through the CLI', () => {
    for (const type of ['tq2_0', 'f32']) {
      const first = join(dir, `first-${type}.gguf`);
      const second = join(dir, `second-${type}.gguf`);
      cli(['export', '--model', basePath, '--type', type, '--out', first]);
      cli(['export', '--model', first, '--type', type, '--out', second]);
      expect(Buffer.compare(readFileSync(first), readFileSync(second))).toBe(0);
    }
  }, 300_000);
});

describe('a tiny GQA, untied-head model trained by the CLI', () => {
  const tnm = join(dir, 'tiny.tnm');
  const gguf = join(dir, 'tiny-f32.gguf');
  const text = join(dir, 'train.txt');
  beforeAll(() => {
    writeFileSync(text, wordCorpus(1, 3000, undefined, 7));
    writeFileSync(join(dir, 'val.txt'), wordCorpus(2, 300, undefined, 7));
    cli(['train-base', '--train-text', text, '--validation-text', join(dir, 'val.txt'), '--out', tnm,
      '--vocab', '300', '--d-model', '64', '--layers', '2', '--heads', '4', '--kv-heads', '2', '--untied-head',
      '--d-ff', '128', '--context', '32', '--seq', '16', '--batch', '4', '--warmup', '2', '--steps', '6',
      '--eval-every', '6', '--eval-tokens', '200']);
    cli(['export', '--model', tnm, '--type', 'f32', '--out', gguf]);
  }, 600_000);

  it('llama.cpp scores it like ternorm: max |ΔNLL| <= 1e-3', async () => {
    const model = Model.load(tnm);
    expect(model.config.nKvHeads).toBe(2);
    expect(model.config.tiedHead).toBe(false);
    const tokens = model.tokenizer!.encode(new TextEncoder().encode(wordCorpus(9, 200, undefined, 7)));
    const ours = await evaluate(model, null, tokens, { precision: 'ternary-fp32act', stride: 16 });
    const theirs = llamaScore(gguf, tokens, { ...EXACT, ctx: 32, stride: 16 });
    const d = maxAbsDiff(ours.nll, theirs.nll);
    console.log(`tiny GQA untied f32 GGUF: ${tokens.length} tokens, max |ΔNLL| ${d.toExponential(2)}`);
    expect(d).toBeLessThanOrEqual(1e-3);
    const back = Model.load(gguf);
    expect(back.config.nKvHeads).toBe(2);
    expect(back.config.tiedHead).toBe(false);
    expect(back.fingerprint).toBe(model.fingerprint);
  }, 300_000);

  it('bet --model X.gguf runs end to end', () => {
    const user = join(dir, 'user.txt');
    writeFileSync(user, wordCorpus(11, 2500, ['the', 'ship', 'sea', 'whale', 'captain', 'and', 'a'], 7));
    const out = join(dir, 'bet.json');
    cli(['bet', '--model', gguf, '--user', `sailor=${user}`, '--out', out, '--max-steps', '4', '--calibration-tokens', '64', '--resamples', '50']);
    const r = JSON.parse(readFileSync(out, 'utf8')) as { users: { user: string }[] };
    expect(r.users.map((u) => u.user)).toEqual(['sailor']);
  }, 600_000);
});
