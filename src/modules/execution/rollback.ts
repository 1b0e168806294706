// The rollback job: restore every item this operation may have executed (write-ahead mark set),
// newest first, with what its cascade took, from snapshots verified on read (rollback-batch.ts).
// Failed restores are retried with backoff; items still
// in flight in a chunk run are waited for until their chunk records them (looked at again after
// half the time they have been held; their claim lease bounds the wait if the chunk's process
// died). Waiting never holds a worker slot:
// the job puts itself back as delayed (BullMQ's step-job pattern) and returns. When nothing is left
// to try it reports rollback_settled, and decide() says rolled_back only if every item came back.
import type { Queryable } from '../../lib/sql.ts';
import type { Metrics } from '../../plugins/metrics.ts';
import type { SnapshotRead } from '../snapshots/store.ts';
import type { ThroughputRecorder } from '../operations/restore-estimate.ts';
import type { AdapterCache } from './adapters-cache.ts';
import type { Engine } from './engine.ts';
import { runToken, type Fence } from './exclusive.ts';
import type { HaltWatch } from './halt-watch.ts';
import { FIRST_BATCH, nextBatchSize, PROGRESS_EVERY_MS } from './chunk-progress.ts';
import { restoreBatch, saysUncertain } from './rollback-batch.ts';
import type { RestoreCandidate, RestoreResult, RollbackLedger } from './rollback-ledger.ts';
import type { OperationRecord } from './state.ts';

// A batch is recorded when its last restore lands: against a slow downstream a 200-item batch
// showed nothing for ~50 s while restores landed (a new-user trial, 500 ms per call). Batches
// start small and are sized to take about 2 s each (chunk-progress.ts nextBatchSize).
/** A run hands its slot back after this long and continues as a new delayed step. */
const MAX_RUN_MS = 30_000;
/**
 * A batch sends no new restore after this long (the rest go back, no attempt counted): its
 * outcomes are recorded only when it ends, and against a downstream that hangs the first batch
 * (20 restores, each timing out) recorded nothing for a minute (a trial).
 */
export const BATCH_BUDGET_MS = 3 * PROGRESS_EVERY_MS;
/** Shortest wait before looking again at items a chunk holds (see recheckMs). */
const MIN_RECHECK_MS = 250;
const SYSTEM = { name: 'system' };

export interface RollbackDeps<Tx = Queryable> {
  load(opId: string): Promise<OperationRecord | undefined>;
  ledger: RollbackLedger;
  engine: Pick<Engine<Tx>, 'apply'>;
  adapters: Pick<AdapterCache, 'get'>;
  /** Reads and verifies snapshots (the snapshot store's get). */
  readSnapshots: (ids: number[]) => Promise<Map<number, SnapshotRead>>;
  /** How long a chunk's claim holds its items (after it, a rollback takes them whatever the chunk did). */
  leaseMs: number;
  /** Runs this job again after `delayMs` (the same job, moved to delayed). */
  later(delayMs: number): Promise<void>;
  clock(): number;
  metrics?: Pick<Metrics, 'items'>;
  /** Restore throughput per type and adapter kind, from which plans estimate their time to restore. */
  throughput?: ThroughputRecorder;
  /** Items decided without a call: purged or acted on by a later operation (rollback-superseded.ts). */
  superseded?: (opId: string, picked: RestoreCandidate[]) => Promise<RestoreResult[]>;
  /** The registry parent of each of these resources that has one (rollback-batch.ts BatchContext). */
  parentsOf?: (resourceIds: string[]) => Promise<Map<string, string>>;
  /** Whether the operation still rolls back, read before every restore call (halt-watch.ts). */
  watch?: Pick<HaltWatch, 'track' | 'untrack' | 'stillRollingBack' | 'shuttingDown'>;
}

export async function processRollback<Tx>(deps: RollbackDeps<Tx>, opId: string, fence: Fence): Promise<void> {
  await deps.watch?.track(opId);
  try {
    return await rollbackRun(deps, opId, fence);
  } finally {
    deps.watch?.untrack(opId);
  }
}

