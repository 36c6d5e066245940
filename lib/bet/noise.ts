// The noise margin (issue 10 §5): how much gain error a user's adapter tolerates. Each user's
// trained gains g get seeded noise e of an exact RMS (a log grid, uniform and Gaussian patterns):
// the test split is scored with g + e, and the perplexity ratio to the reference is a curve in the
// RMS gain error. Each scheme is a point on the same axes: the RMS of its decoded gains' error
// against g, and its test ratio. Where a curve crosses the STRICT ratio and the no-adapter ratio
// (interpolated on the log grid, per seed) is the user's tolerance; divided by the bet's encoding's
// own RMS error (int8 per tensor by default) it is the user's margin factor: how many times more
// error than the bet's encoding the user can take before it breaks.
//
// The results record what was measured (the grid, the seeds, the mean test NLL of every perturbed
// run, each scheme's RMS error); everything else here is derived from those numbers and the user's
// test statistics, and the reader recomputes it (analyseNoise) and refuses a file where it differs.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

import { writeFileAtomic } from '../util/files.js';
import { axisTitles, n2, svgHead, xmlEscape, yTicks, type SvgFrame } from '../util/svg.js';
import { markdownText as md } from '../util/text.js';
import type { Criteria } from './criteria.js';
import { logRatioTicks } from './plot.js';
import { f, RATIO_DECIMALS, table } from './report.js';
import { fail } from './results-format.js';
import type {
  AdapterCompressResults,
  Crossing,
  NoiseAnalysis,
  NoiseCurveAnalysis,
  NoiseMeasured,
  SplitStats,
  Spread,
} from './results-types.js';
import { deriveSeed, Xoshiro128 } from './stats.js';

export const NOISE_DISTRIBUTIONS = ['uniform', 'gaussian'] as const;
export type NoiseDistribution = (typeof NOISE_DISTRIBUTIONS)[number];

/** RMS gain errors swept: 10^-3 ... 10^0 in quarter decades (13 points). */
export const NOISE_RMS_GRID: readonly number[] = Array.from({ length: 13 }, (_, k) => Number((10 ** (-3 + k / 4)).toPrecision(6)));
/** Noise patterns per distribution and grid point (the spread of the crossings). */
export const NOISE_SEEDS = 3;

// The section's types are the results file's (generated from its schema): `noise.measured` holds
// the grid, the seeds, the mean test NLL of every perturbed run ([seed][grid point]) and each
// scheme's RMS error; `noise.analysis` is what analyseNoise derives.
export type { Crossing, NoiseAnalysis, NoiseCurveAnalysis, NoiseMeasured, Spread, UserNoise } from './results-types.js';

/** RMS of a - b over all gains (float64 sums). */
export function rmsError(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length || a.length === 0) throw new RangeError(`rmsError: ${a.length} vs ${b.length} gains`);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return Math.sqrt(s / a.length);
}

/** The noise seed of (run seed, user, distribution, pattern k). */
export function noiseSeed(runSeed: number, user: string, k: number): number {
  return deriveSeed(runSeed, 'noise', user, String(k));
}

/**
 * g + e, e of the distribution's shape (uniform on [-1, 1] or standard normal, Box-Muller) scaled so
 * its RMS is exactly `rms` (before the f32 rounding of g + e). Deterministic in `seed`.
 */
export function perturbGains(gains: Float32Array, rms: number, dist: NoiseDistribution, seed: number): Float32Array {
  if (!(rms > 0 && Number.isFinite(rms))) throw new RangeError(`perturbGains: rms must be a positive finite number, got ${rms}`);
  const n = gains.length;
  const rng = new Xoshiro128(deriveSeed(seed, dist));
  const e = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    if (dist === 'uniform') e[i] = 2 * rng.nextFloat() - 1;
    else {
      // Box-Muller; 1 - u keeps the log's argument in (0, 1]
      const u1 = 1 - rng.nextFloat();
      const u2 = rng.nextFloat();
      e[i] = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
    }
  }
  let s = 0;
  for (let i = 0; i < n; i++) s += e[i]! ** 2;
  const k = rms / Math.sqrt(s / n);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = gains[i]! + k * e[i]!;
  return out;
}

