// An embedded-mode port another process already uses is a configuration error: exit 2, naming
// the variable and quoting why the local server could not start, with no stack trace, and what
// the start had begun is stopped. A Redis port in use used to end, 10 s after PostgreSQL started,
// in "timed out waiting for redis-server pid file" and a stack trace (exit 1), the cause only in
// redis.log; a PostgreSQL port in use in pg_ctl's error and a stack trace (exit 1).
import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../../src/embedded/local-services.ts';
import {
  cleanUp,
  pidAlive,
  postmasterPid,
  redisPid,
  serversRunning,
  spawnServer,
  tempDataDir,
  type ServerChild,
} from './helpers.ts';

async function holdPort(): Promise<{ port: number; server: Server }> {
  const port = await freePort();
  const server = createServer();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return { port, server };
}

/** The exit code, or 'still running' after `ms` (no assertion on how long it took). */
function exitedWithin(server: ServerChild, ms = 90_000) {
  return Promise.race([server.exited, new Promise((r) => setTimeout(() => r('still running'), ms))]);
}

describe('an embedded-mode port already in use', () => {
  let dir: string;
  let server: ServerChild | undefined;
  let held: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((r) => (held ? held.close(() => r()) : r()));
    held = undefined;
    await cleanUp(dir, server);
    server = undefined;
  });

  it(
    'BLASTGATE_EMBEDDED_REDIS_PORT: exit 2 naming it and quoting redis.log, the PostgreSQL already started is stopped',
    { timeout: 180_000 },
    async () => {
      dir = tempDataDir();
      const { port, server: holder } = await holdPort();
      held = holder;
      server = await spawnServer(dir, { BLASTGATE_EMBEDDED_REDIS_PORT: String(port) });
      expect(await exitedWithin(server)).toBe(2);
      const out = server.output();
      expect(out).toContain(
        `BLASTGATE_EMBEDDED_REDIS_PORT: the local Redis cannot listen on 127.0.0.1:${port}, another process uses that port`,
      );
      expect(out).toContain(`${dir}/redis/redis.log says:`);
      expect(out).toMatch(
        new RegExp(
          `Could not create server TCP listening socket 127\\.0\\.0\\.1:${port}: bind: Address already in use`,
        ),
      );
      expect(out).not.toMatch(/timed out waiting|^\s+at /m);
      // PostgreSQL had started: stopped again, and said so.
      expect(out).toMatch(/local PostgreSQL is up: pid \d+/);
      const pg = Number(/local PostgreSQL is up: pid (\d+)/.exec(out)![1]);
      expect(out).toContain(`stopped the local PostgreSQL (pid ${pg})`);
      expect(pidAlive(pg)).toBe(false);
      expect(serversRunning(dir, port)).toEqual([]);
    },
  );

  it(
    'BLASTGATE_EMBEDDED_PG_PORT: exit 2 naming it and quoting the PostgreSQL log, nothing left running',
    { timeout: 180_000 },
    async () => {
      dir = tempDataDir();
      const { port, server: holder } = await holdPort();
      held = holder;
      server = await spawnServer(dir, { BLASTGATE_EMBEDDED_PG_PORT: String(port) });
      expect(await exitedWithin(server)).toBe(2);
      const out = server.output();
      expect(out).toContain(
        `BLASTGATE_EMBEDDED_PG_PORT: the local PostgreSQL cannot listen on 127.0.0.1:${port}, another process uses that port`,
      );
      expect(out).toContain(`${dir}/pg/server.log says:`);
      expect(out).toMatch(/could not bind IPv4 address "127\.0\.0\.1": Address already in use/);
      expect(out).not.toMatch(/^\s+at /m);
      const pg = postmasterPid(dir);
      const redis = redisPid(dir);
      expect(pg === undefined || !pidAlive(pg)).toBe(true);
      expect(redis === undefined || !pidAlive(redis)).toBe(true);
      expect(serversRunning(dir, server.redisPort)).toEqual([]);
    },
  );
});
