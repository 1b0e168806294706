// The BullMQ consumers of the `items` and `control` queues: each job runs under its job lock
// (exclusive.ts) and routes to its step (chunk, settle, drill, bake, rollback). Kept apart from
// worker-runtime.ts, which owns the process's resources and their shutdown order; here only
// what a job needs and how its failures are reported.
import { DelayedError, Worker, type Job } from 'bullmq';
import type { FastifyBaseLogger } from 'fastify';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import { isTransient } from '../../lib/transient.ts';
import type { Metrics } from '../../plugins/metrics.ts';
import { destroyKeysOf } from '../erasure/keys.ts';
import { recordThrottle } from '../operations/repository.ts';
import { pgThroughputRecorder } from '../operations/restore-estimate.ts';
import { registryFollows } from '../purges/retention.ts';
import type { SnapshotStore } from '../snapshots/store.ts';
import type { AdapterCache } from './adapters-cache.ts';
import { processBake } from './bake.ts';
import { pgBakeStore } from './bake-store.ts';
import type { CallSlots } from './call-slots.ts';
import { processChunk, quarantineChunk, settleIfDone, type ChunkDeps } from './chunk.ts';
import { processDrill } from './drill.ts';
import { pgDrillStore } from './drill-store.ts';
import type { Engine } from './engine.ts';
import type { JobLocks } from './exclusive.ts';
import type { HaltWatch } from './halt-watch.ts';
import type { Ledger } from './ledger.ts';
import { protectedNow, protectionChangedSince } from './protected-now.ts';
import { changedSincePlan, childrenHoldingBack, parentsOf } from './changed-since-plan.ts';
import { childrenOutstanding } from './purge-children.ts';
import { newChildren } from './new-children.ts';
import { JOB_ATTEMPTS, QUEUE_NAMES, type ChunkJob, type ControlJob, type Queues } from './queues.ts';
import { pgRollbackLedger } from './rollback-ledger.ts';
import { processRollback } from './rollback.ts';
import { errorsTo, outageLog, type OutageLog } from '../../lib/outage-log.ts';
import { supersededItems } from './rollback-superseded.ts';
import type { OperationRecord } from './state.ts';
import type { VelocityLimiter } from './velocity.ts';

/** How often, at most, a worker looks for jobs whose worker died (BullMQ's stalled check). */
export const STALLED_CHECK_MS = 5_000;

export interface ConsumerDeps {
  pool: pg.Pool;
  prefix: string;
  /** Chunk jobs at once; control jobs (bakes, rollbacks, settles, drills) at once. */
  concurrency: number;
  controlConcurrency: number;
  lockDuration: number;
  leaseMs: number;
  itemsConn: Redis;
  controlConn: Redis;
  locks: JobLocks;
  /**
   * This process's runner ID (exclusive.ts), given to its chunk worker as its BullMQ name: a chunk
   * job then says which process has it (processedBy), and the reconciler can tell one whose process
   * died while BullMQ still holds it under that worker's job lock (stopped-holds.ts).
   */
  runner?: string;
  load: (opId: string) => Promise<OperationRecord | undefined>;
  ledger: Ledger;
  engine: Engine<pg.PoolClient>;
  adapters: AdapterCache;
  watch: HaltWatch;
  velocity: VelocityLimiter;
  slots: CallSlots;
  snapshots: SnapshotStore;
  queues: Queues;
  clock: () => number;
  metrics?: Metrics;
  logger: FastifyBaseLogger;
  /** The process's log of Redis outages: a lost connection is said there, once per outage. */
  redisOutage?: OutageLog;
}

export interface Consumers {
  items: Worker<ChunkJob>;
  control: Worker<ControlJob>;
  /** Jobs being processed here (close() waits for them without relying on BullMQ's close). */
  inHand(): number;
  /** Resolves once no job is in hand (at once when none is). */
  drained(): Promise<void>;
}

/** The step-job pattern: the same job comes back after `delayMs` (its attempts are not used up). */
export async function later(job: Job, token: string | undefined, delayMs: number): Promise<never> {
  await job.moveToDelayed(Date.now() + delayMs, token);
  throw new DelayedError();
}

/**
 * BullMQ's word that a job's lock went while the job ran (Redis was away, or the process stalled
 * past the lock): logged as errors with stacks after every Redis return, read as failures by an
 * operator (a trial), though the job's run is fenced (exclusive.ts) and the stalled-job check or the
 * reconciler hands the job on with nothing lost.
 */