/** The first grid point whose ratio is above `threshold`, interpolated in log RMS vs log ratio. */
export function firstCrossing(rms: readonly number[], ratio: readonly number[], threshold: number): Crossing {
  const k = ratio.findIndex((r) => r > threshold);
  if (k < 0) return { where: 'aboveGrid', rms: null };
  if (k === 0) return { where: 'belowGrid', rms: null };
  const [x0, x1, r0, r1] = [Math.log(rms[k - 1]!), Math.log(rms[k]!), Math.log(ratio[k - 1]!), Math.log(ratio[k]!)];
  return { where: 'within', rms: Math.exp(x0 + ((Math.log(threshold) - r0) / (r1 - r0)) * (x1 - x0)) };
}

/** min, median and max of `values`; null when there are none or any is null. */
export function spread(values: (number | null)[]): Spread | null {
  if (values.length === 0 || values.some((v) => v === null)) return null;
  const s = (values as number[]).slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return { min: s[0]!, median: s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2, max: s[s.length - 1]! };
}

function scaled(s: Spread | null, by: number): Spread | null {
  return s === null ? null : { min: s.min / by, median: s.median / by, max: s.max / by };
}

function checkMeasured(m: NoiseMeasured, conditions: readonly string[], user: string): void {
  const w = `user "${user}" noise`;
  if (m.split !== 'test') fail(`${w}: "split" must be "test"`);
  if (m.rms.length < 2 || m.rms.some((x, i) => !(x > 0) || (i > 0 && x <= m.rms[i - 1]!)))
    fail(`${w}: "rms" must be at least 2 positive, strictly increasing values`);
  if (m.seeds.length === 0) fail(`${w}: no seeds`);
  for (const d of NOISE_DISTRIBUTIONS) {
    const rows = m.meanNll[d];
    if (rows === undefined || rows.length !== m.seeds.length || rows.some((r) => r.length !== m.rms.length))
      fail(`${w}: "meanNll.${d}" must be ${m.seeds.length} rows of ${m.rms.length} mean NLLs`);
  }
  for (const s of Object.keys(m.schemeRms)) if (!conditions.includes(s)) fail(`${w}: "schemeRms.${s}" is not a condition of the run`);
}

/** Everything derived from the measured sweep and the user's test statistics. */
export function analyseNoise(
  m: NoiseMeasured,
  test: SplitStats,
  criteria: Criteria,
  conditions: readonly string[],
  user: string,
): NoiseAnalysis {
  checkMeasured(m, conditions, user);
  const { reference, noAdapter, bet } = criteria.conditions;
  const refNll = test.conditions[reference]!.meanNll;
  const thresholds = { strict: criteria.strict.maxRatio, noAdapter: Math.exp(test.conditions[noAdapter]!.meanNll - refNll) };
  const betRms = m.schemeRms[bet];
  if (betRms === undefined || !(betRms > 0)) fail(`user "${user}" noise: the bet's encoding "${bet}" needs a positive RMS error`);
  const schemes: NoiseAnalysis['schemes'] = {};
  for (const [s, rms] of Object.entries(m.schemeRms)) schemes[s] = { rms, ratio: Math.exp(test.conditions[s]!.meanNll - refNll) };
  const curve = (d: NoiseDistribution): NoiseCurveAnalysis => {
    const ratio = m.meanNll[d].map((row) => row.map((nll) => Math.exp(nll - refNll)));
    const strict = ratio.map((r) => firstCrossing(m.rms, r, thresholds.strict));
    const none = ratio.map((r) => firstCrossing(m.rms, r, thresholds.noAdapter));
    const tolerance = { strict: spread(strict.map((c) => c.rms)), noAdapter: spread(none.map((c) => c.rms)) };
    return {
      ratio,
      crossings: { strict, noAdapter: none },
      tolerance,
      margin: { strict: scaled(tolerance.strict, betRms), noAdapter: scaled(tolerance.noAdapter, betRms) },
    };
  };
  return {
    thresholds,
    bet: { scheme: bet, rms: betRms },
    schemes,
    curves: { uniform: curve('uniform'), gaussian: curve('gaussian') },
  };
}

// ---- report ---------------------------------------------------------------------------------------

const sci = (v: number): string => v.toExponential(2);
const spreadText = (s: Spread | null, fmt: (v: number) => string): string =>
  s === null ? 'not inside the grid' : `${fmt(s.median)} [${fmt(s.min)}, ${fmt(s.max)}]`;