async function rollbackRun<Tx>(deps: RollbackDeps<Tx>, opId: string, fence: Fence): Promise<void> {
  const started = deps.clock();
  const token = runToken(fence);
  let op = await deps.load(opId);
  if (!op || op.lifecycle.state !== 'rolling_back') return;
  let size = FIRST_BATCH;
  // The last restore this run saw fail for a reason that may pass: what the rollback then waits
  // for says it (nextWake records it on the operation).
  let lastError: string | null = null;
  for (;;) {
    if (fence.lost) return; // another run may take over: stop here, the ledger has what was done
    // A duration on the monotonic clock (the injected one is the engine's time for timers).
    const batchStarted = performance.now();
    let picked = await deps.ledger.pick(opId, token, size);
    if (picked.length === 0) {
      const wake = await deps.ledger.nextWake(opId, lastError);
      if (wake !== null) return deps.later(recheckMs(wake - deps.clock(), deps.leaseMs));
      // An item a delete chunk held at the pick (claimed: not picked) and recorded before
      // nextWake looked (not claimed: not waited for) is neither: without one more pick the
      // rollback would settle with it counted as not restored. An item is never eligible and
      // then not, so a pick after nextWake sees every item the two missed.
      picked = await deps.ledger.pick(opId, token, size);
      if (picked.length === 0) break;
    }
    const decided = (await deps.superseded?.(opId, picked)) ?? [];
    const known = new Set(decided.map((d) => d.seq));
    const toSend = picked.filter((p) => !known.has(p.seq));
    const sent = await restoreBatch(
      {
        opId,
        targetType: op.targetType,
        concurrency: op.lifecycle.rollout.concurrency,
        adapters: deps.adapters,
        readSnapshots: deps.readSnapshots,
        parentsOf: deps.parentsOf,
        // An operator may end the rollback (abort → rollback_incomplete) while a batch is under
        // way: the calls not yet sent are not sent, and the batch records them as not restored.
        // So does a shutdown of this process (Ctrl-C, SIGTERM): it waited for the whole batch,
        // hundreds of restores, and was killed at the end of its window (npm run bench -- control).
        shouldContinue: () =>
          !fence.lost &&
          !deps.watch?.shuttingDown &&
          (deps.watch?.stillRollingBack(opId) ?? true) &&
          performance.now() - batchStarted < BATCH_BUDGET_MS,
      },
      toSend,
    ).then((rs) => rs.map(saysUncertain));
    const out = [...decided, ...sent];
    await deps.ledger.finish(opId, token, out);
    lastError = out.findLast((r) => !r.ok && !r.permanent && !r.skipped)?.error ?? lastError;
    // Only what this batch sent, and its time, measure the adapter: items decided without a call
    // (brought back since by another operation: rollback-superseded.ts) took no time, and counted
    // as restored they inflated the measured speed, until a plan over maxRestoreMinutes no longer
    // needed break-glass (a trial). Nor are they restores this rollback made, for the metric.
    const restored = sent.filter((r) => r.ok).length;
    deps.metrics?.items.inc({ outcome: 'restored' }, restored);
    // Measured per adapter kind; a type whose adapter does not build restored nothing to measure.
    const kind = await deps.adapters.get(op.targetType).then(
      (a) => a.adapter.kind,
      () => undefined,
    );
    const elapsedMs = performance.now() - batchStarted;
    if (kind && deps.throughput && restored > 0)
      await deps.throughput.record({ type: op.targetType, adapterKind: kind, items: restored, elapsedMs });
    size = nextBatchSize(size, toSend.length, elapsedMs);
    // A batch that restored nothing and met failures that may pass: against a downstream that
    // hangs, every restore times out and the run never sleeps (always another item due), so what
    // nextWake writes for the views was never written: rolling_back, restored 0, and no reason for
    // minutes (a trial). Written now too, without sleeping.
    if (restored === 0 && sent.some((r) => !r.ok && !r.permanent && !r.skipped))
      await deps.ledger.nextWake(opId, lastError);
    // Shutting down: what the batch did not send is handed back (finish: due at once, no attempt
    // used), and the job comes back at once for another worker, or for this one's next start.
    if (deps.watch?.shuttingDown || deps.clock() - started > MAX_RUN_MS) return deps.later(0);
    // An operator may have ended the rollback (abort → rollback_incomplete) meanwhile.
    op = await deps.load(opId);
    if (!op || op.lifecycle.state !== 'rolling_back') return;
  }
  // Counted from the ledger, so a rollback resumed after a crash reports the whole of it.
  const c = await deps.ledger.counts(opId);
  await deps.engine.apply(opId, { type: 'rollback_settled', restored: c.restored, failed: c.failed }, SYSTEM, {
    report: true,
  });
}

/**
 * When to look again, `dueMs` before the earliest held claim expires (or a failed restore's retry
 * is due). A chunk usually records its items within a few calls' time, and the rollback should go
 * on then, not at the lease's end (minutes in production); but a claim held long is likely a dead
 * worker's, and each look scans the operation's ledger: the wait is half of how long the claim has
 * been held so far (at least MIN_RECHECK_MS), so a dead worker costs ~15 looks over a 90 s lease, not one
 * per interval.
 */
export function recheckMs(dueMs: number, leaseMs: number): number {
  const heldFor = Math.max(0, leaseMs - dueMs);
  return Math.max(50, Math.min(dueMs, Math.max(MIN_RECHECK_MS, heldFor / 2)));
}
