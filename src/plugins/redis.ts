// Redis: the connection BullMQ queues use to move work. Postgres stays the source of truth.
import fp from 'fastify-plugin';
import { Redis } from 'ioredis';
import { ConfigError, shownUrl } from '../config.ts';

declare module 'fastify' {
  interface FastifyInstance {
    redis: Redis;
  }
}

export function createRedis(url: string, forWorker = false): Redis {
  // Workers block on Redis and must retry forever instead of failing a command (BullMQ's rule).
  // Lazy: the first command (or BullMQ, which connects a client in 'wait') opens the connection,
  // so building the app (npm run openapi) needs no running Redis.
  return new Redis(url, { maxRetriesPerRequest: forWorker ? null : 3, lazyConnect: true });
}

/** How long a start waits for REDIS_URL's Redis to answer (it may be starting beside us). */
export const REDIS_START_WAIT_MS = 5_000;

/**
 * A ConfigError naming REDIS_URL (never its password) when the Redis it names does not answer
 * within `waitMs`, or refuses us (a wrong password, a database index it does not have); undefined
 * once it answers PING. Checked once at start-up, by the API and the worker: a Redis that goes away
 * later is an outage they ride out (the app's clients reconnect forever), but a REDIS_URL that
 * never led anywhere made the API start, log connection errors forever and move no work.
 */
export async function redisProblem(url: string, waitMs = REDIS_START_WAIT_MS): Promise<ConfigError | undefined> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const probe = new Redis(url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      connectTimeout: Math.max(500, Math.min(2_000, waitMs)),
    });
    // The event carries the cause (ECONNREFUSED, ENOTFOUND); the rejection only "Connection is closed".
    let cause: Error | undefined;
    probe.on('error', (e: Error) => (cause ??= e));
    let err: Error;
    try {
      await probe.connect();
      // ioredis selects the URL's database on connect but only emits the refusal and carries on
      // in database 0; asked here, it is an answer.
      await probe.select(Number(new URL(url).pathname.slice(1) || 0));
      await probe.ping();
      return undefined;
    } catch (e) {
      err = (e as Error).name === 'ReplyError' ? (e as Error) : (cause ?? (e as Error));
    } finally {
      probe.disconnect();
    }
    // Redis answered, and said no: waiting will not change that.
    if (err.name === 'ReplyError')
      return new ConfigError([
        `REDIS_URL (${shownUrl(url)}) is refused by Redis: ${err.message}; check the password and the database number`,
      ]);
    if (Date.now() >= deadline)
      return new ConfigError([
        `REDIS_URL (${shownUrl(url)}) cannot be reached (waited ${waitMs / 1000} s): ${err.message}; check the host and port, and that Redis runs there`,
      ]);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export default fp<{ url: string }>(
  async (app, opts) => {
    const redis = createRedis(opts.url);
    app.decorate('redis', redis);
    // Without a listener ioredis prints every reconnect failure to stderr; /readyz reports it too.
    redis.on('error', (err: Error) => app.log.warn({ err }, 'redis connection error'));
    app.addHook('onClose', async () => {
      await redis.quit().catch(() => redis.disconnect());
    });
  },
  { name: 'redis' },
);
