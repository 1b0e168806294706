// The chunk job: load the state once → claim a seq range of the wave under a fresh claim token →
// snapshot → mark write-ahead (only while the operation still runs this wave) → act through the
// adapter, checking the halt watch and the claim before every call → record the outcomes AND
// decide on them in one transaction → effects. Thin: every decision is decide()'s.
import { randomUUID } from 'node:crypto';
import { AppError } from '../../lib/errors.ts';
import type { Queryable } from '../../lib/sql.ts';
import type { Metrics } from '../../plugins/metrics.ts';
import { idempotencyKeyFor, isSkipped, type AdapterItem } from '../adapters/index.ts';
import { mayExecute, type LifecycleEvent } from '../operations/lifecycle.ts';
import { assessWave, type WaveStats } from '../operations/wave-health.ts';
import type { AdapterCache } from './adapters-cache.ts';
import { applyWithBreaker } from './breaker.ts';
import type { Engine } from './engine.ts';
import type { Fence } from './exclusive.ts';
import type { HaltWatch } from './halt-watch.ts';
import type { ClaimedItem, Ledger, Outcome, Range } from './ledger.ts';
import type { ChunkJob } from './queues.ts';
import type { OperationRecord } from './state.ts';
import type { VelocityGrant, VelocityLimiter } from './velocity.ts';

/** Claims of one item before it fails for good with its last error (never retried forever in silence). */
export const ITEM_ATTEMPTS = 5;
/** Snapshot reads may run this many times the destructive concurrency. */
const SNAPSHOT_FANOUT = 4;
/** Before items handed back unsent are tried again while the operation still runs the wave. */
const REQUEUE_DELAY_MS = 50;
/**
 * A chunk held back by a velocity cap asks again at least this often, rather than sleeping until
 * the window it was told about: the limiter's clock decides, and a cap raised meanwhile applies.
 */
const VELOCITY_RECHECK_MS = 5_000;
const SYSTEM = { name: 'system' };

export interface ChunkDeps<Tx = Queryable> {
  load(opId: string): Promise<OperationRecord | undefined>;
  ledger: Pick<Ledger<Tx>, 'claim' | 'extend' | 'release' | 'prepare' | 'record' | 'waveStats'>;
  engine: Pick<Engine<Tx>, 'apply'>;
  adapters: Pick<AdapterCache, 'get'>;
  watch: Pick<HaltWatch, 'track' | 'untrack' | 'canRun'>;
  velocity: Pick<VelocityLimiter, 'reserve' | 'refund'>;
  requeue(job: ChunkJob, delayMs: number): Promise<void>;
  clock(): number;
  /** How long a claim stays exclusive; the run renews it at a third of that. */
  leaseMs: number;
  metrics?: Pick<Metrics, 'items'>;
}

const waveEvent = (
  wave: number,
  stats: WaveStats,
  policy: OperationRecord['lifecycle']['haltPolicy'],
): LifecycleEvent | null => {
  if (stats.pending === 0) return { type: 'wave_settled', wave, stats };
  // Healthy progress changes nothing (decide() would answer "unchanged"): no operation lock for it.
  return assessWave(stats, policy).healthy ? null : { type: 'item_outcomes', wave, stats };
};

