// Generation through the typed surface (lib/model/generate.ts over native/model/decode.h): the
// decoder's logits against the full-window forward (via evaluate's per-token NLL), greedy
// generation against a hand-driven decoder, EOS / stop strings / maxTokens / the context limit,
// abort, batched = separate streams, streamed UTF-8 pieces, bad input, and the CLI (flags
// range-checked, streaming, --jsonl; the same seed gives the same tokens on every ISA path and
// thread count).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { cmdGenerate } from '../lib/cli/generate-command.js';
import { Adapter } from '../lib/adapter/adapter.js';
import { encodeAdapter } from '../lib/adapter/codec.js';
import { cpuInfo } from '../lib/kernels.js';
import { Decoder, evaluate, Model, TextStream, type GenerateResult } from '../lib/model/index.js';
import { BpeTokenizer } from '../lib/tokenizer/bpe.js';
import { packageRoot } from '../lib/util/package-root.js';
import { wordCorpusBytes as corpus } from './word-corpus.js';

const dir = mkdtempSync(join(tmpdir(), 'ternorm-generate-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const TEXT = corpus(1, 400);
const TOK = BpeTokenizer.train(TEXT, { vocabSize: 300 });
const TINY = { vocab: 300, dModel: 32, nLayers: 2, nHeads: 2, dFf: 64, context: 32 };
const GQA = { ...TINY, nHeads: 4, nKvHeads: 2, tiedHead: false };
const TOKENS = TOK.encode(TEXT);

function logSoftmax(logits: Float32Array, at: number, vocab: number, id: number): number {
  let max = -Infinity;
  for (let j = 0; j < vocab; j++) max = Math.max(max, logits[at + j]!);
  let z = 0;
  for (let j = 0; j < vocab; j++) z += Math.exp(logits[at + j]! - max);
  return logits[at + id]! - max - Math.log(z);
}

function argmax(logits: Float32Array, vocab: number): number {
  let best = 0;
  for (let j = 1; j < vocab; j++) if (logits[j]! > logits[best]!) best = j;
  return best;
}

async function collect(it: AsyncGenerator<string, GenerateResult>): Promise<{ pieces: string[]; result: GenerateResult }> {
  const pieces: string[] = [];
  for (;;) {
    const n = await it.next();
    if (n.done === true) return { pieces, result: n.value };
    pieces.push(n.value);
  }
}

function gains(model: Model, seed: number): Float32Array {
  const g = new Float32Array(model.nGains);
  let s = seed;
  for (let i = 0; i < g.length; i++) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    g[i] = 0.7 + 0.6 * (s / 2 ** 31);
  }
  return g;
}

describe('decoder logits equal the full-window forward', () => {
  for (const [name, cfg] of [
    ['MHA, tied', TINY],
    ['GQA, untied', GQA],
  ] as const) {
    for (const precision of ['ternary', 'fp32'] as const) {
      it(`${name}, ${precision}: step t's logits give evaluate's NLL at t (with an adapter too)`, async () => {
        const model = Model.create(cfg, 11, TOK);
        const tokens = TOKENS.subarray(100, 100 + cfg.context + 1); // one window
        for (const adapter of [null, gains(model, 3)]) {
          const ev = await evaluate(model, adapter, tokens, { precision, stride: cfg.context });
          const dec = new Decoder(model, { precision });
          dec.start(0, adapter);
          // One token per step, as generation feeds them.
          for (let t = 0; t < cfg.context; t++) {
            const { logits } = await dec.step([{ slot: 0, tokens: [tokens[t]!] }], { wantLogits: true });
            const nll = -logSoftmax(logits!, 0, cfg.vocab, tokens[t + 1]!);
            expect(Math.abs(nll - ev.nll[t]!)).toBeLessThan(2e-4 * Math.max(1, ev.nll[t]!));
          }
          expect(dec.position(0)).toBe(cfg.context);
          // The same prefix as one prompt chunk gives its last token's logits.
          dec.start(0, adapter);
          const { logits } = await dec.step([{ slot: 0, tokens: tokens.subarray(0, 20) }], { wantLogits: true });
          const nll = -logSoftmax(logits!, 0, cfg.vocab, tokens[20]!);
          expect(Math.abs(nll - ev.nll[19]!)).toBeLessThan(2e-4 * Math.max(1, ev.nll[19]!));
        }
      });
    }
  }

  it('an encoded adapter is decoded in the norm kernel: its logits equal its decoded gains', async () => {
    const model = Model.create(TINY, 5, TOK);
    const { encoding: enc } = await encodeAdapter(model, gains(model, 9), 'int8_per_tensor');
    const a = new Decoder(model);
    const b = new Decoder(model);
    a.start(0, enc.blob);
    b.start(0, enc.gains);
    const x = await a.step([{ slot: 0, tokens: TOKENS.subarray(0, 10) }], { wantLogits: true });
    const y = await b.step([{ slot: 0, tokens: TOKENS.subarray(0, 10) }], { wantLogits: true });
    expect(Array.from(x.logits!)).toEqual(Array.from(y.logits!));
  });
});

describe('model.generate', () => {
  const model = Model.create(TINY, 21, TOK);
  const prompt = TOK.encode(corpus(3, 3)).subarray(0, 8);

  it('greedy tokens are the argmax of a hand-driven decoder; the pieces are the text', async () => {
    const { pieces, result } = await collect(model.generate(prompt, { temperature: 0, maxTokens: 12 }));
    expect(result.finishReason).toBe('maxTokens');
    expect(result.tokens.length).toBe(12);
    expect(result.promptTokens).toBe(prompt.length);
    const dec = new Decoder(model);
    dec.start(0, null);
    let feed: ArrayLike<number> = prompt;
    for (let i = 0; i < 12; i++) {
      const { logits } = await dec.step([{ slot: 0, tokens: feed }], { wantLogits: true });
      const next = argmax(logits!, TINY.vocab);
      expect(result.tokens[i]).toBe(next);
      feed = [next];
    }
    expect(pieces.join('')).toBe(result.text);
    expect(result.text).toBe(new TextDecoder().decode(TOK.decode(result.tokens)));
  });

  it('stops at EOS, at a stop string and at maxTokens', async () => {
    const base = (await collect(model.generate(prompt, { temperature: 0.9, seed: 4, maxTokens: 16 }))).result;
    const eos = base.tokens[5]!;
    const firstEos = base.tokens.indexOf(eos);
    const e = (await collect(model.generate(prompt, { temperature: 0.9, seed: 4, maxTokens: 16, eos }))).result;
    expect(e.finishReason).toBe('eos');
    expect(Array.from(e.tokens)).toEqual(Array.from(base.tokens.subarray(0, firstEos)));
    // A stop string taken from the middle of the text: the text ends right before it.
    const full = base.text;
    const stop = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 3);
    const s = await collect(model.generate(prompt, { temperature: 0.9, seed: 4, maxTokens: 16, stop: [stop] }));
    expect(s.result.finishReason).toBe('stop');
    expect(s.result.text).toBe(full.slice(0, full.indexOf(stop)));
    expect(s.pieces.join('')).toBe(s.result.text);
    const m = (await collect(model.generate(prompt, { temperature: 0.9, seed: 4, maxTokens: 3 }))).result;
    expect(Array.from(m.tokens)).toEqual(Array.from(base.tokens.subarray(0, 3)));
    expect(m.finishReason).toBe('maxTokens');
  });

  it('a GGUF model generates as its .tnm does (a lossless f32 export)', async () => {
    const gguf = Model.load(model.exportGguf('f32')!);
    expect(gguf.info).toMatch(/^gguf/);
    const o = { temperature: 0.8, seed: 6, maxTokens: 10, eos: null };
    const a = (await collect(model.generate(prompt, o))).result;
    const b = (await collect(gguf.generate(prompt, o))).result;
    expect(Array.from(b.tokens)).toEqual(Array.from(a.tokens));
    expect(b.text).toBe(a.text);
  });

  it('same seed, same tokens; another seed, others', async () => {
    const o = { temperature: 1.2, topK: 50, topP: 0.95, minP: 0.01, maxTokens: 20 };
    const a = (await collect(model.generate(prompt, { ...o, seed: 77 }))).result;
    const b = (await collect(model.generate(prompt, { ...o, seed: 77 }))).result;
    const c = (await collect(model.generate(prompt, { ...o, seed: 78 }))).result;
    expect(Array.from(a.tokens)).toEqual(Array.from(b.tokens));
    expect(Array.from(a.tokens)).not.toEqual(Array.from(c.tokens));
  });

  it('an abort ends the stream before the next step; a pre-aborted signal starts nothing', async () => {
    const ac = new AbortController();
    const seen: string[] = [];
    await expect(
      (async () => {
        for await (const piece of model.generate(prompt, { temperature: 1.5, seed: 1, maxTokens: 30, signal: ac.signal })) {
          seen.push(piece);
          ac.abort();
        }
      })(),
    ).rejects.toThrow(/abort/i);
    expect(seen.length).toBe(1);
    await expect(collect(model.generate(prompt, { signal: AbortSignal.abort() }))).rejects.toThrow(/abort/i);
    // The model is free again afterwards.
    expect((await collect(model.generate(prompt, { maxTokens: 2 }))).result.tokens.length).toBe(2);
  });

  it('refuses a prompt past the context and ends at the context limit', async () => {
    const long = TOKENS.subarray(0, TINY.context + 1);
    await expect(collect(model.generate(long))).rejects.toThrow(
      /33 tokens, more than the model's context of 32 \(the context limit is refused/,
    );
    const r = (await collect(model.generate(TOKENS.subarray(0, 30), { maxTokens: 10 }))).result;
    expect(r.finishReason).toBe('context');
    expect(r.tokens.length).toBe(3); // fed at positions 30, 31; the third has no position left
    const dec = new Decoder(model);
    dec.start(0, null);
    await dec.step([{ slot: 0, tokens: TOKENS.subarray(0, 32) }]);
    await expect(dec.step([{ slot: 0, tokens: [1] }])).rejects.toThrow(/holds 32 tokens; 1 more would pass the context of 32/);
  });

  it('bad input: one-line errors, nothing changed', async () => {
    const bad = Int32Array.of(1, 2, 300);
    await expect(collect(model.generate(bad))).rejects.toThrow(/token 2 is 300, expected an id in \[0, 300\)/);
    await expect(collect(model.generate(prompt, { temperature: NaN }))).rejects.toThrow(RangeError);
    await expect(collect(model.generate(prompt, { temperature: NaN }))).rejects.toThrow(/temperature must be a number in \[0, 3\.4e38\]/);
    await expect(collect(model.generate(prompt, { topP: 0 }))).rejects.toThrow(/topP must be a number in \(0, 1\]/);
    await expect(collect(model.generate(prompt, { maxTokens: 0 }))).rejects.toThrow(/maxTokens must be an integer in 1\.\.65536/);
    await expect(collect(model.generate(prompt, { adapter: new Float32Array(5) }))).rejects.toThrow(
      /adapter gains must have n_norms \* d_model = 160 elements, got 5/,
    );
    await expect(collect(model.generate(prompt, { adapter: new Uint8Array([1, 2, 3]) }))).rejects.toThrow(
      /adapter|record|truncated|bytes/i,
    );
    await expect(collect(model.generate(prompt, { stop: [''] }))).rejects.toThrow(/stop must be an array of non-empty strings/);
    // The core's own check of ids in a step: rejected, the cache unchanged.
    const dec = new Decoder(model);
    dec.start(0, null);
    await dec.step([{ slot: 0, tokens: [1, 2] }]);
    await expect(dec.step([{ slot: 0, tokens: Int32Array.of(3, -1) }])).rejects.toThrow(
      /token id -1 at index 1 is out of range \[0, 300\)/,
    );
    await expect(dec.step([{ slot: 0, tokens: [400] }])).rejects.toThrow(/token 0 is 400/);
    expect(dec.position(0)).toBe(2);
    await expect(dec.step([{ slot: 1, tokens: [1] }])).rejects.toThrow(/slot 1 outside \[0, 1\)/);
  });
});

