// What the fleet says (issue 12 §5), computed from the stored per-user results and nothing typed:
//  - per scheme, the fraction of users in each tier with a bootstrap interval over users, overall and
//    per user family. The tiers STRICT / LENIENT / FAIL / CATASTROPHIC partition the users (test
//    split, point perplexities, the verdicts' own tests on one user; the headline verdict's
//    precedence, verdicts.ts): CATASTROPHIC if the scheme is worse than no adapter, else STRICT if
//    its ratio to the reference is within the strict bound, else LENIENT if within the lenient
//    bound, else FAIL. PERSONAL-LOST is across them (a STRICT scheme can have lost the personal
//    signal): the scheme's validation ppl is above the run's generic adapter's (personal.ts's rule,
//    decided on validation, also counted on test), over the users scored under a generic adapter;
//  - each user's minimum safe bytes: the smallest of the run's encodings (the menu, and the ladder
//    under --frontier) within STRICT and better than no adapter on validation, reported on test
//    (frontier.ts, userFrontier), as quantiles and a histogram in power-of-two bins;
//  - the users for whom the bet's encoding (int8 per tensor by default) loses most, largest test ppl
//    ratio to the reference first, with their noise margin (noise.ts, analyseNoise, from the stored
//    sweep and the user's stored test statistics): the RMS gain error the user tolerates over the
//    bet's own RMS error. Below 1, the bet's quantisation error alone is more than the user takes.
//
// The intervals resample users with replacement (percentile bootstrap, stats.ts; no Wilson interval
// there): they say how far the fractions could move with another draw of users from the same
// population, not the token-level noise within a user (each user's own intervals are in the results).

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

import { computeVerdicts, schemesOf, type UserSchemeOutcome } from '../bet/verdicts.js';
import { userFrontier } from '../bet/frontier.js';
import { analyseNoise, NOISE_DISTRIBUTIONS, type Crossing, type NoiseMeasured, type Spread } from '../bet/noise.js';
import { deriveSeed, percentileInterval, quantileSorted, Xoshiro128, type Interval } from '../bet/stats.js';
import type { Criteria } from '../bet/criteria.js';
import type { AdapterCompressResults, UserResult } from '../bet/results.js';
import { writeFileAtomic } from '../util/files.js';
import { axisTitles, n2, svgHead, xmlEscape, yTicks, type SvgFrame } from '../util/svg.js';
import { markdownText as md } from '../util/text.js';
import type { GenericScore } from './store.js';

export const TIERS = ['STRICT', 'LENIENT', 'FAIL', 'CATASTROPHIC'] as const;
export type Tier = (typeof TIERS)[number];
export const PERSONAL_LOST = 'PERSONAL-LOST';

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

/**
 * Has the scheme lost the personal signal for this user: ppl(scheme) / ppl(generic) above 1 on the
 * split (personal.ts's PERSONAL-LOST rule, the same expression, so the fleet and `bet --personal` agree).
 */
export function lostPersonal(u: UserResult, scheme: string, g: GenericScore, split: 'validation' | 'test'): boolean {
  return Math.exp(u[split].conditions[scheme]!.meanNll - g[split].meanNll) > 1;
}

export interface TierShare {
  count: number;
  /** The users the fraction is of. */
  users: number;
  fraction: number;
  ci: Interval;
}

export interface ShareOptions {
  resamples: number;
  confidence: number;
  seed: number;
}

/**
 * The fraction of users with each label, and its percentile-bootstrap interval over users: each
 * replicate draws users with replacement (the same draws for every label, so a replicate's fractions
 * add up to 1). With no users each label is 0 of 0, its interval [0, 0].
 */
