// BullMQ producers for the API process: commands (start, resume, rollback…) queue work and
// publish halt notices after their transaction commits.
import fp from 'fastify-plugin';
import { createQueues, type Queues } from '../modules/execution/queues.ts';
import type { EngineDeps } from '../modules/execution/transitions.ts';

declare module 'fastify' {
  interface FastifyInstance {
    engine: EngineDeps;
  }
}

export default fp<{ prefix: string }>(
  async (app, opts) => {
    const queues: Queues = createQueues(app.redis, opts.prefix);
    app.decorate('engine', {
      pool: app.db.pool,
      queues,
      publisher: app.redis,
      channel: `${opts.prefix}:halt`,
      metrics: app.metrics,
      log: app.log,
    });
    app.addHook('onClose', async () => queues.close());
  },
  { name: 'queues', dependencies: ['db', 'redis', 'metrics'] },
);
