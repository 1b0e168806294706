// The chunk job: claim a seq range of one wave in the ledger, snapshot, mark write-ahead, act
// through the adapter (which checks the halt state before every destructive call), record the
// outcomes with the wave counters, and report them to the lifecycle. Thin: decisions are decide()'s.
import type { Job } from 'bullmq';
import { DelayedError } from 'bullmq';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import { AppError } from '../../lib/errors.ts';
import { assessWave } from '../operations/lifecycle.ts';
import type { Metrics } from '../../plugins/metrics.ts';
import { idempotencyKeyFor, isSkipped, type AdapterItem, type ItemResult } from '../adapters/index.ts';
import type { AdapterCache } from './adapters-cache.ts';
import { applyWithBreaker } from './breaker.ts';
import type { HaltWatch } from './halt-watch.ts';
import { claimRange, prepareExecution, recordOutcomes, type Outcome } from './ledger.ts';
import { chunkJobId, type ChunkJob } from './queues.ts';
import { loadOperation, loadWave } from './state.ts';
import { applyEvent, type EngineDeps } from './transitions.ts';

export interface WorkerDeps {
  pool: pg.Pool;
  engine: EngineDeps;
  watch: HaltWatch;
  adapters: AdapterCache;
  redis: Redis;
  prefix: string;
  metrics?: Metrics;
}

const SYSTEM = { name: 'system' };
/** Snapshot reads may run this many times the destructive concurrency. */
const SNAPSHOT_FANOUT = 4;
/** Before a range handed back unsent is tried again (see requeueIfRunning). */
const REQUEUE_DELAY_MS = 50;

export async function processChunk(deps: WorkerDeps, job: Job<ChunkJob>, token?: string): Promise<void> {
  const { opId, wave, from, to } = job.data;
  const op = await loadOperation(deps.pool, opId, false);
  // Not running this wave (paused, halted, finished, or a stale job): items stay as they are.
  if (!op || op.state !== 'running' || op.currentWave !== wave || op.lifecycle.frozen) return;
  const rollout = op.lifecycle.rollout;
  // The tenant cap needs the chunk's tenants; skip the read when no tenant cap is set.
  const chunkTenants =
    rollout.maxTenantsPerMinute < 1_000_000
      ? (
          await deps.pool.query<{ tenant_id: string }>(
            'SELECT DISTINCT tenant_id FROM operation_items WHERE operation_id = $1 AND seq >= $2 AND seq < $3',
            [opId, from, to],
          )
        ).rows.map((r) => r.tenant_id)
      : [];
  const wait = await velocityWait(deps, opId, to - from, chunkTenants, rollout);
  if (wait > 0) {
    await job.moveToDelayed(Date.now() + wait, token);
    throw new DelayedError();
  }
  const claimer = job.id!;
  const items = await claimRange(deps.pool, opId, from, to, claimer);
  if (items.length === 0) return settleCheck(deps, opId, wave);

  const since = Date.now();
  await deps.watch.track(opId);
  try {
    const { adapter } = await deps.adapters.get(op.targetType);
    const asAdapterItem = (i: { resourceId: string; tenantId: string }): AdapterItem => ({
      operationId: opId,
      resourceId: i.resourceId,
      tenantId: i.tenantId,
      type: op.targetType,
    });
    const outcomes = new Map<number, Outcome>();

    // Snapshot first, for every item not yet snapshotted: no snapshot, no destructive call.
    // Snapshots are reads, so they may use more connections than the destructive calls do.
    const needSnap = items.filter((i) => i.snapshotId === null);
    const good: { seq: number; resourceId: string; tenantId: string; data: unknown }[] = [];
    if (needSnap.length) {
      const snaps = await adapter.snapshot(needSnap.map(asAdapterItem), {
        concurrency: rollout.concurrency * SNAPSHOT_FANOUT,
      });
      needSnap.forEach((item, k) => {
        const r = snaps[k]!;
        if (r.ok) good.push({ seq: item.seq, resourceId: item.resourceId, tenantId: item.tenantId, data: r.data });
        else outcomes.set(item.seq, { seq: item.seq, state: 'failed', error: `snapshot failed: ${r.error}` });
      });
    }
    const toRun = items.filter((i) => !outcomes.has(i.seq));
    if (toRun.length || good.length)
      await prepareExecution(
        deps.pool,
        opId,
        claimer,
        good,
        toRun.map((i) => i.seq),
      );
    if (toRun.length) {
      const action = op.mode === 'hard' ? 'hardDelete' : 'softDelete';
      const w = await loadWave(deps.pool, opId, wave);
      const counters = {
        done: w?.done ?? 0,
        failed: w?.failed ?? 0,
        consecutiveFailures: w?.consecutiveFailures ?? 0,
        total: w ? w.toSeq - w.fromSeq : toRun.length,
      };
      const results: ItemResult[] = await applyWithBreaker(
        adapter,
        action,
        toRun.map(asAdapterItem),
        {
          idempotencyKey: idempotencyKeyFor,
          shouldContinue: () => deps.watch.canRun(opId, wave, since),
          concurrency: rollout.concurrency,
        },
        op.lifecycle.haltPolicy,
        counters,
      );
      toRun.forEach((item, k) => {
        const r = results[k]!;
        if (r.ok) outcomes.set(item.seq, { seq: item.seq, state: 'done', error: null });
        else if (isSkipped(r)) outcomes.set(item.seq, { seq: item.seq, state: 'pending', error: null });
        else outcomes.set(item.seq, { seq: item.seq, state: 'failed', error: r.error.slice(0, 500) });
      });
    }
    const stats = await recordOutcomes(deps.pool, opId, wave, claimer, [...outcomes.values()]);
    deps.metrics?.items.inc({ outcome: 'done' }, stats.recordedDone);
    deps.metrics?.items.inc({ outcome: 'failed' }, stats.recordedFailed);
    // Healthy progress changes nothing (decide() would answer "unchanged"), so it is judged here
    // with the same pure rule and only a settled or unhealthy wave takes the operation's lock.
    if (stats.pending === 0 || !assessWave(stats, op.lifecycle.haltPolicy).healthy)
      await report(deps, opId, wave, stats);
    if ([...outcomes.values()].some((o) => o.state === 'pending')) await requeueIfRunning(deps, job.data);
  } finally {
    deps.watch.untrack(opId);
  }
}

