// BullMQ producers and the lifecycle engine for the API process: commands (start, resume,
// rollback…) decide through the engine, which queues work and publishes halt notices after its
// transaction commits.
import fp from 'fastify-plugin';
import type pg from 'pg';
import type { Engine } from '../modules/execution/engine.ts';
import { pgEngine } from '../modules/execution/engine-store.ts';
import { createQueues, type Queues } from '../modules/execution/queues.ts';
import { redisReachable } from './redis.ts';
import { workerPresence } from '../modules/execution/worker-presence.ts';
import { otherPrefixesText, otherQueuePrefixes } from '../modules/execution/prefix-check.ts';
import { memo, OTHER_PREFIXES_MEMO } from '../lib/memo.ts';
import { NO_HOLDS, QUEUED_STATES, type QueueHolds } from '../modules/operations/waiting.ts';

declare module 'fastify' {
  interface FastifyInstance {
    engine: Engine<pg.PoolClient>;
    /**
     * What holds an operation in `state`, as this process sees it (its view's `waiting`): Redis
     * lost, no worker connected, or no outcome since `lastProgressAt`. Asks Redis only for a
     * queued state.
     */
    queueHolds: (state: string, lastProgressAt?: Date | null) => Promise<QueueHolds>;
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
    // Chunks are what move an operation: a process that runs none takes no work from it.
    const workers = workerPresence(queues.items);
    // Read only while no worker is seen, and once per few seconds: a view polled hundreds of times
    // a second does not read settings each time.
    const prefixes = memo<string>(OTHER_PREFIXES_MEMO);
    const otherPrefixes = () =>
      prefixes.get('', async () => {
        const others = await otherQueuePrefixes(app.db.pool, opts.prefix).catch(() => []);
        return others.length ? otherPrefixesText(opts.prefix, others) : '';
      });
    app.decorate('queueHolds', async (state: string, lastProgressAt: Date | null = null) => {
      if (!QUEUED_STATES.has(state)) return NO_HOLDS;
      // Redis lost: that is the reason, and asking it who is connected would wait for a timeout.
      const lost = app.queueDownSince();
      const counted = lost ? null : await workers.noneSince();
      // Its connection open and nothing answering: as much a reason, and no count is known then.
      const hung = lost ? null : workers.hungSince();
      const noWorkersSince = hung ? null : counted;
      return {
        queueDownSince: lost ?? hung,
        ...(hung ? { queueHung: true } : {}),
        noWorkersSince,
        lastProgressAt,
        queueBackAt: app.queueBackAt(),
        ...(noWorkersSince ? { otherPrefixes: await otherPrefixes() } : {}),
      };
    });
    // Redis unreachable: BullMQ's close would wait for it to come back; the redis plugin drops
    // the connection next.
    app.addHook('onClose', async () => {
      if (redisReachable([app.redis])) await queues.close();
    });
  },
  { name: 'queues', dependencies: ['db', 'redis', 'metrics'] },
);
