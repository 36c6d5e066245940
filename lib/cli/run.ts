// The ternorm command line: train-base, train-adapter, evaluate. run(argv)
// returns the exit code: 0 ok, 1 a failure (missing or bad files, texts that
// are empty or too short, an adapter of another base), 2 a usage error
// (unknown command or flag, a bad flag value), 130 interrupted (a checkpoint
// was written). Errors print one clear line, never a stack trace.

import { resolve } from 'node:path';

import { getFixtures } from '../data/fixtures.js';
import { Adapter } from '../adapter/adapter.js';
import {
  evaluate,
  GGUF_FLOAT_TYPES,
  GGUF_TABLE_TYPES,
  GGUF_TYPES,
  Model,
  type GgufTableType,
  type GgufType,
  type ModelConfig,
  type Precision,
} from '../model/model.js';
import { adapterRunLimits, resolveAdapterRun, trainAdapter, type AdapterRunOptions } from '../model/train-adapter.js';
import { baseRunLimits, STOP_AFTER_LIMIT, trainBase, type BaseRunRequest } from '../model/train-base.js';
import { BET_USAGE, cmdBet, cmdFleet, cmdQuantize, cmdReport, REPORT_USAGE } from './bet-commands.js';
import { cmdGenerate, GENERATE_USAGE } from './generate-command.js';
import { coreLimits, orchestrationLimit } from '../model/limits.js';
import { MAX_VOCAB_SIZE, MIN_VOCAB_SIZE } from '../tokenizer/bpe.js';
import {
  defined,
  ensureDir,
  parse,
  required,
  S,
  SHOW_HELP,
  ternariseFlag,
  TERNARISE_USAGE,
  UsageError,
  type Io,
  type Values,
} from './args.js';
import { actQuantFlag, checkNumericFlags, gradQuantFlag, narrowed, threadsLimit } from './limits.js';
import { formatDuration, ProgressBar } from './progress.js';
import { readTextFile } from '../util/files.js';
import { terminalText } from '../util/text.js';

const USAGE = `usage: ternorm <command> [options]

commands:
${BET_USAGE}${REPORT_USAGE}  train-base      train the base model (tokenizer, ternary-aware training, checkpoints)
    [--out models/base.tnm] [--steps N] [--seed S] [--mode ternary|fp32] [--resume CKPT]
    [--checkpoint PATH (default OUT.ckpt)] [--checkpoint-every N] [--stop-after N]
    [--eval-every N] [--eval-tokens N] [--train-text FILE --validation-text FILE (default: fixtures)]
    [--vocab 4096] [--d-model 256] [--layers 4] [--heads 4] [--kv-heads N (default: --heads)]
    [--untied-head] [--d-ff 768] [--context 256]
    [--batch 8] [--seq 256] [--lr 1.5e-3] [--min-lr 1.5e-4] [--warmup 100] [--weight-decay 0.1]
    [--grad-clip 1] [--threads N] [--log-every 10]
  train-adapter   train one user's norm-only adapter on a base model
    --model M --text user.txt --out user.adapter [--seed S] [--max-steps 100] [--eval-every 20]
    [--patience 3] [--validation-fraction 0.05] [--batch 8] [--seq 128] [--lr 3e-2] [--min-lr 3e-3]
    [--warmup 10] [--weight-decay 0] [--grad-quant int8|f32] [--threads N] [--ternarise ...] [--json]
  evaluate        perplexity and bits per byte of a text
    --model M [--adapter A] --text T [--precision ternary|fp32|ternary-fp32act]
    [--act-quant token|block256 (ternary activations per token, or per 256 values as llama.cpp's
    TQ1_0/TQ2_0 path)] [--stride N] [--batch 4] [--threads N] [--ternarise ...] [--json]
  export          write a model (and optionally an adapter, raw or encoded, folded into its norm
                  weights) as a GGUF llama.cpp loads
    --model M [--adapter A] --type tq2_0|tq1_0|f16|f32|bf16|q8_0 --out X.gguf [--ternarise ...]
    [--weights ternary|latent (trit x scale, or the fp32 latent weights of a checkpoint, a created model
    or a float GGUF, in a float type: a float GGUF that is ternarised on load)]
    [--table-type f32|f16|bf16 (the token embedding / output head; default: as the model stores it)]
${GENERATE_USAGE}  Every --model accepts a ternorm .tnm or a GGUF (llama architecture; detected by its magic).
  ${TERNARISE_USAGE}
`;

