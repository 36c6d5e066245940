// The raw model-engine exports of the addon (native/addon/model_binding.cpp):
// positional arguments, named results, checked by the addon itself. lib/model/model.ts is the typed
// surface with the friendlier checks; use that.

import type { VocabMetadata } from '../tokenizer/native.js';
import { loadAddon } from '../native.js';

/** The model's shape as the addon spells it. */
export interface RawModelConfig {
  vocab: number;
  dModel: number;
  nLayers: number;
  nHeads: number;
  dFf: number;
  context: number;
  normEps: number;
  ropeTheta: number;
  /** Key/value heads (grouped-query attention when fewer than nHeads); nHeads = multi-head. */
  nKvHeads: number;
  /** The output head is the token embedding (true) or a table of its own (false). */
  tiedHead: boolean;
}

export interface RawModelInfo {
  nParams: number;
  nGains: number;
  nNorms: number;
  /** false for a model loaded from a model file (ternary weights only); true when created or from a checkpoint. */
  hasLatent: boolean;
  /** The latent block weights are real ones (hasLatent, or a GGUF of float block matrices). */
  latentStored: boolean;
}

export interface NativeModel {
  config(): RawModelConfig;
  info(): RawModelInfo;
  quantize(threads?: number): void;
  save(path: string | undefined, tokenizer: Uint8Array, meta: string, trainer?: NativeTrainer, state?: string): Uint8Array | undefined;
  /** Hex SHA-256 of the model's file sections, or null when it changed since it was loaded or saved. */
  fingerprint(): string | null;
}

export interface RawTrainConfig {
  mode: 'ternary' | 'fp32' | 'adapter';
  /** Sequences per step. */
  batch: number;
  /** Tokens per sequence (<= context). */
  seq: number;
  lr: number;
  minLr: number;
  warmup: number;
  /** Steps of the cosine schedule (it ends at minLr there). */
  totalSteps: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  gradClip: number;
  /** The ternary modes' activation quantisation (an ActQuant name); default 'token'. */
  actQuant?: string;
  /** The gradient through the ternary linears (a GradQuant name); default: the mode's ('int8' for adapter, else 'f32'). */
  gradQuant?: string;
}

export interface NativeTrainer {
  step(tokens: Int32Array, batch: number, seq: number, threads?: number): RawStepStats;
  stepAsync(tokens: Int32Array, batch: number, seq: number, threads?: number): Promise<RawStepStats>;
  gains(): Float32Array;
  setGains(gains: Float32Array): void;
  restoreState(adamM: Float32Array, adamV: Float32Array, step: number): void;
  stepsDone(): number;
}

/** One training step (native/model/train.h StepStats). */
export interface RawStepStats {
  /** Updates done, this one included. */
  step: number;
  /** Mean NLL of the batch before the update (nats/token). */
  loss: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** Learning rate used. */
  lr: number;
}

/** An evaluation (native/model/eval.h EvalResult). */
export interface RawEvalResult {
  /** nll[i] = -ln p(tokens[i + 1] | its window), nats. */
  nll: Float64Array;
  totalNll: number;
  meanNll: number;
  perplexity: number;
  bitsPerByte: number;
  nWindows: number;
  window: number;
  stride: number;
}

export interface RawCheckpoint {
  adamM: Float32Array;
  adamV: Float32Array;
  step: number;
  state: string;
}

export interface RawLoadedModel {
  model: NativeModel;
  /** ternorm's BPE bytes; empty for a GGUF file without them (then `vocab` holds its tokenizer). */
  tokenizer: Uint8Array;
  meta: string | null;
  fingerprint: string;
  checkpoint: RawCheckpoint | null;
  /** A GGUF file's tokenizer.ggml.* metadata (absent for a .tnm, null when the GGUF has none). */
  vocab?: VocabMetadata | null;
  /** Present when the source was a GGUF file. */
  gguf?: { version: number; name: string; info: string; postTrainingQuantised: boolean; ternarise: string };
}

