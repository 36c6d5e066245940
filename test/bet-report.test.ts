import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { sha256Hex } from '../lib/util/hash.js';
import { canonicalJson, DEFAULT_CRITERIA, loadCriteria, validateCriteria, type LoadedCriteria } from '../lib/bet/criteria.js';
import {
  parseResults,
  readResults,
  resultsSchemaPath,
  ResultsWriter,
  type AdapterCompressResults,
  type ResultsHeader,
  type RunConfig,
  type SplitLosses,
  type TextId,
  type UserEvaluation,
} from '../lib/bet/results.js';
import { PPL_DECIMALS, RATIO_DECIMALS, renderReport, writeReport } from '../lib/bet/report.js';
import { renderPlot, writePlot } from '../lib/bet/plot.js';
import { xmlEscape } from '../lib/util/svg.js';
import { Xoshiro128 } from '../lib/bet/stats.js';
import { fileSystemSeam } from '../lib/util/files.js';
import { packageRoot } from '../lib/util/package-root.js';
import { RESULTS_TYPES, resultsTypesSource } from '../scripts/results-types.js';

// ---- synthetic run -------------------------------------------------------------------------------

const CONDITIONS = ['no_adapter', 'raw_fp32', 'raw_fp16', 'int8_per_tensor', 'int4_delta', 'kmeans16'];
const BYTES: Record<string, number> = { raw_fp32: 9232, raw_fp16: 4624, int8_per_tensor: 2324, int4_delta: 1172, kmeans16: 1240 };
const TOKENS = 600;
// ppl ratio of each condition to raw_fp32, per user (the programmer's int8 is worse than no adapter)
const USERS: Record<string, Record<string, number>> = {
  novelist: { no_adapter: 1.3, raw_fp32: 1, raw_fp16: 1.001, int8_per_tensor: 1.05, int4_delta: 1.2, kmeans16: 1.1 },
  scientist: { no_adapter: 1.15, raw_fp32: 1, raw_fp16: 1.001, int8_per_tensor: 1.12, int4_delta: 1.4, kmeans16: 1.08 },
  programmer: { no_adapter: 1.05, raw_fp32: 1, raw_fp16: 1.002, int8_per_tensor: 1.1, int4_delta: 1.6, kmeans16: 1.03 },
};

function losses(seed: number, ratios: Record<string, number>, base = 1): SplitLosses {
  const rng = new Xoshiro128(seed);
  const d = Float64Array.from({ length: TOKENS }, () => base - Math.log(1 - rng.nextFloat()));
  const nll: Record<string, Float32Array> = {};
  for (const c of CONDITIONS) {
    const shift = Math.log(ratios[c]!);
    nll[c] = Float32Array.from(d, (v) => Math.max(0, v + shift + (c === 'raw_fp32' ? 0 : 0.05 * (rng.nextFloat() - 0.5))));
  }
  return { bytes: TOKENS * 4 + 17, nll };
}

function textId(user: string, part: 'validation' | 'test'): TextId {
  const start = part === 'validation' ? 100 : 90_000;
  return {
    fixture: user,
    part,
    ranges: [
      [start, start + 1000],
      [start + 2000, start + 2000 + TOKENS * 4 + 17 - 1000],
    ],
    bytes: TOKENS * 4 + 17,
    sha256: sha256Hex(`${user}.${part}`),
  };
}

function evaluation(user: string, k: number, withSeeds = false, name = user): UserEvaluation {
  const ratios = USERS[user]!;
  const params = (c: string): Record<string, number[]> => (c.startsWith('raw') ? {} : { scale: [0.0123 + k / 1000], zeroPoint: [0] });
  const encodings = Object.fromEntries(Object.entries(BYTES).map(([c, b]) => [c, { bytes: b, params: params(c) }]));
  const ev: UserEvaluation = {
    user: name,
    texts: { validation: textId(user, 'validation'), test: textId(user, 'test') },
    encodings,
    validation: losses(10 + k, ratios),
    test: losses(20 + k, ratios),
  };
  if (withSeeds) {
    ev.seedRuns = [0, 1, 2].map((s) => {
      const l = losses(20 + k, { ...ratios, raw_fp32: 1 + 0.01 * s, int8_per_tensor: ratios.int8_per_tensor! * (1 + 0.01 * s) });
      return { seed: s, nll: { raw_fp32: l.nll.raw_fp32!, int8_per_tensor: l.nll.int8_per_tensor! } };
    });
  }
  return ev;
}

const criteria: LoadedCriteria = loadCriteria();
const RUN: RunConfig = {
  adapterRun: { maxSteps: 100, lr: 0.03, batch: 8 },
  encode: { calibrationTokens: 512, clipGrid: [1, 0.5], groupSize: null, kmeansMaxIters: null, calibrationPasses: null, mixedBudget: null },
};
const header = (over: Partial<ResultsHeader> = {}): ResultsHeader => ({
  seed: 42,
  seeds: 3,
  versions: { addon: 'test' },
  baseModel: { name: 'ternorm-tiny', sha256: sha256Hex('model'), config: { layers: 4, dim: 256, ternary: true } },
  criteria,
  conditions: CONDITIONS,
  bootstrap: { resamples: 300 },
  minTokens: 100,
  run: RUN,
  ...over,
});

