// Issue 10 §8, the frontier line of the conclusions: computed per user family from the users'
// validation and test perplexities under --frontier (the minimum safe bytes' median and range, the
// best encoding per budget that keeps every user of the family within STRICT), rendered in the
// report, recomputed by the reader (a tampered number is refused); without --frontier, "not measured".
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { canonicalJson, DEFAULT_CRITERIA, loadCriteria, validateCriteria, type Criteria } from '../lib/bet/criteria.js';
import { computeConclusions, conclusionsMarkdown } from '../lib/bet/conclusions.js';
import { renderReport } from '../lib/bet/report.js';
import {
  parseResults,
  ResultsWriter,
  type AdapterCompressResults,
  type ResultsHeader,
  type SplitLosses,
  type UserEvaluation,
} from '../lib/bet/results.js';
import type { UserResult } from '../lib/bet/results-types.js';
import { Xoshiro128 } from '../lib/bet/stats.js';
import { sha256Hex } from '../lib/util/hash.js';

const criteria: Criteria = validateCriteria(JSON.parse(JSON.stringify(DEFAULT_CRITERIA)));

type Rows = Record<string, { bytes?: number; v: number; t: number }>;

// A user result holding only what the conclusions read: family, encoded sizes, point perplexities.
function user(name: string, family: string, rows: Rows): UserResult {
  const split = (k: 'v' | 't') => ({
    conditions: Object.fromEntries(Object.entries(rows).map(([c, r]) => [c, { ppl: { value: r[k] } }])),
  });
  const encodings = Object.fromEntries(
    Object.entries(rows)
      .filter(([, r]) => r.bytes !== undefined)
      .map(([c, r]) => [c, { bytes: r.bytes!, params: {} }]),
  );
  return { user: name, family, encodings, validation: split('v'), test: split('t') } as unknown as UserResult;
}

// reference 10 / 10; STRICT is <= 1.5x
const rows = (over: Rows = {}): Rows => ({
  no_adapter: { v: 13, t: 13 },
  raw_fp32: { bytes: 9332, v: 10, t: 10 },
  raw_fp16: { bytes: 4724, v: 10, t: 10 },
  int8_per_tensor: { bytes: 2324, v: 10.1, t: 10.1 },
  int4_delta: { bytes: 1304, v: 11, t: 11 },
  'alloc-128': { bytes: 120, v: 12, t: 12 },
  'alloc-64': { bytes: 60, v: 16, t: 16 },
  ...over,
});
const LADDER = [64, 128, 1304, 4724];

