// Text generation: model.generate (one stream of text pieces) and model.generateBatch (K requests,
// each with its own prompt, adapter and sampling options, advanced together: one decode call per
// step for all of them, the ternary weights read once for all K). The core does the work
// (native/model/decode.h: the KV cache and the incremental forward; sampler.h: the seeded
// sampler, ISA-independent) through a Decoder handle (native/addon/decode_binding.cpp), one async
// call per step, off the event loop. This file schedules the steps (prompts in chunks, at most
// `rows` new tokens per call), turns tokens into text and stops.
//
// Text: each new token's bytes (decoded after the previous token, so a tokenizer that drops a
// leading space only at the start of a text keeps it) go through a streaming UTF-8 decoder, so a
// character split across tokens is emitted whole, once its last byte arrives; text that could
// still become a stop string is held back until it cannot. Stopping: EOS (the vocabulary's, or
// options.eos), a stop string (the text ends before it), maxTokens, or the context (the core
// refuses to go past it, so the sequence ends there: finishReason 'context'). Cancelling: an
// AbortSignal, checked before every step (a step is at most `rows` tokens of work).

import { types } from 'node:util';

import { loadAddon } from '../native.js';
import { tokenIds } from '../tokenizer/native.js';
import { checkLimit, coreLimits, defaultOf, SEED_LIMIT, type CoreLimits } from './limits.js';
import type { NativeModel } from './native-model.js';
import { adapterForCore, type AdapterInput, type Model, type ModelTokenizer, type Precision } from './model.js';

// ---- the raw addon surface (native/addon/decode_binding.cpp) ----------------------------------

export interface RawSampling {
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  seed: number;
}

export interface NativeDecoder {
  start(slot: number, adapter: Float32Array | Uint8Array | null, sampling: RawSampling): void;
  stepAsync(
    slots: Int32Array,
    counts: Int32Array,
    tokens: Int32Array,
    sample: Uint8Array,
    wantLogits: boolean,
    threads?: number,
  ): Promise<{ next: Int32Array; logits: Float32Array | null }>;
  position(slot: number): number;
  reset(slot: number): void;
  cacheBytesPerToken(): number;
}

interface NativeDecodeAddon {
  decoderCreate(model: NativeModel, sequences: number, rows: number, precision: string): NativeDecoder;
}

function decodeAddon(): NativeDecodeAddon {
  const a = loadAddon() as unknown as Partial<NativeDecodeAddon>;
  if (typeof a.decoderCreate !== 'function') {
    throw new Error('ternorm: the loaded native addon has no decoder (decoderCreate); rebuild it with `npm run build:gyp`');
  }
  return a as NativeDecodeAddon;
}

/** The core's ranges and defaults of generation (native/model/limits.h, group "generate"). */
export function generateLimits(): CoreLimits['generate'] {
  return coreLimits().generate;
}

// Steps of decoders over one model must not overlap (the model is busy during a step): each
// model's steps run one after another.
const queues = new WeakMap<NativeModel, Promise<unknown>>();
function serial<T>(model: NativeModel, fn: () => Promise<T>): Promise<T> {
  const prev = queues.get(model) ?? Promise.resolve();
  const run = prev.then(fn, fn);
  queues.set(
    model,
    run.catch(() => undefined),
  );
  return run;
}

/**
 * A decoder over a model: `sequences` slots, each with its own KV cache, adapter and sampler; one
 * step appends tokens to some slots (up to `rows` in all) and returns the logits of each one's
 * last token and, for the slots asked, the next token drawn. The building block of generate; also
 * for callers that schedule their own steps.
 */
export class Decoder {
  /** @internal */ readonly native: NativeDecoder;
  readonly sequences: number;
  readonly rows: number;

  constructor(
    readonly model: Model,
    options: { sequences?: number; rows?: number; precision?: Precision } = {},
  ) {
    const l = generateLimits();
    this.sequences = checkLimit(l.sequences, options.sequences ?? defaultOf(l.sequences), 'sequences');
    this.rows = checkLimit(l.rows, options.rows ?? Math.max(defaultOf(l.rows), this.sequences), 'rows');
    if (this.rows < this.sequences) throw new RangeError(`rows (${this.rows}) must be at least sequences (${this.sequences})`);
    this.native = decodeAddon().decoderCreate(model.native, this.sequences, this.rows, options.precision ?? 'ternary');
  }