export async function processChunk<Tx>(deps: ChunkDeps<Tx>, jobId: string, j: ChunkJob, fence: Fence): Promise<void> {
  const op = await deps.load(j.opId);
  // Not running this wave (paused, halted, frozen, finished, or a stale job): items stay as they are.
  if (!op || !mayExecute(op.lifecycle) || op.lifecycle.currentWave !== j.wave || !op.wave) return;
  const range: Range = { from: j.from, to: j.to };
  const token = randomUUID();
  const claimed = await deps.ledger.claim(j.opId, range, jobId, token);
  if (claimed.length === 0) return settleIfDone(deps, j.opId, j.wave);

  const outcomes: Outcome[] = [];
  // Items whose attempts are used up fail now, carrying the error that kept them from finishing.
  for (const i of claimed.filter((x) => x.attempts > ITEM_ATTEMPTS)) {
    const last = i.lastError ? `; last error: ${i.lastError}` : '';
    outcomes.push({
      seq: i.seq,
      state: 'failed',
      error: `gave up after ${i.attempts - 1} attempts${last}`.slice(0, 500),
      permanent: true,
    });
  }
  let items = claimed.filter((x) => x.attempts <= ITEM_ATTEMPTS);
  let deferMs = 0;
  let grant: VelocityGrant | undefined;
  if (items.length) {
    grant = await deps.velocity.reserve(
      j.opId,
      items.map((i) => i.tenantId),
      op.lifecycle.rollout,
    );
    if (grant.granted < items.length) {
      await deps.ledger.release(j.opId, range, token, items.slice(grant.granted), null, true);
      items = items.slice(0, grant.granted);
      deferMs = Math.min(VELOCITY_RECHECK_MS, Math.max(REQUEUE_DELAY_MS, grant.waitMs));
    }
  }
  const marks = new Set<number>();
  let unsent = 0;
  let handedBack = 0;
  let stillRunning = false;
  if (items.length) {
    const r = await execute(deps, op, j, range, token, items, fence);
    outcomes.push(...r.outcomes);
    r.marked.forEach((s) => marks.add(s));
    unsent = r.unsent;
    handedBack = r.unsent + r.requeue;
    stillRunning = r.stillRunning;
  }
  // Caps charge executed items only: what was reserved but never sent is given back.
  if (grant && unsent > 0) await deps.velocity.refund(grant, unsent);
  const now = deps.clock();
  const applied = await deps.engine.apply(
    j.opId,
    async (tx) => {
      const rec = await deps.ledger.record(tx, j.opId, j.wave, token, outcomes, marks, now);
      deps.metrics?.items.inc({ outcome: 'done' }, rec.recordedDone);
      deps.metrics?.items.inc({ outcome: 'failed' }, rec.recordedFailed);
      return waveEvent(j.wave, rec.stats, op.lifecycle.haltPolicy);
    },
    SYSTEM,
    { report: true },
  );
  // Items handed back unsent while the operation still runs this wave (a pause and a quick resume,
  // a velocity wait) are queued again now instead of at the reconciler's next sweep.
  const running = applied?.changed
    ? mayExecute(applied.state) && applied.state.currentWave === j.wave
    : stillRunning || deferMs > 0;
  if ((handedBack > 0 || deferMs > 0) && running)
    await deps.requeue({ ...j, epoch: applied?.version ?? j.epoch }, deferMs || REQUEUE_DELAY_MS);
}

interface Executed {
  outcomes: Outcome[];
  /** Items this run marked write-ahead that had no mark before (their mark is cleared if unsent). */
  marked: Set<number>;
  /** Items never sent (velocity refunds them). */
  unsent: number;
  /** Items handed back with an unknown outcome, to be sent again. */
  requeue: number;
  stillRunning: boolean;
}

