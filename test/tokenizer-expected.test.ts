// The core's project BPE against ids recorded from the TypeScript implementation it replaced
// (test/tokenizer-expected.json was written by running that implementation on the fixture
// texts with models/base.tnm's tokenizer, and by training two tokenizers with it).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { getFixtures, type TextName } from '../lib/data/fixtures.js';
import { Model } from '../lib/model/model.js';
import { BpeTokenizer } from '../lib/tokenizer/bpe.js';

interface Expected {
  tokenizerSha256: string;
  texts: Record<TextName, { bytes: number; textSha256: string; tokens: number; idsSha256: string }>;
  trained: Record<string, { serializedSha256: string }>;
}

const expected = JSON.parse(readFileSync(new URL('./tokenizer-expected.json', import.meta.url), 'utf8')) as Expected;
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const idsSha = (ids: Int32Array): string => sha(new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength));

describe('project BPE in the core reproduces the pre-port TypeScript ids', () => {
  const fx = getFixtures();
  const tok = Model.load(new URL('../models/base.tnm', import.meta.url).pathname).tokenizer as BpeTokenizer;

  it('keeps models/base.tnm tokenizer bytes', () => {
    expect(sha(tok.serialize())).toBe(expected.tokenizerSha256);
  });

  for (const name of Object.keys(expected.texts) as TextName[]) {
    it(`encodes the ${name} fixture text to the recorded ids`, () => {
      const e = expected.texts[name];
      const text = fx.read(name);
      expect(sha(text)).toBe(e.textSha256);
      const ids = tok.encode(text);
      expect(ids.length).toBe(e.tokens);
      expect(idsSha(ids)).toBe(e.idsSha256);
      if (name === 'novelist') expect(Buffer.from(tok.decode(ids)).equals(Buffer.from(text))).toBe(true);
    });
  }

  it('trains the recorded tokenizers', () => {
    for (const [key, e] of Object.entries(expected.trained)) {
      const [name, bytes, vocab] = key.split(':') as [TextName, string, string];
      const t = BpeTokenizer.train(fx.read(name).subarray(0, Number(bytes)), { vocabSize: Number(vocab) });
      expect(sha(t.serialize()), key).toBe(e.serializedSha256);
    }
  });
});
