// The conclusions at the end of the report (issue 10 §8), derived from the numbers, never typed:
//  - per user family: does the catalogue's finding reproduce, i.e. is the bet's encoding (int8 per
//    tensor by default) worse than no adapter, on test, for at least catastrophic.minFraction of the
//    family's users (2/3 by default)?
//  - each user's margin factor (noise.ts): RMS gain error at which perplexity crosses no-adapter
//    over the bet's own RMS error, per noise distribution, over the seeds;
//  - which schemes keep the personal signal (personal.ts): the PERSONAL-LOST tier does not hold on
//    validation and no user lost it on test;
//  - with --frontier, per user family (frontier.ts familyFrontier): the users' minimum safe bytes
//    (median and range) and, per budget, the best encoding that keeps every user within STRICT.
// computeConclusions is run by the writer and again by the reader, which refuses a file whose
// conclusions differ from the ones recomputed from its numbers.

import { markdownText as md } from '../util/text.js';
import { requiredUsers, type Criteria } from './criteria.js';
import { familyFrontier } from './frontier.js';
import { f } from './report.js';
import type {
  AdapterCompressResults,
  Conclusions,
  FamilyBudget,
  FamilyConclusion,
  FamilyFrontier,
  PersonalSignal,
  Spread,
  UserResult,
} from './results-types.js';

export type { Conclusions, FamilyConclusion } from './results-types.js';

/** The family of users with no recorded family. */
export const ALL_USERS_FAMILY = 'all users';

/** The conclusions of `users`; `frontierLadder` is the run's --frontier ladder (run.frontier.ladder), absent without --frontier. */
export function computeConclusions(
  users: readonly UserResult[],
  criteria: Criteria,
  personal: PersonalSignal | undefined,
  frontierLadder?: readonly number[],
): Conclusions {
  const { bet, noAdapter } = criteria.conditions;
  const byFamily = new Map<string, UserResult[]>();
  for (const u of users) {
    const f = u.family ?? ALL_USERS_FAMILY;
    byFamily.set(f, [...(byFamily.get(f) ?? []), u]);
  }
  const families: FamilyConclusion[] = [...byFamily].map(([family, us]) => {
    const worse = us.filter((u) => u.test.conditions[bet]!.ppl.value > u.test.conditions[noAdapter]!.ppl.value).length;
    const required = requiredUsers(criteria.catastrophic.minFraction, us.length);
    return { family, users: us.map((u) => u.user), scheme: bet, worseThanNoAdapter: worse, required, reproduces: worse >= required };
  });
  const swept = users.filter((u) => u.noise !== undefined);
  const margins =
    swept.length === 0
      ? null
      : swept.map((u) => ({
          user: u.user,
          uniform: u.noise!.analysis.curves.uniform.margin.noAdapter,
          gaussian: u.noise!.analysis.curves.gaussian.margin.noAdapter,
        }));
  const lost = personal?.analysis.personalLost ?? null;
  const personalKept =
    lost === null
      ? null
      : lost.map((o) => ({
          scheme: o.scheme,
          lostOnTest: o.test.count,
          users: o.users.length,
          keeps: !o.validation.holds && o.test.count === 0,
        }));
  const frontier =
    frontierLadder === undefined || users.length === 0
      ? null
      : [...byFamily].map(([family, us]) => familyFrontier(family, us, frontierLadder, criteria));
  return { families, margins, personal: personalKept, frontier };
}

/**
 * The report's last section: the conclusions as sentences, every number from `r.conclusions`
 * but one caveat per family read from the users' test perplexities: for how many users the
 * reference itself is no better than no adapter (then compression had no benefit to lose).
 */
