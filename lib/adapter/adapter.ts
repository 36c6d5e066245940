// A norm-only adapter (Adapter: the gains, their file) and an encoded adapter (Encoding: the bytes a
// fleet ships and what the norm kernel decodes from them). Files are built and parsed by the C++ core
// (native/model/model_file.h); encodings come from lib/adapter/codec.ts.

import { types } from 'node:util';

import { metaText, Model, parseJson } from '../model/model.js';
import { modelAddon, type RawEncodedTensor, type RawEncoding } from '../model/native-model.js';

/**
 * An encoded adapter (native/codec): the exact bytes a fleet ships for one user, their decoded gains
 * and the quantisation parameters of every norm tensor.
 */
export class Encoding {
  /** The codec method ('int8_per_tensor', ...). */
  readonly method: string;
  /** Exact serialised size in bytes (header + params + payload; native/codec/README.md). */
  readonly bytes: number;
  /** The serialised records, as stored in an encoded adapter file. */
  readonly blob: Uint8Array;
  /** What the norm kernel decodes, n_norms x d_model. */
  readonly gains: Float32Array;
  readonly tensors: readonly RawEncodedTensor[];
  /** The blob's format: 1, or 2 (compact record headers) for the low-rate methods. */
  readonly format: number;

  constructor(method: string, raw: RawEncoding) {
    if (raw.blob.length !== raw.bytes) throw new Error(`encoding ${method}: blob of ${raw.blob.length} bytes, expected ${raw.bytes}`);
    this.method = method;
    this.bytes = raw.bytes;
    this.blob = raw.blob;
    this.gains = raw.gains;
    this.tensors = raw.tensors;
    this.format = raw.format;
  }

  /** Parses (and validates) an encoded blob of `model`'s adapter shape. */
  static fromBlob(model: Model, method: string, blob: Uint8Array): Encoding {
    if (!(model instanceof Model)) throw new TypeError('model must be a Model');
    if (!types.isUint8Array(blob)) throw new TypeError('blob must be a Uint8Array');
    return new Encoding(method, modelAddon().adapterDescribe(model.native, blob));
  }
}

/**
 * A norm-only adapter: one f32 gain per RMSNorm weight of its base (n_norms x d_model). An encoded
 * adapter also carries its Encoding; its gains are then the decoded ones.
 */
export class Adapter {
  constructor(
    readonly gains: Float32Array,
    /** The record stored with it (parsed JSON), null if none. */
    readonly meta: unknown = null,
    /** The encoding this adapter ships as; null for a raw f32 adapter. */
    readonly encoding: Encoding | null = null,
  ) {
    if (!types.isFloat32Array(gains)) throw new TypeError('gains must be a Float32Array');
    for (let i = 0; i < gains.length; i++) {
      if (!Number.isFinite(gains[i]!)) throw new RangeError(`gains[${i}] is ${gains[i]}; expected finite values`);
    }
    if (encoding !== null && !(encoding instanceof Encoding)) throw new TypeError('encoding must be an Encoding or null');
  }

  /** The identity adapter (every gain 1.0) of a model. */
  static identity(model: Model): Adapter {
    return new Adapter(new Float32Array(model.nGains).fill(1));
  }

  /** This adapter shipped as `encoding` (its gains become the decoded ones). */
  static fromEncoding(encoding: Encoding, meta: unknown = null): Adapter {
    return new Adapter(encoding.gains, meta, encoding);
  }

  /** 'f32' for a raw adapter, else the encoding's method. */
  get scheme(): string {
    return this.encoding === null ? 'f32' : this.encoding.method;
  }

  private checkFor(model: Model): void {
    if (!(model instanceof Model)) throw new TypeError('model must be a Model');
    if (this.gains.length !== model.nGains) {
      throw new RangeError(`the adapter holds ${this.gains.length} gains but the model needs n_norms * d_model = ${model.nGains}`);
    }
  }

  /** Writes the adapter file atomically (raw or encoded), recording the base model's fingerprint. */
  save(model: Model, path: string): void {
    this.checkFor(model);
    if (typeof path !== 'string' || path === '') throw new TypeError('path must be a non-empty string');
    this.write(model, path);
  }

  toBytes(model: Model): Uint8Array {
    this.checkFor(model);
    return this.write(model) as Uint8Array;
  }

  private write(model: Model, path?: string): Uint8Array | undefined {
    const meta = metaText(this.meta);
    const a = modelAddon();
    return this.encoding === null
      ? a.adapterSave(model.native, this.gains, meta, path)
      : a.adapterSaveEncoded(model.native, this.encoding.method, this.encoding.blob, meta, path);
  }

  /** Loads an adapter file (raw or encoded) for `model`; throws when it was trained on another base. */
  static load(model: Model, source: string | Uint8Array): Adapter {
    if (!(model instanceof Model)) throw new TypeError('model must be a Model');
    if (typeof source !== 'string' && !types.isUint8Array(source)) {
      throw new TypeError('source must be a file path (string) or a Uint8Array');
    }
    const raw = modelAddon().adapterLoad(model.native, source);
    const meta = parseJson(raw.meta, `${typeof source === 'string' ? source : 'adapter bytes'}: meta`);
    return new Adapter(raw.gains, meta, raw.encoding === null ? null : new Encoding(raw.scheme, raw.encoding));
  }
}
