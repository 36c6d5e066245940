// Real vocabularies from npm packages, as plain GGUF tokenizer metadata (VocabMetadata):
//  - llama-tokenizer-js: Llama 2's SentencePiece vocabulary (32000 pieces). The package ships
//    the pieces and Hugging Face's merges but not SentencePiece's scores, so they are rebuilt as
//    Llama 2's tokenizer.model has them: a SentencePiece BPE model lists its pieces in the order
//    they were learned, normal piece i scoring -(i - 259); the pieces made only of spaces ("▁▁",
//    "▁▁▁▁", ...), added to Llama's vocabulary afterwards, score -1e9; specials and bytes 0.
//    Only the order of the scores matters to the tokenizer; test/tokenizer-vocab.test.ts checks
//    the result against the package's own (merges-based) encoder on every fixture text.
//  - llama3-tokenizer-js: Llama 3's byte-level BPE (128000 tokens, 280147 merges, 256 special
//    tokens), tokenizer.ggml.pre = "llama-bpe".
// Both are devDependencies (test and benchmark data), loaded on demand.

import { TOKEN_TYPE, type VocabMetadata } from './vocab.js';

interface PackageTokenizer {
  vocabById: string[];
  merges: Map<string, number>;
}

async function load(name: string): Promise<PackageTokenizer> {
  let mod: { default?: PackageTokenizer };
  try {
    mod = (await import(name)) as { default?: PackageTokenizer };
  } catch (err) {
    throw new Error(`the vocabulary package ${name} is not installed (it is a devDependency: npm install -D ${name})`, { cause: err });
  }
  const t = mod.default;
  if (!t || !Array.isArray(t.vocabById) || !(t.merges instanceof Map)) {
    throw new Error(`${name}: unexpected module shape (no default tokenizer with vocabById and merges)`);
  }
  return t;
}

/** Llama 2 (SentencePiece): <unk> 0, <s> 1 (BOS, added), </s> 2, <0x00>..<0xFF> 3..258. */
export async function llama2Vocab(): Promise<VocabMetadata> {
  const t = await load('llama-tokenizer-js');
  const tokens = t.vocabById.slice();
  const n = tokens.length;
  const scores = new Float32Array(n);
  const tokenTypes = new Int32Array(n).fill(TOKEN_TYPE.normal);
  tokenTypes[0] = TOKEN_TYPE.unknown;
  tokenTypes[1] = TOKEN_TYPE.control;
  tokenTypes[2] = TOKEN_TYPE.control;
  for (let i = 0; i < n; i++) {
    if (/^<0x[0-9A-F]{2}>$/.test(tokens[i]!)) tokenTypes[i] = TOKEN_TYPE.byte;
    else if (tokenTypes[i] === TOKEN_TYPE.normal) scores[i] = /^(\u2581){2,}$/.test(tokens[i]!) ? -1e9 : -(i - 259);
  }
  return { model: 'llama', tokens, scores, tokenTypes, unk: 0, bos: 1, eos: 2, addBos: true, addEos: false, addSpacePrefix: true };
}

/** Llama 3 (byte-level BPE, pre "llama-bpe"): <|begin_of_text|> 128000 (BOS, added), <|end_of_text|> 128001. */
export async function llama3Vocab(): Promise<VocabMetadata> {
  const t = await load('llama3-tokenizer-js');
  const tokens = t.vocabById.slice();
  const tokenTypes = new Int32Array(tokens.length).fill(TOKEN_TYPE.normal);
  for (let i = 0; i < tokens.length; i++) if (/^<\|.*\|>$/.test(tokens[i]!) && i >= 128000) tokenTypes[i] = TOKEN_TYPE.control;
  const merges = [...t.merges.keys()];
  const bos = tokens.indexOf('<|begin_of_text|>');
  const eos = tokens.indexOf('<|end_of_text|>');
  if (bos < 0 || eos < 0) throw new Error('llama3-tokenizer-js: no <|begin_of_text|> / <|end_of_text|> token');
  return { model: 'gpt2', pre: 'llama-bpe', tokens, tokenTypes, merges, bos, eos, addBos: true, addEos: false };
}
