// Project-owned PostgreSQL 15 and Redis 7 for the zero-configuration start and the test suite.
// They live under a data folder of ours, listen on 127.0.0.1 only, and are installed with apt-get
// when missing (the project must bring what it needs onto a fresh machine).
//
// Whoever starts them owns them: `stop()` stops them and reports only what it verified. Servers
// left running in the data folder by an earlier start (one that was killed, or whose shutdown was
// cut short) are announced and taken over, so the next stop ends them too. A start that is given
// one of the two services (DATABASE_URL or REDIS_URL) starts only the other.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { ConfigError } from '../config.ts';
import { claimDataDir } from './owner-lock.ts';
import { ownByPostgres, postmasterPid, startPostgres } from './local-postgres.ts';
import { redisPidIn, startRedis } from './local-redis.ts';
import { postgresStop, redisStop, stopAll, stopOne, type StopPlan, type StopReport } from './stop.ts';

export type { StopReport } from './stop.ts';

/**
 * A start given REDIS_URL but no DATABASE_URL runs a new local PostgreSQL beside a Redis that other
 * Blastgate processes may use: with the same queue prefix, its workers take their jobs and answer
 * them from an empty database (a new-user trial: a misspelt DATABASE_URL lost CI intake jobs to it
 * as "unknown token", kept failed for a week, and stalled bakes). Refused unless the queues are
 * made this start's own (BLASTGATE_QUEUE_PREFIX); the message names a near-miss of DATABASE_URL.
 */
export function localDatabaseBesideSharedRedis(
  o: { databaseUrl?: string | undefined; redisUrl?: string | undefined },
  env: NodeJS.ProcessEnv,
  misspelt: [string, string][],
): ConfigError | undefined {
  if (o.databaseUrl || !o.redisUrl || env.BLASTGATE_QUEUE_PREFIX?.trim()) return undefined;
  const typo = misspelt.find(([, meant]) => meant === 'DATABASE_URL')?.[0];
  return new ConfigError([
    `REDIS_URL is set but DATABASE_URL is not${typo ? ` (${typo} is set: a typo?)` : ''}: this start would run a new, empty local PostgreSQL beside a Redis other Blastgate processes may use, and its workers would take their jobs. Set DATABASE_URL, unset REDIS_URL to run both locally, or give this start queues of its own with BLASTGATE_QUEUE_PREFIX`,
  ]);
}

/**
 * `durable` (the default, and what `npm start` runs): fsync, synchronous_commit and
 * full_page_writes on, so a committed transaction survives a power cut. PostgreSQL is the source
 * of truth of the ledger; this is not optional for anything that keeps data.
 * `fast`: all three off. Committed work can be lost on a crash of the machine; only for the test
 * suite and benchmarks, whose data is thrown away. Choosing it is logged.
 */
export type Durability = 'durable' | 'fast';

/** The local servers one start runs: both, or the one the configuration does not name. */
export interface SomeLocalServices {
  databaseUrl?: string;
  redisUrl?: string;
  durability: Durability;
  /** Process ids of the servers this start owns (started by it, or taken over). */
  pids: { postgres?: number; redis?: number };
  /** Which servers were found running from an earlier start and taken over. */
  adopted: { postgres?: boolean; redis?: boolean };
  /** How to find each server of the data folder again, and to start it again by hand (watch.ts). */
  servers: { postgres?: WatchedServer; redis?: WatchedServer };
  /**
   * Stops the servers and waits (bounded) until their processes are gone, escalating when they
   * do not stop: PostgreSQL fast shutdown, then immediate; Redis SIGTERM, then SIGKILL. Synchronous,
   * so it can run in a process 'exit' handler. Calling it again after a success is a no-op that
   * returns the same report.
   */
  stop(): StopReport;
}

/** Both local servers (the zero-configuration start, the test suite, the benchmarks). */
export interface LocalServices extends SomeLocalServices {
  databaseUrl: string;
  redisUrl: string;
  pids: { postgres: number; redis: number };
  adopted: { postgres: boolean; redis: boolean };
}

