// Tokenizer throughput on Moby-Dick (the novelist fixture text): the project BPE of
// models/base.tnm and the core's GGUF-metadata tokenizers on the real Llama 2 (SentencePiece) and
// Llama 3 (byte-level BPE) vocabularies, beside the npm packages those vocabularies come from.
// Rounds are interleaved (each round runs every tokenizer once, the order rotating); MB/s is
// input bytes / median seconds. Every run's ids must equal the first run's, and the core's must
// equal the package's on the same text, or the benchmark fails: a wrong result is not timed.
// llama-tokenizer-js is slow (about 20 kB/s), so it runs on the first REFERENCE_SAMPLE bytes and
// the core's Llama 2 tokenizer is timed on that sample too, for the paired ratio.
//   npm run bench:tokenizer [-- --rounds N --out FILE]
import { availableParallelism, cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { getFixtures } from '../lib/data/fixtures.js';
import { packageRoot } from '../lib/util/package-root.js';
import { Model } from '../lib/model/model.js';
import { VocabTokenizer } from '../lib/tokenizer/vocab.js';
import { llama2Vocab, llama3Vocab } from '../lib/tokenizer/vocab-packages.js';
import { fmtNum, fmtRatio, gitOutput, median, table, writeAtomic } from './report.js';

const SCHEMA = 'ternorm-bench-tokenizer/1';
const REFERENCE_SAMPLE = 128 * 1024;

interface Case {
  name: string;
  input: string;
  bytes: number;
  run: () => ArrayLike<number>;
  sameAs?: string; // the case whose ids this one must reproduce
}

function parse(argv: string[]): { rounds: number; out: string } {
  let rounds = 5;
  let out = join(packageRoot(), 'bench', 'results', 'tokenizer.json');
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--rounds') rounds = Number(argv[++i]);
    else if (a === '--out') out = argv[++i] ?? out;
    else throw new Error(`bench:tokenizer: unknown argument ${a} (expected --rounds N, --out FILE)`);
  }
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`bench:tokenizer: --rounds must be an integer >= 1, got ${rounds}`);
  return { rounds, out };
}

