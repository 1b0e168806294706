// Project-owned PostgreSQL 15 and Redis 7 for the zero-configuration start and the test suite.
// They live under a data folder of ours, listen on 127.0.0.1 only, and are installed with apt-get
// when missing (the project must bring what it needs onto a fresh machine).
//
// Whoever starts them owns them: `stop()` stops both and reports only what it verified. Servers
// left running in the data folder by an earlier start (one that was killed, or whose shutdown was
// cut short) are announced and taken over, so the next stop ends them too.
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { claimDataDir } from './owner-lock.ts';
import { isRunning } from './procs.ts';

/**
 * `durable` (the default, and what `npm start` runs): fsync, synchronous_commit and
 * full_page_writes on, so a committed transaction survives a power cut. PostgreSQL is the source
 * of truth of the ledger; this is not optional for anything that keeps data.
 * `fast`: all three off. Committed work can be lost on a crash of the machine; only for the test
 * suite and benchmarks, whose data is thrown away. Choosing it is logged.
 */
export type Durability = 'durable' | 'fast';

export interface StopReport {
  /** True when every server this start owned is verified gone. */
  ok: boolean;
  /** What is true after the attempt, e.g. "stopped the local PostgreSQL (pid 12) and Redis (pid 34)". */
  message: string;
}

export interface LocalServices {
  databaseUrl: string;
  redisUrl: string;
  durability: Durability;
  /** Process ids of the servers this start owns (started by it, or taken over). */
  pids: { postgres: number; redis: number };
  /** Which servers were found running from an earlier start and taken over. */
  adopted: { postgres: boolean; redis: boolean };
  /**
   * Stops both servers and waits (bounded) until their processes are gone, escalating when they
   * do not stop: PostgreSQL fast shutdown, then immediate; Redis SIGTERM, then SIGKILL. Synchronous,
   * so it can run in a process 'exit' handler. Calling it again after a success is a no-op that
   * returns the same report.
   */
  stop(): StopReport;
}

export interface LocalServicesOptions {
  dir: string;
  /** Port for PostgreSQL; unset or 0: a free port. A server left running keeps its own port. */
  pgPort?: number;
  /** Port for Redis; unset or 0: a free port. A server left running keeps its own port. */
  redisPort?: number;
  database?: string;
  /** Default `durable`. See {@link Durability}. */
  durability?: Durability;
  log?: (msg: string) => void;
}

const PG_DIRS = ['/usr/lib/postgresql/15/bin', '/usr/local/bin', '/usr/bin'];
const isRoot = () => process.getuid?.() === 0;

// Bounds for stop(), per step; PostgreSQL and Redis are stopped at the same time, so a stop that
// has to escalate takes at most 30 s. A fast shutdown writes a checkpoint and the machine may be
// busy, hence 20 s before an immediate shutdown (which loses nothing committed: the WAL is synced).
const PG_FAST_STOP_MS = 20_000;
const PG_IMMEDIATE_STOP_MS = 10_000;
const REDIS_TERM_STOP_MS = 10_000;
const REDIS_KILL_STOP_MS = 5_000;

function which(cmd: string, extra: string[] = []): string | undefined {
  for (const d of [...extra, ...(process.env.PATH ?? '').split(':')]) {
    const p = join(d, cmd);
    if (d && existsSync(p)) return p;
  }
  return undefined;
}

