// The local PostgreSQL 15 of a data folder: initdb on first use, started (or taken over from an
// earlier start) on 127.0.0.1 with the durability asked for, and the database created.
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, isRoot, type Owned, type StartContext } from './local-services.ts';
import { ConfigError } from '../config.ts';
import { isRunning, linesSince, shellCommand, sizeOf } from './procs.ts';
import { postgresStop, stopOne } from './stop.ts';

// initdb and postgres refuse to run as root; the Debian package creates a `postgres` user.
export function asPostgres(cmd: string, args: string[]) {
  const full = isRoot() ? (['runuser', ['-u', 'postgres', '--', cmd, ...args]] as const) : ([cmd, args] as const);
  const r = spawnSync(full[0], [...full[1]], { encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

export function ownByPostgres(path: string) {
  if (!isRoot()) return;
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
  chownSync(path, uid, gid);
}

const DURABILITY_SETTINGS = ['fsync', 'synchronous_commit', 'full_page_writes'] as const;

/** Starts or takes over the folder's PostgreSQL, creates the database; returns its URL. */
export async function startPostgres(ctx: StartContext, owned: Owned): Promise<string> {
  const { opts, bins, durability, log, pgData, sockDir } = ctx;
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
      // IDs compare byte by byte (the same order as C.UTF-8's, without the locale's string
      // comparison): a plan's registry lookups and lock inserts ~10% faster (README, Production).
      // Character classes and case (regexes, lower()) keep C.UTF-8's Unicode rules (LC_CTYPE).
      '--lc-collate=C',
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
    const logFile = join(pgData, 'server.log');
    const logFrom = sizeOf(logFile);
    const r = asPostgres(bins.pgCtl, pgCtlStart(pgData, pgPort, sockDir, wanted));
    const pid = postmasterPid(pgData);
    if (!r.ok || pid === undefined) {
      if (pid !== undefined) owned.pg = { pid, port: pgPort, adopted: false };
      throw postgresStartProblem(r.out, pgPort, logFile, linesSince(logFile, logFrom));
    }
    owned.pg = { pid, port: readPostmasterPort(pgData) ?? pgPort, adopted: false };
  }
  owned.pg.locate = () => postmasterPid(pgData);
  owned.pg.startAgain = shellCommand([
    ...(isRoot() ? ['runuser', '-u', 'postgres', '--'] : []),
    bins.pgCtl,
    ...pgCtlStart(pgData, owned.pg.port, sockDir, wanted),
  ]);
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
  return `${root}/${database}`;
}

/**
 * pg_ctl's arguments to start the PostgreSQL of this data folder: the start's, and the command an
 * operator is given to start it again by hand while the API runs.
 */
function pgCtlStart(pgData: string, port: number, sockDir: string, durability: 'on' | 'off'): string[] {
  const conf = [
    `-p ${port} -h 127.0.0.1 -k ${sockDir}`,
    ...DURABILITY_SETTINGS.map((s) => `-c ${s}=${durability}`),
    '-c max_connections=300 -c shared_buffers=256MB',
  ].join(' ');
  return ['-D', pgData, '-l', join(pgData, 'server.log'), '-o', conf, '-w', '-t', '60', 'start'];
}

/** The postmaster's pid when a PostgreSQL is running on this data folder. */
export function postmasterPid(pgData: string): number | undefined {
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

/**
 * Why pg_ctl could not start PostgreSQL, from what it and the server wrote in this start: a port in
 * use is a configuration error naming BLASTGATE_EMBEDDED_PG_PORT (exit 2, no stack trace); anything
 * else an error quoting the log.
 */
function postgresStartProblem(pgCtlOut: string, port: number, logFile: string, lines: string[]): Error {
  if (lines.some((l) => /Address already in use/i.test(l))) {
    const telling = lines.filter(
      (l) => /^\S.*\b(FATAL|LOG|WARNING|HINT|ERROR):/.test(l) && !/starting PostgreSQL/.test(l),
    );
    const quoted = (telling.length ? telling : lines).map((l) => `      ${l}`).join('\n');
    return new ConfigError([
      `BLASTGATE_EMBEDDED_PG_PORT: the local PostgreSQL cannot listen on 127.0.0.1:${port}, another process uses that port. ` +
        `Stop it or choose another BLASTGATE_EMBEDDED_PG_PORT (0 picks a free port); ${logFile} says:\n${quoted}`,
    ]);
  }
  return new Error(`PostgreSQL did not start:\n${pgCtlOut}\n${lines.slice(-20).join('\n')}`);
}