export function conclusionsMarkdown(r: AdapterCompressResults): string[] {
  const c = r.conclusions;
  if (c === undefined) return [];
  const { reference, noAdapter } = r.criteria.criteria.conditions;
  const byName = new Map(r.users.map((u) => [u.user, u]));
  const out = ['', '## Conclusions (computed from the numbers above)', ''];
  for (const fam of c.families) {
    const noBenefit = fam.users.filter((n) => {
      const t = byName.get(n)?.test.conditions;
      return t !== undefined && t[reference]!.ppl.value >= t[noAdapter]!.ppl.value;
    }).length;
    out.push(
      `- ${md(fam.family)} (${fam.users.length} user(s)): ${md(fam.scheme)} is worse than no adapter for ${fam.worseThanNoAdapter} of ` +
        `${fam.users.length} (the catalogue's finding needs ${fam.required}): the finding ${fam.reproduces ? 'reproduces' : 'does not reproduce'}.` +
        (noBenefit === 0
          ? ''
          : ` But ${md(reference)} itself is no better than no adapter for ${noBenefit} of them on test: there the adapter had no benefit for compression to lose.`),
    );
  }
  if (c.margins === null) out.push('- Margin factors: not measured (run the bet with --noise).');
  else {
    for (const m of c.margins) {
      const noise = r.users.find((u) => u.user === m.user)?.noise;
      // outside the grid: say which side, from the seeds' crossings
      const outside = (d: 'uniform' | 'gaussian'): string => {
        const where = noise?.analysis.curves[d].crossings.noAdapter.map((x) => x.where) ?? [];
        const grid = noise?.measured.rms ?? [];
        const below = where.filter((w) => w === 'belowGrid').length;
        const above = where.filter((w) => w === 'aboveGrid').length;
        if (below === where.length) return `none (already worse than no adapter at the grid's smallest RMS gain error, ${grid[0]})`;
        if (above === where.length) return `beyond the grid (no crossing up to its largest RMS gain error, ${grid[grid.length - 1]})`;
        const parts = [
          below > 0 ? `already worse at the grid's smallest RMS gain error for ${below}` : '',
          above > 0 ? `no crossing up to its largest for ${above}` : '',
          `a crossing inside it for ${where.length - below - above}`,
        ];
        return `not one over all ${where.length} seeds (${parts.filter((p) => p !== '').join(', ')})`;
      };
      const s = (x: Spread | null, d: 'uniform' | 'gaussian'): string =>
        x === null ? outside(d) : `${f(x.median, 1)}x (${f(x.min, 1)}-${f(x.max, 1)} over the seeds)`;
      out.push(
        `- ${md(m.user)}: margin factor (the RMS gain error of random noise at which the adapter becomes worse than no adapter, over the bet's own RMS error): ` +
          `${s(m.uniform, 'uniform')} uniform; ${s(m.gaussian, 'gaussian')} Gaussian.`,
      );
    }
  }
  if (c.personal === null) out.push('- Personal signal: not measured (run the bet with --personal).');
  else {
    const keep = c.personal.filter((x) => x.keeps).map((x) => md(x.scheme));
    const lose = c.personal.filter((x) => !x.keeps).map((x) => `${md(x.scheme)} (lost on test for ${x.lostOnTest} of ${x.users})`);
    out.push(`- Keep the personal signal: ${keep.length === 0 ? 'none' : keep.join(', ')}.`);
    if (lose.length > 0) out.push(`- Lose it (PERSONAL-LOST on validation, or lost for a user on test): ${lose.join(', ')}.`);
  }
  if (c.frontier === null) out.push('- Rate-distortion frontier: not measured (run the bet with --frontier).');
  else for (const fam of c.frontier) out.push(...familyFrontierMarkdown(fam));
  return out;
}

function familyFrontierMarkdown(fam: FamilyFrontier): string[] {
  const n = fam.users.length;
  const s = fam.minimumSafe;
  const safe =
    s.bytes === null
      ? 'no user has a minimum safe size (no encoding is within STRICT and better than no adapter on validation)'
      : `minimum safe bytes ${f(s.bytes.median, 0)} B (median; ${f(s.bytes.min, 0)}-${f(s.bytes.max, 0)} B) for the ${s.found} of ${n} ` +
        `user(s) that have one, chosen on validation; it holds on test for ${s.holdsOnTest} of them`;
  const budget = (b: FamilyBudget): string =>
    b.choice === null
      ? `${b.budget} B none`
      : `${b.budget} B ${md(b.choice)} (${b.bytes} B; worst user on test ${f(b.worstTestRatio!, 4)}x raw` +
        `${b.strictOnTest === true ? '' : ', not STRICT on test'})`;
  return [
    `- Rate-distortion frontier, ${md(fam.family)} (${n} user(s)): ${safe}.`,
    `  The best encoding that keeps every one of them within STRICT on validation, per budget: ${fam.budgets.map(budget).join('; ')}.`,
  ];
}
