// The chunk job: claim a seq range of one wave in the ledger, snapshot, mark write-ahead, act
// through the adapter (which checks the halt state before every destructive call), record the
// outcomes with the wave counters, and report them to the lifecycle. Thin: decisions are decide()'s.
import type { Job } from 'bullmq';
import { DelayedError } from 'bullmq';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import { AppError } from '../../lib/errors.ts';
import type { Metrics } from '../../plugins/metrics.ts';
import { idempotencyKeyFor, isSkipped, type AdapterItem, type ItemResult } from '../adapters/index.ts';
import type { AdapterCache } from './adapters-cache.ts';
import type { HaltWatch } from './halt-watch.ts';
import { claimRange, markExecuting, recordOutcomes, storeSnapshots, type Outcome } from './ledger.ts';
import type { ChunkJob } from './queues.ts';
import { loadOperation } from './state.ts';
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

export async function processChunk(deps: WorkerDeps, job: Job<ChunkJob>, token?: string): Promise<void> {
  const { opId, wave, from, to } = job.data;
  const op = await loadOperation(deps.pool, opId, false);
  // Not running this wave (paused, halted, finished, or a stale job): items stay as they are.
  if (!op || op.state !== 'running' || op.currentWave !== wave || op.lifecycle.frozen) return;
  const rollout = op.lifecycle.rollout;
  const wait = await velocityWait(deps, opId, to - from, rollout.maxItemsPerMinute);
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
    const asAdapterItem = (i: { resourceId: string; tenantId: string }): AdapterItem => ({ operationId: opId, resourceId: i.resourceId, tenantId: i.tenantId, type: op.targetType });
    const outcomes = new Map<number, Outcome>();

    // Snapshot first, for every item not yet snapshotted: no snapshot, no destructive call.
    const needSnap = items.filter((i) => i.snapshotId === null);
    if (needSnap.length) {
      const snaps = await adapter.snapshot(needSnap.map(asAdapterItem), { concurrency: rollout.concurrency });
      const good: { seq: number; resourceId: string; tenantId: string; data: unknown }[] = [];
      needSnap.forEach((item, k) => {
        const r = snaps[k]!;
        if (r.ok) good.push({ seq: item.seq, resourceId: item.resourceId, tenantId: item.tenantId, data: r.data });
        else outcomes.set(item.seq, { seq: item.seq, state: 'failed', error: `snapshot failed: ${r.error}` });
      });
      await storeSnapshots(deps.pool, opId, claimer, good);
    }
    const toRun = items.filter((i) => !outcomes.has(i.seq));
    if (toRun.length) {
      await markExecuting(deps.pool, opId, toRun.map((i) => i.seq), claimer);
      const action = op.mode === 'hard' ? 'hardDelete' : 'softDelete';
      const results: ItemResult[] = await adapter.apply(action, toRun.map(asAdapterItem), {
        idempotencyKey: idempotencyKeyFor,
        shouldContinue: () => deps.watch.canRun(opId, wave, since),
        concurrency: rollout.concurrency,
      });
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
    await report(deps, opId, wave, stats);
  } finally {
    deps.watch.untrack(opId);
  }
}

/** Tells the lifecycle how the wave is going; a refusal means the report is stale (dropped). */
export async function report(deps: WorkerDeps, opId: string, wave: number, stats: { done: number; failed: number; consecutiveFailures: number; pending: number }) {
  const s = { done: stats.done, failed: stats.failed, consecutiveFailures: stats.consecutiveFailures, pending: stats.pending };
  try {
    await applyEvent(deps.engine, opId, s.pending === 0 ? { type: 'wave_settled', wave, stats: s } : { type: 'item_outcomes', wave, stats: s }, SYSTEM);
  } catch (err) {
    if (!(err instanceof AppError && err.statusCode === 409)) throw err;
  }
}

/** A wave whose items are all finished is settled, even if the report that said so was lost. */
export async function settleCheck(deps: WorkerDeps, opId: string, wave: number) {
  const r = await deps.pool.query<{ done: number; failed: number; consecutive_failures: number; total: number; open: number }>(
    `SELECT w.done, w.failed, w.consecutive_failures, w.to_seq - w.from_seq AS total,
       (SELECT count(*) FROM operation_items i WHERE i.operation_id = w.operation_id AND i.seq >= w.from_seq AND i.seq < w.to_seq AND i.state IN ('pending', 'claimed'))::int AS open
     FROM operation_waves w WHERE w.operation_id = $1 AND w.wave = $2`, [opId, wave]);
  const w = r.rows[0];
  if (!w || w.open > 0) return;
  await report(deps, opId, wave, { done: w.done, failed: w.failed, consecutiveFailures: w.consecutive_failures, pending: 0 });
}

/**
 * Velocity cap shared by every worker: a per-operation counter per minute in Redis. Returns how
 * long to wait (ms) when this chunk would exceed the cap; 0 when it may run now.
 */
async function velocityWait(deps: WorkerDeps, opId: string, n: number, maxPerMinute: number): Promise<number> {
  const minute = Math.floor(Date.now() / 60_000);
  const key = `${deps.prefix}:rate:${opId}:${minute}`;
  const used = await deps.redis.incrby(key, n);
  if (used === n) await deps.redis.pexpire(key, 120_000);
  if (used <= maxPerMinute || used === n) return 0;
  await deps.redis.decrby(key, n);
  return (minute + 1) * 60_000 - Date.now() + 10;
}