describe('the frontier conclusion', () => {
  const users = [
    user('far1', 'far-domain', rows()),
    user('far2', 'far-domain', rows({ 'alloc-128': { bytes: 124, v: 14, t: 16 } })),
    user('near1', 'near-base', rows({ no_adapter: { v: 10.5, t: 10.5 } })),
    user('near2', 'near-base', rows({ no_adapter: { v: 10.05, t: 9.9 } })),
  ];

  it('is computed per family from the numbers', () => {
    const c = computeConclusions(users, criteria, undefined, LADDER);
    expect(c.frontier!.map((f) => [f.family, f.users])).toEqual([
      ['far-domain', ['far1', 'far2']],
      ['near-base', ['near1', 'near2']],
    ]);
    const [far, near] = c.frontier!;
    // far1: alloc-128 (120 B) is 1.2x raw and beats no adapter; far2: alloc-128 is 1.4x but not below
    // no adapter (14 > 13): its smallest safe encoding is int4_delta (1304 B)
    expect(far!.minimumSafe).toEqual({ found: 2, holdsOnTest: 2, bytes: { min: 120, median: 712, max: 1304 } });
    // near1: only raw and int8 beat no adapter (10.5); near2: only raw (10 < 10.05), and on test not even that (10 > 9.9)
    expect(near!.minimumSafe).toEqual({ found: 2, holdsOnTest: 1, bytes: { min: 2324, median: 3524, max: 4724 } });
    expect(far!.budgets.map((b) => b.choice)).toEqual([null, 'alloc-128', 'int4_delta', 'raw_fp16']);
    const b128 = far!.budgets[1]!;
    // the worst user decides: far2's alloc-128 is 1.4x on validation and 1.6x on test (not STRICT there)
    expect(b128).toEqual({
      budget: 128,
      choice: 'alloc-128',
      bytes: 124,
      worstValidationRatio: 1.4,
      worstTestRatio: 1.6,
      strictOnTest: false,
    });
    expect(far!.budgets[2]!.strictOnTest).toBe(true);
  });

  it("changes when one user's frontier changes", () => {
    const before = computeConclusions(users, criteria, undefined, LADDER);
    // far2's alloc-128 leaves STRICT on validation: no 128-B encoding keeps the whole family within STRICT
    const worse = users.map((u) =>
      u.user === 'far2' ? user('far2', 'far-domain', rows({ 'alloc-128': { bytes: 124, v: 16, t: 16 } })) : u,
    );
    const after = computeConclusions(worse, criteria, undefined, LADDER);
    expect(before.frontier![0]!.budgets[1]!.choice).toBe('alloc-128');
    expect(after.frontier![0]!.budgets[1]!.choice).toBeNull();
    expect(after.frontier![1]).toEqual(before.frontier![1]);
    // near1's int4_delta beats no adapter now: its minimum safe bytes fall to 1304
    const nearer = users.map((u) => (u.user === 'near1' ? user('near1', 'near-base', rows({ no_adapter: { v: 11.5, t: 11.5 } })) : u));
    expect(computeConclusions(nearer, criteria, undefined, LADDER).frontier![1]!.minimumSafe.bytes!.min).toBe(1304);
    // nobody safe: no spread, "none found" in the report
    const hopeless = users.map((u) => user(u.user, 'far-domain', rows({ no_adapter: { v: 9, t: 9 } })));
    const none = computeConclusions(hopeless, criteria, undefined, LADDER).frontier![0]!;
    expect(none.minimumSafe).toEqual({ found: 0, holdsOnTest: 0, bytes: null });
  });

  it('is null without --frontier, and the report says so', () => {
    const c = computeConclusions(users, criteria, undefined);
    expect(c.frontier).toBeNull();
    const results = (conclusions: typeof c): AdapterCompressResults =>
      ({ conclusions, users, criteria: { criteria } }) as unknown as AdapterCompressResults;
    const md = conclusionsMarkdown(results(c)).join('\n');
    expect(md).toContain('- Rate-distortion frontier: not measured (run the bet with --frontier).');
    // near1 and near2: raw (10) beats no adapter (10.5, 10.05) on validation, but near2's not on test (9.9)
    expect(md).toContain(
      'the finding does not reproduce. But raw_fp32 itself is no better than no adapter for 1 of them on test: there the adapter had no benefit for compression to lose.',
    );
    const withF = conclusionsMarkdown(results(computeConclusions(users, criteria, undefined, LADDER))).join('\n');
    expect(withF).toContain(
      '- Rate-distortion frontier, far-domain (2 user(s)): minimum safe bytes 712 B (median; 120-1304 B) for the 2 of 2 user(s) that have one, chosen on validation; it holds on test for 2 of them.',
    );
    expect(withF).toContain(
      'per budget: 64 B none; 128 B alloc-128 (124 B; worst user on test 1.6000x raw, not STRICT on test); 1304 B int4_delta (1304 B; worst user on test 1.1000x raw);',
    );
  });
});

// ---- a whole run through the writer and the reader ----------------------------------------------

const CONDITIONS = ['no_adapter', 'raw_fp32', 'raw_fp16', 'int8_per_tensor', 'int4_delta', 'alloc-128'];
const TOKENS = 400;
const RATIOS: Record<string, Record<string, number>> = {
  novelist: { no_adapter: 1.3, raw_fp32: 1, raw_fp16: 1.001, int8_per_tensor: 1.05, int4_delta: 1.2, 'alloc-128': 1.25 },
  'sotu-1849': { no_adapter: 1.02, raw_fp32: 1, raw_fp16: 1.001, int8_per_tensor: 1.03, int4_delta: 1.1, 'alloc-128': 1.3 },
};
const BYTES: Record<string, number> = { raw_fp32: 9232, raw_fp16: 4624, int8_per_tensor: 2324, int4_delta: 1172, 'alloc-128': 124 };

function losses(seed: number, ratios: Record<string, number>): SplitLosses {
  const rng = new Xoshiro128(seed);
  const d = Float64Array.from({ length: TOKENS }, () => 1 - Math.log(1 - rng.nextFloat()));
  const nll: Record<string, Float64Array> = {};
  for (const c of CONDITIONS) nll[c] = Float64Array.from(d, (v) => v + Math.log(ratios[c]!));
  return { bytes: TOKENS * 4, nll };
}

