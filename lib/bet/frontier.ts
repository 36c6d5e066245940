// The rate-distortion frontier per user (issue 10 §4): for a ladder of byte budgets, the best
// encoding that fits each budget, CHOSEN on the validation split and REPORTED on the test split
// (never the same split), and each user's minimum safe bytes: the smallest encoding within STRICT
// (ppl <= strict.maxRatio x the reference) and better than no adapter, on validation, with how it
// does on test.
//
// The candidates are the run's encodings: the fixed-size menu plus, under `ternorm bet --frontier`,
// the budgeted methods encoded at every ladder budget ("alloc-128", "sparse_delta-128"); each is a
// condition of the run, so its perplexities come from the per-token losses like every other number,
// and the frontier is derived from them here, by the writer and again by the reader.
//
// Per user family (familyFrontier, for the conclusions): the spread of the users' minimum safe
// bytes, and at each budget the one encoding that keeps every user of the family within STRICT
// on validation (the lowest worst-user ratio), with its worst user on test; "none" when no
// encoding does.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

import type { Criteria } from './criteria.js';
import { spread } from './noise.js';
import type { FamilyBudget, FamilyFrontier, FrontierPoint, FrontierResults, UserFrontier, UserResult } from './results-types.js';
import { writeFileAtomic } from '../util/files.js';
import { axisTitles, n2, svgHead, xmlEscape, yTicks, type SvgFrame } from '../util/svg.js';

/** The default ladder: 64 B up to the raw fp16 payload of the default adapter (9 x 256 x 2 B). */
export const FRONTIER_BUDGETS: readonly number[] = [64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2304, 4608];

/** The budgeted methods encoded at every ladder budget. */
export const FRONTIER_METHODS = ['alloc', 'sparse_delta'] as const;

/** The condition name of a budgeted method at a ladder budget: "alloc-128". */
export function frontierCondition(method: string, budget: number): string {
  return `${method}-${budget}`;
}

/** The method of a condition ("alloc-128" -> "alloc"; a menu condition is its own method). */
export function methodOf(condition: string): string {
  const at = condition.indexOf('-');
  return at < 0 ? condition : condition.slice(0, at);
}

// The frontier's types are the results file's (generated from its schema).
export type { FamilyBudget, FamilyFrontier, FrontierPoint, FrontierResults, MinimumSafe, UserFrontier } from './results-types.js';

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Checks a ladder: positive integers, strictly increasing. */
export function checkLadder(ladder: readonly number[]): number[] {
  if (!Array.isArray(ladder) || ladder.length === 0) throw new RangeError('frontier ladder: expected a non-empty array of byte budgets');
  ladder.forEach((b, i) => {
    if (!Number.isSafeInteger(b) || b <= 0) throw new RangeError(`frontier ladder: budget ${String(b)} is not a positive integer`);
    if (i > 0 && b <= ladder[i - 1]!) throw new RangeError(`frontier ladder: ${b} after ${ladder[i - 1]}; expected increasing budgets`);
  });
  return [...ladder];
}

/** One user's frontier from the user's results (validation and test stats, encoded sizes). */
export function userFrontier(u: UserResult, ladder: readonly number[], criteria: Criteria): UserFrontier {
  const { reference, noAdapter } = criteria.conditions;
  const ppl = (split: 'validation' | 'test', c: string): number => {
    const s = u[split].conditions[c];
    if (s === undefined) throw new RangeError(`frontier: user "${u.user}" has no ${split} perplexity for "${c}"`);
    return s.ppl.value;
  };
  const refV = ppl('validation', reference);
  const refT = ppl('test', reference);
  const noneV = ppl('validation', noAdapter);
  const noneT = ppl('test', noAdapter);
  const cands = Object.entries(u.encodings)
    .map(([condition, e]) => ({ condition, bytes: e.bytes, v: ppl('validation', condition), t: ppl('test', condition) }))
    // best on validation first; among equal validation ppl the smaller, then by name
    .sort((a, b) => a.v - b.v || a.bytes - b.bytes || byName(a.condition, b.condition));
  const points = ladder.map((budget): FrontierPoint => {
    const c = cands.find((x) => x.bytes <= budget);
    if (c === undefined) return { budget, choice: null, bytes: null, validationRatio: null, testRatio: null, testRatioToNoAdapter: null };
    return {
      budget,
      choice: c.condition,
      bytes: c.bytes,
      validationRatio: c.v / refV,
      testRatio: c.t / refT,
      testRatioToNoAdapter: c.t / noneT,
    };
  });
  const max = criteria.strict.maxRatio;
  const safe = cands
    .filter((c) => c.v / refV <= max && c.v < noneV)
    .sort((a, b) => a.bytes - b.bytes || a.v - b.v || byName(a.condition, b.condition))[0];
  return {
    user: u.user,
    points,
    minimumSafe:
      safe === undefined
        ? null
        : {
            condition: safe.condition,
            bytes: safe.bytes,
            validationRatio: safe.v / refV,
            testRatio: safe.t / refT,
            testRatioToNoAdapter: safe.t / noneT,
            holdsOnTest: safe.t / refT <= max && safe.t < noneT,
          },
  };
}

