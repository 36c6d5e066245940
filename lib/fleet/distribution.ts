// What the fleet says, beyond the bet's verdicts: per scheme, the fraction of users in each tier
// with a bootstrap interval over users, overall and per user family; the distribution of each
// user's minimum safe bytes; and the users for whom the bet's scheme loses most.
//
// A user's tier under a scheme (test split, point perplexities, the verdicts' own tests on one user):
// CATASTROPHIC if the scheme is worse than no adapter, else STRICT if its ratio to the reference
// is within the strict bound, else LENIENT if within the lenient bound, else FAIL. The precedence
// is the headline verdict's (verdicts.ts).
//
// The intervals resample users with replacement (percentile bootstrap, stats.ts): they say how far
// the fractions could move with another draw of users from the same population, not the token-level
// noise within a user (each user's own intervals are in the results).

import { computeVerdicts, schemesOf, type UserSchemeOutcome } from '../bet/verdicts.js';
import { deriveSeed, percentileInterval, quantileSorted, Xoshiro128, type Interval } from '../bet/stats.js';
import type { Criteria } from '../bet/criteria.js';
import type { AdapterCompressResults, UserResult } from '../bet/results.js';
import { markdownText as md } from '../util/text.js';

export const TIERS = ['STRICT', 'LENIENT', 'FAIL', 'CATASTROPHIC'] as const;
export type Tier = (typeof TIERS)[number];

export function tierOf(o: UserSchemeOutcome): Tier {
  return o.worseThanNoAdapter ? 'CATASTROPHIC' : o.withinStrict ? 'STRICT' : o.withinLenient ? 'LENIENT' : 'FAIL';
}

function testPpl(u: UserResult): Record<string, number> {
  return Object.fromEntries(Object.entries(u.test.conditions).map(([c, s]) => [c, s.ppl.value!]));
}

/** One user's tier under every scheme. */
export function userTiers(u: UserResult, conditions: readonly string[], criteria: Criteria): Record<string, Tier> {
  const v = computeVerdicts([{ user: u.user, ppl: testPpl(u) }], schemesOf(conditions, criteria), criteria);
  return Object.fromEntries(v.map((s) => [s.scheme, tierOf(s.users[0]!)]));
}

export interface TierShare {
  count: number;
  fraction: number;
  ci: Interval;
}

export interface GroupDistribution {
  family: string;
  users: number;
  /** Scheme -> tier -> share. */
  schemes: Record<string, Record<Tier, TierShare>>;
}

export interface SafeBytes {
  /** Users with at least one scheme within STRICT and not worse than no adapter. */
  users: number;
  /** Users with none (they would ship the reference or nothing). */
  none: number;
  quantiles: { p: number; bytes: number }[];
  /** Smallest safe scheme -> users. */
  byScheme: Record<string, number>;
}

export interface Loser {
  user: string;
  family: string;
  ratio: number;
  ppl: number;
  referencePpl: number;
  noAdapterPpl: number;
  tier: Tier;
  /** How much the adapter helps this user: no-adapter ppl / reference ppl. A small gain leaves little room for quantisation error. */
  adapterGain: number;
}

export interface FleetDistribution {
  resamples: number;
  confidence: number;
  seed: number;
  groups: GroupDistribution[];
  safeBytes: SafeBytes;
  /** The bet's scheme, users by ratio to the reference, worst first (at most 10). */
  betLosers: { scheme: string; users: Loser[] };
}

const QUANTILES = [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1];

