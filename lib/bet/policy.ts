// The per-user production rule: for each user, ship the smallest encoding whose perplexity on the
// user's VALIDATION split is <= policy.maxRatio x the reference's and (if policy.mustBeatNoAdapter)
// strictly below the no-adapter perplexity; otherwise ship the fallback (raw fp16).
//
// - Candidates are the user's encodings no larger than the fallback (shipping more bytes than the
//   fallback is never a saving), ordered by encoded size, then by validation perplexity (among
//   encodings of the same size the better one ships: a tie broken by name once shipped int4 with
//   a 1.24 ratio beside a 1.01 one), then by name (code-unit order) for exact ties; the first that
//   passes is chosen.
// - choosePolicy receives only validation perplexities and the encoded sizes: the test split is
//   not an argument, so it cannot influence the choice. policyOnTest then reports how the chosen
//   encoding does on the test split, and whether the rule still holds there.

import type { Criteria } from './criteria.js';
import type { PolicyCandidate, PolicySummary, UserPolicy } from './results-types.js';

// The candidate, the choice and the summary are the results file's types (generated from its schema).
export type { PolicyCandidate, PolicySummary } from './results-types.js';

/** The choice made on validation: a user's policy without its test outcome. */
export type PolicyChoice = Omit<UserPolicy, 'test'>;

export interface PolicyTestOutcome {
  ppl: number;
  ratioToReference: number;
  ratioToNoAdapter: number;
  /** The rule's conditions evaluated on the test split for the chosen encoding. */
  holds: boolean;
}

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function positive(v: unknown, what: string, min: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min) {
    throw new RangeError(`policy: ${what} is ${v === undefined ? 'missing' : String(v)}; expected a finite number >= ${min}`);
  }
  return v;
}

/**
 * Chooses the encoding to ship for one user from VALIDATION perplexities (condition -> ppl, which
 * must include the no-adapter baseline, the reference and every encoding) and the exact encoded
 * sizes (encoding -> bytes; every condition except the no-adapter baseline).
 */
export function choosePolicy(
  validationPpl: Readonly<Record<string, number>>,
  encodedBytes: Readonly<Record<string, number>>,
  criteria: Criteria,
): PolicyChoice {
  const { noAdapter, reference, fallback } = criteria.conditions;
  if (noAdapter in encodedBytes) throw new RangeError(`policy: "${noAdapter}" is the no-adapter baseline and has no encoding`);
  const encodings = Object.keys(encodedBytes).sort(byName);
  if (!encodings.includes(fallback)) throw new RangeError(`policy: no encoded size for the fallback "${fallback}"`);
  const size = (c: string): number => {
    const b = encodedBytes[c];
    if (typeof b !== 'number' || !Number.isSafeInteger(b) || b <= 0) {
      throw new RangeError(`policy: encoded size of "${c}" is ${String(b)}; expected a positive integer number of bytes`);
    }
    return b;
  };
  const noAdapterPpl = positive(validationPpl[noAdapter], `validation ppl of "${noAdapter}"`, 1);
  const referencePpl = positive(validationPpl[reference], `validation ppl of "${reference}"`, 1);
  const fallbackBytes = size(fallback);
  const { maxRatio, mustBeatNoAdapter } = criteria.policy;
  const candidates = encodings
    .map((condition): PolicyCandidate => {
      const bytes = size(condition);
      const ppl = positive(validationPpl[condition], `validation ppl of "${condition}"`, 1);
      const ratio = ppl / referencePpl;
      const beatsNoAdapter = ppl < noAdapterPpl;
      const eligible = bytes <= fallbackBytes;
      return {
        condition,
        bytes,
        ppl,
        ratio,
        beatsNoAdapter,
        eligible,
        passes: eligible && ratio <= maxRatio && (!mustBeatNoAdapter || beatsNoAdapter),
      };
    })
    .sort((a, b) => a.bytes - b.bytes || a.ppl - b.ppl || byName(a.condition, b.condition));
  const chosen = candidates.find((c) => c.passes);
  if (chosen === undefined) return { choice: fallback, bytes: fallbackBytes, fallback: true, candidates };
  return { choice: chosen.condition, bytes: chosen.bytes, fallback: false, candidates };
}

/** How the chosen encoding does on the TEST split (condition -> test ppl). */
export function policyOnTest(choice: string, testPpl: Readonly<Record<string, number>>, criteria: Criteria): PolicyTestOutcome {
  const { noAdapter, reference } = criteria.conditions;
  const ppl = positive(testPpl[choice], `test ppl of "${choice}"`, 1);
  const ref = positive(testPpl[reference], `test ppl of "${reference}"`, 1);
  const none = positive(testPpl[noAdapter], `test ppl of "${noAdapter}"`, 1);
  const ratioToReference = ppl / ref;
  const holds = ratioToReference <= criteria.policy.maxRatio && (!criteria.policy.mustBeatNoAdapter || ppl < none);
  return { ppl, ratioToReference, ratioToNoAdapter: ppl / none, holds };
}

export interface PolicyUserSummary {
  user: string;
  choice: string;
  bytes: number;
  fallback: boolean;
  holdsOnTest: boolean;
}

export function summarisePolicy(users: readonly PolicyUserSummary[]): PolicySummary {
  const choices: Record<string, number> = {};
  for (const c of users.map((u) => u.choice).sort(byName)) choices[c] = (choices[c] ?? 0) + 1;
  return {
    users: users.length,
    choices,
    fallbacks: users.filter((u) => u.fallback).length,
    holdsOnTest: users.filter((u) => u.holdsOnTest).length,
    meanBytes: users.length === 0 ? 0 : users.reduce((s, u) => s + u.bytes, 0) / users.length,
  };
}
