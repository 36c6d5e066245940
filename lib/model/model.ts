// The typed surface of the model engine: Model (create, load, save,
// checkpoints), Trainer (one AdamW step per call) and evaluate (per-token NLL,
// perplexity, bits per byte). Adapters and their encodings: lib/adapter/.
//
// Files are built and parsed by the C++ core (native/model/model_file.h), so
// an edge application reads the same files; they are versioned, checksummed
// per section and written atomically (temp file + rename). A truncated,
// corrupt, wrong-kind, wrong-version or oversized file, or an adapter of
// another base model, throws an Error that says so.

import { types } from 'node:util';

import { Adapter, Encoding } from '../adapter/adapter.js';
import { BpeTokenizer } from '../tokenizer/bpe.js';
import { VocabTokenizer, type VocabMetadata } from '../tokenizer/vocab.js';
import { generate, generateBatch, type GenerateOptions, type GenerateRequest, type GenerateResult, type RunOptions } from './generate.js';
import { checkActQuant, checkGradQuant, checkLimit, coreLimits, defaultOf, type ActQuant } from './limits.js';
import {
  modelAddon,
  type NativeModel,
  type NativeTrainer,
  type RawCheckpoint,
  type RawModelConfig,
  type RawStepStats,
  type RawTrainConfig,
} from './native-model.js';

export type ModelConfig = RawModelConfig;

/** The default base model (the core's defaults, native/model/limits.h): 4 layers of d_model 256, about 4.5M parameters. */
export function defaultModelConfig(): ModelConfig {
  const l = coreLimits().model;
  return {
    vocab: defaultOf(l.vocab),
    dModel: defaultOf(l.dModel),
    nLayers: defaultOf(l.nLayers),
    nHeads: defaultOf(l.nHeads),
    dFf: defaultOf(l.dFf),
    context: defaultOf(l.context),
    normEps: defaultOf(l.normEps),
    ropeTheta: defaultOf(l.ropeTheta),
    // Multi-head attention and the tied head (the core's 0 key/value heads means nHeads).
    nKvHeads: defaultOf(l.nHeads),
    tiedHead: true,
  };
}

/** Weights and activations of a forward pass: ternary + int8, the latent fp32 weights, or ternary weights with fp32 activations. */
/**
 * What a model tokenizes with: ternorm's own BPE (a .tnm, or a GGUF carrying "ternorm.tokenizer")
 * or a GGUF's tokenizer.ggml.* vocabulary. Plain text ids: no BOS / EOS are added.
 */
export interface ModelTokenizer {
  readonly vocabSize: number;
  encode(bytes: Uint8Array): Int32Array;
  decode(ids: ArrayLike<number>): Uint8Array;
}

/** A GGUF vocabulary as a ModelTokenizer (special tokens are neither added nor parsed). */
export class GgufVocabTokenizer implements ModelTokenizer {
  readonly vocabSize: number;
  constructor(readonly vocab: VocabTokenizer) {
    this.vocabSize = vocab.size;
  }
  encode(bytes: Uint8Array): Int32Array {
    return this.vocab.encode(bytes, { addSpecial: false, parseSpecial: false });
  }
  decode(ids: ArrayLike<number>): Uint8Array {
    return this.vocab.decode(ids);
  }
}

/** GGUF export weight types (native/model/gguf_model.h). */
export type GgufType = 'tq2_0' | 'tq1_0' | 'f16' | 'f32' | 'bf16' | 'q8_0';
export const GGUF_TYPES: readonly GgufType[] = ['tq2_0', 'tq1_0', 'f16', 'f32', 'bf16', 'q8_0'];
/** The float types, which a latent export can write. */
export const GGUF_FLOAT_TYPES: readonly GgufType[] = ['f32', 'f16', 'bf16', 'q8_0'];
/** The type of a GGUF's token tables (token_embd, an untied output head); F16/BF16 load as stored. */
export type GgufTableType = 'f32' | 'f16' | 'bf16';
export const GGUF_TABLE_TYPES: readonly GgufTableType[] = ['f32', 'f16', 'bf16'];
/** What a GGUF export writes for the block matrices: trit x scale, or the fp32 latent weights. */
export type GgufWeights = 'ternary' | 'latent';
/** How a GGUF's float matrices are ternarised on load (absmean, post-training quantisation). */
export type Ternarise = 'per-tensor' | 'per-row';
export const TERNARISE_CHOICES: readonly Ternarise[] = ['per-tensor', 'per-row'];

