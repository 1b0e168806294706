// The chaos run's own PostgreSQL 15 and Redis 7, in a temp dir, on free 127.0.0.1 ports, with the
// controls the faults need: `pg_ctl restart -m immediate`, and SIGKILL + restart of Redis on the
// same port with the same append-only file.
//
// Every command here runs asynchronously: the downstream service lives in this process, and a
// blocking spawnSync during a fault would freeze it too (an extra, unintended fault).
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBinaries, freePort } from '../../src/embedded/local-services.ts';
import { Managed, type ExitRecord } from './procs.ts';

const isRoot = () => process.getuid?.() === 0;
// initdb and postgres refuse to run as root; the Debian package creates a `postgres` user.
const asPostgres = (cmd: string, args: string[]): [string, string[]] =>
  isRoot() ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];

/** Runs a command to its end, bounded; never throws for a non-zero status (the caller decides). */
export function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    let out = '';
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    p.stdout.on('data', (b: Buffer) => (out += b.toString('utf8')));
    p.stderr.on('data', (b: Buffer) => (out += b.toString('utf8')));
    const timer = setTimeout(() => {
      out += `\n(killed after ${timeoutMs} ms)`;
      p.kill('SIGKILL');
    }, timeoutMs);
    p.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: -1, out: `${out}${err.message}` });
    });
    // 'exit', not 'close': a daemon started by the command may keep inherited pipes open.
    p.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

function chownToPostgres(path: string) {
  if (!isRoot()) return;
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
  chownSync(path, uid, gid);
}

export class OwnPostgres {
  readonly data: string;
  readonly sock: string;
  readonly log: string;
  port = 0;
  readonly pgCtl: string;
  private initdb: string;

  constructor(readonly dir: string) {
    const bins = ensureBinaries(() => undefined);
    this.pgCtl = bins.pgCtl;
    this.initdb = bins.initdb;
    this.data = join(dir, 'pg');
    this.sock = join(dir, 'pgsock');
    this.log = join(dir, 'pg.log');
  }

  rootUrl(db = 'postgres') {
    return `postgres://postgres@127.0.0.1:${this.port}/${db}`;
  }

  async init(): Promise<void> {
    chownToPostgres(this.dir);
    mkdirSync(this.data, { recursive: true, mode: 0o700 });
    mkdirSync(this.sock, { recursive: true });
    chownToPostgres(this.data);
    chownToPostgres(this.sock);
    const [c, a] = asPostgres(this.initdb, [
      '-D',
      this.data,
      '-U',
      'postgres',
      '--auth=trust',
      '-E',
      'UTF8',
      '--locale=C.UTF-8',
      '--no-sync',
    ]);
    const r = await run(c, a, 120_000);
    if (r.code !== 0) throw new Error(`initdb failed:\n${r.out}`);
    this.port = await freePort();
  }

  async start(): Promise<void> {
    // fsync=off for speed: every fault here is a process crash (SIGKILL, `-m immediate`), never a
    // machine crash, and the kernel's page cache survives a process crash, so nothing committed is
    // lost. synchronous_commit stays on on purpose: with it off, WAL still in PostgreSQL's own
    // shared buffers would be lost by an immediate shutdown and the harness would be the one
    // losing committed ledger rows.
    const opts = `-p ${this.port} -h 127.0.0.1 -k ${this.sock} -c fsync=off -c max_connections=300 -c shared_buffers=128MB`;
    const [c, a] = asPostgres(this.pgCtl, ['-D', this.data, '-l', this.log, '-o', opts, '-w', '-t', '60', 'start']);
    const r = await run(c, a, 90_000);
    if (r.code !== 0) throw new Error(`PostgreSQL did not start:\n${r.out}`);
  }

  /** The fault: an immediate (crash-like) shutdown and a start with the same options. */
  async restartImmediate(): Promise<{ ms: number; out: string }> {
    const t0 = Date.now();
    const [c, a] = asPostgres(this.pgCtl, [
      '-D',
      this.data,
      '-l',
      this.log,
      '-w',
      '-t',
      '60',
      '-m',
      'immediate',
      'restart',
    ]);
    const r = await run(c, a, 90_000);
    if (r.code !== 0) throw new Error(`pg_ctl restart failed:\n${r.out}`);
    return { ms: Date.now() - t0, out: r.out.trim() };
  }

  async isUp(): Promise<boolean> {
    const [c, a] = asPostgres(this.pgCtl, ['-D', this.data, 'status']);
    return (await run(c, a, 10_000)).code === 0;
  }

  stopSync() {
    const [c, a] = asPostgres(this.pgCtl, ['-D', this.data, '-m', 'immediate', '-w', '-t', '30', 'stop']);
    spawnSync(c, a, { stdio: 'ignore', timeout: 40_000 });
  }
}

/** Redis as a supervised child (foreground, under the wrapper), on a fixed port and AOF dir. */
export function ownRedis(
  dir: string,
  port: number,
  onCrash: (r: ExitRecord) => void,
): Managed & { url: string; dir: string } {
  const bin = ensureBinaries(() => undefined).redisServer;
  mkdirSync(dir, { recursive: true });
  const m = new Managed(
    {
      name: 'redis',
      command: bin,
      args: [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--appendonly',
        'yes',
        // Every write is on disk before Redis answers: a SIGKILL then loses nothing acknowledged.
        '--appendfsync',
        'always',
        // BullMQ is only correct when Redis never evicts keys.
        '--maxmemory-policy',
        'noeviction',
        '--save',
        '',
        '--daemonize',
        'no',
        '--protected-mode',
        'yes',
      ],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      readyLine: 'Ready to accept connections',
      startTimeoutMs: 30_000,
    },
    { autoRestart: true, onCrash },
  );
  return Object.assign(m, { url: `redis://127.0.0.1:${port}`, dir });
}

/**
 * A watchdog that outlives a harness killed with SIGKILL: it waits for EOF on a pipe from this
 * process, then stops PostgreSQL (which pg_ctl runs detached from us) and removes the temp dir.
 * Its own process group, and SIGINT/SIGTERM/SIGHUP ignored, so a Ctrl-C does not take it down first.
 */
export function startGuardian(pg: OwnPostgres, dir: string): ChildProcess {
  const [c, a] = asPostgres(pg.pgCtl, ['-D', pg.data, '-m', 'immediate', '-w', '-t', '30', 'stop']);
  const stop = [c, ...a].map((s) => `'${s.replace(/'/g, `'\\''`)}'`).join(' ');
  const g = spawn('sh', ['-c', `trap '' INT TERM HUP; read -r _; ${stop} >/dev/null 2>&1; rm -rf "$1"`, 'sh', dir], {
    stdio: ['pipe', 'ignore', 'ignore'],
    detached: true,
  });
  g.stdin.on('error', () => undefined);
  g.unref();
  return g;
}

export function removeDir(dir: string) {
  rmSync(dir, { recursive: true, force: true });
}