describe('model.generateBatch', () => {
  const model = Model.create(GQA, 3, TOK);
  const requests = Array.from({ length: 10 }, (_, i) => ({
    prompt: TOKENS.subarray(i * 7, i * 7 + 3 + (i % 5)),
    seed: 100 + i,
    temperature: i % 3 === 0 ? 0 : 0.8 + 0.1 * i,
    topK: i % 2 === 0 ? 0 : 40,
    maxTokens: 6 + i,
    adapter: i % 2 === 0 ? null : gains(model, i),
  }));

  for (const k of [3, 10]) {
    it(`${k} requests in batched steps give each request the tokens it gets alone`, async () => {
      const pieces: string[][] = Array.from({ length: k }, () => []);
      const batch = await model.generateBatch(requests.slice(0, k), { onPiece: (i, p) => pieces[i]!.push(p), rows: 16 });
      for (let i = 0; i < k; i++) {
        const { prompt, ...o } = requests[i]!;
        const alone = (await collect(model.generate(prompt, o))).result;
        expect(Array.from(batch[i]!.tokens)).toEqual(Array.from(alone.tokens));
        expect(batch[i]!.text).toBe(alone.text);
        expect(pieces[i]!.join('')).toBe(alone.text);
      }
    });
  }

  it('a batch of three entries gives the logits each gets alone, bit for bit', async () => {
    const dec = new Decoder(model, { sequences: 3 });
    const one = new Decoder(model);
    const entries = [0, 1, 2].map((s) => ({ slot: s, tokens: TOKENS.subarray(s * 5, s * 5 + 4) }));
    [0, 1, 2].forEach((s) => dec.start(s, s === 1 ? gains(model, 7) : null));
    const { logits } = await dec.step(entries, { wantLogits: true });
    for (const s of [0, 1, 2]) {
      one.start(0, s === 1 ? gains(model, 7) : null);
      const alone = await one.step([{ slot: 0, tokens: entries[s]!.tokens }], { wantLogits: true });
      expect(Array.from(logits!.subarray(s * GQA.vocab, (s + 1) * GQA.vocab))).toEqual(Array.from(alone.logits!));
    }
  });
});

