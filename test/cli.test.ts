// The ternorm CLI as a user runs it: spawned on tiny texts and configs.
// Compiles the TypeScript first (the bin is dist/lib/cli/main.js).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Adapter } from '../lib/adapter/adapter.js';
import { Model } from '../lib/model/model.js';
import { packageRoot } from '../lib/util/package-root.js';
import { MAX_TEXT_BYTES } from '../lib/util/files.js';
import { wordCorpus as corpus } from './word-corpus.js';

const root = packageRoot();
const main = join(root, 'dist', 'lib', 'cli', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'ternorm-cli-'));

function cli(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [main, ...args], { cwd: dir, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const TINY = [
  '--vocab',
  '300',
  '--d-model',
  '32',
  '--layers',
  '2',
  '--heads',
  '2',
  '--d-ff',
  '64',
  '--context',
  '32',
  '--seq',
  '16',
  '--batch',
  '4',
  '--warmup',
  '2',
];
const RUN = [
  '--train-text',
  'train.txt',
  '--validation-text',
  'val.txt',
  ...TINY,
  '--steps',
  '8',
  '--eval-every',
  '4',
  '--eval-tokens',
  '200',
  '--checkpoint-every',
  '3',
];

beforeAll(() => {
  execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], {
    stdio: 'inherit',
  });
  writeFileSync(join(dir, 'train.txt'), corpus(1, 400));
  writeFileSync(join(dir, 'val.txt'), corpus(2, 60));
  writeFileSync(join(dir, 'user.txt'), corpus(77, 150));
  writeFileSync(join(dir, 'empty.txt'), '');
  writeFileSync(join(dir, 'short.txt'), 'the ship sailed into a grey morning.');
  writeFileSync(join(dir, 'one.txt'), 'a');
  execFileSync('mkfifo', [join(dir, 'text.fifo')]);
  // sparse: larger than MAX_TEXT_BYTES without using the disk
  closeSync(openSync(join(dir, 'huge.txt'), 'w'));
  truncateSync(join(dir, 'huge.txt'), MAX_TEXT_BYTES + 1);
}, 180_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('ternorm CLI', () => {
  it('train-base: trains, validates, checkpoints; --stop-after + --resume equals an uninterrupted run', () => {
    const a = cli('train-base', ...RUN, '--out', 'models/a.tnm', '--seed', '3');
    expect(a.code).toBe(0);
    expect(a.stdout).toMatch(/wrote models\/a\.tnm \(fingerprint [0-9a-f]{16}\.\.\.\): 8 steps, validation loss \d/);
    expect(a.stderr).toMatch(/step 4: validation loss/);
    expect(a.stderr).toMatch(/step 3: checkpoint models\/a\.tnm\.ckpt/);
    expect(a.stderr).toMatch(/tok\/s/); // progress lines (not a TTY: plain lines)
    const b = cli('train-base', ...RUN, '--out', 'models/b.tnm', '--seed', '3', '--stop-after', '4');
    expect(b.code).toBe(0);
    expect(b.stdout).toMatch(/stopped after step 4; resume with: ternorm train-base --resume models\/b\.tnm\.ckpt/);
    const r = cli('train-base', '--resume', 'models/b.tnm.ckpt', '--out', 'models/b.tnm');
    expect(r.code).toBe(0);
    expect(readFileSync(join(dir, 'models/b.tnm')).equals(readFileSync(join(dir, 'models/a.tnm')))).toBe(true);
    const other = cli('train-base', ...RUN, '--out', 'models/c.tnm', '--seed', '4', '--checkpoint-every', '0');
    expect(other.code).toBe(0);
    expect(readFileSync(join(dir, 'models/c.tnm')).equals(readFileSync(join(dir, 'models/a.tnm')))).toBe(false);
    const clash = cli('train-base', '--resume', 'models/b.tnm.ckpt', '--out', 'models/b.tnm', '--steps', '9');
    expect(clash.code).toBe(2);
    expect(clash.stderr).toMatch(/--steps cannot be combined with --resume/);
    const notCk = cli('train-base', '--resume', 'models/a.tnm', '--out', 'models/x.tnm');
    expect(notCk.code).toBe(1);
    expect(notCk.stderr).toMatch(/not a checkpoint/);
  });

  it('SIGINT writes a checkpoint and exits 130; the resumed run matches an uninterrupted one', async () => {
    const long = [
      'train-base',
      '--train-text',
      'train.txt',
      '--validation-text',
      'val.txt',
      ...TINY,
      '--steps',
      '1000000',
      '--eval-every',
      '0',
      '--checkpoint-every',
      '0',
      '--log-every',
      '1000000',
      '--seed',
      '8',
    ];
    const child = spawn(process.execPath, [main, ...long, '--out', 'models/int.tnm'], { cwd: dir });
    let stdout = '';
    let stderr = '';
    let sent = false;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (!sent && /step 1\/1000000/.test(stderr)) {
        sent = true; // once: a second Ctrl-C is the user's way to quit at once
        child.kill('SIGINT');
      }
    });
    const code = await new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
    expect(code).toBe(130);
    const m = /stopped after step (\d+)/.exec(stdout);
    expect(m, stdout + stderr).not.toBeNull();
    const k = Number(m![1]);
    const target = String(k + 5);
    const resumed = cli('train-base', '--resume', 'models/int.tnm.ckpt', '--out', 'models/int.tnm', '--stop-after', target);
    expect(resumed.code).toBe(0);
    const straight = cli(...long, '--out', 'models/str.tnm', '--stop-after', target);
    expect(straight.code).toBe(0);
    expect(readFileSync(join(dir, 'models/int.tnm.ckpt')).equals(readFileSync(join(dir, 'models/str.tnm.ckpt')))).toBe(true);
  }, 120_000);

  it('train-adapter and evaluate; an adapter of another base is refused', () => {
    const t = cli(
      'train-adapter',
      '--model',
      'models/a.tnm',
      '--text',
      'user.txt',
      '--out',
      'u.adapter',
      '--seq',
      '16',
      '--batch',
      '4',
      '--max-steps',
      '30',
      '--eval-every',
      '5',
      '--json',
    );
    expect(t.code).toBe(0);
    const s = JSON.parse(t.stdout) as { bestLoss: number; baselineLoss: number; stepsDone: number; gradQuant: string };
    expect(s.bestLoss).toBeLessThanOrEqual(s.baselineLoss);
    expect(s.gradQuant).toBe('int8'); // the adapter default
    // the file records the precision it was trained with, the default included (an older default-trained
    // adapter, f32 then, records none)
    const saved = Adapter.load(Model.load(join(dir, 'models/a.tnm')), join(dir, 'u.adapter'));
    expect((saved.meta as { options: { gradQuant?: string } }).options.gradQuant).toBe('int8');
    const none = cli('evaluate', '--model', 'models/a.tnm', '--text', 'user.txt', '--json');
    const withA = cli('evaluate', '--model', 'models/a.tnm', '--adapter', 'u.adapter', '--text', 'user.txt', '--json');
    expect(none.code).toBe(0);
    expect(withA.code).toBe(0);
    const n = JSON.parse(none.stdout) as {
      perplexity: number;
      meanNll: number;
      bitsPerByte: number;
      tokens: number;
      scoredTokens: number;
      bytes: number;
    };
    const w = JSON.parse(withA.stdout) as typeof n;
    expect(n.perplexity).toBeCloseTo(Math.exp(n.meanNll), 9);
    expect(n.scoredTokens).toBe(n.tokens - 1);
    expect(w.meanNll).not.toBe(n.meanNll);
    const plain = cli('evaluate', '--model', 'models/a.tnm', '--text', 'val.txt');
    expect(plain.stdout).toMatch(/^perplexity \d+\.\d{4} {2}bits\/byte \d+\.\d{4} {2}mean nll \d+\.\d{4} {2}tokens \d+/);
    const wrong = cli('evaluate', '--model', 'models/c.tnm', '--adapter', 'u.adapter', '--text', 'val.txt');
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/^ternorm: this adapter was trained on base model [0-9a-f]{16}\.\.\. but the loaded base model is/);
  });

  it('bad input: clear messages, exit codes 1/2, no stack traces', () => {
    const cases: Array<[string[], number, RegExp]> = [
      [['evaluate', '--model', 'models/a.tnm', '--text', 'missing.txt'], 1, /cannot read --text missing\.txt: no such file/],
      [['evaluate', '--model', 'models/a.tnm', '--text', 'empty.txt'], 1, /--text empty\.txt is empty/],
      // devices, FIFOs and oversized files are refused before anything is read (no waiting, no gigabytes)
      [
        ['evaluate', '--model', 'models/a.tnm', '--text', '/dev/zero'],
        1,
        /^ternorm: cannot read --text \/dev\/zero: it is a character device, not a regular file\n$/,
      ],
      [
        ['train-adapter', '--model', 'models/a.tnm', '--text', 'text.fifo', '--out', 'x.adapter'],
        1,
        /cannot read --text text\.fifo: it is a FIFO, not a regular file/,
      ],
      [
        ['evaluate', '--model', 'models/a.tnm', '--text', 'huge.txt'],
        1,
        new RegExp(`--text huge\\.txt is ${MAX_TEXT_BYTES + 1} bytes, above the limit of ${MAX_TEXT_BYTES} bytes for a text`),
      ],
      [
        ['train-base', '--train-text', '/dev/zero', '--validation-text', 'val.txt'],
        1,
        /cannot read --train-text \/dev\/zero: it is a character device/,
      ],
      [['evaluate', '--model', 'nope.tnm', '--text', 'val.txt'], 1, /nope\.tnm/],
      [['evaluate', '--model', 'val.txt', '--text', 'val.txt'], 1, /not a ternorm file|magic|too short|truncated/i],
      // parseArgs' errors in one line of this CLI's words, then the usage of that command alone
      [
        ['evaluate', '--model', 'models/a.tnm', '--text', 'val.txt', '--bogus'],
        2,
        /^ternorm: unknown flag '--bogus'\n\nusage: ternorm evaluate \[options\]\n {2}evaluate {2}(?![\s\S]*train-base)[\s\S]*\(ternorm help: every command\)\n$/,
      ],
      [
        ['evaluate', '--model', 'models/a.tnm', '--text', 'val.txt', '--stride', '-4'],
        2,
        /^ternorm: --stride needs a value; '-4' reads as a flag \(a value starting with '-' is written --stride=-4\)\n/,
      ],
      [['evaluate', '--text', 'val.txt', '--model'], 2, /^ternorm: --model needs a value\n/],
      [['evaluate', '--model', 'models/a.tnm', '--text', 'val.txt', '--json=1'], 2, /^ternorm: --json takes no value\n/],
      [['evaluate', '--model', 'models/a.tnm', 'val.txt'], 2, /^ternorm: unexpected argument 'val\.txt' \(values follow their flags/],
      [['evaluate', '--text', 'val.txt'], 2, /--model is required/],
      [['train-adapter', '--model', 'models/a.tnm', '--text', 'user.txt'], 2, /--out is required/],
      [
        ['train-adapter', '--model', 'models/a.tnm', '--text', 'short.txt', '--out', 'x.adapter', '--seq', '16'],
        1,
        /the user's text is too short: it encodes to \d+ tokens/,
      ],
      [['evaluate', '--model', 'models/a.tnm', '--text', 'one.txt'], 1, /too short: it encodes to 1 token/],
      [
        ['train-adapter', '--model', 'models/a.tnm', '--text', 'user.txt', '--out', 'x.adapter', '--seq', 'abc'],
        2,
        /--seq must be an integer/,
      ],
      [
        ['train-base', '--train-text', 'train.txt', '--validation-text', 'val.txt', '--mode', 'int4'],
        2,
        /--mode must be 'ternary' or 'fp32'/,
      ],
      [
        ['train-base', '--train-text', 'train.txt', '--validation-text', 'val.txt', ...TINY, '--vocab', '5000', '--steps', '2'],
        1,
        /supports only \d+ merges/,
      ],
      [['frobnicate'], 2, /unknown command 'frobnicate'/],
    ];
    for (const [args, code, msg] of cases) {
      const r = cli(...args);
      expect(r.code, args.join(' ')).toBe(code);
      expect(r.stderr, args.join(' ')).toMatch(msg);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    const corrupt = readFileSync(join(dir, 'models/a.tnm'));
    corrupt[corrupt.length >> 1]! ^= 1;
    writeFileSync(join(dir, 'corrupt.tnm'), corrupt);
    const r = cli('evaluate', '--model', 'corrupt.tnm', '--text', 'val.txt');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/corrupt\.tnm.*checksum mismatch in section/);
  });
});

