// Training one user's norm-only adapter: the user's text is split into an
// adapter-train part and a validation part (the last `validationFraction` of
// its tokens); gains start at 1.0 and train with AdamW on the frozen ternary
// base; the validation NLL is measured every `evalEvery` steps and training
// stops early after `patience` evaluations without improvement. The gains of
// the best evaluation are kept. Seeded and deterministic.

import { dataSeed, SplitMix64, WindowSampler } from './data.js';
import {
  checkGradQuant,
  checkLimit,
  coreLimits,
  defaultOf,
  orchestrationLimit,
  SEED_LIMIT,
  type ActQuant,
  type GradQuant,
  type Limit,
} from './limits.js';
import { Adapter } from '../adapter/adapter.js';
import { evaluate, Model, Trainer } from './model.js';

export interface AdapterRunOptions {
  seed: number;
  /** Most steps (the cosine schedule spans them). */
  maxSteps: number;
  evalEvery: number;
  /** Evaluations without a new best before stopping. */
  patience: number;
  /** Fraction of the user's tokens held out for early stopping (from the end of the text). */
  validationFraction: number;
  batch: number;
  seq: number;
  lr: number;
  minLr: number;
  warmup: number;
  weightDecay: number;
  gradClip: number;
  /** The gradient through the ternary linears (limits.ts GradQuant); the core's adapter default: 'int8'. */
  gradQuant: GradQuant;
}

/** The numeric options, each with its range. */
export type AdapterRunNumber = Exclude<keyof AdapterRunOptions, 'gradQuant'>;

/**
 * The run's ranges: the trainer's numbers are the core's (adapter defaults, native/model/limits.h:
 * 100 steps of 8 x 128 tokens at a high learning rate, sized for one user in < 30 s on 2 cores);
 * early stopping is this module's (the 5 % tail, about 2 400 tokens of a 192 KiB text, is scored
 * every 20 steps).
 */
export function adapterRunLimits(): Record<AdapterRunNumber, Limit> {
  const a = coreLimits().adapterTrain;
  return {
    seed: SEED_LIMIT,
    maxSteps: a.totalSteps,
    evalEvery: orchestrationLimit(1, 2 ** 40, true, 20, 'steps between validation evaluations'),
    patience: orchestrationLimit(1, 2 ** 20, true, 3, 'evaluations without a new best before stopping'),
    validationFraction: orchestrationLimit(0, 1, false, 0.05, "fraction of the user's tokens held out for early stopping", {
      min: true,
      max: true,
    }),
    batch: a.batch,
    seq: a.seq,
    lr: a.lr,
    minLr: a.minLr,
    warmup: a.warmup,
    weightDecay: a.weightDecay,
    gradClip: a.gradClip,
  };
}

export function defaultAdapterRun(): AdapterRunOptions {
  const l = adapterRunLimits();
  const numbers = Object.fromEntries(Object.entries(l).map(([k, v]) => [k, defaultOf(v)])) as Record<AdapterRunNumber, number>;
  return { ...numbers, gradQuant: coreLimits().gradQuant.adapterDefault };
}

export interface AdapterEvalPoint {
  step: number;
  /** Mean validation NLL (nats/token). */
  loss: number;
}

export interface TrainAdapterResult {
  adapter: Adapter;
  /** Validation NLL of the base alone (no adapter). */
  baselineLoss: number;
  bestLoss: number;
  bestStep: number;
  stepsDone: number;
  stoppedEarly: boolean;
  trainTokens: number;
  validationTokens: number;
  history: AdapterEvalPoint[];
  seconds: number;
  options: AdapterRunOptions;
}

export interface TrainAdapterHooks {
  onStep?(step: number, maxSteps: number, loss: number): void;
  onValidation?(p: AdapterEvalPoint, best: boolean): void;
}

