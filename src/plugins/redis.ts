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
  return new Redis(url, { maxRetriesPerRequest: forWorker ? null : 3, lazyConnect: false });
}

export default fp<{ url: string }>(
  async (app, opts) => {
    const redis = createRedis(opts.url);
    app.decorate('redis', redis);
    app.addHook('onClose', async () => {
      await redis.quit().catch(() => redis.disconnect());
    });
  },
  { name: 'redis' },
);