/** The report's noise-margin section (users with a sweep); empty when none has one. */
export function noiseMarkdown(r: AdapterCompressResults): string[] {
  const swept = r.users.filter((u) => u.noise !== undefined);
  if (swept.length === 0) return [];
  const { bet } = r.criteria.criteria.conditions;
  const out = [
    '',
    '## Noise margin (test split)',
    '',
    `Seeded noise of an exact RMS gain error added to the trained gains (${NOISE_DISTRIBUTIONS.join(', ')}); where the ppl ratio to ` +
      `${md(r.criteria.criteria.conditions.reference)} first goes above the STRICT ratio and above the no-adapter ratio, interpolated on the ` +
      `log grid (median [min, max] over the seeds); the margin factor is that RMS error over ${md(bet)}'s own.`,
    '',
    ...table(
      [
        'user',
        'noise',
        'seeds',
        `${md(bet)} RMS error`,
        'STRICT crossing RMS',
        'no-adapter crossing RMS',
        'margin to STRICT',
        'margin to no adapter',
      ],
      ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r'],
      swept.flatMap((u) =>
        NOISE_DISTRIBUTIONS.map((d) => {
          const a = u.noise!.analysis;
          const c = a.curves[d];
          const x = (v: number): string => f(v, 1);
          return [
            md(u.user),
            d,
            String(u.noise!.measured.seeds.length),
            sci(a.bet.rms),
            spreadText(c.tolerance.strict, sci),
            spreadText(c.tolerance.noAdapter, sci),
            spreadText(c.margin.strict, x),
            spreadText(c.margin.noAdapter, x),
          ];
        }),
      ),
    ),
    '',
    'Each scheme as a point: its RMS gain error and its test ratio.',
    '',
    ...table(
      ['user', ...Object.keys(swept[0]!.noise!.analysis.schemes).map(md)],
      ['l', ...Object.keys(swept[0]!.noise!.analysis.schemes).map((): 'r' => 'r')],
      swept.map((u) => [
        md(u.user),
        ...Object.keys(swept[0]!.noise!.analysis.schemes).map((s) => {
          const p = u.noise!.analysis.schemes[s];
          return p === undefined ? 'n/a' : `${sci(p.rms)}: ${f(p.ratio, RATIO_DECIMALS)}`;
        }),
      ]),
    ),
  ];
  return out;
}

// ---- plot -----------------------------------------------------------------------------------------

const PLOT: SvgFrame = { width: 980, height: 600, left: 80, right: 700, top: 50, bottom: 520 };
const USER_COLOURS = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#8C564B'];

/**
 * ppl ratio to the reference (log y) against RMS gain error (log x), test split: per user (colour)
 * the noise curves as lines (solid uniform, dashed Gaussian; the median over the seeds), every scheme
 * as a point, and the user's no-adapter ratio as a dotted line. Marks carry data-* attributes with
 * the plotted values.
 */
