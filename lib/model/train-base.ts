// The base model's training run: tokenizer on the train text, seeded window
// sampling, ternary-aware (or fp32 + post-training quantisation) AdamW steps,
// periodic validation loss, atomic checkpoints and an exact resume.
//
// Determinism: the model init, the data order and every kernel are
// deterministic and independent of the thread count, and the checkpoint holds
// everything that evolves (latent weights, AdamW moments, step, the sampler's
// RNG state, the validation history), so a run resumed from a checkpoint
// writes the same model file, byte for byte, as the uninterrupted run.

import { createHash } from 'node:crypto';

import { BpeTokenizer } from '../tokenizer/bpe.js';
import { dataSeed, SplitMix64, WindowSampler } from './data.js';
import { checkLimit, coreLimits, defaultOf, orchestrationLimit, SEED_LIMIT, type Limit } from './limits.js';
import { evaluate, Model, resolveModelConfig, Trainer, type ModelConfig, type Precision, type StepStats } from './model.js';

export const TRAIN_STATE_FORMAT = 'ternorm.train-base-state';
export const TRAIN_STATE_VERSION = 1;

/** What fixes a run: the same options and texts give the same model file. */
export interface BaseRunOptions {
  mode: 'ternary' | 'fp32';
  steps: number;
  seed: number;
  config: ModelConfig;
  batch: number;
  seq: number;
  lr: number;
  minLr: number;
  warmup: number;
  weightDecay: number;
  gradClip: number;
  /** Validation loss every this many steps (0: only at the end). */
  evalEvery: number;
  /** Validation tokens scored each time (the first ones of the validation text). */
  evalTokens: number;
  /** A checkpoint every this many steps (0: none). */
  checkpointEvery: number;
}

/** The run's ranges: the trainer's numbers are the core's (native/model/limits.h); the rest is this module's. */
export function baseRunLimits(): Record<Exclude<keyof BaseRunOptions, 'config' | 'mode'>, Limit> {
  const t = coreLimits().train;
  return {
    steps: t.totalSteps,
    seed: SEED_LIMIT,
    batch: t.batch,
    seq: t.seq,
    lr: t.lr,
    minLr: t.minLr,
    warmup: t.warmup,
    weightDecay: t.weightDecay,
    gradClip: t.gradClip,
    evalEvery: orchestrationLimit(0, 2 ** 40, true, 100, 'steps between validation evaluations (0: only at the end)'),
    evalTokens: orchestrationLimit(2, 2 ** 31, true, 16384, 'validation tokens scored each time'),
    checkpointEvery: orchestrationLimit(0, 2 ** 40, true, 200, 'steps between checkpoints (0: none)'),
  };
}

/** --stop-after: steps to run in this invocation before writing a checkpoint and stopping. */
export const STOP_AFTER_LIMIT = orchestrationLimit(1, 2 ** 40, true, null, 'steps to run before stopping');

/** What a caller asks for: any option may be left out, and the model config may be partial (resolveModelConfig fills it). */
export type BaseRunRequest = Partial<Omit<BaseRunOptions, 'config'>> & { config?: Partial<ModelConfig> };

export function defaultBaseRun(): Omit<BaseRunOptions, 'config'> {
  const l = baseRunLimits();
  return {
    mode: 'ternary',
    ...(Object.fromEntries(Object.entries(l).map(([k, v]) => [k, defaultOf(v)])) as Omit<BaseRunOptions, 'config' | 'mode'>),
  };
}

export interface ValidationPoint {
  step: number;
  /** Mean NLL on the validation tokens (nats/token). */
  loss: number;
  bitsPerByte: number;
  /** Mean training loss of the steps since the previous point (nats/token); null when none ran. */
  trainLoss: number | null;
}

export interface ProgressInfo {
  step: number;
  steps: number;
  loss: number;
  lr: number;
  /** Training tokens per second over this process's steps (time in steps only). */
  tokensPerSec: number;
  elapsedSec: number;
  etaSec: number;
}

export interface TrainBaseHooks {
  onStep?(p: ProgressInfo): void;
  onValidation?(v: ValidationPoint): void;
  onCheckpoint?(path: string, step: number): void;
  /** Polled after each step; true writes a checkpoint and stops (e.g. on SIGINT). */
  shouldStop?(): boolean;
}

export interface TrainBaseInput {
  trainText: Uint8Array;
  validationText: Uint8Array;
  /** Where the final model file goes. */
  out: string;
  /** Checkpoint path (default `${out}.ckpt`). */
  checkpoint?: string;
  /** Options of a new run (ignored with resume: the checkpoint fixes them). */
  run?: BaseRunRequest;
  /** Resume from this checkpoint file. */
  resume?: string;
  /** Stop (after writing a checkpoint) once this many steps are done, before the end of the run. */
  stopAfter?: number;
  threads?: number;
  /** Free-form description of the texts, kept in the state and the model's meta. */
  source?: unknown;
}

