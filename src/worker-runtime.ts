// Starts the execution workers: BullMQ consumers of the `items` and `control` queues over the
// shared Postgres ledger, the halt watch, and the reconciler. Used by src/worker.ts (separate,
// scalable processes) and by src/server.ts in the zero-config start.
import { Worker } from 'bullmq';
import type { FastifyBaseLogger } from 'fastify';
import { closeDb, createDb } from './plugins/db.ts';
import { createRedis } from './plugins/redis.ts';
import type { Metrics } from './plugins/metrics.ts';
import { AdapterCache } from './modules/execution/adapters-cache.ts';
import { processChunk, type WorkerDeps } from './modules/execution/chunk.ts';
import { processControl } from './modules/execution/control.ts';
import { HaltWatch } from './modules/execution/halt-watch.ts';
import { createJobLocks } from './modules/execution/exclusive.ts';
import { createQueues, QUEUE_NAMES, type ChunkJob, type ControlJob } from './modules/execution/queues.ts';
import { reconcileOnce } from './modules/execution/reconciler.ts';

export interface WorkerOptions {
  databaseUrl: string;
  redisUrl: string;
  queuePrefix: string;
  concurrency: number;
  signingSecret: string | undefined;
  logger: FastifyBaseLogger;
  metrics?: Metrics;
  /** BullMQ job lock: how soon a job whose worker died is taken over by another. */
  lockDurationMs?: number;
  reconcileEveryMs?: number;
}

export interface RunningWorkers {
  close(): Promise<void>;
  reconcile(): Promise<{ chunks: number; control: number }>;
}

export const haltChannel = (prefix: string) => `${prefix}:halt`;

/** How long close() lets BullMQ tear its consumers down once no job is in hand. */
const CLOSE_GRACE_MS = 5_000;

export async function startWorkers(opts: WorkerOptions): Promise<RunningWorkers> {
  const db = createDb(opts.databaseUrl, opts.concurrency * 2 + 6);
  const producer = createRedis(opts.redisUrl, true);
  const publisher = createRedis(opts.redisUrl);
  const subscriber = createRedis(opts.redisUrl, true);
  const itemsConn = createRedis(opts.redisUrl, true);
  const controlConn = createRedis(opts.redisUrl, true);
  for (const r of [producer, publisher, subscriber, itemsConn, controlConn])
    r.on('error', (err: Error) => opts.logger.warn({ err }, 'redis connection error'));

  const queues = createQueues(producer, opts.queuePrefix);
  const watch = new HaltWatch(db.pool, subscriber, haltChannel(opts.queuePrefix));
  await watch.start();
  const deps: WorkerDeps = {
    pool: db.pool,
    engine: {
      pool: db.pool,
      queues,
      publisher,
      channel: haltChannel(opts.queuePrefix),
      metrics: opts.metrics,
      log: opts.logger,
    },
    watch,
    adapters: new AdapterCache(db.pool, opts.signingSecret),
    redis: producer,
    prefix: opts.queuePrefix,
    metrics: opts.metrics,
  };
  const common = {
    prefix: opts.queuePrefix,
    lockDuration: opts.lockDurationMs ?? 30_000,
    stalledInterval: opts.lockDurationMs ?? 30_000,
    maxStalledCount: 100,
  };
  // Jobs being processed here, so that close() can wait for them without relying on BullMQ's close.
  let inHand = 0;
  let drained: (() => void) | undefined;
  const tracked = async (run: () => Promise<void>) => {
    inHand++;
    try {
      await run();
    } finally {
      if (--inHand === 0) drained?.();
    }
  };
  const controlConcurrency = Math.max(2, opts.concurrency);
  // A job started twice (possible after a Redis restart) must not run twice at once: see exclusive.ts.
  const locks = createJobLocks(
    opts.databaseUrl,
    opts.queuePrefix,
    opts.concurrency + controlConcurrency,
    common.lockDuration,
  );
  const items = new Worker<ChunkJob>(
    QUEUE_NAMES.items,
    (job, token) => tracked(() => locks.run(job, token, () => processChunk(deps, job, token))),
    { ...common, connection: itemsConn, concurrency: opts.concurrency },
  );
  const control = new Worker<ControlJob>(
    QUEUE_NAMES.control,
    (job, token) => tracked(() => locks.run(job, token, () => processControl(deps, job))),
    { ...common, connection: controlConn, concurrency: controlConcurrency },
  );
  for (const w of [items, control]) {
    w.on('failed', (job, err) =>
      opts.logger.warn({ err, jobId: job?.id }, 'job failed (will retry while attempts remain)'),
    );
    w.on('error', (err) => opts.logger.error({ err }, 'worker error'));
  }

  const reconcile = () => reconcileOnce(deps);
  const every = opts.reconcileEveryMs ?? 10_000;
  let reconciling = false;
  const timer = setInterval(() => {
    if (reconciling) return;
    reconciling = true;
    reconcile()
      .catch((err: unknown) => opts.logger.warn({ err }, 'reconcile failed'))
      .finally(() => {
        reconciling = false;
      });
  }, every);
  timer.unref();
  // Work that was queued before this process started, or lost with a Redis restart.
  await reconcile().catch((err: unknown) => opts.logger.warn({ err }, 'initial reconcile failed'));

  return {
    reconcile,
    async close() {
      clearInterval(timer);
      // BullMQ stops fetching at once; the jobs in hand finish first (graceful). BullMQ's close
      // then waits for its blocking connection to end, which never happens when that connection
      // is between two reconnect attempts (Redis down or just restarted): that wait is bounded.
      const closing = Promise.all([items.close(), control.close()]).catch((err: unknown) =>
        opts.logger.warn({ err }, 'closing the queue consumers failed'),
      );
      if (inHand > 0)
        await new Promise<void>((resolve) => {
          drained = resolve;
        });
      let graceTimer: NodeJS.Timeout | undefined;
      const settled = await Promise.race([
        closing.then(() => true),
        new Promise<boolean>((resolve) => {
          graceTimer = setTimeout(() => resolve(false), CLOSE_GRACE_MS);
        }),
      ]);
      clearTimeout(graceTimer);
      if (!settled)
        opts.logger.warn('queue consumers did not finish closing (Redis unreachable?); closing their connections');
      await watch.stop();
      await queues.close();
      await deps.adapters.close();
      await locks.close();
      await Promise.all(
        [producer, publisher, subscriber, itemsConn, controlConn].map((r) => r.quit().catch(() => r.disconnect())),
      );
      await closeDb(db);
    },
  };
}