const LOCK_LOST = /Missing lock for job|could not renew lock for job/i;
const LOCK_LOST_SAID =
  "a job's lock was lost (Redis was away, or the job outlived its lock): its run is fenced and another worker takes the job over; nothing is lost";

/**
 * A worker's error as the log says it: a lost job lock is a warning with BullMQ's message and no
 * stack (a trial's log after a Redis kill -9 was pages of stacks for what is expected and
 * harmless); anything else an error with its stack.
 */
export function logWorkerError(logger: Pick<FastifyBaseLogger, 'warn' | 'error'>, err: Error): void {
  if (LOCK_LOST.test(err.message)) logger.warn({ detail: err.message }, LOCK_LOST_SAID);
  else logger.error({ err }, 'worker error');
}

/**
 * Renews the run's own job lock while it runs, beside BullMQ's renewal, which tracks locks by job
 * ID: a job that moved itself back with no delay (`later(0)`: a rollback handing its slot back) is
 * fetched again by another slot of this worker while its first run still releases its session
 * lock, and the first run's end then untracked the second run's lock. Nothing renewed it: it lapsed,
 * the stalled-job check handed the job out again while it ran, and its next move failed with
 * "Missing lock" — every ~64 s of a long rollback (a new-user trial). A renewal refused (another
 * run holds the lock now) or failed (Redis away) changes nothing here: the run is fenced by its
 * session lock (exclusive.ts).
 */
export async function keepingLock<T>(
  job: Job,
  token: string | undefined,
  lockMs: number,
  run: () => Promise<T>,
): Promise<T> {
  if (!token) return run();
  const renew = setInterval(() => void job.extendLock(token, lockMs).catch(() => undefined), lockMs / 2);
  renew.unref();
  try {
    return await run();
  } finally {
    clearInterval(renew);
  }
}