export function resolveAdapterRun(model: Model, partial: Partial<AdapterRunOptions> = {}): AdapterRunOptions {
  const o = { ...defaultAdapterRun(), ...partial };
  if (partial.seq === undefined) o.seq = Math.min(o.seq, model.config.context);
  if (partial.warmup === undefined && typeof o.maxSteps === 'number') o.warmup = Math.min(o.warmup, o.maxSteps);
  const l = adapterRunLimits();
  for (const k of Object.keys(l) as AdapterRunNumber[]) {
    const max = k === 'seq' ? model.config.context : k === 'warmup' ? o.maxSteps : k === 'minLr' ? o.lr : undefined;
    checkLimit(l[k], o[k], k, max);
  }
  checkGradQuant(o.gradQuant);
  return o;
}

/** Splits the user's tokens: [train | validation], the validation part from the end. */
export function splitUserTokens(tokens: Int32Array, o: AdapterRunOptions): { train: Int32Array; validation: Int32Array } {
  const nVal = Math.max(2, Math.ceil(tokens.length * o.validationFraction));
  const nTrain = tokens.length - nVal;
  if (nTrain < o.seq + 1) {
    throw new RangeError(
      `the user's text is too short: it encodes to ${tokens.length} tokens; with ${nVal} held out for validation, ` +
        `adapter training needs at least seq + 1 = ${o.seq + 1} training tokens (a longer text, or a smaller --seq)`,
    );
  }
  return { train: tokens.subarray(0, nTrain), validation: tokens.subarray(nTrain) };
}

export async function trainAdapter(
  model: Model,
  text: Uint8Array,
  partial: Partial<AdapterRunOptions> = {},
  hooks: TrainAdapterHooks = {},
  threads?: number,
  /** The ternary activation quantisation of every training step and validation score (default 'token'). */
  actQuant?: ActQuant,
): Promise<TrainAdapterResult> {
  const o = resolveAdapterRun(model, partial);
  if (model.tokenizer === null) throw new Error('the model has no tokenizer');
  if (text.length === 0) throw new RangeError("the user's text is empty");
  const t0 = performance.now();
  const { train, validation } = splitUserTokens(model.tokenizer.encode(text), o);
  const trainer = new Trainer(model, {
    mode: 'adapter',
    batch: o.batch,
    seq: o.seq,
    lr: o.lr,
    minLr: o.minLr,
    warmup: o.warmup,
    totalSteps: o.maxSteps,
    weightDecay: o.weightDecay,
    gradClip: o.gradClip,
    ...(actQuant === undefined ? {} : { actQuant }),
    gradQuant: o.gradQuant,
  });
  const sampler = new WindowSampler(train, o.seq, new SplitMix64(dataSeed(o.seed)));
  const score = async (gains: Float32Array | null): Promise<number> =>
    (await evaluate(model, gains, validation, { threads, actQuant })).meanNll;

  const baselineLoss = await score(null);
  let best = { loss: baselineLoss, step: 0, gains: trainer.gains() };
  const history: AdapterEvalPoint[] = [];
  let sinceBest = 0;
  let stoppedEarly = false;
  while (trainer.stepsDone < o.maxSteps) {
    const st = await trainer.stepAsync(sampler.nextBatch(o.batch), o.batch, threads);
    hooks.onStep?.(st.step, o.maxSteps, st.loss);
    if (st.step % o.evalEvery === 0 || st.step === o.maxSteps) {
      const gains = trainer.gains();
      const loss = await score(gains);
      const p = { step: st.step, loss };
      history.push(p);
      const improved = loss < best.loss;
      hooks.onValidation?.(p, improved);
      if (improved) {
        best = { loss, step: st.step, gains };
        sinceBest = 0;
      } else if (++sinceBest >= o.patience) {
        stoppedEarly = st.step < o.maxSteps;
        break;
      }
    }
  }
  // The record saved with the adapter is also the run's summary.
  const record = {
    baselineLoss,
    bestLoss: best.loss,
    bestStep: best.step,
    stepsDone: trainer.stepsDone,
    stoppedEarly,
    trainTokens: train.length,
    validationTokens: validation.length,
    history,
  };
  return {
    adapter: new Adapter(best.gains, { format: 'ternorm.train-adapter', version: 1, options: o, ...record }),
    ...record,
    seconds: (performance.now() - t0) / 1000,
    options: o,
  };
}