export function renderNoisePlot(r: AdapterCompressResults): string {
  const swept = r.users.filter((u) => u.noise !== undefined);
  if (swept.length === 0) throw new Error('noise plot: no user has a noise sweep (run the bet with --noise)');
  const F = PLOT;
  const { reference } = r.criteria.criteria.conditions;
  const median = (col: number[]): number => {
    const s = col.slice().sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  };
  const curves = swept.flatMap((u, ui) =>
    NOISE_DISTRIBUTIONS.map((d) => {
      const m = u.noise!.measured;
      const rows = u.noise!.analysis.curves[d].ratio;
      return { user: u.user, ui, d, pts: m.rms.map((x, k) => [x, median(rows.map((row) => row[k]!))] as [number, number]) };
    }),
  );
  const points = swept.flatMap((u, ui) =>
    Object.entries(u.noise!.analysis.schemes)
      .filter(([, p]) => p.rms > 0)
      .map(([s, p]) => ({ user: u.user, ui, scheme: s, rms: p.rms, ratio: p.ratio })),
  );
  const xs = [...curves.flatMap((c) => c.pts.map((p) => p[0])), ...points.map((p) => p.rms)];
  const ys = [
    ...curves.flatMap((c) => c.pts.map((p) => p[1])),
    ...points.map((p) => p.ratio),
    ...swept.map((u) => u.noise!.analysis.thresholds.noAdapter),
    r.criteria.criteria.strict.maxRatio,
  ].filter((y) => y > 0);
  const [lx0, lx1] = [Math.log10(Math.min(...xs)) - 0.1, Math.log10(Math.max(...xs)) + 0.1];
  const [ly0, ly1] = [Math.log10(Math.min(...ys, 0.99)) - 0.02, Math.log10(Math.max(...ys)) + 0.05];
  const sx = (x: number): number => F.left + ((Math.log10(x) - lx0) / (lx1 - lx0)) * (F.right - F.left);
  const sy = (y: number): number => F.bottom - ((Math.log10(y) - ly0) / (ly1 - ly0)) * (F.bottom - F.top);
  const colour = (ui: number): string => USER_COLOURS[ui % USER_COLOURS.length]!;
  const o = svgHead(F, 'Noise margin', `ppl ratio to ${reference} vs RMS gain error (test split)`);
  o.push(...yTicks(10 ** ly0, 10 ** ly1, sy, F.left, F.right, 'ratio', logRatioTicks(10 ** ly0, 10 ** ly1)));
  o.push('<g class="x-ticks">');
  for (let k = Math.ceil(lx0); k <= Math.floor(lx1); k++) {
    const x = sx(10 ** k);
    o.push(`<line x1="${n2(x)}" y1="${F.bottom}" x2="${n2(x)}" y2="${F.bottom + 5}" stroke="#000000"/>`);
    o.push(`<text x="${n2(x)}" y="${F.bottom + 18}" text-anchor="middle" data-rms="${10 ** k}">1e${k}</text>`);
  }
  o.push('</g>');
  o.push(...axisTitles(F, 'RMS gain error (log)', 40, `ppl / ppl(${reference}) (log)`));
  const strict = r.criteria.criteria.strict.maxRatio;
  o.push(
    `<line class="strict" x1="${F.left}" y1="${n2(sy(strict))}" x2="${F.right}" y2="${n2(sy(strict))}" stroke="#888888" data-ratio="${strict}"/>`,
  );
  for (const [ui, u] of swept.entries()) {
    const y = sy(u.noise!.analysis.thresholds.noAdapter);
    o.push(
      `<line class="no-adapter" x1="${F.left}" y1="${n2(y)}" x2="${F.right}" y2="${n2(y)}" stroke="${colour(ui)}" stroke-dasharray="2,3" data-user="${xmlEscape(u.user)}" data-ratio="${u.noise!.analysis.thresholds.noAdapter}"/>`,
    );
  }
  for (const c of curves) {
    const d = c.pts.map(([x, y], k) => `${k === 0 ? 'M' : 'L'}${n2(sx(x))},${n2(sy(y))}`).join('');
    o.push(
      `<path class="noise-curve" d="${d}" fill="none" stroke="${colour(c.ui)}" stroke-width="1.5"${c.d === 'gaussian' ? ' stroke-dasharray="6,3"' : ''} data-user="${xmlEscape(c.user)}" data-noise="${c.d}"/>`,
    );
  }
  for (const p of points) {
    o.push(
      `<circle class="scheme" cx="${n2(sx(p.rms))}" cy="${n2(sy(p.ratio))}" r="4" fill="${colour(p.ui)}" data-user="${xmlEscape(p.user)}" data-scheme="${xmlEscape(p.scheme)}" data-rms="${p.rms}" data-ratio="${p.ratio}"><title>${xmlEscape(`${p.user} ${p.scheme}`)}</title></circle>`,
    );
  }
  let ly = F.top;
  o.push('<g class="legend">');
  for (const [ui, u] of swept.entries()) {
    o.push(`<rect x="${F.right + 20}" y="${ly}" width="12" height="12" fill="${colour(ui)}"/>`);
    o.push(`<text x="${F.right + 38}" y="${ly + 10}">${xmlEscape(u.user)}</text>`);
    ly += 18;
  }
  o.push(`<text x="${F.right + 20}" y="${ly + 14}">solid: uniform noise, dashed: Gaussian</text>`);
  o.push(`<text x="${F.right + 20}" y="${ly + 32}">dots: schemes; dotted: no adapter</text>`);
  o.push('</g>', '</svg>', '');
  return o.join('\n');
}

export function writeNoisePlot(path: string, r: AdapterCompressResults): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileAtomic(path, renderNoisePlot(r));
}