export function labelShares<L extends string>(labels: readonly L[], of: readonly L[], o: ShareOptions): Record<L, TierShare> {
  const n = of.length;
  const index = new Map(labels.map((l, i) => [l, i]));
  for (const x of of) if (!index.has(x)) throw new RangeError(`labelShares: "${x}" is not one of ${labels.join(', ')}`);
  const reps = labels.map(() => new Float64Array(o.resamples));
  if (n > 0) {
    const rng = new Xoshiro128(o.seed);
    for (let b = 0; b < o.resamples; b++) for (let k = 0; k < n; k++) reps[index.get(of[rng.nextInt(n)]!)!]![b]! += 1 / n;
  }
  return Object.fromEntries(
    labels.map((l, i) => {
      const count = of.filter((x) => x === l).length;
      return [
        l,
        {
          count,
          users: n,
          fraction: n === 0 ? 0 : count / n,
          ci: n === 0 ? { low: 0, high: 0 } : percentileInterval(reps[i]!, o.confidence),
        },
      ];
    }),
  ) as Record<L, TierShare>;
}

export interface SchemeShares {
  tiers: Record<Tier, TierShare>;
  /** Users scored under a generic adapter for whom the scheme lost the personal signal on validation; null with none scored. */
  personalLost: TierShare | null;
  /** The same rule on test: how many of them. */
  personalLostTest: number | null;
}

export interface GroupDistribution {
  family: string;
  users: number;
  schemes: Record<string, SchemeShares>;
}

export interface SafeBytes {
  /** Users with a safe encoding on validation. */
  users: number;
  /** Users with none (they would ship the reference or nothing). */
  none: number;
  /** Of `users`, those whose safe encoding is also within STRICT and better than no adapter on test. */
  holdsOnTest: number;
  quantiles: { p: number; bytes: number }[];
  /** Power-of-two bins [low, 2 low) -> users, ascending. */
  histogram: { low: number; high: number; users: number }[];
  /** Smallest safe scheme -> users. */
  byScheme: Record<string, number>;
}

/** A margin over the noise seeds: its spread when every seed's crossing is inside the grid, else where the crossings were. */
export interface MarginCell {
  spread: Spread | null;
  where: Crossing['where'][];
}

export interface MarginFactor {
  /** The bet's encoding's RMS gain error for this user. */
  betRms: number;
  /** The grid's ends over betRms: a crossing above (below) the grid is a margin above (below) these. */
  grid: { low: number; high: number };
  /** Per noise distribution: the margin to STRICT and to no adapter. */
  curves: Record<string, { strict: MarginCell; noAdapter: MarginCell }>;
  seeds: number;
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
  /** The noise margin, when its follow-up job has run. */
  margin: MarginFactor | null;
}

export interface PersonalSummary {
  /** Users scored under the run's generic adapter. */
  users: number;
  /** Of them, users whose own adapter beats the generic one beyond noise on test (the interval of ppl(generic) / ppl(own) above 1). */
  ownBeatsGeneric: number;
  /** Median over users of ppl(generic) / ppl(own) on test. */
  medianGenericOverOwn: number | null;
}

export interface FleetDistribution {
  resamples: number;
  confidence: number;
  seed: number;
  groups: GroupDistribution[];
  personal: PersonalSummary;
  safeBytes: SafeBytes;
  /** The bet's scheme, users by test ratio to the reference, worst first (at most `worst` of them). */
  betLosers: { scheme: string; users: Loser[] };
}

const QUANTILES = [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1];
const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

export interface FleetExtras {
  /** user -> the user's scores under the run's generic adapter (absent or null: not scored). */
  generic?: Readonly<Record<string, GenericScore | null>>;
  /** user -> the user's stored noise sweep. */
  margins?: Readonly<Record<string, NoiseMeasured>>;
  /** How many of the bet's worst users to list (default 10). */
  worst?: number;
}