// ---- train-base --------------------------------------------------------------------------------
const RUN_FLAGS = [
  'steps',
  'seed',
  'mode',
  'eval-every',
  'eval-tokens',
  'checkpoint-every',
  'vocab',
  'd-model',
  'layers',
  'heads',
  'kv-heads',
  'd-ff',
  'context',
  'batch',
  'seq',
  'lr',
  'min-lr',
  'warmup',
  'weight-decay',
  'grad-clip',
  'train-text',
  'validation-text',
];

async function cmdTrainBase(argv: string[], io: Io): Promise<number> {
  const v = parse(argv, {
    ...Object.fromEntries([...RUN_FLAGS, 'out', 'checkpoint', 'resume', 'stop-after', 'threads', 'log-every'].map((f) => [f, S])),
    'untied-head': { type: 'boolean' },
  });
  if (v.help) return help(io);
  const b = baseRunLimits();
  const m = coreLimits().model;
  const n = checkNumericFlags(v, {
    steps: b.steps,
    seed: b.seed,
    'eval-every': b.evalEvery,
    'eval-tokens': b.evalTokens,
    'checkpoint-every': b.checkpointEvery,
    vocab: narrowed(m.vocab, { min: MIN_VOCAB_SIZE, max: Math.min(m.vocab.max, MAX_VOCAB_SIZE) }),
    'd-model': m.dModel,
    layers: m.nLayers,
    heads: m.nHeads,
    'kv-heads': narrowed(m.nKvHeads, { min: 1 }),
    'd-ff': m.dFf,
    context: m.context,
    batch: b.batch,
    seq: b.seq,
    lr: b.lr,
    'min-lr': b.minLr,
    warmup: b.warmup,
    'weight-decay': b.weightDecay,
    'grad-clip': b.gradClip,
    threads: threadsLimit(),
    'stop-after': STOP_AFTER_LIMIT,
    'log-every': orchestrationLimit(1, 2 ** 40, true, 10, 'steps between progress lines'),
  });
  const out = (v.out as string | undefined) ?? 'models/base.tnm';
  const resume = v.resume as string | undefined;
  let trainText: Uint8Array;
  let validationText: Uint8Array;
  let run: BaseRunRequest | undefined;
  let source: unknown;
  if (resume !== undefined) {
    const shaping = [...RUN_FLAGS, 'untied-head'].filter((f) => v[f] !== undefined && f !== 'train-text' && f !== 'validation-text');
    if (shaping.length > 0) {
      throw new UsageError(`--${shaping[0]} cannot be combined with --resume: the checkpoint fixes the run's options`);
    }
    const { checkpoint } = Model.loadWithCheckpoint(resume);
    if (checkpoint === null) throw new Error(`${resume} is a model file, not a checkpoint: it cannot be resumed`);
    source = (checkpoint.state as { source?: unknown } | null)?.source ?? null;
    ({ trainText, validationText } = texts(v, source));
  } else {
    const mode = v.mode as string | undefined;
    if (mode !== undefined && mode !== 'ternary' && mode !== 'fp32')
      throw new UsageError(`--mode must be 'ternary' or 'fp32', got '${mode}'`);
    run = defined({
      mode: mode as 'ternary' | 'fp32' | undefined,
      steps: n.steps,
      seed: n.seed,
      evalEvery: n['eval-every'],
      evalTokens: n['eval-tokens'],
      checkpointEvery: n['checkpoint-every'],
      batch: n.batch,
      seq: n.seq,
      lr: n.lr,
      minLr: n['min-lr'],
      warmup: n.warmup,
      weightDecay: n['weight-decay'],
      gradClip: n['grad-clip'],
    });
    run.config = defined({
      vocab: n.vocab,
      dModel: n['d-model'],
      nLayers: n.layers,
      nHeads: n.heads,
      nKvHeads: n['kv-heads'],
      tiedHead: v['untied-head'] === true ? false : undefined,
      dFf: n['d-ff'],
      context: n.context,
    }) as Partial<ModelConfig>;
    if (run.seq === undefined && run.config.context !== undefined) run.seq = Math.min(b.seq.default!, run.config.context);
    source =
      v['train-text'] !== undefined || v['validation-text'] !== undefined
        ? { kind: 'files', train: resolve(required(v, 'train-text')), validation: resolve(required(v, 'validation-text')) }
        : { kind: 'fixtures', text: 'base' };
    ({ trainText, validationText } = texts(v, source));
  }
  const threads = n.threads;
  const bar = new ProgressBar(io.stderr, n['log-every'] ?? 10);
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
  };
  process.once('SIGINT', onSigint);
  ensureDir(out);
  try {
    const r = await trainBase(
      defined({
        trainText,
        validationText,
        out,
        checkpoint: v.checkpoint as string | undefined,
        run,
        resume,
        stopAfter: n['stop-after'],
        threads,
        source,
      }) as Parameters<typeof trainBase>[0],
      {
        onStep: (p) => bar.update(p),
        onValidation: (p) => bar.log(`step ${p.step}: validation loss ${p.loss.toFixed(4)} (${p.bitsPerByte.toFixed(4)} bits/byte)`),
        onCheckpoint: (path, step) => bar.log(`step ${step}: checkpoint ${path}`),
        shouldStop: () => interrupted,
      },
    );
    bar.done();
    const tps = `${Math.round(r.tokensPerSec)} tok/s`;
    if (r.status === 'stopped') {
      io.stdout.write(
        `stopped after step ${r.stepsDone}; resume with: ternorm train-base --resume ${r.checkpoint} --out ${out} (${tps})\n`,
      );
      return interrupted ? 130 : 0;
    }
    const fp = Model.load(out).fingerprint;
    io.stdout.write(
      `wrote ${out} (fingerprint ${fp?.slice(0, 16)}...): ${r.stepsDone} steps, validation loss ${r.final!.loss.toFixed(4)}, ` +
        `${r.final!.bitsPerByte.toFixed(4)} bits/byte, ${tps}\n`,
    );
    return 0;
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
}

