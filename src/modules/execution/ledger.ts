// Item ledger writes for execution. Every state change of an item goes through here, guarded by
// who claimed it, so a second runner of the same range can never count an outcome twice.
import type pg from 'pg';
import { inTransaction } from '../../lib/sql.ts';

/** How long a claim stays exclusive when its claimer vanished without BullMQ re-running its job. */
export const CLAIM_LEASE_MS = 60_000;

export interface ClaimedItem {
  seq: number;
  resourceId: string;
  tenantId: string;
  snapshotId: number | null;
  executedSeq: number | null;
}

/** Claims the range's pending items, and items this same job claimed before it was interrupted. */
export async function claimRange(
  pool: pg.Pool,
  opId: string,
  from: number,
  to: number,
  claimer: string,
): Promise<ClaimedItem[]> {
  const r = await pool.query(
    `UPDATE operation_items SET state = 'claimed', claimed_by = $4, claimed_at = now(), attempts = attempts + 1, updated_at = now()
     WHERE operation_id = $1 AND seq >= $2 AND seq < $3
       AND (state = 'pending' OR (state = 'claimed' AND (claimed_by = $4 OR claimed_at < now() - make_interval(secs => $5))))
     RETURNING seq, resource_id, tenant_id, snapshot_id, executed_seq`,
    [opId, from, to, claimer, CLAIM_LEASE_MS / 1000],
  );
  return r.rows
    .map((x) => ({
      seq: x.seq,
      resourceId: x.resource_id,
      tenantId: x.tenant_id,
      snapshotId: x.snapshot_id === null ? null : Number(x.snapshot_id),
      executedSeq: x.executed_seq === null ? null : Number(x.executed_seq),
    }))
    .sort((a, b) => a.seq - b.seq);
}

/**
 * Before any destructive call, in one transaction: store the new snapshots (insert-only table),
 * link them, and set the write-ahead mark (executed_seq) on every item about to be called — so a
 * crash between the call and the outcome record still leaves rollback knowing what to restore.
 * Only items that have a snapshot get the mark: nothing is ever called without one.
 */
export async function prepareExecution(
  pool: pg.Pool,
  opId: string,
  claimer: string,
  snaps: { seq: number; resourceId: string; tenantId: string; data: unknown }[],
  toRun: number[],
) {
  await inTransaction(pool, async (c) => {
    let linkSeqs: number[] = [];
    let linkIds: number[] = [];
    if (snaps.length) {
      const ins = await c.query<{ id: string; resource_id: string }>(
        `INSERT INTO snapshots (operation_id, resource_id, tenant_id, data)
         SELECT $1, r, t, d::jsonb FROM unnest($2::text[], $3::text[], $4::text[]) AS x(r, t, d) RETURNING id, resource_id`,
        [
          opId,
          snaps.map((s) => s.resourceId),
          snaps.map((s) => s.tenantId),
          snaps.map((s) => JSON.stringify(s.data ?? null)),
        ],
      );
      const idByResource = new Map(ins.rows.map((r) => [r.resource_id, Number(r.id)]));
      linkSeqs = snaps.map((s) => s.seq);
      linkIds = snaps.map((s) => idByResource.get(s.resourceId)!);
    }
    await c.query(
      `UPDATE operation_items i
         SET snapshot_id = coalesce(l.sid, i.snapshot_id),
             executed_seq = coalesce(i.executed_seq, nextval('operation_item_exec_seq'))
       FROM unnest($2::int[]) AS r(seq) LEFT JOIN unnest($3::int[], $4::bigint[]) AS l(seq, sid) ON l.seq = r.seq
       WHERE i.operation_id = $1 AND i.seq = r.seq AND i.claimed_by = $5 AND i.seq BETWEEN $6 AND $7`,
      [opId, toRun, linkSeqs, linkIds, claimer, ...seqBounds(toRun)],
    );
  });
}

/**
 * The chunk's seq range, stated explicitly: without it the planner may join the unnest() list
 * against every ledger row of the operation (a scan that grows with the operation's size) instead
 * of walking the primary key over the chunk's range.
 */
function seqBounds(seqs: number[]): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const q of seqs) {
    if (q < lo) lo = q;
    if (q > hi) hi = q;
  }
  return seqs.length ? [lo, hi] : [0, -1];
}

export interface Outcome {
  seq: number;
  state: 'done' | 'failed' | 'pending';
  error: string | null;
}

/**
 * Records outcomes and the wave's counters in one transaction. `pending` returns never-sent
 * items to the queue (and clears their write-ahead mark). Returns the wave's counters after.
 */
export async function recordOutcomes(pool: pg.Pool, opId: string, wave: number, claimer: string, outcomes: Outcome[]) {
  return inTransaction(pool, async (c) => {
    const upd = await c.query<{ seq: number; state: string }>(
      `UPDATE operation_items i SET state = u.state, last_error = u.err, updated_at = now(), claimed_by = NULL, claimed_at = NULL,
         executed_seq = CASE WHEN u.state = 'pending' THEN NULL ELSE i.executed_seq END
       FROM unnest($2::int[], $3::text[], $4::text[]) AS u(seq, state, err)
       WHERE i.operation_id = $1 AND i.seq = u.seq AND i.state = 'claimed' AND i.claimed_by = $5 AND i.seq BETWEEN $6 AND $7
       RETURNING i.seq, i.state`,
      [
        opId,
        outcomes.map((o) => o.seq),
        outcomes.map((o) => o.state),
        outcomes.map((o) => o.error),
        claimer,
        ...seqBounds(outcomes.map((o) => o.seq)),
      ],
    );
    const recorded = new Set(upd.rows.map((r) => r.seq));
    const mine = outcomes.filter((o) => recorded.has(o.seq));
    const done = mine.filter((o) => o.state === 'done').length;
    const failed = mine.filter((o) => o.state === 'failed').length;
    // Failures at the end of this chunk, in item order; a chunk of nothing but failures extends
    // the streak that earlier chunks left.
    const finished = mine.filter((o) => o.state !== 'pending');
    let trailing = 0;
    for (let i = finished.length - 1; i >= 0 && finished[i]!.state === 'failed'; i--) trailing++;
    const allFailed = finished.length > 0 && trailing === finished.length;
    const w = await c.query<{
      done: number;
      failed: number;
      consecutive_failures: number;
      from_seq: number;
      to_seq: number;
    }>(
      `UPDATE operation_waves SET done = done + $3, failed = failed + $4,
         consecutive_failures = CASE WHEN $6 THEN consecutive_failures + $5 WHEN $7 THEN $5 ELSE consecutive_failures END
       WHERE operation_id = $1 AND wave = $2 RETURNING done, failed, consecutive_failures, from_seq, to_seq`,
      [opId, wave, done, failed, trailing, allFailed, finished.length > 0],
    );
    const row = w.rows[0]!;
    return {
      done: row.done,
      failed: row.failed,
      consecutiveFailures: row.consecutive_failures,
      pending: row.to_seq - row.from_seq - row.done - row.failed,
      recordedDone: done,
      recordedFailed: failed,
    };
  });
}
