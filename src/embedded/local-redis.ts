// The local Redis 7 of a data folder: started (or taken over from an earlier start) on 127.0.0.1,
// append-only, never evicting.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../config.ts';
import { freePort, type Owned, type StartContext } from './local-services.ts';
import { isRunning, linesSince, shellCommand, sizeOf } from './procs.ts';
import { redisStop, stopOne } from './stop.ts';

/** Starts or takes over the folder's Redis. */
export async function startRedis(ctx: StartContext, owned: Owned): Promise<void> {
  const { opts, bins, log, redisDir } = ctx;
  const pidFile = join(redisDir, 'redis.pid');
  const portFile = join(redisDir, 'port');
  // The pid a stale file names (its server gone) is not the new server's: see the wait below.
  const stale = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) : undefined;
  const leftRedis = redisPidIn(redisDir);
  if (leftRedis !== undefined) {
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
    const logFile = join(redisDir, 'redis.log');
    const logFrom = sizeOf(logFile);
    // In the foreground (not --daemonize), in a session of its own like a daemon, so that a
    // redis-server that cannot start is seen to exit at once, with its reason in its log: a port
    // in use used to show as "timed out waiting for redis-server pid file" 10 s later.
    const child = spawn(bins.redisServer, redisArgs(redisPort, redisDir, false), { detached: true, stdio: 'ignore' });
    child.unref();
    let ended: string | undefined;
    child.once('error', (err) => (ended = `could not be run: ${err.message}`));
    child.once('exit', (code, signal) => (ended = signal ? `was ended by ${signal}` : `exited with code ${code}`));
    writeFileSync(portFile, String(redisPort));
    const pid = await waitFor(
      () => {
        if (ended !== undefined) throw redisStartProblem(ended, redisPort, logFile, logFrom, child.pid);
        const p = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) : NaN;
        return Number.isInteger(p) && p > 0 && p !== stale ? p : undefined;
      },
      10_000,
      'redis-server pid file',
    ).catch((err: unknown) => {
      // Not up in time: the one we started must not stay behind, unowned.
      if (ended === undefined) child.kill('SIGKILL');
      throw err;
    });
    owned.redis = { pid, port: redisPort, adopted: false };
  }
  owned.redis.locate = () => redisPidIn(redisDir);
  owned.redis.startAgain = shellCommand([bins.redisServer, ...redisArgs(owned.redis.port, redisDir, true)]);
  log(`local Redis is up: pid ${owned.redis.pid}, 127.0.0.1:${owned.redis.port}, data in ${redisDir}`);
}

/**
 * redis-server's arguments for this data folder: the start's (in the foreground, watched) and the
 * command an operator is given to start it again by hand (as a daemon) while the API runs.
 */
function redisArgs(port: number, redisDir: string, daemonize: boolean): string[] {
  return [
    '--port',
    String(port),
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
    daemonize ? 'yes' : 'no',
    '--pidfile',
    join(redisDir, 'redis.pid'),
    '--logfile',
    join(redisDir, 'redis.log'),
    '--save',
    '',
  ];
}

/** The pid of a redis-server running on this data folder (from its pid file), if any. */
export function redisPidIn(redisDir: string): number | undefined {
  const pidFile = join(redisDir, 'redis.pid');
  const p = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) : NaN;
  return isRunning(p, 'redis-server') ? p : undefined;
}

/**
 * Why a redis-server that ended during its start did so, from the lines it wrote to its log in
 * this start: a port in use is a configuration error naming BLASTGATE_EMBEDDED_REDIS_PORT (exit 2,
 * no stack trace); anything else an error quoting the log.
 */
function redisStartProblem(
  ended: string,
  port: number,
  logFile: string,
  logFrom: number,
  pid: number | undefined,
): Error {
  const lines = linesSince(logFile, logFrom).filter((l) => pid === undefined || l.startsWith(`${pid}:`));
  const telling = lines.filter(
    (l) => / # /.test(l) && !/Redis is starting|Redis version=|Configuration loaded/.test(l),
  );
  const quoted = (telling.length ? telling : lines.slice(-5)).map((l) => `      ${l}`).join('\n');
  const from = quoted ? `; ${logFile} says:\n${quoted}` : ` (nothing in ${logFile})`;
  if (lines.some((l) => /Address already in use/i.test(l)))
    return new ConfigError([
      `BLASTGATE_EMBEDDED_REDIS_PORT: the local Redis cannot listen on 127.0.0.1:${port}, another process uses that port. ` +
        `Stop it or choose another BLASTGATE_EMBEDDED_REDIS_PORT (0 picks a free port)${from}`,
    ]);
  return new Error(`the local Redis did not start: redis-server ${ended}${from}`);
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