/** The distribution over the results' users; `families` maps user -> family. */
export function fleetDistribution(
  r: Pick<AdapterCompressResults, 'users' | 'conditions' | 'criteria' | 'seed' | 'bootstrap'>,
  families: Readonly<Record<string, string>>,
  extras: FleetExtras = {},
): FleetDistribution {
  const criteria = r.criteria.criteria;
  const schemes = schemesOf(r.conditions, criteria);
  const { resamples, confidence } = r.bootstrap;
  const tiers = new Map(r.users.map((u) => [u.user, userTiers(u, r.conditions, criteria)]));
  const genericOf = (u: string): GenericScore | null => extras.generic?.[u] ?? null;
  const familyOf = (u: string): string => families[u] ?? 'users';
  const names = ['all', ...[...new Set(r.users.map((u) => familyOf(u.user)))].sort()];
  const groups = names.map((family): GroupDistribution => {
    const members = r.users.filter((u) => family === 'all' || familyOf(u.user) === family);
    const scored = members.filter((u) => genericOf(u.user) !== null);
    const out: GroupDistribution['schemes'] = {};
    for (const s of schemes) {
      const seed = (what: string): number => deriveSeed(r.seed, 'fleet-distribution', family, s, ...(what === '' ? [] : [what]));
      const lost = scored.map((u) => (lostPersonal(u, s, genericOf(u.user)!, 'validation') ? 'lost' : 'kept'));
      out[s] = {
        tiers: labelShares(
          TIERS,
          members.map((u) => tiers.get(u.user)![s]!),
          { resamples, confidence, seed: seed('') },
        ),
        personalLost:
          scored.length === 0
            ? null
            : labelShares(['lost', 'kept'] as const, lost, { resamples, confidence, seed: seed(PERSONAL_LOST) }).lost,
        personalLostTest: scored.length === 0 ? null : scored.filter((u) => lostPersonal(u, s, genericOf(u.user)!, 'test')).length,
      };
    }
    return { family, users: members.length, schemes: out };
  });

  const { bet, reference, noAdapter } = criteria.conditions;
  const scored = r.users.filter((u) => genericOf(u.user) !== null);
  const overOwn = scored
    .map((u) => Math.exp(genericOf(u.user)!.test.meanNll - u.test.conditions[reference]!.meanNll))
    .sort((a, b) => a - b);
  const personal: PersonalSummary = {
    users: scored.length,
    ownBeatsGeneric: scored.filter((u) => genericOf(u.user)!.test.ci.low > 1).length,
    medianGenericOverOwn: overOwn.length === 0 ? null : quantileSorted(overOwn, 0.5),
  };

  // minimum safe bytes: chosen on validation, reported on test (frontier.ts)
  const safe: number[] = [];
  const byScheme: Record<string, number> = {};
  let holdsOnTest = 0;
  for (const u of r.users) {
    const m = userFrontier(u, [], criteria).minimumSafe;
    if (m === null) continue;
    safe.push(m.bytes);
    byScheme[m.condition] = (byScheme[m.condition] ?? 0) + 1;
    if (m.holdsOnTest) holdsOnTest++;
  }
  safe.sort((a, b) => a - b);
  const bins = new Map<number, number>();
  for (const b of safe) {
    const low = 2 ** (31 - Math.clz32(b));
    bins.set(low, (bins.get(low) ?? 0) + 1);
  }
  const safeBytes: SafeBytes = {
    users: safe.length,
    none: r.users.length - safe.length,
    holdsOnTest,
    quantiles: safe.length === 0 ? [] : QUANTILES.map((p) => ({ p, bytes: quantileSorted(safe, p) })),
    histogram: [...bins.entries()].sort(([a], [b]) => a - b).map(([low, users]) => ({ low, high: 2 * low, users })),
    byScheme: Object.fromEntries(Object.entries(byScheme).sort(([a], [b]) => byName(a, b))),
  };

  const losers = r.users
    .map((u): Loser => {
      const p = testPpl(u);
      const m = extras.margins?.[u.user];
      let margin: MarginFactor | null = null;
      if (m !== undefined) {
        const a = analyseNoise(m, u.test, criteria, r.conditions, u.user);
        const cell = (d: (typeof NOISE_DISTRIBUTIONS)[number], k: 'strict' | 'noAdapter'): MarginCell => ({
          spread: a.curves[d].margin[k],
          where: a.curves[d].crossings[k].map((c) => c.where),
        });
        margin = {
          betRms: a.bet.rms,
          grid: { low: m.rms[0]! / a.bet.rms, high: m.rms[m.rms.length - 1]! / a.bet.rms },
          seeds: m.seeds.length,
          curves: Object.fromEntries(NOISE_DISTRIBUTIONS.map((d) => [d, { strict: cell(d, 'strict'), noAdapter: cell(d, 'noAdapter') }])),
        };
      }
      return {
        user: u.user,
        family: familyOf(u.user),
        ratio: p[bet]! / p[reference]!,
        ppl: p[bet]!,
        referencePpl: p[reference]!,
        noAdapterPpl: p[noAdapter]!,
        tier: tiers.get(u.user)![bet]!,
        adapterGain: p[noAdapter]! / p[reference]!,
        margin,
      };
    })
    // the order of the margin jobs' choice (store.ts, worstBetUsers)
    .sort((a, b) => b.ratio - a.ratio || byName(a.user, b.user))
    .slice(0, extras.worst ?? 10);
  return { resamples, confidence, seed: r.seed, groups, personal, safeBytes, betLosers: { scheme: bet, users: losers } };
}