/**
 * The llama.cpp pre-tokenizer recorded with ternorm's BPE in an exported GGUF: GPT-2's pattern,
 * the closest to ternorm's byte pre-tokenizer (test/peers-llama.test.ts measures the agreement).
 */
export const GGUF_EXPORT_PRE = 'gpt-2';

export type Precision = 'ternary' | 'fp32' | 'ternary-fp32act';
export type TrainMode = RawTrainConfig['mode'];

function checkInt(v: unknown, name: string, lo: number, hi: number): number {
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number, got ${typeof v}`);
  if (!Number.isInteger(v) || v < lo || v > hi) throw new RangeError(`${name} must be an integer in ${lo}..${hi}, got ${v}`);
  return v;
}

function checkNum(v: unknown, name: string, ok: (x: number) => boolean, expected: string): number {
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number, got ${typeof v}`);
  if (!Number.isFinite(v) || !ok(v)) throw new RangeError(`${name} must be ${expected}, got ${v}`);
  return v;
}

/**
 * Fills defaults and checks a (partial) model config against the core's ranges; the core validates it again.
 * nKvHeads defaults to nHeads (multi-head attention), whatever nHeads is.
 */
export function resolveModelConfig(partial: Partial<ModelConfig> = {}): ModelConfig {
  const c = { ...defaultModelConfig(), ...partial };
  if (partial.nKvHeads === undefined) c.nKvHeads = c.nHeads;
  const l = coreLimits().model;
  for (const k of ['vocab', 'dModel', 'nLayers', 'dFf', 'context', 'normEps', 'ropeTheta'] as const) checkLimit(l[k], c[k], `config.${k}`);
  checkLimit(l.nHeads, c.nHeads, 'config.nHeads', c.dModel);
  if (c.dModel % c.nHeads !== 0) throw new RangeError(`config.dModel (${c.dModel}) must be divisible by config.nHeads (${c.nHeads})`);
  if ((c.dModel / c.nHeads) % 2 !== 0)
    throw new RangeError(`config.dModel / config.nHeads must be even (RoPE rotates pairs), got ${c.dModel / c.nHeads}`);
  checkNum(
    c.nKvHeads,
    'config.nKvHeads',
    (x) => Number.isInteger(x) && x >= 1 && x <= c.nHeads,
    `an integer in 1..${c.nHeads} (config.nHeads)`,
  );
  if (c.nHeads % c.nKvHeads !== 0) throw new RangeError(`config.nHeads (${c.nHeads}) must be divisible by config.nKvHeads (${c.nKvHeads})`);
  if (typeof c.tiedHead !== 'boolean') throw new TypeError(`config.tiedHead must be a boolean, got ${typeof c.tiedHead}`);
  return c;
}

export interface LoadOptions {
  /** Refuse files larger than this many bytes (default 2 GiB). */
  maxBytes?: number;
  /** A GGUF's float matrices that are not ternary: absmean per tensor (default) or per row. */
  ternarise?: Ternarise;
}

/** What a checkpoint adds to a model: the optimiser state and the caller's training state. */
export interface Checkpoint {
  adamM: Float32Array;
  adamV: Float32Array;
  step: number;
  /** The training state JSON written with it (parsed). */
  state: unknown;
}

export class Model {
  private constructor(
    /** @internal */ readonly native: NativeModel,
    /** The tokenizer stored with the model (null for a fresh model until one is set). */
    public tokenizer: ModelTokenizer | null,
    /** The free-form record stored in the file (parsed JSON), null if none. */
    readonly meta: unknown,
    /**
     * Where the weights came from: 'ternorm model file', or a GGUF's one-line import summary, e.g.
     * "gguf v3 llama: 28 block matrices f16, 28 ternarised on load by absmean per tensor (post-training quantisation)".
     */
    readonly info: string = 'ternorm model file',
    /** A GGUF's tokenizer.ggml.* vocabulary (null for a .tnm or a GGUF without one). */
    readonly ggufVocab: VocabMetadata | null = null,
  ) {}

  /** A new model, initialised deterministically from the seed (an integer in 0..2^53-1). */
  static create(config: Partial<ModelConfig> = {}, seed = 0, tokenizer: BpeTokenizer | null = null): Model {
    const c = resolveModelConfig(config);
    checkInt(seed, 'seed', 0, Number.MAX_SAFE_INTEGER);
    if (tokenizer !== null && tokenizer.vocabSize !== c.vocab) {
      throw new RangeError(`the tokenizer has ${tokenizer.vocabSize} tokens but config.vocab is ${c.vocab}`);
    }
    return new Model(modelAddon().modelCreate(c, seed), tokenizer, null);
  }

