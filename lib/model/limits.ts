// The core's ranges and defaults (native/model/limits.h), read once from the addon. TypeScript
// declares none of these numbers itself: it checks types, and checks ranges with these tables, so
// the CLI, the library and the core refuse the same values with the same words.

import { loadAddon } from '../native.js';

export interface Limit {
  min: number;
  max: number;
  /** (min, ...) instead of [min, ...]. */
  minOpen: boolean;
  /** (..., max) instead of [..., max]. */
  maxOpen: boolean;
  integer: boolean;
  /** null when there is no default. */
  default: number | null;
  what: string;
}

export interface CoreLimits {
  /** The model's shape (ModelConfig). */
  model: Record<'vocab' | 'dModel' | 'nLayers' | 'nHeads' | 'dFf' | 'context' | 'normEps' | 'ropeTheta' | 'nKvHeads', Limit>;
  /** One training step, with base-training defaults. */
  train: Record<TrainLimitName, Limit>;
  /** The same ranges with the adapter's defaults. */
  adapterTrain: Record<TrainLimitName, Limit>;
  eval: Record<'stride' | 'batch', Limit>;
  codec: Record<'groupSize' | 'kmeansMaxIters' | 'calibrationPasses' | 'clip' | 'byteBudget' | 'calibrationTokens', Limit>;
  /** Sampling and decoding (lib/model/generate.ts). */
  generate: Record<'temperature' | 'topK' | 'topP' | 'minP' | 'maxTokens' | 'sequences' | 'rows', Limit>;
  /** The activation quantisation modes of the ternary precision and the default (model/limits.h). */
  actQuant: { names: readonly ActQuant[]; default: ActQuant };
  /** The gradient precisions through the ternary linears (model/limits.h), and the defaults of base training (its only choice, 'f32') and of adapter training. */
  gradQuant: { names: readonly GradQuant[]; default: GradQuant; adapterDefault: GradQuant };
}

/**
 * How the ternary precision quantises the activations of its linears: 'token' (one int8 scale per
 * token, ternorm's own and the default) or 'block256' (one per 256 values, llama.cpp's q8_K as its
 * TQ1_0 / TQ2_0 matmuls use, for comparisons with llama.cpp to float rounding).
 */
export type ActQuant = 'token' | 'block256';
/**
 * The precision of adapter training's gradient through the ternary linears (dx = dy W): 'f32' or
 * 'int8' (the adapter mode's default: dy quantised per token, integer kernels on the transposed
 * trits: a cheaper step, bit-identical on every ISA path and thread count, a gradient within int8
 * rounding of f32's). Base training is 'f32' only.
 */
export type GradQuant = 'f32' | 'int8';
export type TrainLimitName =
  'batch' | 'seq' | 'lr' | 'minLr' | 'warmup' | 'totalSteps' | 'beta1' | 'beta2' | 'eps' | 'weightDecay' | 'gradClip';

let cached: CoreLimits | undefined;

export function coreLimits(): CoreLimits {
  cached ??= deepFreeze(loadAddon().limits() as CoreLimits);
  return cached;
}

function deepFreeze<T extends object>(o: T): T {
  for (const v of Object.values(o)) if (typeof v === 'object' && v !== null) deepFreeze(v as object);
  return Object.freeze(o);
}

function fmt(v: number): string {
  if (v >= 3.4e38) return '3.4e38';
  if (v === 2 ** 40) return '2^40';
  return String(v);
}

/** "an integer in 1..4096", "a number in (0, 1)" (with `max` tightening the upper bound). */
export function describeRange(l: Limit, max = l.max): string {
  const hi = Math.min(max, l.max);
  const open = max < l.max ? false : l.maxOpen;
  return l.integer
    ? `an integer in ${fmt(l.min)}..${fmt(hi)}`
    : `a number in ${l.minOpen ? '(' : '['}${fmt(l.min)}, ${fmt(hi)}${open ? ')' : ']'}`;
}

export function inRange(l: Limit, v: number, max = l.max): boolean {
  if (!Number.isFinite(v) || (l.integer && !Number.isInteger(v))) return false;
  const hi = Math.min(max, l.max);
  const open = max < l.max ? false : l.maxOpen;
  return (l.minOpen ? v > l.min : v >= l.min) && (open ? v < hi : v <= hi);
}

/** v if it is a number within l (TypeError / RangeError naming `label` otherwise). */
export function checkLimit(l: Limit, v: unknown, label: string, max = l.max): number {
  if (typeof v !== 'number') throw new TypeError(`${label} must be a number (${describeRange(l, max)}), got ${typeof v}`);
  if (!inRange(l, v, max)) throw new RangeError(`${label} must be ${describeRange(l, max)}, got ${v}`);
  return v;
}

/** v if it names an activation quantisation mode (RangeError naming the modes otherwise). */
export function checkActQuant(v: unknown, label = 'actQuant'): ActQuant {
  const { names } = coreLimits().actQuant;
  if (typeof v !== 'string' || !(names as readonly string[]).includes(v))
    throw new RangeError(
      `${label} must be one of ${names.map((n) => `'${n}'`).join(', ')}, got ${typeof v === 'string' ? `'${v}'` : typeof v}`,
    );
  return v as ActQuant;
}

/** v if it names a gradient precision (RangeError naming the choices otherwise). */
export function checkGradQuant(v: unknown, label = 'gradQuant'): GradQuant {
  const { names } = coreLimits().gradQuant;
  if (typeof v !== 'string' || !(names as readonly string[]).includes(v))
    throw new RangeError(
      `${label} must be one of ${names.map((n) => `'${n}'`).join(', ')}, got ${typeof v === 'string' ? `'${v}'` : typeof v}`,
    );
  return v as GradQuant;
}

/** The default of a limit that has one. */
export function defaultOf(l: Limit): number {
  if (l.default === null) throw new Error(`ternorm: no core default for '${l.what}'`);
  return l.default;
}

/** A range the TypeScript orchestration owns (run lengths, schedules of evaluations): not a core number. */
export function orchestrationLimit(
  min: number,
  max: number,
  integer: boolean,
  def: number | null,
  what: string,
  open: { min?: boolean; max?: boolean } = {},
): Limit {
  return Object.freeze({ min, max, minOpen: open.min ?? false, maxOpen: open.max ?? false, integer, default: def, what });
}

/** A seed: an integer in 0..2^53-1. */
export const SEED_LIMIT = orchestrationLimit(0, Number.MAX_SAFE_INTEGER, true, 0, 'random seed');
