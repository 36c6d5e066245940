// The bet's pre-registered criteria: a small versioned JSON file, validated strictly (every field
// required, unknown keys rejected, each problem reported by its field path), hashed (sha256 of a
// canonical serialisation) and recorded in the results with a timestamp before any evaluation.
//
// File format (version 1); the default is DEFAULT_CRITERIA:
//   {
//     "format": "ternorm-criteria", "version": 1,
//     "note": "optional free text",
//     "conditions": { "noAdapter": "no_adapter", "reference": "raw_fp32",
//                     "fallback": "raw_fp16", "bet": "int8_per_tensor" },
//     "strict":       { "maxRatio": 1.5, "minFraction": "1" },
//     "lenient":      { "maxRatio": 2,   "minFraction": "2/3" },
//     "catastrophic": { "minFraction": "2/3" },
//     "policy":       { "maxRatio": 1.5, "mustBeatNoAdapter": true },
//     "personalLost": { "minFraction": "2/3" }
//   }
// - conditions: the names of the evaluation conditions playing each role: the model without an
//   adapter, the reference the ratios are taken to (the trained adapter, unquantised), the encoding
//   shipped when no other qualifies, and the bet's encoding (shown first in the report).
// - A scheme is within STRICT (LENIENT) for a user when ppl(scheme) <= maxRatio * ppl(reference)
//   (the ratio is compared, so 1.5x exactly is within); CATASTROPHIC counts users for whom
//   ppl(scheme) > ppl(no adapter). See verdicts.ts for how the fractions become user counts.
// - minFraction is a fraction of users in (0, 1]: "p/q", an integer "1", a decimal ("0.75") or a
//   JSON number (read through its shortest decimal form, so 0.7 is exactly 7/10). It is stored
//   reduced ("4/6" -> "2/3") so equal criteria hash equally.
// - policy: the per-user production rule (policy.ts): ship the smallest encoding whose validation
//   ppl is <= maxRatio * the reference's and, if mustBeatNoAdapter, below the no-adapter ppl.
// - personalLost (optional; files without it stay valid and hash as before): PERSONAL-LOST, the
//   personal signal (personal.ts). A compressed own adapter whose validation ppl is above the
//   generic adapter's (trained on every user's training text pooled) has lost what is personal for
//   that user; the tier holds for a scheme when at least minFraction of the users lost it. Decided
//   on validation, the same rule reported on test; measured only by `ternorm bet --personal`.

import { readTextFile, writeFileAtomic } from '../util/files.js';
import { sha256Hex } from '../util/hash.js';
import { CONDITION_NAME_PATTERN, type Criteria, type CriteriaConditions, type RatioCriterion } from './results-types.js';

export const CRITERIA_FORMAT = 'ternorm-criteria';
export const CRITERIA_VERSION = 1;

// The criteria's shape is the results schema's $defs/criteria (the results embed them).
export type { Criteria, CriteriaConditions, RatioCriterion } from './results-types.js';

/** The bet's criteria: STRICT 1.5x on all users, LENIENT 2x on 2/3, CATASTROPHIC on 2/3, PERSONAL-LOST on 2/3. */
export const DEFAULT_CRITERIA: Readonly<Criteria> = deepFreeze({
  format: CRITERIA_FORMAT,
  version: CRITERIA_VERSION,
  conditions: { noAdapter: 'no_adapter', reference: 'raw_fp32', fallback: 'raw_fp16', bet: 'int8_per_tensor' },
  strict: { maxRatio: 1.5, minFraction: '1' },
  lenient: { maxRatio: 2, minFraction: '2/3' },
  catastrophic: { minFraction: '2/3' },
  policy: { maxRatio: 1.5, mustBeatNoAdapter: true },
  personalLost: { minFraction: '2/3' },
});

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

// ---- fractions ----------------------------------------------------------------------------------

export interface Fraction {
  num: number;
  den: number;
}

function gcd(a: bigint, b: bigint): bigint {
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}