const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;
const shareText = (t: TierShare): string => `${t.count} (${pct(t.fraction)} [${pct(t.ci.low)}, ${pct(t.ci.high)}])`;
function marginText(c: MarginCell, grid: MarginFactor['grid']): string {
  const s = c.spread;
  if (s !== null) return `${s.median.toFixed(1)} [${s.min.toFixed(1)}, ${s.max.toFixed(1)}]`;
  if (c.where.every((w) => w === 'aboveGrid')) return `> ${grid.high.toFixed(1)}`;
  if (c.where.every((w) => w === 'belowGrid')) return `< ${grid.low.toFixed(2)}`;
  return `outside the grid for ${c.where.filter((w) => w !== 'within').length} of ${c.where.length} seeds`;
}

/** The distribution as Markdown sections (appended to the bet's report by `fleet report`). */
export function distributionMarkdown(d: FleetDistribution, svgName?: string): string {
  const lines: string[] = [
    '## Tiers over users',
    '',
    `Per scheme, the users in each tier on the test split, with ${Math.round(d.confidence * 100)}% percentile-bootstrap intervals over users (${d.resamples} resamples, users drawn with replacement).`,
    "A user's tier: CATASTROPHIC if worse than no adapter, else STRICT / LENIENT if within that ratio to the reference, else FAIL (these four partition the users).",
    `${PERSONAL_LOST} is across them: the scheme's validation ppl is above the run's generic adapter's (trained on the users' training texts pooled), of the users scored under it; "test" counts the same rule on test.`,
    '',
  ];
  const p = d.personal;
  lines.push(
    p.users === 0
      ? 'No user was scored under a generic adapter (rows written before the fleet trained one).'
      : `Personal signal: ${p.users} users scored under the generic adapter; their own adapter beats it beyond noise on test for ${p.ownBeatsGeneric} (median ppl(generic) / ppl(own) ${p.medianGenericOverOwn!.toFixed(4)}).`,
    '',
  );
  for (const g of d.groups) {
    lines.push(`### ${g.family === 'all' ? 'All users' : `Family ${md(g.family)}`} (${g.users} users)`, '');
    lines.push(
      `| scheme | ${TIERS.join(' | ')} | ${PERSONAL_LOST} | ${PERSONAL_LOST} (test) |`,
      `|---|${TIERS.map(() => '---:').join('|')}|---:|---:|`,
    );
    for (const [s, t] of Object.entries(g.schemes)) {
      const lost = t.personalLost === null ? 'not measured' : `${shareText(t.personalLost)} of ${t.personalLost.users}`;
      const lostTest = t.personalLostTest === null ? 'not measured' : `${t.personalLostTest} of ${t.personalLost!.users}`;
      lines.push(`| ${md(s)} | ${TIERS.map((k) => shareText(t.tiers[k])).join(' | ')} | ${lost} | ${lostTest} |`);
    }
    lines.push('');
  }
  const sb = d.safeBytes;
  lines.push('## Minimum safe bytes', '');
  lines.push(
    `Per user, the smallest of the run's encodings within STRICT and better than no adapter on validation (frontier.ts), reported on test: ${sb.users} users have one (${sb.holdsOnTest} of them still within STRICT and better than no adapter on test), ${sb.none} have none.`,
    '',
  );
  if (sb.quantiles.length > 0) {
    lines.push(`| ${sb.quantiles.map((q) => (q.p === 0 ? 'min' : q.p === 1 ? 'max' : `p${Math.round(q.p * 100)}`)).join(' | ')} |`);
    lines.push(`|${sb.quantiles.map(() => '---:').join('|')}|`);
    lines.push(`| ${sb.quantiles.map((q) => q.bytes.toFixed(0)).join(' | ')} |`, '');
    lines.push('| bytes | users |', '|---|---:|');
    for (const h of sb.histogram) lines.push(`| ${h.low}-${h.high - 1} | ${h.users} |`);
    lines.push('');
    if (svgName !== undefined) lines.push(`Histogram: ${svgName}.`, '');
    lines.push(
      `Smallest safe scheme: ${Object.entries(sb.byScheme)
        .map(([s, n]) => `${md(s)} ${n}`)
        .join(', ')}.`,
      '',
    );
  }
  const bet = md(d.betLosers.scheme);
  lines.push(`## Where ${bet} loses most`, '');
  lines.push(
    `The users with the largest test ppl ratio of ${bet} to the reference, and why: the margin factor is the RMS gain error at which seeded noise on the user's gains crosses the STRICT ratio (or the no-adapter ppl), over ${bet}'s own RMS error (median [min, max] over the noise seeds; "> x": the curve stays below the threshold up to the grid's largest error; below 1: ${bet}'s error alone is more than the user tolerates).`,
    '',
    `| user | family | ${bet} / reference | tier | no-adapter / reference | ${bet} RMS error | ${NOISE_DISTRIBUTIONS.map((n) => `margin to STRICT (${n}) | margin to no adapter (${n})`).join(' | ')} |`,
    `|---|---|---:|---|---:|---:|${NOISE_DISTRIBUTIONS.map(() => '---:|---:').join('|')}|`,
  );
  for (const l of d.betLosers.users) {
    const m = l.margin;
    const cells =
      m === null
        ? NOISE_DISTRIBUTIONS.flatMap(() => ['not measured', 'not measured'])
        : NOISE_DISTRIBUTIONS.flatMap((n) => [marginText(m.curves[n]!.strict, m.grid), marginText(m.curves[n]!.noAdapter, m.grid)]);
    lines.push(
      `| ${md(l.user)} | ${md(l.family)} | ${l.ratio.toFixed(4)} | ${l.tier} | ${l.adapterGain.toFixed(4)} | ${m === null ? 'not measured' : m.betRms.toExponential(2)} | ${cells.join(' | ')} |`,
    );
  }
  return lines.join('\n') + '\n';
}