/** The distribution over the results' users; `families` maps user -> family. */
export function fleetDistribution(
  r: Pick<AdapterCompressResults, 'users' | 'conditions' | 'criteria' | 'seed' | 'bootstrap'>,
  families: Readonly<Record<string, string>>,
): FleetDistribution {
  const criteria = r.criteria.criteria;
  const schemes = schemesOf(r.conditions, criteria);
  const { resamples, confidence } = r.bootstrap;
  const tiers = new Map(r.users.map((u) => [u.user, userTiers(u, r.conditions, criteria)]));
  const familyOf = (u: string): string => families[u] ?? 'users';
  const names = ['all', ...[...new Set(r.users.map((u) => familyOf(u.user)))].sort()];
  const groups = names.map((family): GroupDistribution => {
    const members = r.users.filter((u) => family === 'all' || familyOf(u.user) === family).map((u) => u.user);
    const n = members.length;
    const out: GroupDistribution['schemes'] = {};
    for (const s of schemes) {
      const of = members.map((u) => tiers.get(u)![s]!);
      // the same resampled users for every tier of a scheme, so the shares of one replicate add up to 1
      const rng = new Xoshiro128(deriveSeed(r.seed, 'fleet-distribution', family, s));
      const reps: Record<Tier, Float64Array> = Object.fromEntries(TIERS.map((t) => [t, new Float64Array(resamples)])) as Record<
        Tier,
        Float64Array
      >;
      for (let b = 0; b < resamples; b++) {
        for (let k = 0; k < n; k++) reps[of[rng.nextInt(n)]!][b]! += 1 / n;
      }
      out[s] = Object.fromEntries(
        TIERS.map((t) => {
          const count = of.filter((x) => x === t).length;
          return [t, { count, fraction: count / n, ci: percentileInterval(reps[t], confidence) }];
        }),
      ) as Record<Tier, TierShare>;
    }
    return { family, users: n, schemes: out };
  });

  // minimum safe bytes: the smallest encoding within STRICT and not worse than no adapter, per user
  const safe: number[] = [];
  const byScheme: Record<string, number> = {};
  for (const u of r.users) {
    let best: { s: string; bytes: number } | null = null;
    for (const s of schemes) {
      if (tiers.get(u.user)![s] !== 'STRICT') continue;
      const bytes = u.encodings[s]!.bytes;
      if (best === null || bytes < best.bytes) best = { s, bytes };
    }
    if (best !== null) {
      safe.push(best.bytes);
      byScheme[best.s] = (byScheme[best.s] ?? 0) + 1;
    }
  }
  safe.sort((a, b) => a - b);
  const safeBytes: SafeBytes = {
    users: safe.length,
    none: r.users.length - safe.length,
    quantiles: safe.length === 0 ? [] : QUANTILES.map((p) => ({ p, bytes: quantileSorted(safe, p) })),
    byScheme: Object.fromEntries(Object.entries(byScheme).sort(([a], [b]) => (a < b ? -1 : 1))),
  };

  const { bet, reference, noAdapter } = criteria.conditions;
  const losers = r.users
    .map((u): Loser => {
      const p = testPpl(u);
      return {
        user: u.user,
        family: familyOf(u.user),
        ratio: p[bet]! / p[reference]!,
        ppl: p[bet]!,
        referencePpl: p[reference]!,
        noAdapterPpl: p[noAdapter]!,
        tier: tiers.get(u.user)![bet]!,
        adapterGain: p[noAdapter]! / p[reference]!,
      };
    })
    .sort((a, b) => b.ratio - a.ratio || (a.user < b.user ? -1 : 1))
    .slice(0, 10);
  return { resamples, confidence, seed: r.seed, groups, safeBytes, betLosers: { scheme: bet, users: losers } };
}

const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;

/** The distribution as Markdown sections (appended to the bet's report by `fleet report`). */
export function distributionMarkdown(d: FleetDistribution): string {
  const lines: string[] = [
    '## Tiers over users',
    '',
    `Per scheme, the share of users in each tier on the test split, with ${Math.round(d.confidence * 100)}% percentile-bootstrap intervals over users (${d.resamples} resamples).`,
    "A user's tier: CATASTROPHIC if worse than no adapter, else STRICT / LENIENT if within that ratio to the reference, else FAIL.",
    '',
  ];
  for (const g of d.groups) {
    lines.push(`### ${g.family === 'all' ? 'All users' : `Family ${md(g.family)}`} (${g.users} users)`, '');
    lines.push(`| scheme | ${TIERS.join(' | ')} |`, `|---|${TIERS.map(() => '---:').join('|')}|`);
    for (const [s, t] of Object.entries(g.schemes)) {
      lines.push(
        `| ${md(s)} | ${TIERS.map((k) => `${t[k].count} (${pct(t[k].fraction)} [${pct(t[k].ci.low)}, ${pct(t[k].ci.high)}])`).join(' | ')} |`,
      );
    }
    lines.push('');
  }
  const sb = d.safeBytes;
  lines.push('## Minimum safe bytes', '');
  lines.push(
    `The smallest encoding within STRICT (and not worse than no adapter) per user: ${sb.users} users have one, ${sb.none} have none.`,
    '',
  );
  if (sb.quantiles.length > 0) {
    lines.push(`| ${sb.quantiles.map((q) => (q.p === 0 ? 'min' : q.p === 1 ? 'max' : `p${Math.round(q.p * 100)}`)).join(' | ')} |`);
    lines.push(`|${sb.quantiles.map(() => '---:').join('|')}|`);
    lines.push(`| ${sb.quantiles.map((q) => q.bytes.toFixed(0)).join(' | ')} |`, '');
    lines.push(
      `Smallest safe scheme: ${Object.entries(sb.byScheme)
        .map(([s, n]) => `${md(s)} ${n}`)
        .join(', ')}.`,
      '',
    );
  }
  lines.push(`## Where ${md(d.betLosers.scheme)} loses most`, '');
  lines.push(
    `| user | family | ${md(d.betLosers.scheme)} / reference | tier | no-adapter ppl / reference ppl |`,
    '|---|---|---:|---|---:|',
  );
  for (const l of d.betLosers.users)
    lines.push(`| ${md(l.user)} | ${md(l.family)} | ${l.ratio.toFixed(4)} | ${l.tier} | ${l.adapterGain.toFixed(4)} |`);
  return lines.join('\n') + '\n';
}