  /** Empties `slot` and gives it an adapter and a sampler (seeded). */
  start(slot: number, adapter: AdapterInput, sampling: Partial<RawSampling> = {}): void {
    this.native.start(slot, adapterForCore(adapter), resolveSampling(sampling));
  }

  /**
   * One step: entries[e].tokens go to slot entries[e].slot (distinct slots, at most `rows` tokens
   * in all). next[e] is the token drawn for entries with sample: true, else -1; logits (entries x
   * vocab) when wantLogits. Rejects (and changes nothing) on bad ids, a full context, a bad slot.
   */
  async step(
    entries: readonly { slot: number; tokens: ArrayLike<number>; sample?: boolean }[],
    options: { wantLogits?: boolean; threads?: number } = {},
  ): Promise<{ next: Int32Array; logits: Float32Array | null }> {
    const E = entries.length;
    const slots = new Int32Array(E);
    const counts = new Int32Array(E);
    const sample = new Uint8Array(E);
    const vocab = this.model.config.vocab;
    const parts = entries.map((en, e) => {
      slots[e] = en.slot;
      // An Int32Array's ids are checked by the core (the step rejects, nothing changed).
      const ids = tokenIds(en.tokens, vocab, `entry ${e}`);
      counts[e] = ids.length;
      sample[e] = en.sample === true ? 1 : 0;
      return ids;
    });
    const tokens = new Int32Array(counts.reduce((a, b) => a + b, 0));
    let at = 0;
    for (const p of parts) {
      tokens.set(p, at);
      at += p.length;
    }
    return this.stepArrays(slots, counts, tokens, sample, options.threads, options.wantLogits === true);
  }

  /**
   * @internal One step of typed arrays as stepAsync takes them (step()'s, and run()'s path: no
   * per-entry arrays to build). The addon copies them when the step is queued, so the caller may
   * reuse them once the step has settled; the core checks them. Steps of one model are serialised.
   */
  stepArrays(
    slots: Int32Array,
    counts: Int32Array,
    tokens: Int32Array,
    sample: Uint8Array,
    threads?: number,
    wantLogits = false,
  ): Promise<{ next: Int32Array; logits: Float32Array | null }> {
    return serial(this.model.native, () => this.native.stepAsync(slots, counts, tokens, sample, wantLogits, threads));
  }

  /** Tokens cached in the slot. */
  position(slot: number): number {
    return this.native.position(slot);
  }
}

function resolveSampling(s: Partial<RawSampling>): RawSampling {
  const l = generateLimits();
  return {
    temperature: checkLimit(l.temperature, s.temperature ?? defaultOf(l.temperature), 'temperature'),
    topK: checkLimit(l.topK, s.topK ?? defaultOf(l.topK), 'topK'),
    topP: checkLimit(l.topP, s.topP ?? defaultOf(l.topP), 'topP'),
    minP: checkLimit(l.minP, s.minP ?? defaultOf(l.minP), 'minP'),
    seed: checkLimit(SEED_LIMIT, s.seed ?? defaultOf(SEED_LIMIT), 'seed'),
  };
}

// ---- generate -----------------------------------------------------------------------------------

export interface GenerateOptions {
  /** Tokens generated at most (the core's default and range: generateLimits().maxTokens). */
  maxTokens?: number;
  /** 0 = greedy. */
  temperature?: number;
  /** 0 = off. */
  topK?: number;
  /** 1 = off. */
  topP?: number;
  /** 0 = off. */
  minP?: number;
  /** The sampler's seed (an integer in 0..2^53-1; default 0): the same seed gives the same tokens. */
  seed?: number;
  /** Generation ends when the text contains one of these; the text ends before it. */
  stop?: readonly string[];
  /** The end-of-sequence token; default the GGUF vocabulary's EOS, none for ternorm's BPE. null: none. */
  eos?: number | null;
  /** This user's adapter (raw or encoded; an encoding is decoded inside the fused norm kernel). */
  adapter?: AdapterInput;
}