export function computeFrontier(users: readonly UserResult[], ladder: readonly number[], criteria: Criteria): FrontierResults {
  const l = checkLadder(ladder);
  return { ladder: l, users: users.map((u) => userFrontier(u, l, criteria)) };
}

/**
 * What the frontier says of one family of users (a non-empty list): their minimum safe bytes
 * (median and range over the users that have one, and how many hold on test), and per budget the
 * encoding every user has within the budget that keeps all of them within STRICT on validation,
 * the lowest worst-user validation ratio first (then the smaller, then by name), reported by its
 * worst user on test.
 */
export function familyFrontier(
  family: string,
  users: readonly UserResult[],
  ladder: readonly number[],
  criteria: Criteria,
): FamilyFrontier {
  if (users.length === 0) throw new RangeError(`frontier: family "${family}" has no users`);
  const { reference } = criteria.conditions;
  const max = criteria.strict.maxRatio;
  const l = checkLadder(ladder);
  const safe = users.map((u) => userFrontier(u, l, criteria).minimumSafe).filter((s) => s !== null);
  const ratio = (u: UserResult, split: 'validation' | 'test', c: string): number => {
    const s = u[split].conditions[c];
    const ref = u[split].conditions[reference];
    if (s === undefined || ref === undefined) throw new RangeError(`frontier: user "${u.user}" has no ${split} perplexity for "${c}"`);
    return s.ppl.value / ref.ppl.value;
  };
  const cands = Object.keys(users[0]!.encodings)
    .filter((c) => users.every((u) => u.encodings[c] !== undefined))
    .map((c) => ({
      condition: c,
      bytes: Math.max(...users.map((u) => u.encodings[c]!.bytes)),
      v: Math.max(...users.map((u) => ratio(u, 'validation', c))),
      t: Math.max(...users.map((u) => ratio(u, 'test', c))),
    }))
    .filter((c) => c.v <= max)
    .sort((a, b) => a.v - b.v || a.bytes - b.bytes || byName(a.condition, b.condition));
  const budgets = l.map((budget): FamilyBudget => {
    const c = cands.find((x) => x.bytes <= budget);
    if (c === undefined) return { budget, choice: null, bytes: null, worstValidationRatio: null, worstTestRatio: null, strictOnTest: null };
    return { budget, choice: c.condition, bytes: c.bytes, worstValidationRatio: c.v, worstTestRatio: c.t, strictOnTest: c.t <= max };
  });
  return {
    family,
    users: users.map((u) => u.user),
    minimumSafe: {
      found: safe.length,
      holdsOnTest: safe.filter((s) => s.holdsOnTest).length,
      bytes: spread(safe.map((s) => s.bytes)),
    },
    budgets,
  };
}

// ---- the plot: one chart per user family (all users of a run), budget (log x) vs ratio (y) -----

const FRAME: SvgFrame = { width: 900, height: 560, left: 80, right: 680, top: 50, bottom: 480 };
const COLOURS = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#8C564B'];

/**
 * The frontier as SVG: per user, the validation-chosen encoding's TEST ratio to the reference at
 * each budget (solid line) and its validation ratio (dashed), the STRICT line, and each user's
 * minimum safe bytes as a vertical tick. Marks carry data-* attributes with the plotted values.
 */