describe('ternorm report', () => {
  it("rewrites a committed results file's report and plots byte for byte, one frontier plot per family", () => {
    for (const name of ['53_adapter_compress', '53_adapter_compress_sweeps']) {
      const results = join(dir, `${name}.json`);
      writeFileSync(results, readFileSync(join(root, 'results', `${name}.json`)));
      const r = cli('report', '--results', results);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const suffixes = [
        '.md',
        '.svg',
        ...(name.endsWith('sweeps') ? ['_noise.svg', '-frontier-far-domain.svg', '-frontier-near-base.svg'] : []),
      ];
      for (const s of suffixes)
        expect(readFileSync(join(dir, `${name}${s}`), 'utf8')).toBe(readFileSync(join(root, 'results', `${name}${s}`), 'utf8'));
    }
  });

  it('results:compare: a run against itself moves nothing; against another regime it names what moved; other users are refused in one line', () => {
    const script = join(root, 'dist', 'scripts', 'compare-results.js');
    const compare = (...args: string[]) => spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', timeout: 60_000 });
    type Comparison = {
      verdictsChanged: string[];
      policyChanged: unknown[];
      rawPplMoves: { relative: number }[];
      testRatiosInsideA: { inside: number; of: number };
    };
    const committed = join(root, 'results', '53_adapter_compress.json');
    const self = compare(committed, committed, '--json');
    expect(self.status, self.stderr).toBe(0);
    const s = JSON.parse(self.stdout) as Comparison;
    expect(s.verdictsChanged).toEqual([]);
    expect(s.policyChanged).toEqual([]);
    expect(s.rawPplMoves.every((m) => m.relative === 0)).toBe(true);
    expect(s.testRatiosInsideA.of).toBeGreaterThan(0);
    expect(s.testRatiosInsideA.inside).toBe(s.testRatiosInsideA.of);
    // the 5-step adapters against the 100-step ones: every entry named really differs between the files
    const fivePath = join(root, 'results', '53_adapter_compress_5steps.json');
    const five = compare(committed, fivePath, '--json');
    expect(five.status, five.stderr).toBe(0);
    const f = JSON.parse(five.stdout) as Comparison;
    expect(f.verdictsChanged.length).toBeGreaterThan(0);
    type Verdicts = {
      verdicts: { scheme: string; users: { user: string; withinStrict: boolean; withinLenient: boolean; worseThanNoAdapter: boolean }[] }[];
    };
    const flags = (file: string, entry: string): string => {
      const [scheme, user] = entry.split(' ');
      const u = (JSON.parse(readFileSync(file, 'utf8')) as Verdicts).verdicts
        .find((v) => v.scheme === scheme)!
        .users.find((x) => x.user === user)!;
      return [u.withinStrict, u.withinLenient, u.worseThanNoAdapter].join();
    };
    for (const e of f.verdictsChanged) expect(flags(fivePath, e)).not.toBe(flags(committed, e));
    const other = compare(committed, join(root, 'results', '12_fleet', 'results.json'));
    expect(other.status).toBe(1);
    expect(other.stderr).toMatch(/^compare-results: the runs have other users \(6 against 271; user 1 is novelist against sotu-001\)\n$/);
  });

  it('refuses a results file whose numbers were edited', () => {
    const results = join(dir, 'tampered.json');
    const text = readFileSync(join(root, 'results', '53_adapter_compress.json'), 'utf8');
    writeFileSync(results, text.replace('"worseThanNoAdapter": 3', '"worseThanNoAdapter": 2'));
    const r = cli('report', '--results', results);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});