const FRAME: SvgFrame = { width: 760, height: 460, left: 80, right: 720, top: 50, bottom: 380 };

/** The minimum safe bytes histogram as SVG: one bar per power-of-two bin, users on y. Bars carry data-* attributes. */
export function safeBytesSvg(d: FleetDistribution): string {
  const h = d.safeBytes.histogram;
  const F = FRAME;
  const o = svgHead(
    F,
    'Minimum safe bytes',
    `Minimum safe bytes per user (${d.safeBytes.users} users with one, ${d.safeBytes.none} without)`,
  );
  const top = Math.max(1, ...h.map((b) => b.users));
  const sy = (v: number): number => F.bottom - (v / top) * (F.bottom - F.top);
  o.push(...yTicks(0, top, sy, F.left, F.right, 'users'));
  const w = h.length === 0 ? 0 : (F.right - F.left) / h.length;
  h.forEach((b, i) => {
    const x = F.left + i * w;
    o.push(
      `<rect class="bin" x="${n2(x + 4)}" y="${n2(sy(b.users))}" width="${n2(Math.max(1, w - 8))}" height="${n2(F.bottom - sy(b.users))}" fill="#0072B2" data-low="${b.low}" data-high="${b.high}" data-users="${b.users}"><title>${xmlEscape(`${b.low}-${b.high - 1} B: ${b.users} users`)}</title></rect>`,
      `<text x="${n2(x + w / 2)}" y="${F.bottom + 18}" text-anchor="middle">${b.low}</text>`,
    );
  });
  o.push(...axisTitles(F, 'bytes (bins from a power of two to the next)', 50, 'users'), '</svg>', '');
  return o.join('\n');
}

export function writeSafeBytesSvg(path: string, d: FleetDistribution): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileAtomic(path, safeBytesSvg(d));
}
