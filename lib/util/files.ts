// Reading and writing files: atomic replacement (temp file + fsync + rename) that refuses to replace
// anything but a regular file, and bounded reads of text inputs that refuse devices and FIFOs. Every
// error names the file. The C++ side has the same rules (native/io/container.cpp).

import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
  type Stats,
} from 'node:fs';

/**
 * The largest text a command reads (`evaluate --text`, `train-adapter --text`, `bet --user`,
 * `train-base --train-text`, ...): 256 MiB. The tokenizer holds the text and its token ids (4 bytes
 * each) in memory at once, so a text this large already needs over a gigabyte; anything larger is a
 * mistake (or /dev/zero), refused before it is read.
 */
export const MAX_TEXT_BYTES = 256 * 1024 * 1024;

/** What a non-regular file is, for messages. */
function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** "no space left on device (ENOSPC)" from a Node system error, else its message. */
export function systemReason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.code === 'string' && typeof e.message === 'string') {
    const text = e.message.replace(new RegExp(`^${e.code}: `), '').replace(/, \w+( '.*')?( -> '.*')?$/, '');
    return e.code === 'ENOENT' ? 'no such file or directory' : `${text} (${e.code})`;
  }
  return e instanceof Error ? e.message : String(err);
}

/**
 * Throws if `file` exists and is not a regular file (a device, FIFO, socket, directory, or a symlink
 * to one): renaming a regular file over it would replace, say, /dev/null. A missing file (or a
 * dangling symlink) is a new file.
 */
export function checkReplaceable(file: string): void {
  let st: Stats;
  try {
    st = statSync(file);
  } catch {
    return;
  }
  if (!st.isFile()) throw new Error(`cannot write ${file}: it exists and is ${kindOf(st)}, not a regular file`);
}

/** Test seam: how writeFileAtomic opens its temp file (tests open /dev/full to get ENOSPC). */
export const fileSystemSeam = {
  openTemp: (tmp: string): number => openSync(tmp, 'wx', 0o666),
};

/**
 * Writes `data` to `file` atomically: a temp file in the same folder, fsync, rename. A `file` that
 * exists and is not a regular file is refused; on any error the temp file is removed, `file` is as it
 * was, and the message names `file` and the reason (e.g. "no space left on device (ENOSPC)").
 */
export function writeFileAtomic(file: string, data: Uint8Array | string): void {
  checkReplaceable(file);
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  let fd: number | null = null;
  try {
    fd = fileSystemSeam.openTemp(tmp);
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
    const f = fd;
    fd = null;
    closeSync(f);
    checkReplaceable(file); // again: the target may have changed while we wrote
    renameSync(tmp, file);
  } catch (err) {
    if (fd !== null) closeSync(fd);
    rmSync(tmp, { force: true });
    const msg = (err as Error).message ?? '';
    if (msg.startsWith(`cannot write ${file}:`)) throw err;
    throw new Error(`cannot write ${file}: ${systemReason(err)}`, { cause: err });
  }
}

/**
 * Reads a text input: refuses what is not a regular file (a device such as /dev/zero, a FIFO, a
 * directory), a file larger than `maxBytes` (default MAX_TEXT_BYTES) and an empty file; the reads
 * stop at the size taken when the file was opened. `what` names the input in messages ("--text").
 */
export function readTextFile(path: string, what = '', maxBytes = MAX_TEXT_BYTES): Buffer {
  const name = what === '' ? path : `${what} ${path}`;
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw new Error(`cannot read ${name}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : systemReason(err)}`, {
      cause: err,
    });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error(`cannot read ${name}: it is ${kindOf(st)}, not a regular file`);
    if (st.size > maxBytes)
      throw new Error(`${name} is ${st.size} bytes, above the limit of ${maxBytes} bytes for a text (MAX_TEXT_BYTES)`);
    const buf = Buffer.allocUnsafe(st.size);
    let got = 0;
    while (got < st.size) {
      const n = readSync(fd, buf, got, st.size - got, null);
      if (n === 0) break; // the file shrank while we read
      got += n;
    }
    if (got === 0) throw new Error(`${name} is empty`);
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}
