// The adapter codec registry on the TypeScript side: which methods exist, their options, and
// encodeAdapter, which runs the native encoder (native/codec) off the event loop. The three
// searching methods (int4_calibrated, mixed, alloc) score each candidate by the mean NLL of calibration
// tokens from the user's TRAINING text, with the candidate decoded inside the norm kernel, so a
// choice never sees validation or test tokens.

import { types } from 'node:util';

import { Model } from '../model/model.js';
import { Adapter, Encoding } from './adapter.js';
import { checkActQuant, coreLimits, defaultOf, type ActQuant } from '../model/limits.js';
import { modelAddon, type RawCalibrationReport, type RawMixedReport } from '../model/native-model.js';

export type CalibrationReport = RawCalibrationReport;
export type MixedReport = RawMixedReport;

export interface CodecMethod {
  name: string;
  /** Chooses its encoding by a training-text loss (needs calibration tokens). */
  needsLoss: boolean;
  /** Fits a byte budget (needs options.byteBudget): mixed, sparse_delta, alloc. */
  needsBudget: boolean;
}

/** Every codec method, in the codec's order (raw_fp32, raw_fp16, int8_per_tensor, ...). */
export function codecMethods(): CodecMethod[] {
  return modelAddon().codecMethods();
}

export function checkMethod(name: unknown): string {
  const known = codecMethods().map((m) => m.name);
  if (typeof name !== 'string' || !known.includes(name)) {
    throw new RangeError(`unknown encoding '${String(name)}'; expected one of ${known.join(', ')}`);
  }
  return name;
}

export interface CalibrationInput {
  /** Tokens of the user's training text to score candidates on. */
  tokens: Int32Array;
  /** UTF-8 bytes those tokens decode to (default: counted with the model's tokenizer). */
  nBytes?: number;
  /** Window stride of the calibration evaluation (default: the context, non-overlapping windows). */
  stride?: number;
  batch?: number;
  /** The ternary activation quantisation of the calibration evaluation (default 'token'). */
  actQuant?: ActQuant;
}

export interface EncodeOptions {
  /** int8_group: channels per scale (default: the core's, coreLimits().codec.groupSize). */
  groupSize?: number;
  /** kmeans16/256: most Lloyd iterations (default: the core's). */
  kmeansMaxIters?: number;
  /** int4_calibrated: clip factors tried (default 1.00, 0.95, ..., 0.30). */
  clipGrid?: readonly number[];
  /** int4_calibrated: per-tensor refinement passes (default: the core's). */
  calibrationPasses?: number;
  /** mixed, sparse_delta, alloc: the most serialised bytes allowed. */
  byteBudget?: number;
  /** Required by int4_calibrated, mixed and alloc. */
  calibration?: CalibrationInput;
  threads?: number;
}

export interface EncodeResult {
  encoding: Encoding;
  calibration: CalibrationReport | null;
  mixed: MixedReport | null;
}

/** Encodes a trained adapter with one method. Deterministic; off the event loop. */
export async function encodeAdapter(
  model: Model,
  adapter: Adapter | Float32Array,
  method: string,
  options: EncodeOptions = {},
): Promise<EncodeResult> {
  if (!(model instanceof Model)) throw new TypeError('model must be a Model');
  const gains = adapter instanceof Adapter ? adapter.gains : adapter;
  if (!types.isFloat32Array(gains)) throw new TypeError('adapter must be an Adapter or a Float32Array of gains');
  const name = checkMethod(method);
  const { needsLoss, needsBudget } = codecMethods().find((m) => m.name === name)!;
  if (needsBudget && options.byteBudget === undefined)
    throw new RangeError(`${name} needs options.byteBudget (the most bytes an adapter may take)`);
  let calibration: { tokens: Int32Array; nBytes: number; stride: number; batch: number; actQuant?: string } | null = null;
  if (options.calibration !== undefined) {
    const c = options.calibration;
    if (!types.isInt32Array(c.tokens)) throw new TypeError('calibration.tokens must be an Int32Array');
    let nBytes = c.nBytes;
    if (nBytes === undefined) {
      if (model.tokenizer === null) throw new Error('calibration.nBytes is required: the model has no tokenizer to count bytes with');
      nBytes = model.tokenizer.decode(c.tokens.subarray(1)).length;
    }
    calibration = {
      tokens: c.tokens,
      nBytes,
      stride: c.stride ?? model.config.context,
      batch: c.batch ?? defaultOf(coreLimits().eval.batch),
      ...(c.actQuant === undefined ? {} : { actQuant: checkActQuant(c.actQuant, 'calibration.actQuant') }),
    };
  } else if (needsLoss) {
    throw new RangeError(
      `${name} chooses its encoding by the training-text loss: pass options.calibration (tokens of the user's training text)`,
    );
  }
  const grid = options.clipGrid ?? [];
  if (!Array.isArray(grid)) throw new TypeError('clipGrid must be an array of numbers');
  const l = coreLimits().codec;
  const raw = await modelAddon().adapterEncodeAsync(
    model.native,
    gains,
    name,
    {
      groupSize: options.groupSize ?? defaultOf(l.groupSize),
      kmeansMaxIters: options.kmeansMaxIters ?? defaultOf(l.kmeansMaxIters),
      clipGrid: Float64Array.from(grid),
      calibrationPasses: options.calibrationPasses ?? defaultOf(l.calibrationPasses),
      byteBudget: options.byteBudget ?? defaultOf(l.byteBudget),
    },
    needsLoss ? calibration : null,
    options.threads,
  );
  return { encoding: new Encoding(name, raw), calibration: raw.calibration, mixed: raw.mixed };
}
