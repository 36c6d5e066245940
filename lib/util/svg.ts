// The frame of a hand-written SVG chart, shared by the bet's rate-distortion plot (lib/bet/plot.ts)
// and the base model's loss curve (lib/model/base-record.ts): the document head, background,
// heading, the two axes, y ticks with grid lines, axis titles; and the escaping and number format
// every mark uses.

/** The chart's size and the plotting area's edges, in SVG units. */
export interface SvgFrame {
  width: number;
  height: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

/** Escapes text for XML content and attribute values. */
export function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** A coordinate with at most 2 decimals. */
export const n2 = (v: number): string => (Math.round(v * 100) / 100).toString();

/** "Nice" linear ticks (steps of 1, 2 or 5 x 10^k) covering [lo, hi], about `count` of them. */
export function niceTicks(lo: number, hi: number, count = 6): number[] {
  if (!(Number.isFinite(lo) && Number.isFinite(hi) && hi > lo)) throw new RangeError(`niceTicks: bad range [${lo}, ${hi}]`);
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) ticks.push(Number((k * step).toPrecision(12)));
  return ticks;
}

/** The document head, background and heading, and the two axes of the plotting area. */
export function svgHead(f: SvgFrame, title: string, heading: string): string[] {
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" width="${f.width}" height="${f.height}" viewBox="0 0 ${f.width} ${f.height}" font-family="sans-serif" font-size="12">`,
    `<title>${xmlEscape(title)}</title>`,
    `<rect x="0" y="0" width="${f.width}" height="${f.height}" fill="#ffffff"/>`,
    `<text x="${(f.left + f.right) / 2}" y="28" text-anchor="middle" font-size="15">${xmlEscape(heading)}</text>`,
    '<g class="axes" stroke="#000000" stroke-width="1">',
    `<line x1="${f.left}" y1="${f.bottom}" x2="${f.right}" y2="${f.bottom}"/>`,
    `<line x1="${f.left}" y1="${f.top}" x2="${f.left}" y2="${f.bottom}"/>`,
    '</g>',
  ];
}

/** The axis titles: x centred `xBelow` under the plotting area, y rotated at the left edge. */
export function axisTitles(f: SvgFrame, x: string, xBelow: number, y: string): string[] {
  const mid = (f.top + f.bottom) / 2;
  return [
    `<text x="${(f.left + f.right) / 2}" y="${f.bottom + xBelow}" text-anchor="middle">${xmlEscape(x)}</text>`,
    `<text x="22" y="${mid}" text-anchor="middle" transform="rotate(-90 22 ${mid})">${xmlEscape(y)}</text>`,
  ];
}

/** The y axis's ticks between y0 and y1: grid line, tick mark and label (data-<attr> = value). */
export function yTicks(
  y0: number,
  y1: number,
  sy: (v: number) => number,
  left: number,
  right: number,
  attr: string,
  ticks: readonly number[] = niceTicks(y0, y1),
): string[] {
  const o = ['<g class="y-ticks">'];
  for (const t of ticks) {
    if (t < y0 || t > y1) continue;
    const y = sy(t);
    o.push(`<line x1="${left}" y1="${n2(y)}" x2="${right}" y2="${n2(y)}" stroke="#e0e0e0"/>`);
    o.push(`<line x1="${left - 5}" y1="${n2(y)}" x2="${left}" y2="${n2(y)}" stroke="#000000"/>`);
    o.push(`<text x="${left - 8}" y="${n2(y + 4)}" text-anchor="end" data-${attr}="${t}">${xmlEscape(String(t))}</text>`);
  }
  o.push('</g>');
  return o;
}
