// The personal signal (issue 10 §6, the catalogue's Bet 61): is what a user's adapter learned about
// that user, or what every user shares? `ternorm bet --personal` measures
//  - the cross-user matrix: every user's trained adapter on every user's test text;
//  - a generic adapter: the bet's training recipe (same options and seed) on every user's training
//    text pooled, scored on every user's validation and test text;
// with paired bootstrap intervals (the same tokens under each adapter) of ppl(other) / ppl(own) and
// ppl(generic) / ppl(own): a ratio above 1 is what the own adapter knows about its user beyond the
// others (beyond the generic). The PERSONAL-LOST tier (criteria.ts, personalLost): a compressed own
// adapter whose ppl is above the generic adapter's has lost the personal signal for that user;
// decided on validation, the same rule reported on test.
//
// The results record what was measured (`personal.measured`: mean NLLs and the intervals, which
// need the per-token losses); `personal.analysis` is derived from them and the users' statistics by
// analysePersonal, which the reader runs again and compares.

import { markdownText as md } from '../util/text.js';
import { requiredUsers, type Criteria } from './criteria.js';
import { est, f, PPL_DECIMALS, RATIO_DECIMALS, table } from './report.js';
import { fail } from './results-format.js';
import type {
  AdapterCompressResults,
  PersonalAnalysis,
  PersonalLostOutcome,
  PersonalMeasured,
  PersonalUser,
  UserResult,
} from './results-types.js';
import { schemesOf } from './verdicts.js';

export type { PersonalAnalysis, PersonalLostOutcome, PersonalMeasured, PersonalSignal, PersonalUser } from './results-types.js';

function checkMeasured(m: PersonalMeasured, users: readonly UserResult[], criteria: Criteria): void {
  const w = 'personal';
  const n = m.users.length;
  if (n !== users.length || m.users.some((u, i) => users[i]!.user !== u))
    fail(`${w}: "users" must be the run's users in order (${users.map((u) => u.user).join(', ')})`);
  const square = (a: unknown[][], what: string): void => {
    if (a.length !== n || a.some((r) => r.length !== n)) fail(`${w}: "${what}" must be ${n} x ${n}`);
  };
  square(m.testMeanNll, 'testMeanNll');
  square(m.ci.othersOverOwn, 'ci.othersOverOwn');
  const { reference } = criteria.conditions;
  for (let j = 0; j < n; j++) {
    // the diagonal is the user's own adapter on its own test text: the reference's evaluation
    if (m.testMeanNll[j]![j] !== users[j]!.test.conditions[reference]!.meanNll)
      fail(`${w}: testMeanNll[${j}][${j}] is not user "${m.users[j]}"'s ${reference} test mean NLL`);
    for (let i = 0; i < n; i++) {
      if ((i === j) !== (m.ci.othersOverOwn[j]![i] === null))
        fail(`${w}: ci.othersOverOwn[${j}][${i}] must be ${i === j ? 'null (the own adapter)' : 'an interval'}`);
    }
  }
  for (const split of ['validation', 'test'] as const) {
    if (m.genericMeanNll[split].length !== n || m.ci.genericOverOwn[split].length !== n)
      fail(`${w}: the generic adapter's ${split} numbers must have one entry per user`);
  }
}

