// Ctrl-C with Redis gone (an operator's first hour: Redis died, so they stop Blastgate to restart
// both). Closing BullMQ's consumers and QUIT waited for a Redis that never came back: the process
// sat out the whole shutdown timeout, then exited by force with status 1 ("shutdown did not finish
// within …"). Now a close that finds Redis unreachable waits for the work in hand only and drops
// the connections: the shutdown finishes on its own, with status 0.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiChild } from '../support/api-child.ts';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { startOwnRedis, type OwnRedis } from '../support/redis-server.ts';

let t: TestApp;
let redis: OwnRedis;
beforeAll(async () => {
  t = await buildTestApp();
  redis = await startOwnRedis();
});
afterAll(async () => {
  await t?.close();
  await redis?.destroy().catch(() => undefined);
});

describe('a graceful shutdown after Redis went away', () => {
  it.each(['SIGINT', 'SIGTERM'] as const)(
    '%s: the API and its workers close on their own, status 0',
    async (signal) => {
      await redis.start().catch(() => undefined);
      const api = await startApiChild({
        databaseUrl: t.databaseUrl,
        redisUrl: redis.url,
        queuePrefix: `bgt_gone_${Date.now().toString(36)}`,
        adminToken: t.tokens.admin,
        env: {
          BLASTGATE_WORKERS_IN_PROCESS: 'true',
          // Long enough that a close waiting for Redis ends by force, not by finishing.
          BLASTGATE_SHUTDOWN_TIMEOUT_MS: '20000',
          LOG_LEVEL: 'info',
        },
      });
      await redis.stop('SIGKILL');
      const status = await api.stop(signal);
      const out = api.output();
      expect(out).not.toContain('did not finish within');
      expect(out).toContain('Redis is unreachable: closing without waiting for the queues');
      expect(status, out).toBe(0);
    },
  );
});
