import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sha256Hex } from '../lib/util/hash.js';
import {
  canonicalJson,
  criteriaSha256,
  DEFAULT_CRITERIA,
  formatFraction,
  loadCriteria,
  parseCriteria,
  parseFraction,
  requiredUsers,
  validateCriteria,
  writeCriteria,
  type Criteria,
} from '../lib/bet/criteria.js';
import { computeVerdicts, schemesOf, type VerdictUserInput } from '../lib/bet/verdicts.js';
import { Xoshiro128 } from '../lib/bet/stats.js';

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'ternorm-criteria-'));
  dirs.push(d);
  return d;
}
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const clone = (): Record<string, any> => JSON.parse(JSON.stringify(DEFAULT_CRITERIA));

describe('criteria file', () => {
  it('the default is the bet: STRICT 1.5x all, LENIENT 2x on 2/3, CATASTROPHIC on 2/3', () => {
    const c = loadCriteria();
    expect(c.source).toBe('default');
    expect(c.criteria.strict).toEqual({ maxRatio: 1.5, minFraction: '1' });
    expect(c.criteria.lenient).toEqual({ maxRatio: 2, minFraction: '2/3' });
    expect(c.criteria.catastrophic).toEqual({ minFraction: '2/3' });
    expect(c.criteria.policy).toEqual({ maxRatio: 1.5, mustBeatNoAdapter: true });
    expect(c.sha256).toBe(sha256Hex(canonicalJson(c.criteria)));
    expect(c.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('round-trips through a file, and the hash ignores formatting and key order', () => {
    const d = tmp();
    const p = join(d, 'criteria.json');
    writeCriteria(p);
    const loaded = loadCriteria(p);
    expect(loaded.criteria).toEqual(DEFAULT_CRITERIA);
    expect(loaded.sha256).toBe(criteriaSha256(DEFAULT_CRITERIA as Criteria));
    // same content, other key order and whitespace, fraction written differently
    const o = clone();
    const reordered = {
      personalLost: { minFraction: '4/6' },
      policy: o.policy,
      catastrophic: { minFraction: '4/6' },
      lenient: { minFraction: '2/3', maxRatio: 2 },
      strict: o.strict,
      conditions: o.conditions,
      version: 1,
      format: o.format,
    };
    writeFileSync(p, JSON.stringify(reordered, null, 7));
    const again = loadCriteria(p);
    expect(again.criteria.catastrophic.minFraction).toBe('2/3');
    expect(again.sha256).toBe(loaded.sha256);
    // a changed threshold changes the hash
    writeFileSync(p, JSON.stringify({ ...o, strict: { maxRatio: 1.4, minFraction: '1' } }));
    expect(loadCriteria(p).sha256).not.toBe(loaded.sha256);
  });

  it('canonical JSON sorts keys at every level and refuses values JSON cannot hold', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { f: 1, e: 2 }], c: 'x' } })).toBe('{"a":{"c":"x","d":[3,{"e":2,"f":1}]},"b":1}');
    expect(() => canonicalJson({ a: NaN })).toThrow(/\$\.a is NaN/);
    expect(() => canonicalJson({ a: [1, Infinity] })).toThrow(/\$\.a\[1\] is Infinity/);
  });

  const bad: [string, (o: Record<string, any>) => void, RegExp][] = [
    [
      'negative threshold',
      (o) => (o.strict.maxRatio = -1.5),
      /"strict\.maxRatio" must be a positive finite number \(a perplexity ratio\), got -1\.5/,
    ],
    ['zero threshold', (o) => (o.policy.maxRatio = 0), /"policy\.maxRatio" must be a positive finite number/],
    ['threshold as a string', (o) => (o.lenient.maxRatio = '2'), /"lenient\.maxRatio" must be a positive finite number.*got "2"/],
    [
      'fraction > 1',
      (o) => (o.lenient.minFraction = '4/3'),
      /"lenient\.minFraction" must be at most 1 \(a fraction of the users\), got "4\/3"/,
    ],
    ['fraction > 1 as a number', (o) => (o.catastrophic.minFraction = 1.2), /"catastrophic\.minFraction" must be at most 1.*got 1\.2/],
    ['zero fraction', (o) => (o.catastrophic.minFraction = '0/3'), /"catastrophic\.minFraction" must be greater than 0/],
    ['negative fraction', (o) => (o.strict.minFraction = -0.5), /"strict\.minFraction" must be a fraction like "2\/3"/],
    ['zero denominator', (o) => (o.strict.minFraction = '1/0'), /"strict\.minFraction" has a zero denominator/],
    ['unknown top-level key', (o) => (o.stirct = {}), /unknown key "stirct"; expected one of: format, version, conditions/],
    ['unknown nested key', (o) => (o.strict.maxRatoi = 1.5), /unknown key "strict\.maxRatoi"; expected one of: maxRatio, minFraction/],
    ['wrong version', (o) => (o.version = 2), /version 2 is not supported; this ternorm reads criteria version 1/],
    ['wrong format', (o) => (o.format = 'something'), /"format" must be "ternorm-criteria", got "something"/],
    ['missing field', (o) => delete o.lenient.minFraction, /missing "lenient\.minFraction"/],
    ['missing section', (o) => delete o.policy, /missing "policy"/],
    ['bad condition name', (o) => (o.conditions.bet = 'int8 per tensor'), /"conditions\.bet" must be a condition name/],
    [
      'role clash',
      (o) => (o.conditions.bet = o.conditions.noAdapter),
      /"conditions\.bet" and "conditions\.noAdapter" are both "no_adapter"/,
    ],
    [
      'lenient stricter than strict',
      (o) => (o.lenient.maxRatio = 1.2),
      /"lenient\.maxRatio" \(1\.2\) is below "strict\.maxRatio" \(1\.5\)/,
    ],
    [
      'lenient fraction above strict',
      (o) => (o.strict.minFraction = '1/2'),
      /"lenient\.minFraction" \(2\/3\) is above "strict\.minFraction" \(1\/2\)/,
    ],
    ['non-boolean flag', (o) => (o.policy.mustBeatNoAdapter = 'yes'), /"policy\.mustBeatNoAdapter" must be true or false, got "yes"/],
  ];
  for (const [what, mutate, msg] of bad) {
    it(`rejects ${what} with a message naming the field`, () => {
      const o = clone();
      mutate(o);
      expect(() => parseCriteria(JSON.stringify(o), 'my-criteria.json')).toThrow(msg);
      expect(() => parseCriteria(JSON.stringify(o), 'my-criteria.json')).toThrow(/^criteria \(my-criteria\.json\): /);
    });
  }

  it('fuzz: mutated criteria files are accepted or refused with a criteria error, never a crash', () => {
    const rng = new Xoshiro128(4242);
    const pick = <T>(xs: readonly T[]): T => xs[rng.nextInt(xs.length)]!;
    const values: unknown[] = [null, -1, 0, 1, 1.5, 2, Infinity, '1/2', '3/2', '1/0', 'x', '', true, [], {}, { maxRatio: 1 }];
    let refused = 0;
    for (let k = 0; k < 500; k++) {
      const o = clone();
      let parent: any = o;
      let key: string = pick(Object.keys(o));
      if (rng.nextInt(2) === 0 && parent[key] !== null && typeof parent[key] === 'object') {
        parent = parent[key];
        key = pick(Object.keys(parent));
      }
      const r = rng.nextInt(5);
      if (r === 0) delete parent[key];
      else if (r === 1) parent[`${key}_`] = 1;
      else parent[key] = structuredClone(pick(values));
      // also random truncation of the text
      let text = JSON.stringify(o);
      if (rng.nextInt(6) === 0) text = text.slice(0, rng.nextInt(text.length));
      try {
        const c = parseCriteria(text, 'fuzz');
        expect(c.strict.maxRatio).toBeGreaterThan(0);
        expect(parseFraction(c.lenient.minFraction).num).toBeGreaterThan(0);
      } catch (e) {
        expect(e).toBeInstanceOf(Error);
        expect((e as Error).message).toMatch(/^criteria \(fuzz\): /);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(300);
  });

  it('rejects non-JSON and unreadable files clearly', () => {
    expect(() => parseCriteria('{"format": ', 'c.json')).toThrow(/criteria \(c\.json\): not valid JSON/);
    expect(() => parseCriteria('[]')).toThrow(/the file must be a JSON object/);
    expect(() => loadCriteria(join(tmp(), 'missing.json'))).toThrow(/criteria: cannot read .*missing\.json/);
    expect(() => loadCriteria('/dev/zero')).toThrow(/^criteria: cannot read \/dev\/zero: it is a character device, not a regular file$/);
  });

  it('does not write invalid criteria', () => {
    const d = tmp();
    const p = join(d, 'c.json');
    const o = clone();
    o.strict.maxRatio = -1;
    expect(() => writeCriteria(p, o as Criteria)).toThrow(/strict\.maxRatio/);
    expect(() => readFileSync(p)).toThrow();
  });
});