export function frontierSvg(f: FrontierResults, criteria: Criteria, title: string): string {
  const pts = f.users.flatMap((u) => u.points.filter((p) => p.testRatio !== null));
  const ys = pts.flatMap((p) => [p.testRatio!, p.validationRatio!]).concat([1, criteria.strict.maxRatio]);
  const y0 = Math.min(...ys);
  const y1 = Math.max(...ys);
  const pad = (y1 - y0) * 0.05 || 0.05;
  const lo = y0 - pad;
  const hi = y1 + pad;
  const x0 = Math.log(f.ladder[0]!);
  const x1 = Math.log(f.ladder[f.ladder.length - 1]!);
  const sx = (b: number): number => FRAME.left + ((Math.log(b) - x0) / (x1 - x0 || 1)) * (FRAME.right - FRAME.left);
  const sy = (r: number): number => FRAME.bottom - ((r - lo) / (hi - lo)) * (FRAME.bottom - FRAME.top);
  const o = svgHead(FRAME, title, title);
  o.push(...yTicks(lo, hi, sy, FRAME.left, FRAME.right, 'ratio'));
  o.push('<g class="x-ticks">');
  for (const b of f.ladder) {
    o.push(`<line x1="${n2(sx(b))}" y1="${FRAME.bottom}" x2="${n2(sx(b))}" y2="${FRAME.bottom + 5}" stroke="#000000"/>`);
    o.push(`<text x="${n2(sx(b))}" y="${FRAME.bottom + 18}" text-anchor="middle" data-budget="${b}">${b}</text>`);
  }
  o.push('</g>');
  o.push(...axisTitles(FRAME, 'byte budget per user (log scale)', 40, 'perplexity ratio to the raw adapter'));
  const strict = criteria.strict.maxRatio;
  if (strict >= lo && strict <= hi) {
    o.push(
      `<line class="strict" x1="${FRAME.left}" y1="${n2(sy(strict))}" x2="${FRAME.right}" y2="${n2(sy(strict))}" stroke="#b00020" stroke-dasharray="6 3" data-ratio="${strict}"/>`,
    );
  }
  f.users.forEach((u, i) => {
    const colour = COLOURS[i % COLOURS.length]!;
    const line = (key: 'testRatio' | 'validationRatio', dash: string): void => {
      const p = u.points.filter((q) => q[key] !== null);
      if (p.length === 0) return;
      const d = p.map((q, j) => `${j === 0 ? 'M' : 'L'}${n2(sx(q.budget))},${n2(sy(q[key]!))}`).join(' ');
      o.push(
        `<path d="${d}" fill="none" stroke="${colour}" stroke-width="1.6"${dash} data-user="${xmlEscape(u.user)}" data-split="${key === 'testRatio' ? 'test' : 'validation'}"/>`,
      );
    };
    line('testRatio', '');
    line('validationRatio', ' stroke-dasharray="4 3"');
    for (const p of u.points) {
      if (p.testRatio === null) continue;
      o.push(
        `<circle cx="${n2(sx(p.budget))}" cy="${n2(sy(p.testRatio))}" r="3" fill="${colour}" data-user="${xmlEscape(u.user)}" data-budget="${p.budget}" data-choice="${xmlEscape(p.choice!)}" data-bytes="${p.bytes}" data-test-ratio="${p.testRatio}" data-validation-ratio="${p.validationRatio}"/>`,
      );
    }
    if (u.minimumSafe !== null && u.minimumSafe.bytes >= f.ladder[0]! && u.minimumSafe.bytes <= f.ladder[f.ladder.length - 1]!) {
      const x = n2(sx(u.minimumSafe.bytes));
      o.push(
        `<line class="minimum-safe" x1="${x}" y1="${FRAME.bottom - 12}" x2="${x}" y2="${FRAME.bottom}" stroke="${colour}" stroke-width="2" data-user="${xmlEscape(u.user)}" data-bytes="${u.minimumSafe.bytes}"/>`,
      );
    }
    const ly = FRAME.top + 10 + i * 18;
    o.push(`<line x1="${FRAME.right + 20}" y1="${ly}" x2="${FRAME.right + 40}" y2="${ly}" stroke="${colour}" stroke-width="2"/>`);
    o.push(`<text x="${FRAME.right + 46}" y="${ly + 4}">${xmlEscape(u.user)}</text>`);
  });
  const ly = FRAME.top + 10 + f.users.length * 18 + 10;
  o.push(`<text x="${FRAME.right + 20}" y="${ly}">solid: test, dashed: validation</text>`);
  o.push(`<text x="${FRAME.right + 20}" y="${ly + 16}">(chosen on validation)</text>`);
  o.push(`<text x="${FRAME.right + 20}" y="${ly + 32}">ticks: minimum safe bytes</text>`);
  o.push('</svg>', '');
  return o.join('\n');
}

export function writeFrontierPlot(path: string, f: FrontierResults, criteria: Criteria, title: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileAtomic(path, frontierSvg(f, criteria, title));
}

// ---- the report section ------------------------------------------------------------------------

const r4 = (v: number | null): string => (v === null ? 'n/a' : v.toFixed(4));

/** The Markdown section of the report (lib/bet/report.ts): every number from `f`, which the reader recomputes. */
export function frontierMarkdown(f: FrontierResults, strictRatio: number, md: (s: string) => string): string[] {
  const out = ['## Rate-distortion frontier (chosen on validation, reported on test)', ''];
  out.push(
    `At each byte budget, the encoding with the lowest validation perplexity among those that fit (the menu, and alloc / sparse_delta ` +
      `encoded at every budget); its validation and test perplexity ratios to the raw adapter. Minimum safe bytes: the smallest ` +
      `encoding within STRICT (<= ${strictRatio}x raw) and better than no adapter on validation, reported on test.`,
    '',
  );
  for (const u of f.users) {
    out.push(`### ${md(u.user)}`, '');
    out.push('| budget (B) | choice | bytes | validation x raw | test x raw | test x none |', '|---:|---|---:|---:|---:|---:|');
    for (const p of u.points)
      out.push(
        `| ${p.budget} | ${p.choice === null ? 'none fits' : md(p.choice)} | ${p.bytes ?? 'n/a'} | ${r4(p.validationRatio)} | ${r4(p.testRatio)} | ${r4(p.testRatioToNoAdapter)} |`,
      );
    const s = u.minimumSafe;
    out.push(
      '',
      s === null
        ? 'Minimum safe bytes: none (no encoding is within STRICT and better than no adapter on validation).'
        : `Minimum safe bytes: **${s.bytes} B** (${md(s.condition)}): validation x raw ${r4(s.validationRatio)}; test x raw ${r4(s.testRatio)}, ` +
            `x none ${r4(s.testRatioToNoAdapter)} — the rule ${s.holdsOnTest ? 'holds' : 'fails'} on test.`,
      '',
    );
  }
  return out;
}
