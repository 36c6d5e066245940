// The rate-distortion plot of the bet, written by hand as SVG text: encoded bytes per user (x, log
// scale) against the test-split perplexity ratio to the reference (y, linear), one point per
// encoding per user (colour = encoding, marker = user) with its bootstrap interval as a vertical
// bar; a horizontal line at the STRICT ratio (1.5x by default; the LENIENT and policy ratios too when
// they differ and fall in range) and one dashed line per user at that user's no-adapter ratio
// (points above it are worse than shipping no adapter to that user). Every mark carries data-*
// attributes with the exact plotted values, so the figure can be checked against the results.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { writeFileAtomic } from '../util/files.js';
import { axisTitles, n2, svgHead, xmlEscape, yTicks, type SvgFrame } from '../util/svg.js';
import type { AdapterCompressResults } from './results.js';

const W = 980;
const H = 600;
const LEFT = 80;
const RIGHT = 700;
const TOP = 50;
const BOTTOM = 520;
const FRAME: SvgFrame = { width: W, height: H, left: LEFT, right: RIGHT, top: TOP, bottom: BOTTOM };

// Okabe-Ito then Tableau colours: distinguishable, also with colour-vision deficiencies first.
const COLOURS = [
  '#0072B2',
  '#D55E00',
  '#009E73',
  '#CC79A7',
  '#E69F00',
  '#56B4E9',
  '#000000',
  '#8C564B',
  '#7F7F7F',
  '#BCBD22',
  '#17BECF',
  '#9467BD',
  '#F0E442',
];
const MARKERS = ['circle', 'square', 'triangle', 'diamond', 'down', 'cross'] as const;

interface Point {
  user: string;
  scheme: string;
  bytes: number;
  ratio: number;
  low: number;
  high: number;
}

function marker(kind: (typeof MARKERS)[number], x: number, y: number, fill: string, attrs: string): string {
  const r = 5;
  switch (kind) {
    case 'circle':
      return `<circle cx="${n2(x)}" cy="${n2(y)}" r="${r}" fill="${fill}" ${attrs}/>`;
    case 'square':
      return `<rect x="${n2(x - r)}" y="${n2(y - r)}" width="${2 * r}" height="${2 * r}" fill="${fill}" ${attrs}/>`;
    case 'cross':
      return `<path d="M${n2(x - r)},${n2(y - r)}L${n2(x + r)},${n2(y + r)}M${n2(x - r)},${n2(y + r)}L${n2(x + r)},${n2(y - r)}" stroke="${fill}" stroke-width="2" fill="none" ${attrs}/>`;
    default: {
      const pts =
        kind === 'triangle'
          ? [
              [x, y - r - 1],
              [x + r + 1, y + r],
              [x - r - 1, y + r],
            ]
          : kind === 'down'
            ? [
                [x, y + r + 1],
                [x + r + 1, y - r],
                [x - r - 1, y - r],
              ]
            : [
                [x, y - r - 1],
                [x + r + 1, y],
                [x, y + r + 1],
                [x - r - 1, y],
              ];
      return `<polygon points="${pts.map(([a, b]) => `${n2(a!)},${n2(b!)}`).join(' ')}" fill="${fill}" ${attrs}/>`;
    }
  }
}

/** Ticks of a logarithmic ratio axis: 1, 1.1, 1.2, 1.5, 2, 3, 5 and their powers of ten inside [y0, y1]. */
export function logRatioTicks(y0: number, y1: number): number[] {
  const out: number[] = [];
  for (let k = Math.floor(Math.log10(y0)) - 1; k <= Math.ceil(Math.log10(y1)); k++) {
    for (const m of [1, 1.1, 1.2, 1.5, 2, 3, 5]) {
      const t = Number((m * 10 ** k).toPrecision(6));
      if (t >= y0 && t <= y1) out.push(t);
    }
  }
  return out;
}