  /**
   * Loads a model file or a checkpoint from a path or its bytes. A model file
   * holds the ternary weights only: it evaluates and trains adapters, but
   * base training or 'fp32' evaluation need a checkpoint.
   */
  static load(source: string | Uint8Array, options: LoadOptions = {}): Model {
    return Model.loadWithCheckpoint(source, options).model;
  }

  /** Like load, and also returns the checkpoint's state (null for a plain model file). */
  static loadWithCheckpoint(source: string | Uint8Array, options: LoadOptions = {}): { model: Model; checkpoint: Checkpoint | null } {
    if (typeof source !== 'string' && !types.isUint8Array(source)) {
      throw new TypeError('source must be a file path (string) or a Uint8Array');
    }
    if (options.maxBytes !== undefined) checkInt(options.maxBytes, 'maxBytes', 1, 2 ** 31);
    if (options.ternarise !== undefined && !TERNARISE_CHOICES.includes(options.ternarise)) {
      throw new RangeError(`ternarise must be one of ${TERNARISE_CHOICES.join(', ')}, got ${String(options.ternarise)}`);
    }
    const raw = modelAddon().modelLoad(source, options.maxBytes, options.ternarise);
    const where = typeof source === 'string' ? source : 'model bytes';
    let tokenizer: ModelTokenizer;
    try {
      tokenizer =
        raw.gguf !== undefined && raw.tokenizer.length === 0
          ? new GgufVocabTokenizer(new VocabTokenizer(raw.vocab as VocabMetadata))
          : BpeTokenizer.deserialize(raw.tokenizer);
    } catch (err) {
      throw new Error(`${where}: the tokenizer section is not a valid tokenizer: ${(err as Error).message}`, { cause: err });
    }
    const vocab = raw.model.config().vocab;
    if (tokenizer.vocabSize !== vocab) {
      throw new Error(`${where}: the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab is ${vocab}`);
    }
    const info = raw.gguf === undefined ? 'ternorm model file' : raw.gguf.info;
    const model = new Model(raw.model, tokenizer, parseJson(raw.meta, `${where}: meta`), info, (raw.vocab ?? null) as VocabMetadata | null);
    return { model, checkpoint: raw.checkpoint === null ? null : toCheckpoint(raw.checkpoint, where) };
  }

  get config(): ModelConfig {
    return this.native.config();
  }
  get nParams(): number {
    return this.native.info().nParams;
  }
  /** Gains in a norm-only adapter: n_norms x d_model. */
  get nGains(): number {
    return this.native.info().nGains;
  }
  /** True when the latent fp32 weights are the trained ones (created, or loaded from a checkpoint). */
  get hasLatent(): boolean {
    return this.native.info().hasLatent;
  }
  /**
   * True when the latent block weights are real ones a latent GGUF export can write: a created
   * model, a checkpoint, or a GGUF whose block matrices were all stored as floats.
   */
  get hasLatentForExport(): boolean {
    return this.native.info().latentStored;
  }
  /** True when the model was loaded from a GGUF file (then `info` says how its weights were obtained). */
  get isGguf(): boolean {
    return this.info !== 'ternorm model file';
  }
  /** Hex SHA-256 of the file sections, or null when the model changed since it was loaded or saved. */
  get fingerprint(): string | null {
    return this.native.fingerprint();
  }

  /** Re-derives the ternary weights from the latent ones (post-training quantisation after fp32 training). */
  quantize(threads?: number): void {
    this.native.quantize(threads);
  }

  private tokenizerBytes(): Uint8Array {
    if (this.tokenizer === null) throw new Error('the model has no tokenizer; set model.tokenizer before saving');
    if (!(this.tokenizer instanceof BpeTokenizer)) {
      throw new Error("a .tnm file stores ternorm's BPE; this model tokenizes with a GGUF vocabulary (export it as GGUF)");
    }
    return this.tokenizer.serialize();
  }