export function startConsumers(d: ConsumerDeps): Consumers {
  const { pool, snapshots, engine, adapters, load, clock } = d;
  const readSnapshots = (ids: number[]) => snapshots.get(pool, ids);
  const chunkDeps = (job: Job, token: string | undefined): ChunkDeps<pg.PoolClient> => ({
    load,
    ledger: d.ledger,
    engine,
    adapters,
    watch: d.watch,
    velocity: d.velocity,
    throttled: (opId, cap, until) => recordThrottle(pool, opId, cap, until),
    slots: d.slots,
    // The same job, delayed (its ID, and so its epoch, stays: exclusive.ts); only how many times in
    // a row it waited for children is carried over, which sets its next wait (purge-children.ts).
    requeue: async (next: ChunkJob, delayMs) => {
      const data = job.data as ChunkJob;
      if ((next.waits ?? 0) !== (data.waits ?? 0)) {
        const { waits: _old, ...rest } = data;
        await job.updateData(next.waits ? { ...rest, waits: next.waits } : rest);
      }
      return later(job, token, delayMs);
    },
    clock,
    leaseMs: d.leaseMs,
    metrics: d.metrics,
    readSnapshots,
    eraseKeys: (tx, opId, seqs) => destroyKeysOf(tx, snapshots, opId, seqs),
    registryFollows,
    sameDb: { sql: (tx) => tx, put: (tx, opId, inputs) => snapshots.put(tx, opId, inputs, { keysExpected: false }) },
    protectedNow: (ids, approvedTenants) => protectedNow(pool, ids, approvedTenants),
    protectionChangedSince: (seen) => protectionChangedSince(pool, seen),
    changedSincePlan: (opId, seqs) => changedSincePlan(pool, opId, seqs),
    parentsOf: (ids) => parentsOf(pool, ids),
    childrenHoldingBack: (opId, items) => childrenHoldingBack(pool, opId, items),
    childrenOutstanding: (opId, parents, inChunk, wave) => childrenOutstanding(pool, opId, parents, inChunk, wave),
    newChildren: (opId, type, roots, known, under) => newChildren(pool, opId, type, roots, known, under),
  });
  const runControl = (
    job: Job<ControlJob>,
    token: string | undefined,
    fence: Parameters<typeof processRollback>[2],
  ) => {
    const j = job.data;
    if (j.kind === 'settle') return settleIfDone({ engine, ledger: d.ledger }, j.opId, j.wave);
    if (j.kind === 'drill')
      return processDrill({ load, store: pgDrillStore(pool), engine, adapters, readSnapshots }, j, fence);
    if (j.kind === 'bake') {
      return processBake(
        {
          load,
          ...pgBakeStore(pool),
          adapters,
          engine,
          enqueueControl: (job, delayMs) => d.queues.enqueueControl(job, delayMs),
          clock,
          log: d.logger,
        },
        j,
      );
    }
    return processRollback(
      {
        load,
        ledger: pgRollbackLedger(pool, d.leaseMs),
        leaseMs: d.leaseMs,
        engine,
        adapters,
        readSnapshots,
        later: (ms) => later(job, token, ms),
        clock,
        metrics: d.metrics,
        throughput: pgThroughputRecorder(pool),
        watch: d.watch,
        superseded: (id, picked) => supersededItems(pool, id, picked),
        parentsOf: (ids) => parentsOf(pool, ids),
      },
      j.opId,
      fence,
    );
  };

  // A job whose worker died is handed out again at the first stalled check after its lock ran out
  // (lockDuration after the last renewal). Checked every lockDuration, that was up to two of them:
  // after a `kill -9` mid-rollback the rollback sat still ~60 s after the restart, though no run held
  // it (a new-user trial). The check is one small script per worker: every 5 s at most.
  const common = {
    prefix: d.prefix,
    lockDuration: d.lockDuration,
    stalledInterval: Math.min(d.lockDuration, STALLED_CHECK_MS),
    maxStalledCount: 100,
  };
  let inHand = 0;
  let onDrained: (() => void) | undefined;
  const tracked = async (run: () => Promise<void>) => {
    inHand++;
    try {
      await run();
    } finally {
      if (--inHand === 0) onDrained?.();
    }
  };
  // A job started twice (possible after a Redis restart) must not run twice at once: see exclusive.ts.
  const items = new Worker<ChunkJob>(
    QUEUE_NAMES.items,
    (job, token) =>
      tracked(() =>
        keepingLock(job, token, d.lockDuration, () =>
          d.locks.run(job, token, (fence) => processChunk(chunkDeps(job, token), job.id!, job.data, fence)),
        ),
      ),
    { ...common, connection: d.itemsConn, concurrency: d.concurrency, ...(d.runner ? { name: d.runner } : {}) },
  );
  const control = new Worker<ControlJob>(
    QUEUE_NAMES.control,
    (job, token) =>
      tracked(() =>
        keepingLock(job, token, d.lockDuration, () =>
          d.locks.run(job, token, (fence) => runControl(job, token, fence)),
        ),
      ),
    { ...common, connection: d.controlConn, concurrency: d.controlConcurrency },
  );
  // While PostgreSQL or Redis is away every job in hand fails alike, and again at each retry: the
  // first failure is said, the rest counted until a job completes (outage-log.ts).
  const jobsAway = outageLog(d.logger, 'queue jobs');
  for (const w of [items, control]) w.on('completed', () => jobsAway.ok());
  items.on('failed', (job, err) => {
    if (!job || err instanceof DelayedError) return;
    const final = job.attemptsMade >= (job.opts.attempts ?? JOB_ATTEMPTS);
    jobsAway.caught(err, () =>
      d.logger.warn({ err, jobId: job.id, attemptsMade: job.attemptsMade, final }, 'chunk job failed'),
    );
    // A chunk that keeps failing for a reason of its own is quarantined: its open items fail with
    // that reason and count toward the halt policy. A dependency that is down is not such a reason:
    // the reconciler queues the chunk again once it is back.
    if (final && !isTransient(err)) {
      void quarantineChunk({ load, ledger: d.ledger, engine, clock }, job.id!, job.data, err.message).catch(
        (e: unknown) =>
          d.logger.error(
            { err: e, jobId: job.id },
            'could not quarantine a failing chunk; the reconciler will queue it again',
          ),
      );
    }
  });
  control.on('failed', (job, err) => {
    if (!job || err instanceof DelayedError) return;
    jobsAway.caught(err, () =>
      d.logger.warn({ err, jobId: job.id }, 'control job failed (retried; the reconciler re-arms it)'),
    );
  });
  for (const w of [items, control]) errorsTo(w, d.redisOutage, (err) => logWorkerError(d.logger, err));
  return {
    items,
    control,
    inHand: () => inHand,
    drained: () =>
      inHand === 0
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            onDrained = resolve;
          }),
  };
}
