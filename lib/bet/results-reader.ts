// The results reader: a file is read only if it matches the JSON Schema
// (lib/bet/schema/adapter-compress.schema.json, checked with ajv), its checksum matches its
// content, the rules the schema cannot state hold (the error is there exactly when the run failed,
// the criteria are valid and name conditions of the run, every user has exactly the run's
// conditions, byte ranges are sorted, intervals are ordered), and every derived number is what the
// analysis recomputes from the recorded ones (perplexities from mean NLLs, ratios, policy choices,
// verdicts, policy summary).

import { existsSync, readFileSync } from 'node:fs';

import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';

import { readTextFile } from '../util/files.js';
import { sha256Hex } from '../util/hash.js';
import { canonicalJson, validateCriteria } from './criteria.js';
import { computeFrontier } from './frontier.js';
import { analyseNoise } from './noise.js';
import { analysePersonal } from './personal.js';
import { summarise, userPolicy } from './results-analysis.js';
import { RESULTS_FORMAT, RESULTS_VERSION, resultsSchemaPath, SPLITS } from './results-format.js';
import type { AdapterCompressResults, Estimate } from './results-types.js';

class Shape {
  constructor(private readonly where: string) {}

  fail(path: string, msg: string): never {
    throw new Error(`results${this.where === '' ? '' : ` (${this.where})`}: ${path} ${msg}`);
  }
}

let compiled: ValidateFunction | undefined;

function schemaValidator(): ValidateFunction {
  if (compiled === undefined) {
    const ajv = new Ajv2020({ allErrors: false, strict: true, allowUnionTypes: true });
    compiled = ajv.compile(JSON.parse(readFileSync(resultsSchemaPath(), 'utf8')) as object);
  }
  return compiled;
}

/** "$.users[0].test" from ajv's "/users/0/test". */
function jsonPath(pointer: string): string {
  return (
    '$' +
    pointer
      .split('/')
      .slice(1)
      .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
      .map((p) => (/^\d+$/.test(p) ? `[${p}]` : /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(p) ? `.${p}` : `[${JSON.stringify(p)}]`))
      .join('')
  );
}

/** One line for the first schema error: where, and what was expected. */
function describe(e: ErrorObject): [string, string] {
  const at = jsonPath(e.instancePath);
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return [`${at}.${String(p.missingProperty)}`, 'is missing'];
    case 'additionalProperties':
      return [`${at}.${String(p.additionalProperty)}`, 'is not a known field'];
    case 'const':
      return [at, `must be ${JSON.stringify(p.allowedValue)}`];
    case 'enum':
      return [at, `must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`];
    default:
      return [at, e.message ?? 'does not match the schema'];
  }
}

/** Checks `value` against the results schema; throws "results (where): $.path what". */
export function checkSchema(value: unknown, where = ''): asserts value is AdapterCompressResults {
  const s = new Shape(where);
  const o = value as Record<string, unknown> | null;
  if (o !== null && typeof o === 'object' && !Array.isArray(o)) {
    if (o.format !== RESULTS_FORMAT) s.fail('$.format', `must be "${RESULTS_FORMAT}", got ${JSON.stringify(o.format)}`);
    if (o.version !== RESULTS_VERSION)
      s.fail('$.version', `is ${JSON.stringify(o.version)}; this ternorm reads results version ${RESULTS_VERSION}`);
  }
  const validate = schemaValidator();
  if (!validate(value)) {
    const [at, what] = describe(validate.errors![0]!);
    s.fail(at, what);
  }
}

/** What the schema cannot say. */
function checkRules(r: AdapterCompressResults, s: Shape): void {
  if ((r.status === 'failed') !== (r.error !== null)) s.fail('$.error', 'must be a message exactly when the status is "failed"');
  const criteria = validateCriteria(r.criteria.criteria, 'in the results file');
  if (sha256Hex(canonicalJson(criteria)) !== r.criteria.sha256) s.fail('$.criteria.sha256', 'does not match the recorded criteria');
  const conditions = r.conditions;
  for (const [role, name] of Object.entries(criteria.conditions)) {
    if (!conditions.includes(name)) s.fail('$.conditions', `lacks the criteria's ${role} condition "${name}"`);
  }
  const { noAdapter, reference } = criteria.conditions;
  const sameSet = (got: string[], want: string[]): boolean => got.length === want.length && want.every((c) => got.includes(c));
  const interval = (e: Estimate | null, path: string): void => {
    if (e !== null && e.ci.low > e.ci.high) s.fail(`${path}.ci`, `has low ${e.ci.low} > high ${e.ci.high}`);
  };
  const names = new Set<string>();
  r.users.forEach((u, ui) => {
    const p = `$.users[${ui}]`;
    if (names.has(u.user)) s.fail(`${p}.user`, 'must be a name not used by another user');
    names.add(u.user);
    for (const split of SPLITS) {
      const t = u.texts[split];
      let prev = 0;
      t.ranges.forEach(([a, b], ri) => {
        if (a < prev || b <= a)
          s.fail(`${p}.texts.${split}.ranges[${ri}]`, 'must be sorted, non-overlapping [start, end) with start < end');
        prev = b;
      });
      const st = u[split];
      if (!sameSet(Object.keys(st.conditions), conditions)) s.fail(`${p}.${split}.conditions`, "must have exactly the run's conditions");
      for (const c of conditions) {
        const x = st.conditions[c]!;
        const cp = `${p}.${split}.conditions.${c}`;
        if ((c === reference) !== (x.ratioToReference === null))
          s.fail(`${cp}.ratioToReference`, c === reference ? 'must be null for the reference' : 'is missing');
        if ((c === noAdapter) !== (x.ratioToNoAdapter === null))
          s.fail(`${cp}.ratioToNoAdapter`, c === noAdapter ? 'must be null for the no-adapter condition' : 'is missing');
        interval(x.ppl, `${cp}.ppl`);
        interval(x.bpb, `${cp}.bpb`);
        interval(x.ratioToReference, `${cp}.ratioToReference`);
        interval(x.ratioToNoAdapter, `${cp}.ratioToNoAdapter`);
      }
    }
    if (
      !sameSet(
        Object.keys(u.encodings),
        conditions.filter((c) => c !== noAdapter),
      )
    ) {
      s.fail(`${p}.encodings`, `must have exactly the conditions other than "${noAdapter}"`);
    }
    u.seeds?.runs.forEach((run, ri) => {
      for (const c of Object.keys(run.ppl))
        if (!conditions.includes(c)) s.fail(`${p}.seeds.runs[${ri}].ppl.${c}`, 'is not a condition of the run');
    });
  });
}