describe('streamed text', () => {
  const BYTES = BpeTokenizer.train(TEXT, { vocabSize: 256 }); // byte tokens only: id = byte

  it('a character split across tokens comes out whole, once its last byte arrives', () => {
    const text = 'h\u00e9llo \u{1f600}!';
    const bytes = Buffer.from(text, 'utf8');
    const s = new TextStream(BYTES, 32, []);
    const pieces = Array.from(bytes, (b) => s.push(b));
    pieces.push(s.end());
    expect(pieces.join('')).toBe(text);
    expect(pieces.every((p) => !p.includes('\ufffd'))).toBe(true);
    expect(pieces[1]).toBe(''); // the first byte of é
    expect(pieces[2]).toBe('\u00e9');
    expect(pieces.slice(7, 10)).toEqual(['', '', '']); // the emoji's first three bytes
    expect(pieces[10]).toBe('\u{1f600}');
  });

  it('text that may begin a stop string is held back until it cannot', () => {
    const s = new TextStream(BYTES, 32, ['lo!', 'xyz']);
    const out = Array.from(Buffer.from('hello lo', 'utf8'), (b) => s.push(b));
    expect(out.join('')).toBe('hello '); // "lo" could start "lo!"
    expect(s.push(0x3f)).toBe('lo?');
    expect(Array.from(Buffer.from('lo!tail', 'utf8'), (b) => s.push(b)).join('')).toBe('');
    expect(s.stopped).toBe(true);
    expect(s.all).toBe('hello lo?');
  });

  it('a token keeps the leading space its tokenizer drops only at the start of a text; each tokenizer its own bytes', () => {
    // SentencePiece-like: decode drops one leading space of the whole text.
    const spaced = (pieces: string[]) => ({
      vocabSize: pieces.length,
      encode: () => new Int32Array(0),
      decode: (ids: ArrayLike<number>) =>
        Buffer.from(
          Array.from(ids, (i) => pieces[i]!)
            .join('')
            .replace(/^ /, ''),
          'utf8',
        ),
    });
    const a = spaced([' hello', ' world', '!', ' x']);
    const b = spaced([' ciao', ' mondo', '?', ' y']);
    for (const [tok, want] of [
      [a, ' hello world! x hello'],
      [b, ' ciao mondo? y ciao'],
      [a, ' hello world! x hello'],
    ] as const) {
      const s = new TextStream(tok, 3, []);
      const text = [0, 1, 2, 3, 0].map((id) => s.push(id)).join('') + s.end();
      expect(text).toBe(want);
    }
  });

  it('an unfinished character at the end becomes U+FFFD', () => {
    const s = new TextStream(BYTES, 32, []);
    expect(s.push(0xe2)).toBe('');
    expect(s.end()).toBe('\ufffd');
  });

  it('random byte tokens: the pieces are the whole decoded text', async () => {
    const model = Model.create({ ...TINY, vocab: 256 }, 2, BYTES);
    const { pieces, result } = await collect(model.generate(Int32Array.of(104, 195), { temperature: 3, seed: 9, maxTokens: 30 }));
    expect(pieces.join('')).toBe(result.text);
    expect(result.text).toBe(new TextDecoder().decode(Uint8Array.from(result.tokens)));
  });
});

