// A delete chunk whose adapter acts on Blastgate's own database (the registry adapter) runs in ONE
// transaction: lock the chunk's pending items → check the operation still runs this wave → change
// the registry rows in one statement that also returns each row as it was (its snapshot, read
// under the same row lock as the change) → store the snapshots → record outcomes, snapshot ids
// and the wave's counters → decide → commit. The change, its snapshot and its record commit
// together or not at all, so there is no claim, no write-ahead mark and no "maybe sent" item for
// a crash or a halt to leave behind; and it is 1 commit and 1 ledger write per item instead of the
// general path's 4 commits and 3 writes (claim, mark, outcome). The operation's state is read
// again just before the commit (read committed: each statement sees the latest commits): a pause
// or halt that committed while the chunk ran rolls the whole chunk back, so none of its items is
// recorded done after the pause, and the pause never waits for a chunk (no lock on its row).
//
// Anything else — a cascade, an item claimed or tried before, a restore, a purge, an erasure, an
// HTTP adapter — takes the general path (chunk.ts → chunk-execute.ts).
import { intArray, textArray } from '../../lib/pg-array.ts';
import { seqLayout, type Queryable } from '../../lib/sql.ts';
import { applyChunkWithBefore, type RegistrySnapshot } from '../adapters/registry-apply.ts';
import type { ItemResult } from '../adapters/types.ts';
import { mayExecute, type LifecycleEvent } from '../operations/lifecycle.ts';
import type { WaveStats } from '../operations/wave-health.ts';
import { recordRetention } from '../purges/retention.ts';
import type { SnapshotInput } from '../snapshots/store.ts';
import type { ChunkDeps } from './chunk.ts';
import type { Fence } from './exclusive.ts';
import { FROZEN_SQL } from './halt-watch.ts';
import { foldIntoWave } from './ledger.ts';
import { NEW_CHILD, newChildren } from './new-children.ts';
import type { ChunkJob } from './queues.ts';
import type { OperationRecord } from './state.ts';
import { deferForCap, type VelocityGrant } from './velocity.ts';

export interface SameDb<Tx> {
  /** The engine's transaction, to run SQL in. */
  sql(tx: Tx): Queryable;
  /** The snapshot store's put, in that transaction. */
  put(tx: Tx, operationId: string, inputs: SnapshotInput[]): Promise<number[]>;
}

/** Why the chunk went back to the general path, or what it left to be requeued. */
export type SameDbResult =
  { handled: false } | { handled: true; requeueMs: number; running: boolean; epoch: number; grant?: VelocityGrant };

/** Rolls the transaction back: the chunk is the general path's (nothing was written). */
const GENERAL = new Error('same-database chunk: general path');
/** Rolls the transaction back: the operation no longer runs this wave, or nothing may run yet. */
const STOPPED = new Error('same-database chunk: not running');

interface Row {
  seq: number;
  resource_id: string;
  tenant_id: string;
  state: string;
  executed_seq: string | null;
  attempts: number;
}

/** Whether a chunk of `op` may take this path (and its adapter must be the registry's). */
export const sameDbEligible = (op: OperationRecord) => op.action === 'delete';

/** The operation runs this wave and nothing is frozen, as of the latest commit (read committed). */
async function stillRuns(db: Queryable, j: ChunkJob): Promise<boolean> {
  const live = await db.query(
    `SELECT 1 FROM operations WHERE id = $1 AND state = 'running' AND current_wave = $2
       AND NOT ${FROZEN_SQL}`,
    [j.opId, j.wave],
  );
  return (live.rowCount ?? 0) > 0;
}