/** Which of the two servers a start runs. */
export interface Wanted {
  postgres: boolean;
  redis: boolean;
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
export const isRoot = () => process.getuid?.() === 0;

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

export function ensureBinaries(
  log: (m: string) => void = console.log,
  wanted: Wanted = { postgres: true, redis: true },
) {
  if (wanted.postgres && !['initdb', 'pg_ctl', 'postgres'].every((c) => which(c, PG_DIRS)))
    aptInstall(['postgresql-15'], log);
  if (wanted.redis && !which('redis-server')) aptInstall(['redis-server'], log);
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

export async function startLocalServices(opts: LocalServicesOptions): Promise<LocalServices> {
  const s = await startSomeLocalServices(opts, { postgres: true, redis: true });
  if (!isComplete(s)) {
    s.stop();
    throw new Error('the local PostgreSQL and Redis did not both start');
  }
  return s;
}

const isComplete = (s: SomeLocalServices): s is LocalServices =>
  s.databaseUrl !== undefined && s.redisUrl !== undefined;

export interface StartContext {
  opts: LocalServicesOptions;
  bins: ReturnType<typeof ensureBinaries>;
  durability: Durability;
  log: (m: string) => void;
  pgData: string;
  sockDir: string;
  redisDir: string;
}

/**
 * Starts (or takes over) the servers `wanted` names, and stops a server of the other kind that an
 * earlier start left running in the folder: this start does not use it, and nobody else owns it.
 */
export async function startSomeLocalServices(opts: LocalServicesOptions, wanted: Wanted): Promise<SomeLocalServices> {
  const log = opts.log ?? ((m: string) => console.log(m));
  const durability = opts.durability ?? 'durable';
  if (durability !== 'durable' && durability !== 'fast') throw new Error(`unknown durability "${String(durability)}"`);
  if (!wanted.postgres && !wanted.redis) throw new Error('no local server to start');
  const bins = ensureBinaries(log, wanted);
  const dir = resolve(opts.dir);
  const ctx: StartContext = {
    opts,
    bins,
    durability,
    log,
    pgData: join(dir, 'pg'),
    sockDir: join(dir, 'run'),
    redisDir: join(dir, 'redis'),
  };
  for (const d of [dir, ctx.sockDir, ctx.redisDir]) mkdirSync(d, { recursive: true });
  // Before anything is looked at: servers another live start runs are its own (owner-lock.ts).
  const release = claimDataDir(dir);
  ownByPostgres(dir);
  ownByPostgres(ctx.sockDir);

  // Everything started or taken over so far; stopped again if a later step of the start fails.
  const owned: Owned = {};
  try {
    let databaseUrl: string | undefined;
    if (wanted.postgres) databaseUrl = await startPostgres(ctx, owned);
    else stopUnwanted(postmasterPid(ctx.pgData), postgresStop, 'PostgreSQL', ctx.pgData, log);
    if (wanted.redis) await startRedis(ctx, owned);
    else stopUnwanted(redisPidIn(ctx.redisDir), redisStop, 'Redis', ctx.redisDir, log);

    let lastReport: StopReport | undefined;
    // Across calls: a server signalled by a stop that could not finish and gone by the next one was stopped.
    const signalled = new Set<number>();
    return {
      databaseUrl,
      redisUrl: owned.redis && `redis://127.0.0.1:${owned.redis.port}`,
      durability,
      pids: { postgres: owned.pg?.pid, redis: owned.redis?.pid },
      adopted: { postgres: owned.pg?.adopted, redis: owned.redis?.adopted },
      servers: { postgres: watched(owned.pg), redis: watched(owned.redis) },
      stop() {
        if (lastReport?.ok) return lastReport;
        lastReport = stopOwned(owned, log, signalled);
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

function stopUnwanted(
  pid: number | undefined,
  plan: (pid: number) => StopPlan,
  name: string,
  where: string,
  log: (m: string) => void,
) {
  if (pid === undefined) return;
  log(
    `found a ${name} left running by an earlier start (pid ${pid}) in ${where}: this start does not use it, stopping it`,
  );
  const stopped = stopOne(plan(pid), log);
  if (!stopped.ok) throw new Error(stopped.message);
}

export interface Server {
  pid: number;
  port: number;
  adopted: boolean;
  /** The pid now running on our data folder (from its pid file), if any. */
  locate?: () => number | undefined;
  /** The shell command that starts it again on the same data and port (watch.ts says it). */
  startAgain?: string;
}
export interface Owned {
  pg?: Server;
  redis?: Server;
}

export interface WatchedServer {
  /** The pid this start began with. */
  pid: number;
  /** The pid running on the data folder now (its pid file), if any. */
  locate(): number | undefined;
  startAgain: string;
}
// Both are set by the start that owns the server (local-postgres.ts, local-redis.ts).
const watched = (s: Server | undefined): WatchedServer | undefined =>
  s?.locate && s.startAgain ? { pid: s.pid, locate: s.locate, startAgain: s.startAgain } : undefined;

function stopOwned(owned: Owned, log: (m: string) => void, signalled?: Set<number>): StopReport {
  // What is owned is the server of our data folder, not a pid: one restarted meanwhile (by an
  // operator, `pg_ctl restart`, a supervisor) has a new pid, which the pid files tell.
  const redisPid = owned.redis && (owned.redis.locate?.() ?? owned.redis.pid);
  const pgPid = owned.pg && (owned.pg.locate?.() ?? owned.pg.pid);
  // Redis first: nothing of ours should move work once the ledger is gone.
  return stopAll(
    [redisPid !== undefined && redisStop(redisPid), pgPid !== undefined && postgresStop(pgPid)].filter((t) => !!t),
    log,
    signalled,
  );
}