export interface NativeModelAddon {
  modelCreate(config: RawModelConfig, seed: number): NativeModel;
  modelLoad(source: string | Uint8Array, maxBytes?: number, ternarise?: string): RawLoadedModel;
  modelExportGguf(
    model: NativeModel,
    path: string | undefined,
    type: string,
    gains: Float32Array | null,
    tokenizer: Uint8Array | null,
    pre: string,
    vocab?: VocabMetadata | null,
    weights?: 'ternary' | 'latent',
    tableType?: 'f32' | 'f16' | 'bf16',
  ): Uint8Array | undefined;
  trainerCreate(model: NativeModel, config: RawTrainConfig): NativeTrainer;
  evaluateAsync(
    model: NativeModel,
    /** Raw f32 gains, an encoded adapter blob (decoded by the norm kernel), or none. */
    adapter: Float32Array | Uint8Array | null,
    tokens: Int32Array,
    nBytes: number,
    precision: string,
    stride: number,
    batch: number,
    threads?: number,
    /** An ActQuant name; default 'token'. */
    actQuant?: string,
  ): Promise<RawEvalResult>;
  adapterSave(model: NativeModel, gains: Float32Array, meta: string, path?: string): Uint8Array | undefined;
  adapterSaveEncoded(model: NativeModel, method: string, blob: Uint8Array, meta: string, path?: string): Uint8Array | undefined;
  adapterLoad(
    model: NativeModel,
    source: string | Uint8Array,
  ): { gains: Float32Array; meta: string | null; scheme: string; encoding: RawEncoding | null };
  codecMethods(): { name: string; needsLoss: boolean; needsBudget: boolean }[];
  adapterEncodeAsync(
    model: NativeModel,
    gains: Float32Array,
    method: string,
    options: { groupSize: number; kmeansMaxIters: number; clipGrid: Float64Array; calibrationPasses: number; byteBudget: number },
    /** actQuant: an ActQuant name, default 'token'. */
    calibration: { tokens: Int32Array; nBytes: number; stride: number; batch: number; actQuant?: string } | null,
    threads?: number,
  ): Promise<RawEncoding & { calibration: RawCalibrationReport | null; mixed: RawMixedReport | null }>;
  adapterDescribe(model: NativeModel, blob: Uint8Array): RawEncoding;
}

/** An encoded adapter as the codec returns it (native/codec/codec.h). */
export interface RawEncoding {
  /** The method's name; null when only the blob was described. */
  method: string | null;
  /** Exact serialised size (the blob's length). */
  bytes: number;
  blob: Uint8Array;
  /** The decoded gains, n_norms x d_model. */
  gains: Float32Array;
  tensors: RawEncodedTensor[];
  /** The adapter blob format: 1, or 2 (compact record headers) for the low-rate methods. */
  format: number;
}

/** One norm's encoding: its scheme (the codec registry name) and quantisation parameters. */
export interface RawEncodedTensor {
  scheme: string;
  /** The parameters in record order. */
  params: Float32Array;
  /** The same parameters by name (scale, zeroPoint, blockSize, centroids), as the codec names them. */
  namedParams: Record<string, number[]>;
  recordBytes: number;
}

export interface RawCalibrationReport {
  grid: number[];
  globalLoss: number[];
  clip: number[];
  loss: number;
  lossEvals: number;
}

export interface RawMixedReport {
  candidates: string[];
  referenceLoss: number;
  increase: number[][];
  candidateBytes: number[][];
  choice: number[];
  predictedIncrease: number;
  loss: number;
  budget: number;
  bytes: number;
  lossEvals: number;
}

let cached: NativeModelAddon | undefined;

/** The addon's model exports; throws when the loaded build predates them. */
export function modelAddon(): NativeModelAddon {
  if (cached !== undefined) return cached;
  const a = loadAddon() as unknown as Partial<NativeModelAddon>;
  if (typeof a.modelCreate !== 'function' || typeof a.evaluateAsync !== 'function' || typeof a.adapterEncodeAsync !== 'function') {
    throw new Error(
      'ternorm: the loaded native addon has no model engine (modelCreate); it is an older build. ' +
        'Rebuild it with `npm run build:gyp` (and delete a stale prebuilds/ folder).',
    );
  }
  cached = a as NativeModelAddon;
  return cached;
}