let t = Date.parse('2025-01-01T00:00:00Z');
const clock = (): Date => new Date((t += 1000));

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'ternorm-bet-'));
  dirs.push(d);
  return d;
}
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function fullRun(path: string): AdapterCompressResults {
  const w = ResultsWriter.start(path, header(), { now: clock });
  Object.keys(USERS).forEach((u, k) => w.addUser(evaluation(u, k, k === 0)));
  return w.complete();
}

// ---- a small XML well-formedness checker ---------------------------------------------------------

interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  text: string;
}

const ENTITY = /&(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);/y;

function unescape(s: string, where: string): string {
  for (let i = s.indexOf('&'); i >= 0; i = s.indexOf('&', i + 1)) {
    ENTITY.lastIndex = i;
    if (!ENTITY.test(s)) throw new Error(`xml: bare '&' in ${where} at ${i}`);
  }
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}

/** Parses well-formed XML (elements, attributes, text, comments, one prolog); throws on anything malformed. */
function parseXml(src: string): XmlElement {
  let i = 0;
  if (src.startsWith('<?xml')) {
    i = src.indexOf('?>') + 2;
    if (i < 2) throw new Error('xml: unterminated prolog');
  }
  const root: XmlElement = { name: '#document', attrs: {}, children: [], text: '' };
  const stack: XmlElement[] = [root];
  const NAME = /[A-Za-z_][-A-Za-z0-9_.:]*/y;
  const ATTR = /\s+([A-Za-z_][-A-Za-z0-9_.:]*)\s*=\s*("([^"<]*)"|'([^'<]*)')/y;
  while (i < src.length) {
    const lt = src.indexOf('<', i);
    const text = src.slice(i, lt < 0 ? src.length : lt);
    if (text.includes('>')) throw new Error(`xml: bare '>' in text near ${i}`);
    stack[stack.length - 1]!.text += unescape(text, 'text');
    if (lt < 0) break;
    if (src.startsWith('<!--', lt)) {
      const end = src.indexOf('-->', lt);
      if (end < 0) throw new Error('xml: unterminated comment');
      i = end + 3;
      continue;
    }
    if (src[lt + 1] === '/') {
      NAME.lastIndex = lt + 2;
      const m = NAME.exec(src);
      if (m === null || src[NAME.lastIndex] !== '>') throw new Error(`xml: bad closing tag at ${lt}`);
      const open = stack.pop()!;
      if (open.name !== m[0]) throw new Error(`xml: </${m[0]}> closes <${open.name}>`);
      i = NAME.lastIndex + 1;
      continue;
    }
    NAME.lastIndex = lt + 1;
    const m = NAME.exec(src);
    if (m === null) throw new Error(`xml: bad tag at ${lt}`);
    const el: XmlElement = { name: m[0], attrs: {}, children: [], text: '' };
    let j = NAME.lastIndex;
    for (;;) {
      ATTR.lastIndex = j;
      const a = ATTR.exec(src);
      if (a === null) break;
      if (a[1]! in el.attrs) throw new Error(`xml: duplicate attribute ${a[1]} on <${el.name}>`);
      el.attrs[a[1]!] = unescape(a[3] ?? a[4]!, `attribute ${a[1]}`);
      j = ATTR.lastIndex;
    }
    while (src[j] === ' ' || src[j] === '\n') j++;
    const parent = stack[stack.length - 1]!;
    if (parent === root && root.children.length > 0) throw new Error('xml: more than one root element');
    parent.children.push(el);
    if (src.startsWith('/>', j)) i = j + 2;
    else if (src[j] === '>') {
      stack.push(el);
      i = j + 1;
    } else throw new Error(`xml: malformed tag <${el.name}> at ${lt}`);
  }
  if (stack.length !== 1) throw new Error(`xml: unclosed <${stack[stack.length - 1]!.name}>`);
  if (root.text.trim() !== '') throw new Error('xml: text outside the root element');
  if (root.children.length !== 1) throw new Error('xml: no root element');
  return root.children[0]!;
}

function findAll(e: XmlElement, pred: (x: XmlElement) => boolean, out: XmlElement[] = []): XmlElement[] {
  if (pred(e)) out.push(e);
  for (const c of e.children) findAll(c, pred, out);
  return out;
}

// ---- tests -----------------------------------------------------------------------------------------

const schema = JSON.parse(readFileSync(resultsSchemaPath(), 'utf8'));
const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
const validate = ajv.compile(schema);

let dir: string;
let path: string;
let results: AdapterCompressResults;

beforeAll(() => {
  dir = tmp();
  path = join(dir, 'results', '53_adapter_compress.json');
  results = fullRun(path);
});

