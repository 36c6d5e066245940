// The core's GGUF-metadata tokenizers on real vocabularies (npm packages llama-tokenizer-js and
// llama3-tokenizer-js, loaded as plain metadata by lib/tokenizer/vocab-packages.ts) against
// those packages' own encoders. The ids the project must match in the end are llama.cpp's; the
// tokenizers follow llama.cpp (native/tokenizer/vocab.h) and the places where the packages
// behave differently from llama.cpp are excluded below, each with its reason:
//  - llama3-tokenizer-js always matches special tokens written in the text; llama.cpp only with
//    parse_special, so the comparison passes parseSpecial: true.
//  - llama-tokenizer-js never matches special tokens and adds its one leading space only at the
//    start of the text; llama.cpp with parse_special cuts "<s>" out and adds the space prefix
//    again after it ([1, "▁Hello"] for "<s>Hello"), checked on its own below.
//  - invalid UTF-8 cannot be given to the packages (they take strings); it is checked against
//    llama.cpp's rules directly (a bad byte reads as U+FFFD in byte-level BPE, falls back to its
//    <0xXX> piece in SentencePiece).
// The packages' encoders are slow (llama-tokenizer-js about 20 kB/s), so the fixture texts are
// compared on their first SAMPLE_BYTES (cut at a line end).
import { beforeAll, describe, expect, it } from 'vitest';
import { getFixtures, TEXT_NAMES } from '../lib/data/fixtures.js';
import { VocabTokenizer, type VocabMetadata } from '../lib/tokenizer/vocab.js';
import { llama2Vocab, llama3Vocab } from '../lib/tokenizer/vocab-packages.js';

const SAMPLE_BYTES = 128 * 1024;

interface Llama3Js {
  encode(s: string, o: { bos: boolean; eos: boolean }): number[];
}
interface Llama2Js {
  encode(s: string, bos: boolean, space: boolean): number[];
}

const EDGE_CASES = [
  "Hello world! It's 12345 digits and 3.14159, 1,000,000.",
  '  leading spaces\r\n\r\nCRLF lines\r\n\ttabs\t\t and trailing   ',
  'emoji 😀🎉👩‍👩‍👧 flags 🇫🇷 naïve café Ωμέγα',
  'a' + ' '.repeat(300) + 'b' + '\n'.repeat(50) + '\t'.repeat(40) + 'c   ',
  'x\n\n\n y \u00a0 nbsp \u3000 ideographic space \u2028',
  '日本語のテキスト、中文文本。한국어 텍스트',
  "don'T I'LL we'Re they've SHE'S 'tis",
  '0123456789 ٠١٢٣ ⅫⅯ ²³ 1234567',
  'if (x != null) { return a->b << 2; } // ~!@#$%^&*()_+`-=[]{}|;:\'",.<>/?',
  ' ',
  '\n',
];

function sampleOf(text: Uint8Array): string {
  const end = text.indexOf(0x0a, SAMPLE_BYTES);
  return Buffer.from(text.subarray(0, end < 0 ? text.length : end + 1)).toString('utf8');
}

