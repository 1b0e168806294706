// Item ledger writes for execution. Every change of an item's state is fenced by the claim token
// of the run that holds it: a second run of the same range (a job handed out twice, a run that
// was stopped and woke up after its claim was taken over) can neither record nor mark anything.
// A cascade's descendants are never claimed: they are snapshotted, marked and recorded with the
// parent that takes them (ledger-cascade.ts), fenced by the parent's claim.
import type pg from 'pg';
import { inTransaction, seqLayout, type Queryable } from '../../lib/sql.ts';
import { foldOutcomes, type ItemVerdict, type WaveStats } from '../operations/wave-health.ts';
import type { SnapshotStore } from '../snapshots/store.ts';
import {
  descendantsOf,
  linkDescendantSnapshots,
  markDescendants,
  recordDescendants,
  syncDescendants,
} from './ledger-cascade.ts';
import type { Ledger, Outcome, WaveRow } from './ledger-types.ts';

// The ledger's shapes are ledger-types.ts; its importers read them from here.
export type * from './ledger-types.ts';

/** Thrown inside prepare's transaction to roll it back when the operation stopped running the wave. */
const NOT_LIVE = new Error('the operation is not running this wave');

const seqsOf = (xs: { seq: number }[]) => xs.map((x) => x.seq);

export function pgLedger(pool: pg.Pool, leaseMs: number, snapshots: Pick<SnapshotStore, 'put'>): Ledger {
  return {
    async claim(opId, range, jobId, token) {
      const r = await pool.query(
        `UPDATE operation_items SET state = 'claimed', claimed_by = $4, claim_token = $5, claimed_at = now(),
           attempts = attempts + 1, updated_at = now(),
           -- Taken over from a run that never recorded it (killed, its lease ran out), which may have
           -- sent the item's own call: no longer known unsent (OperationItem.ownUnsent).
           own_unsent = own_unsent AND state = 'pending'
         WHERE operation_id = $1 AND seq >= $2 AND seq < $3
           AND (state = 'pending' OR (state = 'claimed' AND (claimed_by = $4 OR claimed_at < now() - make_interval(secs => $6))))
         RETURNING seq, resource_id, tenant_id, resource_type, snapshot_id, source_snapshot_id, executed_seq, attempts, last_error`,
        [opId, range.from, range.to, jobId, token, leaseMs / 1000],
      );
      const kids = r.rows.length ? await descendantsOf(pool, opId, seqsOf(r.rows as { seq: number }[])) : new Map();
      return r.rows
        .map((x) => ({
          seq: x.seq,
          resourceId: x.resource_id,
          tenantId: x.tenant_id,
          type: x.resource_type,
          snapshotId: x.snapshot_id === null ? null : Number(x.snapshot_id),
          sourceSnapshotId: x.source_snapshot_id === null ? null : Number(x.source_snapshot_id),
          descendants: kids.get(x.seq) ?? [],
          executedSeq: x.executed_seq === null ? null : Number(x.executed_seq),
          attempts: x.attempts,
          lastError: x.last_error,
        }))
        .sort((a, b) => a.seq - b.seq);
    },

    async extend(opId, range, token) {
      const r = await pool.query(
        `UPDATE operation_items SET claimed_at = now() WHERE operation_id = $1 AND seq >= $2 AND seq < $3
           AND state = 'claimed' AND claim_token = $4`,
        [opId, range.from, range.to, token],
      );
      return r.rowCount ?? 0;
    },

    async release(opId, range, token, items, error, uncount) {
      if (items.length === 0) return;
      const r = await pool.query<{ seq: number }>(
        `UPDATE operation_items i SET state = 'pending', claimed_by = NULL, claim_token = NULL, claimed_at = NULL,
           last_error = coalesce($5, i.last_error), updated_at = now(), attempts = i.attempts - $8::int,
           executed_seq = CASE WHEN u.keep THEN i.executed_seq ELSE NULL END
         FROM unnest($4::int[], $6::boolean[]) AS u(seq, keep)
         WHERE i.operation_id = $1 AND i.seq = u.seq AND i.seq >= $2 AND i.seq < $3
           AND i.state = 'claimed' AND i.claim_token = $7
         RETURNING i.seq`,
        [
          opId,
          range.from,
          range.to,
          seqsOf(items),
          error,
          items.map((i) => i.executedSeq !== null),
          token,
          uncount ? 1 : 0,
        ],
      );
      if (items.some((i) => i.descendants.length)) await syncDescendants(pool, opId, seqsOf(r.rows));
    },

    prepare(opId, wave, range, token, snaps, seqs) {
      return inTransaction(pool, async (c) => {
        // Encrypted, hashed and verified on read; in this transaction, so a snapshot
        // and the mark that relies on it commit together or not at all. Stored BEFORE the
        // operation's row is share-locked: that lock is what an operator's pause waits for, so it
        // is held for the marks and the commit only, not for a chunk's snapshot encryption.
        const ids = await snapshots.put(
          c,
          opId,
          snaps.map((s) => ({ resourceId: s.resourceId, tenantId: s.tenantId, data: s.data })),
        );
        const own = snaps.flatMap((s, k) => (s.parentSeq === null ? [{ seq: s.seq, id: ids[k]! }] : []));
        const kids = snaps.flatMap((s, k) => (s.parentSeq === null ? [] : [{ seq: s.seq, id: ids[k]! }]));
        if (kids.length) await linkDescendantSnapshots(c, opId, range, token, kids);
        // Held to the commit: a pause (FOR UPDATE) commits before this check or after these marks.
        const live = await c.query(
          `SELECT 1 FROM operations WHERE id = $1 AND state = 'running' AND current_wave = $2
             AND NOT coalesce((SELECT (value->>'frozen')::boolean FROM settings WHERE key = 'freeze'), false)
           FOR SHARE`,
          [opId, wave],
        );
        // Not running this wave any more: nothing of this transaction is kept.
        if (live.rowCount === 0) throw NOT_LIVE;
        // Only items that have a snapshot, and whose descendants all have theirs, get the mark:
        // nothing is ever called without one.
        const r = await c.query<{ seq: number }>(
          `UPDATE operation_items i
             SET snapshot_id = coalesce(l.sid, i.snapshot_id),
                 executed_seq = coalesce(i.executed_seq, nextval('operation_item_exec_seq'))
           FROM unnest($2::int[]) AS r(seq) LEFT JOIN unnest($3::int[], $4::bigint[]) AS l(seq, sid) ON l.seq = r.seq
           WHERE i.operation_id = $1 AND i.seq = r.seq AND i.seq >= $5 AND i.seq < $6
             AND i.state = 'claimed' AND i.claim_token = $7 AND coalesce(l.sid, i.snapshot_id) IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM operation_items d
                             WHERE d.operation_id = $1 AND d.parent_seq = i.seq AND d.snapshot_id IS NULL)
           RETURNING i.seq`,
          [opId, seqs, seqsOf(own), own.map((x) => x.id), range.from, range.to, token],
        );
        const marked = seqsOf(r.rows);
        if (marked.length) await markDescendants(c, opId, marked);
        return new Set(marked);
      }).catch((err: unknown) => {
        if (err === NOT_LIVE) return new Set<number>();
        throw err;
      });
    },

    async record(tx, opId, wave, token, outcomes, marked, now, follow) {
      // `pending` hands an item back. Never sent: not an attempt, and its mark is cleared when this
      // run set it. Sent with an unknown outcome: the attempt counts and the mark stays. A failure
      // that changed nothing (every try refused definitively) loses the mark this run set, too: the
      // item was never acted on, so a rollback must not restore it (nor count it as not restored).
      const unsent = (o: Outcome) => o.state === 'pending' && !o.sent;
      const unmark = (o: Outcome) =>
        marked.has(o.seq) && (unsent(o) || (o.state === 'failed' && o.permanent === true && o.unapplied === true));
      // No join with the outcomes: each row finds its own by its seq's place in arrays laid out by
      // seq (k; lib/sql.ts seqLayout). Joined with unnest(), the planner, which thinks few rows are
      // claimed by this token, looped over all 500 outcomes once per claimed row (~250 ms a chunk,
      // the largest cost of a 17,660-item restore); found with array_position, every row scanned
      // the list five times. The seq bounds make the key's range the index condition: with
      // `seq = ANY` alone the planner read every item of the operation (20k rows for a 500-item
      // chunk; quadratic over a large operation).
      const seqs = seqsOf(outcomes);
      const { from, to, lay } = seqLayout(seqs);
      const k = 'i.seq - $9 + 1';
      const upd = await tx.query<{ seq: number }>(
        `UPDATE operation_items i SET state = ($3::text[])[${k}],
           last_error = coalesce(($4::text[])[${k}], CASE WHEN ($3::text[])[${k}] = 'done' THEN NULL ELSE i.last_error END),
           attempts = CASE WHEN ($8::boolean[])[${k}] THEN i.attempts - 1 ELSE i.attempts END,
           permanent = ($5::boolean[])[${k}], updated_at = now(), claimed_by = NULL, claim_token = NULL, claimed_at = NULL,
           executed_seq = CASE WHEN ($6::boolean[])[${k}] THEN NULL ELSE i.executed_seq END,
           own_unsent = CASE WHEN ($8::boolean[])[${k}] THEN i.own_unsent
             ELSE coalesce(($11::boolean[])[${k}], false) AND (($12::boolean[])[${k}] OR i.own_unsent) END
         WHERE i.operation_id = $1 AND i.seq = ANY($2::int[]) AND i.state = 'claimed' AND i.claim_token = $7
           AND i.seq BETWEEN $9 AND $10
         RETURNING i.seq`,
        [
          opId,
          seqs,
          lay(outcomes.map((o) => o.state)),
          lay(outcomes.map((o) => o.error)),
          lay(outcomes.map((o) => o.permanent ?? false)),
          lay(outcomes.map(unmark)),
          token,
          lay(outcomes.map(unsent)),
          from,
          to,
          // Its own call unsent in this run, and in every run before (this run set its mark, or they
          // said so); an item never sent at all keeps what it was.
          lay(outcomes.map((o) => o.ownUnsent === true)),
          lay(outcomes.map((o) => marked.has(o.seq))),
        ],
      );
      const recorded = new Set(upd.rows.map((r) => r.seq));
      // A cascade's descendants share their parent's outcome (and mark), in this transaction —
      // unless the outcome names theirs (a restore).
      const own = outcomes.filter((o) => recorded.has(o.seq) && o.descendants?.length);
      const shared = [...recorded].filter((seq) => !own.some((o) => o.seq === seq));
      const sharedDone = shared.length ? await syncDescendants(tx, opId, shared) : 0;
      const descendantsDone = sharedDone + (own.length ? await recordDescendants(tx, opId, own, marked) : 0);
      const landed = outcomes.filter((o) => recorded.has(o.seq) && o.state !== 'pending');
      const verdicts = landed.map((o) => o.verdict ?? (o.state as 'done' | 'failed'));
      const doneSeqs = seqsOf(landed.filter((o) => o.state === 'done'));
      const recordedDone = doneSeqs.length;
      const counts = { recordedDone, recordedFailed: landed.length - recordedDone, descendantsDone, doneSeqs };
      await follow?.(counts);
      const lastError = landed.findLast((o) => o.state === 'failed' && o.error)?.error ?? undefined;
      return { ...(await foldIntoWave(tx, opId, wave, verdicts, now, lastError)), ...counts };
    },

    waveStats: waveStatsLocked,
  };
}

