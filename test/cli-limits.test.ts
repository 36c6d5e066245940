// Every numeric option of every command is range-checked right after parsing, against the core's
// limits (native/model/limits.h) or the orchestration's: exit 2, the flag and its range named, and
// nothing created (no results, report or model file) and no work started.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { cpuInfo } from '../lib/kernels.js';
import { packageRoot } from '../lib/native.js';

const root = packageRoot();
const main = join(root, 'dist', 'lib', 'cli', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'ternorm-cli-limits-'));

beforeAll(() => {
  execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], {
    stdio: 'inherit',
  });
}, 180_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function cli(...args: string[]): { code: number | null; stderr: string; ms: number } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [main, ...args], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stderr: r.stderr, ms: performance.now() - t0 };
}

const threads = String(cpuInfo().threads);
// [command and its required arguments, flag, a value out of range, the range the message names]
const CASES: [string[], string, string, string][] = [
  [['bet', '--out', 'r.json'], 'threads', '10000', `an integer in 1..${threads}`],
  [['bet', '--out', 'r.json'], 'group-size', '99999999', 'an integer in 1..16777216'],
  [['bet', '--out', 'r.json'], 'calibration-tokens', '99999999999', 'an integer in 2..1048576'],
  [['bet', '--out', 'r.json'], 'max-steps', '0', 'an integer in 1..2^40'],
  [['bet', '--out', 'r.json'], 'batch', '0', 'an integer in 1..4096'],
  [['bet', '--out', 'r.json'], 'warmup', '-1', 'an integer in 0..2^40'],
  [['bet', '--out', 'r.json'], 'eval-every', '0', 'an integer in 1..2^40'],
  [['bet', '--out', 'r.json'], 'patience', '0', 'an integer in 1..'],
  [['bet', '--out', 'r.json'], 'eval-stride', '0', 'an integer in 1..65536'],
  [['bet', '--out', 'r.json'], 'mixed-budget', '0', 'an integer in 1..2^40'],
  [['bet', '--out', 'r.json'], 'seeds', '101', 'an integer in 1..100'],
  [['bet', '--out', 'r.json'], 'seed', '-1', 'an integer in 0..9007199254740991'],
  [['bet', '--out', 'r.json'], 'resamples', '1', 'an integer in 2..1000000'],
  [['bet', '--out', 'r.json'], 'fleet-users', '1.5', 'an integer in 1..'],
  [['bet', '--out', 'r.json'], 'train-bytes', '0', 'an integer in 1..268435456'],
  [['bet', '--out', 'r.json'], 'test-bytes', '1e9', 'an integer in 1..268435456'],
  [['bet', '--out', 'r.json'], 'split-windows', '4097', 'an integer in 1..4096'],
  [['quantize', '--scheme', 'int8_group', 'in.adapter', 'out.adapter'], 'group-size', '99999999', 'an integer in 1..16777216'],
  [['quantize', '--scheme', 'mixed', 'in.adapter', 'out.adapter'], 'budget', 'x', 'an integer in 1..2^40'],
  [
    ['quantize', '--scheme', 'int4_calibrated', '--text', 't', 'in.adapter', 'out.adapter'],
    'calibration-tokens',
    '1',
    'an integer in 2..1048576',
  ],
  [['quantize', '--scheme', 'int8_group', 'in.adapter', 'out.adapter'], 'threads', '0', `an integer in 1..${threads}`],
  [['train-adapter', '--model', 'm', '--text', 't', '--out', 'o.adapter'], 'lr', '0', 'a number in (0, 3.4e38]'],
  [['train-adapter', '--model', 'm', '--text', 't', '--out', 'o.adapter'], 'validation-fraction', '1', 'a number in (0, 1)'],
  [['train-adapter', '--model', 'm', '--text', 't', '--out', 'o.adapter'], 'batch', '5000', 'an integer in 1..4096'],
  [['train-adapter', '--model', 'm', '--text', 't', '--out', 'o.adapter'], 'patience', '0', 'an integer in 1..'],
  [['train-adapter', '--model', 'm', '--text', 't', '--out', 'o.adapter'], 'weight-decay', '-1', 'a number in [0, 3.4e38]'],
  [['train-base', '--out', 'b.tnm'], 'layers', '2000', 'an integer in 1..1024'],
  [['train-base', '--out', 'b.tnm'], 'vocab', '100', 'an integer in 256..65536'],
  [['train-base', '--out', 'b.tnm'], 'd-model', '1', 'an integer in 2..65536'],
  [['train-base', '--out', 'b.tnm'], 'min-lr', 'nan', 'a number in [0, 3.4e38]'],
  [['train-base', '--out', 'b.tnm'], 'steps', '0', 'an integer in 1..2^40'],
  [['train-base', '--out', 'b.tnm'], 'threads', '10000', `an integer in 1..${threads}`],
  [['evaluate', '--model', 'm', '--text', 't'], 'batch', '5000', 'an integer in 1..1024'],
  [['generate', '--model', 'm', '--prompt', 'p'], 'temperature', '-1', 'a number in [0, 3.4e38]'],
  [['generate', '--model', 'm', '--prompt', 'p'], 'top-p', '0', 'a number in (0, 1]'],
  [['generate', '--model', 'm', '--prompt', 'p'], 'max-tokens', '70000', 'an integer in 1..65536'],
  [['generate', '--model', 'm', '--jsonl'], 'threads', '0', `an integer in 1..${threads}`],
  [['evaluate', '--model', 'm', '--text', 't'], 'stride', '0', 'an integer in 1..65536'],
  [['fleet', '--results', 'r.json'], 'users', '0', 'an integer in 1..'],
];

describe('numeric options are range-checked before any work', () => {
  for (const [args, flag, bad, range] of CASES) {
    it(`${args[0]} --${flag} ${bad}: exit 2 naming --${flag} and ${range}`, () => {
      const r = cli(...args, `--${flag}=${bad}`);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`--${flag} must be ${range}`);
      expect(r.stderr).toContain(`got '${bad}'`);
      expect(readdirSync(dir)).toEqual([]);
    });
  }
});