describe('GGUF-metadata tokenizers on real vocabularies', () => {
  let l3: VocabTokenizer;
  let l2: VocabTokenizer;
  let l3js: Llama3Js;
  let l2js: Llama2Js;
  let samples: [string, string][];

  beforeAll(async () => {
    l3 = new VocabTokenizer(await llama3Vocab());
    l2 = new VocabTokenizer(await llama2Vocab());
    l3js = (await import('llama3-tokenizer-js')).default as unknown as Llama3Js;
    l2js = (await import('llama-tokenizer-js')).default as unknown as Llama2Js;
    const fx = getFixtures();
    samples = TEXT_NAMES.map((n) => [n, sampleOf(fx.read(n))]);
  });

  it("Llama 3 (gpt2 BPE, llama-bpe): the package's ids on every fixture text and edge case", () => {
    for (const [name, s] of [...samples, ...EDGE_CASES.map((e, i) => [`edge ${i}`, e] as [string, string])]) {
      const ours = Array.from(l3.encode(s, { addSpecial: false, parseSpecial: true }));
      expect(ours, name).toEqual(l3js.encode(s, { bos: false, eos: false }));
      expect(l3.decodeText(ours), name).toBe(s);
    }
  });

  it("Llama 2 (SentencePiece): the package's ids on every fixture text and edge case", () => {
    for (const [name, s] of [...samples, ...EDGE_CASES.map((e, i) => [`edge ${i}`, e] as [string, string])]) {
      const ours = Array.from(l2.encode(s, { addSpecial: false }));
      expect(ours, name).toEqual(l2js.encode(s, false, true));
      expect(l2.decodeText(ours), name).toBe(s);
    }
  });

  it('adds BOS as the metadata says, and only BOS for an empty text', () => {
    expect(Array.from(l3.encode(''))).toEqual([128000]);
    expect(Array.from(l3.encode('', { addSpecial: false }))).toEqual([]);
    expect(Array.from(l2.encode(''))).toEqual([1]);
    expect(Array.from(l2.encode('Hello')).slice(0, 1)).toEqual([1]);
    expect(Array.from(l3.encode('Hi')).slice(1)).toEqual(Array.from(l3.encode('Hi', { addSpecial: false })));
  });

  it('matches control tokens in the text only with parseSpecial, as llama.cpp does', () => {
    const eot = l3.metadata.tokens.indexOf('<|eot_id|>');
    expect(Array.from(l3.encode('a<|eot_id|>b', { addSpecial: false, parseSpecial: true }))).toEqual([
      ...l3.encode('a', { addSpecial: false }),
      eot,
      ...l3.encode('b', { addSpecial: false }),
    ]);
    expect(Array.from(l3.encode('a<|eot_id|>b', { addSpecial: false }))).not.toContain(eot);
    // SentencePiece: the space prefix comes back after a special token.
    const hello = Array.from(l2.encode('Hello', { addSpecial: false }));
    expect(Array.from(l2.encode('<s>Hello', { addSpecial: false, parseSpecial: true }))).toEqual([1, ...hello]);
    expect(Array.from(l2.encode('<s>Hello', { addSpecial: false }))).not.toContain(1);
    expect(l2.decodeText(l2.encode('<s>Hello', { parseSpecial: true }), { renderSpecial: true })).toBe('<s><s> Hello');
  });

  it('reads invalid UTF-8 as llama.cpp does', () => {
    const bad = new Uint8Array([0x61, 0xff, 0x62, 0xc3, 0x28, 0xe2, 0x82]);
    // byte-level BPE: each bad byte is U+FFFD
    expect(Array.from(l3.encode(bad, { addSpecial: false }))).toEqual(
      Array.from(l3.encode('a\uFFFDb\uFFFD(\uFFFD\uFFFD', { addSpecial: false })),
    );
    // SentencePiece: the bytes fall back to <0xXX> pieces, so decoding gives them back
    const ids = l2.encode(bad, { addSpecial: false });
    expect(Array.from(ids)).toContain(l2.metadata.tokens.indexOf('<0xFF>'));
    expect(Buffer.from(l2.decode(ids)).equals(Buffer.from(bad))).toBe(true);
  });
});

describe('tokenizer metadata errors', () => {
  const base: VocabMetadata = { model: 'gpt2', tokens: ['a', 'b', 'ab'], merges: ['a b'] };
  it('names the problem in one line', () => {
    const bad: [Partial<VocabMetadata>, RegExp][] = [
      [{ model: 'bert' as 'gpt2' }, /unsupported tokenizer model "bert" \(supported: gpt2, llama\)/],
      [{ pre: 'qwen2' }, /unsupported pre-tokenizer "qwen2"/],
      [{ tokens: [] }, /no tokens/],
      [{ tokenTypes: new Int32Array(2) }, /token_type has 2 entries for 3 tokens/],
      [{ tokenTypes: new Int32Array([1, 1, 9]) }, /token_type\[2\] is 9, expected 1..6/],
      [{ bos: 3 }, /bos token id 3 is outside the vocabulary of 3/],
      [{ addBos: true }, /add_bos_token is true but there is no bos token id/],
      [{ merges: ['ab'] }, /merge 0 "ab" is not two tokens separated by a space/],
      [{ model: 'llama', scores: new Float32Array(2) }, /scores has 2 entries for 3 tokens/],
    ];
    for (const [patch, re] of bad) expect(() => new VocabTokenizer({ ...base, ...patch } as VocabMetadata)).toThrow(re);
    expect(() => new VocabTokenizer({ ...base, tokens: [1] as unknown as string[] })).toThrow(/metadata.tokens\[0\] must be a string/);
    const t = new VocabTokenizer(base);
    expect(Array.from(t.encode('ab ba', { addSpecial: false }))).toEqual([2, 1, 0]); // " " has no token: dropped, as in llama.cpp
    expect(() => t.decode([3])).toThrow(/token 0 is 3, expected an integer in \[0, 3\)/);
    expect(() => t.decode(new Int32Array([0, -1]))).toThrow(/token 1 is -1, expected an integer in \[0, 3\)/);
    expect(() => t.decode([0.5])).toThrow(/token 0 is 0.5/);
  });
});