function aptInstall(pkgs: string[], log: (m: string) => void): void {
  if (!isRoot()) throw new Error(`missing ${pkgs.join(', ')}: install them (apt-get install -y ${pkgs.join(' ')})`);
  log(`installing ${pkgs.join(', ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let r = spawnSync('apt-get', ['install', '-y', '-qq', ...pkgs], { stdio: 'inherit', env });
  if (r.status !== 0) {
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    r = spawnSync('apt-get', ['install', '-y', '-qq', ...pkgs], { stdio: 'inherit', env });
  }
  if (r.status !== 0) throw new Error(`apt-get install ${pkgs.join(' ')} failed`);
}

export function ensureBinaries(log: (m: string) => void = console.log) {
  if (!['initdb', 'pg_ctl', 'postgres'].every((c) => which(c, PG_DIRS))) aptInstall(['postgresql-15'], log);
  if (!which('redis-server')) aptInstall(['redis-server'], log);
  return {
    initdb: which('initdb', PG_DIRS)!,
    pgCtl: which('pg_ctl', PG_DIRS)!,
    redisServer: which('redis-server')!,
  };
}

/** A free TCP port on 127.0.0.1 (the kernel picks it). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === 'object' ? res(addr.port) : rej(new Error('no port'))));
    });
  });
}

// initdb and postgres refuse to run as root; the Debian package creates a `postgres` user.
function asPostgres(cmd: string, args: string[]) {
  const full = isRoot() ? (['runuser', ['-u', 'postgres', '--', cmd, ...args]] as const) : ([cmd, args] as const);
  const r = spawnSync(full[0], [...full[1]], { encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

function ownByPostgres(path: string) {
  if (!isRoot()) return;
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
  chownSync(path, uid, gid);
}

const DURABILITY_SETTINGS = ['fsync', 'synchronous_commit', 'full_page_writes'] as const;

export async function startLocalServices(opts: LocalServicesOptions): Promise<LocalServices> {
  const log = opts.log ?? ((m: string) => console.log(m));
  const durability = opts.durability ?? 'durable';
  if (durability !== 'durable' && durability !== 'fast') throw new Error(`unknown durability "${String(durability)}"`);
  const bins = ensureBinaries(log);
  const dir = resolve(opts.dir);
  const pgData = join(dir, 'pg');
  const sockDir = join(dir, 'run');
  const redisDir = join(dir, 'redis');
  for (const d of [dir, sockDir, redisDir]) mkdirSync(d, { recursive: true });
  // Before anything is looked at: servers another live start runs are its own (owner-lock.ts).
  const release = claimDataDir(dir);
  ownByPostgres(dir);
  ownByPostgres(sockDir);
  if (durability === 'fast') {
    log(
      `PostgreSQL in ${pgData} runs with durability "fast" (fsync, synchronous_commit and full_page_writes off): ` +
        'committed data can be lost if the machine crashes; for throw-away test and benchmark data only',
    );
  }

  if (!existsSync(join(pgData, 'PG_VERSION'))) {
    mkdirSync(pgData, { recursive: true, mode: 0o700 });
    ownByPostgres(pgData);
    const r = asPostgres(bins.initdb, [
      '-D',
      pgData,
      '-U',
      'postgres',
      '--auth=trust',
      '-E',
      'UTF8',
      '--locale=C.UTF-8',
      // A durable cluster must be on disk before it is used; a throw-away one need not be.
      ...(durability === 'fast' ? ['--no-sync'] : []),
    ]);
    if (!r.ok) throw new Error(`initdb failed:\n${r.out}`);
  }

  const pg = await import('pg');
  const settingsOf = async (port: number) => {
    const c = new pg.default.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres` });
    await c.connect();
    try {
      const out: Record<string, string> = {};
      for (const s of DURABILITY_SETTINGS) out[s] = String((await c.query(`SHOW ${s}`)).rows[0]?.[s]);
      return out;
    } finally {
      await c.end();
    }
  };
  const wanted = durability === 'durable' ? 'on' : 'off';

  // Everything started or taken over so far; stopped again if a later step of the start fails.
  const owned: Owned = {};
  try {
    // A PostgreSQL left running in this data folder by an earlier start: take it over if it runs
    // with the durability asked for, otherwise stop it and start it again with the right settings.
    const leftPg = postmasterPid(pgData);
    if (leftPg !== undefined) {
      const port = readPostmasterPort(pgData);
      const settings = port === undefined ? undefined : await settingsOf(port).catch(() => undefined);
      const what = `a PostgreSQL left running by an earlier start (pid ${leftPg}${port ? `, port ${port}` : ''}) in ${pgData}`;
      if (port !== undefined && settings && DURABILITY_SETTINGS.every((s) => settings[s] === wanted)) {
        log(`found ${what}: this start takes it over and stops it when it stops`);
        owned.pg = { pid: leftPg, port, adopted: true };
      } else {
        const found = settings ? DURABILITY_SETTINGS.map((s) => `${s}=${settings[s]}`).join(', ') : 'not answering';
        log(`found ${what} (${found}): stopping it to start it again with durability "${durability}"`);
        const stopped = stopOne(postgresStop(leftPg), log);
        if (!stopped.ok) throw new Error(stopped.message);
      }
    }

    if (!owned.pg) {
      const pgPort = opts.pgPort || (await freePort());
      const conf = [
        `-p ${pgPort} -h 127.0.0.1 -k ${sockDir}`,
        ...DURABILITY_SETTINGS.map((s) => `-c ${s}=${wanted}`),
        '-c max_connections=300 -c shared_buffers=256MB',
      ].join(' ');
      const r = asPostgres(bins.pgCtl, [
        '-D',
        pgData,
        '-l',
        join(pgData, 'server.log'),
        '-o',
        conf,
        '-w',
        '-t',
        '60',
        'start',
      ]);
      const pid = postmasterPid(pgData);
      if (!r.ok || pid === undefined) {
        if (pid !== undefined) owned.pg = { pid, port: pgPort, adopted: false };
        throw new Error(`PostgreSQL did not start:\n${r.out}\n${tail(join(pgData, 'server.log'))}`);
      }
      owned.pg = { pid, port: readPostmasterPort(pgData) ?? pgPort, adopted: false };
    }

    log(
      `local PostgreSQL is up: pid ${owned.pg.pid}, 127.0.0.1:${owned.pg.port}, data in ${pgData}, durability "${durability}"`,
    );

    const database = opts.database ?? 'blastgate';
    const root = `postgres://postgres@127.0.0.1:${owned.pg.port}`;
    const admin = new pg.default.Client({ connectionString: `${root}/postgres` });
    await admin.connect();
    try {
      const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
      if (exists.rowCount === 0) await admin.query(`CREATE DATABASE "${database}"`);
    } finally {
      await admin.end();
    }

    const pidFile = join(redisDir, 'redis.pid');
    const portFile = join(redisDir, 'port');
    const leftRedis = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) : undefined;
    if (leftRedis !== undefined && isRunning(leftRedis, 'redis-server')) {
      const port = existsSync(portFile) ? Number(readFileSync(portFile, 'utf8')) : NaN;
      const what = `a Redis left running by an earlier start (pid ${leftRedis}${port ? `, port ${port}` : ''}) in ${redisDir}`;
      if (Number.isInteger(port) && port > 0) {
        log(`found ${what}: this start takes it over and stops it when it stops`);
        owned.redis = { pid: leftRedis, port, adopted: true };
      } else {
        log(`found ${what} but not its port: stopping it to start it again`);
        const stopped = stopOne(redisStop(leftRedis), log);
        if (!stopped.ok) throw new Error(stopped.message);
      }
    }
    if (!owned.redis) {
      const redisPort = opts.redisPort || (await freePort());
      const r = spawnSync(
        bins.redisServer,
        [
          '--port',
          String(redisPort),
          '--bind',
          '127.0.0.1',
          '--dir',
          redisDir,
          '--appendonly',
          'yes',
          // BullMQ is only correct when Redis never evicts keys.
          '--maxmemory-policy',
          'noeviction',
          '--daemonize',
          'yes',
          '--pidfile',
          pidFile,
          '--logfile',
          join(redisDir, 'redis.log'),
          '--save',
          '',
        ],
        { encoding: 'utf8' },
      );
      if (r.status !== 0) throw new Error(`redis-server did not start: ${r.stderr}`);
      writeFileSync(portFile, String(redisPort));
      const pid = await waitFor(
        () => {
          const p = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) : NaN;
          return Number.isInteger(p) && p > 0 && p !== leftRedis ? p : undefined;
        },
        10_000,
        'redis-server pid file',
      );
      owned.redis = { pid, port: redisPort, adopted: false };
    }

    log(`local Redis is up: pid ${owned.redis.pid}, 127.0.0.1:${owned.redis.port}, data in ${redisDir}`);

    owned.pg.locate = () => postmasterPid(pgData);
    owned.redis.locate = () => {
      const p = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) : NaN;
      return isRunning(p, 'redis-server') ? p : undefined;
    };
    const services = owned as Required<Owned>;
    let lastReport: StopReport | undefined;
    return {
      databaseUrl: `${root}/${database}`,
      redisUrl: `redis://127.0.0.1:${services.redis.port}`,
      durability,
      pids: { postgres: services.pg.pid, redis: services.redis.pid },
      adopted: { postgres: services.pg.adopted, redis: services.redis.adopted },
      stop() {
        if (lastReport?.ok) return lastReport;
        lastReport = stopOwned(services, log);
        // Still running: the next start takes them over only once this process is gone.
        if (lastReport.ok) release();
        return lastReport;
      },
    };
  } catch (err) {
    // Do not leave behind what this failed start began.
    if (owned.pg || owned.redis) {
      const stopped = stopOwned(owned, log);
      log(`start-up failed: ${stopped.message}`);
      if (stopped.ok) release();
    } else release();
    throw err;
  }
}

