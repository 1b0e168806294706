// Redis: the connection BullMQ queues use to move work. Postgres stays the source of truth.
import fp from 'fastify-plugin';
import { Redis } from 'ioredis';

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