export async function runSameDbChunk<Tx>(
  deps: ChunkDeps<Tx> & { sameDb: SameDb<Tx> },
  op: OperationRecord,
  j: ChunkJob,
  fence: Fence,
  maxAttempts: number,
  /**
   * The wave's event after this chunk; `lastError`, the wave's last failure (this chunk's, else the
   * one the wave kept), says why in a halt reason.
   */
  waveEvent: (stats: WaveStats, lastError?: string) => LifecycleEvent | null,
): Promise<SameDbResult> {
  const since = deps.clock();
  let requeueMs = 0;
  let grant: VelocityGrant | undefined;
  const counted = { done: 0, failed: 0 };
  await deps.watch.track(j.opId);
  try {
    const applied = await deps.engine.apply(
      j.opId,
      async (tx) => {
        const db = deps.sameDb.sql(tx);
        const { rows } = await db.query<Row>(
          `SELECT seq, resource_id, tenant_id, state, executed_seq, attempts FROM operation_items
           WHERE operation_id = $1 AND seq >= $2 AND seq < $3 AND state IN ('pending', 'claimed')
           ORDER BY seq FOR UPDATE`,
          [j.opId, j.from, j.to],
        );
        // Claimed by a run in progress (or one that died: its lease decides), tried before, or
        // nothing left: the general path knows how to treat those.
        const plain = rows.every((r) => r.state === 'pending' && r.executed_seq === null && r.attempts < maxAttempts);
        if (rows.length === 0 || !plain) throw GENERAL;
        const kids = await db.query(
          `SELECT 1 FROM operation_items WHERE operation_id = $1 AND parent_seq >= $2 AND parent_seq < $3 LIMIT 1`,
          [j.opId, j.from, j.to],
        );
        if (kids.rowCount) throw GENERAL;
        if (!(await stillRuns(db, j))) throw STOPPED;

        grant = await deps.velocity.reserve(
          j.opId,
          rows.map((r) => r.tenant_id),
          op.lifecycle.rollout,
        );
        const items = rows.slice(0, grant.granted);
        if (grant.granted < rows.length) requeueMs = deferForCap(grant);
        if (items.length === 0) throw STOPPED;
        // The last look before the change: a halt seen by this worker, or its job lock lost.
        if (fence.lost || !deps.watch.canRun(j.opId, j.wave, since)) throw STOPPED;

        // A child its cascade would take that the plan does not list (new-children.ts): left as it is.
        const fresh = await newChildren(
          db,
          j.opId,
          op.targetType,
          items.map((r) => r.resource_id),
          [],
        );
        const toApply = fresh.size ? items.filter((r) => !fresh.has(r.resource_id)) : items;
        const applied = toApply.length
          ? await applyChunkWithBefore(
              db,
              op.mode === 'hard' ? 'hardDelete' : 'softDelete',
              toApply.map((r) => ({
                operationId: j.opId,
                resourceId: r.resource_id,
                tenantId: r.tenant_id,
                type: op.targetType,
              })),
              { approvedTenants: op.approvedTenants },
            )
          : { results: [], before: [] };
        const { results, before } = fresh.size ? withRefused(items, toApply, applied, fresh) : applied;
        const done = items.flatMap((r, k) => (results[k]!.ok && before[k] ? [{ r, snap: before[k] }] : []));
        const ids = await deps.sameDb.put(
          tx,
          j.opId,
          done.map(({ r, snap }) => ({ resourceId: r.resource_id, tenantId: r.tenant_id, data: snap })),
        );
        const sid = new Map(done.map(({ r }, k) => [r.seq, ids[k]!]));
        const errors = items.map((_, k) => {
          const res = results[k]!;
          return res.ok ? null : res.error.slice(0, 500);
        });
        // Each row's values laid out by seq (lib/sql.ts seqLayout): O(1) per row, not a scan of the list.
        const seqs = items.map((r) => r.seq);
        const { from, lay } = seqLayout(seqs);
        const k = 'i.seq - $5 + 1';
        await db.query(
          `UPDATE operation_items i SET state = CASE WHEN ($4::bigint[])[${k}] IS NULL THEN 'failed' ELSE 'done' END,
             last_error = ($3::text[])[${k}], permanent = ($4::bigint[])[${k}] IS NULL, attempts = i.attempts + 1,
             snapshot_id = ($4::bigint[])[${k}], updated_at = now(),
             executed_seq = CASE WHEN ($4::bigint[])[${k}] IS NULL THEN NULL ELSE nextval('operation_item_exec_seq') END
           WHERE i.operation_id = $1 AND i.seq = ANY($2::int[]) AND i.seq >= $5 AND i.seq < $6 AND i.state = 'pending'`,
          [
            j.opId,
            intArray(seqs),
            textArray(lay(errors)),
            intArray(lay(items.map((r) => sid.get(r.seq) ?? null))),
            from,
            j.to,
          ],
        );
        const doneSeqs = done.map(({ r }) => r.seq);
        // No registryFollows (the general path's) for the rows the statement changed: it already
        // wrote what a done soft delete means for them (their retention, registry-apply.ts), and a
        // hard delete is the statement itself; it would look up every done item again to change no
        // row. A soft delete's row found soft_deleted already (its own system deleted it first, an
        // import said so) is done without a change, so without a retention: it gets the general
        // path's record (recordRetention, which says why). Only those: none in the usual chunk.
        const already =
          op.mode === 'soft' ? done.flatMap((d) => (d.snap.state === 'soft_deleted' ? [d.r.seq] : [])) : [];
        if (already.length) await recordRetention(db, j.opId, already);
        const verdicts = items.map((r) => (sid.has(r.seq) ? 'done' : 'failed'));
        const lastError = errors.findLast((e) => e !== null) ?? undefined;
        const { stats, lastError: waveLast } = await foldIntoWave(db, j.opId, j.wave, verdicts, since, lastError);
        // The last look, just before the commit: a pause or halt that committed meanwhile undoes
        // the whole chunk (nothing of it ever happened), so nothing is recorded done after it.
        if (!(await stillRuns(db, j))) throw STOPPED;
        counted.done = doneSeqs.length;
        counted.failed = items.length - doneSeqs.length;
        // The last refusal names its cause (a resource or tenant protected since the plan): a halt
        // reason that says only "failure rate 100%" sent the operator to the ledger to find it. A
        // chunk without failures passes on the one the wave kept (a resume re-judging the wave).
        return waveEvent(stats, waveLast);
      },
      { name: 'system' },
      { report: true },
    );
    // Counted once committed.
    deps.metrics?.items.inc({ outcome: 'done' }, counted.done);
    deps.metrics?.items.inc({ outcome: 'failed' }, counted.failed);
    const running = applied?.changed
      ? mayExecute(applied.state) && applied.state.currentWave === j.wave
      : deps.watch.runs(j.opId, j.wave, since);
    return { handled: true, requeueMs, running, epoch: applied?.version ?? j.epoch, ...(grant ? { grant } : {}) };
  } catch (err) {
    // Nothing of the transaction was kept: what was reserved is given back.
    if (grant?.granted) await deps.velocity.refund(grant, grant.granted).catch(() => undefined);
    if (err === GENERAL) return { handled: false };
    // With the grant: a chunk granted nothing by a cap goes back to the queue until the cap's
    // window ends, and the operation says which cap holds it (the caller notes it).
    if (err === STOPPED)
      return {
        handled: true,
        requeueMs,
        running: deps.watch.runs(j.opId, j.wave, since),
        epoch: j.epoch,
        ...(grant ? { grant } : {}),
      };
    throw err;
  } finally {
    deps.watch.untrack(j.opId);
  }
}

/** The statement's results for `applied`, and for the rest of `items` their refusal (a new child). */
function withRefused(
  items: Row[],
  applied: Row[],
  r: { results: ItemResult[]; before: (RegistrySnapshot | null)[] },
  fresh: Map<string, string>,
): { results: ItemResult[]; before: (RegistrySnapshot | null)[] } {
  const at = new Map(applied.map((x, k) => [x.seq, k]));
  return {
    results: items.map((x): ItemResult => {
      const k = at.get(x.seq);
      if (k !== undefined) return r.results[k]!;
      return {
        ok: false,
        permanent: true,
        unapplied: true,
        error: NEW_CHILD(x.resource_id, fresh.get(x.resource_id)!),
      };
    }),
    before: items.map((x) => {
      const k = at.get(x.seq);
      return k === undefined ? null : r.before[k]!;
    }),
  };
}