/**
 * Items this chunk handed back unsent (a halt notice, or its own breaker) while the operation is
 * running this wave again — a pause and a quick resume, whose new chunk job found these items
 * still claimed here — would otherwise wait for the reconciler's next sweep. Queue the range again
 * now; a duplicate job is harmless (claims in the ledger), and the short delay rules out a hot loop.
 */
async function requeueIfRunning(deps: WorkerDeps, j: ChunkJob) {
  const op = await loadOperation(deps.pool, j.opId, false);
  if (!op || op.state !== 'running' || op.currentWave !== j.wave || op.lifecycle.frozen) return;
  const next: ChunkJob = { ...j, epoch: op.version };
  await deps.engine.queues.items.add('chunk', next, {
    jobId: `${chunkJobId(next)}.requeue${Date.now()}`,
    delay: REQUEUE_DELAY_MS,
  });
}

/** Tells the lifecycle how the wave is going; a refusal means the report is stale (dropped). */
export async function report(
  deps: WorkerDeps,
  opId: string,
  wave: number,
  stats: { done: number; failed: number; consecutiveFailures: number; pending: number },
) {
  const s = {
    done: stats.done,
    failed: stats.failed,
    consecutiveFailures: stats.consecutiveFailures,
    pending: stats.pending,
  };
  try {
    await applyEvent(
      deps.engine,
      opId,
      s.pending === 0 ? { type: 'wave_settled', wave, stats: s } : { type: 'item_outcomes', wave, stats: s },
      SYSTEM,
    );
  } catch (err) {
    if (!(err instanceof AppError && err.statusCode === 409)) throw err;
  }
}

/** A wave whose items are all finished is settled, even if the report that said so was lost. */
export async function settleCheck(deps: WorkerDeps, opId: string, wave: number) {
  const r = await deps.pool.query<{
    done: number;
    failed: number;
    consecutive_failures: number;
    total: number;
    open: number;
  }>(
    `SELECT w.done, w.failed, w.consecutive_failures, w.to_seq - w.from_seq AS total,
       (SELECT count(*) FROM operation_items i WHERE i.operation_id = w.operation_id AND i.seq >= w.from_seq AND i.seq < w.to_seq AND i.state IN ('pending', 'claimed'))::int AS open
     FROM operation_waves w WHERE w.operation_id = $1 AND w.wave = $2`,
    [opId, wave],
  );
  const w = r.rows[0];
  if (!w || w.open > 0) return;
  await report(deps, opId, wave, {
    done: w.done,
    failed: w.failed,
    consecutiveFailures: w.consecutive_failures,
    pending: 0,
  });
}

/**
 * Velocity caps shared by every worker: per-operation counters per minute in Redis, for items and
 * for newly touched tenants. Returns how long to wait (ms) when this chunk would exceed either cap;
 * 0 when it may run now. A chunk that alone exceeds a cap still runs (alone) in its minute.
 */
async function velocityWait(
  deps: WorkerDeps,
  opId: string,
  n: number,
  tenants: string[],
  rollout: { maxItemsPerMinute: number; maxTenantsPerMinute: number },
): Promise<number> {
  const minute = Math.floor(Date.now() / 60_000);
  const nextMinute = (minute + 1) * 60_000 - Date.now() + 10;
  const itemsKey = `${deps.prefix}:rate:${opId}:${minute}`;
  const used = await deps.redis.incrby(itemsKey, n);
  if (used === n) await deps.redis.pexpire(itemsKey, 120_000);
  if (used > rollout.maxItemsPerMinute && used !== n) {
    await deps.redis.decrby(itemsKey, n);
    return nextMinute;
  }
  if (tenants.length) {
    const tenantsKey = `${deps.prefix}:tenants:${opId}:${minute}`;
    const seenKey = `${deps.prefix}:touched:${opId}`;
    // Only tenants this operation has not touched before count against the cap.
    const fresh = (await deps.redis.smismember(seenKey, ...tenants))
      .map((m, k) => (m ? null : tenants[k]!))
      .filter((t): t is string => t !== null);
    if (fresh.length) {
      const before = await deps.redis.scard(tenantsKey);
      if (before > 0 && before + fresh.length > rollout.maxTenantsPerMinute) {
        await deps.redis.decrby(itemsKey, n);
        return nextMinute;
      }
      await deps.redis
        .multi()
        .sadd(tenantsKey, ...fresh)
        .pexpire(tenantsKey, 120_000)
        .sadd(seenKey, ...fresh)
        .pexpire(seenKey, 7 * 86_400_000)
        .exec();
    }
  }
  return 0;
}