function sameIds(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

async function main(): Promise<number> {
  const o = parse(process.argv.slice(2));
  const loadStart = loadavg();
  const moby = getFixtures().read('novelist');
  const mobyText = Buffer.from(moby).toString('utf8');
  const sampleEnd = moby.indexOf(0x0a, REFERENCE_SAMPLE) + 1;
  const sample = moby.subarray(0, sampleEnd);
  const sampleText = Buffer.from(sample).toString('utf8');
  const bpe = Model.load(join(packageRoot(), 'models', 'base.tnm')).tokenizer!;
  const l2 = new VocabTokenizer(await llama2Vocab());
  const l3 = new VocabTokenizer(await llama3Vocab());
  const l2js = (await import('llama-tokenizer-js')).default as unknown as { encode(s: string, bos: boolean, space: boolean): number[] };
  const l3js = (await import('llama3-tokenizer-js')).default as unknown as { encode(s: string, o: object): number[] };
  const cases: Case[] = [
    { name: 'project BPE (base.tnm), core', input: 'Moby-Dick', bytes: moby.length, run: () => bpe.encode(moby) },
    {
      name: 'Llama 3 BPE, core',
      input: 'Moby-Dick',
      bytes: moby.length,
      run: () => l3.encode(moby, { addSpecial: false, parseSpecial: true }),
    },
    {
      name: 'Llama 3 BPE, llama3-tokenizer-js',
      input: 'Moby-Dick',
      bytes: moby.length,
      run: () => l3js.encode(mobyText, { bos: false, eos: false }),
      sameAs: 'Llama 3 BPE, core',
    },
    { name: 'Llama 2 SentencePiece, core', input: 'Moby-Dick', bytes: moby.length, run: () => l2.encode(moby, { addSpecial: false }) },
    {
      name: 'Llama 2 SentencePiece, core (sample)',
      input: `first ${sample.length} B`,
      bytes: sample.length,
      run: () => l2.encode(sample, { addSpecial: false }),
    },
    {
      name: 'Llama 2 SentencePiece, llama-tokenizer-js (sample)',
      input: `first ${sample.length} B`,
      bytes: sample.length,
      run: () => l2js.encode(sampleText, false, true),
      sameAs: 'Llama 2 SentencePiece, core (sample)',
    },
  ];
  const times = new Map<string, number[]>(cases.map((c) => [c.name, []]));
  const firstIds = new Map<string, ArrayLike<number>>();
  const failures: string[] = [];
  for (let r = 0; r < o.rounds; r++) {
    for (let k = 0; k < cases.length; k++) {
      const c = cases[(k + r) % cases.length]!;
      const t0 = performance.now();
      const ids = c.run();
      times.get(c.name)!.push((performance.now() - t0) / 1000);
      const first = firstIds.get(c.name);
      if (first === undefined) firstIds.set(c.name, ids);
      else if (!sameIds(first, ids)) failures.push(`${c.name}: round ${r} gave other ids than round 0`);
    }
    process.stderr.write(`round ${r + 1}/${o.rounds} done\n`);
  }
  for (const c of cases) {
    if (c.sameAs !== undefined && !sameIds(firstIds.get(c.name)!, firstIds.get(c.sameAs)!))
      failures.push(`${c.name}: ids differ from ${c.sameAs}`);
  }
  const results = cases.map((c) => {
    const t = times.get(c.name)!;
    const mbps = c.bytes / 1e6 / median(t);
    return {
      name: c.name,
      input: c.input,
      bytes: c.bytes,
      tokens: firstIds.get(c.name)!.length,
      seconds: t,
      median_s: median(t),
      mb_per_s: mbps,
    };
  });
  const byName = new Map(results.map((r) => [r.name, r]));
  const ratios = cases
    .filter((c) => c.sameAs !== undefined)
    .map((c) => ({ core: c.sameAs!, reference: c.name, speedup: byName.get(c.name)!.median_s / byName.get(c.sameAs!)!.median_s }));
  const doc = {
    schema: SCHEMA,
    generated_at: new Date().toISOString(),
    machine: {
      cpu_model: cpus()[0]?.model ?? 'unknown',
      hardware_threads: availableParallelism(),
      load_average_start: loadStart,
      load_average_end: loadavg(),
    },
    build: { git_commit: gitOutput(packageRoot(), ['rev-parse', 'HEAD']) ?? null, node: process.version },
    method: {
      rounds: o.rounds,
      statistic: 'MB/s = input bytes / median seconds over the rounds; speedup = reference median / core median on the same input',
      interleaving: 'each round runs every tokenizer once, the starting case rotating by one per round; one thread, one process',
      checks: 'every round reproduces round 0; the core reproduces each package on the same input',
    },
    results,
    ratios,
    failures,
  };
  writeAtomic(o.out, JSON.stringify(doc, null, 1) + '\n');
  process.stdout.write(
    table(
      ['tokenizer', 'input', 'tokens', 'median s', 'MB/s'],
      results.map((r) => [r.name, r.input, String(r.tokens), fmtNum(r.median_s), fmtNum(r.mb_per_s)]),
    ) +
      '\n\n' +
      ratios.map((x) => `  ${x.core} vs ${x.reference}: ${fmtRatio(x.speedup)}`).join('\n') +
      `\n  load average ${loadStart.map((v) => v.toFixed(2)).join(' ')} -> ${doc.machine.load_average_end.map((v) => v.toFixed(2)).join(' ')}; wrote ${o.out}\n`,
  );
  for (const f of failures) process.stderr.write(`bench:tokenizer: FAILED: ${f}\n`);
  return failures.length === 0 ? 0 : 1;
}

try {
  process.exitCode = await main();
} catch (e) {
  process.stderr.write(`bench:tokenizer: ${(e as Error).message}\n`);
  process.exitCode = 1;
}