/** Everything derived from the measured matrix, the generic adapter and the users' statistics. */
export function analysePersonal(
  m: PersonalMeasured,
  users: readonly UserResult[],
  conditions: readonly string[],
  criteria: Criteria,
): PersonalAnalysis {
  checkMeasured(m, users, criteria);
  const { reference } = criteria.conditions;
  const out: PersonalUser[] = users.map((u, j) => ({
    user: u.user,
    othersOverOwn: m.users
      .map((a, i) => ({ a, i }))
      .filter(({ i }) => i !== j)
      .map(({ a, i }) => ({
        adapter: a,
        ratio: { value: Math.exp(m.testMeanNll[i]![j]! - m.testMeanNll[j]![j]!), ci: m.ci.othersOverOwn[j]![i]! },
      })),
    genericOverOwn: {
      validation: {
        value: Math.exp(m.genericMeanNll.validation[j]! - u.validation.conditions[reference]!.meanNll),
        ci: m.ci.genericOverOwn.validation[j]!,
      },
      test: { value: Math.exp(m.genericMeanNll.test[j]! - u.test.conditions[reference]!.meanNll), ci: m.ci.genericOverOwn.test[j]! },
    },
  }));
  const tier = criteria.personalLost;
  let personalLost: PersonalLostOutcome[] | null = null;
  if (tier !== undefined) {
    const required = requiredUsers(tier.minFraction, users.length);
    personalLost = schemesOf(conditions, criteria).map((scheme) => {
      const per = users.map((u, j) => {
        const validationRatio = Math.exp(u.validation.conditions[scheme]!.meanNll - m.genericMeanNll.validation[j]!);
        const testRatio = Math.exp(u.test.conditions[scheme]!.meanNll - m.genericMeanNll.test[j]!);
        return { user: u.user, validationRatio, testRatio, lostOnValidation: validationRatio > 1, lostOnTest: testRatio > 1 };
      });
      const v = per.filter((p) => p.lostOnValidation).length;
      const t = per.filter((p) => p.lostOnTest).length;
      return {
        scheme,
        minFraction: tier.minFraction,
        required,
        users: per,
        validation: { count: v, holds: v >= required },
        test: { count: t, holds: t >= required },
      };
    });
  }
  return { users: out, personalLost };
}

// ---- report ---------------------------------------------------------------------------------------

/** The report's personal-signal section; empty when not measured. */
export function personalMarkdown(r: AdapterCompressResults): string[] {
  const p = r.personal;
  if (p === undefined) return [];
  const m = p.measured;
  const out = [
    '',
    '## Personal signal',
    '',
    `Cross-user matrix (test split): ppl of adapter (row) on user's test text (column); the generic adapter was trained with the same recipe ` +
      `(seed ${m.generic.seed}) on all ${m.users.length} users' training texts pooled (${m.generic.trainBytes} bytes).`,
    '',
    ...table(
      ['adapter \\ text', ...m.users.map(md)],
      ['l', ...m.users.map((): 'r' => 'r')],
      [
        ...m.users.map((a, i) => [md(a), ...m.users.map((_, j) => f(Math.exp(m.testMeanNll[i]![j]!), PPL_DECIMALS))]),
        ['generic', ...m.users.map((_, j) => f(Math.exp(m.genericMeanNll.test[j]!), PPL_DECIMALS))],
      ],
    ),
    '',
    "Own adapter against the others and the generic one: ppl(other) / ppl(own) on the user's text with its paired bootstrap interval (above 1: the own adapter knows more about its user).",
    '',
    ...table(
      ['user', 'others / own (test)', 'generic / own (validation)', 'generic / own (test)'],
      ['l', 'l', 'r', 'r'],
      p.analysis.users.map((u) => [
        md(u.user),
        u.othersOverOwn.map((x) => `${md(x.adapter)}: ${est(x.ratio, RATIO_DECIMALS)}`).join('; '),
        est(u.genericOverOwn.validation, RATIO_DECIMALS),
        est(u.genericOverOwn.test, RATIO_DECIMALS),
      ]),
    ),
  ];
  const lost = p.analysis.personalLost;
  if (lost === null) {
    out.push('', 'The criteria register no PERSONAL-LOST tier.');
    return out;
  }
  out.push(
    '',
    `PERSONAL-LOST (pre-registered: a scheme worse than the generic adapter for at least ${lost[0]?.minFraction ?? ''} of the users; decided on validation, reported on test). Cells: ppl(scheme) / ppl(generic), validation / test.`,
    '',
    ...table(
      ['scheme', ...m.users.map(md), 'lost (validation)', 'PERSONAL-LOST', 'lost (test)', 'holds on test'],
      ['l', ...m.users.map((): 'r' => 'r'), 'r', 'l', 'r', 'l'],
      lost.map((o) => [
        md(o.scheme),
        ...o.users.map((x) => `${f(x.validationRatio, RATIO_DECIMALS)} / ${f(x.testRatio, RATIO_DECIMALS)}`),
        `${o.validation.count} of ${o.users.length}`,
        o.validation.holds ? 'PERSONAL-LOST' : 'kept',
        `${o.test.count} of ${o.users.length}`,
        o.test.holds ? 'yes' : 'no',
      ]),
    ),
  );
  return out;
}
