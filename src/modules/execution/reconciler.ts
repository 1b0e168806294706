// The reconciler runs on every worker process at a fixed interval. It is the clock and the memory
// of the engine:
// - the clock: every active operation gets a `timer` event when decide() says the clock matters
//   (a missed wave deadline, an expired plan, an operation that made no progress: the watchdog);
// - the memory: queued work is re-derived from the ledger, so nothing depends on Redis remembering
//   (after a Redis restart, a lost job or a crash between a commit and its effects, every running
//   wave gets its unfinished chunks queued again — deterministic job IDs make that idempotent —
//   finished waves get settled, bakes and rollbacks get their job back);
// - the recorder of last resort: an aborted restore's, purge's or erasure's items that a stopped run
//   held, or that went out with no answer, are recorded "outcome unknown" (settle-aborted.ts);
// - and the witness: a rollback whose items a stopped run holds says so at once, not when its own
//   job runs again after the dead worker's job lock (stopped-holds.ts).
import { isConnectionError, outageLog } from '../../lib/outage-log.ts';
import type { FastifyBaseLogger } from 'fastify';
import type pg from 'pg';
import { decide } from '../operations/lifecycle.ts';
import type { Engine } from './engine.ts';
import { nextBakeRound } from './bake.ts';
import { CHUNK_SIZE, type ChunkJob, type ControlJob } from './queues.ts';
import type { OperationRecord } from './state.ts';

const SYSTEM = { name: 'system' };

export interface ReconcilerDeps<Tx = unknown> {
  pool: Pick<pg.Pool, 'query'>;
  load(opId: string): Promise<OperationRecord | undefined>;
  engine: Pick<Engine<Tx>, 'apply'>;
  enqueueChunks(chunks: ChunkJob[]): Promise<void>;
  enqueueControl(job: ControlJob, delayMs?: number): Promise<void>;
  /** Notes on a rolling-back or running operation the items stopped runs hold (stopped-holds.ts). */
  noteStoppedHolds?(opId: string, seqs?: { from: number; to: number }): Promise<number>;
  /** Notes on a running operation the items of chunk jobs a stopped process had (stopped-holds.ts). */
  noteStoppedChunks?(opId: string, seqs: { from: number; to: number }): Promise<number>;
  /** Records what aborted restores, purges and erasures left without an outcome (settle-aborted.ts). */
  settleAborted?(): Promise<number>;
  clock(): number;
}

export interface Reconciled {
  chunks: number;
  control: number;
  timers: number;
  /** Items of aborted operations recorded (settle-aborted.ts). */
  settled: number;
}

export async function reconcileOnce<Tx>(deps: ReconcilerDeps<Tx>): Promise<Reconciled> {
  const now = deps.clock();
  const ops = await deps.pool.query<{ id: string }>(
    `SELECT id FROM operations
     WHERE state IN ('running', 'baking', 'rolling_back') OR (state IN ('planned', 'approved') AND expires_at <= $1)`,
    [new Date(now)],
  );
  const out: Reconciled = { chunks: 0, control: 0, timers: 0, settled: 0 };
  for (const { id } of ops.rows) {
    const op = await deps.load(id);
    if (!op) continue;
    // The pure function says whether the clock matters; only then is the operation locked.
    const d = decide(op.lifecycle, { type: 'timer' }, now);
    if (d.ok && d.next !== op.lifecycle) {
      const applied = await deps.engine.apply(id, { type: 'timer' }, SYSTEM, { report: true });
      if (applied?.changed) {
        out.timers++;
        continue; // the decision's own effects queued what the new state needs
      }
    }
    const requeued = await requeue(deps, op, now);
    out.chunks += requeued.chunks;
    out.control += requeued.control;
  }
  out.settled = (await deps.settleAborted?.()) ?? 0;
  return out;
}