  /**
   * The model as a GGUF llama.cpp loads (native/model/gguf_model.h): block matrices in `type`,
   * adapter gains (raw or decoded) multiplied into the norm weights, ternorm's BPE written both as
   * its exact bytes ("ternorm.tokenizer") and as a gpt2-style vocabulary; otherwise `vocab` (a
   * vocabulary of this model's size, e.g. Llama 3's) or a GGUF-loaded model's own vocabulary.
   * `weights: 'latent'` writes the fp32 latent block matrices in a float type instead of trit x
   * scale (a float GGUF that is ternarised on load); a model without latent weights (a .tnm model
   * file) refuses it. `tableType` is the token tables' type (default: as the model stores them, f32
   * unless it was loaded from a GGUF with F16/BF16 ones). Written atomically to `path`, or returned
   * as bytes.
   */
  exportGguf(
    type: GgufType,
    options: {
      path?: string;
      gains?: Float32Array | null;
      vocab?: VocabMetadata;
      weights?: GgufWeights;
      tableType?: GgufTableType;
    } = {},
  ): Uint8Array | undefined {
    if (!GGUF_TYPES.includes(type)) throw new RangeError(`type must be one of ${GGUF_TYPES.join(', ')}, got ${String(type)}`);
    if (options.tableType !== undefined && !GGUF_TABLE_TYPES.includes(options.tableType))
      throw new RangeError(`tableType must be one of ${GGUF_TABLE_TYPES.join(', ')}, got ${String(options.tableType)}`);
    const weights = options.weights ?? 'ternary';
    if (weights !== 'ternary' && weights !== 'latent')
      throw new RangeError(`weights must be 'ternary' or 'latent', got ${String(weights)}`);
    if (weights === 'latent' && !GGUF_FLOAT_TYPES.includes(type)) {
      throw new RangeError(`the latent weights are floats: export them as ${GGUF_FLOAT_TYPES.join(', ')}, not ${type}`);
    }
    const gains = options.gains ?? null;
    if (gains !== null && gains.length !== this.nGains) {
      throw new RangeError(`the adapter holds ${gains.length} gains but the model needs n_norms * d_model = ${this.nGains}`);
    }
    const bpe = this.tokenizer instanceof BpeTokenizer ? this.tokenizer.serialize() : null;
    const vocab = options.vocab ?? null;
    if (vocab !== null && vocab.tokens.length !== this.config.vocab) {
      throw new RangeError(`the vocabulary has ${vocab.tokens.length} tokens but the model's vocab is ${this.config.vocab}`);
    }
    return modelAddon().modelExportGguf(
      this.native,
      options.path,
      type,
      gains,
      vocab === null ? bpe : null,
      GGUF_EXPORT_PRE,
      vocab,
      weights,
      options.tableType,
    );
  }

  /**
   * Streams the text generated after `prompt` (lib/model/generate.ts):
   * `for await (const piece of model.generate(prompt, { maxTokens, temperature, seed, signal }))`.
   */
  generate(prompt: string | Int32Array, options: GenerateOptions & RunOptions = {}): AsyncGenerator<string, GenerateResult> {
    return generate(this, prompt, options);
  }

  /** K requests (own prompt, adapter, sampling) decoded together, one batched step for all (lib/model/generate.ts). */
  generateBatch(
    requests: readonly GenerateRequest[],
    options: RunOptions & { onPiece?: (index: number, piece: string) => void } = {},
  ): Promise<GenerateResult[]> {
    return generateBatch(this, requests, options);
  }

  /** Writes the model file atomically. meta: any JSON-serialisable record. */
  save(path: string, meta: unknown = null): void {
    if (typeof path !== 'string' || path === '') throw new TypeError('path must be a non-empty string');
    this.native.save(path, this.tokenizerBytes(), metaText(meta));
  }

  /** The model file's bytes. */
  toBytes(meta: unknown = null): Uint8Array {
    return this.native.save(undefined, this.tokenizerBytes(), metaText(meta)) as Uint8Array;
  }

  /** Writes a checkpoint (model file + latent weights + optimiser state + `state`) atomically. */
  saveCheckpoint(path: string, trainer: Trainer, state: unknown, meta: unknown = null): void {
    if (typeof path !== 'string' || path === '') throw new TypeError('path must be a non-empty string');
    if (trainer.model !== this) throw new RangeError('the trainer belongs to another model');
    this.native.save(path, this.tokenizerBytes(), metaText(meta), trainer.native, JSON.stringify(state));
  }
}

/** @internal The meta record as stored in a file (shared with lib/adapter). */
export function metaText(meta: unknown): string {
  if (meta === null || meta === undefined) return '';
  const s = JSON.stringify(meta);
  if (typeof s !== 'string') throw new TypeError('meta must be JSON-serialisable');
  return s;
}

