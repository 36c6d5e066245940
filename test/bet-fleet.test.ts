import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sha256Hex } from '../lib/util/hash.js';
import { loadCriteria } from '../lib/bet/criteria.js';
import { fleetMarkdown, fleetShares, fleetTotals, formatBytes, formatFleet } from '../lib/bet/fleet.js';
import { ResultsWriter, type AdapterCompressResults, type SplitLosses } from '../lib/bet/results.js';
import { Xoshiro128 } from '../lib/bet/stats.js';

const criteria = loadCriteria();
const CONDITIONS = ['no_adapter', 'raw_fp32', 'raw_fp16', 'int8_per_tensor', 'int4_delta', 'mixed_budget'];

/** The parts of a results object the fleet reads: users' encoded sizes and policy choices. */
function results(
  users: { user: string; choice: string; bytes: Record<string, number> }[],
): Pick<AdapterCompressResults, 'users' | 'conditions' | 'criteria'> {
  return {
    conditions: CONDITIONS,
    criteria: { sha256: criteria.sha256, registeredAt: '2025-01-01T00:00:00.000Z', source: 'default', criteria: criteria.criteria },
    users: users.map((u) => ({
      user: u.user,
      encodings: Object.fromEntries(Object.entries(u.bytes).map(([c, b]) => [c, { bytes: b, params: {} }])),
      policy: { choice: u.choice },
    })) as unknown as AdapterCompressResults['users'],
  };
}

const SIZES = { raw_fp32: 9232, raw_fp16: 4624, int8_per_tensor: 2324, int4_delta: 1172 };
const three = results([
  { user: 'scientist', choice: 'int8_per_tensor', bytes: { ...SIZES, mixed_budget: 1700 } },
  { user: 'novelist', choice: 'int4_delta', bytes: { ...SIZES, mixed_budget: 1500 } },
  { user: 'programmer', choice: 'raw_fp16', bytes: { ...SIZES, mixed_budget: 1900 } },
]);

describe('fleet shares', () => {
  it('splits N users over the observed users in name order, as evenly as possible', () => {
    expect(fleetShares(['scientist', 'novelist', 'programmer'], 215000)).toEqual({ novelist: 71667, programmer: 71667, scientist: 71666 });
    expect(fleetShares(['b', 'a', 'c'], 2)).toEqual({ a: 1, b: 1, c: 0 });
    expect(fleetShares(['a'], 7)).toEqual({ a: 7 });
    expect(() => fleetShares(['a'], 0)).toThrow(/positive integer, got 0/);
    expect(() => fleetShares(['a'], 2.5)).toThrow(/positive integer, got 2\.5/);
    expect(() => fleetShares([], 10)).toThrow(/no users yet/);
    expect(() => fleetShares(['a', 'a'], 10)).toThrow(/appears twice/);
  });
});

describe('fleet totals', () => {
  const s = fleetTotals(three, 215000);
  const row = (label: string) => s.rows.find((r) => r.label === label)!;

  it('all raw fp16, all int8 and the policy mix, exactly', () => {
    expect(s.rows.slice(0, 3).map((r) => r.label)).toEqual(['all raw_fp16', 'all int8_per_tensor', 'policy mix']);
    expect(row('all raw_fp16').totalBytes).toBe(994_160_000);
    expect(row('all int8_per_tensor').totalBytes).toBe(499_660_000);
    // 71667 x 1172 (novelist, int4) + 71667 x 4624 (programmer, fp16) + 71666 x 2324 (scientist, int8)
    expect(row('policy mix').totalBytes).toBe(71667 * 1172 + 71667 * 4624 + 71666 * 2324);
    expect(row('policy mix').totalBytes).toBe(581_933_716);
    expect(row('policy mix').mix).toEqual({ int4_delta: 71667, int8_per_tensor: 71666, raw_fp16: 71667 });
    expect(row('policy mix').observedBytes).toEqual({ novelist: 1172, programmer: 4624, scientist: 2324 });
    expect(row('all int8_per_tensor').ratioToFallback).toBe(499_660_000 / 994_160_000);
    expect(row('all raw_fp16').bytesPerUser).toBe(4624);
  });

  it("uses each user's own size when sizes differ per user", () => {
    expect(row('all mixed_budget').totalBytes).toBe(71667 * 1500 + 71667 * 1900 + 71666 * 1700);
    expect(row('all mixed_budget').bytesPerUser).toBe((71667 * 1500 + 71667 * 1900 + 71666 * 1700) / 215000);
    // every encoding has a row; the no-adapter baseline has none
    expect(s.rows.map((r) => r.condition)).toEqual(['raw_fp16', 'int8_per_tensor', null, 'raw_fp32', 'int4_delta', 'mixed_budget']);
  });

  it('with as many fleet users as observed users, totals are the plain sums', () => {
    const small = fleetTotals(three, 3);
    expect(small.rows.find((r) => r.kind === 'policy')!.totalBytes).toBe(1172 + 2324 + 4624);
    expect(small.rows.find((r) => r.label === 'all mixed_budget')!.totalBytes).toBe(1500 + 1700 + 1900);
  });

  it('fails clearly without sizes', () => {
    const broken = results([{ user: 'a', choice: 'int4_delta', bytes: { raw_fp16: 4624 } }]);
    expect(() => fleetTotals(broken, 10)).toThrow(/user "a" has no encoded size for "int8_per_tensor"/);
  });

  it('prints human-readable units and the exact totals', () => {
    const text = formatFleet(s);
    expect(text).toContain('994160000');
    expect(text).toContain('948 MiB');
    expect(text).toContain('policy mix: int4_delta 71667, int8_per_tensor 71666, raw_fp16 71667');
    const md = fleetMarkdown(s);
    const line = md.split('\n').find((l) => l.startsWith('| policy mix |'))!;
    const cells = line.slice(2, -2).split(' | ');
    expect(Number(cells[2])).toBe(row('policy mix').totalBytes);
    expect(cells[3]).toBe(formatBytes(row('policy mix').totalBytes));
    expect(cells[4]).toBe(`${((row('policy mix').totalBytes / 994_160_000) * 100).toFixed(1)}%`);
  });
});