interface Server {
  pid: number;
  port: number;
  adopted: boolean;
  /** The pid now running on our data folder (from its pid file), if any. */
  locate?: () => number | undefined;
}
interface Owned {
  pg?: Server;
  redis?: Server;
}

function stopOwned(owned: Owned, log: (m: string) => void): StopReport {
  // What is owned is the server of our data folder, not a pid: one restarted meanwhile (by an
  // operator, `pg_ctl restart`, a supervisor) has a new pid, which the pid files tell.
  const redisPid = owned.redis && (owned.redis.locate?.() ?? owned.redis.pid);
  const pgPid = owned.pg && (owned.pg.locate?.() ?? owned.pg.pid);
  const results = stopProcesses(
    [
      // Redis first: nothing of ours should move work once the ledger is gone.
      redisPid !== undefined && redisStop(redisPid),
      pgPid !== undefined && postgresStop(pgPid),
    ].filter((t) => !!t),
    log,
  );
  const stopped = results.filter((r) => r.ok);
  const failed = results.filter((r) => !r.ok);
  const parts: string[] = [];
  if (stopped.length) parts.push(`stopped the local ${stopped.map((r) => `${r.name} (pid ${r.pid})`).join(' and ')}`);
  for (const r of failed) parts.push(`could not stop the local ${r.name} (pid ${r.pid} still running)`);
  return { ok: failed.length === 0, message: parts.join('; ') };
}

