// The rollback job: restore every item this operation may have executed (write-ahead mark set),
// newest first, through the type's adapter. Failed restores are retried with backoff; items still
// in flight in a chunk run are waited for by their claim lease. Waiting never holds a worker slot:
// the job puts itself back as delayed (BullMQ's step-job pattern) and returns. When nothing is left
// to try it reports rollback_settled, and decide() says rolled_back only if every item came back.
import { randomUUID } from 'node:crypto';
import type { Queryable } from '../../lib/sql.ts';
import type { Metrics } from '../../plugins/metrics.ts';
import { idempotencyKeyFor, type AdapterItem, type ItemResult } from '../adapters/index.ts';
import type { ThroughputRecorder } from '../operations/restore-estimate.ts';
import { rollbackOrder } from '../operations/rollback-plan.ts';
import type { AdapterCache } from './adapters-cache.ts';
import type { Engine } from './engine.ts';
import type { Fence } from './exclusive.ts';
import type { RestoreResult, RollbackLedger } from './rollback-ledger.ts';
import type { OperationRecord } from './state.ts';

/** Restores per batch, newest first. */
const BATCH = 200;
/** A run hands its slot back after this long and continues as a new delayed step. */
const MAX_RUN_MS = 30_000;
const SYSTEM = { name: 'system' };

export interface RollbackDeps<Tx = Queryable> {
  load(opId: string): Promise<OperationRecord | undefined>;
  ledger: RollbackLedger;
  engine: Pick<Engine<Tx>, 'apply'>;
  adapters: Pick<AdapterCache, 'get'>;
  /** Runs this job again after `delayMs` (the same job, moved to delayed). */
  later(delayMs: number): Promise<void>;
  clock(): number;
  metrics?: Pick<Metrics, 'items'>;
  /** Restore throughput per type and adapter kind, from which plans estimate their time to restore. */
  throughput?: ThroughputRecorder;
}

export async function processRollback<Tx>(deps: RollbackDeps<Tx>, opId: string, fence: Fence): Promise<void> {
  const started = deps.clock();
  const token = randomUUID();
  let op = await deps.load(opId);
  if (!op || op.lifecycle.state !== 'rolling_back') return;
  // A type whose adapter cannot be built fails each restore with the reason, like a 5xx would.
  const adapter = await deps.adapters.get(op.targetType).then(
    (a) => a.adapter,
    (err: unknown) => new Error(`adapter unavailable: ${(err as Error).message}`),
  );
  for (;;) {
    if (fence.lost) return; // another run may take over: stop here, the ledger has what was done
    // A duration on the monotonic clock (the injected one is the engine's time for timers).
    const batchStarted = performance.now();
    const picked = await deps.ledger.pick(opId, token, BATCH);
    if (picked.length === 0) break;
    const rows = rollbackOrder(picked);
    const items: AdapterItem[] = rows.map((r) => ({
      operationId: opId,
      resourceId: r.resourceId,
      tenantId: r.tenantId,
      type: op!.targetType,
    }));
    const results: ItemResult[] =
      adapter instanceof Error
        ? rows.map(() => ({ ok: false, permanent: false, error: adapter.message }))
        : await adapter.apply('restore', items, {
            idempotencyKey: idempotencyKeyFor,
            shouldContinue: () => !fence.lost,
            concurrency: op.lifecycle.rollout.concurrency,
            snapshots: new Map(rows.map((r) => [r.resourceId, r.snapshot])),
          });
    const out: RestoreResult[] = rows.map((r, k) => {
      const x = results[k]!;
      return x.ok
        ? { seq: r.seq, ok: true, error: null, permanent: false }
        : { seq: r.seq, ok: false, error: x.error.slice(0, 500), permanent: 'permanent' in x && x.permanent };
    });
    await deps.ledger.finish(opId, token, out);
    const restored = out.filter((r) => r.ok).length;
    deps.metrics?.items.inc({ outcome: 'restored' }, restored);
    if (!(adapter instanceof Error))
      await deps.throughput?.record({
        type: op.targetType,
        adapterKind: adapter.kind,
        items: restored,
        elapsedMs: performance.now() - batchStarted,
      });
    if (deps.clock() - started > MAX_RUN_MS) return deps.later(0);
    // An operator may have ended the rollback (abort → rollback_incomplete) meanwhile.
    op = await deps.load(opId);
    if (!op || op.lifecycle.state !== 'rolling_back') return;
  }
  const wake = await deps.ledger.nextWake(opId);
  if (wake !== null) return deps.later(Math.max(50, wake - deps.clock()));
  // Counted from the ledger, so a rollback resumed after a crash reports the whole of it.
  const c = await deps.ledger.counts(opId);
  await deps.engine.apply(opId, { type: 'rollback_settled', restored: c.restored, failed: c.failed }, SYSTEM, {
    report: true,
  });
}