function evaluation(name: string, family: string, k: number): UserEvaluation {
  const id = (part: 'validation' | 'test') => ({
    fixture: name,
    part,
    ranges: [[0, TOKENS * 4]] as [number, number][],
    bytes: TOKENS * 4,
    sha256: sha256Hex(`${name}.${part}`),
  });
  return {
    user: name,
    family,
    texts: { validation: id('validation'), test: id('test') },
    encodings: Object.fromEntries(Object.entries(BYTES).map(([c, bytes]) => [c, { bytes, params: {} }])),
    validation: losses(10 + k, RATIOS[name]!),
    test: losses(20 + k, RATIOS[name]!),
  };
}

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function run(frontier: boolean): AdapterCompressResults {
  const dir = mkdtempSync(join(tmpdir(), 'ternorm-conclusions-'));
  dirs.push(dir);
  const header: ResultsHeader = {
    seed: 3,
    baseModel: { name: 'tiny', sha256: sha256Hex('model'), config: { layers: 2 } },
    criteria: loadCriteria(),
    conditions: CONDITIONS,
    bootstrap: { resamples: 200 },
    minTokens: 100,
    run: {
      ...(frontier ? { frontier: { ladder: [128, 2400], methods: ['alloc', 'sparse_delta'] } } : {}),
      adapterRun: { maxSteps: 10 },
      encode: { calibrationTokens: 512, clipGrid: [1], groupSize: null, kmeansMaxIters: null, calibrationPasses: null, mixedBudget: null },
    },
  };
  let t = Date.parse('2026-01-01T00:00:00Z');
  const w = ResultsWriter.start(join(dir, 'r.json'), header, { now: () => new Date((t += 1000)) });
  w.addUser(evaluation('novelist', 'far-domain', 0));
  w.addUser(evaluation('sotu-1849', 'near-base', 1));
  return w.complete();
}

function resealed(r: AdapterCompressResults, edit: (x: AdapterCompressResults) => void): string {
  const x = structuredClone(r);
  edit(x);
  const { checksum: _c, ...body } = x;
  return JSON.stringify({ ...body, checksum: sha256Hex(canonicalJson(body)) });
}

describe('the frontier conclusion in a results file', () => {
  it('is written under --frontier, recomputed by the reader, and a tampered number is refused', () => {
    const r = run(true);
    const f = r.conclusions!.frontier!;
    expect(f.map((x) => x.family)).toEqual(['far-domain', 'near-base']);
    // the novelist's alloc-128 is safe (1.25x raw, below no adapter's 1.3x); the near-base user's is not (1.3x > 1.02x)
    expect(f[0]!.minimumSafe.bytes!.median).toBe(124);
    expect(f[1]!.minimumSafe.bytes!.median).toBe(4624);
    expect(f[1]!.budgets.map((b) => b.choice)).toEqual(['alloc-128', 'int8_per_tensor']);
    expect(parseResults(JSON.stringify(r)).conclusions).toEqual(r.conclusions);
    expect(() => parseResults(resealed(r, (x) => (x.conclusions!.frontier![1]!.minimumSafe.bytes!.median = 124)))).toThrow(
      /\$\.conclusions differ from the conclusions recomputed/,
    );
    expect(() => parseResults(resealed(r, (x) => (x.conclusions!.frontier![0]!.budgets[0]!.choice = null)))).toThrow(
      /\$\.conclusions differ/,
    );
    expect(() => parseResults(resealed(r, (x) => (x.conclusions!.frontier = null)))).toThrow(/\$\.conclusions differ/);
    const md = renderReport(r);
    expect(md).toContain('- Rate-distortion frontier, near-base (1 user(s)): minimum safe bytes 4624 B');
    expect(md).not.toContain('not measured (run the bet with --frontier)');
    // the near-base user's raw adapter beats no adapter (1 < 1.02): no caveat
    expect(md).not.toContain('itself is no better than no adapter');
  });

  it("is computed for a run assembled from users analysed elsewhere (the fleet's path), with the frontier", () => {
    const r = run(true);
    const { checksum: _c, ...registered } = structuredClone(r);
    const dir = mkdtempSync(join(tmpdir(), 'ternorm-conclusions-'));
    dirs.push(dir);
    const a = ResultsWriter.assemble(
      join(dir, 'a.json'),
      { ...registered, users: [], frontier: { ladder: r.frontier!.ladder, users: [] }, status: 'running' },
      r.users,
      {
        status: 'complete',
        error: null,
      },
    );
    expect(a.frontier).toEqual(r.frontier);
    expect(a.conclusions).toEqual(r.conclusions);
    expect(parseResults(JSON.stringify(a)).conclusions!.frontier).toEqual(r.conclusions!.frontier);
  });

  it('is null without --frontier, and a file claiming one is refused', () => {
    const r = run(false);
    expect(r.conclusions!.frontier).toBeNull();
    expect(renderReport(r)).toContain('- Rate-distortion frontier: not measured (run the bet with --frontier).');
    const other = run(true).conclusions!.frontier;
    expect(() => parseResults(resealed(r, (x) => (x.conclusions!.frontier = other)))).toThrow(/\$\.conclusions differ/);
  });
});
