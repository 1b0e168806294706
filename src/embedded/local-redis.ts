// The local Redis 7 of a data folder: started (or taken over from an earlier start) on 127.0.0.1,
// append-only, never evicting.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, type Owned, type StartContext } from './local-services.ts';
import { isRunning } from './procs.ts';
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
        return Number.isInteger(p) && p > 0 && p !== stale ? p : undefined;
      },
      10_000,
      'redis-server pid file',
    );
    owned.redis = { pid, port: redisPort, adopted: false };
  }
  owned.redis.locate = () => redisPidIn(redisDir);
  log(`local Redis is up: pid ${owned.redis.pid}, 127.0.0.1:${owned.redis.port}, data in ${redisDir}`);
}

/** The pid of a redis-server running on this data folder (from its pid file), if any. */
export function redisPidIn(redisDir: string): number | undefined {
  const pidFile = join(redisDir, 'redis.pid');
  const p = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) : NaN;
  return isRunning(p, 'redis-server') ? p : undefined;
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
