// The base model's record: the meta and /usr/bin/time parsers, the SVG loss curve and the
// Markdown record, on two real (tiny) train-base runs, one ternary-aware and one fp32.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  describeValidationText,
  parseBaseMeta,
  parseTimeLog,
  renderLossCurve,
  renderRecord,
  writeBaseRecord,
  type BaseRunMeta,
  type RecordRun,
} from '../lib/model/base-record.js';
import { Model, trainBase } from '../lib/model/index.js';
import { wordCorpusBytes as corpus } from './word-corpus.js';

const dir = mkdtempSync(join(tmpdir(), 'ternorm-base-record-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const TINY = { vocab: 300, dModel: 32, nLayers: 2, nHeads: 2, dFf: 64, context: 32 };
const RUN = { steps: 20, seed: 3, config: TINY, batch: 4, seq: 16, warmup: 2, evalEvery: 5, evalTokens: 200, checkpointEvery: 0 };
const SOURCE = { kind: 'files', train: '/data/train.txt', validation: '/data/val.txt' };

function timeLog(command: string, elapsed: string, rssKb: number, exit = 0): string {
  return [
    'step 20/20  loss 4.1  3000 tok/s',
    `\tCommand being timed: "${command}"`,
    '\tUser time (seconds): 10.00',
    '\tPercent of CPU this job got: 99%',
    `\tElapsed (wall clock) time (h:mm:ss or m:ss): ${elapsed}`,
    `\tMaximum resident set size (kbytes): ${rssKb}`,
    `\tExit status: ${exit}`,
    '',
  ].join('\n');
}

const paths = {
  ternary: join(dir, 'ternary.tnm'),
  fp32: join(dir, 'fp32.tnm'),
  ternaryLog: join(dir, 'ternary.err'),
  fp32Log: join(dir, 'fp32.err'),
};
let ternary: BaseRunMeta;
let fp32: BaseRunMeta;

beforeAll(async () => {
  const trainText = corpus(1, 300);
  const validationText = corpus(2, 60);
  for (const mode of ['ternary', 'fp32'] as const) {
    await trainBase({ trainText, validationText, out: paths[mode], run: { ...RUN, mode }, source: SOURCE });
  }
  ternary = parseBaseMeta(Model.load(paths.ternary).meta, 'ternary');
  fp32 = parseBaseMeta(Model.load(paths.fp32).meta, 'fp32');
  writeFileSync(paths.ternaryLog, timeLog('node dist/lib/cli/main.js train-base --mode ternary', '1:02:03.50', 480000));
  writeFileSync(paths.fp32Log, timeLog('node dist/lib/cli/main.js train-base --mode fp32', '25:13.45', 470000));
}, 120_000);

describe('parseBaseMeta', () => {
  it('reads what train-base stored', () => {
    expect(ternary.options.mode).toBe('ternary');
    expect(ternary.validation.map((p) => p.step)).toEqual([5, 10, 15]);
    expect(ternary.final.step).toBe(20);
    expect(ternary.finalFp32).toBeNull();
    expect(fp32.finalFp32).not.toBeNull();
    expect(fp32.finalFp32!.step).toBe(20);
    // PTQ changes the weights, so the two scores of the fp32 run differ
    expect(fp32.final.loss).not.toBe(fp32.finalFp32!.loss);
  });

  it('refuses records that are not train-base records, with the place named', () => {
    expect(() => parseBaseMeta(null, 'x.tnm')).toThrow(/x\.tnm: the meta is not a train-base record/);
    const meta = Model.load(paths.fp32).meta as Record<string, unknown>;
    expect(() => parseBaseMeta({ ...meta, version: 2 }, 'x')).toThrow(/version 2, this build reads 1/);
    expect(() => parseBaseMeta({ ...meta, finalFp32: null }, 'x')).toThrow(/lacks finalFp32/);
    expect(() => parseBaseMeta({ ...meta, final: { step: 1 } }, 'x')).toThrow(/x: final is not a validation point/);
  });
});

describe('parseTimeLog', () => {
  it('reads command, wall time (h:mm:ss and m:ss) and peak RSS', () => {
    expect(parseTimeLog(timeLog('node a.js --x', '1:02:03.50', 1000), 'log')).toEqual({
      command: 'node a.js --x',
      wallSeconds: 3723.5,
      maxRssBytes: 1024000,
    });
    expect(parseTimeLog(timeLog('node a.js', '25:13.45', 2), 'log').wallSeconds).toBeCloseTo(1513.45, 9);
  });

  it('refuses an unfinished or failed run', () => {
    expect(() => parseTimeLog('step 200/2000  loss 5.1\n', 'runs/t.err')).toThrow(/runs\/t\.err holds no complete .*has the run finished/);
    expect(() => parseTimeLog(timeLog('node a.js', '0:10.00', 5, 1), 'log')).toThrow(/exited with status 1/);
    expect(() => parseTimeLog(timeLog('node a.js', 'soon', 5), 'log')).toThrow(/cannot read the elapsed time 'soon'/);
  });
});

describe('renderLossCurve', () => {
  const svg = () => renderLossCurve(ternary, fp32);

  it('is well-formed: one root, every element closed', () => {
    const s = svg();
    expect(s.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n<svg ')).toBe(true);
    expect(s.trimEnd().endsWith('</svg>')).toBe(true);
    const body = s.replace(/<\?xml[^>]*\?>/, '');
    const stack: string[] = [];
    for (const m of body.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
      if (m[3] === '/') continue;
      if (m[1] === '/') expect(stack.pop()).toBe(m[2]);
      else stack.push(m[2]!);
    }
    expect(stack).toEqual([]);
    expect(body).not.toMatch(/NaN|undefined|Infinity/);
  });

  it('plots every recorded point of both runs, and the PTQ point', () => {
    const s = svg();
    const group = (run: string, kind: string) => {
      const m = new RegExp(`<g class="series" data-run="${run}" data-kind="${kind}">([\\s\\S]*?)</g>`).exec(s);
      expect(m, `${run}/${kind}`).not.toBeNull();
      return [...m![1]!.matchAll(/data-step="([^"]+)" data-loss="([^"]+)"/g)].map((x) => ({ step: Number(x[1]), loss: Number(x[2]) }));
    };
    const val = (r: BaseRunMeta, last: NonNullable<BaseRunMeta['finalFp32']>) => [...r.validation, last];
    expect(group('ternary', 'validation')).toEqual(val(ternary, ternary.final).map((p) => ({ step: p.step, loss: p.loss })));
    expect(group('fp32', 'validation')).toEqual(val(fp32, fp32.finalFp32!).map((p) => ({ step: p.step, loss: p.loss })));
    expect(group('ternary', 'train')).toEqual(val(ternary, ternary.final).map((p) => ({ step: p.step, loss: p.trainLoss })));
    expect(group('fp32', 'train')).toHaveLength(4);
    expect(group('fp32', 'ptq')).toEqual([{ step: 20, loss: fp32.final.loss }]);
    expect(s.match(/<polyline /g)).toHaveLength(4);
    // axes: step ticks from 0 to the last step, labels, a legend entry per series
    expect([...s.matchAll(/data-step="(\d+)">/g)].map((m) => Number(m[1]))).toEqual([0, 5, 10, 15, 20]);
    expect(s).toContain('>training step</text>');
    expect(s).toContain('>loss (nats/token)</text>');
    expect(s).toContain('fp32 after PTQ (ternarised)');
  });

  it('refuses runs that are not comparable', () => {
    expect(() => renderLossCurve(fp32, fp32)).toThrow(/--ternary run has mode 'fp32'/);
    const other = { ...fp32, options: { ...fp32.options, seed: 4 } };
    expect(() => renderLossCurve(ternary, other)).toThrow(/differ in seed/);
    expect(() => renderLossCurve(ternary, { ...fp32, validationTokens: 10 })).toThrow(/different texts/);
  });
});

describe('renderRecord', () => {
  const run = (meta: BaseRunMeta, command: string, seconds: number): RecordRun => ({
    meta,
    time: { command, wallSeconds: seconds, maxRssBytes: 300 * 2 ** 20 },
    file: `models/${meta.options.mode}.tnm`,
    fileBytes: 12345,
    fingerprint: 'ab'.repeat(32),
  });
  const md = () =>
    renderRecord({
      ternary: run(ternary, 'node main.js train-base --mode ternary', 3723.5),
      fp32: run(fp32, 'node main.js train-base --mode fp32', 59.25),
      validationText: describeValidationText(SOURCE, null),
      curveFile: 'training-curve.svg',
    });

  it('reports perplexity = exp(validation loss) for the three models', () => {
    const rows = new Map(
      [...md().matchAll(/^\| (ternary-aware \(shipped\)|fp32|fp32 \+ PTQ) \| [^|]+ \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$/gm)].map((m) => [
        m[1],
        m.slice(2).map(Number),
      ]),
    );
    for (const [name, p] of [
      ['ternary-aware (shipped)', ternary.final],
      ['fp32', fp32.finalFp32!],
      ['fp32 + PTQ', fp32.final],
    ] as const) {
      const [loss, ppl, bpb] = rows.get(name)!;
      expect(loss).toBeCloseTo(p.loss, 4);
      expect(ppl).toBeCloseTo(Math.exp(p.loss), 2);
      expect(bpb).toBeCloseTo(p.bitsPerByte, 4);
    }
  });

  it('states command, seed, tokens seen, wall time, the validation text and the history', () => {
    const s = md();
    expect(s).toContain('`node main.js train-base --mode ternary`');
    expect(s).toContain('| seed | 3 | 3 |');
    expect(s).toContain('| tokens seen (steps × batch × seq) | 1,280 | 1,280 |');
    expect(s).toContain('| wall time | 1 h 2 min 3.5 s | 59.3 s |');
    expect(s).toContain('The file /data/val.txt. Its first');
    expect(s).toContain(`first ${ternary.validationTokens} tokens are scored`);
    expect(s).toContain('![train and validation loss against step, both runs](training-curve.svg)');
    const history = [...s.matchAll(/^\| (\d+) \| ([\d.-]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.-]+) \| ([\d.]+) \| ([\d.]+) \|$/gm)];
    expect(history.map((m) => Number(m[1]))).toEqual([5, 10, 15, 20]);
    const last = history[3]!;
    expect(Number(last[3])).toBeCloseTo(ternary.final.loss, 4);
    expect(Number(last[4])).toBeCloseTo(Math.exp(ternary.final.loss), 2);
    expect(Number(last[6])).toBeCloseTo(fp32.finalFp32!.loss, 4);
  });
});

describe('writeBaseRecord', () => {
  it('writes the curve and the record from the files, and names a missing input', () => {
    const outDir = join(dir, 'models');
    const files = writeBaseRecord({ ...paths, outDir });
    expect(files).toEqual([join(outDir, 'training-curve.svg'), join(outDir, 'README.md')]);
    expect(readFileSync(files[0]!, 'utf8')).toBe(renderLossCurve(ternary, fp32));
    const md = readFileSync(files[1]!, 'utf8');
    expect(md).toContain('`node dist/lib/cli/main.js train-base --mode fp32`');
    expect(md).toContain(`${Model.load(paths.ternary).fingerprint}`);
    expect(() => writeBaseRecord({ ...paths, fp32Log: join(dir, 'none.err'), outDir })).toThrow(
      /cannot read --fp32-log .*none\.err: no such file/,
    );
    expect(() => writeBaseRecord({ ...paths, ternary: join(dir, 'none.tnm'), outDir })).toThrow(/--ternary .*none\.tnm/);
  });
});