async function requeue<Tx>(deps: ReconcilerDeps<Tx>, op: OperationRecord, now: number) {
  const s = op.lifecycle;
  const epoch = op.version;
  // A drill that is out: its job again (same job ID while it exists; a rerun finishes it or re-reports it).
  if (s.state === 'running' && s.drill === 'waiting' && s.currentWave !== null) {
    await deps.enqueueControl({ kind: 'drill', opId: op.id, epoch, wave: s.currentWave });
    return { chunks: 0, control: 1 };
  }
  if (s.state === 'running' && s.currentWave !== null && op.wave) {
    const w = op.wave;
    const open = await deps.pool.query<{ k: number }>(
      `SELECT DISTINCT (seq - $2) / $4 AS k FROM operation_items
       WHERE operation_id = $1 AND seq >= $2 AND seq < $3 AND state IN ('pending', 'claimed') ORDER BY 1`,
      [op.id, w.fromSeq, w.toSeq, CHUNK_SIZE],
    );
    if (open.rows.length === 0) {
      await deps.enqueueControl({ kind: 'settle', opId: op.id, epoch, wave: w.wave });
      return { chunks: 0, control: 1 };
    }
    // Chunk boundaries are aligned to the wave start, exactly as the first enqueue made them.
    await deps.enqueueChunks(
      open.rows.map(({ k }) => {
        const from = w.fromSeq + k * CHUNK_SIZE;
        return { opId: op.id, epoch, wave: w.wave, from, to: Math.min(w.toSeq, from + CHUNK_SIZE) };
      }),
    );
    // A chunk whose worker died waits for that worker's job lock: say which items it holds meanwhile
    // (its claims; or, for a chunk that claims nothing, its job: a registry chunk's one transaction).
    const seqs = { from: w.fromSeq, to: w.toSeq };
    if (!(await deps.noteStoppedHolds?.(op.id, seqs))) await deps.noteStoppedChunks?.(op.id, seqs);
    return { chunks: open.rows.length, control: 0 };
  }
  if (s.state === 'baking' && s.currentWave !== null) {
    // The round the bake's own chain has waiting (same job ID: a no-op while that job exists).
    const next = nextBakeRound(s.bakeUntil, s.rollout.bakeSeconds, now);
    await deps.enqueueControl(
      { kind: 'bake', opId: op.id, epoch, wave: s.currentWave, round: next.round },
      next.delayMs,
    );
    return { chunks: 0, control: 1 };
  }
  if (s.state === 'rolling_back') {
    await deps.enqueueControl({ kind: 'rollback', opId: op.id, epoch });
    // After the job is queued again: what the views say must not stand in the way of that.
    await deps.noteStoppedHolds?.(op.id);
    return { chunks: 0, control: 1 };
  }
  return { chunks: 0, control: 0 };
}

/** How often a worker deletes the lock rows of ended operations (releaseEndedLocks). */
const RELEASE_LOCKS_EVERY_MS = 60_000;

export interface ReconcileLoop {
  reconcile: () => Promise<Reconciled>;
  stop: () => void;
}

/**
 * Runs reconcileOnce now (work queued before this process started, or lost with a Redis restart)
 * and then every `everyMs`, never two at once; a failed round is logged and the next one tries
 * again. Ended operations' lock rows are released from the same loop.
 */
export async function startReconcileLoop<Tx>(o: {
  deps: ReconcilerDeps<Tx>;
  everyMs: number;
  releaseLocks(): Promise<number>;
  /**
   * After rounds failed (PostgreSQL or Redis away), once one succeeds: the jobs that failed
   * meanwhile wait out their backoff (up to 16-32 s after a 15 s outage) unless moved on now.
   */
  recovered?(): Promise<void>;
  logger: Pick<FastifyBaseLogger, 'warn' | 'debug' | 'info'>;
}): Promise<ReconcileLoop> {
  // Every round fails alike while PostgreSQL or Redis is away: said once (outage-log.ts).
  const away = outageLog(o.logger, 'reconcile');
  let releasedAt = 0;
  let failing = false;
  let retry: NodeJS.Timeout | undefined;
  let stopped = false;
  const reconcile = async () => {
    const r = await reconcileOnce(o.deps);
    // At most once a minute: finding the rows scans the lock table, which also holds every lock of
    // the running operations, and a row left a minute longer only costs a re-plan.
    if (o.deps.clock() - releasedAt >= RELEASE_LOCKS_EVERY_MS) {
      releasedAt = o.deps.clock();
      const released = await o.releaseLocks();
      if (released) o.logger.debug({ released }, 'released the locks of ended operations');
    }
    return r;
  };
  let reconciling = false;
  // While a dependency is away, look again every second rather than every round: work resumes as
  // soon as it is back (a trial: 6-8 s of a still operation after PostgreSQL returned, saying nothing).
  const failed = (err: unknown) => {
    failing = true;
    // Only for a dependency away: a round that fails for a reason of its own keeps the round's pace.
    if (stopped || !isConnectionError(err)) return;
    retry ??= setTimeout(() => {
      retry = undefined;
      round();
    }, RETRY_WHILE_AWAY_MS).unref();
  };
  const round = () => {
    if (reconciling || stopped) return;
    reconciling = true;
    reconcile()
      .then(
        async () => {
          away.ok();
          if (failing) {
            failing = false;
            await o.recovered?.();
          }
        },
        (err: unknown) => {
          away.caught(err, () => o.logger.warn({ err }, 'reconcile failed'));
          failed(err);
        },
      )
      .catch((err: unknown) => o.logger.warn({ err }, 'could not move on the jobs that failed during an outage'))
      .finally(() => {
        reconciling = false;
      });
  };
  const timer = setInterval(round, o.everyMs);
  timer.unref();
  await reconcile().catch((err: unknown) => {
    o.logger.warn({ err }, 'initial reconcile failed');
    failed(err);
  });
  return {
    reconcile,
    stop: () => {
      stopped = true;
      clearInterval(timer);
      clearTimeout(retry);
    },
  };
}

/** How often the reconcile loop looks again while its rounds fail (a dependency away). */
const RETRY_WHILE_AWAY_MS = 1_000;