const FRACTION_RE = /^\s*(\d+)\s*\/\s*(\d+)\s*$/;
const DECIMAL_RE = /^\s*(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?\s*$/;

/**
 * Parses a fraction of users: "p/q", an integer or decimal string, or a number (via its shortest
 * decimal form). Returns it reduced; throws a RangeError saying what was expected.
 */
export function parseFraction(v: unknown, what = 'fraction'): Fraction {
  const text = typeof v === 'number' ? (Number.isFinite(v) ? String(v) : '') : typeof v === 'string' ? v : null;
  if (text === null) throw new RangeError(`${what} must be a fraction like "2/3" or a number in (0, 1], got ${describe(v)}`);
  let num: bigint;
  let den: bigint;
  const f = FRACTION_RE.exec(text);
  const d = DECIMAL_RE.exec(text);
  if (f !== null) {
    num = BigInt(f[1]!);
    den = BigInt(f[2]!);
    if (den === 0n) throw new RangeError(`${what} has a zero denominator: ${describe(v)}`);
  } else if (d !== null) {
    const frac = d[2] ?? '';
    const exp = BigInt(d[3] ?? '0') - BigInt(frac.length);
    if (exp < -30n || exp > 30n) throw new RangeError(`${what} is out of range: ${describe(v)}`);
    num = BigInt(d[1]! + frac);
    den = 1n;
    if (exp >= 0n) num *= 10n ** exp;
    else den = 10n ** -exp;
  } else {
    throw new RangeError(`${what} must be a fraction like "2/3" or a number in (0, 1], got ${describe(v)}`);
  }
  if (num === 0n) throw new RangeError(`${what} must be greater than 0, got ${describe(v)}`);
  if (num > den) throw new RangeError(`${what} must be at most 1 (a fraction of the users), got ${describe(v)}`);
  const g = gcd(num, den);
  num /= g;
  den /= g;
  if (den > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`${what} has too large a denominator: ${describe(v)}`);
  return { num: Number(num), den: Number(den) };
}

export function formatFraction(f: Fraction): string {
  return f.den === 1 ? String(f.num) : `${f.num}/${f.den}`;
}

/**
 * Users needed out of n for "at least `fraction` of the users": ceil(fraction * n), computed
 * exactly in integers. "2/3" of 3 users is 2, of 4 is 3, of 5 is 4; "1" of n is n.
 */
export function requiredUsers(fraction: string | Fraction, n: number): number {
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`requiredUsers: the number of users must be a positive integer, got ${n}`);
  const f = typeof fraction === 'string' ? parseFraction(fraction) : fraction;
  const p = BigInt(f.num) * BigInt(n);
  const q = BigInt(f.den);
  return Number((p + q - 1n) / q);
}

// ---- canonical serialisation --------------------------------------------------------------------

/**
 * Canonical JSON: object keys sorted by code unit at every level, no whitespace, numbers as
 * JSON.stringify writes them (shortest round-trip form). Throws on values JSON cannot hold
 * exactly (NaN, infinities, undefined, functions, bigints).
 */
export function canonicalJson(value: unknown, path = '$'): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
    case 'string':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new RangeError(`canonicalJson: ${path} is ${value}, which JSON cannot represent`);
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) return `[${value.map((v, i) => canonicalJson(v, `${path}[${i}]`)).join(',')}]`;
      const o = value as Record<string, unknown>;
      const keys = Object.keys(o)
        .filter((k) => o[k] !== undefined)
        .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k], `${path}.${k}`)}`).join(',')}}`;
    }
    default:
      throw new TypeError(`canonicalJson: ${path} is a ${typeof value}, which JSON cannot represent`);
  }
}

/** sha256 (hex) of the criteria's canonical JSON. */
export function criteriaSha256(c: Criteria): string {
  return sha256Hex(canonicalJson(c));
}

// ---- validation ---------------------------------------------------------------------------------

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  return Array.isArray(v) ? 'an array' : `a ${typeof v}`;
}

/** A condition name: 1-64 characters of letters, digits, '_', '.', '+', '-', not starting with a symbol. */
export function checkConditionName(v: unknown, what: string): string {
  if (typeof v !== 'string' || !CONDITION_NAME_PATTERN.test(v)) {
    throw new RangeError(`${what} must be a condition name (letters, digits, '_', '.', '+', '-'; at most 64), got ${describe(v)}`);
  }
  return v;
}

class CriteriaReader {
  constructor(private readonly where: string) {}

  fail(msg: string): never {
    throw new Error(`criteria${this.where === '' ? '' : ` (${this.where})`}: ${msg}`);
  }

  object(v: unknown, path: string, required: readonly string[], optional: readonly string[] = []): Record<string, unknown> {
    if (v === null || typeof v !== 'object' || Array.isArray(v))
      this.fail(`${path === '' ? 'the file' : `"${path}"`} must be a JSON object, got ${describe(v)}`);
    const o = v as Record<string, unknown>;
    const allowed = [...required, ...optional];
    for (const k of Object.keys(o)) {
      if (!allowed.includes(k)) this.fail(`unknown key "${path === '' ? k : `${path}.${k}`}"; expected one of: ${allowed.join(', ')}`);
    }
    for (const k of required) {
      if (!(k in o)) this.fail(`missing "${path === '' ? k : `${path}.${k}`}"`);
    }
    return o;
  }

  ratio(v: unknown, path: string): number {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      this.fail(`"${path}" must be a positive finite number (a perplexity ratio), got ${describe(v)}`);
    }
    return v;
  }

  fraction(v: unknown, path: string): string {
    try {
      return formatFraction(parseFraction(v, `"${path}"`));
    } catch (e) {
      this.fail((e as Error).message);
    }
  }

  name(v: unknown, path: string): string {
    try {
      return checkConditionName(v, `"${path}"`);
    } catch (e) {
      this.fail((e as Error).message);
    }
  }
}