/** The SVG rate-distortion plot of a results object (test split). */
export function renderPlot(r: AdapterCompressResults): string {
  if (r.users.length === 0) throw new Error('plot: the results have no users yet');
  const c = r.criteria.criteria;
  const { noAdapter, reference } = c.conditions;
  const encodings = r.conditions.filter((x) => x !== noAdapter);
  const points: Point[] = [];
  for (const u of r.users) {
    for (const s of encodings) {
      const st = u.test.conditions[s]!;
      const rr = st.ratioToReference;
      points.push({
        user: u.user,
        scheme: s,
        bytes: u.encodings[s]!.bytes,
        ratio: rr === null ? 1 : rr.value,
        low: rr === null ? 1 : rr.ci.low,
        high: rr === null ? 1 : rr.ci.high,
      });
    }
  }
  const noneLines = r.users.map((u) => ({ user: u.user, ratio: u.test.conditions[noAdapter]!.ratioToReference!.value }));

  // x: log10 of the sizes, padded so no point sits on an axis
  const lb = points.map((p) => Math.log10(p.bytes));
  let x0 = Math.min(...lb);
  let x1 = Math.max(...lb);
  const xpad = Math.max(x1 - x0, 0.5) * 0.08;
  x0 -= xpad;
  x1 += xpad;
  const sx = (b: number): number => LEFT + ((Math.log10(b) - x0) / (x1 - x0)) * (RIGHT - LEFT);

  // y: every point's interval, the strict line and the no-adapter lines, padded by 5%
  const ys = [...points.flatMap((p) => [p.low, p.high]), c.strict.maxRatio, ...noneLines.map((l) => l.ratio), 1];
  let y0 = Math.min(...ys);
  let y1 = Math.max(...ys);
  const pad = (y1 - y0) * 0.05 || 0.05;
  y0 -= pad;
  y1 += pad;
  // A no-adapter line far above the encodings (a user the adapter helps a lot) would squeeze every
  // encoding against the x axis: past a 3x span the ratio axis is logarithmic.
  const logY = y1 / Math.max(y0, 1e-9) > 3;
  if (logY) {
    y0 = Math.min(...ys) / 1.05;
    y1 = Math.max(...ys) * 1.05;
  }
  const f = (v: number): number => (logY ? Math.log(v) : v);
  const sy = (v: number): number => BOTTOM - ((f(v) - f(y0)) / (f(y1) - f(y0))) * (BOTTOM - TOP);

  const userIndex = new Map(r.users.map((u, i) => [u.user, i]));
  const colour = (s: string): string => COLOURS[encodings.indexOf(s) % COLOURS.length]!;
  const markerOf = (u: string): (typeof MARKERS)[number] => MARKERS[userIndex.get(u)! % MARKERS.length]!;
  const e = xmlEscape;

  const o: string[] = svgHead(
    FRAME,
    `Rate-distortion of adapter encodings: bytes per user against perplexity ratio to ${reference} (test split)`,
    `Adapter encodings: size against perplexity ratio to ${reference} (test split)`,
  );

  // ticks, grid
  o.push('<g class="x-ticks">');
  // labelled ticks at 1, 2 and 5 x 10^k bytes, minor ticks at the other integers x 10^k
  for (let k = Math.floor(x0); k <= Math.ceil(x1); k++) {
    for (let m = 1; m <= 9; m++) {
      const b = m * 10 ** k;
      const lg = Math.log10(b);
      if (lg < x0 || lg > x1) continue;
      const x = sx(b);
      if (m === 1 || m === 2 || m === 5) {
        o.push(`<line x1="${n2(x)}" y1="${TOP}" x2="${n2(x)}" y2="${BOTTOM}" stroke="#e0e0e0"/>`);
        o.push(`<line x1="${n2(x)}" y1="${BOTTOM}" x2="${n2(x)}" y2="${BOTTOM + 5}" stroke="#000000"/>`);
        o.push(`<text x="${n2(x)}" y="${BOTTOM + 19}" text-anchor="middle" data-bytes="${b}">${b}</text>`);
      } else {
        o.push(`<line x1="${n2(x)}" y1="${BOTTOM}" x2="${n2(x)}" y2="${BOTTOM + 3}" stroke="#000000"/>`);
      }
    }
  }
  o.push('</g>');
  o.push(...yTicks(y0, y1, sy, LEFT, RIGHT, 'ratio', logY ? logRatioTicks(y0, y1) : undefined));
  o.push(
    ...axisTitles(FRAME, 'encoded bytes per user (log scale)', 45, `perplexity / perplexity of ${reference}${logY ? ' (log scale)' : ''}`),
  );

  // threshold lines
  const lines: { label: string; ratio: number; dash: string; colour: string; kind: string; user?: string }[] = [
    { label: `STRICT ${c.strict.maxRatio}x ${reference}`, ratio: c.strict.maxRatio, dash: '', colour: '#b00020', kind: 'strict' },
  ];
  if (c.lenient.maxRatio !== c.strict.maxRatio && c.lenient.maxRatio <= y1) {
    lines.push({ label: `LENIENT ${c.lenient.maxRatio}x`, ratio: c.lenient.maxRatio, dash: '2,3', colour: '#b00020', kind: 'lenient' });
  }
  if (c.policy.maxRatio !== c.strict.maxRatio && c.policy.maxRatio >= y0 && c.policy.maxRatio <= y1) {
    lines.push({ label: `policy ${c.policy.maxRatio}x`, ratio: c.policy.maxRatio, dash: '8,3', colour: '#7a0000', kind: 'policy' });
  }
  for (const l of noneLines) {
    lines.push({ label: `${noAdapter}: ${l.user}`, ratio: l.ratio, dash: '6,4', colour: '#555555', kind: 'no-adapter', user: l.user });
  }
  o.push('<g class="lines">');
  for (const l of lines) {
    const y = sy(l.ratio);
    const userAttr = l.user === undefined ? '' : ` data-user="${e(l.user)}"`;
    o.push(
      `<line x1="${LEFT}" y1="${n2(y)}" x2="${RIGHT}" y2="${n2(y)}" stroke="${l.colour}" stroke-width="1.2"${l.dash === '' ? '' : ` stroke-dasharray="${l.dash}"`} data-kind="${l.kind}"${userAttr} data-ratio="${l.ratio}"><title>${e(`${l.label}: ${l.ratio.toFixed(4)}`)}</title></line>`,
    );
    // the user's marker just outside the plot, so it never hides a point
    if (l.user !== undefined) o.push(marker(markerOf(l.user), RIGHT + 10, y, '#555555', ''));
    o.push(`<text x="${RIGHT - 4}" y="${n2(y - 4)}" text-anchor="end" fill="${l.colour}">${e(l.label)}</text>`);
  }
  o.push('</g>');

  // points with their intervals
  o.push('<g class="points">');
  for (const p of points) {
    const x = sx(p.bytes);
    const col = colour(p.scheme);
    const attrs = `data-user="${e(p.user)}" data-scheme="${e(p.scheme)}" data-bytes="${p.bytes}" data-ratio="${p.ratio}" data-low="${p.low}" data-high="${p.high}"`;
    o.push(`<g class="point" ${attrs}>`);
    o.push(
      `<title>${e(`${p.user}, ${p.scheme}: ${p.bytes} bytes, ratio ${p.ratio.toFixed(4)} [${p.low.toFixed(4)}, ${p.high.toFixed(4)}]`)}</title>`,
    );
    if (p.high > p.low)
      o.push(`<line x1="${n2(x)}" y1="${n2(sy(p.low))}" x2="${n2(x)}" y2="${n2(sy(p.high))}" stroke="${col}" stroke-width="1.5"/>`);
    o.push(marker(markerOf(p.user), x, sy(p.ratio), col, 'stroke="#ffffff" stroke-width="0.5"'));
    o.push('</g>');
  }
  o.push('</g>');

  // legend: encodings (colour), users (marker), lines
  const lx = RIGHT + 30;
  let ly = TOP + 5;
  o.push('<g class="legend">');
  o.push(`<text x="${lx}" y="${ly}" font-weight="bold">encoding</text>`);
  for (const s of encodings) {
    ly += 17;
    o.push(`<rect x="${lx}" y="${ly - 9}" width="10" height="10" fill="${colour(s)}"/><text x="${lx + 16}" y="${ly}">${e(s)}</text>`);
  }
  ly += 26;
  o.push(`<text x="${lx}" y="${ly}" font-weight="bold">user</text>`);
  for (const u of r.users) {
    ly += 17;
    o.push(marker(markerOf(u.user), lx + 5, ly - 4, '#333333', ''));
    o.push(`<text x="${lx + 16}" y="${ly}">${e(u.user)}</text>`);
  }
  ly += 26;
  o.push(`<text x="${lx}" y="${ly}" font-weight="bold">lines</text>`);
  ly += 17;
  o.push(
    `<line x1="${lx}" y1="${ly - 4}" x2="${lx + 12}" y2="${ly - 4}" stroke="#b00020" stroke-width="1.2"/><text x="${lx + 16}" y="${ly}">${e(`STRICT: ${c.strict.maxRatio}x ${reference}`)}</text>`,
  );
  ly += 17;
  o.push(
    `<line x1="${lx}" y1="${ly - 4}" x2="${lx + 12}" y2="${ly - 4}" stroke="#555555" stroke-dasharray="6,4" stroke-width="1.2"/><text x="${lx + 16}" y="${ly}">${e(`${noAdapter} (per user)`)}</text>`,
  );
  ly += 17;
  o.push(`<text x="${lx}" y="${ly}" fill="#555555">${e('bars: bootstrap interval')}</text>`);
  o.push('</g>');
  o.push('</svg>');
  return o.join('\n') + '\n';
}

/** Renders the plot and writes it atomically. */
export function writePlot(path: string, r: AdapterCompressResults): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileAtomic(path, renderPlot(r));
}
