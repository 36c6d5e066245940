// The bet's Markdown report, rendered from a results object: every number in it is formatted from
// values the analysis computed from per-token losses (results-analysis.ts); nothing is typed in.
//
// Sections: run provenance; the bet's table (test split: user, no-adapter ppl, reference ppl, the
// bet's ppl, bet/reference ratio, bet vs no adapter, each with its bootstrap interval); the same
// table for every scheme, with bytes and bits per byte; the verdicts; the per-user policy (chosen
// on validation, reported on test); the validation numbers the policy saw; the seed spread (noise
// floor) when several adapter seeds were trained; the fleet totals when a fleet size is given; the
// noise margin and the personal signal when measured (noise.ts, personal.ts); the conclusions
// (conclusions.ts).
// Perplexities have 3 decimals, ratios and bits per byte 4.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { writeFileAtomic } from '../util/files.js';
import { markdownText as md } from '../util/text.js';
import { conclusionsMarkdown } from './conclusions.js';
import { fleetMarkdown, fleetTotals, formatBytes } from './fleet.js';
import { frontierMarkdown } from './frontier.js';
import { noiseMarkdown } from './noise.js';
import { personalMarkdown } from './personal.js';
import type { AdapterCompressResults, ConditionStats, Estimate, SplitStats, UserResult } from './results.js';
import type { Interval } from './stats.js';
import { schemesOf } from './verdicts.js';

export const PPL_DECIMALS = 3;
export const RATIO_DECIMALS = 4;
export const BPB_DECIMALS = 4;

export const f = (v: number, d: number): string => v.toFixed(d);
const ci = (c: Interval, d: number): string => `[${f(c.low, d)}, ${f(c.high, d)}]`;
export const est = (e: Estimate, d: number): string => `${f(e.value, d)} ${ci(e.ci, d)}`;
const pplCell = (s: ConditionStats): string => est(s.ppl, PPL_DECIMALS);

/** "all users" for the fraction 1, else "at least 2/3 of users". */
const ofUsers = (fraction: string): string => (fraction === '1' ? 'all users' : `at least ${fraction} of users`);