export interface RunOptions {
  precision?: Precision;
  threads?: number;
  signal?: AbortSignal;
  /** Most new tokens per decode call (a prompt goes in chunks of this); default generateLimits().rows. */
  rows?: number;
}

export type FinishReason = 'eos' | 'stop' | 'maxTokens' | 'context';

export interface GenerateResult {
  /** The generated text (without the stop string or EOS). */
  text: string;
  /** The generated token ids (the EOS excluded; the tokens of a stop string included). */
  tokens: Int32Array;
  promptTokens: number;
  finishReason: FinishReason;
}

export interface GenerateRequest extends GenerateOptions {
  /** A text (encoded with the model's tokenizer) or token ids. */
  prompt: string | Int32Array;
}

interface Resolved {
  prompt: Int32Array;
  maxTokens: number;
  sampling: RawSampling;
  stop: string[];
  eos: number | null;
  adapter: AdapterInput;
}

function resolveRequest(model: Model, r: GenerateRequest, where: string): Resolved {
  if (typeof r !== 'object' || r === null) throw new TypeError(`${where} must be an object`);
  const vocab = model.config.vocab;
  let prompt: Int32Array;
  if (typeof r.prompt === 'string') {
    if (model.tokenizer === null) throw new Error(`${where}: the model has no tokenizer to encode the prompt with; pass token ids`);
    const ids = model.tokenizer.encode(Buffer.from(r.prompt, 'utf8'));
    const v = model.ggufVocab;
    // A llama-style vocabulary starts every text with BOS (as llama.cpp's tokenize does).
    prompt = v?.addBos === true && v.bos !== undefined ? Int32Array.of(v.bos, ...ids) : ids;
  } else if (types.isInt32Array(r.prompt)) {
    prompt = r.prompt.slice();
  } else {
    throw new TypeError(`${where}.prompt must be a string or an Int32Array of token ids`);
  }
  if (prompt.length < 1) throw new RangeError(`${where}.prompt encodes to no tokens; generation needs at least one`);
  for (let i = 0; i < prompt.length; i++) {
    if (prompt[i]! < 0 || prompt[i]! >= vocab)
      throw new RangeError(`${where}.prompt: token ${i} is ${prompt[i]}, expected an id in [0, ${vocab})`);
  }
  if (prompt.length > model.config.context) {
    throw new RangeError(
      `${where}.prompt holds ${prompt.length} tokens, more than the model's context of ${model.config.context} (the context limit is refused, not slid)`,
    );
  }
  const l = generateLimits();
  const stop = r.stop ?? [];
  if (!Array.isArray(stop) || stop.some((s) => typeof s !== 'string' || s === '')) {
    throw new TypeError(`${where}.stop must be an array of non-empty strings`);
  }
  const eos = r.eos === undefined ? (model.ggufVocab?.eos ?? null) : r.eos;
  if (eos !== null && (!Number.isInteger(eos) || eos < 0 || eos >= vocab)) {
    throw new RangeError(`${where}.eos must be a token id in [0, ${vocab}) or null, got ${String(eos)}`);
  }
  const adapter = r.adapter ?? null;
  adapterForCore(adapter);
  return {
    prompt,
    maxTokens: checkLimit(l.maxTokens, r.maxTokens ?? defaultOf(l.maxTokens), `${where}.maxTokens`),
    sampling: resolveSampling({ temperature: r.temperature, topK: r.topK, topP: r.topP, minP: r.minP, seed: r.seed }),
    stop: [...stop],
    eos,
    adapter,
  };
}

/** Throws the error generate / generateBatch would give `request` (a bad prompt, option or adapter). */
export function checkRequest(model: Model, request: GenerateRequest): void {
  resolveRequest(model, request, 'request');
}

// Each token's bytes alone, per tokenizer (read only: handed to a TextDecoder).
const singleBytes = new WeakMap<ModelTokenizer, Map<number, Uint8Array>>();

/** @internal One sequence's text: token bytes -> UTF-8 text -> stop strings. */
export class TextStream {
  private readonly utf8 = new TextDecoder('utf-8');
  private text = ''; // everything decoded so far
  private emitted = 0; // text[0, emitted) was handed out
  private prev: number; // the token before the next one (its bytes are the context of the next)
  stopped = false;