const close = (a: number, b: number): boolean => Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(a), Math.abs(b));

/** Recomputes what is derived from the recorded numbers and checks it matches. */
function checkDerived(r: AdapterCompressResults, s: Shape): void {
  const criteria = r.criteria.criteria;
  const { reference, noAdapter } = criteria.conditions;
  r.users.forEach((u, ui) => {
    for (const split of SPLITS) {
      const st = u[split];
      if (st.bytes !== u.texts[split].bytes) s.fail(`$.users[${ui}].${split}.bytes`, "differs from the text id's bytes");
      for (const c of r.conditions) {
        const x = st.conditions[c]!;
        const cp = `$.users[${ui}].${split}.conditions.${c}`;
        if (!close(x.ppl.value, Math.exp(x.meanNll))) s.fail(`${cp}.ppl.value`, `is not exp(meanNll) = ${Math.exp(x.meanNll)}`);
        if (!close(x.bpb.value, (x.meanNll * st.tokens) / Math.LN2 / st.bytes))
          s.fail(`${cp}.bpb.value`, 'is not meanNll * tokens / ln 2 / bytes');
        if (x.ratioToReference !== null && !close(x.ratioToReference.value, x.ppl.value / st.conditions[reference]!.ppl.value)) {
          s.fail(`${cp}.ratioToReference.value`, 'is not ppl / ppl(reference)');
        }
        if (x.ratioToNoAdapter !== null && !close(x.ratioToNoAdapter.value, x.ppl.value / st.conditions[noAdapter]!.ppl.value)) {
          s.fail(`${cp}.ratioToNoAdapter.value`, 'is not ppl / ppl(no adapter)');
        }
      }
    }
    const again = userPolicy(u.validation, u.test, u.encodings, criteria, u.user);
    if (canonicalJson(again) !== canonicalJson(u.policy))
      s.fail(`$.users[${ui}].policy`, 'differs from the policy recomputed from the validation split');
    if (u.noise !== undefined) {
      const noise = analyseNoise(u.noise.measured, u.test, criteria, r.conditions, u.user);
      if (canonicalJson(noise) !== canonicalJson(u.noise.analysis))
        s.fail(`$.users[${ui}].noise.analysis`, 'differs from the analysis recomputed from the noise measurements');
    }
  });
  if (r.personal !== undefined) {
    const again = analysePersonal(r.personal.measured, r.users, r.conditions, criteria);
    if (canonicalJson(again) !== canonicalJson(r.personal.analysis))
      s.fail('$.personal.analysis', 'differs from the analysis recomputed from the cross-user and generic measurements');
  }
  const sum = summarise(r.users, r.conditions, criteria, r.personal, r.run.frontier?.ladder);
  if (r.conclusions !== undefined && canonicalJson(sum.conclusions) !== canonicalJson(r.conclusions))
    s.fail('$.conclusions', 'differ from the conclusions recomputed from the numbers');
  if (canonicalJson(sum.verdicts) !== canonicalJson(r.verdicts))
    s.fail('$.verdicts', "differ from the verdicts recomputed from the users' test perplexities");
  if (canonicalJson(sum.policy) !== canonicalJson(r.policy))
    s.fail('$.policy', "differs from the summary recomputed from the users' policies");
  if ((r.frontier === undefined) !== (r.run.frontier === undefined))
    s.fail('$.frontier', 'is present exactly when run.frontier is (ternorm bet --frontier)');
  if (r.run.frontier !== undefined && r.frontier !== undefined) {
    const again = computeFrontier(r.users, r.run.frontier.ladder, criteria);
    if (canonicalJson(again) !== canonicalJson(r.frontier))
      s.fail('$.frontier', "differs from the frontier recomputed from the users' validation and test perplexities");
  }
}

/** Validates a parsed results object (shape, checksum, derived values) and returns it typed. */
export function validateResults(value: unknown, where = ''): AdapterCompressResults {
  const s = new Shape(where);
  checkSchema(value, where);
  const r = value;
  checkRules(r, s);
  const { checksum, ...body } = r;
  const sum = sha256Hex(canonicalJson(body));
  if (sum !== checksum)
    s.fail('$.checksum', `does not match the content (stored ${checksum}, computed ${sum}); the file was modified or truncated`);
  checkDerived(r, s);
  return r;
}

export function parseResults(text: string, where = ''): AdapterCompressResults {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`results${where === '' ? '' : ` (${where})`}: not valid JSON (truncated or corrupt?): ${(e as Error).message}`);
  }
  return validateResults(v, where);
}

export function readResults(path: string): AdapterCompressResults {
  if (!existsSync(path)) throw new Error(`results: no results file at ${path}`);
  let text: string;
  try {
    text = readTextFile(path).toString('utf8');
  } catch (e) {
    throw new Error(`results: ${(e as Error).message}`, { cause: e });
  }
  return parseResults(text, path);
}