export interface TrainBaseResult {
  /** 'done': the model file was written; 'stopped': a checkpoint was written and the run can resume. */
  status: 'done' | 'stopped';
  stepsDone: number;
  /** The checkpoint this process last wrote, or null. */
  checkpoint: string | null;
  history: ValidationPoint[];
  final: ValidationPoint | null;
  /** Training tokens per second over this process's steps (time in steps only). */
  tokensPerSec: number;
  options: BaseRunOptions;
}

interface TrainState {
  format: string;
  version: number;
  options: BaseRunOptions;
  rng: string;
  trainDigest: string;
  history: ValidationPoint[];
  /** Training losses summed since the last validation point (so a resume keeps the curve exact). */
  trainLossSum: number;
  trainLossCount: number;
  source: unknown;
}

export function resolveBaseRun(partial: BaseRunRequest = {}): BaseRunOptions {
  const o: BaseRunOptions = { ...defaultBaseRun(), ...partial, config: resolveModelConfig(partial.config ?? {}) };
  if (o.mode !== 'ternary' && o.mode !== 'fp32') throw new RangeError(`mode must be 'ternary' or 'fp32', got ${String(o.mode)}`);
  const l = baseRunLimits();
  for (const k of Object.keys(l) as (keyof typeof l)[]) {
    const max = k === 'seq' ? o.config.context : k === 'minLr' ? o.lr : k === 'warmup' ? o.steps : undefined;
    checkLimit(l[k], o[k], k, max);
  }
  if (o.config.vocab < 256) throw new RangeError(`config.vocab must be at least 256 (the byte tokens), got ${o.config.vocab}`);
  return o;
}

function digest(tokens: Int32Array): string {
  return createHash('sha256')
    .update(new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength))
    .digest('hex');
}

function parseState(state: unknown, where: string): TrainState {
  const s = state as Partial<TrainState> | null;
  if (s === null || typeof s !== 'object' || s.format !== TRAIN_STATE_FORMAT) {
    throw new Error(`${where} is not a train-base checkpoint (no ${TRAIN_STATE_FORMAT} state)`);
  }
  if (s.version !== TRAIN_STATE_VERSION) {
    throw new Error(`${where}: train state version ${String(s.version)}, this build reads ${TRAIN_STATE_VERSION}`);
  }
  if (
    typeof s.rng !== 'string' ||
    typeof s.trainDigest !== 'string' ||
    !Array.isArray(s.history) ||
    s.options === undefined ||
    typeof s.trainLossSum !== 'number' ||
    typeof s.trainLossCount !== 'number'
  ) {
    throw new Error(`${where}: the train state is incomplete`);
  }
  return { ...(s as TrainState), options: resolveBaseRun(s.options) };
}

/** The validation tokens scored by a run: the first evalTokens tokens of the validation text. */
export function validationTokens(tokenizer: Pick<BpeTokenizer, 'encode'>, text: Uint8Array, evalTokens: number): Int32Array {
  const all = tokenizer.encode(text);
  if (all.length < 2) throw new RangeError(`the validation text is too short: it encodes to ${all.length} tokens, need at least 2`);
  return all.subarray(0, Math.min(all.length, evalTokens));
}