function texts(v: Values, source: unknown): { trainText: Uint8Array; validationText: Uint8Array } {
  const tt = v['train-text'] as string | undefined;
  const vt = v['validation-text'] as string | undefined;
  if (tt !== undefined || vt !== undefined) {
    return {
      trainText: readTextFile(required(v, 'train-text'), '--train-text'),
      validationText: readTextFile(required(v, 'validation-text'), '--validation-text'),
    };
  }
  const s = source as { kind?: string; train?: string; validation?: string } | null;
  if (s?.kind === 'files' && typeof s.train === 'string' && typeof s.validation === 'string') {
    return { trainText: readTextFile(s.train, 'training text'), validationText: readTextFile(s.validation, 'validation text') };
  }
  const fx = getFixtures();
  return { trainText: fx.read('base', 'train'), validationText: fx.read('base', 'validation') };
}

// ---- train-adapter -------------------------------------------------------------------------------
async function cmdTrainAdapter(argv: string[], io: Io): Promise<number> {
  const flags = [
    'model',
    'text',
    'out',
    'seed',
    'max-steps',
    'eval-every',
    'patience',
    'validation-fraction',
    'batch',
    'seq',
    'lr',
    'min-lr',
    'warmup',
    'weight-decay',
    'threads',
    'ternarise',
    'grad-quant',
  ];
  const v = parse(argv, { ...Object.fromEntries(flags.map((f) => [f, S])), json: { type: 'boolean' } });
  if (v.help) return help(io);
  const a = adapterRunLimits();
  const n = checkNumericFlags(v, {
    seed: a.seed,
    'max-steps': a.maxSteps,
    'eval-every': a.evalEvery,
    patience: a.patience,
    'validation-fraction': a.validationFraction,
    batch: a.batch,
    seq: a.seq,
    lr: a.lr,
    'min-lr': a.minLr,
    warmup: a.warmup,
    'weight-decay': a.weightDecay,
    threads: threadsLimit(),
  });
  const modelPath = required(v, 'model');
  const textPath = required(v, 'text');
  const out = required(v, 'out');
  const opts: Partial<AdapterRunOptions> = defined({
    seed: n.seed,
    maxSteps: n['max-steps'],
    evalEvery: n['eval-every'],
    patience: n.patience,
    validationFraction: n['validation-fraction'],
    batch: n.batch,
    seq: n.seq,
    lr: n.lr,
    minLr: n['min-lr'],
    warmup: n.warmup,
    weightDecay: n['weight-decay'],
    gradQuant: gradQuantFlag(v['grad-quant']),
  });
  const threads = n.threads;
  const text = readTextFile(textPath, '--text');
  const model = Model.load(modelPath, { ternarise: ternariseFlag(v) });
  const resolved = resolveAdapterRun(model, opts);
  const bar = new ProgressBar(io.stderr, 10);
  let lastLoss = NaN;
  const t0 = performance.now();
  const r = await trainAdapter(
    model,
    text,
    resolved,
    {
      onStep: (step, max, loss) => {
        lastLoss = loss;
        const el = Math.max((performance.now() - t0) / 1000, 1e-9);
        const tokensPerSec = (step * resolved.batch * resolved.seq) / el;
        bar.update({ step, steps: max, loss, tokensPerSec, etaSec: (el / step) * (max - step) });
      },
      onValidation: (p, best) => bar.log(`step ${p.step}: validation loss ${p.loss.toFixed(4)}${best ? ' (best)' : ''}`),
    },
    threads,
  );
  bar.done();
  ensureDir(out);
  r.adapter.save(model, out);
  const summary = {
    out,
    baselineLoss: r.baselineLoss,
    bestLoss: r.bestLoss,
    bestStep: r.bestStep,
    stepsDone: r.stepsDone,
    stoppedEarly: r.stoppedEarly,
    trainTokens: r.trainTokens,
    validationTokens: r.validationTokens,
    seconds: r.seconds,
    lastTrainLoss: lastLoss,
    gradQuant: r.options.gradQuant,
  };
  if (v.json) io.stdout.write(`${JSON.stringify(summary)}\n`);
  else {
    io.stdout.write(
      `wrote ${out}: validation loss ${r.baselineLoss.toFixed(4)} (base) -> ${r.bestLoss.toFixed(4)} (adapter, step ${r.bestStep}), ` +
        `${r.stepsDone} steps${r.stoppedEarly ? ' (stopped early)' : ''}, ${r.trainTokens} train / ${r.validationTokens} validation tokens, ` +
        `${formatDuration(r.seconds)}\n`,
    );
  }
  return 0;
}

