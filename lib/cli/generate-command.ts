// `ternorm generate`: text after a prompt, streamed to stdout as it is generated; or, with --jsonl,
// JSON-lines requests on stdin (one per line) decoded together in batched steps, one JSON-lines
// result per request on stdout, in the input's order. Numeric flags are range-checked against the
// core's limits before the model is read (exit 2).

import { Adapter } from '../adapter/adapter.js';
import { checkRequest, generateLimits, type GenerateRequest, type GenerateResult } from '../model/generate.js';
import { SEED_LIMIT } from '../model/limits.js';
import { Model, type Precision } from '../model/model.js';
import { parse, required, S, SHOW_HELP, ternariseFlag, UsageError, type Io, type Values } from './args.js';
import { checkNumericFlags, threadsLimit } from './limits.js';

export const GENERATE_USAGE = `  generate        text after a prompt, streamed to stdout (KV-cache decoding, seeded sampling)
    --model M [--adapter A (raw or encoded)] --prompt "..." [--max-tokens 128] [--temperature 1]
    [--top-k 0] [--top-p 1] [--min-p 0] [--seed 0] [--stop STR (repeatable)]
    [--precision ternary|fp32|ternary-fp32act] [--rows 64] [--threads N] [--ternarise ...] [--json]
  generate --jsonl  requests on stdin, one JSON object a line: {"prompt", "adapter"?: path,
                  "maxTokens"?, "temperature"?, "topK"?, "topP"?, "minP"?, "seed"?, "stop"?: [..]}
                  (the flags give the defaults); all decoded together in batched steps; one JSON
                  line per request on stdout: {"line", "text", "tokens", "promptTokens",
                  "finishReason"} or {"line", "error"}
`;

const SAMPLING_FLAGS = ['max-tokens', 'temperature', 'top-k', 'top-p', 'min-p', 'seed'] as const;
const SAMPLING_KEYS = {
  'max-tokens': 'maxTokens',
  temperature: 'temperature',
  'top-k': 'topK',
  'top-p': 'topP',
  'min-p': 'minP',
  seed: 'seed',
} as const;

function numericFlags(v: Values) {
  const l = generateLimits();
  return checkNumericFlags(v, {
    'max-tokens': l.maxTokens,
    temperature: l.temperature,
    'top-k': l.topK,
    'top-p': l.topP,
    'min-p': l.minP,
    seed: SEED_LIMIT,
    rows: l.rows,
    threads: threadsLimit(),
  });
}