/** @internal */
export function parseJson(text: string | null, where: string): unknown {
  if (text === null) return null;
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new Error(`${where} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}

function toCheckpoint(raw: RawCheckpoint, where: string): Checkpoint {
  return { adamM: raw.adamM, adamV: raw.adamV, step: raw.step, state: parseJson(raw.state, `${where}: checkpoint.state`) };
}

// ---- training ------------------------------------------------------------------------------

/** The trainer's settings, exactly as the native trainer takes them (see RawTrainConfig). */
export type TrainOptions = RawTrainConfig;

/** The trainer's defaults for a mode (the core's: base training, or the adapter's for 'adapter'). */
export function defaultTrainOptions(mode: TrainMode = 'ternary'): TrainOptions {
  const l = mode === 'adapter' ? coreLimits().adapterTrain : coreLimits().train;
  return {
    mode,
    batch: defaultOf(l.batch),
    seq: defaultOf(l.seq),
    lr: defaultOf(l.lr),
    minLr: defaultOf(l.minLr),
    warmup: defaultOf(l.warmup),
    totalSteps: defaultOf(l.totalSteps),
    beta1: defaultOf(l.beta1),
    beta2: defaultOf(l.beta2),
    eps: defaultOf(l.eps),
    weightDecay: defaultOf(l.weightDecay),
    gradClip: defaultOf(l.gradClip),
  };
}

export type StepStats = RawStepStats;

export function resolveTrainOptions(model: Model, partial: Partial<TrainOptions>): TrainOptions {
  const o = { ...defaultTrainOptions('ternary'), ...partial };
  if (o.mode !== 'ternary' && o.mode !== 'fp32' && o.mode !== 'adapter') {
    throw new RangeError(`mode must be 'ternary', 'fp32' or 'adapter', got ${String(o.mode)}`);
  }
  const l = coreLimits().train;
  for (const k of ['batch', 'lr', 'totalSteps', 'beta1', 'beta2', 'eps', 'weightDecay', 'gradClip'] as const) checkLimit(l[k], o[k], k);
  checkLimit(l.seq, o.seq, 'seq', model.config.context);
  checkLimit(l.minLr, o.minLr, 'minLr', o.lr);
  checkLimit(l.warmup, o.warmup, 'warmup', o.totalSteps);
  if (o.actQuant !== undefined) {
    checkActQuant(o.actQuant);
    if (o.actQuant !== coreLimits().actQuant.default && o.mode === 'fp32')
      throw new RangeError(`actQuant '${o.actQuant}' needs a ternary mode, got 'fp32'`);
  }
  if (o.gradQuant !== undefined) {
    checkGradQuant(o.gradQuant);
    if (o.gradQuant !== coreLimits().gradQuant.default && o.mode !== 'adapter')
      throw new RangeError(`gradQuant '${o.gradQuant}' is for the adapter mode, got '${o.mode}'`);
  }
  return o;
}

export class Trainer {
  /** @internal */ readonly native: NativeTrainer;
  readonly options: TrainOptions;

  /** Base modes update `model` in place; 'adapter' trains gains (initialised at 1.0) on a frozen base. */
  constructor(
    readonly model: Model,
    options: Partial<TrainOptions> = {},
  ) {
    if (!(model instanceof Model)) throw new TypeError('model must be a Model');
    this.options = resolveTrainOptions(model, options);
    this.native = modelAddon().trainerCreate(model.native, this.options);
  }

  private checkTokens(tokens: Int32Array, batch: number): void {
    if (!types.isInt32Array(tokens)) throw new TypeError('tokens must be an Int32Array');
    checkInt(batch, 'batch', 1, this.options.batch);
    const want = batch * (this.options.seq + 1);
    if (tokens.length !== want) {
      throw new RangeError(`tokens must hold batch * (seq + 1) = ${batch} * ${this.options.seq + 1} = ${want} ids, got ${tokens.length}`);
    }
  }

  /** One update from `batch` rows of seq + 1 tokens (inputs [0, seq), targets [1, seq]). */
  step(tokens: Int32Array, batch = this.options.batch, threads?: number): StepStats {
    this.checkTokens(tokens, batch);
    return this.native.step(tokens, batch, this.options.seq, threads);
  }

  /** The same step off the event loop (on a copy of `tokens`). */
  async stepAsync(tokens: Int32Array, batch = this.options.batch, threads?: number): Promise<StepStats> {
    this.checkTokens(tokens, batch);
    return this.native.stepAsync(tokens, batch, this.options.seq, threads);
  }

  get stepsDone(): number {
    return this.native.stepsDone();
  }

  /** Adapter mode: a copy of the gains (n_norms x d_model). */
  gains(): Float32Array {
    return this.native.gains();
  }

  /** Adapter mode: replaces the gains and restarts the optimiser and the schedule. */
  setGains(gains: Float32Array): void {
    if (!types.isFloat32Array(gains)) throw new TypeError('gains must be a Float32Array');
    this.native.setGains(gains);
  }

  /** Restores the optimiser state of a checkpoint (exact resume). */
  restore(checkpoint: Checkpoint): void {
    this.native.restoreState(checkpoint.adamM, checkpoint.adamV, checkpoint.step);
  }
}

// ---- evaluation -----------------------------------------------------------------------------

export interface EvaluateOptions {
  /** UTF-8 bytes the scored tokens (tokens[1..]) stand for; default: decoded with the model's tokenizer. */
  nBytes?: number;
  precision?: Precision;
  /** With precision 'ternary': how its activations are quantised; default the core's ('token'). */
  actQuant?: ActQuant;
  /** Sliding-window step in tokens, 1..context; default context / 2. */
  stride?: number;
  /** Windows per forward pass (speed and memory only). */
  batch?: number;
  threads?: number;
}

export interface EvalResult {
  /** nll[i] = -ln p(tokens[i + 1] | its window), nats; length tokens.length - 1. */
  nll: Float64Array;
  totalNll: number;
  meanNll: number;
  /** exp(meanNll). */
  perplexity: number;
  /** totalNll / ln 2 / nBytes. */
  bitsPerByte: number;
  nTokens: number;
  nBytes: number;
  nWindows: number;
  window: number;
  stride: number;
}

/** An adapter as evaluate and generate take it: an Adapter, an Encoding, raw gains, an encoded blob (Encoding.blob), or none. */
export type AdapterInput = Adapter | Encoding | Float32Array | Uint8Array | null;

/** @internal What the core takes for an adapter: raw gains, or an encoded blob the fused norm kernel decodes. */
export function adapterForCore(adapter: AdapterInput): Float32Array | Uint8Array | null {
  const gains =
    adapter === null
      ? null
      : adapter instanceof Adapter
        ? (adapter.encoding?.blob ?? adapter.gains)
        : adapter instanceof Encoding
          ? adapter.blob
          : adapter;
  if (gains !== null && !types.isFloat32Array(gains) && !types.isUint8Array(gains)) {
    throw new TypeError('adapter must be an Adapter, an Encoding, a Float32Array of gains, a Uint8Array encoded blob or null');
  }
  return gains;
}

/**
 * Scores `tokens` with the model and an adapter (or none). An encoded adapter is decoded inside the
 * fused RMSNorm kernel, exactly as a runtime that ships the encoding would. Runs off the event loop.
 */
export async function evaluate(
  model: Model,
  adapter: AdapterInput,
  tokens: Int32Array,
  options: EvaluateOptions = {},
): Promise<EvalResult> {
  if (!(model instanceof Model)) throw new TypeError('model must be a Model');
  if (!types.isInt32Array(tokens)) throw new TypeError('tokens must be an Int32Array');
  if (tokens.length < 2) throw new RangeError(`evaluate needs at least 2 tokens, got ${tokens.length}`);
  const gains = adapterForCore(adapter);
  let nBytes = options.nBytes;
  if (nBytes === undefined) {
    if (model.tokenizer === null) throw new Error('evaluate: pass options.nBytes (the model has no tokenizer to count bytes with)');
    nBytes = model.tokenizer.decode(tokens.subarray(1)).length;
  }
  checkInt(nBytes, 'nBytes', 1, Number.MAX_SAFE_INTEGER);
  const el = coreLimits().eval;
  const stride = options.stride ?? defaultOf(el.stride);
  if (options.stride !== undefined) checkInt(stride, 'stride', 1, model.config.context);
  const batch = checkLimit(el.batch, options.batch ?? defaultOf(el.batch), 'batch');
  const precision = options.precision ?? 'ternary';
  const actQuant = options.actQuant === undefined ? undefined : checkActQuant(options.actQuant);
  if (actQuant !== undefined && actQuant !== coreLimits().actQuant.default && precision !== 'ternary')
    throw new RangeError(`actQuant '${actQuant}' applies to precision 'ternary' only, got '${precision}'`);
  const r = await modelAddon().evaluateAsync(model.native, gains, tokens, nBytes, precision, stride, batch, options.threads, actQuant);
  return { ...r, nTokens: tokens.length, nBytes };
}
