// The range check every command runs on its numeric flags right after parsing, before it reads a
// file, loads a model or creates anything: each flag maps to a Limit (the core's own ranges from
// native/model/limits.h via coreLimits(), or the orchestration's), and a value outside it is a
// usage error (exit 2) naming the flag and the allowed range.

import { cpuInfo } from '../kernels.js';
import { coreLimits, describeRange, inRange, orchestrationLimit, type ActQuant, type GradQuant, type Limit } from '../model/limits.js';
import { UsageError, type Values } from './args.js';

/** --threads: 1..the native pool size (the hardware threads). */
export function threadsLimit(): Limit {
  const n = cpuInfo().threads;
  return orchestrationLimit(1, n, true, n, 'the native thread pool size');
}

/** A copy of l with a tighter or different range (a CLI flag that allows less than the core). */
export function narrowed(l: Limit, range: { min?: number; max?: number; minOpen?: boolean }): Limit {
  return Object.freeze({ ...l, ...range });
}

/**
 * Parses and range-checks every flag of `limits` present in `v`; returns their values (undefined
 * when absent). Throws UsageError "--flag must be <range>, got '<raw>'".
 */
export function checkNumericFlags<K extends string>(v: Values, limits: Record<K, Limit>): Record<K, number | undefined> {
  const out = {} as Record<K, number | undefined>;
  for (const flag of Object.keys(limits) as K[]) {
    const raw = v[flag];
    if (raw === undefined) {
      out[flag] = undefined;
      continue;
    }
    const l = limits[flag];
    const n = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
    if (!inRange(l, n)) throw new UsageError(`--${flag} must be ${describeRange(l)} (${l.what}), got '${String(raw)}'`);
    out[flag] = n;
  }
  return out;
}

/** --act-quant: undefined when absent, else one of the core's mode names (UsageError naming them otherwise). */
export function actQuantFlag(raw: unknown): ActQuant | undefined {
  if (raw === undefined) return undefined;
  const { names } = coreLimits().actQuant;
  if (typeof raw !== 'string' || !(names as readonly string[]).includes(raw))
    throw new UsageError(`--act-quant must be one of ${names.join(', ')} (how ternary activations are quantised), got '${String(raw)}'`);
  return raw as ActQuant;
}

/** --grad-quant: undefined when absent, else one of the core's gradient precisions (UsageError naming them otherwise). */
export function gradQuantFlag(raw: unknown): GradQuant | undefined {
  if (raw === undefined) return undefined;
  const { names } = coreLimits().gradQuant;
  if (typeof raw !== 'string' || !(names as readonly string[]).includes(raw))
    throw new UsageError(
      `--grad-quant must be one of ${names.join(', ')} (adapter training's gradient through the ternary linears), got '${String(raw)}'`,
    );
  return raw as GradQuant;
}
