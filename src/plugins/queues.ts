// BullMQ producers and the lifecycle engine for the API process: commands (start, resume,
// rollback…) decide through the engine, which queues work and publishes halt notices after its
// transaction commits.
import fp from 'fastify-plugin';
import type pg from 'pg';
import type { Engine } from '../modules/execution/engine.ts';
import { pgEngine } from '../modules/execution/engine-store.ts';
import { createQueues, type Queues } from '../modules/execution/queues.ts';

declare module 'fastify' {
  interface FastifyInstance {
    engine: Engine<pg.PoolClient>;
  }
}

export default fp<{ prefix: string }>(
  async (app, opts) => {
    const queues: Queues = createQueues(app.redis, opts.prefix);
    app.decorate(
      'engine',
      pgEngine({
        // Operator commands decide on the control pool, which uploads and reads cannot exhaust.
        pool: app.db.control.pool,
        queues,
        publisher: app.redis,
        channel: `${opts.prefix}:halt`,
        metrics: app.metrics,
        log: app.log,
      }),
    );
    app.addHook('onClose', async () => queues.close());
  },
  { name: 'queues', dependencies: ['db', 'redis', 'metrics'] },
);