/** Stops one process (a server left running by an earlier start) and says what is true. */
function stopOne(plan: StopPlan, log: (m: string) => void): StopReport {
  const ok = stopProcesses([plan], log)[0]!.ok;
  const what = `the local ${plan.name} (pid ${plan.pid}${ok ? ')' : ' still running)'}`;
  return { ok, message: ok ? `stopped ${what}` : `could not stop ${what}` };
}

interface StopPlan {
  pid: number;
  /** The process name in /proc, so that a reused pid is never signalled. */
  comm: string;
  name: string;
  steps: { signal: NodeJS.Signals; waitMs: number; what: string }[];
}

// PostgreSQL's shutdown signals (docs, "Shutting Down the Server"): SIGINT is a fast shutdown
// (ends sessions, writes a checkpoint), SIGQUIT an immediate one (recovery from the WAL at the
// next start; with fsync on no committed data is lost). This is what `pg_ctl stop -m fast` and
// `-m immediate` send; signalling from here keeps stop() synchronous and in this process (a
// Ctrl-C that reaches our process group cannot cut a pg_ctl child short).
const postgresStop = (pid: number): StopPlan => ({
  pid,
  comm: 'postgres',
  name: 'PostgreSQL',
  steps: [
    { signal: 'SIGINT', waitMs: PG_FAST_STOP_MS, what: 'fast shutdown' },
    { signal: 'SIGQUIT', waitMs: PG_IMMEDIATE_STOP_MS, what: 'immediate shutdown' },
  ],
});

// Redis on SIGTERM flushes its append-only file and exits; SIGKILL is the last resort.
const redisStop = (pid: number): StopPlan => ({
  pid,
  comm: 'redis-server',
  name: 'Redis',
  steps: [
    { signal: 'SIGTERM', waitMs: REDIS_TERM_STOP_MS, what: 'SIGTERM' },
    { signal: 'SIGKILL', waitMs: REDIS_KILL_STOP_MS, what: 'SIGKILL' },
  ],
});

/**
 * Signals each process, waits (bounded) until it is gone, escalating to the next step of its plan
 * when it is not; all processes at once, so the worst case is the slowest plan, not their sum.
 * Reports what is true at the end.
 */
function stopProcesses(plans: StopPlan[], log: (m: string) => void): { name: string; pid: number; ok: boolean }[] {
  const state = plans.map((plan) => ({ plan, step: -1, until: 0 }));
  const next = (s: (typeof state)[number]) => {
    s.step += 1;
    const step = s.plan.steps[s.step]!;
    if (s.step > 0) {
      const before = s.plan.steps[s.step - 1]!;
      log(
        `the local ${s.plan.name} (pid ${s.plan.pid}) still runs ${before.waitMs / 1000} s after ${before.what}: ${step.what}`,
      );
    }
    try {
      process.kill(s.plan.pid, step.signal);
    } catch {
      /* gone in between */
    }
    s.until = Date.now() + step.waitMs;
  };
  for (const s of state) if (isRunning(s.plan.pid, s.plan.comm)) next(s);
  for (;;) {
    const waiting = state.filter((s) => isRunning(s.plan.pid, s.plan.comm) && s.step >= 0);
    const pending = waiting.filter((s) => Date.now() < s.until || s.step + 1 < s.plan.steps.length);
    if (pending.length === 0) break;
    for (const s of pending) if (Date.now() >= s.until) next(s);
    sleepSync(50);
  }
  return plans.map((p) => ({ name: p.name, pid: p.pid, ok: !isRunning(p.pid, p.comm) }));
}

/** The postmaster's pid when a PostgreSQL is running on this data folder. */
function postmasterPid(pgData: string): number | undefined {
  const f = join(pgData, 'postmaster.pid');
  if (!existsSync(f)) return undefined;
  const pid = Number(readFileSync(f, 'utf8').split('\n')[0]);
  return isRunning(pid, 'postgres') ? pid : undefined;
}

function readPostmasterPort(pgData: string): number | undefined {
  const f = join(pgData, 'postmaster.pid');
  if (!existsSync(f)) return undefined;
  const port = Number(readFileSync(f, 'utf8').split('\n')[3]);
  return Number.isInteger(port) && port > 0 ? port : undefined;
}

function sleepSync(ms: number) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-20).join('\n');
  } catch {
    return '';
  }
}

async function waitFor<T>(check: () => T | undefined, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
