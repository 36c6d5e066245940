// The project's byte-level BPE tokenizer (the one a .tnm model stores): a thin typed surface over
// the core's ByteBpe (native/tokenizer/byte_bpe.h, which documents the ids, the training rule
// and the serialized "TBPE" format). Each call hands a whole text to the core.

import { describeValue, tokenIds, tokenizerAddon, type NativeByteBpe } from './native.js';

// The core's values, repeated so that importing this module does not load the addon;
// test/tokenizer.test.ts checks them against the addon's byteBpeConstants.
export const BPE_FORMAT_VERSION = 1;
export const MIN_VOCAB_SIZE = 256;
export const MAX_VOCAB_SIZE = 65536;

export interface BpeTrainOptions {
  /** Total vocabulary size including the 256 byte tokens: 256 <= vocabSize <= 65536. */
  vocabSize: number;
  /**
   * A pair is merged only if it occurs at least this often (default 2). Training throws if the
   * text runs out of such pairs before reaching vocabSize.
   */
  minPairCount?: number;
}

function checkBytes(bytes: unknown, what: string): asserts bytes is Uint8Array {
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(`${what}: expected a Uint8Array of bytes, got ${describeValue(bytes)}`);
  }
}

// Re-throws a core error with the calling method's name in front, keeping its class.
function named<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (!(err instanceof Error)) throw err;
    const Cls = err instanceof RangeError ? RangeError : err instanceof TypeError ? TypeError : Error;
    throw new Cls(`${what}: ${err.message}`, { cause: err });
  }
}

export class BpeTokenizer {
  readonly vocabSize: number;
  private readonly core: NativeByteBpe;

  private constructor(merges: Uint16Array) {
    this.core = new (tokenizerAddon().ByteBpe)(merges);
    this.vocabSize = this.core.vocabSize();
  }

  /** Learns vocabSize - 256 merges from `bytes` (see the training rule in byte_bpe.h). */
  static train(bytes: Uint8Array, options: BpeTrainOptions): BpeTokenizer {
    checkBytes(bytes, 'BpeTokenizer.train');
    if (typeof options !== 'object' || options === null) {
      throw new TypeError('BpeTokenizer.train: expected options { vocabSize }');
    }
    const { vocabSize } = options;
    const minPairCount = options.minPairCount ?? 2;
    if (!Number.isInteger(vocabSize) || vocabSize < MIN_VOCAB_SIZE || vocabSize > MAX_VOCAB_SIZE) {
      throw new RangeError(`BpeTokenizer.train: vocabSize must be an integer in [${MIN_VOCAB_SIZE}, ${MAX_VOCAB_SIZE}], got ${vocabSize}`);
    }
    if (!Number.isInteger(minPairCount) || minPairCount < 1 || minPairCount > 2 ** 31) {
      throw new RangeError(`BpeTokenizer.train: minPairCount must be an integer >= 1, got ${minPairCount}`);
    }
    return new BpeTokenizer(named('BpeTokenizer.train', () => tokenizerAddon().byteBpeTrain(bytes, vocabSize, minPairCount)));
  }

  /** Parses the output of serialize(); throws a descriptive error on any corruption. */
  static deserialize(data: Uint8Array): BpeTokenizer {
    checkBytes(data, 'BpeTokenizer.deserialize');
    return new BpeTokenizer(named('BpeTokenizer.deserialize', () => tokenizerAddon().byteBpeParse(data)));
  }

  /** A copy of the merges: [2k] and [2k+1] are the left and right ids merged into id 256 + k. */
  get merges(): Uint16Array {
    return this.core.merges();
  }

  serialize(): Uint8Array {
    return this.core.serialize();
  }

  /** Token ids of `bytes`; any byte string is accepted and decode() returns it exactly. */
  encode(bytes: Uint8Array): Int32Array {
    checkBytes(bytes, 'BpeTokenizer.encode');
    return this.core.encode(bytes);
  }

  /** Bytes of the token sequence `ids`; throws on an id outside [0, vocabSize). */
  decode(ids: ArrayLike<number>): Uint8Array {
    const i32 = tokenIds(ids, this.vocabSize, 'BpeTokenizer.decode');
    return named('BpeTokenizer.decode', () => this.core.decode(i32));
  }

  /** The bytes that token `id` stands for (a copy). */
  tokenBytes(id: number): Uint8Array {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new RangeError(`BpeTokenizer.tokenBytes: id ${id} outside [0, ${this.vocabSize})`);
    }
    return this.core.tokenBytes(id);
  }
}
