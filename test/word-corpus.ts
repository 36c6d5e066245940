// Seeded synthetic text for the tests that train tiny tokenizers and models: sentences of 4..11
// words drawn from a small vocabulary, so a 300-token BPE has enough repeated pairs to learn.
import { SplitMix64 } from '../lib/model/index.js';

export const SHIP_WORDS = [
  'the',
  'ship',
  'sailed',
  'into',
  'a',
  'grey',
  'morning',
  'while',
  'whales',
  'sang',
  'under',
  'cold',
  'water',
  'and',
  'men',
  'watched',
];

/** `sentences` sentences; with `lineEvery` a newline after every lineEvery-th (texts split at line ends). */
export function wordCorpus(seed: number, sentences: number, words: readonly string[] = SHIP_WORDS, lineEvery = 0): string {
  const rng = new SplitMix64(seed);
  const out: string[] = [];
  for (let s = 0; s < sentences; s++) {
    const n = 4 + rng.below(8);
    const w: string[] = [];
    for (let i = 0; i < n; i++) w.push(words[rng.below(words.length)]!);
    out.push(w.join(' ') + (lineEvery > 0 && s % lineEvery === lineEvery - 1 ? '.\n' : '.'));
  }
  return out.join(' ');
}

export const wordCorpusBytes = (seed: number, sentences: number, words?: readonly string[]): Uint8Array =>
  new TextEncoder().encode(wordCorpus(seed, sentences, words));