async function execute<Tx>(
  deps: ChunkDeps<Tx>,
  op: OperationRecord,
  j: ChunkJob,
  range: Range,
  token: string,
  items: ClaimedItem[],
  fence: Fence,
): Promise<Executed> {
  const { rollout, haltPolicy } = op.lifecycle;
  const asAdapterItem = (i: ClaimedItem): AdapterItem => ({
    operationId: j.opId,
    resourceId: i.resourceId,
    tenantId: i.tenantId,
    type: op.targetType,
  });
  const outcomes: Outcome[] = [];
  let leaseLost = false;
  const renew = setInterval(
    () => {
      deps.ledger.extend(j.opId, range, token).then(
        (held) => {
          if (held === 0) leaseLost = true;
        },
        () => {
          leaseLost = true; // cannot prove the claim is still ours: stop sending
        },
      );
    },
    Math.max(100, Math.floor(deps.leaseMs / 3)),
  );
  const since = deps.clock();
  let calling = false;
  await deps.watch.track(j.opId);
  try {
    const got = await deps.adapters.get(op.targetType).catch((err: unknown) => {
      // A type whose adapter cannot be built (a stored config that no longer validates, no signing
      // secret) will not fix itself by retrying: its items fail now, saying why, and the halt
      // policy takes it from there. Anything else is retried (below).
      if (err instanceof AppError) return err;
      throw err;
    });
    if (got instanceof AppError) {
      const error = `adapter for type ${op.targetType} unavailable: ${got.message}`.slice(0, 500);
      outcomes.push(...items.map((i): Outcome => ({ seq: i.seq, state: 'failed', error, permanent: true })));
      return {
        outcomes,
        marked: new Set(),
        unsent: 0,
        requeue: 0,
        stillRunning: deps.watch.canRun(j.opId, j.wave, since),
      };
    }
    const { adapter } = got;
    // Snapshot first, for every item not yet snapshotted: no snapshot, no destructive call.
    const needSnap = items.filter((i) => i.snapshotId === null);
    const snaps: { seq: number; resourceId: string; tenantId: string; data: unknown }[] = [];
    const failed = new Set<number>();
    if (needSnap.length) {
      const res = await adapter.snapshot(needSnap.map(asAdapterItem), {
        concurrency: rollout.concurrency * SNAPSHOT_FANOUT,
      });
      needSnap.forEach((item, k) => {
        const r = res[k]!;
        if (r.ok) snaps.push({ seq: item.seq, resourceId: item.resourceId, tenantId: item.tenantId, data: r.data });
        else {
          failed.add(item.seq);
          const permanent = !isSkipped(r) && r.permanent;
          outcomes.push({
            seq: item.seq,
            state: 'failed',
            error: `snapshot failed: ${r.error}`.slice(0, 500),
            permanent,
          });
        }
      });
    }
    const wanted = items.filter((i) => !failed.has(i.seq));
    const ready = wanted.length
      ? await deps.ledger.prepare(
          j.opId,
          j.wave,
          range,
          token,
          snaps,
          wanted.map((i) => i.seq),
        )
      : new Set<number>();
    const toRun = wanted.filter((i) => ready.has(i.seq));
    const marked = new Set(toRun.filter((i) => i.executedSeq === null).map((i) => i.seq));
    // Not marked: the operation stopped running this wave before the mark. Nothing is sent.
    const notMarked = wanted.filter((i) => !ready.has(i.seq));
    outcomes.push(...notMarked.map((i): Outcome => ({ seq: i.seq, state: 'pending', error: null })));
    calling = true;
    const { results, order } = await applyWithBreaker(
      adapter,
      op.mode === 'hard' ? 'hardDelete' : 'softDelete',
      toRun.map(asAdapterItem),
      {
        idempotencyKey: idempotencyKeyFor,
        shouldContinue: () => !fence.lost && !leaseLost && deps.watch.canRun(j.opId, j.wave, since),
        concurrency: rollout.concurrency,
      },
      haltPolicy,
      op.wave!,
    );
    let unsent = notMarked.length;
    let requeue = 0;
    for (const k of order) {
      const item = toRun[k]!;
      const r = results[k]!;
      if (r.ok) outcomes.push({ seq: item.seq, state: 'done', error: null });
      else if (isSkipped(r)) {
        unsent++;
        outcomes.push({ seq: item.seq, state: 'pending', error: null });
      } else if (r.interrupted) {
        // Stopped between retries: not a failure we know of. Sent again later with the same key.
        requeue++;
        outcomes.push({ seq: item.seq, state: 'pending', error: r.error.slice(0, 500), sent: true });
      } else outcomes.push({ seq: item.seq, state: 'failed', error: r.error.slice(0, 500), permanent: r.permanent });
    }
    const stillRunning = deps.watch.canRun(j.opId, j.wave, since);
    return { outcomes, marked, unsent, requeue, stillRunning };
  } catch (err) {
    // Failed before any call went out (adapter config, snapshot store, a lost connection): hand the
    // items back with the reason, so lastError says why; their attempts still count. Once calls
    // may have gone out, nothing is released: the claim's lease decides who retries them.
    if (!calling) {
      const done = new Set(outcomes.map((o) => o.seq));
      const reason = `${(err as Error).message ?? String(err)}`.slice(0, 500);
      await deps.ledger
        .release(
          j.opId,
          range,
          token,
          items.filter((i) => !done.has(i.seq)),
          reason,
          false,
        )
        .catch(() => undefined);
    }
    throw err;
  } finally {
    clearInterval(renew);
    deps.watch.untrack(j.opId);
  }
}

/** A wave whose items all have an outcome is settled, even if the report that said so was lost. */
export async function settleIfDone<Tx>(deps: Pick<ChunkDeps<Tx>, 'engine' | 'ledger'>, opId: string, wave: number) {
  await deps.engine.apply(
    opId,
    async (tx) => {
      const w = await deps.ledger.waveStats(tx, opId, wave);
      return w && w.pending === 0 ? { type: 'wave_settled', wave, stats: w } : null;
    },
    SYSTEM,
    { report: true },
  );
}

/**
 * A chunk job that failed every one of its attempts for a reason of its own is quarantined: the
 * open items of its range (not held by a live run) fail with that reason, which counts toward the
 * halt policy and shows in the ledger, instead of the reconciler queueing it again forever.
 */
export async function quarantineChunk<Tx>(
  deps: Pick<ChunkDeps<Tx>, 'load' | 'ledger' | 'engine' | 'clock'>,
  jobId: string,
  j: ChunkJob,
  reason: string,
): Promise<void> {
  const op = await deps.load(j.opId);
  if (!op || op.lifecycle.currentWave !== j.wave) return;
  const token = randomUUID();
  const claimed = await deps.ledger.claim(j.opId, { from: j.from, to: j.to }, jobId, token);
  if (claimed.length === 0) return;
  const error = `quarantined: its chunk job failed ${claimed[0]!.attempts} time(s): ${reason}`.slice(0, 500);
  const outcomes = claimed.map((i): Outcome => ({ seq: i.seq, state: 'failed', error, permanent: true }));
  const now = deps.clock();
  await deps.engine.apply(
    j.opId,
    async (tx) => {
      const rec = await deps.ledger.record(tx, j.opId, j.wave, token, outcomes, new Set(), now);
      return waveEvent(j.wave, rec.stats, op.lifecycle.haltPolicy);
    },
    SYSTEM,
    { report: true },
  );
}