describe('formatBytes', () => {
  it('uses IEC units with three significant digits', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1024)).toBe('1.00 KiB');
    expect(formatBytes(1536)).toBe('1.50 KiB');
    expect(formatBytes(4624)).toBe('4.52 KiB');
    expect(formatBytes(99 * 1024)).toBe('99.0 KiB');
    expect(formatBytes(994_160_000)).toBe('948 MiB');
    expect(formatBytes(1_048_575)).toBe('1.00 MiB');
    expect(formatBytes(2 * 1024 ** 3)).toBe('2.00 GiB');
    expect(() => formatBytes(-1)).toThrow(/non-negative/);
  });
});

describe('fleet from a real results file', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('follows the policy choices and the encoded sizes the run recorded', () => {
    const d = mkdtempSync(join(tmpdir(), 'ternorm-fleet-'));
    dirs.push(d);
    const n = 300;
    const split = (seed: number, ratios: Record<string, number>): SplitLosses => {
      const rng = new Xoshiro128(seed);
      const base = Float64Array.from({ length: n }, () => 1 - Math.log(1 - rng.nextFloat()));
      return { bytes: 1200, nll: Object.fromEntries(CONDITIONS.map((c) => [c, base.map((v) => v + Math.log(ratios[c]!))])) };
    };
    const w = ResultsWriter.start(
      join(d, 'r.json'),
      {
        seed: 1,
        baseModel: { name: 'm', sha256: sha256Hex('m'), config: {} },
        criteria,
        conditions: CONDITIONS,
        bootstrap: { resamples: 50 },
        minTokens: 100,
        run: {
          adapterRun: { maxSteps: 100 },
          encode: {
            calibrationTokens: 512,
            clipGrid: [1],
            groupSize: null,
            kmeansMaxIters: null,
            calibrationPasses: null,
            mixedBudget: null,
          },
        },
      },
      { now: () => new Date('2025-01-01T00:00:00Z') },
    );
    const users: [string, Record<string, number>][] = [
      // int4 passes; the mixed encoding is smaller for this user and passes too
      ['ann', { no_adapter: 1.3, raw_fp32: 1, raw_fp16: 1, int8_per_tensor: 1.02, int4_delta: 1.1, mixed_budget: 1.05 }],
      // only fp16 beats no adapter
      ['bob', { no_adapter: 1.01, raw_fp32: 1, raw_fp16: 1, int8_per_tensor: 1.02, int4_delta: 1.1, mixed_budget: 1.05 }],
    ];
    users.forEach(([u, ratios], k) => {
      const id = (part: 'validation' | 'test') => ({
        fixture: u,
        part,
        ranges: [[0, 1200]] as [number, number][],
        bytes: 1200,
        sha256: sha256Hex(u + part),
      });
      w.addUser({
        user: u,
        texts: { validation: id('validation'), test: id('test') },
        encodings: Object.fromEntries(
          Object.entries({ ...SIZES, mixed_budget: k === 0 ? 1000 : 1900 }).map(([c, b]) => [c, { bytes: b, params: {} }]),
        ),
        validation: split(10 + k, ratios),
        test: split(20 + k, ratios),
      });
    });
    const r = w.complete();
    expect(r.users.map((u) => u.policy.choice)).toEqual(['mixed_budget', 'raw_fp16']);
    const s = fleetTotals(r, 1001);
    expect(s.shares).toEqual({ ann: 501, bob: 500 });
    const policy = s.rows.find((x) => x.kind === 'policy')!;
    expect(policy.totalBytes).toBe(501 * 1000 + 500 * 4624);
    expect(policy.mix).toEqual({ mixed_budget: 501, raw_fp16: 500 });
    expect(s.rows.find((x) => x.label === 'all int8_per_tensor')!.totalBytes).toBe(1001 * 2324);
  });
});