  constructor(
    private readonly tok: ModelTokenizer,
    lastPromptToken: number,
    private readonly stops: readonly string[],
  ) {
    this.prev = lastPromptToken;
  }

  private bytesOf(id: number): Uint8Array {
    const before = this.single(this.prev);
    const both = this.tok.decode([this.prev, id]);
    let prefix = both.length >= before.length;
    for (let i = 0; prefix && i < before.length; i++) prefix = both[i] === before[i];
    return prefix ? both.subarray(before.length) : this.single(id);
  }

  // tok.decode([id]), from a cache shared by every stream over the tokenizer: a step asks for
  // each sequence's previous token alone, and the call (a native decode and a fresh array) was
  // half a token's text cost.
  private single(id: number): Uint8Array {
    let m = singleBytes.get(this.tok);
    if (m === undefined) singleBytes.set(this.tok, (m = new Map()));
    let b = m.get(id);
    if (b === undefined) m.set(id, (b = this.tok.decode([id])));
    return b;
  }

  /** The text that can be handed out after token `id` ('' when none yet). */
  push(id: number): string {
    this.text += this.utf8.decode(this.bytesOf(id), { stream: true });
    this.prev = id;
    return this.release(false);
  }

  /** The rest, at the end of the sequence (an unfinished UTF-8 sequence becomes U+FFFD). */
  end(): string {
    if (!this.stopped) this.text += this.utf8.decode();
    return this.release(true);
  }