export async function cmdGenerate(
  argv: string[],
  io: Io,
  stdin: AsyncIterable<string | Buffer> | Iterable<string | Buffer> = process.stdin,
): Promise<number> {
  const v = parse(argv, {
    ...Object.fromEntries(
      [...SAMPLING_FLAGS, 'model', 'adapter', 'prompt', 'precision', 'rows', 'threads', 'ternarise'].map((f) => [f, S]),
    ),
    stop: { type: 'string', multiple: true },
    jsonl: { type: 'boolean' },
    json: { type: 'boolean' },
  });
  if (v.help) return SHOW_HELP;
  const n = numericFlags(v);
  const precision = (v.precision as string | undefined) ?? 'ternary';
  if (!['ternary', 'fp32', 'ternary-fp32act'].includes(precision))
    throw new UsageError(`--precision must be ternary, fp32 or ternary-fp32act, got '${precision}'`);
  const modelPath = required(v, 'model');
  const ternarise = ternariseFlag(v);
  const stop = (v.stop as unknown as string[] | undefined) ?? [];
  if (stop.some((s) => s === '')) throw new UsageError('--stop must not be empty');
  const defaults: Partial<GenerateRequest> = { stop };
  for (const f of SAMPLING_FLAGS) if (n[f] !== undefined) defaults[SAMPLING_KEYS[f]] = n[f];
  const run = { precision: precision as Precision, threads: n.threads, rows: n.rows };
  if (v.jsonl) {
    if (v.prompt !== undefined || v.adapter !== undefined || v.json)
      throw new UsageError('--jsonl takes the prompts and adapters from stdin: drop --prompt, --adapter and --json');
    const lines = await readLines(stdin);
    const model = Model.load(modelPath, { ternarise });
    return jsonl(model, lines, defaults, run, io);
  }
  if (typeof v.prompt !== 'string') throw new UsageError('--prompt is required (or --jsonl)');
  const prompt = v.prompt;
  const model = Model.load(modelPath, { ternarise });
  const adapter = v.adapter === undefined ? null : Adapter.load(model, v.adapter as string);
  const ac = new AbortController();
  const onSigint = () => ac.abort();
  process.once('SIGINT', onSigint);
  const t0 = performance.now();
  try {
    const it = model.generate(prompt, { ...defaults, adapter, ...run, signal: ac.signal });
    let r: GenerateResult;
    for (;;) {
      const step = await it.next();
      if (step.done === true) {
        r = step.value;
        break;
      }
      if (!v.json) io.stdout.write(step.value);
    }
    const sec = (performance.now() - t0) / 1000;
    if (v.json) io.stdout.write(`${JSON.stringify(resultJson(r))}\n`);
    else {
      io.stdout.write('\n');
      io.stderr.write(`[${r.tokens.length} tokens, ${r.finishReason}, ${(r.tokens.length / sec).toFixed(1)} tok/s]\n`);
    }
    return 0;
  } catch (err) {
    if (ac.signal.aborted) {
      io.stdout.write('\n');
      io.stderr.write('ternorm: generation interrupted\n');
      return 130;
    }
    throw err;
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
}

function resultJson(r: GenerateResult) {
  return { text: r.text, tokens: Array.from(r.tokens), promptTokens: r.promptTokens, finishReason: r.finishReason };
}

async function readLines(stdin: AsyncIterable<string | Buffer> | Iterable<string | Buffer>): Promise<string[]> {
  let text = '';
  for await (const chunk of stdin) text += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
  return text.split('\n');
}

const REQUEST_KEYS = new Set(['prompt', 'adapter', 'maxTokens', 'temperature', 'topK', 'topP', 'minP', 'seed', 'stop']);

// One line as a request (its adapter loaded), or the one-line reason it is not one.
function request(model: Model, line: string, defaults: Partial<GenerateRequest>): GenerateRequest {
  let o: unknown;
  try {
    o = JSON.parse(line);
  } catch (err) {
    throw new Error(`not JSON: ${(err as Error).message}`);
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new Error('expected a JSON object');
  const rec = o as Record<string, unknown>;
  for (const k of Object.keys(rec)) if (!REQUEST_KEYS.has(k)) throw new Error(`unknown key '${k}'`);
  if (typeof rec.prompt !== 'string') throw new Error('"prompt" must be a string');
  if (rec.adapter !== undefined && typeof rec.adapter !== 'string') throw new Error('"adapter" must be a file path');
  return { ...defaults, ...rec, adapter: rec.adapter === undefined ? null : Adapter.load(model, rec.adapter as string) } as GenerateRequest;
}

async function jsonl(
  model: Model,
  lines: string[],
  defaults: Partial<GenerateRequest>,
  run: { precision: Precision; threads?: number; rows?: number },
  io: Io,
): Promise<number> {
  const out: (object | null)[] = [];
  const requests: GenerateRequest[] = [];
  const at: number[] = []; // out index of each request
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      const r = request(model, line, defaults);
      checkRequest(model, r); // its own checks (prompt, ranges) before anything is decoded
      requests.push(r);
      at.push(out.length);
      out.push(null);
    } catch (err) {
      out.push({ line: i + 1, error: (err as Error).message });
    }
  });
  let failed = out.length - requests.length;
  if (requests.length > 0) {
    const lineOf = lines.map((l, i) => (l.trim() === '' ? -1 : i + 1)).filter((x) => x > 0);
    const results = await model.generateBatch(requests, run);
    results.forEach((r, k) => {
      out[at[k]!] = { line: lineOf[at[k]!], ...resultJson(r) };
    });
  }
  for (const o of out) io.stdout.write(`${JSON.stringify(o)}\n`);
  if (out.length === 0) {
    io.stderr.write('ternorm: --jsonl read no requests on stdin\n');
    failed = 1;
  }
  return failed > 0 ? 1 : 0;
}
