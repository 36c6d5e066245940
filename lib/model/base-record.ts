// The base model's record (models/README.md) and its loss curve
// (models/training-curve.svg), computed from what the runs wrote: the model
// files' meta (train-base.ts: options, token counts, validation history, final
// losses) and the `/usr/bin/time -v` logs of the runs (command, wall time, peak
// RSS). Nothing in the record is typed by hand. The command is scripts/base-record.ts
// (`npm run models:record`).

import { mkdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

import { getFixtures, type FixtureManifest } from '../data/fixtures.js';
import { readTextFile, writeFileAtomic } from '../util/files.js';
import { packageRoot } from '../util/package-root.js';
import { axisTitles, n2, niceTicks, svgHead, xmlEscape, yTicks, type SvgFrame } from '../util/svg.js';
import { Model, resolveModelConfig } from './model.js';
import { resolveBaseRun, type BaseRunOptions, type BaseRunRequest, type ValidationPoint } from './train-base.js';

/** What train-base stores in a model file's meta. */
export interface BaseRunMeta {
  options: BaseRunOptions;
  source: unknown;
  trainTokens: number;
  validationTokens: number;
  /** Validation points during training (the last step is in `final`). */
  validation: ValidationPoint[];
  /** The model file's own validation point: ternary weights (after PTQ for an fp32 run). */
  final: ValidationPoint;
  /** An fp32 run scored with its fp32 weights, before post-training quantisation; null for a ternary run. */
  finalFp32: ValidationPoint | null;
}

/** What `/usr/bin/time -v` says about a run. */
export interface TimeLog {
  command: string;
  wallSeconds: number;
  maxRssBytes: number;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const int = (n: number): string => n.toLocaleString('en-US');

function parsePoint(v: unknown, where: string): ValidationPoint {
  if (!isObj(v) || !isNum(v.step) || !isNum(v.loss) || !isNum(v.bitsPerByte) || !(v.trainLoss === null || isNum(v.trainLoss))) {
    throw new Error(`${where} is not a validation point {step, loss, bitsPerByte, trainLoss}`);
  }
  return { step: v.step, loss: v.loss, bitsPerByte: v.bitsPerByte, trainLoss: v.trainLoss };
}

/** Checks a model file's meta and returns the train-base record in it. */
export function parseBaseMeta(meta: unknown, where: string): BaseRunMeta {
  if (!isObj(meta) || meta.format !== 'ternorm.train-base') {
    throw new Error(
      `${where}: the meta is not a train-base record (format "ternorm.train-base"): was this file written by ternorm train-base?`,
    );
  }
  if (meta.version !== 1) throw new Error(`${where}: train-base record version ${String(meta.version)}, this build reads 1`);
  if (!isNum(meta.trainTokens) || !isNum(meta.validationTokens)) throw new Error(`${where}: the record lacks trainTokens/validationTokens`);
  if (!Array.isArray(meta.validation)) throw new Error(`${where}: the record lacks its validation history`);
  const options = resolveBaseRun(meta.options as BaseRunRequest);
  const finalFp32 = meta.finalFp32 === null || meta.finalFp32 === undefined ? null : parsePoint(meta.finalFp32, `${where}: finalFp32`);
  if (options.mode === 'fp32' && finalFp32 === null)
    throw new Error(`${where}: an fp32 run's record lacks finalFp32 (its fp32-weight validation)`);
  return {
    options,
    source: meta.source ?? null,
    trainTokens: meta.trainTokens,
    validationTokens: meta.validationTokens,
    validation: meta.validation.map((p, i) => parsePoint(p, `${where}: validation[${i}]`)),
    final: parsePoint(meta.final, `${where}: final`),
    finalFp32,
  };
}

/** Wall time, command and peak RSS from the `/usr/bin/time -v` report at the end of a run's log. */
export function parseTimeLog(text: string, where: string): TimeLog {
  const line = (label: string): string | undefined => {
    const m = new RegExp(`^\\s*${label.replace(/[()]/g, '\\$&')}: (.*)$`, 'm').exec(text);
    return m?.[1]?.trim();
  };
  const elapsed = line('Elapsed (wall clock) time (h:mm:ss or m:ss)');
  const rss = line('Maximum resident set size (kbytes)');
  const command = line('Command being timed');
  const exit = line('Exit status');
  if (elapsed === undefined || rss === undefined || command === undefined || exit === undefined) {
    throw new Error(
      `${where} holds no complete /usr/bin/time -v report (command, elapsed time, maximum RSS, exit status): has the run finished?`,
    );
  }
  if (exit !== '0') throw new Error(`${where}: the run exited with status ${exit}; its model file is not a finished run`);
  const parts = elapsed.split(':');
  if (parts.length < 2 || parts.length > 3 || !parts.every((p) => /^\d+(\.\d+)?$/.test(p))) {
    throw new Error(`${where}: cannot read the elapsed time '${elapsed}' (expected h:mm:ss or m:ss)`);
  }
  const wallSeconds = parts.reduce((acc, p) => acc * 60 + Number(p), 0);
  if (!/^\d+$/.test(rss)) throw new Error(`${where}: cannot read the maximum resident set size '${rss}'`);
  return { command: command.replace(/^"(.*)"$/, '$1'), wallSeconds, maxRssBytes: Number(rss) * 1024 };
}

// Two runs are comparable when only their mode differs: same shape, data, seed and schedule.
function checkPair(ternary: BaseRunMeta, fp32: BaseRunMeta): void {
  if (ternary.options.mode !== 'ternary') throw new Error(`the --ternary run has mode '${ternary.options.mode}', expected 'ternary'`);
  if (fp32.options.mode !== 'fp32') throw new Error(`the --fp32 run has mode '${fp32.options.mode}', expected 'fp32'`);
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  const { mode: _m1, ...a } = ternary.options;
  const { mode: _m2, ...b } = fp32.options;
  for (const k of Object.keys(a) as (keyof typeof a)[]) {
    if (!same(a[k], b[k]))
      throw new Error(`the two runs differ in ${k} (${JSON.stringify(a[k])} vs ${JSON.stringify(b[k])}): they are not comparable`);
  }
  if (
    !same(ternary.source, fp32.source) ||
    ternary.validationTokens !== fp32.validationTokens ||
    ternary.trainTokens !== fp32.trainTokens
  ) {
    throw new Error('the two runs were trained or validated on different texts: they are not comparable');
  }
}

// ---- the loss curve ------------------------------------------------------------------------------

const W = 880;
const H = 470;
const LEFT = 70;
const RIGHT = 580;
const TOP = 50;
const BOTTOM = 400;
const FRAME: SvgFrame = { width: W, height: H, left: LEFT, right: RIGHT, top: TOP, bottom: BOTTOM };
const COLOUR = { ternary: '#0072B2', fp32: '#D55E00' } as const;

interface Series {
  run: 'ternary' | 'fp32';
  kind: 'train' | 'validation';
  label: string;
  points: { step: number; loss: number }[];
}

function series(ternary: BaseRunMeta, fp32: BaseRunMeta): Series[] {
  const val = (r: BaseRunMeta, last: ValidationPoint) => [...r.validation, last];
  const train = (pts: ValidationPoint[]) => pts.flatMap((p) => (p.trainLoss === null ? [] : [{ step: p.step, loss: p.trainLoss }]));
  const points = (pts: ValidationPoint[]) => pts.map((p) => ({ step: p.step, loss: p.loss }));
  return [
    { run: 'ternary', kind: 'train', label: 'ternary-aware: train loss', points: train(val(ternary, ternary.final)) },
    { run: 'ternary', kind: 'validation', label: 'ternary-aware: validation loss', points: points(val(ternary, ternary.final)) },
    { run: 'fp32', kind: 'train', label: 'fp32: train loss', points: train(val(fp32, fp32.finalFp32!)) },
    { run: 'fp32', kind: 'validation', label: 'fp32: validation loss (fp32 weights)', points: points(val(fp32, fp32.finalFp32!)) },
  ];
}

/**
 * The SVG loss curve: train and validation loss (nats/token) against the step, for the
 * ternary-aware run and the fp32 run, and the fp32 run's validation loss after post-training
 * quantisation as one marker at the last step. Every point carries data-step/data-loss.
 */
export function renderLossCurve(ternary: BaseRunMeta, fp32: BaseRunMeta): string {
  checkPair(ternary, fp32);
  const all = series(ternary, fp32);
  const ptq = { step: fp32.final.step, loss: fp32.final.loss };
  const losses = [...all.flatMap((s) => s.points.map((p) => p.loss)), ptq.loss];
  let y0 = Math.min(...losses);
  let y1 = Math.max(...losses);
  const pad = (y1 - y0) * 0.05 || 0.05;
  y0 -= pad;
  y1 += pad;
  const x1 = Math.max(ternary.options.steps, fp32.options.steps);
  const sx = (s: number): number => LEFT + (s / x1) * (RIGHT - LEFT);
  const sy = (v: number): number => BOTTOM - ((v - y0) / (y1 - y0)) * (BOTTOM - TOP);
  const e = xmlEscape;

  const o: string[] = svgHead(
    FRAME,
    'Base model training: train and validation loss against step, ternary-aware and fp32 runs',
    'Base model: loss against training step',
  );
  o.push('<g class="x-ticks">');
  for (const t of niceTicks(0, x1)) {
    if (t < 0 || t > x1) continue;
    const x = sx(t);
    o.push(`<line x1="${n2(x)}" y1="${TOP}" x2="${n2(x)}" y2="${BOTTOM}" stroke="#e0e0e0"/>`);
    o.push(`<line x1="${n2(x)}" y1="${BOTTOM}" x2="${n2(x)}" y2="${BOTTOM + 5}" stroke="#000000"/>`);
    o.push(`<text x="${n2(x)}" y="${BOTTOM + 19}" text-anchor="middle" data-step="${t}">${t}</text>`);
  }
  o.push('</g>');
  o.push(...yTicks(y0, y1, sy, LEFT, RIGHT, 'loss'));
  o.push(...axisTitles(FRAME, 'training step', 42, 'loss (nats/token)'));

  // train losses dashed and thin (means over the steps since the previous point), validation solid
  for (const s of all) {
    const col = COLOUR[s.run];
    const dash = s.kind === 'train' ? ' stroke-dasharray="5,3"' : '';
    o.push(`<g class="series" data-run="${s.run}" data-kind="${s.kind}">`);
    o.push(`<title>${e(s.label)}</title>`);
    o.push(
      `<polyline points="${s.points.map((p) => `${n2(sx(p.step))},${n2(sy(p.loss))}`).join(' ')}" fill="none" stroke="${col}" stroke-width="${s.kind === 'train' ? 1.2 : 2}"${dash}/>`,
    );
    for (const p of s.points) {
      o.push(
        `<circle cx="${n2(sx(p.step))}" cy="${n2(sy(p.loss))}" r="${s.kind === 'train' ? 2 : 3}" fill="${s.kind === 'train' ? '#ffffff' : col}" stroke="${col}" data-step="${p.step}" data-loss="${p.loss}"/>`,
      );
    }
    o.push('</g>');
  }
  const px = sx(ptq.step);
  const py = sy(ptq.loss);
  o.push(`<g class="series" data-run="fp32" data-kind="ptq">`);
  o.push(`<title>${e(`fp32 after post-training quantisation: validation loss ${ptq.loss.toFixed(4)}`)}</title>`);
  o.push(
    `<polygon points="${n2(px)},${n2(py - 6)} ${n2(px + 6)},${n2(py)} ${n2(px)},${n2(py + 6)} ${n2(px - 6)},${n2(py)}" fill="#ffffff" stroke="${COLOUR.fp32}" stroke-width="2" data-step="${ptq.step}" data-loss="${ptq.loss}"/>`,
  );
  o.push('</g>');

  const lx = RIGHT + 20;
  let ly = TOP + 5;
  o.push('<g class="legend">');
  for (const s of all) {
    ly += 18;
    const dash = s.kind === 'train' ? ' stroke-dasharray="5,3"' : '';
    o.push(
      `<line x1="${lx}" y1="${ly - 4}" x2="${lx + 22}" y2="${ly - 4}" stroke="${COLOUR[s.run]}" stroke-width="${s.kind === 'train' ? 1.2 : 2}"${dash}/><text x="${lx + 28}" y="${ly}">${e(s.label)}</text>`,
    );
  }
  ly += 18;
  o.push(
    `<polygon points="${lx + 11},${ly - 10} ${lx + 17},${ly - 4} ${lx + 11},${ly + 2} ${lx + 5},${ly - 4}" fill="#ffffff" stroke="${COLOUR.fp32}" stroke-width="2"/><text x="${lx + 28}" y="${ly}">${e('fp32 after PTQ (ternarised)')}</text>`,
  );
  ly += 30;
  o.push(`<text x="${lx}" y="${ly}" fill="#555555">${e('train loss: mean batch loss over')}</text>`);
  o.push(`<text x="${lx}" y="${ly + 15}" fill="#555555">${e('the steps since the previous point')}</text>`);
  o.push('</g>');
  o.push('</svg>');
  return o.join('\n') + '\n';
}

// ---- the Markdown record ---------------------------------------------------------------------------

export interface RecordRun {
  meta: BaseRunMeta;
  time: TimeLog;
  /** The model file as the record names it (relative to the package root). */
  file: string;
  fileBytes: number;
  fingerprint: string;
}

export interface RecordInput {
  ternary: RecordRun;
  fp32: RecordRun;
  /** What the validation text is (describeValidationText). */
  validationText: string;
  /** The loss curve's file name, relative to the record. */
  curveFile: string;
}

/** Plain-words description of a run's validation text from its recorded source. */
export function describeValidationText(source: unknown, manifest: FixtureManifest | null): string {
  const s = isObj(source) ? source : {};
  if (s.kind === 'fixtures' && s.text === 'base') {
    if (manifest === null) throw new Error('the runs were validated on the base fixture: its manifest is needed to describe it');
    const t = manifest.texts.base;
    const v = t.parts.validation!;
    return (
      `the validation part of the base fixture (${t.sources.join(', ')}: State of the Union addresses; every ` +
      `${manifest.options.base.validationEvery}th address is held out of training), ${int(v.bytes)} bytes, sha256 ${v.sha256}`
    );
  }
  if (s.kind === 'files' && typeof s.validation === 'string') return `the file ${s.validation}`;
  return `a validation text given to train-base directly (the run recorded no source: ${JSON.stringify(source)})`;
}

function fmtDuration(s: number): string {
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s - 3600 * h - 60 * m;
  return `${h > 0 ? `${h} h ` : ''}${h > 0 || m > 0 ? `${m} min ` : ''}${sec.toFixed(1)} s`;
}

const ppl = (loss: number): string => Math.exp(loss).toFixed(2);

/** The Markdown record of the base model: how it was made and how well it predicts its validation text. */
export function renderRecord(r: RecordInput): string {
  const t = r.ternary.meta;
  const f = r.fp32.meta;
  checkPair(t, f);
  const o = t.options;
  const c = resolveModelConfig(o.config); // records written before nKvHeads/tiedHead existed lack them
  const tokensSeen = o.steps * o.batch * o.seq;
  const isDefault = JSON.stringify(c) === JSON.stringify(resolveModelConfig());
  const out: string[] = [];
  out.push('# The base model');
  out.push('');
  out.push(
    `\`${r.ternary.file}\` is the shipped base model: ${isDefault ? 'the default config' : 'a non-default config'} trained ternary-aware (BitNet b1.58: ternary ` +
      'weights and int8 activations in the forward pass, fp32 latent weights updated through the straight-through estimator). ' +
      'An fp32 run with the same seed, data and schedule is its comparison: scored with its fp32 weights, and again after ' +
      'post-training quantisation (PTQ: its weights ternarised once, after training).',
  );
  out.push('');
  out.push(
    "_Written by `npm run models:record` (lib/model/base-record.ts) from the model files' train-base records and the runs' " +
      '`/usr/bin/time -v` logs. Do not edit the numbers by hand: rerun the tool._',
  );
  out.push('');
  out.push('## How it was trained');
  out.push('');
  out.push('| | ternary-aware (shipped) | fp32 (comparison) |');
  out.push('| --- | --- | --- |');
  const row = (what: string, a: string, b: string) => out.push(`| ${what} | ${a} | ${b} |`);
  row('command (run under `/usr/bin/time -v`)', `\`${r.ternary.time.command}\``, `\`${r.fp32.time.command}\``);
  row(
    'model file',
    `\`${r.ternary.file}\`, ${int(r.ternary.fileBytes)} bytes`,
    `\`${r.fp32.file}\`, ${int(r.fp32.fileBytes)} bytes (not shipped)`,
  );
  row('fingerprint (SHA-256 of the file sections)', `\`${r.ternary.fingerprint}\``, `\`${r.fp32.fingerprint}\``);
  row('seed', String(t.options.seed), String(f.options.seed));
  row('steps × batch × seq', `${int(o.steps)} × ${o.batch} × ${o.seq}`, `${int(f.options.steps)} × ${f.options.batch} × ${f.options.seq}`);
  row('tokens seen (steps × batch × seq)', int(tokensSeen), int(f.options.steps * f.options.batch * f.options.seq));
  row('wall time', fmtDuration(r.ternary.time.wallSeconds), fmtDuration(r.fp32.time.wallSeconds));
  row(
    'peak resident memory',
    `${(r.ternary.time.maxRssBytes / 2 ** 20).toFixed(0)} MiB`,
    `${(r.fp32.time.maxRssBytes / 2 ** 20).toFixed(0)} MiB`,
  );
  out.push('');
  out.push(
    `Config: vocab ${c.vocab} (byte-level BPE trained on the training text), d_model ${c.dModel}, ${c.nLayers} layers, ` +
      `${c.nHeads} heads${c.nKvHeads !== c.nHeads ? ` (${c.nKvHeads} key/value heads)` : ''}, d_ff ${c.dFf}, context ${c.context}` +
      `${c.tiedHead ? '' : ', untied output head'}. AdamW: lr ${o.lr} → ${o.minLr} (cosine, ${o.warmup} warm-up steps), ` +
      `weight decay ${o.weightDecay}, gradient clip ${o.gradClip}. The training text is ${int(t.trainTokens)} tokens, so a run ` +
      `sees it about ${(tokensSeen / t.trainTokens).toFixed(1)} times (windows sampled uniformly, seeded).`,
  );
  out.push('');
  out.push('## Validation text');
  out.push('');
  out.push(
    `${r.validationText[0]!.toUpperCase()}${r.validationText.slice(1)}. Its first ${int(t.validationTokens)} tokens are scored, ` +
      `the same tokens for both runs and at every point of the curve, with sliding windows of ${c.context} tokens (evaluate's ` +
      `default stride, context / 2 = ${c.context / 2}). Perplexity = exp(mean validation loss in nats/token).`,
  );
  out.push('');
  out.push('## Validation perplexity at the end of training');
  out.push('');
  out.push('| model | weights when scored | validation loss (nats/token) | perplexity | bits/byte |');
  out.push('| --- | --- | ---: | ---: | ---: |');
  const fin = (name: string, weights: string, p: ValidationPoint) =>
    out.push(`| ${name} | ${weights} | ${p.loss.toFixed(4)} | ${ppl(p.loss)} | ${p.bitsPerByte.toFixed(4)} |`);
  fin('ternary-aware (shipped)', 'ternary, int8 activations', t.final);
  fin('fp32', 'fp32 (latent weights, fp32 activations)', f.finalFp32!);
  fin('fp32 + PTQ', 'fp32 weights ternarised after training, int8 activations', f.final);
  out.push('');
  out.push(
    `Perplexity of the shipped model relative to the fp32 model: ${(Math.exp(t.final.loss) / Math.exp(f.finalFp32!.loss)).toFixed(3)}×; ` +
      `of the fp32 model after PTQ: ${(Math.exp(f.final.loss) / Math.exp(f.finalFp32!.loss)).toFixed(3)}×.`,
  );
  out.push('');
  out.push('## Loss curve');
  out.push('');
  out.push(`![train and validation loss against step, both runs](${r.curveFile})`);
  out.push('');
  out.push(
    "Train loss: the mean batch loss of the steps since the previous validation point. The fp32 run's validation points use " +
      'its fp32 weights; the diamond at the last step is the same model after PTQ.',
  );
  out.push('');
  out.push('| step | ternary-aware train | ternary-aware validation | perplexity | fp32 train | fp32 validation | perplexity |');
  out.push('| ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  const tv = [...t.validation, t.final];
  const fv = [...f.validation, f.finalFp32!];
  const steps = [...new Set([...tv, ...fv].map((p) => p.step))].sort((a, b) => a - b);
  const cell = (p: ValidationPoint | undefined) =>
    p === undefined ? ['-', '-', '-'] : [p.trainLoss === null ? '-' : p.trainLoss.toFixed(4), p.loss.toFixed(4), ppl(p.loss)];
  for (const s of steps) {
    out.push(`| ${s} | ${[...cell(tv.find((p) => p.step === s)), ...cell(fv.find((p) => p.step === s))].join(' | ')} |`);
  }
  out.push('');
  return out.join('\n');
}

// ---- writing the record ----------------------------------------------------------------------------

function readLog(path: string, flag: string): TimeLog {
  return parseTimeLog(readTextFile(path, flag).toString('utf8'), `${flag} ${path}`);
}

function loadRun(path: string, flag: string, logPath: string, logFlag: string, root: string): RecordRun {
  let model: Model;
  try {
    model = Model.load(path);
  } catch (err) {
    throw new Error(`${flag} ${path}: ${(err as Error).message}`, { cause: err });
  }
  return {
    meta: parseBaseMeta(model.meta, `${flag} ${path}`),
    time: readLog(logPath, logFlag),
    file: relative(root, resolve(path)),
    fileBytes: statSync(path).size,
    fingerprint: model.fingerprint!,
  };
}

/** Writes training-curve.svg and README.md into `outDir` (atomically); returns their paths. */
export function writeBaseRecord(a: { ternary: string; fp32: string; ternaryLog: string; fp32Log: string; outDir: string }): string[] {
  const root = packageRoot();
  const ternary = loadRun(a.ternary, '--ternary', a.ternaryLog, '--ternary-log', root);
  const fp32 = loadRun(a.fp32, '--fp32', a.fp32Log, '--fp32-log', root);
  const src = ternary.meta.source;
  const manifest = isObj(src) && src.kind === 'fixtures' ? getFixtures().manifest : null;
  const curveFile = 'training-curve.svg';
  const svg = renderLossCurve(ternary.meta, fp32.meta);
  const md = renderRecord({ ternary, fp32, validationText: describeValidationText(src, manifest), curveFile });
  const files = [join(a.outDir, curveFile), join(a.outDir, 'README.md')];
  mkdirSync(a.outDir, { recursive: true });
  writeFileAtomic(files[0]!, svg);
  writeFileAtomic(files[1]!, md);
  return files;
}
