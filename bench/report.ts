// What the benchmarks share for their reports: number formats, the aligned
// text table, medians, git state, the atomic write of the results JSON, the 107 M
// config and the multiply-accumulates of a model config's block linears.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

import { defaultModelConfig, type ModelConfig } from '../lib/model/model.js';

/** The median of samples (NaN for none). */
export function median(v: readonly number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function fmtTime(s: number | undefined): string {
  if (s === undefined) return '-';
  if (s < 1e-3) return `${(s * 1e6).toPrecision(3)} us`;
  if (s < 1) return `${(s * 1e3).toPrecision(3)} ms`;
  return `${s.toPrecision(3)} s`;
}

export function fmtNum(v: number | undefined, digits = 3): string {
  if (v === undefined || !Number.isFinite(v)) return '-';
  if (Math.abs(v) >= 10 ** digits) return v.toFixed(0);
  return v.toPrecision(digits);
}

export function fmtPct(v: number | undefined): string {
  return v === undefined || !Number.isFinite(v) ? '-' : `${(v * 100).toFixed(0)}%`;
}

export function fmtRatio(v: number | undefined): string {
  return v === undefined || !Number.isFinite(v) ? '-' : `${v.toPrecision(3)}x`;
}

export function fmtBytes(b: number): string {
  if (b >= 1 << 30) return `${+(b / (1 << 30)).toFixed(1)} GiB`;
  if (b >= 1 << 20) return `${+(b / (1 << 20)).toFixed(1)} MiB`;
  if (b >= 1 << 10) return `${+(b / (1 << 10)).toFixed(1)} KiB`;
  return `${b} B`;
}

// Aligned text table: numbers (and '-') right-aligned, text left-aligned.
export function table(headers: string[], rows: string[][], indent = '  '): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = headers.map((_, i) =>
    rows.every((r) => /^[-+]?[\d.]+(e[-+]?\d+)?( ?(us|ms|s|x|%))?$|^-$|^(SKIPPED|ERROR)$/.test(r[i] ?? '-')),
  );
  const line = (cells: string[], head: boolean) =>
    indent +
    cells
      .map((c, i) => {
        const w = widths[i] ?? 0;
        return !head && numeric[i] ? c.padStart(w) : c.padEnd(w);
      })
      .join('  ')
      .trimEnd();
  return [line(headers, true), indent + widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map((r) => line(r, false))].join('\n');
}

/** git's trimmed output in `cwd`, or undefined when git fails (not a checkout, no git). */
export function gitOutput(cwd: string, args: string[]): string | undefined {
  const r = spawnSync('git', args, { cwd, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

export function writeAtomic(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, path);
  } catch (e) {
    if (existsSync(tmp)) unlinkSync(tmp);
    throw e;
  }
}

/** Replaces what stands between a benchmark's two marker lines in a README (atomically). */
export function writeReadmeSection(readme: string, begin: string, end: string, md: string): void {
  const text = readFileSync(readme, 'utf8');
  const a = text.indexOf(begin),
    b = text.indexOf(end);
  if (a < 0 || b < a) throw new Error(`${readme} lacks the markers ${begin} ... ${end}`);
  writeAtomic(readme, text.slice(0, a + begin.length) + '\n' + md + '\n' + text.slice(b));
}

/** One measured point of a benchmark target: its value and whether it meets the threshold. */
export interface TargetPoint {
  label: string;
  value: number | null;
  pass: boolean | null;
  note?: string;
}

/** A target of an issue judged over points; the benchmarks add their own summary fields. */
export interface Target {
  id: string;
  description: string;
  threshold: number;
  unit: string;
  verdict: 'pass' | 'fail' | 'incomplete' | 'not measured';
  points: TargetPoint[];
  note?: string;
}

/** The shape of a llama-arch config that sets its block linears (nKvHeads 0: as many as nHeads). */
export interface LinearShape {
  dModel: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  dFf: number;
}

/**
 * Multiply-accumulates of one token through the block linears (the ternary weights: one each), per
 * projection of one layer and for the whole stack.
 */
export function blockLinearMacs(c: LinearShape): {
  qkv: number;
  o: number;
  gateUp: number;
  down: number;
  perLayer: number;
  perToken: number;
} {
  const kvd = ((c.nKvHeads > 0 ? c.nKvHeads : c.nHeads) * c.dModel) / c.nHeads;
  const m = { qkv: c.dModel * (c.dModel + 2 * kvd), o: c.dModel * c.dModel, gateUp: c.dModel * 2 * c.dFf, down: c.dFf * c.dModel };
  const perLayer = m.qkv + m.o + m.gateUp + m.down;
  return { ...m, perLayer, perToken: perLayer * c.nLayers };
}

/** The 107 M-parameter config the speed benchmarks run besides the shipped model (random weights from Model.create). */
export function config107m(): ModelConfig {
  return { ...defaultModelConfig(), dModel: 1024, nLayers: 8, nHeads: 16, nKvHeads: 16, dFf: 2816 };
}
