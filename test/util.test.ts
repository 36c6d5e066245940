// lib/util: bounded text reads, atomic writes that refuse special files, the results lock, and the
// escaping of text for Markdown and terminals.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  lstatSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { fileSystemSeam, MAX_TEXT_BYTES, readTextFile, writeFileAtomic } from '../lib/util/files.js';
import { FileLock, LockedError } from '../lib/util/lock.js';
import { checkUserName } from '../lib/bet/results-format.js';
import { USER_NAME_PATTERN } from '../lib/bet/results-types.js';
import { markdownText, terminalText } from '../lib/util/text.js';

const dir = mkdtempSync(join(tmpdir(), 'ternorm-util-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('readTextFile', () => {
  it('reads a regular file; refuses devices, FIFOs (without waiting for a writer), directories, empty and oversized files', () => {
    const p = join(dir, 'a.txt');
    writeFileSync(p, 'hello');
    expect(readTextFile(p, '--text').toString()).toBe('hello');
    expect(() => readTextFile('/dev/zero', '--text')).toThrow(
      /^cannot read --text \/dev\/zero: it is a character device, not a regular file$/,
    );
    const fifo = join(dir, 'f');
    execFileSync('mkfifo', [fifo]);
    expect(() => readTextFile(fifo)).toThrow(/it is a FIFO, not a regular file/);
    expect(() => readTextFile(dir)).toThrow(/it is a directory, not a regular file/);
    expect(() => readTextFile(join(dir, 'none.txt'), '--text')).toThrow(/cannot read --text .*none\.txt: no such file/);
    writeFileSync(join(dir, 'empty.txt'), '');
    expect(() => readTextFile(join(dir, 'empty.txt'), '--text')).toThrow(/empty\.txt is empty/);
    const huge = join(dir, 'huge.txt');
    closeSync(openSync(huge, 'w'));
    truncateSync(huge, MAX_TEXT_BYTES + 1); // sparse
    expect(() => readTextFile(huge)).toThrow(
      `${huge} is ${MAX_TEXT_BYTES + 1} bytes, above the limit of ${MAX_TEXT_BYTES} bytes for a text (MAX_TEXT_BYTES)`,
    );
    expect(() => readTextFile(p, '', 4)).toThrow(/is 5 bytes, above the limit of 4 bytes/);
  });
});

describe('writeFileAtomic', () => {
  it('replaces a regular file (and a symlink to one), refuses special files, names the file on ENOSPC', () => {
    const d = mkdtempSync(join(dir, 'w-'));
    const p = join(d, 'out.json');
    writeFileAtomic(p, 'one');
    writeFileAtomic(p, 'two');
    expect(readFileSync(p, 'utf8')).toBe('two');
    const fifo = join(d, 'fifo');
    execFileSync('mkfifo', [fifo]);
    expect(() => writeFileAtomic(fifo, 'x')).toThrow(`cannot write ${fifo}: it exists and is a FIFO, not a regular file`);
    const link = join(d, 'null');
    symlinkSync('/dev/null', link);
    expect(() => writeFileAtomic(link, 'x')).toThrow(/it exists and is a character device, not a regular file/);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    const saved = fileSystemSeam.openTemp;
    fileSystemSeam.openTemp = () => openSync('/dev/full', 'w');
    try {
      expect(() => writeFileAtomic(p, 'three')).toThrow(`cannot write ${p}: no space left on device (ENOSPC)`);
    } finally {
      fileSystemSeam.openTemp = saved;
    }
    expect(readFileSync(p, 'utf8')).toBe('two');
    expect(readdirSync(d).sort()).toEqual(['fifo', 'null', 'out.json']);
    expect(() => writeFileAtomic(join(d, 'no', 'dir', 'x'), 'x')).toThrow(/cannot write .*no\/dir\/x: no such file or directory/);
  });
});

describe('FileLock', () => {
  it('is exclusive while held, released by its owner, and taken over only from a dead process on this host', () => {
    const target = join(dir, 'results.json');
    const a = FileLock.acquire(target);
    const owner = JSON.parse(readFileSync(`${target}.lock`, 'utf8'));
    expect(owner).toEqual({ pid: process.pid, host: hostname(), startedAt: a.owner.startedAt });
    expect(() => FileLock.acquire(target)).toThrow(LockedError);
    expect(() => FileLock.acquire(target)).toThrow(new RegExp(`results\\.json is being written by another run \\(pid ${process.pid} on `));
    a.release();
    a.release();
    expect(existsSync(`${target}.lock`)).toBe(false);

    const dead = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
    writeFileSync(`${target}.lock`, JSON.stringify({ pid: dead, host: hostname(), startedAt: '2025-01-01T00:00:00.000Z' }));
    const log: string[] = [];
    const b = FileLock.acquire(target, (l) => log.push(l));
    expect(log).toEqual([
      `taking over the stale lock ${target}.lock: process ${dead} on ${hostname()} (started 2025-01-01T00:00:00.000Z) is no longer running`,
    ]);
    b.release();

    // another host's lock is never judged stale; a lock file naming no owner is not taken either
    writeFileSync(`${target}.lock`, JSON.stringify({ pid: dead, host: `not-${hostname()}`, startedAt: '2025-01-01T00:00:00.000Z' }));
    expect(() => FileLock.acquire(target)).toThrow(/being written by another run \(pid \d+ on not-/);
    writeFileSync(`${target}.lock`, '');
    expect(() => FileLock.acquire(target)).toThrow(/locked by .*results\.json\.lock, which names no owner; if no ternorm run is writing/);
    rmSync(`${target}.lock`);
  });
});

describe('names and escaping', () => {
  it('one pattern for user names', () => {
    for (const ok of ['novelist', 'a', 'A-1_b.c', 'x'.repeat(64)]) expect(USER_NAME_PATTERN.test(ok)).toBe(true);
    for (const bad of ['', '-a', '.a', 'a b', 'a/b', 'x'.repeat(65), 'ä', 'a\n'])
      expect(() => checkUserName(bad, 'here')).toThrow(/^here: user name .* must be 1-64 letters/);
  });

  it('Markdown: no tag, entity, line break, table border, emphasis or link survives; words keep their underscores', () => {
    expect(markdownText('<img src=x onerror=alert(1)>')).toBe('&lt;img src=x onerror=alert(1)&gt;');
    expect(markdownText('a\nb\r\n# c')).toBe(String.raw`a\\x0ab\\x0d\\x0a# c`);
    expect(markdownText('| *x* [l](u) `c` ~~s~~ \\')).toBe(String.raw`\| \*x\* \[l\](u) \`c\` \~\~s\~\~ \\`);
    expect(markdownText('&amp;')).toBe('&amp;amp;');
    expect(markdownText('int8_per_tensor _em_')).toBe(String.raw`int8_per_tensor \_em\_`);
  });

  it('terminal: escape sequences and other controls are shown, not sent', () => {
    expect(terminalText('a\u001b]0;pwned\u0007b\u009b31m')).toBe(String.raw`a\x1b]0;pwned\x07b\x9b31m`);
    expect(terminalText('x\ny', true)).toBe('x\ny');
    expect(terminalText('x\ny')).toBe(String.raw`x\x0ay`);
    expect(terminalText('rtl\u202eevil')).toBe(String.raw`rtl\u202eevil`);
  });
});