describe('ternorm generate (CLI)', () => {
  const root = packageRoot();
  const main = join(root, 'dist', 'lib', 'cli', 'main.js');
  const modelPath = join(dir, 'g.tnm');
  const model = Model.create(TINY, 8, TOK);
  model.save(modelPath);
  const adapterPath = join(dir, 'u.adapter');
  new Adapter(gains(model, 5)).save(model, adapterPath);

  beforeAll(() => {
    execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], {
      stdio: 'inherit',
    });
  });

  function capture() {
    let out = '';
    let err = '';
    const io = {
      stdout: { write: (s: string) => ((out += s), true) } as unknown as NodeJS.WritableStream,
      stderr: { write: (s: string) => ((err += s), true) } as unknown as NodeJS.WriteStream,
    };
    return { io, out: () => out, err: () => err };
  }

  it('range-checks every numeric flag before reading the model (exit 2)', () => {
    for (const [flag, value, msg] of [
      ['--temperature', 'nan', /--temperature must be a number in \[0, 3\.4e38\]/],
      ['--top-p', '0', /--top-p must be a number in \(0, 1\]/],
      ['--min-p', '2', /--min-p must be a number in \[0, 1\]/],
      ['--top-k', '-1', /--top-k must be an integer in 0\.\.16777216/],
      ['--max-tokens', '0', /--max-tokens must be an integer in 1\.\.65536/],
      ['--seed', '1.5', /--seed must be an integer/],
      ['--rows', '70000', /--rows must be an integer in 1\.\.65536/],
    ] as const) {
      const r = spawnSync(process.execPath, [main, 'generate', '--model', 'missing.tnm', '--prompt', 'x', `${flag}=${value}`], {
        encoding: 'utf8',
      });
      expect(r.status).toBe(2);
      expect(r.stderr.split('\n')[0]).toMatch(msg);
    }
  });

  it('streams the text to stdout; --json gives the result', async () => {
    const c = capture();
    expect(
      await cmdGenerate(['--model', modelPath, '--adapter', adapterPath, '--prompt', 'the ', '--max-tokens', '8', '--seed', '3'], c.io),
    ).toBe(0);
    const j = capture();
    const args = ['--model', modelPath, '--adapter', adapterPath, '--prompt', 'the ', '--max-tokens', '8', '--seed', '3', '--json'];
    expect(await cmdGenerate(args, j.io)).toBe(0);
    const r = JSON.parse(j.out()) as { text: string; tokens: number[]; finishReason: string };
    expect(r.tokens.length).toBe(8);
    expect(c.out()).toBe(`${r.text}\n`);
    expect(c.err()).toMatch(/\[8 tokens, maxTokens, [\d.]+ tok\/s\]/);
  });

  it('--jsonl: a batch from stdin, one result line per request; a bad line is an error line (exit 1)', async () => {
    const lines = [
      JSON.stringify({ prompt: 'the ', seed: 3, maxTokens: 8, adapter: adapterPath }),
      JSON.stringify({ prompt: 'a cat ', maxTokens: 5, temperature: 0 }),
      '{"prompt": 5}',
      JSON.stringify({ prompt: 'x', temperature: -1 }),
    ];
    const c = capture();
    expect(await cmdGenerate(['--model', modelPath, '--jsonl'], c.io, [lines.join('\n')])).toBe(1);
    const out = c
      .out()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(out.length).toBe(4);
    const j = capture();
    await cmdGenerate(
      ['--model', modelPath, '--adapter', adapterPath, '--prompt', 'the ', '--max-tokens', '8', '--seed', '3', '--json'],
      j.io,
    );
    expect(out[0]).toEqual({ line: 1, ...(JSON.parse(j.out()) as object) });
    expect(out[1]!.line).toBe(2);
    expect((out[1]!.tokens as number[]).length).toBe(5);
    expect(out[2]).toEqual({ line: 3, error: '"prompt" must be a string' });
    expect(out[3]!.line).toBe(4);
    expect(out[3]!.error).toMatch(/temperature must be a number in \[0, 3\.4e38\], got -1/);
  });

  it('the same seed gives the same tokens on every ISA path and thread count', () => {
    const info = cpuInfo();
    const runs: string[] = [];
    const cli = (isa: string, ...args: string[]) => {
      const r = spawnSync(process.execPath, [main, 'generate', '--model', modelPath, ...args], {
        encoding: 'utf8',
        env: { ...process.env, TERNORM_ISA: isa },
      });
      expect(r.status, r.stderr).toBe(0);
      return r.stdout;
    };
    for (const isa of info.supportedIsas) {
      const outs = [
        cli(isa, '--adapter', adapterPath, '--prompt', 'the cat ', '--max-tokens', '24'),
        cli(isa, '--prompt', 'the cat ', '--max-tokens', '24', '--temperature', '0.9', '--top-p', '0.9', '--seed', '12'),
      ];
      for (const threads of [1, Math.min(2, info.threads)]) {
        const j = cli(
          isa,
          '--prompt',
          'the ',
          '--max-tokens',
          '24',
          '--seed',
          '5',
          '--top-k',
          '30',
          '--threads',
          String(threads),
          '--json',
        );
        runs.push(JSON.stringify([...outs, (JSON.parse(j) as { tokens: number[] }).tokens]));
      }
    }
    expect(runs.length).toBeGreaterThanOrEqual(2);
    expect(new Set(runs).size).toBe(1);
  });
});
