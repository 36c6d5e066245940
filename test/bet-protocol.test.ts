// The bet's protocol end to end on a tiny model and two synthetic users given as text files:
// the results validate against the shipped JSON Schema, the held-out ids match the texts, the
// numbers are recomputed from the per-token losses, the run is deterministic, and bad input
// (duplicate names, short texts, another base's adapter, bad criteria) fails clearly without
// losing users already measured. Also the CLI: bet, fleet and quantize.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';

import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { canonicalJson } from '../lib/bet/criteria.js';
import { NOISE_RMS_GRID, perturbGains } from '../lib/bet/noise.js';
import {
  runBet,
  BET_METHODS,
  CALIBRATED_GATE_MIN_TOKENS,
  FRONTIER_EXTRA_METHODS,
  userTexts,
  type BetOptions,
} from '../lib/bet/protocol.js';
import { renderReport } from '../lib/bet/report.js';
import { readResults, resultsSchemaPath, runConfigDiffs, type AdapterCompressResults } from '../lib/bet/results.js';
import { perplexity } from '../lib/bet/stats.js';
import { run } from '../lib/cli/run.js';
import { sha256Hex } from '../lib/util/hash.js';
import { Adapter } from '../lib/adapter/adapter.js';
import { evaluate, Model, trainAdapter } from '../lib/model/index.js';
import { BpeTokenizer } from '../lib/tokenizer/bpe.js';
import { packageRoot } from '../lib/util/package-root.js';
import { wordCorpus } from './word-corpus.js';

