// The rate-distortion frontier (lib/bet/frontier.ts): the choice at each budget sees validation
// only, the reported ratios are the test split's, the minimum safe bytes follow STRICT and the
// no-adapter rule on validation, and the plot carries the plotted values.
import { describe, expect, it } from 'vitest';

import { DEFAULT_CRITERIA, validateCriteria, type Criteria } from '../lib/bet/criteria.js';
import {
  checkLadder,
  computeFrontier,
  frontierCondition,
  frontierMarkdown,
  frontierSvg,
  methodOf,
  userFrontier,
} from '../lib/bet/frontier.js';
import type { UserResult } from '../lib/bet/results-types.js';

const criteria: Criteria = validateCriteria(JSON.parse(JSON.stringify(DEFAULT_CRITERIA)));

// A user result holding only what the frontier reads: encoded sizes and point perplexities.
function user(name: string, rows: Record<string, { bytes?: number; v: number; t: number }>): UserResult {
  const split = (k: 'v' | 't') => ({
    conditions: Object.fromEntries(Object.entries(rows).map(([c, r]) => [c, { ppl: { value: r[k] } }])),
  });
  const encodings = Object.fromEntries(
    Object.entries(rows)
      .filter(([, r]) => r.bytes !== undefined)
      .map(([c, r]) => [c, { bytes: r.bytes!, params: {} }]),
  );
  return { user: name, encodings, validation: split('v'), test: split('t') } as unknown as UserResult;
}

// reference 10 / 10, no adapter 13 / 14
const base = {
  no_adapter: { v: 13, t: 14 },
  raw_fp32: { bytes: 9332, v: 10, t: 10 },
  raw_fp16: { bytes: 4724, v: 10, t: 10.01 },
  int4_delta: { bytes: 1304, v: 10.2, t: 10.1 },
  'alloc-128': { bytes: 120, v: 11, t: 12.5 },
  'alloc-64': { bytes: 60, v: 16, t: 11 },
  'sparse_delta-128': { bytes: 126, v: 11.5, t: 10.5 },
};

describe('frontier', () => {
  it('names budgeted conditions and parses them back', () => {
    expect(frontierCondition('alloc', 128)).toBe('alloc-128');
    expect(methodOf('alloc-128')).toBe('alloc');
    expect(methodOf('sparse_delta-64')).toBe('sparse_delta');
    expect(methodOf('int4_delta')).toBe('int4_delta');
    expect(() => checkLadder([64, 64])).toThrow(/increasing/);
    expect(() => checkLadder([0])).toThrow(/positive integer/);
    expect(() => checkLadder([])).toThrow(/non-empty/);
  });

  it('chooses on validation and reports on test', () => {
    const f = userFrontier(user('u', base), [32, 64, 128, 2000, 5000], criteria);
    expect(f.points.map((p) => p.choice)).toEqual([null, 'alloc-64', 'alloc-128', 'int4_delta', 'raw_fp16']);
    // at 128 B: alloc-128 wins on validation (11 < 11.5) although sparse_delta-128 is better on test
    const p128 = f.points[2]!;
    expect(p128.validationRatio).toBeCloseTo(1.1, 12);
    expect(p128.testRatio).toBeCloseTo(1.25, 12);
    expect(p128.testRatioToNoAdapter).toBeCloseTo(12.5 / 14, 12);
    expect(f.points[0]).toEqual({
      budget: 32,
      choice: null,
      bytes: null,
      validationRatio: null,
      testRatio: null,
      testRatioToNoAdapter: null,
    });
    // raw_fp16 and raw_fp32 tie on validation: the smaller ships
    expect(f.points[4]!.bytes).toBe(4724);
  });

  it('finds the minimum safe bytes on validation and says whether it holds on test', () => {
    const f = userFrontier(user('u', base), [64], criteria);
    // alloc-64 (60 B) is 1.6x raw on validation: not STRICT; alloc-128 (120 B) is 1.1x and beats no adapter
    expect(f.minimumSafe).toEqual({
      condition: 'alloc-128',
      bytes: 120,
      validationRatio: 1.1,
      testRatio: 1.25,
      testRatioToNoAdapter: 12.5 / 14,
      holdsOnTest: true,
    });
    // worse than no adapter on test: the rule fails there
    const g = userFrontier(user('u', { ...base, 'alloc-128': { bytes: 120, v: 11, t: 14.5 } }), [64], criteria);
    expect(g.minimumSafe!.holdsOnTest).toBe(false);
    // nothing better than no adapter on validation: no safe size
    const none = Object.fromEntries(Object.entries(base).map(([c, r]) => [c, c === 'no_adapter' ? { v: 9, t: 9 } : r]));
    expect(userFrontier(user('u', none), [64], criteria).minimumSafe).toBeNull();
  });

  it('plots and tabulates the computed values', () => {
    const f = computeFrontier([user('a', base), user('b', base)], [64, 128, 4608], criteria);
    expect(f.users).toHaveLength(2);
    const svg = frontierSvg(f, criteria, 'frontier');
    expect(svg.startsWith('<?xml')).toBe(true);
    expect(svg).toContain('data-choice="alloc-128"');
    expect(svg).toContain(`data-test-ratio="${f.users[0]!.points[1]!.testRatio}"`);
    expect(svg).toContain('class="minimum-safe"');
    const md = frontierMarkdown(f, criteria.strict.maxRatio, (s) => s).join('\n');
    expect(md).toContain('| 128 | alloc-128 | 120 | 1.1000 | 1.2500 |');
    expect(md).toContain('Minimum safe bytes: **120 B** (alloc-128)');
  });
});
