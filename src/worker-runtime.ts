// Starts the execution workers: the BullMQ consumers of the `items` and `control` queues over the
// shared Postgres ledger (execution/consumers.ts), the halt watch, the reconciler, the CI intake
// queue's consumer, webhooks and retention; and closes them in order. Used by src/worker.ts
// (separate, scalable processes) and by src/server.ts in the zero-config start.
//
// A worker outlives its dependencies: a PostgreSQL or Redis restart fails the jobs in hand (they
// are retried with backoff, and the reconciler re-derives anything Redis lost), connections come
// back by themselves, and nothing here ends the process on a transient error.
import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import { assertMigrated, databaseAnswers, databaseProblem } from './db/migrate.ts';
import { backendLowering } from './lib/priority.ts';
import { unsignableTypes } from './modules/adapters/signing-check.ts';
import { closeDb, createDb } from './plugins/db.ts';
import { closeRedis, createRedis, failWhileDown, redisReachable } from './plugins/redis.ts';
import { createMetrics, type Metrics } from './plugins/metrics.ts';
import type { DownstreamPolicy } from './modules/adapters/index.ts';
import { AdapterCache } from './modules/execution/adapters-cache.ts';
import { startConsumers } from './modules/execution/consumers.ts';
import { startPurgeScheduler } from './modules/purges/scheduler.ts';
import { operationReads } from './modules/operations/repository.ts';
import { releaseEndedLocks } from './modules/operations/resource-locks.ts';
import { pruneChangeLogs } from './modules/execution/protected-now.ts';
import { pgEngine } from './modules/execution/engine-store.ts';
import { createJobLocks } from './modules/execution/exclusive.ts';
import { chunkJobsView, noteStoppedChunks, noteStoppedHolds } from './modules/execution/stopped-holds.ts';
import { settleAborted } from './modules/execution/settle-aborted.ts';
import { registryFollows } from './modules/purges/retention.ts';
import { pgRollbackLedger } from './modules/execution/rollback-ledger.ts';
import { HaltWatch } from './modules/execution/halt-watch.ts';
import { pgLedger } from './modules/execution/ledger.ts';
import { createQueues } from './modules/execution/queues.ts';
import { startReconcileLoop, type Reconciled } from './modules/execution/reconciler.ts';
import { loadOperation } from './modules/execution/state.ts';
import { createVelocityLimiter } from './modules/execution/velocity.ts';
import { callSlots } from './modules/execution/call-slots.ts';
import { checkSnapshotKey } from './modules/snapshots/key-check.ts';
import { prefixWarning, recordQueuePrefix } from './modules/execution/prefix-check.ts';
import { snapshotStore } from './modules/snapshots/store.ts';
import { startIntakeWorker } from './modules/intake/worker.ts';
import { startWebhooks } from './modules/webhooks/runtime.ts';
import { DEFAULT_WEBHOOK_SETTINGS, type WebhookSettings } from './modules/webhooks/settings.ts';
import { errorsTo, outageLog } from './lib/outage-log.ts';
import type { Redis } from 'ioredis';

export interface WorkerOptions {
  databaseUrl: string;
  redisUrl: string;
  queuePrefix: string;
  concurrency: number;
  /** Hosts http adapters may call and the secrets they sign with (config.ts → downstreamPolicy). */
  downstream: DownstreamPolicy;
  /** Master key of the snapshot store; checked against the database before any job runs. */
  snapshotKey: Buffer;
  logger: FastifyBaseLogger;
  metrics?: Metrics;
  /** BullMQ job lock: how soon a job whose worker died is taken over by another. */
  lockDurationMs?: number;
  /** How long an item claim stays exclusive without being renewed (default: 3 × the job lock, at least 5 s). */
  claimLeaseMs?: number;
  reconcileEveryMs?: number;
  clock?: () => number;
  /**
   * The retention scheduler's cron (purges/scheduler.ts): a string runs it, null removes the
   * schedule (off); undefined leaves the schedule alone and runs none here (tests, benches).
   */
  purgeProposalCron?: string | null;
  /** Webhook deliveries (retries, backoff, request deadline, dispatch interval); default DEFAULT_WEBHOOK_SETTINGS. */
  webhooks?: WebhookSettings;
  /**
   * Nice value for the PostgreSQL backends of the workers' connections when PostgreSQL runs on this
   * machine (BLASTGATE_WORKER_NICE; lowerLocalBackend); 0 or undefined: left alone.
   */
  backendNice?: number;
}

export interface RunningWorkers {
  /** This process's runner ID: its lock sessions and its runs' claim tokens carry it (exclusive.ts). */
  runner: string;
  close(): Promise<void>;
  reconcile(): Promise<Reconciled>;
}

export const haltChannel = (prefix: string) => `${prefix}:halt`;

/** How long close() lets BullMQ tear its consumers down once no job is in hand. */
const CLOSE_GRACE_MS = 5_000;

