// A PostgreSQL 15 of a test's own (the suite's shared one must never be restarted under other test
// files), in a temp dir on a free 127.0.0.1 port, with the control the faults need: `pg_ctl restart
// -m immediate` (every session cut at once, as in a crash) and a freeze (SIGSTOP: nothing answers).
// Used by the PostgreSQL-restart and -freeze tests and the chaos suite.
//
// Every command here runs asynchronously: a test's downstream service lives in the test process,
// and a blocking spawnSync during a restart would freeze it too (an extra, unintended fault).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { migrate } from '../../src/db/migrate.ts';
import { ensureBinaries, freePort } from '../../src/embedded/local-services.ts';

export const isRoot = () => process.getuid?.() === 0;
// initdb and postgres refuse to run as root; the Debian package creates a `postgres` user.
export const asPostgres = (cmd: string, args: string[]): [string, string[]] =>
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
      // As the embedded PostgreSQL (src/embedded/local-postgres.ts).
      '--lc-collate=C',
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

  /**
   * SIGSTOP / SIGCONT of the postmaster and every backend: a server that keeps its connections
   * open, and lets the kernel accept new ones, but answers nothing (a hung host, a partition),
   * unlike a stopped one, which refuses at once. The postmaster first, so it starts no one new.
   */
  freeze(): void {
    for (const pid of this.pids()) signal(pid, 'SIGSTOP');
  }

  thaw(): void {
    for (const pid of this.pids()) signal(pid, 'SIGCONT');
  }

  /** The postmaster (postmaster.pid's first line), then its children (from /proc). */
  private pids(): number[] {
    const main = Number(readFileSync(join(this.data, 'postmaster.pid'), 'utf8').split('\n')[0]);
    const children = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .filter((d) => {
        try {
          // Field 4 of /proc/<pid>/stat, after the command name in parentheses, is the parent pid.
          const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
          return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === main;
        } catch {
          return false; // gone meanwhile
        }
      })
      .map(Number);
    return [main, ...children];
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

/** A started, migrated server with one database, for a test file; `destroy()` stops it and removes its dir. */
export async function startOwnPostgres(): Promise<{ url: string; server: OwnPostgres; destroy(): void }> {
  const dir = mkdtempSync(join(tmpdir(), 'blastgate-ownpg-'));
  const server = new OwnPostgres(dir);
  await server.init();
  await server.start();
  const stop = () => server.stopSync();
  process.once('exit', stop); // a test process that ends first must not leave it running
  const admin = new pg.Client({ connectionString: server.rootUrl() });
  await admin.connect();
  await admin.query('CREATE DATABASE blastgate');
  await admin.end();
  const url = server.rootUrl('blastgate');
  await migrate(url);
  return {
    url,
    server,
    destroy() {
      stop();
      process.removeListener('exit', stop);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Signals a process listed a moment ago; one that ended since (a backend whose client left) is skipped. */
function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}