// ---- export --------------------------------------------------------------------------------------
async function cmdExport(argv: string[], io: Io): Promise<number> {
  const v = parse(argv, { model: S, adapter: S, type: S, out: S, weights: S, ternarise: S, 'table-type': S });
  if (v.help) return help(io);
  const type = required(v, 'type');
  if (!(GGUF_TYPES as readonly string[]).includes(type)) throw new UsageError(`--type must be ${GGUF_TYPES.join(', ')}, got '${type}'`);
  const weights = (v.weights as string | undefined) ?? 'ternary';
  if (weights !== 'ternary' && weights !== 'latent') throw new UsageError(`--weights must be ternary or latent, got '${weights}'`);
  if (weights === 'latent' && !(GGUF_FLOAT_TYPES as readonly string[]).includes(type))
    throw new UsageError(`--weights latent writes floats: --type must be ${GGUF_FLOAT_TYPES.join(', ')}, got '${type}'`);
  const tableType = v['table-type'] as string | undefined;
  if (tableType !== undefined && !(GGUF_TABLE_TYPES as readonly string[]).includes(tableType))
    throw new UsageError(`--table-type must be ${GGUF_TABLE_TYPES.join(', ')}, got '${tableType}'`);
  const modelPath = required(v, 'model');
  const out = required(v, 'out');
  const model = Model.load(modelPath, { ternarise: ternariseFlag(v) });
  if (weights === 'latent' && !model.hasLatentForExport) {
    throw new Error(
      `--weights latent: ${modelPath} has no latent weights (a .tnm model file holds only its ternary weights; ` +
        "a checkpoint, e.g. train-base's OUT.ckpt, or a GGUF of float weights has them)",
    );
  }
  // An encoded adapter's gains are its decoded ones (what the norm kernel computes with).
  const adapter = v.adapter === undefined ? null : Adapter.load(model, v.adapter as string);
  model.exportGguf(type as GgufType, {
    path: out,
    gains: adapter === null ? null : adapter.gains,
    weights,
    tableType: tableType as GgufTableType | undefined,
  });
  io.stdout.write(
    `wrote ${out} (${type}, ${weights} weights${tableType === undefined ? '' : `, ${tableType} token tables`}${adapter === null ? '' : `, adapter ${adapter.scheme} folded into the norms`})\n`,
  );
  return 0;
}