export async function startWorkers(opts: WorkerOptions): Promise<RunningWorkers> {
  const clock = opts.clock ?? Date.now;
  const lockDuration = opts.lockDurationMs ?? 30_000;
  const leaseMs = opts.claimLeaseMs ?? Math.max(5_000, 3 * lockDuration);
  const controlConcurrency = Math.max(2, opts.concurrency);
  // One connection per job that may run at once, and two for the rest (halt watch, reconciler,
  // intake, webhooks), which hold theirs only for a statement. Not more: each new PostgreSQL backend
  // maps the shared buffers it reads page by page, and 4 more connections that a burst opens cost a
  // waves run 9,545–9,622 against 11,249–11,361 items/s in one process, 8,071–8,124 against
  // 10,709–10,873 with 2 worker processes (PostgreSQL CPU per item 100–135 against 86–106 µs;
  // `npm run bench -- waves`, 2 interleaved pairs, 2026-12-04; a third: 10,651–10,843 against
  // 9,633–9,903 in one process, no gain beyond the spread with 2 worker processes).
  const db = createDb(opts.databaseUrl, opts.concurrency + controlConcurrency + 2, {
    name: 'blastgate-worker',
    ...(opts.backendNice ? { afterConnect: backendLowering(opts.backendNice, opts.logger) } : {}),
  });
  try {
    await databaseAnswers(opts.databaseUrl);
    await assertMigrated(db.pool, opts.databaseUrl);
    await checkSnapshotKey(db.pool, opts.snapshotKey);
  } catch (err) {
    await closeDb(db);
    throw databaseProblem(err, opts.databaseUrl) ?? err;
  }
  const otherPrefixes = await recordQueuePrefix(db.pool, opts.queuePrefix, 'worker').catch(() => []);
  if (otherPrefixes.length)
    opts.logger.warn({ queuePrefix: opts.queuePrefix }, prefixWarning(opts.queuePrefix, otherPrefixes));
  for (const t of await unsignableTypes(db.pool, opts.downstream.secrets).catch(() => []))
    opts.logger.warn(t, `type ${t.type}: this worker cannot sign its adapter's calls, so its items fail here`);
  const snapshots = snapshotStore(opts.snapshotKey);
  const producer = createRedis(opts.redisUrl, true);
  const publisher = createRedis(opts.redisUrl);
  const subscriber = createRedis(opts.redisUrl, true);
  const itemsConn = createRedis(opts.redisUrl, true);
  const controlConn = createRedis(opts.redisUrl, true);
  const intakeConn = createRedis(opts.redisUrl, true);
  const webhooksConn = createRedis(opts.redisUrl, true);
  const redisConns = [producer, publisher, subscriber, itemsConn, controlConn, intakeConn, webhooksConn];
  // Every connection fails on every reconnect attempt while Redis is away: one log says it (outage-log.ts).
  // Named apart from the API's own (plugins/redis.ts): `npm start` runs both in one process.
  const redisOutage = outageLog(opts.logger, 'redis (workers)');
  const watchRedis = (r: Redis) => {
    errorsTo(r, redisOutage, (err) => opts.logger.warn({ err }, 'redis connection error'));
    r.on('ready', () => redisOutage.ok());
  };
  redisConns.forEach(watchRedis);

  const queues = createQueues(producer, opts.queuePrefix);
  const watch = new HaltWatch(db.pool, subscriber, haltChannel(opts.queuePrefix));
  await watch.start();
  const engine = pgEngine({
    pool: db.pool,
    queues,
    publisher,
    channel: haltChannel(opts.queuePrefix),
    clock,
    metrics: opts.metrics,
    log: opts.logger,
  });
  const adapters = new AdapterCache(db.pool, opts.downstream);
  const load = (opId: string) => loadOperation(db.pool, opId, false);
  const ledger = pgLedger(db.pool, leaseMs, snapshots);
  const runner = randomUUID();
  // A job started twice (possible after a Redis restart) must not run twice at once: see exclusive.ts.
  const locks = createJobLocks(opts.databaseUrl, opts.concurrency + controlConcurrency, lockDuration, runner);
  const consumers = startConsumers({
    pool: db.pool,
    prefix: opts.queuePrefix,
    concurrency: opts.concurrency,
    controlConcurrency,
    lockDuration,
    leaseMs,
    itemsConn,
    controlConn,
    redisOutage,
    locks,
    runner,
    load,
    ledger,
    engine,
    adapters,
    watch,
    velocity: createVelocityLimiter(producer, opts.queuePrefix, clock),
    slots: callSlots(),
    snapshots,
    queues,
    clock,
    metrics: opts.metrics,
    logger: opts.logger,
  });

  const chunkJobs = chunkJobsView(queues.items, producer);
  const loop = await startReconcileLoop({
    deps: {
      pool: db.pool,
      load,
      engine,
      enqueueChunks: (chunks) => queues.enqueueChunks(chunks),
      enqueueControl: (job, delayMs) => queues.enqueueControl(job, delayMs),
      noteStoppedHolds: (opId, seqs) => noteStoppedHolds(db.pool, opId, leaseMs, seqs, seqs && chunkJobs),
      noteStoppedChunks: (opId, seqs) => noteStoppedChunks(db.pool, chunkJobs, opId, seqs),
      settleAborted: () =>
        settleAborted({
          pool: db.pool,
          ledger,
          rollbacks: pgRollbackLedger(db.pool, leaseMs),
          registryFollows,
          engine,
          leaseMs,
          clock,
        }),
      clock,
    },
    everyMs: opts.reconcileEveryMs ?? 10_000,
    recovered: async () => {
      const moved = await queues.retryFailedNow();
      if (moved) opts.logger.info({ jobs: moved }, 'jobs that failed during the outage are retried now');
    },
    // The same minute's housekeeping drops the protection changes no look can need any more.
    releaseLocks: async () => {
      const released = await releaseEndedLocks(db.pool);
      await pruneChangeLogs(db.pool);
      return released;
    },
    logger: opts.logger,
  });
  const retentionConn = opts.purgeProposalCron === undefined ? undefined : createRedis(opts.redisUrl, true);
  if (retentionConn) watchRedis(retentionConn);
  const retention =
    opts.purgeProposalCron === undefined
      ? undefined
      : await startPurgeScheduler({
          connection: producer,
          workerConnection: retentionConn!,
          prefix: opts.queuePrefix,
          cron: opts.purgeProposalCron,
          deps: {
            pool: db.pool,
            reads: operationReads(db.pool),
            metrics: opts.metrics,
            log: opts.logger,
          },
          log: opts.logger,
          redisOutage,
        });

  const intake = startIntakeWorker({
    connection: intakeConn,
    prefix: opts.queuePrefix,
    pool: db.pool,
    reads: operationReads(db.pool),
    snapshotKey: opts.snapshotKey,
    metrics: opts.metrics ?? createMetrics(),
    log: opts.logger,
    lockDurationMs: lockDuration,
    redisOutage,
  });

  // Webhooks read the audit log and send on a queue of their own: never on an operation's path.
  const webhooks = await startWebhooks({
    pool: db.pool,
    producer,
    connection: webhooksConn,
    prefix: opts.queuePrefix,
    masterKey: opts.snapshotKey,
    allow: opts.downstream.allow,
    settings: opts.webhooks ?? DEFAULT_WEBHOOK_SETTINGS,
    logger: opts.logger,
    redisOutage,
  });

  return {
    runner,
    reconcile: loop.reconcile,
    async close() {
      // First of all: no destructive call starts from here on; the chunks in hand hand back what
      // they have not sent (halt-watch.ts shutDown), so the wait below is for calls in flight only.
      watch.shutDown();
      loop.stop();
      // With Redis unreachable (down, restarting), nothing that talks to it can finish closing: the
      // jobs in hand are waited for, BullMQ is not, and the connections are dropped (a Ctrl-C with
      // Redis gone used to wait out the whole shutdown timeout, then exit by force).
      const reachable = () => redisReachable(redisConns);
      if (!reachable()) opts.logger.warn('Redis is unreachable: closing without waiting for the queues');
      await webhooks.close({ redisReachable: reachable() });
      const retentionClosed = retention
        ?.close()
        .catch((err: unknown) => opts.logger.warn({ err }, 'closing the retention scheduler failed'));
      if (reachable()) await retentionClosed;
      retentionConn?.disconnect();
      // BullMQ stops fetching at once; the jobs in hand finish first (graceful). BullMQ's close
      // then waits for its blocking connection to end, which never happens when that connection
      // is between two reconnect attempts (Redis down or just restarted): that wait is bounded.
      const closing = Promise.all([consumers.items.close(), consumers.control.close(), intake.close()]).catch(
        (err: unknown) => opts.logger.warn({ err }, 'closing the queue consumers failed'),
      );
      if (consumers.inHand() > 0) {
        // Redis gone (now, or while the jobs finish): their Redis commands fail instead of waiting.
        const failFast = setInterval(() => {
          if (reachable()) return;
          for (const r of redisConns) failWhileDown(r);
          clearInterval(failFast);
        }, 100);
        await consumers.drained();
        clearInterval(failFast);
      }
      let graceTimer: NodeJS.Timeout | undefined;
      const settled = await Promise.race([
        closing.then(() => true),
        new Promise<boolean>((resolve) => {
          graceTimer = setTimeout(() => resolve(false), reachable() ? CLOSE_GRACE_MS : 0);
        }),
      ]);
      clearTimeout(graceTimer);
      if (!settled)
        opts.logger.warn('queue consumers did not finish closing (Redis unreachable?); closing their connections');
      const queuesClosed = Promise.all([watch.stop(), queues.close()]).catch(() => undefined);
      if (reachable()) await queuesClosed;
      await adapters.close();
      await locks.close();
      await Promise.all(redisConns.map(closeRedis));
      await closeDb(db);
    },
  };
}