describe('fractions of users', () => {
  it('parses and reduces fractions exactly', () => {
    expect(parseFraction('2/3')).toEqual({ num: 2, den: 3 });
    expect(parseFraction('4/6')).toEqual({ num: 2, den: 3 });
    expect(parseFraction(1)).toEqual({ num: 1, den: 1 });
    expect(parseFraction('0.75')).toEqual({ num: 3, den: 4 });
    expect(parseFraction(0.7)).toEqual({ num: 7, den: 10 });
    expect(formatFraction(parseFraction('10/10'))).toBe('1');
  });

  it('"at least f of N users" is ceil(f N), exactly', () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => requiredUsers('2/3', n))).toEqual([1, 2, 2, 3, 4, 4]);
    expect([1, 2, 3, 4, 5].map((n) => requiredUsers('1', n))).toEqual([1, 2, 3, 4, 5]);
    // 0.7 x 10 is exactly 7 (not 7.000000000000001 -> 8)
    expect(requiredUsers('0.7', 10)).toBe(7);
    expect(requiredUsers('1/2', 215000)).toBe(107500);
    expect(() => requiredUsers('2/3', 0)).toThrow(/positive integer/);
  });
});

describe('verdicts', () => {
  const criteria = validateCriteria(JSON.parse(JSON.stringify(DEFAULT_CRITERIA)));
  const conds = ['no_adapter', 'raw_fp32', 'raw_fp16', 'int8_per_tensor'];
  // users with reference ppl 10 and no-adapter ppl 20; the bet's ppl is set per user
  const users = (betPpl: number[], none = 20): VerdictUserInput[] =>
    betPpl.map((p, i) => ({ user: `u${i}`, ppl: { no_adapter: none, raw_fp32: 10, raw_fp16: 10, int8_per_tensor: p } }));
  const bet = (us: VerdictUserInput[], c: Criteria = criteria) => computeVerdicts(us, ['int8_per_tensor'], c)[0]!;

  it('every condition but the baseline and the reference gets a verdict', () => {
    expect(schemesOf(conds, criteria)).toEqual(['raw_fp16', 'int8_per_tensor']);
    const v = computeVerdicts(users([12, 13, 14]), schemesOf(conds, criteria), criteria);
    expect(v.map((x) => [x.scheme, x.verdict])).toEqual([
      ['raw_fp16', 'STRICT'],
      ['int8_per_tensor', 'STRICT'],
    ]);
    expect(() => computeVerdicts(users([12]), ['raw_fp32'], criteria)).toThrow(/"raw_fp32" is the reference/);
  });

  it('1.5x exactly is within STRICT; just above is not', () => {
    const at = bet(users([15, 15, 15]));
    expect(at.users.map((u) => u.ratio)).toEqual([1.5, 1.5, 1.5]);
    expect(at.strict).toMatchObject({ count: 3, required: 3, pass: true });
    expect(at.verdict).toBe('STRICT');
    const above = bet(users([15, 15, 15.000001]));
    expect(above.strict).toMatchObject({ count: 2, required: 3, pass: false });
    expect(above.lenient).toMatchObject({ count: 3, required: 2, pass: true });
    expect(above.verdict).toBe('LENIENT');
  });

  it('2x exactly is within LENIENT; 2/3 of 3 users is 2', () => {
    expect(bet(users([20, 20, 30], 40)).lenient).toMatchObject({ count: 2, required: 2, pass: true });
    const v = bet(users([20, 20.0001, 30], 40));
    expect(v.lenient).toMatchObject({ count: 1, required: 2, pass: false });
    expect(v.verdict).toBe('FAIL');
  });

  it('CATASTROPHIC: worse than no adapter on at least 2/3 of users; equal is not worse', () => {
    // ratios 1.2: within STRICT, but no adapter is 11 for everyone
    const cat = bet(users([12, 12, 11], 11));
    expect(cat.users.map((u) => u.worseThanNoAdapter)).toEqual([true, true, false]);
    expect(cat.catastrophic).toMatchObject({ count: 2, required: 2, holds: true });
    expect(cat.strict.pass).toBe(true);
    expect(cat.verdict).toBe('CATASTROPHIC');
    const notCat = bet(users([12, 11, 11], 11));
    expect(notCat.catastrophic).toMatchObject({ count: 1, required: 2, holds: false });
    expect(notCat.verdict).toBe('STRICT');
  });

  it('thresholds scale with N: N = 1, 2, 4, 5 users', () => {
    // N = 1: 2/3 of 1 is 1
    expect(bet(users([25])).lenient).toMatchObject({ required: 1, count: 0, pass: false });
    expect(bet(users([19])).verdict).toBe('LENIENT');
    expect(bet(users([21], 20)).catastrophic).toMatchObject({ required: 1, count: 1, holds: true });
    // N = 2: 2/3 of 2 is 2, so one user beyond 2x fails LENIENT
    expect(bet(users([19, 21], 30)).lenient).toMatchObject({ required: 2, count: 1, pass: false });
    expect(bet(users([19, 20], 30)).verdict).toBe('LENIENT');
    // N = 4: 3 needed
    expect(bet(users([19, 19, 19, 25], 30)).lenient).toMatchObject({ required: 3, count: 3, pass: true });
    expect(bet(users([19, 19, 25, 25], 30)).lenient).toMatchObject({ required: 3, count: 2, pass: false });
    expect(bet(users([21, 21, 21, 12], 20)).catastrophic).toMatchObject({ required: 3, count: 3, holds: true });
    // N = 5: 4 needed
    expect(bet(users([19, 19, 19, 19, 25], 30)).lenient).toMatchObject({ required: 4, count: 4, pass: true });
    expect(bet(users([19, 19, 19, 25, 25], 30)).lenient).toMatchObject({ required: 4, count: 3, pass: false });
    expect(bet(users([12, 12, 12, 12, 12])).strict).toMatchObject({ required: 5, count: 5, pass: true });
    expect(bet(users([21, 21, 21, 12, 12], 20)).catastrophic).toMatchObject({ required: 4, count: 3, holds: false });
  });

  it('configurable thresholds and fractions change the verdicts', () => {
    const o = clone();
    o.strict = { maxRatio: 1.25, minFraction: '3/4' };
    o.lenient = { maxRatio: 1.5, minFraction: '1/2' };
    const c = validateCriteria(o);
    const v = bet(users([12, 12, 12, 14]), c);
    expect(v.strict).toMatchObject({ maxRatio: 1.25, required: 3, count: 3, pass: true });
    expect(bet(users([12, 12, 14, 14]), c).verdict).toBe('LENIENT');
  });

  it('rejects missing or impossible perplexities', () => {
    expect(() => bet([{ user: 'a', ppl: { no_adapter: 20, raw_fp32: 10 } }])).toThrow(
      /user "a" has no test perplexity for "int8_per_tensor"/,
    );
    expect(() => bet([{ user: 'a', ppl: { no_adapter: 20, raw_fp32: 0.5, int8_per_tensor: 3 } }])).toThrow(/invalid \(0\.5\)/);
    expect(() => bet([...users([12]), ...users([12])])).toThrow(/user "u0" appears twice/);
    expect(() => bet([])).toThrow(/no users/);
  });
});