  private release(final: boolean): string {
    if (this.stopped) return '';
    // A stop string can only start in text not yet handed out (text handed out was no prefix of one).
    let cut = -1;
    for (const s of this.stops) {
      const i = this.text.indexOf(s, this.emitted);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    let upto = this.text.length;
    if (cut >= 0) {
      this.stopped = true;
      upto = cut;
    } else if (!final) {
      upto -= this.heldBack();
    }
    const out = this.text.slice(this.emitted, upto);
    this.emitted = upto;
    return out;
  }

  // The longest tail of the text (not yet handed out) that begins a stop string.
  private heldBack(): number {
    let hold = 0;
    const tail = this.text.length - this.emitted;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, tail); k > hold; k--) {
        if (this.text.endsWith(s.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    return hold;
  }

  get all(): string {
    return this.text.slice(0, this.emitted);
  }
}

class Sequence {
  fed = 0; // prompt tokens in the cache
  readonly out: number[] = [];
  pending = -1; // the last drawn token, to feed next step
  finish: FinishReason | null = null;
  readonly text: TextStream;

  constructor(
    model: Model,
    readonly r: Resolved,
  ) {
    this.text = new TextStream(model.tokenizer!, r.prompt[r.prompt.length - 1]!, r.stop);
  }

  get done(): boolean {
    return this.finish !== null;
  }

  /** Takes the drawn token; returns the text it releases. */
  accept(id: number): string {
    if (id === this.r.eos) {
      this.finish = 'eos';
      return this.text.end();
    }
    this.out.push(id);
    let piece = this.text.push(id);
    if (this.text.stopped) this.finish = 'stop';
    else if (this.out.length >= this.r.maxTokens) this.finish = 'maxTokens';
    if (this.finish !== null) piece += this.text.end();
    this.pending = id;
    return piece;
  }

  /** Ends at the context: the next token has no position left. */
  endAtContext(): string {
    this.finish = 'context';
    return this.text.end();
  }

  result(): GenerateResult {
    return { text: this.text.all, tokens: Int32Array.from(this.out), promptTokens: this.r.prompt.length, finishReason: this.finish! };
  }
}

function checkRun(model: Model, o: RunOptions): void {
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw new TypeError('signal must be an AbortSignal');
  if (o.precision !== undefined && !['ternary', 'fp32', 'ternary-fp32act'].includes(o.precision)) {
    throw new RangeError(`precision must be 'ternary', 'fp32' or 'ternary-fp32act', got ${String(o.precision)}`);
  }
  if (model.tokenizer === null) throw new Error('generate: the model has no tokenizer to turn tokens into text');
}

/** Pieces of text as they come: { index (the request), piece }. Ends when every request is done. */
async function* run(model: Model, requests: Resolved[], o: RunOptions): AsyncGenerator<{ index: number; piece: string }, GenerateResult[]> {
  const K = requests.length;
  const dec = new Decoder(model, { sequences: K, rows: Math.max(o.rows ?? defaultOf(generateLimits().rows), K), precision: o.precision });
  const seqs = requests.map((r, i) => {
    dec.start(i, r.adapter, r.sampling);
    return new Sequence(model, r);
  });
  const context = model.config.context;
  // A step's entries (at most one per sequence) and tokens (at most rows), reused by every step.
  const slots = new Int32Array(K);
  const counts = new Int32Array(K);
  const sample = new Uint8Array(K);
  const tokens = new Int32Array(dec.rows);
  for (;;) {
    o.signal?.throwIfAborted();
    // Decoding sequences first (one row each), then prompt chunks in the rows left.
    let E = 0;
    let T = 0;
    for (let i = 0; i < K; i++) {
      const s = seqs[i]!;
      if (s.done || s.fed < s.r.prompt.length) continue;
      if (s.fed + s.out.length - 1 >= context) {
        const piece = s.endAtContext();
        if (piece !== '') yield { index: i, piece };
        continue;
      }
      slots[E] = i;
      counts[E] = 1;
      sample[E++] = 1;
      tokens[T++] = s.pending;
    }
    for (let i = 0; i < K && T < dec.rows; i++) {
      const s = seqs[i]!;
      if (s.done || s.fed >= s.r.prompt.length) continue;
      const n = Math.min(dec.rows - T, s.r.prompt.length - s.fed);
      tokens.set(s.r.prompt.subarray(s.fed, s.fed + n), T);
      slots[E] = i;
      counts[E] = n;
      sample[E++] = s.fed + n === s.r.prompt.length ? 1 : 0;
      s.fed += n;
      T += n;
    }
    if (E === 0) break;
    const { next } = await dec.stepArrays(
      slots.subarray(0, E),
      counts.subarray(0, E),
      tokens.subarray(0, T),
      sample.subarray(0, E),
      o.threads,
    );
    for (let e = 0; e < E; e++) {
      if (sample[e] === 0) continue;
      const i = slots[e]!;
      const piece = seqs[i]!.accept(next[e]!);
      if (piece !== '') yield { index: i, piece };
    }
  }
  return seqs.map((s) => s.result());
}

/**
 * Streams the text generated after `prompt`: `for await (const piece of model.generate(prompt))`.
 * The generator's return value (when iterated by hand) is the GenerateResult. Off the event loop;
 * options.signal aborts before the next step (the iteration throws the signal's reason).
 */
export async function* generate(
  model: Model,
  prompt: string | Int32Array,
  options: GenerateOptions & RunOptions = {},
): AsyncGenerator<string, GenerateResult> {
  checkRun(model, options);
  const r = resolveRequest(model, { ...options, prompt }, 'generate');
  const it = run(model, [r], options);
  for (;;) {
    const n = await it.next();
    if (n.done === true) return n.value[0]!;
    yield n.value.piece;
  }
}

/**
 * K requests (each its own prompt, adapter, sampling options and seed) decoded together: every
 * step is one decode call for all of them. Each request's tokens are the ones it gets alone.
 * onPiece streams each request's text as it comes.
 */
export async function generateBatch(
  model: Model,
  requests: readonly GenerateRequest[],
  options: RunOptions & { onPiece?: (index: number, piece: string) => void } = {},
): Promise<GenerateResult[]> {
  checkRun(model, options);
  if (!Array.isArray(requests) || requests.length < 1) throw new TypeError('requests must be a non-empty array');
  checkLimit(generateLimits().sequences, requests.length, 'requests.length');
  const resolved = requests.map((r, i) => resolveRequest(model, r, `requests[${i}]`));
  const it = run(model, resolved, options);
  for (;;) {
    const n = await it.next();
    if (n.done === true) return n.value;
    options.onPiece?.(n.value.index, n.value.piece);
  }
}