describe('results file', () => {
  it('the XML checker itself rejects malformed documents', () => {
    expect(() => parseXml('<a><b></a></b>')).toThrow(/closes/);
    expect(() => parseXml('<a x="1" x="2"/>')).toThrow(/duplicate attribute/);
    expect(() => parseXml('<a>fish & chips</a>')).toThrow(/bare '&'/);
    expect(() => parseXml('<a x=1/>')).toThrow(/malformed tag/);
    expect(() => parseXml('<a/><b/>')).toThrow(/more than one root/);
    expect(() => parseXml('<a>')).toThrow(/unclosed/);
    expect(parseXml('<?xml version="1.0"?>\n<a k="&lt;&amp;"><b>x &gt; y</b></a>\n').children[0]!.text).toBe('x > y');
  });

  it('the committed TypeScript types of the results are what the schema generates (npm run results:types)', () => {
    expect(readFileSync(join(packageRoot(), RESULTS_TYPES), 'utf8')).toBe(resultsTypesSource());
  });

  it('registers the criteria (sha256 + time) on disk before any user is evaluated', () => {
    const d = tmp();
    const p = join(d, 'r.json');
    const w = ResultsWriter.start(p, header(), { now: clock });
    const first = JSON.parse(readFileSync(p, 'utf8'));
    expect(first.status).toBe('running');
    expect(first.users).toEqual([]);
    expect(first.criteria.sha256).toBe(criteria.sha256);
    expect(first.criteria.sha256).toBe(sha256Hex(canonicalJson(first.criteria.criteria)));
    expect(Date.parse(first.criteria.registeredAt)).toBeLessThanOrEqual(Date.parse(first.updatedAt));
    expect(validate(first)).toBe(true);
    expect(readResults(p).users).toEqual([]);
    w.addUser(evaluation('novelist', 0));
    const second = readResults(p);
    expect(second.criteria.registeredAt).toBe(first.criteria.registeredAt);
    expect(Date.parse(second.updatedAt)).toBeGreaterThan(Date.parse(second.criteria.registeredAt));
  });

  it('a complete run validates against the shipped JSON Schema and re-reads exactly', () => {
    const onDisk = JSON.parse(readFileSync(path, 'utf8'));
    const ok = validate(onDisk);
    expect(validate.errors ?? []).toEqual([]);
    expect(ok).toBe(true);
    expect(readResults(path)).toEqual(results);
    expect(results.status).toBe('complete');
    expect(results.users.map((u) => u.user)).toEqual(Object.keys(USERS));
    expect(results.versions).toMatchObject({ addon: 'test', resultsFormat: '2' });
    expect(results.versions.ternorm).toMatch(/^\d+\.\d+\.\d+/);
    // held-out text ids, quantisation parameters and sizes are recorded
    expect(results.users[1]!.texts.test).toEqual(textId('scientist', 'test'));
    expect(results.users[1]!.encodings.int8_per_tensor).toEqual({ bytes: 2324, params: { scale: [0.0133], zeroPoint: [0] } });
  });

  it('records perplexities, ratios and bits per byte computed from the losses', () => {
    const u = results.users[0]!;
    const l = losses(20, USERS.novelist!);
    for (const c of CONDITIONS) {
      const x = l.nll[c]!;
      let s = 0;
      for (const v of x) s += v;
      const st = u.test.conditions[c]!;
      expect(st.meanNll).toBeCloseTo(s / x.length, 12);
      expect(st.ppl.value).toBeCloseTo(Math.exp(s / x.length), 10);
      expect(st.bpb.value).toBeCloseTo(s / Math.LN2 / u.test.bytes, 12);
      expect(st.ppl.ci.low).toBeLessThanOrEqual(st.ppl.value);
      expect(st.ppl.ci.high).toBeGreaterThanOrEqual(st.ppl.value);
    }
    const int8 = u.test.conditions.int8_per_tensor!;
    expect(int8.ratioToReference!.value).toBeCloseTo(int8.ppl.value / u.test.conditions.raw_fp32!.ppl.value, 12);
    expect(int8.ratioToReference!.value).toBeGreaterThan(1.04);
    expect(int8.ratioToReference!.value).toBeLessThan(1.06);
    expect(u.test.bootstrap).toMatchObject({ resamples: 300, confidence: 0.95, blockLength: 9 });
    expect(u.seeds!.runs.map((r) => r.seed)).toEqual([0, 1, 2]);
    expect(u.seeds!.spread.raw_fp32!.ppl.n).toBe(3);
    expect(u.seeds!.spread.int8_per_tensor!.ratioToReference!.maxOverMin).toBeCloseTo(1, 2);
    expect(results.users[1]!.seeds).toBeNull();
  });

  it('computes the verdicts on the test split', () => {
    const v = Object.fromEntries(results.verdicts.map((x) => [x.scheme, x]));
    expect(Object.keys(v)).toEqual(['raw_fp16', 'int8_per_tensor', 'int4_delta', 'kmeans16']);
    expect(v.int8_per_tensor!.verdict).toBe('STRICT');
    expect(v.int8_per_tensor!.catastrophic).toMatchObject({ count: 1, required: 2, holds: false });
    expect(v.int8_per_tensor!.users.map((x) => x.worseThanNoAdapter)).toEqual([false, false, true]);
    // int4: within 2x everywhere, beyond 1.5x for the programmer, worse than no adapter for 2 of 3
    expect(v.int4_delta!.strict).toMatchObject({ count: 2, required: 3, pass: false });
    expect(v.int4_delta!.lenient).toMatchObject({ count: 3, required: 2, pass: true });
    expect(v.int4_delta!.verdict).toBe('CATASTROPHIC');
    expect(results.policy).toMatchObject({ users: 3 });
    expect(results.users.map((u) => u.policy.choice)).toEqual(['int4_delta', 'kmeans16', 'kmeans16']);
  });

  it('is deterministic: the same inputs and seed give the same science', () => {
    const again = fullRun(join(tmp(), 'again.json'));
    const strip = (r: AdapterCompressResults) => ({
      ...r,
      startedAt: '',
      updatedAt: '',
      checksum: '',
      criteria: { ...r.criteria, registeredAt: '' },
    });
    expect(strip(again)).toEqual(strip(results));
  });

  it('keeps the users done when a later user has bad input, and records the failure', () => {
    const d = tmp();
    const p = join(d, 'partial.json');
    const w = ResultsWriter.start(p, header(), { now: clock });
    w.addUser(evaluation('novelist', 0));
    const before = readFileSync(p, 'utf8');
    const bad = evaluation('scientist', 1);
    (bad.test.nll as Record<string, Float32Array>).kmeans16![7] = NaN;
    expect(() => w.addUser(bad)).toThrow(/user "scientist" test split, condition "kmeans16": per-token NLL at index 7 is NaN/);
    expect(readFileSync(p, 'utf8')).toBe(before);
    const short = evaluation('scientist', 1);
    (short.validation as { nll: Record<string, Float32Array> }).nll.raw_fp16 = new Float32Array(50);
    expect(() => w.addUser(short)).toThrow(/expected at least 100 per-token NLLs, got 50/);
    const plain = evaluation('scientist', 1);
    (plain.test as { nll: Record<string, unknown> }).nll.int4_delta = Array.from({ length: TOKENS }, () => 1);
    expect(() => w.addUser(plain)).toThrow(/Float64Array or Float32Array, got Array/);
    const missing = evaluation('scientist', 1);
    delete (missing.encodings as Record<string, unknown>).kmeans16;
    expect(() => w.addUser(missing)).toThrow(/no encoding \(size and parameters\) for condition "kmeans16"/);
    expect(() => w.addUser(evaluation('novelist', 0))).toThrow(/user "novelist" is already in the results/);
    w.fail(new Error('scientist: bad losses'));
    const failed = readResults(p);
    expect(failed.status).toBe('failed');
    expect(failed.error).toBe('scientist: bad losses');
    expect(failed.users.map((u) => u.user)).toEqual(['novelist']);
    expect(failed.verdicts.every((v) => v.strict.users === 1)).toBe(true);
    expect(validate(JSON.parse(readFileSync(p, 'utf8')))).toBe(true);
    // a resumed run continues from the users done; other criteria cannot resume it
    const other = JSON.parse(JSON.stringify(DEFAULT_CRITERIA));
    other.strict.maxRatio = 1.4;
    const oc = validateCriteria(other);
    expect(() =>
      ResultsWriter.resume(p, header({ criteria: { criteria: oc, sha256: sha256Hex(canonicalJson(oc)), source: 'x' } })),
    ).toThrow(/criteria \(sha256\) differs/);
    const r = ResultsWriter.resume(p, header(), { now: clock });
    expect(r.doneUsers).toEqual(['novelist']);
    r.addUser(evaluation('scientist', 1));
    expect(r.complete().users.map((u) => u.user)).toEqual(['novelist', 'scientist']);
    expect(() => ResultsWriter.resume(p, header())).toThrow(/is a complete run/);
  });

  it('--resume refuses a run whose training or encoding options differ, naming them', () => {
    const p = join(tmp(), 'r.json');
    const w = ResultsWriter.start(p, header(), { now: clock });
    w.addUser(evaluation('novelist', 0));
    w.fail(new Error('interrupted'));
    expect(readResults(p).run).toEqual(RUN);
    const before = readFileSync(p, 'utf8');
    const other: RunConfig = { adapterRun: { ...RUN.adapterRun, maxSteps: 5 }, encode: { ...RUN.encode, groupSize: 64 } };
    expect(() => ResultsWriter.resume(p, header({ run: other }))).toThrow(
      /cannot resume .*r\.json: it was run with other options: maxSteps \(--max-steps\): 100 in the file, 5 now; groupSize \(--group-size\): default in the file, 64 now/,
    );
    const lr: RunConfig = { ...RUN, adapterRun: { ...RUN.adapterRun, lr: 0.1 } };
    expect(() => ResultsWriter.resume(p, header({ run: lr }))).toThrow(/other options: lr: 0\.03 in the file, 0\.1 now$/);
    expect(readFileSync(p, 'utf8')).toBe(before);
    expect(ResultsWriter.resume(p, header(), { now: clock }).doneUsers).toEqual(['novelist']);
  });

  it('names on read: a user name outside the CLI pattern is refused, even with a re-sealed checksum', () => {
    for (const name of ['evil\u001b]0;pwned\u0007', 'a b', '', 'x'.repeat(65), '-lead']) {
      const o = JSON.parse(readFileSync(path, 'utf8'));
      o.users[0].user = name;
      const { checksum: _c, ...body } = o;
      o.checksum = sha256Hex(canonicalJson(body));
      expect(validate(o)).toBe(false);
      expect(() => parseResults(JSON.stringify(o), 'names.json')).toThrow(/results \(names\.json\): \$\.users\[0\]\.user must match/);
    }
    expect(() => ResultsWriter.start(join(tmp(), 'n.json'), header()).addUser(evaluation('novelist', 0, false, 'a\nb'))).toThrow(
      /user name "a\\nb" must be/,
    );
  });

  it('escapes text from the results in the Markdown report: no tag, line break or table border gets through', () => {
    const p = join(tmp(), 'r.json');
    const w = ResultsWriter.start(p, header(), { now: clock });
    const ev = evaluation('novelist', 0);
    const evil = 'file:/tmp/x\n\n<img src=x onerror=alert(1)>| *a* [l](http://e) `c`\u001b[31m';
    ev.texts.test = { ...ev.texts.test, fixture: evil };
    w.addUser(ev);
    w.fail(new Error('boom <script>alert(2)</script>\n# heading'));
    const md = renderReport(readResults(p));
    // eslint-disable-next-line no-control-regex -- no terminal escape may reach the report
    expect(md).not.toMatch(/<img|<script|\u001b/);
    const line = md.split('\n').find((l) => l.startsWith('- Held-out text of novelist'))!;
    expect(line).toContain(
      String.raw`file:/tmp/x\\x0a\\x0a&lt;img src=x onerror=alert(1)&gt;\| \*a\* \[l\](http://e) \`c\`\\x1b\[31m test,`,
    );
    expect(md).toContain(String.raw`(error: boom &lt;script&gt;alert(2)&lt;/script&gt;\\x0a# heading)`);
    expect(md.split('\n').filter((l) => /^#+ heading/.test(l))).toEqual([]);
  });

  it('writers name the file on a write error (ENOSPC from /dev/full) and leave no temp file', () => {
    const d = tmp();
    const p = join(d, 'full.json');
    const saved = fileSystemSeam.openTemp;
    fileSystemSeam.openTemp = () => openSync('/dev/full', 'w');
    try {
      expect(() => ResultsWriter.start(p, header(), { now: clock })).toThrow(
        /^cannot write .*full\.json: no space left on device \(ENOSPC\)$/,
      );
      expect(() => writeReport(join(d, 'full.md'), results)).toThrow(/cannot write .*full\.md: no space left on device \(ENOSPC\)/);
      expect(() => writePlot(join(d, 'full.svg'), results)).toThrow(/cannot write .*full\.svg: no space left on device \(ENOSPC\)/);
    } finally {
      fileSystemSeam.openTemp = saved;
    }
    expect(readdirSync(d)).toEqual([]);
  });

  it('writers refuse to replace what is not a regular file (a FIFO, a symlink to a device, a directory)', () => {
    const d = tmp();
    const fifo = join(d, 'fifo.md');
    execFileSync('mkfifo', [fifo]);
    expect(() => writeReport(fifo, results)).toThrow(/cannot write .*fifo\.md: it exists and is a FIFO, not a regular file/);
    const link = join(d, 'null.svg');
    symlinkSync('/dev/null', link);
    expect(() => writePlot(link, results)).toThrow(/cannot write .*null\.svg: it exists and is a character device, not a regular file/);
    expect(() => ResultsWriter.start(d, header(), { now: clock, overwrite: true })).toThrow(
      /it exists and is a directory, not a regular file/,
    );
    expect(lstatSync(fifo).isFIFO()).toBe(true);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(lstatSync('/dev/null').isCharacterDevice()).toBe(true);
    expect(readdirSync(d).sort()).toEqual(['fifo.md', 'null.svg']);
  });

  it('does not replace an existing results file unless told to', () => {
    const copy = join(tmp(), 'r.json');
    const w = ResultsWriter.start(copy, header(), { now: clock });
    w.addUser(evaluation('novelist', 0));
    const before = readFileSync(copy, 'utf8');
    expect(() => ResultsWriter.start(copy, header(), { now: clock })).toThrow(
      /already holds a running run with 1 user\(s\) done; resume it/,
    );
    expect(readFileSync(copy, 'utf8')).toBe(before);
    ResultsWriter.start(copy, header(), { now: clock, overwrite: true });
    expect(readResults(copy).users).toEqual([]);
  });

  it('rejects a header whose criteria hash does not match them', () => {
    expect(() => ResultsWriter.start(join(tmp(), 'x.json'), header({ criteria: { ...criteria, sha256: 'f'.repeat(64) } }))).toThrow(
      /does not match their content/,
    );
    expect(() => ResultsWriter.start(join(tmp(), 'x.json'), header({ conditions: ['raw_fp32', 'raw_fp16', 'int8_per_tensor'] }))).toThrow(
      /noAdapter condition "no_adapter" is not among the conditions/,
    );
  });

  const invalid: [string, (o: any) => void, RegExp][] = [
    ['a missing field', (o) => delete o.users[0].test.conditions.kmeans16.bpb, /conditions\.kmeans16\.bpb is missing/],
    ['an unknown field', (o) => (o.users[0].extra = 1), /users\[0\]\.extra is not a known field/],
    [
      'a perplexity below 1',
      (o) => (o.users[1].validation.conditions.raw_fp16.ppl.value = 0.5),
      /users\[1\]\.validation\.conditions\.raw_fp16\.ppl\.value must be >= 1/,
    ],
    ['a bad sha256', (o) => (o.users[2].texts.test.sha256 = 'xyz'), /users\[2\]\.texts\.test\.sha256 must match pattern/],
    ['a bad status', (o) => (o.status = 'done'), /\$\.status must be/],
    ['a wrong format version', (o) => (o.version = 1), /\$\.version is 1; this ternorm reads results version 2/],
    [
      'a bad criteria fraction',
      (o) => (o.criteria.criteria.lenient.minFraction = 'most'),
      /criteria\.criteria\.lenient\.minFraction must match pattern/,
    ],
  ];
  for (const [what, mutate, msg] of invalid) {
    it(`an output with ${what} fails the schema and the reader`, () => {
      const o = JSON.parse(readFileSync(path, 'utf8'));
      mutate(o);
      expect(validate(o)).toBe(false);
      expect(() => parseResults(JSON.stringify(o), 'bad.json')).toThrow(msg);
    });
  }

  it('fuzz: a randomly mutated results file is read or refused with a results error, never a crash', () => {
    const text = readFileSync(path, 'utf8');
    const rng = new Xoshiro128(31337);
    const pick = <T>(xs: readonly T[]): T => xs[rng.nextInt(xs.length)]!;
    const values: unknown[] = [null, -1, 0, 0.5, 1e308, 'x', '', true, [], {}, [1, 2], { low: 1 }];
    let refused = 0;
    for (let k = 0; k < 400; k++) {
      const o = JSON.parse(text);
      // walk to a random node and replace or delete it
      let parent: any = o;
      let key: string | number = pick(Object.keys(o));
      for (let depth = rng.nextInt(8); depth > 0; depth--) {
        const child: unknown = parent[key];
        if (child === null || typeof child !== 'object') break;
        const keys: (string | number)[] = Array.isArray(child) ? child.map((_: unknown, i: number) => i) : Object.keys(child);
        if (keys.length === 0) break;
        parent = child;
        key = pick(keys);
      }
      if (rng.nextInt(4) === 0 && !Array.isArray(parent)) delete parent[key];
      else parent[key] = structuredClone(pick(values));
      // half the time, re-seal the checksum so the mutation reaches the deeper checks
      if (rng.nextInt(2) === 0 && typeof o === 'object') {
        const { checksum: _c, ...body } = o;
        try {
          o.checksum = sha256Hex(canonicalJson(body));
        } catch {
          // a value canonical JSON refuses: leave the checksum stale
        }
      }
      try {
        parseResults(JSON.stringify(o), 'fuzz');
      } catch (e) {
        expect(e).toBeInstanceOf(Error);
        expect((e as Error).message).toMatch(/^(results \(fuzz\)|criteria \(in the results file\)): /);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(300);
  });

  it('the reader catches edits the schema cannot see: checksum and recomputed values', () => {
    const o = JSON.parse(readFileSync(path, 'utf8'));
    o.users[0].test.conditions.int8_per_tensor.ppl.value *= 1.01;
    expect(validate(o)).toBe(true);
    expect(() => parseResults(JSON.stringify(o))).toThrow(/\$\.checksum does not match the content/);
    // a consistent-looking edit with a recomputed checksum: the verdict no longer follows from the numbers
    const p = JSON.parse(readFileSync(path, 'utf8'));
    p.verdicts[1].verdict = 'FAIL';
    const { checksum: _c, ...body } = p;
    p.checksum = sha256Hex(canonicalJson(body));
    expect(validate(p)).toBe(true);
    expect(() => parseResults(JSON.stringify(p))).toThrow(/\$\.verdicts differ from the verdicts recomputed/);
    // a ppl that is not exp(meanNll)
    const q = JSON.parse(readFileSync(path, 'utf8'));
    q.users[0].test.conditions.raw_fp16.meanNll += 0.01;
    const { checksum: _d, ...body2 } = q;
    q.checksum = sha256Hex(canonicalJson(body2));
    expect(() => parseResults(JSON.stringify(q))).toThrow(/raw_fp16\.ppl\.value is not exp\(meanNll\)/);
    // a fraction above 1 matches the schema's pattern; the reader's criteria check refuses it
    const f = JSON.parse(readFileSync(path, 'utf8'));
    f.criteria.criteria.lenient.minFraction = '5/3';
    expect(validate(f)).toBe(true);
    expect(() => parseResults(JSON.stringify(f))).toThrow(/"lenient\.minFraction" must be at most 1/);
    expect(() => parseResults(readFileSync(path, 'utf8').slice(0, 500))).toThrow(/not valid JSON \(truncated or corrupt\?\)/);
    expect(() => readResults(join(tmp(), 'none.json'))).toThrow(/no results file/);
    expect(() => readResults('/dev/zero')).toThrow(/^results: cannot read \/dev\/zero: it is a character device, not a regular file$/);
  });
});

// ---- the Markdown report -------------------------------------------------------------------------

function tableAfter(md: string, heading: string): string[][] {
  const lines = md.split('\n');
  const h = lines.indexOf(heading);
  expect(h).toBeGreaterThanOrEqual(0);
  let i = h + 1;
  while (!lines[i]!.startsWith('|')) i++;
  const rows: string[][] = [];
  for (i += 2; i < lines.length && lines[i]!.startsWith('|'); i++) {
    rows.push(
      lines[i]!.slice(2, -2)
        .split(/(?<!\\) \| /)
        .map((c) => c.replace(/\\([|\\])/g, '$1')),
    );
  }
  return rows;
}

/** "12.345 [12.001, 12.789]" -> [12.345, 12.001, 12.789] */
function numbers(cell: string): number[] {
  return (cell.match(/-?\d+\.\d+/g) ?? []).map(Number);
}

describe('report', () => {
  it('the bet table holds the computed numbers, parsed back', () => {
    const md = renderReport(results);
    const rows = tableAfter(md, '## The bet: int8_per_tensor against raw_fp32 (test split)');
    expect(rows.map((r) => r[0])).toEqual(Object.keys(USERS));
    rows.forEach((row, i) => {
      const s = results.users[i]!.test.conditions;
      const check = (cell: string, e: { value: number; ci: { low: number; high: number } }, d: number): void => {
        const [v, lo, hi] = numbers(cell);
        expect(Math.abs(v! - e.value)).toBeLessThanOrEqual(0.5 * 10 ** -d + 1e-12);
        expect(Math.abs(lo! - e.ci.low)).toBeLessThanOrEqual(0.5 * 10 ** -d + 1e-12);
        expect(Math.abs(hi! - e.ci.high)).toBeLessThanOrEqual(0.5 * 10 ** -d + 1e-12);
      };
      check(row[1]!, s.no_adapter!.ppl, PPL_DECIMALS);
      check(row[2]!, s.raw_fp32!.ppl, PPL_DECIMALS);
      check(row[3]!, s.int8_per_tensor!.ppl, PPL_DECIMALS);
      check(row[4]!, s.int8_per_tensor!.ratioToReference!, RATIO_DECIMALS);
      check(row[5]!.split(': ')[1]!, s.int8_per_tensor!.ratioToNoAdapter!, RATIO_DECIMALS);
      expect(row[5]!.split(':')[0]).toBe(s.int8_per_tensor!.ppl.value > s.no_adapter!.ppl.value ? 'worse' : 'better');
    });
    expect(rows[2]![5]!.startsWith('worse')).toBe(true);
  });

  it('has a table for every scheme, the verdicts and the policy, all from the results', () => {
    const md = renderReport(results);
    for (const v of results.verdicts) {
      const rows = tableAfter(md, `### ${v.scheme}`);
      rows.forEach((row, i) => {
        expect(Number(row[6])).toBe(results.users[i]!.encodings[v.scheme]!.bytes);
        expect(numbers(row[7]!)[0]).toBeCloseTo(results.users[i]!.test.conditions[v.scheme]!.bpb.value, 4);
      });
    }
    const verdicts = tableAfter(md, '## Verdicts (test split)');
    expect(verdicts.map((r) => [r[0], r[4]])).toEqual(results.verdicts.map((v) => [v.scheme, v.verdict]));
    const int4 = verdicts.find((r) => r[0] === 'int4_delta')!;
    expect(int4[1]).toBe('2/3 within, 3 needed: fail');
    expect(int4[3]).toBe('2/3 worse, 2 needed: holds');
    const policy = tableAfter(md, '## Per-user policy (chosen on validation, reported on test)');
    policy.forEach((row, i) => {
      const p = results.users[i]!.policy;
      expect(row[1]).toBe(p.choice);
      expect(Number(row[2])).toBe(p.bytes);
      expect(numbers(row[4]!)[0]).toBeCloseTo(p.test.ppl.value, PPL_DECIMALS);
      expect(row[7]).toBe(p.test.holds ? 'yes' : 'no');
    });
    expect(md).toContain(`Criteria: sha256 ${results.criteria.sha256}`);
    expect(md).toContain(`sha256 ${results.users[0]!.texts.test.sha256}; ${results.users[0]!.test.tokens} tokens`);
    const seeds = tableAfter(md, '## Spread over adapter seeds (test split): the noise floor');
    expect(seeds.map((r) => r[1])).toEqual(['raw_fp32', 'int8_per_tensor']);
    expect(numbers(seeds[0]![3]!)[0]).toBeCloseTo(results.users[0]!.seeds!.spread.raw_fp32!.ppl.mean, PPL_DECIMALS);
  });

  it('follows the numbers: a changed result changes the report', () => {
    const changed = structuredClone(results);
    changed.users[0]!.test.conditions.int8_per_tensor!.ppl.value = 123.456789;
    const rows = tableAfter(renderReport(changed), '## The bet: int8_per_tensor against raw_fp32 (test split)');
    expect(numbers(rows[0]![3]!)[0]).toBe(123.457);
  });

  it('reports a run with no users yet, and adds fleet totals on request', () => {
    const d = tmp();
    const w = ResultsWriter.start(join(d, 'r.json'), header(), { now: clock });
    expect(renderReport(w.results)).toContain('No user has been evaluated yet.');
    const md = renderReport(results, { fleetUsers: 215000 });
    const fleet = tableAfter(md, '## Fleet totals');
    expect(fleet[0]![0]).toBe('all raw_fp16');
    expect(Number(fleet[0]![2])).toBe(215000 * 4624);
    writeReport(join(d, 'out', 'report.md'), results);
    expect(readFileSync(join(d, 'out', 'report.md'), 'utf8')).toBe(renderReport(results));
  });
});

// ---- the SVG plot ----------------------------------------------------------------------------------

describe('plot', () => {
  it('is well-formed XML with one point per encoding per user, carrying the computed values', () => {
    const svg = renderPlot(results);
    const root = parseXml(svg);
    expect(root.name).toBe('svg');
    expect(root.attrs.xmlns).toBe('http://www.w3.org/2000/svg');
    const points = findAll(root, (e) => e.attrs.class === 'point');
    const encodings = CONDITIONS.filter((c) => c !== 'no_adapter');
    expect(points.length).toBe(results.users.length * encodings.length);
    for (const p of points) {
      const u = results.users.find((x) => x.user === p.attrs['data-user'])!;
      expect(u).toBeDefined();
      const scheme = p.attrs['data-scheme']!;
      const st = u.test.conditions[scheme]!;
      expect(Number(p.attrs['data-bytes'])).toBe(u.encodings[scheme]!.bytes);
      expect(Number(p.attrs['data-ratio'])).toBe(st.ratioToReference === null ? 1 : st.ratioToReference.value);
      if (st.ratioToReference !== null) {
        expect(Number(p.attrs['data-low'])).toBe(st.ratioToReference.ci.low);
        expect(Number(p.attrs['data-high'])).toBe(st.ratioToReference.ci.high);
      }
    }
    // the user name with XML metacharacters survives escaping
    expect(points.some((p) => p.attrs['data-user'] === 'programmer')).toBe(true);
    expect(svg).toContain(xmlEscape('programmer'));
    // x is a log scale of bytes: positions increase with size, equal ratios of sizes give equal distances
    const xOf = (e: XmlElement): number => {
      const m = e.children.find((c) => c.name !== 'title' && c.name !== 'line')!;
      if (m.name === 'circle') return Number(m.attrs.cx);
      if (m.name === 'rect') return Number(m.attrs.x) + Number(m.attrs.width) / 2;
      const pts = m.attrs.points!.split(' ').map((q) => Number(q.split(',')[0]));
      return (Math.min(...pts) + Math.max(...pts)) / 2;
    };
    const novelist = points
      .filter((p) => p.attrs['data-user'] === 'novelist')
      .sort((a, b) => Number(a.attrs['data-bytes']) - Number(b.attrs['data-bytes']));
    const xs = novelist.map(xOf);
    for (let i = 1; i < xs.length; i++) expect(xs[i]!).toBeGreaterThan(xs[i - 1]!);
    const b = novelist.map((p) => Number(p.attrs['data-bytes']));
    // raw_fp32 is exactly twice raw_fp16: the same distance as any other doubling
    const dx = (i: number, j: number) => xs[j]! - xs[i]!;
    expect(dx(b.indexOf(4624), b.indexOf(9232))).toBeCloseTo(
      (Math.log10(9232 / 4624) / Math.log10(2324 / 1172)) * dx(b.indexOf(1172), b.indexOf(2324)),
      1,
    );
  });

  it('switches the ratio axis to a log scale when a no-adapter line is far above the encodings', () => {
    const far = structuredClone(results);
    far.users[0]!.test.conditions.no_adapter!.ratioToReference!.value = 11;
    const root = parseXml(renderPlot(far));
    expect(findAll(root, (e) => e.name === 'text').map((e) => e.text)).toContain('perplexity / perplexity of raw_fp32 (log scale)');
    const ticks = findAll(root, (e) => e.name === 'text' && e.attrs['data-ratio'] !== undefined);
    const y = new Map(ticks.map((t) => [Number(t.attrs['data-ratio']), Number(t.attrs.y)]));
    for (const t of [1, 2, 5, 10]) expect(y.has(t), `tick ${t}`).toBe(true);
    // equal ratios, equal distances: 1 -> 2 spans what 5 -> 10 spans
    expect(y.get(1)! - y.get(2)!).toBeCloseTo(y.get(5)! - y.get(10)!, 1);
    // the synthetic run itself (ratios below 2) keeps the linear axis
    expect(findAll(parseXml(renderPlot(results)), (e) => e.name === 'text').map((e) => e.text)).toContain(
      'perplexity / perplexity of raw_fp32',
    );
  });

  it("draws the 1.5x line and each user's no-adapter line at the computed ratios", () => {
    const root = parseXml(renderPlot(results));
    const lines = findAll(root, (e) => e.name === 'line' && e.attrs['data-kind'] !== undefined);
    const strict = lines.filter((l) => l.attrs['data-kind'] === 'strict');
    expect(strict.length).toBe(1);
    expect(Number(strict[0]!.attrs['data-ratio'])).toBe(1.5);
    const none = lines.filter((l) => l.attrs['data-kind'] === 'no-adapter');
    expect(none.map((l) => l.attrs['data-user'])).toEqual(Object.keys(USERS));
    none.forEach((l, i) =>
      expect(Number(l.attrs['data-ratio'])).toBe(results.users[i]!.test.conditions.no_adapter!.ratioToReference!.value),
    );
    // a higher ratio is drawn higher (smaller y)
    const yOf = (l: XmlElement) => Number(l.attrs.y1);
    const byRatio = [...none, strict[0]!].sort((a, b) => Number(a.attrs['data-ratio']) - Number(b.attrs['data-ratio']));
    for (let i = 1; i < byRatio.length; i++) expect(yOf(byRatio[i]!)).toBeLessThan(yOf(byRatio[i - 1]!));
    const text = findAll(root, (e) => e.name === 'text').map((e) => e.text);
    expect(text).toContain('encoded bytes per user (log scale)');
    expect(text).toContain('perplexity / perplexity of raw_fp32');
    expect(text).toContain('int4_delta');
  });

  it('is written atomically and refuses an empty run', () => {
    const d = tmp();
    writePlot(join(d, 'plots', 'rd.svg'), results);
    expect(readFileSync(join(d, 'plots', 'rd.svg'), 'utf8')).toBe(renderPlot(results));
    const w = ResultsWriter.start(join(d, 'r.json'), header(), { now: clock });
    expect(() => renderPlot(w.results)).toThrow(/no users yet/);
    expect(existsSync(join(d, 'plots'))).toBe(true);
  });
});
