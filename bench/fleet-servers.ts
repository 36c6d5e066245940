// Real Redis and PostgreSQL servers for the fleet tests and bench/fleet.ts, each on a loopback port
// with its files in a temporary folder: redis-server (by default with an append-only file fsynced on
// every write, so a restart keeps the queue) and a PostgreSQL cluster made by initdb and run by
// pg_ctl (its unix socket in the folder too; by default without fsync, which tests do not need). PostgreSQL refuses to run as root: as root, its commands run as the `postgres` user (which
// Debian's package creates) through runuser. Missing binaries: serversMissing() says which.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

function which(cmd: string): string | null {
  for (const d of (process.env.PATH ?? '').split(':')) if (d !== '' && existsSync(join(d, cmd))) return join(d, cmd);
  return null;
}

/** The newest Debian PostgreSQL's bin folder (/usr/lib/postgresql/<ver>/bin), else initdb on PATH. */
function pgBin(): string | null {
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const vers = readdirSync(root)
      .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a));
    if (vers.length > 0) return join(root, vers[0]!, 'bin');
  }
  const initdb = which('initdb');
  return initdb === null ? null : join(initdb, '..');
}

const asRoot = userInfo().uid === 0;

/** Why the servers cannot run here, or null. */
export function serversMissing(): string | null {
  const missing: string[] = [];
  if (which('redis-server') === null) missing.push('redis-server (Debian package redis-server)');
  if (pgBin() === null) missing.push('initdb/pg_ctl (Debian package postgresql)');
  if (asRoot && which('runuser') === null) missing.push('runuser (to run PostgreSQL as the postgres user)');
  return missing.length === 0 ? null : `not installed: ${missing.join(', ')}`;
}

/** The folder `dir`, made if missing, or null for none. */
function keptDir(dir: string | undefined): string | null {
  if (dir === undefined) return null;
  mkdirSync(dir, { recursive: true });
  return dir;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

async function waitFor(what: string, ok: () => Promise<boolean>, seconds = 30): Promise<void> {
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not come up in ${seconds} s`);
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    import('node:net').then(({ connect }) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
  });
}

export class RedisServer {
  private proc: ChildProcess | null = null;
  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly persist: boolean,
  ) {}

  /** persist false: Redis's in-memory default (no append-only file). dir: a folder kept across runs
   * (its append-only file is replayed), else a new temporary one. */
  static async start(o: { persist?: boolean; dir?: string } = {}): Promise<RedisServer> {
    const r = new RedisServer(await freePort(), keptDir(o.dir) ?? mkdtempSync(join(tmpdir(), 'ternorm-redis-')), o.persist ?? true);
    await r.start();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    // prettier-ignore
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--dir', this.dir, ...(this.persist ? ['--appendonly', 'yes', '--appendfsync', 'always'] : [])];
    this.proc = spawn(which('redis-server')!, args, { stdio: 'ignore' });
    await waitFor('redis-server', () => portOpen(this.port));
  }

  /** kill -9: a crash; the append-only file holds every acknowledged write. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (p === null) return;
    this.proc = null;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await gone;
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export class PostgresServer {
  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly bin: string,
    private readonly fsync: boolean,
  ) {}

  /** fsync true: PostgreSQL's durable default (commits wait for the disk). dir: a folder kept across
   * runs (an existing cluster in it is started again, not re-created), else a new temporary one. */
  static async start(o: { fsync?: boolean; dir?: string } = {}): Promise<PostgresServer> {
    const dir = keptDir(o.dir) ?? mkdtempSync(join(tmpdir(), 'ternorm-pg-'));
    const s = new PostgresServer(await freePort(), dir, pgBin()!, o.fsync ?? false);
    if (existsSync(join(dir, 'data', 'PG_VERSION'))) {
      // a server left running on these files by a killed run is stopped first (it listens on another port)
      if (existsSync(join(dir, 'data', 'postmaster.pid'))) s.run('pg_ctl', ['-D', join(dir, 'data'), '-m', 'fast', '-w', 'stop'], true);
      await s.start();
      return s;
    }
    if (asRoot) {
      const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
      chownSync(dir, uid, gid);
      chmodSync(dir, 0o700);
    }
    s.run('initdb', ['-D', join(dir, 'data'), '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
    await s.start();
    return s;
  }

  get url(): string {
    return `postgresql://postgres@127.0.0.1:${this.port}/postgres`;
  }

  /** mayFail: a failure is expected (e.g. stopping a server that is not running) and ignored. */
  private run(cmd: string, args: string[], mayFail = false): void {
    const exe = join(this.bin, cmd);
    try {
      if (asRoot) execFileSync('runuser', ['-u', 'postgres', '--', exe, ...args], { stdio: 'ignore', cwd: this.dir });
      else execFileSync(exe, args, { stdio: 'ignore' });
    } catch (e) {
      if (!mayFail) throw e;
    }
  }

  async start(): Promise<void> {
    const opts = `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=${this.fsync ? 'on' : 'off'}`;
    this.run('pg_ctl', ['-D', join(this.dir, 'data'), '-o', opts, '-l', join(this.dir, 'log'), '-w', 'start']);
    await waitFor('PostgreSQL', () => portOpen(this.port));
  }

  /** Stops the server at once (active connections are cut). */
  async stop(): Promise<void> {
    this.run('pg_ctl', ['-D', join(this.dir, 'data'), '-m', 'immediate', '-w', 'stop']);
  }

  async destroy(): Promise<void> {
    try {
      await this.stop();
    } catch {
      // already stopped
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