// ---- evaluate ------------------------------------------------------------------------------------
async function cmdEvaluate(argv: string[], io: Io): Promise<number> {
  const v = parse(argv, {
    model: S,
    adapter: S,
    text: S,
    precision: S,
    'act-quant': S,
    stride: S,
    batch: S,
    threads: S,
    ternarise: S,
    json: { type: 'boolean' },
  });
  if (v.help) return help(io);
  const e = coreLimits().eval;
  const n = checkNumericFlags(v, { stride: narrowed(e.stride, { min: 1 }), batch: e.batch, threads: threadsLimit() });
  const modelPath = required(v, 'model');
  const textPath = required(v, 'text');
  const precision = (v.precision as string | undefined) ?? 'ternary';
  if (!['ternary', 'fp32', 'ternary-fp32act'].includes(precision))
    throw new UsageError(`--precision must be ternary, fp32 or ternary-fp32act, got '${precision}'`);
  const actQuant = actQuantFlag(v['act-quant']);
  if (actQuant !== undefined && actQuant !== coreLimits().actQuant.default && precision !== 'ternary')
    throw new UsageError(`--act-quant ${actQuant} needs --precision ternary, got '${precision}'`);
  const { stride, batch, threads } = n;
  const text = readTextFile(textPath, '--text');
  const model = Model.load(modelPath, { ternarise: ternariseFlag(v) });
  const adapter = v.adapter === undefined ? null : Adapter.load(model, v.adapter as string);
  const tokens = model.tokenizer!.encode(text);
  if (tokens.length < 2)
    throw new Error(`--text ${textPath} is too short: it encodes to ${tokens.length} token(s), evaluation needs at least 2`);
  const r = await evaluate(model, adapter, tokens, defined({ precision: precision as Precision, actQuant, stride, batch, threads }));
  const summary = {
    model: modelPath,
    adapter: (v.adapter as string | undefined) ?? null,
    tokens: r.nTokens,
    scoredTokens: r.nll.length,
    bytes: r.nBytes,
    meanNll: r.meanNll,
    perplexity: r.perplexity,
    bitsPerByte: r.bitsPerByte,
  };
  if (v.json) io.stdout.write(`${JSON.stringify(summary)}\n`);
  else {
    io.stdout.write(
      `perplexity ${r.perplexity.toFixed(4)}  bits/byte ${r.bitsPerByte.toFixed(4)}  mean nll ${r.meanNll.toFixed(4)}  ` +
        `tokens ${r.nTokens} (${r.nll.length} scored, ${r.nBytes} bytes)\n`,
    );
  }
  return 0;
}

/**
 * After a usage error: the usage of the command that was given (its blocks of USAGE, e.g. every
 * `fleet` subcommand), or all of it for an unknown command.
 */
function commandUsage(cmd: string | undefined): string {
  const blocks: string[][] = [];
  for (const line of USAGE.split('\n')) {
    if (/^ {2}\S/.test(line)) blocks.push([line]);
    else if (/^ {3,}\S/.test(line)) blocks.at(-1)?.push(line);
  }
  const own = blocks.filter((b) => b[0]!.trim().split(/\s+/)[0] === cmd);
  if (own.length === 0) return USAGE;
  return `usage: ternorm ${cmd} [options]\n${own.map((b) => b.join('\n')).join('\n')}\n(ternorm help: every command)\n`;
}

function help(io: Io): number {
  io.stdout.write(USAGE);
  return 0;
}

export async function run(argv: string[], io: Io = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'train-base':
        return await cmdTrainBase(rest, io);
      case 'train-adapter':
        return await cmdTrainAdapter(rest, io);
      case 'evaluate':
        return await cmdEvaluate(rest, io);
      case 'export':
        return await cmdExport(rest, io);
      case 'bet':
      case 'report':
      case 'fleet':
      case 'quantize':
      case 'generate': {
        const commands = { bet: cmdBet, report: cmdReport, fleet: cmdFleet, quantize: cmdQuantize, generate: cmdGenerate };
        const code = await commands[cmd](rest, io);
        return code === SHOW_HELP ? help(io) : code;
      }
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        return help(io);
      default:
        throw new UsageError(`unknown command '${cmd}'`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`ternorm: ${terminalText(err.message)}\n\n${commandUsage(cmd)}`);
      return 2;
    }
    io.stderr.write(`ternorm: ${terminalText(err instanceof Error ? err.message : String(err))}\n`);
    return 1;
  }
}