// Every text taken from the results (names, paths, messages, versions) goes through md() where it is
// placed; the rest is the report's own text, which holds no '|' or newline.
export function table(head: string[], align: ('l' | 'r')[], rows: string[][]): string[] {
  return [
    `| ${head.join(' | ')} |`,
    `|${align.map((a) => (a === 'r' ? '---:' : '---')).join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ];
}

function stats(u: UserResult, split: 'validation' | 'test', c: string): ConditionStats {
  const s = u[split].conditions[c];
  if (s === undefined) throw new Error(`report: user "${u.user}" has no ${split} statistics for "${c}"`);
  return s;
}

/** "better" / "worse" / "equal" of a scheme's ppl against the no-adapter ppl. */
function versus(ppl: number, none: number): string {
  return ppl > none ? 'worse' : ppl < none ? 'better' : 'equal';
}

/** The per-user table of one scheme on one split. */
function schemeTable(r: AdapterCompressResults, raw: string, split: 'validation' | 'test', withBytes: boolean): string[] {
  let scheme = raw;
  const { noAdapter, reference } = mdConditions(r);
  scheme = md(scheme);
  const head = ['user', `${noAdapter} ppl`, `${reference} ppl`, `${scheme} ppl`, `${scheme} / ${reference}`, `${scheme} vs ${noAdapter}`];
  const align: ('l' | 'r')[] = ['l', 'r', 'r', 'r', 'r', 'l'];
  if (withBytes) {
    head.push('bytes', `${scheme} bits/byte`);
    align.push('r', 'r');
  }
  const rows = r.users.map((u) => {
    const c = r.criteria.criteria.conditions;
    const s = stats(u, split, raw);
    const none = stats(u, split, c.noAdapter);
    const ref = stats(u, split, c.reference);
    const toNone = s.ratioToNoAdapter!;
    const row = [
      md(u.user),
      pplCell(none),
      pplCell(ref),
      pplCell(s),
      est(s.ratioToReference!, RATIO_DECIMALS),
      `${versus(s.ppl.value, none.ppl.value)}: ${est(toNone, RATIO_DECIMALS)}`,
    ];
    if (withBytes) row.push(String(u.encodings[raw]!.bytes), est(s.bpb, BPB_DECIMALS));
    return row;
  });
  return table(head, align, rows);
}

function bootstrapLine(r: AdapterCompressResults): string {
  const b = r.bootstrap;
  const lengths = new Set<number>();
  for (const u of r.users) for (const s of [u.validation, u.test] as SplitStats[]) lengths.add(s.bootstrap.blockLength);
  const used = [...lengths].sort((a, b2) => a - b2).join(', ');
  return (
    `Intervals: ${f(b.confidence * 100, 1)}% percentile intervals from a paired circular block bootstrap, ${b.resamples} resamples, ` +
    `block length ${b.blockLength === 'auto' ? 'ceil(tokens^(1/3))' : String(b.blockLength)} tokens` +
    (used === '' ? '' : ` (used: ${used})`) +
    '; ratios resample the same token blocks for numerator and denominator.'
  );
}

/** The criteria's condition names, escaped for Markdown. */
function mdConditions(r: AdapterCompressResults): { noAdapter: string; reference: string; fallback: string; bet: string } {
  const c = r.criteria.criteria.conditions;
  return { noAdapter: md(c.noAdapter), reference: md(c.reference), fallback: md(c.fallback), bet: md(c.bet) };
}

export interface ReportOptions {
  /** Adds the fleet totals for this many users. */
  fleetUsers?: number;
}

/** The Markdown report of a results object. */
export function renderReport(r: AdapterCompressResults, options: ReportOptions = {}): string {
  const c = r.criteria.criteria;
  const { noAdapter, reference, fallback, bet } = mdConditions(r);
  const out: string[] = [];
  out.push('# Adapter compression: results', '');
  out.push(
    `- Status: ${r.status}${r.error === null ? '' : ` (error: ${md(r.error)})`}; users done: ${r.users.length}${r.users.length === 0 ? '' : ` (${r.users.map((u) => md(u.user)).join(', ')})`}`,
  );
  out.push(`- Run seed: ${r.seed}; adapter seeds per user: ${r.seeds}; started ${r.startedAt}, updated ${r.updatedAt}`);
  out.push(`- Base model: ${md(r.baseModel.name)}, sha256 ${r.baseModel.sha256}`);
  out.push(`- Criteria: sha256 ${r.criteria.sha256}, registered ${r.criteria.registeredAt}, from ${md(r.criteria.source)}`);
  out.push(
    `- Versions: ${Object.entries(r.versions)
      .map(([k, v]) => `${md(k)} ${md(v)}`)
      .join(', ')}`,
  );
  for (const u of r.users) {
    const t = u.texts.test;
    out.push(
      `- Held-out text of ${md(u.user)}: ${md(t.fixture)} ${t.part}, ${t.bytes} bytes at ${t.ranges.map(([s, e]) => `[${s}, ${e})`).join(' ')}, sha256 ${t.sha256}; ${u.test.tokens} tokens`,
    );
  }
  out.push(`- ${bootstrapLine(r)}`, '');
  if (r.users.length === 0) {
    out.push('No user has been evaluated yet.', '');
    return out.join('\n');
  }

  out.push(`## The bet: ${bet} against ${reference} (test split)`, '');
  out.push(...schemeTable(r, bet, 'test', false), '');

  out.push('## Every scheme (test split)', '');
  for (const s of schemesOf(r.conditions, c)) {
    out.push(`### ${md(s)}`, '', ...schemeTable(r, s, 'test', true), '');
  }

  out.push('## Verdicts (test split)', '');
  out.push(
    `Pre-registered: STRICT = ppl <= ${c.strict.maxRatio}x ${reference} on ${ofUsers(c.strict.minFraction)}; ` +
      `LENIENT = <= ${c.lenient.maxRatio}x on ${ofUsers(c.lenient.minFraction)}; CATASTROPHIC = worse than ${noAdapter} on ` +
      `${ofUsers(c.catastrophic.minFraction)}. "At least f of N users" needs ceil(f N) users. ` +
      'Headline: CATASTROPHIC if it holds, else STRICT, else LENIENT, else FAIL.',
    '',
  );
  out.push(
    ...table(
      ['scheme', `STRICT (<= ${c.strict.maxRatio}x)`, `LENIENT (<= ${c.lenient.maxRatio}x)`, `CATASTROPHIC (> ${noAdapter})`, 'verdict'],
      ['l', 'l', 'l', 'l', 'l'],
      r.verdicts.map((v) => [
        md(v.scheme),
        `${v.strict.count}/${v.strict.users} within, ${v.strict.required} needed: ${v.strict.pass ? 'pass' : 'fail'}`,
        `${v.lenient.count}/${v.lenient.users} within, ${v.lenient.required} needed: ${v.lenient.pass ? 'pass' : 'fail'}`,
        `${v.catastrophic.count}/${v.catastrophic.users} worse, ${v.catastrophic.required} needed: ${v.catastrophic.holds ? 'holds' : 'does not hold'}`,
        v.verdict,
      ]),
    ),
    '',
  );

  out.push('## Per-user policy (chosen on validation, reported on test)', '');
  out.push(
    `Rule: the smallest encoding no larger than ${fallback} whose validation ppl is <= ${c.policy.maxRatio}x ${reference}` +
      `${c.policy.mustBeatNoAdapter ? ` and below ${noAdapter}` : ''}; otherwise ${fallback}.`,
    '',
  );
  out.push(
    ...table(
      [
        'user',
        'chosen',
        'bytes',
        `validation ratio to ${reference}`,
        'test ppl',
        `test ratio to ${reference}`,
        `test vs ${noAdapter}`,
        'rule holds on test',
      ],
      ['l', 'l', 'r', 'r', 'r', 'r', 'l', 'l'],
      r.users.map((u) => {
        const p = u.policy;
        const chosen = p.candidates.find((x) => x.condition === p.choice)!;
        return [
          md(u.user),
          p.fallback ? `${md(p.choice)} (fallback: nothing passed)` : md(p.choice),
          String(p.bytes),
          f(chosen.ratio, RATIO_DECIMALS),
          est(p.test.ppl, PPL_DECIMALS),
          est(p.test.ratioToReference, RATIO_DECIMALS),
          `${versus(p.test.ppl.value, stats(u, 'test', c.conditions.noAdapter).ppl.value)}: ${est(p.test.ratioToNoAdapter, RATIO_DECIMALS)}`,
          p.test.holds ? 'yes' : 'no',
        ];
      }),
    ),
    '',
  );
  const ps = r.policy;
  out.push(
    `Policy over ${ps.users} users: ${Object.entries(ps.choices)
      .map(([k, n]) => `${md(k)} ${n}`)
      .join(', ')}; ${ps.fallbacks} fallback(s); ` +
      `rule holds on test for ${ps.holdsOnTest} of ${ps.users}; mean ${f(ps.meanBytes, 1)} bytes per user (${formatBytes(ps.meanBytes)}).`,
    '',
  );

  out.push('## Validation split (what the policy saw)', '');
  out.push(
    ...table(
      ['user', 'condition', 'bytes', 'ppl', `ratio to ${reference}`, `vs ${noAdapter}`, 'passes the rule'],
      ['l', 'l', 'r', 'r', 'r', 'l', 'l'],
      r.users.flatMap((u) =>
        u.policy.candidates.map((x) => [
          md(u.user),
          md(x.condition),
          String(x.bytes),
          est(stats(u, 'validation', x.condition).ppl, PPL_DECIMALS),
          f(x.ratio, RATIO_DECIMALS),
          versus(x.ppl, stats(u, 'validation', c.conditions.noAdapter).ppl.value),
          x.passes ? 'yes' : x.eligible ? 'no' : `no (larger than ${fallback})`,
        ]),
      ),
    ),
    '',
  );

  const seeded = r.users.filter((u) => u.seeds !== null);
  if (seeded.length > 0) {
    out.push('## Spread over adapter seeds (test split): the noise floor', '');
    out.push(
      ...table(
        [
          'user',
          'condition',
          'seeds',
          'ppl mean',
          'ppl sd',
          'ppl min',
          'ppl max',
          'ppl max/min',
          `ratio to ${reference} mean`,
          'ratio min',
          'ratio max',
        ],
        ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
        seeded.flatMap((u) =>
          Object.entries(u.seeds!.spread).map(([cond, s]) => [
            md(u.user),
            md(cond),
            String(s.ppl.n),
            f(s.ppl.mean, PPL_DECIMALS),
            s.ppl.sd === null ? 'n/a' : f(s.ppl.sd, PPL_DECIMALS),
            f(s.ppl.min, PPL_DECIMALS),
            f(s.ppl.max, PPL_DECIMALS),
            f(s.ppl.maxOverMin, RATIO_DECIMALS),
            s.ratioToReference === null ? 'n/a' : f(s.ratioToReference.mean, RATIO_DECIMALS),
            s.ratioToReference === null ? 'n/a' : f(s.ratioToReference.min, RATIO_DECIMALS),
            s.ratioToReference === null ? 'n/a' : f(s.ratioToReference.max, RATIO_DECIMALS),
          ]),
        ),
      ),
      '',
    );
  }

  if (r.frontier !== undefined) out.push(...frontierMarkdown(r.frontier, r.criteria.criteria.strict.maxRatio, md));

  if (options.fleetUsers !== undefined) {
    out.push('## Fleet totals', '', fleetMarkdown(fleetTotals(r, options.fleetUsers)));
  }
  out.push(...noiseMarkdown(r), ...personalMarkdown(r), ...conclusionsMarkdown(r));
  return out.join('\n');
}

/** Renders the report and writes it atomically. */
export function writeReport(path: string, r: AdapterCompressResults, options: ReportOptions = {}): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileAtomic(path, renderReport(r, options));
}