const dir = mkdtempSync(join(tmpdir(), 'ternorm-bet-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const corpus = (seed: number, sentences: number, words: readonly string[]) => wordCorpus(seed, sentences, words, 9);

const COMMON = ['the', 'a', 'of', 'and', 'to', 'in', 'is', 'it'];
const SEA = [...COMMON, 'whale', 'ship', 'sea', 'captain', 'harpoon', 'deck', 'wave', 'sail'];
const CODE = [...COMMON, 'function', 'return', 'const', 'node', 'type', 'let', 'if', 'else'];
const TINY = { vocab: 320, dModel: 32, nLayers: 2, nHeads: 2, dFf: 64, context: 32 };
const modelPath = join(dir, 'base.tnm');
const otherPath = join(dir, 'other.tnm');
const seaPath = join(dir, 'sea.txt');
const codePath = join(dir, 'code.txt');
const shortPath = join(dir, 'short.txt');

function options(out: string, extra: Partial<BetOptions> = {}): BetOptions {
  return {
    modelPath,
    users: [
      { name: 'sailor', source: { kind: 'file', path: seaPath } },
      { name: 'coder', source: { kind: 'file', path: codePath } },
    ],
    out,
    seed: 3,
    seeds: 1,
    threads: 2,
    adapterRun: { maxSteps: 12, evalEvery: 4, batch: 4 },
    encode: { calibrationTokens: 256, clipGrid: [1, 0.7, 0.4] },
    bootstrap: { resamples: 200 },
    ...extra,
  };
}

let results: AdapterCompressResults;

beforeAll(async () => {
  const base = corpus(1, 6000, [...SEA, ...CODE]);
  const tok = BpeTokenizer.train(new TextEncoder().encode(base), { vocabSize: TINY.vocab });
  Model.create(TINY, 5, tok).save(modelPath);
  Model.create(TINY, 6, tok).save(otherPath);
  writeFileSync(seaPath, corpus(2, 9000, SEA));
  writeFileSync(codePath, corpus(3, 9000, CODE));
  writeFileSync(shortPath, corpus(4, 300, SEA));
  results = await runBet(options(join(dir, 'r1.json')));
});

describe('ternorm bet (protocol)', () => {
  it('writes complete results that validate against the shipped JSON Schema', () => {
    const onDisk = JSON.parse(readFileSync(join(dir, 'r1.json'), 'utf8'));
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    const validate = ajv.compile(JSON.parse(readFileSync(resultsSchemaPath(), 'utf8')));
    expect(validate(onDisk), JSON.stringify(validate.errors)).toBe(true);
    expect(readResults(join(dir, 'r1.json'))).toEqual(results);
    expect(results.status).toBe('complete');
    expect(results.conditions).toEqual(['no_adapter', ...BET_METHODS]);
    expect(results.users.map((u) => u.user)).toEqual(['sailor', 'coder']);
    expect(results.verdicts.map((v) => v.scheme)).toEqual(BET_METHODS.filter((m) => m !== 'raw_fp32'));
    expect(results.baseModel.sha256).toBe(sha256Hex(readFileSync(modelPath)));
  });

  it('held-out ids name the exact bytes; every split scores >= 1000 tokens; sizes are the exact encoded sizes', () => {
    const text = readFileSync(seaPath);
    const u = results.users[0]!;
    for (const split of ['validation', 'test'] as const) {
      const id = u.texts[split];
      const bytes = Buffer.concat(id.ranges.map(([s, e]) => text.subarray(s, e)));
      expect(id.bytes).toBe(bytes.length);
      expect(id.sha256).toBe(sha256Hex(bytes));
      expect(u[split].tokens).toBeGreaterThanOrEqual(1000);
    }
    // test and validation never overlap each other (the train part is checked in the fixtures tests)
    for (const [s, e] of u.texts.test.ranges) for (const [s2, e2] of u.texts.validation.ranges) expect(e <= s2 || e2 <= s).toBe(true);
    const nNorms = 2 * TINY.nLayers + 1;
    const d = TINY.dModel;
    expect(u.encodings.raw_fp32!.bytes).toBe(8 + nNorms * (12 + 4 * d));
    expect(u.encodings.raw_fp16!.bytes).toBe(8 + nNorms * (12 + 2 * d));
    expect(u.encodings.int8_per_tensor!.bytes).toBe(8 + nNorms * (16 + d));
    expect(u.encodings.int4_delta!.bytes).toBe(8 + nNorms * (16 + d / 2));
    expect(u.encodings.mixed!.bytes).toBeLessThanOrEqual(u.encodings.int8_per_tensor!.bytes);
    expect(u.encodings.int8_per_tensor!.params['t0.int8_per_tensor.scale']).toHaveLength(1);
    expect(u.encodings.int4_calibrated!.params['calibration.clip']).toHaveLength(nNorms);
  });

  it('recomputes: raw ppl equals evaluating the trained adapter on the test bytes; the policy is chosen on validation', async () => {
    const model = Model.load(modelPath);
    const u = results.users[0]!;
    const text = readFileSync(seaPath);
    const part = (split: 'validation' | 'test') => Buffer.concat(u.texts[split].ranges.map(([s, e]) => text.subarray(s, e)));
    const none = await evaluate(model, null, model.tokenizer!.encode(part('test')));
    expect(u.test.conditions.no_adapter!.ppl.value).toBeCloseTo(perplexity(none.nll), 10);
    expect(u.test.conditions.no_adapter!.ppl.value).toBeCloseTo(none.perplexity, 10);
    const ratio = u.test.conditions.int8_per_tensor!.ppl.value / u.test.conditions.raw_fp32!.ppl.value;
    expect(u.test.conditions.int8_per_tensor!.ratioToReference!.value).toBeCloseTo(ratio, 12);
    // the policy's candidates carry validation perplexities
    for (const c of u.policy.candidates) expect(c.ppl).toBeCloseTo(u.validation.conditions[c.condition]!.ppl.value, 12);
    expect(u.policy.test.ppl.value).toBe(u.test.conditions[u.policy.choice]!.ppl.value);
  });

  it('evalStride (--eval-stride): recorded in the run; every split score uses it on the same tokens; --resume names a change', async () => {
    const sailor = options('').users.slice(0, 1);
    const r = await runBet(options(join(dir, 'stride.json'), { users: sailor, evalStride: TINY.context }));
    expect(r.run.evalStride).toBe(TINY.context);
    expect('evalStride' in results.run).toBe(false); // default runs keep their files' bytes
    const model = Model.load(modelPath);
    const u = r.users[0]!;
    const u0 = results.users[0]!;
    expect(u.texts).toEqual(u0.texts);
    expect(u.encodings.raw_fp32).toEqual(u0.encodings.raw_fp32); // the same adapter: training does not score splits
    const text = readFileSync(seaPath);
    const part = (split: 'validation' | 'test') => Buffer.concat(u.texts[split].ranges.map(([s, e]) => text.subarray(s, e)));
    for (const split of ['validation', 'test'] as const) {
      const tokens = model.tokenizer!.encode(part(split));
      const once = await evaluate(model, null, tokens, { stride: TINY.context });
      const overlapping = await evaluate(model, null, tokens);
      expect(once.nll.length).toBe(overlapping.nll.length);
      expect(once.nWindows).toBeLessThan(overlapping.nWindows);
      expect(u[split].conditions.no_adapter!.ppl.value).toBeCloseTo(once.perplexity, 10);
      expect(u0[split].conditions.no_adapter!.ppl.value).toBeCloseTo(overlapping.perplexity, 10);
    }
    expect(runConfigDiffs(r.run, results.run)).toEqual([`evalStride (--eval-stride): ${TINY.context} in the file, absent now`]);
    await expect(runBet(options(join(dir, 'stride0.json'), { users: sailor, evalStride: TINY.context + 1 }))).rejects.toThrow(
      /eval stride/,
    );
  });

  it("gradQuant (--grad-quant): int8 by default, recorded beside the numbers; f32's adapter is close to it; --resume names a change", async () => {
    const sailor = options('').users.slice(0, 1);
    const adapterRun = options('').adapterRun!;
    expect(results.run.gradQuant).toBe('int8'); // the default, recorded
    const r = await runBet(options(join(dir, 'gq.json'), { users: sailor, adapterRun: { ...adapterRun, gradQuant: 'f32' } }));
    expect('gradQuant' in r.run).toBe(false); // absent means f32, as in every file written before int8 was the default
    expect(r.run.adapterRun).toEqual(results.run.adapterRun);
    const u = r.users[0]!;
    const u0 = results.users[0]!;
    expect(u.texts).toEqual(u0.texts); // the same test tokens
    const ppl = (x: typeof u) => x.test.conditions.raw_fp32!.ppl.value;
    expect(Math.abs(ppl(u) / ppl(u0) - 1)).toBeLessThan(0.02);
    expect(runConfigDiffs(r.run, results.run)).toEqual(['gradQuant (--grad-quant): f32 in the file, int8 now']);
    await expect(
      runBet(options(join(dir, 'gq0.json'), { users: sailor, adapterRun: { ...adapterRun, gradQuant: 'fp16' as never } })),
    ).rejects.toThrow(/gradQuant must be one of 'f32', 'int8'/);
    const c = await cli(['bet', '--model', modelPath, '--out', join(dir, 'gq1.json'), '--grad-quant', 'fp16']);
    expect(c.code).not.toBe(0);
    expect(c.err).toMatch(/--grad-quant must be one of f32, int8/);
    const t = await cli([
      'train-adapter',
      '--model',
      modelPath,
      '--text',
      'user.txt',
      '--out',
      join(dir, 'gq.adapter'),
      '--grad-quant',
      'fp16',
    ]);
    expect(t.code).toBe(2);
    expect(t.err).toMatch(/--grad-quant must be one of f32, int8/);
    // fleet run takes the same flag (stored with the run's options), checked before any server is contacted
    const servers = ['--redis', 'redis://127.0.0.1:1', '--pg', 'postgresql://127.0.0.1:1/x'];
    const f = await cli(['fleet', 'run', ...servers, '--users', 'fixture:fleet', '--model', modelPath, '--grad-quant', 'fp16']);
    expect(f.code).toBe(2);
    expect(f.err).toMatch(/--grad-quant must be one of f32, int8/);
  });

  it('int4_calibrated: searched on the held-out training tail, kept only beyond noise on the rest of it', () => {
    for (const u of results.users) {
      const p = u.encodings.int4_calibrated!.params;
      const [search, gate] = p['calibration.heldOutTokens']!;
      expect(search).toBeGreaterThan(100);
      expect(gate).toBeGreaterThanOrEqual(search! - 1); // the search takes the first half, rounded up
      // too short a gate keeps no searched clip: the search is not run
      if (gate! - 1 < CALIBRATED_GATE_MIN_TOKENS) expect(p['calibration.grid']).toEqual([1]);
      const clip = p['calibration.clip']!;
      if (clip.every((c) => c === 1)) continue; // clip 1 won, or the gate fell back to it
      const [ratio, low, high, kept] = p['calibration.gate']!;
      expect(kept).toBe(1);
      expect(high).toBeLessThan(1);
      expect(low).toBeLessThanOrEqual(ratio!);
    }
  });

  it('--noise --personal: the sweep and the cross-user matrix are what evaluating them again gives', async () => {
    const model = Model.load(modelPath);
    const r = await runBet(options(join(dir, 'science.json'), { noise: { seeds: 1 }, personal: true }));
    expect(readResults(join(dir, 'science.json'))).toEqual(r);
    expect(r.users.map((u) => u.user)).toEqual(results.users.map((u) => u.user));
    const texts = [readFileSync(seaPath), readFileSync(codePath)];
    const tokens = (k: number, split: 'validation' | 'test') => {
      const u = r.users[k]!;
      return model.tokenizer!.encode(Buffer.concat(u.texts[split].ranges.map(([s, e]) => texts[k]!.subarray(s, e))));
    };
    // the adapters are deterministic: retrain the sailor's to check a noise point and a matrix cell
    const sailor = (
      await trainAdapter(
        model,
        userTexts({ name: 'sailor', source: { kind: 'file', path: seaPath } }).train,
        { ...options('').adapterRun, seed: 3 },
        {},
        2,
      )
    ).adapter;
    const n0 = r.users[0]!.noise!;
    expect(n0.measured.rms).toEqual([...NOISE_RMS_GRID]);
    const g = perturbGains(sailor.gains, n0.measured.rms[4]!, 'gaussian', n0.measured.seeds[0]!);
    expect(n0.measured.meanNll.gaussian[0]![4]).toBe((await evaluate(model, g, tokens(0, 'test'))).meanNll);
    const cell = (await evaluate(model, sailor, tokens(1, 'test'))).nll;
    expect(r.personal!.measured.testMeanNll[0]![1]).toBeCloseTo(cell.reduce((a, b) => a + b, 0) / cell.length, 12);
    expect(r.personal!.measured.testMeanNll[1]![1]).toBe(r.users[1]!.test.conditions.raw_fp32!.meanNll);
    expect(r.personal!.analysis.personalLost!.map((o) => o.scheme)).toEqual(BET_METHODS.filter((m) => m !== 'raw_fp32'));
    expect(r.conclusions!.margins).toHaveLength(2);
    expect(r.conclusions!.personal).toHaveLength(BET_METHODS.length - 1);
  }, 600_000);

  it('is deterministic: the same options give the same users, verdicts and policy', async () => {
    const again = await runBet(options(join(dir, 'r2.json')));
    expect(again.users).toEqual(results.users);
    expect(again.verdicts).toEqual(results.verdicts);
    expect(again.policy).toEqual(results.policy);
  });

  it('--adapter: a given adapter is the reference; another base is refused before any work', async () => {
    const model = Model.load(modelPath);
    const trained = await trainAdapter(model, readFileSync(seaPath).subarray(0, 60000), { maxSteps: 8, evalEvery: 4, batch: 4 });
    const aPath = join(dir, 'sailor.adapter');
    trained.adapter.save(model, aPath);
    const o = options(join(dir, 'r3.json'));
    o.users = [{ ...o.users[0]!, adapterPath: aPath }];
    const r = await runBet(o);
    const testText = Buffer.concat(r.users[0]!.texts.test.ranges.map(([s, e]) => readFileSync(seaPath).subarray(s, e)));
    const direct = await evaluate(model, Adapter.load(model, aPath), model.tokenizer!.encode(testText));
    expect(r.users[0]!.test.conditions.raw_fp32!.ppl.value).toBeCloseTo(direct.perplexity, 10);

    const otherModel = Model.load(otherPath);
    const foreign = join(dir, 'foreign.adapter');
    Adapter.identity(otherModel).save(otherModel, foreign);
    o.users = [{ ...o.users[0]!, adapterPath: foreign }];
    o.out = join(dir, 'r4.json');
    await expect(runBet(o)).rejects.toThrow(/user "sailor": adapter .*foreign\.adapter: .*trained on base model/);
    expect(existsSync(o.out)).toBe(false);
  });

  it('bad input: duplicate names, short or missing texts, bad criteria; users done are kept', async () => {
    const dup = options(join(dir, 'r5.json'));
    dup.users = [dup.users[0]!, { ...dup.users[1]!, name: 'sailor' }];
    await expect(runBet(dup)).rejects.toThrow(/user "sailor" is given twice/);
    expect(existsSync(dup.out)).toBe(false);

    const badCriteria = join(dir, 'criteria.json');
    writeFileSync(badCriteria, JSON.stringify({ format: 'ternorm-criteria', version: 1, strict: { maxRatio: -1 } }));
    await expect(runBet(options(join(dir, 'r6.json'), { criteriaPath: badCriteria }))).rejects.toThrow(/criteria/);

    // the second user's text is too short: every input is checked before the file is created, so
    // bad input leaves nothing behind that would block a rerun
    const o = options(join(dir, 'r7.json'));
    o.users = [o.users[0]!, { name: 'brief', source: { kind: 'file', path: shortPath } }];
    await expect(runBet(o)).rejects.toThrow(/user "brief": .*(too short|tokens)/);
    expect(existsSync(o.out)).toBe(false);
    expect(existsSync(`${o.out}.lock`)).toBe(false);
    const badRun = options(join(dir, 'r10.json'), { adapterRun: { maxSteps: 12, batch: 0 } });
    await expect(runBet(badRun)).rejects.toThrow(/batch/);
    expect(existsSync(badRun.out)).toBe(false);
    // a failure while measuring a later user keeps the users done in the file, marked failed
    o.users = [o.users[0]!, { name: 'coder', source: { kind: 'file', path: codePath } }];
    const crash = {
      onStage: (user: string) => {
        if (user === 'coder') throw new Error('simulated crash');
      },
    };
    await expect(runBet(o, crash)).rejects.toThrow(/user "coder": simulated crash/);
    const partial = readResults(o.out);
    expect(partial.status).toBe('failed');
    expect(partial.error).toMatch(/coder/);
    expect(partial.users.map((u) => u.user)).toEqual(['sailor']);
    expect(partial.users[0]).toEqual(results.users[0]);
    expect(partial.run.adapterRun.maxSteps).toBe(12);
    expect(partial.run.encode).toMatchObject({ calibrationTokens: 256, clipGrid: [1, 0.7, 0.4], groupSize: null, mixedBudget: null });
    // an incomplete run is not replaced by accident; --resume continues it with the same options only
    await expect(runBet(o)).rejects.toThrow(/already holds a failed run with 1 user\(s\) done/);
    await expect(
      runBet({ ...o, resume: true, adapterRun: { ...o.adapterRun, maxSteps: 5 }, encode: { ...o.encode, groupSize: 16 } }),
    ).rejects.toThrow(
      /cannot resume .*r7\.json: it was run with other options: maxSteps \(--max-steps\): 12 in the file, 5 now; warmup: 10 in the file, 5 now; groupSize \(--group-size\): default in the file, 16 now$/,
    );
    await expect(runBet({ ...o, resume: true, split: { testBytes: 4000 } })).rejects.toThrow(
      /it was run with other options: testBytes \(--test-bytes\): absent in the file, 4000 now$/,
    );
    expect(readResults(o.out)).toEqual(partial);
    const resumed = await runBet({ ...o, resume: true });
    expect(resumed.users.map((u) => u.user)).toEqual(['sailor', 'coder']);
    expect(resumed.users[1]).toEqual(results.users[1]);

    // a device is not a text: refused before anything is read from it
    const zero = options(join(dir, 'r11.json'));
    zero.users = [{ name: 'zero', source: { kind: 'file', path: '/dev/zero' } }];
    await expect(runBet(zero)).rejects.toThrow(/user "zero": cannot read \/dev\/zero: it is a character device, not a regular file/);
    expect(existsSync(zero.out)).toBe(false);

    // not text: refused with the offset of the first offending byte, before any file is written
    const binPath = join(dir, 'a.out');
    writeFileSync(binPath, Buffer.concat([Buffer.from('\x7fELF'), Buffer.alloc(64)]));
    const bin = options(join(dir, 'r12.json'));
    bin.users = [{ name: 'bin', source: { kind: 'file', path: binPath } }];
    await expect(runBet(bin)).rejects.toThrow(/user "bin": .*a\.out is binary, not text: control byte 0x00 at offset 4$/);
    expect(existsSync(bin.out)).toBe(false);

    const missing = options(join(dir, 'r8.json'));
    missing.users = [{ name: 'ghost', source: { kind: 'file', path: join(dir, 'nope.txt') } }];
    await expect(runBet(missing)).rejects.toThrow(/user "ghost": cannot read .*nope\.txt: no such file/);
    expect(existsSync(missing.out)).toBe(false);
  });

  it('--seeds 2 reports the spread of the reference and the bet over adapter seeds', async () => {
    const o = options(join(dir, 'r9.json'), { seeds: 2 });
    o.users = [o.users[1]!];
    const r = await runBet(o);
    const s = r.users[0]!.seeds!;
    expect(s.runs.map((x) => x.seed)).toEqual([3, 4]);
    expect(s.runs[0]!.ppl.raw_fp32).toBe(r.users[0]!.test.conditions.raw_fp32!.ppl.value);
    expect(Object.keys(s.spread).sort()).toEqual(['int8_per_tensor', 'raw_fp32']);
  });
});

class Sink extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = new Sink();
  const err = new Sink();
  const code = await run(args, { stdout: out, stderr: err as unknown as NodeJS.WriteStream });
  return { code, out: out.text, err: err.text };
}

describe('ternorm bet / fleet / quantize (CLI)', () => {
  const main = join(packageRoot(), 'dist', 'lib', 'cli', 'main.js');
  beforeAll(() => {
    // the concurrency case runs the real executable in separate processes
    execFileSync(
      process.execPath,
      [join(packageRoot(), 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(packageRoot(), 'tsconfig.json')],
      { stdio: 'inherit' },
    );
  }, 180_000);

  it('two processes on one --out: the second writer (and a --resume) is refused while the first runs; a stale lock is taken over', async () => {
    const out = join(dir, 'lock', 'r.json');
    const args = (user: string, ...extra: string[]) => [
      main,
      'bet',
      '--model',
      modelPath,
      '--user',
      user,
      '--out',
      out,
      '--max-steps',
      '8',
      // 8 x 128-token sequences per step: the first run must outlast the two processes started after it
      '--batch',
      '8',
      '--calibration-tokens',
      '128',
      '--resamples',
      '100',
      ...extra,
    ];
    const first = spawn(process.execPath, args(`sailor=${seaPath}`), { stdio: ['ignore', 'ignore', 'pipe'] });
    let firstErr = '';
    first.stderr.on('data', (d: Buffer) => (firstErr += d.toString()));
    let exited = false;
    const firstCode = new Promise<number>((resolve) => first.on('exit', (code) => ((exited = true), resolve(code ?? -1))));
    while (!existsSync(`${out}.lock`) && !exited) await new Promise((r) => setTimeout(r, 20));
    const second = spawnSync(process.execPath, args(`coder=${codePath}`), { encoding: 'utf8' });
    const resume = spawnSync(process.execPath, args(`sailor=${seaPath}`, '--resume'), { encoding: 'utf8' });
    expect(await firstCode, firstErr).toBe(0);
    expect(second.status).toBe(1);
    expect(second.stderr).toMatch(
      /^ternorm: .*lock\/r\.json is being written by another run \(pid \d+ on .+, since \d{4}-.*\); wait for it to finish or choose another --out\n$/,
    );
    expect(resume.status).toBe(1);
    expect(resume.stderr).toMatch(/is being written by another run/);
    expect(readResults(out).users.map((u) => u.user)).toEqual(['sailor']);
    expect(existsSync(`${out}.lock`)).toBe(false);
    // a lock left by a run that died: its pid no longer runs on this host
    const dead = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
    writeFileSync(`${out}.lock`, JSON.stringify({ pid: dead, host: hostname(), startedAt: '2025-01-01T00:00:00.000Z' }));
    const again = spawnSync(process.execPath, args(`coder=${codePath}`), { encoding: 'utf8' });
    expect(again.status, again.stderr).toBe(0);
    expect(again.stderr).toContain(
      `taking over the stale lock ${out}.lock: process ${dead} on ${hostname()} (started 2025-01-01T00:00:00.000Z) is no longer running`,
    );
    expect(readResults(out).users.map((u) => u.user)).toEqual(['coder']);
    expect(existsSync(`${out}.lock`)).toBe(false);
  });

  it('--report to a symlink to a device, quantize to a FIFO: refused, the target untouched', async () => {
    const results = join(dir, 'dev', 'r.json');
    const link = join(dir, 'dev-null.md');
    symlinkSync('/dev/null', link);
    const r = await cli([
      'bet',
      '--model',
      modelPath,
      '--user',
      `sailor=${seaPath}`,
      '--out',
      results,
      '--report',
      link,
      '--max-steps',
      '4',
      '--calibration-tokens',
      '64',
      '--resamples',
      '50',
    ]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/cannot write .*dev-null\.md: it exists and is a character device, not a regular file/);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    const model = Model.load(modelPath);
    const aPath = join(dir, 'fifo-in.adapter');
    new Adapter(new Float32Array(model.nGains).fill(1.01)).save(model, aPath);
    const fifo = join(dir, 'out.fifo');
    execFileSync('mkfifo', [fifo]);
    const q = await cli(['quantize', '--model', modelPath, '--scheme', 'int8_per_tensor', aPath, fifo]);
    expect(q.code).toBe(1);
    expect(q.err).toMatch(/cannot write .*out\.fifo.*: it exists and is a FIFO, not a regular file/);
    expect(lstatSync(fifo).isFIFO()).toBe(true);
  });

  it('bet writes results, report and plot, and prints the bet table, verdicts and policy', async () => {
    const out = join(dir, 'cli', 'r.json');
    const r = await cli([
      'bet',
      '--model',
      modelPath,
      '--user',
      `sailor=${seaPath}`,
      '--out',
      out,
      '--max-steps',
      '8',
      '--calibration-tokens',
      '128',
      '--resamples',
      '100',
      '--fleet-users',
      '1000',
    ]);
    expect(r.err).not.toMatch(/ternorm: /);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/The bet \(int8_per_tensor, test split/);
    expect(r.out).toMatch(/Verdicts \(test split\):\n {2}raw_fp16 +(STRICT|LENIENT|FAIL|CATASTROPHIC)/);
    expect(r.out).toMatch(/Per-user policy/);
    expect(r.out).toMatch(/fleet of 1000 users/);
    const md = readFileSync(join(dir, 'cli', 'r.md'), 'utf8');
    const res = readResults(out);
    expect(md).toContain(res.users[0]!.test.conditions.int8_per_tensor!.ppl.value.toFixed(3));
    expect(readFileSync(join(dir, 'cli', 'r.svg'), 'utf8')).toMatch(/<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);

    const f = await cli(['fleet', '--results', out, '--users', '215000']);
    expect(f.code).toBe(0);
    expect(f.out).toMatch(/fleet of 215000 users/);
    expect(f.out).toContain(String(res.users[0]!.encodings.int8_per_tensor!.bytes * 215000));
  });

  it('quantize writes an encoded adapter file of the chosen scheme', async () => {
    const model = Model.load(modelPath);
    const aPath = join(dir, 'q-in.adapter');
    new Adapter(new Float32Array(model.nGains).map((_, i) => 1 + 0.01 * Math.cos(i))).save(model, aPath);
    const outPath = join(dir, 'q-out.adapter');
    const r = await cli(['quantize', '--model', modelPath, '--scheme', 'int8_per_tensor', aPath, outPath]);
    expect(r.code).toBe(0);
    const back = Adapter.load(model, outPath);
    expect(back.scheme).toBe('int8_per_tensor');
    expect(r.out).toContain(`${back.encoding!.bytes} bytes encoded`);
    const c = await cli([
      'quantize',
      '--model',
      modelPath,
      '--scheme',
      'int4_calibrated',
      '--text',
      seaPath,
      aPath,
      join(dir, 'q-cal.adapter'),
    ]);
    expect(c.code).toBe(0);
    expect(Adapter.load(model, join(dir, 'q-cal.adapter')).scheme).toBe('int4_calibrated');
  });

  it('usage errors exit 2, bad input exits 1, each with one clear line', async () => {
    const cases: [string[], number, RegExp][] = [
      [['bet', '--user', 'noequals'], 2, /--user expects name=path/],
      [['bet', '--model', modelPath, '--user', `a=${seaPath}`, '--adapter', `b=${seaPath}`], 2, /no user "b"/],
      [['bet', '--resume', '--overwrite'], 2, /exclude each other/],
      [['bet', '--model', join(dir, 'none.tnm')], 1, /--model .*none\.tnm: no such file/],
      [['quantize', '--scheme', 'int8_per_tensor', 'only-one'], 2, /expects IN.adapter OUT.adapter/],
      [['quantize', '--scheme', 'int9', 'a', 'b'], 2, /unknown encoding 'int9'/],
      [['quantize', '--scheme', 'mixed', 'a', 'b'], 2, /--text is required/],
      [['fleet', '--results', join(dir, 'none.json')], 1, /no results at/],
    ];
    for (const [args, code, re] of cases) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(code);
      expect(r.err, args.join(' ')).toMatch(re);
      expect(r.err).not.toMatch(/\n\s+at /);
    }
  });
});

describe('ternorm bet --frontier', () => {
  it('encodes the budgeted methods at every ladder budget; the frontier is chosen on validation, reported on test, recomputed by the reader', async () => {
    const out = join(dir, 'frontier.json');
    const r = await runBet(
      options(out, { users: [{ name: 'sailor', source: { kind: 'file', path: seaPath } }], frontier: { ladder: [64, 256, 4608] } }),
    );
    expect(r.run.frontier).toEqual({ ladder: [64, 256, 4608], methods: ['alloc', 'sparse_delta'] });
    expect(r.conditions).toEqual([
      'no_adapter',
      ...BET_METHODS,
      ...FRONTIER_EXTRA_METHODS,
      'alloc-64',
      'alloc-256',
      'alloc-4608',
      'sparse_delta-64',
      'sparse_delta-256',
      'sparse_delta-4608',
    ]);
    const u = r.users[0]!;
    for (const b of [64, 256]) {
      expect(u.encodings[`alloc-${b}`]!.bytes).toBeLessThanOrEqual(b);
      expect(u.encodings[`sparse_delta-${b}`]!.bytes).toBeLessThanOrEqual(b);
    }
    const f = r.frontier!;
    expect(f.ladder).toEqual([64, 256, 4608]);
    const uf = f.users[0]!;
    const ref = u.validation.conditions.raw_fp32!.ppl.value;
    for (const p of uf.points) {
      // the choice: the lowest validation ppl among the encodings that fit
      const fits = Object.entries(u.encodings).filter(([, e]) => e.bytes <= p.budget);
      const best = Math.min(...fits.map(([c]) => u.validation.conditions[c]!.ppl.value));
      expect(u.validation.conditions[p.choice!]!.ppl.value).toBe(best);
      expect(p.validationRatio).toBeCloseTo(best / ref, 12);
      expect(p.testRatio).toBeCloseTo(u.test.conditions[p.choice!]!.ppl.value / u.test.conditions.raw_fp32!.ppl.value, 12);
    }
    // the reader recomputes the frontier: a tampered value is refused
    expect(readResults(out)).toEqual(r);
    const bad = JSON.parse(readFileSync(out, 'utf8'));
    bad.frontier.users[0].points[0].testRatio = 0.5;
    const { checksum: _c, ...body } = bad;
    bad.checksum = sha256Hex(canonicalJson(body));
    writeFileSync(join(dir, 'frontier-bad.json'), JSON.stringify(bad));
    expect(() => readResults(join(dir, 'frontier-bad.json'))).toThrow(/frontier/);
    const md = renderReport(r);
    expect(md).toContain('## Rate-distortion frontier');
  }, 300_000);
});