export async function trainBase(input: TrainBaseInput, hooks: TrainBaseHooks = {}): Promise<TrainBaseResult> {
  const ckptPath = input.checkpoint ?? `${input.out}.ckpt`;
  let model: Model;
  let trainer: Trainer;
  let opts: BaseRunOptions;
  let rng: SplitMix64;
  let history: ValidationPoint[];
  let trainLossSum = 0;
  let trainLossCount = 0;
  let trainTokens: Int32Array;
  let source: unknown = input.source ?? null;

  if (input.resume !== undefined) {
    const { model: m, checkpoint } = Model.loadWithCheckpoint(input.resume);
    if (checkpoint === null) throw new Error(`${input.resume} is a model file, not a checkpoint: it cannot be resumed`);
    const st = parseState(checkpoint.state, input.resume);
    opts = st.options;
    model = m;
    trainTokens = model.tokenizer!.encode(input.trainText);
    if (digest(trainTokens) !== st.trainDigest) {
      throw new Error(`${input.resume}: the training text differs from the one this run started on (token digest mismatch)`);
    }
    trainer = new Trainer(model, trainerOptions(opts));
    trainer.restore(checkpoint);
    rng = SplitMix64.fromState(st.rng);
    history = st.history;
    trainLossSum = st.trainLossSum;
    trainLossCount = st.trainLossCount;
    source = st.source;
  } else {
    opts = resolveBaseRun(input.run);
    if (input.trainText.length === 0) throw new RangeError('the training text is empty');
    const tokenizer = BpeTokenizer.train(input.trainText, { vocabSize: opts.config.vocab });
    trainTokens = tokenizer.encode(input.trainText);
    model = Model.create(opts.config, opts.seed, tokenizer);
    trainer = new Trainer(model, trainerOptions(opts));
    rng = new SplitMix64(dataSeed(opts.seed));
    history = [];
  }
  if (input.stopAfter !== undefined) checkLimit(STOP_AFTER_LIMIT, input.stopAfter, 'stopAfter');
  const sampler = new WindowSampler(trainTokens, opts.seq, rng);
  const valTokens = validationTokens(model.tokenizer!, input.validationText, opts.evalTokens);
  const precision: Precision = opts.mode === 'fp32' ? 'fp32' : 'ternary';
  const tokensPerStep = opts.batch * opts.seq;

  const validate = async (step: number, p: Precision): Promise<ValidationPoint> => {
    const r = await evaluate(model, null, valTokens, { precision: p, threads: input.threads });
    const trainLoss = trainLossCount > 0 ? trainLossSum / trainLossCount : null;
    trainLossSum = 0;
    trainLossCount = 0;
    return { step, loss: r.meanNll, bitsPerByte: r.bitsPerByte, trainLoss };
  };
  const state = (): TrainState => ({
    format: TRAIN_STATE_FORMAT,
    version: TRAIN_STATE_VERSION,
    options: opts,
    rng: rng.state,
    trainDigest: digest(trainTokens),
    history,
    trainLossSum,
    trainLossCount,
    source,
  });
  const writeCheckpoint = (): void => {
    if (opts.mode === 'fp32') model.quantize(input.threads); // the file holds the ternary weights too
    model.saveCheckpoint(ckptPath, trainer, state());
    lastCheckpoint = ckptPath;
    hooks.onCheckpoint?.(ckptPath, trainer.stepsDone);
  };

  let lastCheckpoint: string | null = null;
  const t0 = performance.now();
  let trainSec = 0; // time in training steps only (not validation or checkpoints)
  let stepsThisRun = 0;
  while (trainer.stepsDone < opts.steps) {
    const ts = performance.now();
    const batch = sampler.nextBatch(opts.batch);
    const st: StepStats = await trainer.stepAsync(batch, opts.batch, input.threads);
    trainSec += (performance.now() - ts) / 1000;
    stepsThisRun++;
    trainLossSum += st.loss;
    trainLossCount++;
    const elapsed = (performance.now() - t0) / 1000;
    const tps = (stepsThisRun * tokensPerStep) / Math.max(trainSec, 1e-9);
    hooks.onStep?.({
      step: st.step,
      steps: opts.steps,
      loss: st.loss,
      lr: st.lr,
      tokensPerSec: tps,
      elapsedSec: elapsed,
      etaSec: ((opts.steps - st.step) * tokensPerStep) / Math.max(tps, 1e-9),
    });
    if (opts.evalEvery > 0 && st.step % opts.evalEvery === 0 && st.step < opts.steps) {
      const v = await validate(st.step, precision);
      history.push(v);
      hooks.onValidation?.(v);
    }
    const last = st.step === opts.steps;
    if (!last && opts.checkpointEvery > 0 && st.step % opts.checkpointEvery === 0) writeCheckpoint();
    if (!last && ((input.stopAfter !== undefined && st.step >= input.stopAfter) || hooks.shouldStop?.() === true)) {
      if (opts.checkpointEvery === 0 || st.step % opts.checkpointEvery !== 0) writeCheckpoint();
      return result('stopped', ckptPath, null);
    }
  }

  // The fp32 run is scored twice: with its own fp32 weights, then after post-training quantisation.
  const finalFp32 = opts.mode === 'fp32' ? await validate(opts.steps, 'fp32') : null;
  if (finalFp32 !== null) hooks.onValidation?.(finalFp32);
  if (opts.mode === 'fp32') model.quantize(input.threads);
  const final = await validate(opts.steps, 'ternary');
  if (finalFp32 !== null) final.trainLoss = finalFp32.trainLoss;
  hooks.onValidation?.(final);
  model.save(input.out, {
    format: 'ternorm.train-base',
    version: 1,
    options: opts,
    source,
    trainTokens: trainTokens.length,
    validationTokens: valTokens.length,
    validation: history,
    finalFp32,
    final,
  });
  return result('done', lastCheckpoint, final);

  function result(status: 'done' | 'stopped', checkpoint: string | null, fin: ValidationPoint | null): TrainBaseResult {
    return {
      status,
      stepsDone: trainer.stepsDone,
      checkpoint,
      history,
      final: fin,
      tokensPerSec: (stepsThisRun * tokensPerStep) / Math.max(trainSec, 1e-9),
      options: opts,
    };
  }
}

function trainerOptions(o: BaseRunOptions) {
  return {
    mode: o.mode,
    batch: o.batch,
    seq: o.seq,
    lr: o.lr,
    minLr: o.minLr,
    warmup: o.warmup,
    totalSteps: o.steps,
    weightDecay: o.weightDecay,
    gradClip: o.gradClip,
  } as const;
}