/** Validates a parsed criteria object and returns it normalised (fractions reduced). */
export function validateCriteria(value: unknown, where = ''): Criteria {
  const r: CriteriaReader = new CriteriaReader(where);
  const top = r.object(
    value,
    '',
    ['format', 'version', 'conditions', 'strict', 'lenient', 'catastrophic', 'policy'],
    ['note', 'personalLost'],
  );
  if (top.format !== CRITERIA_FORMAT) r.fail(`"format" must be "${CRITERIA_FORMAT}", got ${describe(top.format)}`);
  if (top.version !== CRITERIA_VERSION) {
    r.fail(`version ${describe(top.version)} is not supported; this ternorm reads criteria version ${CRITERIA_VERSION}`);
  }
  if (top.note !== undefined && typeof top.note !== 'string') r.fail(`"note" must be a string, got ${describe(top.note)}`);
  const c = r.object(top.conditions, 'conditions', ['noAdapter', 'reference', 'fallback', 'bet']);
  const conditions: CriteriaConditions = {
    noAdapter: r.name(c.noAdapter, 'conditions.noAdapter'),
    reference: r.name(c.reference, 'conditions.reference'),
    fallback: r.name(c.fallback, 'conditions.fallback'),
    bet: r.name(c.bet, 'conditions.bet'),
  };
  for (const role of ['reference', 'fallback', 'bet'] as const) {
    if (conditions[role] === conditions.noAdapter) {
      r.fail(
        `"conditions.${role}" and "conditions.noAdapter" are both "${conditions.noAdapter}"; the no-adapter condition has no encoding`,
      );
    }
  }
  if (conditions.bet === conditions.reference) r.fail(`"conditions.bet" and "conditions.reference" are both "${conditions.bet}"`);
  const ratioCriterion = (name: 'strict' | 'lenient'): RatioCriterion => {
    const o = r.object(top[name], name, ['maxRatio', 'minFraction']);
    return { maxRatio: r.ratio(o.maxRatio, `${name}.maxRatio`), minFraction: r.fraction(o.minFraction, `${name}.minFraction`) };
  };
  const strict = ratioCriterion('strict');
  const lenient = ratioCriterion('lenient');
  if (lenient.maxRatio < strict.maxRatio) {
    r.fail(
      `"lenient.maxRatio" (${lenient.maxRatio}) is below "strict.maxRatio" (${strict.maxRatio}); LENIENT must not be stricter than STRICT`,
    );
  }
  const fs = parseFraction(strict.minFraction);
  const fl = parseFraction(lenient.minFraction);
  if (fl.num * fs.den > fs.num * fl.den) {
    r.fail(
      `"lenient.minFraction" (${lenient.minFraction}) is above "strict.minFraction" (${strict.minFraction}); LENIENT must not be stricter than STRICT`,
    );
  }
  const cat = r.object(top.catastrophic, 'catastrophic', ['minFraction']);
  const pol = r.object(top.policy, 'policy', ['maxRatio', 'mustBeatNoAdapter']);
  const mustBeatNoAdapter = pol.mustBeatNoAdapter;
  if (typeof mustBeatNoAdapter !== 'boolean')
    r.fail(`"policy.mustBeatNoAdapter" must be true or false, got ${describe(mustBeatNoAdapter)}`);
  const out: Criteria = {
    format: CRITERIA_FORMAT,
    version: CRITERIA_VERSION,
    conditions,
    strict,
    lenient,
    catastrophic: { minFraction: r.fraction(cat.minFraction, 'catastrophic.minFraction') },
    policy: { maxRatio: r.ratio(pol.maxRatio, 'policy.maxRatio'), mustBeatNoAdapter },
  };
  if (typeof top.note === 'string') out.note = top.note;
  if (top.personalLost !== undefined) {
    const pl = r.object(top.personalLost, 'personalLost', ['minFraction']);
    out.personalLost = { minFraction: r.fraction(pl.minFraction, 'personalLost.minFraction') };
  }
  return out;
}

/** Parses and validates the text of a criteria file. */
export function parseCriteria(text: string, where = ''): Criteria {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new Error(`criteria${where === '' ? '' : ` (${where})`}: not valid JSON: ${(e as Error).message}`);
  }
  return validateCriteria(value, where);
}

/** Criteria as registered in a run: the normalised criteria, their sha256 and where they came from. */
export interface LoadedCriteria {
  criteria: Criteria;
  sha256: string;
  /** The file path, or "default" for DEFAULT_CRITERIA. */
  source: string;
}

/** Reads a criteria file, or the default criteria when `path` is undefined. */
export function loadCriteria(path?: string): LoadedCriteria {
  if (path === undefined) {
    const criteria = validateCriteria(JSON.parse(JSON.stringify(DEFAULT_CRITERIA)));
    return { criteria, sha256: criteriaSha256(criteria), source: 'default' };
  }
  let text: string;
  try {
    text = readTextFile(path).toString('utf8');
  } catch (e) {
    throw new Error(`criteria: ${(e as Error).message}`, { cause: e });
  }
  const criteria = parseCriteria(text, path);
  return { criteria, sha256: criteriaSha256(criteria), source: path };
}

/** Writes criteria (validated first) as an indented JSON file, atomically. */
export function writeCriteria(path: string, criteria: Criteria = DEFAULT_CRITERIA): void {
  const c = validateCriteria(JSON.parse(JSON.stringify(criteria)));
  writeFileAtomic(path, JSON.stringify(c, null, 2) + '\n');
}
