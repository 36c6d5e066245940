// Verdicts: the pre-registered criteria applied to every scheme across the users, on the held-out
// TEST split (the validation split is the policy's; it is never the one judged here).
//
// For each scheme s and user u, with point perplexities on u's test text:
//   ratio(u)          = ppl(s) / ppl(reference)
//   within STRICT     : ratio(u) <= strict.maxRatio   (1.5x exactly is within)
//   within LENIENT    : ratio(u) <= lenient.maxRatio
//   worse than none   : ppl(s) > ppl(no adapter)      (equal is not worse)
// "At least fraction f of N users" needs ceil(f * N) users, computed exactly (criteria.ts,
// requiredUsers): "2/3" is 1 of 1, 2 of 2, 2 of 3, 3 of 4, 4 of 5; "1" (all) is N of N.
// STRICT / LENIENT pass when at least that many users are within; CATASTROPHIC holds when at least
// that many users are worse than no adapter. The headline verdict, in this order of precedence:
// CATASTROPHIC if it holds (worse than shipping nothing outweighs any size saving), else STRICT if
// it passes, else LENIENT if it passes, else FAIL. Every scheme — every condition except the
// no-adapter baseline and the reference itself — gets one.

import { requiredUsers, type Criteria } from './criteria.js';
import type { CatastrophicOutcome, RatioCriterionOutcome, SchemeVerdict, UserSchemeOutcome, Verdict } from './results-types.js';

/** One user's point perplexities on the test split, by condition. */
export interface VerdictUserInput {
  user: string;
  ppl: Readonly<Record<string, number>>;
}

// The outcome types are the results file's (generated from its schema).
export type { CatastrophicOutcome, RatioCriterionOutcome, SchemeVerdict, UserSchemeOutcome, Verdict } from './results-types.js';

/** The schemes that get a verdict: every condition but the no-adapter baseline and the reference, in order. */
export function schemesOf(conditions: readonly string[], criteria: Criteria): string[] {
  return conditions.filter((c) => c !== criteria.conditions.noAdapter && c !== criteria.conditions.reference);
}

function pplOf(u: VerdictUserInput, condition: string): number {
  const v = u.ppl[condition];
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 1) {
    throw new RangeError(
      `verdicts: user "${u.user}" has ${v === undefined ? 'no' : `an invalid (${String(v)})`} test perplexity for "${condition}"; expected a finite number >= 1`,
    );
  }
  return v;
}

/** Applies the criteria to each scheme over the users (test-split perplexities). */
export function computeVerdicts(users: readonly VerdictUserInput[], schemes: readonly string[], criteria: Criteria): SchemeVerdict[] {
  if (users.length === 0) throw new RangeError('verdicts: no users to judge');
  const seen = new Set<string>();
  for (const u of users) {
    if (seen.has(u.user)) throw new RangeError(`verdicts: user "${u.user}" appears twice`);
    seen.add(u.user);
  }
  const { noAdapter, reference } = criteria.conditions;
  const n = users.length;
  return schemes.map((scheme) => {
    if (scheme === noAdapter || scheme === reference) {
      throw new RangeError(
        `verdicts: "${scheme}" is the ${scheme === noAdapter ? 'no-adapter baseline' : 'reference'}, not a scheme to judge`,
      );
    }
    const outcomes = users.map((u): UserSchemeOutcome => {
      const ppl = pplOf(u, scheme);
      const referencePpl = pplOf(u, reference);
      const noAdapterPpl = pplOf(u, noAdapter);
      const ratio = ppl / referencePpl;
      return {
        user: u.user,
        ppl,
        referencePpl,
        noAdapterPpl,
        ratio,
        withinStrict: ratio <= criteria.strict.maxRatio,
        withinLenient: ratio <= criteria.lenient.maxRatio,
        worseThanNoAdapter: ppl > noAdapterPpl,
      };
    });
    const ratioOutcome = (c: Criteria['strict'], key: 'withinStrict' | 'withinLenient'): RatioCriterionOutcome => {
      const required = requiredUsers(c.minFraction, n);
      const count = outcomes.filter((o) => o[key]).length;
      return { maxRatio: c.maxRatio, minFraction: c.minFraction, required, count, users: n, pass: count >= required };
    };
    const strict = ratioOutcome(criteria.strict, 'withinStrict');
    const lenient = ratioOutcome(criteria.lenient, 'withinLenient');
    const catRequired = requiredUsers(criteria.catastrophic.minFraction, n);
    const catCount = outcomes.filter((o) => o.worseThanNoAdapter).length;
    const catastrophic: CatastrophicOutcome = {
      minFraction: criteria.catastrophic.minFraction,
      required: catRequired,
      count: catCount,
      users: n,
      holds: catCount >= catRequired,
    };
    const verdict: Verdict = catastrophic.holds ? 'CATASTROPHIC' : strict.pass ? 'STRICT' : lenient.pass ? 'LENIENT' : 'FAIL';
    return { scheme, users: outcomes, strict, lenient, catastrophic, verdict };
  });
}
