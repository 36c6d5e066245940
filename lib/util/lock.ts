// An exclusive lock on a file that a long run rewrites (the bet's results): `<file>.lock`, created
// with O_EXCL and holding its owner's pid, host and start time. A second run is refused with a
// message naming the owner. A lock left by a run that died (its pid no longer runs on this host) is
// taken over, with a message; a lock of another host is never judged stale.

import { closeSync, fsyncSync, linkSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';

import { systemReason } from './files.js';

export interface LockOwner {
  pid: number;
  host: string;
  startedAt: string;
}

/** Another run holds the lock. */
export class LockedError extends Error {}

function readOwner(path: string): LockOwner | null {
  try {
    const o = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockOwner>;
    if (Number.isSafeInteger(o.pid) && typeof o.host === 'string' && typeof o.startedAt === 'string') return o as LockOwner;
  } catch {
    // missing, half-written or not ours: no owner
  }
  return null;
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const same = (a: LockOwner | null, b: LockOwner): boolean =>
  a !== null && a.pid === b.pid && a.host === b.host && a.startedAt === b.startedAt;

export class FileLock {
  private held = true;

  private constructor(
    /** The lock file. */
    readonly path: string,
    readonly owner: LockOwner,
  ) {}

  /**
   * Locks `target` (creates `<target>.lock`). Throws LockedError if another live run holds it;
   * `onLog` hears about a stale lock taken over.
   */
  static acquire(target: string, onLog?: (line: string) => void): FileLock {
    const path = `${target}.lock`;
    const owner: LockOwner = { pid: process.pid, host: hostname(), startedAt: new Date().toISOString() };
    for (let attempt = 0; ; attempt++) {
      let fd: number;
      try {
        fd = openSync(path, 'wx', 0o644);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST')
          throw new Error(`cannot create the lock file ${path}: ${systemReason(err)}`, { cause: err });
        const held = readOwner(path);
        if (held === null) {
          throw new LockedError(
            `${target} is locked by ${path}, which names no owner; if no ternorm run is writing ${target}, remove ${path}`,
          );
        }
        if (held.host !== owner.host || running(held.pid) || attempt > 0) {
          throw new LockedError(
            `${target} is being written by another run (pid ${held.pid} on ${held.host}, since ${held.startedAt}); wait for it to finish or choose another --out`,
          );
        }
        // Stale: move it aside (atomic), check that what moved is the lock judged stale (another run may
        // have taken it over in between; then put that one back), and try again.
        const aside = `${path}.stale-${process.pid}`;
        try {
          renameSync(path, aside);
        } catch {
          continue;
        }
        if (!same(readOwner(aside), held)) {
          try {
            linkSync(aside, path);
          } catch {
            // a third run locked meanwhile; ours will fail on the next attempt
          }
        } else {
          onLog?.(
            `taking over the stale lock ${path}: process ${held.pid} on ${held.host} (started ${held.startedAt}) is no longer running`,
          );
        }
        rmSync(aside, { force: true });
        continue;
      }
      try {
        writeSync(fd, `${JSON.stringify(owner)}\n`);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      return new FileLock(path, owner);
    }
  }

  /** Removes the lock file if it is still ours. Idempotent. */
  release(): void {
    if (!this.held) return;
    this.held = false;
    if (same(readOwner(this.path), this.owner)) rmSync(this.path, { force: true });
  }
}