/**
 * The wave's counters with `verdicts` (in the order they happened) folded in, written under the
 * wave row's lock: the last write of a record, so concurrent chunks queue on it only to commit.
 * With them the wave's last error: `lastError` when given, else the one the wave kept.
 */
export async function foldIntoWave(
  tx: Queryable,
  opId: string,
  wave: number,
  verdicts: readonly ItemVerdict[],
  now: number,
  /** The error of the last of these items that failed (kept on the wave for a later halt reason). */
  lastError?: string,
): Promise<{ stats: WaveStats; lastError?: string }> {
  const before = await waveStatsLocked(tx, opId, wave);
  if (!before) throw new Error(`wave ${wave} of ${opId} does not exist`);
  const { lastError: kept, ...counters } = before;
  const stats = foldOutcomes(counters, verdicts);
  if (verdicts.length) {
    await tx.query(
      `UPDATE operation_waves SET done = $3, failed = $4, consecutive_failures = $5, progress_at = $6,
         last_error = coalesce($7, last_error)
       WHERE operation_id = $1 AND wave = $2`,
      [opId, wave, stats.done, stats.failed, stats.consecutiveFailures, new Date(now), lastError ?? null],
    );
  }
  const last = lastError ?? kept;
  return last === undefined ? { stats } : { stats, lastError: last };
}

async function waveStatsLocked(tx: Queryable, opId: string, wave: number): Promise<WaveRow | undefined> {
  const w = await tx.query<{
    done: number;
    failed: number;
    consecutive_failures: number;
    total: number;
    last_error: string | null;
  }>(
    `SELECT done, failed, consecutive_failures, to_seq - from_seq AS total, last_error FROM operation_waves
     WHERE operation_id = $1 AND wave = $2 FOR UPDATE`,
    [opId, wave],
  );
  const r = w.rows[0];
  return (
    r && {
      done: r.done,
      failed: r.failed,
      consecutiveFailures: r.consecutive_failures,
      pending: r.total - r.done - r.failed,
      ...(r.last_error !== null ? { lastError: r.last_error } : {}),
    }
  );
}
