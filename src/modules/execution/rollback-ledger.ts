// Ledger access for rollbacks: which items to restore next, recording restores (fenced by the
// rollback run's token, with backoff for retryable failures), what the rollback still waits for,
// and the final count. A cascade's descendants are picked with their parent (never before it is
// restored), so a parent and what it took come back in one batch.
import type pg from 'pg';
import type { RollbackCandidate } from '../operations/rollback-plan.ts';
import { moveClass, recordMoves } from './wave-moves.ts';

/**
 * Of item `t`: its own delete was never sent (or refused with nothing changed), only some of its
 * descendants' (OperationItem.ownUnsent: a registry site whose app was refused, its registry
 * statement never written; an HTTP site refused after its registry apps went), and no run holds
 * it. Its mark stays for those descendants: a rollback restores them, not it (over HTTP a restore
 * would write its snapshot over the live resource), and leaves it failed (or pending) with its
 * error, counted neither restored nor not restored (README: refused deletes).
 */
export const ownUnsent = (t: string) => `(${t}.own_unsent AND ${t}.state IN ('failed', 'pending'))`;

/** Restore attempts per item before a retryable failure counts as final. */
export const RESTORE_ATTEMPTS = 5;

/**
 * Of a restore_failed item: the running rollback will try it again (not final, attempts left).
 * Parameters: $2 the rollback runs (operation rolling_back), $3 RESTORE_ATTEMPTS.
 */
export const retryDue = (running: string, attempts: string) =>
  `${running}::boolean AND NOT permanent AND restore_attempts < ${attempts}::int`;
/**
 * An item's state as the views show it: a failed restore that the running rollback will try again
 * is `restoring` (the view's counts, the items and tenants routes alike), not restore_failed yet.
 */
export const shownState = (running: string, attempts: string) =>
  `CASE WHEN state = 'restore_failed' AND ${retryDue(running, attempts)} THEN 'restoring' ELSE state END`;
/**
 * Backoff before the n-th retry of a failed restore: base × 2^(n−1), capped. With 5 attempts a
 * retryable failure (a 5xx, a timeout) is tried again for about a minute (4 + 8 + 16 + 32 s) before
 * it counts as final: a rollback meets a downstream that is restarting or shedding load. A base of
 * 0.5 s gave up after ~8 s, and a rollback after a halt on a flaky downstream ended incomplete (trial).
 */
export const RESTORE_BACKOFF_MS = 4_000;
const RESTORE_BACKOFF_CAP_MS = 60_000;
/** Characters of a restore error shown in an operation's `waiting` (as an item's error is kept). */
const ERROR_SHOWN = 500;
/** Descendants picked in one batch whose parent was restored by an earlier one (their retries). */
const ORPHANS_PER_PICK = 1_000;

/**
 * The items other runs hold ($1: the operation, $2: the claim lease in seconds): how many, since the
 * first was claimed, and when the first lease ends. `also`: a further condition on the items.
 * Marked items only (what a rollback restores), unless `unmarked` holds too (a running delete's).
 */
export const heldItemsSql = (also = 'true', unmarked = 'false') =>
  `SELECT count(*)::int AS items, min(claimed_at) AS since, min(claimed_at + make_interval(secs => $2)) AS at
   FROM operation_items
   WHERE operation_id = $1 AND (executed_seq IS NOT NULL OR ${unmarked}) AND state IN ('claimed', 'restoring')
     AND claimed_at >= now() - make_interval(secs => $2) AND ${also}`;
/** restore_wait's `held` part, from a `held` row of heldItemsSql, noted now (the views read it). */
export const HELD_JSON = `jsonb_build_object('held', jsonb_build_object('items', held.items, 'since', held.since,
  'until', held.at, 'notedAt', now()))`;

export interface RestoreCandidate extends RollbackCandidate {
  seq: number;
  tenantId: string;
  /** Cascades: the seq of the item whose delete took this one (null: a submitted item). */
  parentSeq: number | null;
  depth: number;
  /** The descendant's own type; null: the operation's targetType. */
  type: string | null;
  /** Read and verified through the snapshot store; never restored from when it fails verification. */
  snapshotId: number | null;
  /** Restore requests sent for it before this batch (every rollback's, under its one restore key). */
  restoreCalls?: number;
}

export interface RestoreResult {
  seq: number;
  ok: boolean;
  error: string | null;
  permanent: boolean;
  /** Never sent: told to stop first. */
  skipped?: true;
  /** Sent, then stopped between retries: the outcome is unknown. */
  interrupted?: true;
  /**
   * A permanent failure that changed nothing: refused on every try, or never sent (ItemFailed's
   * `unapplied`). A restore operation's chunk clears the mark it set on such an item; a rollback
   * records the failure as it is.
   */
  unapplied?: true;
  /** Requests this batch sent for it (added to the item's restore_calls). */
  attempts?: number;
}

export interface RollbackLedger {
  /** Claims up to `limit` items that may need restoring, newest execution first. */
  pick(opId: string, token: string, limit: number): Promise<RestoreCandidate[]>;
  finish(opId: string, token: string, results: RestoreResult[]): Promise<void>;
  /**
   * When the rollback should look again: an item still held by a live claim, or a restore waiting
   * for its retry. Called only when the rollback goes to sleep (nothing to pick now), so it also
   * records on the operation the restores it sleeps for (`restore_wait`: how many, when the next is
   * due, since when, the last error; null when none waits), which the views show as `waiting:
   * restore_retry`. `lastError`: the last retryable restore error the calling run met, if any.
   */
  nextWake(opId: string, lastError?: string | null): Promise<number | null>;
  /** Restored items, and executed items that are not restored (what a settled rollback reports). */
  counts(opId: string): Promise<{ restored: number; failed: number }>;
}

/**
 * A rollback started again (of an operation that ended rollback_incomplete) is a new attempt, asked
 * for by an operator: every restore that failed gets its attempts and backoff back. Without it,
 * items that used up their attempts in the rollback before were never picked again, and the new
 * rollback ended at once having restored nothing (found by a trial). Failures that were final for
 * the rollback that met them (`permanent`: a 4xx, a resource changed or purged since) are tried
 * again too: a 4xx is often what the operator fixed downstream before asking (a later trial: the
 * retry made no call and ended as it was). What must never be restored still is not: the batch
 * checks for changed, purged and erased resources again before any call (rollback-superseded.ts),
 * and a snapshot is verified when it is read. Runs in the transaction that starts the rollback.
 */
export async function freshRestoreAttempts(tx: Pick<pg.PoolClient, 'query'>, opId: string): Promise<void> {
  await tx.query(
    `WITH was AS (
       SELECT seq, ${moveClass('operation_items')} AS cls FROM operation_items
       WHERE operation_id = $1 AND state = 'restore_failed' AND executed_seq IS NOT NULL FOR UPDATE
     ), fresh AS (
       UPDATE operation_items i SET restore_attempts = 0, next_attempt_at = NULL, permanent = false, updated_at = now()
       FROM was WHERE i.operation_id = $1 AND i.seq = was.seq
       RETURNING i.wave, i.parent_seq, was.cls AS from_class, ${moveClass('i')} AS to_class
     ), ${recordMoves('counted', 'fresh')}
     SELECT 1`,
    [opId],
  );
  // What the rollback before slept for is not what this one waits for (nothing, until it meets a failure).
  await tx.query(`UPDATE operations SET restore_wait = NULL WHERE id = $1 AND restore_wait IS NOT NULL`, [opId]);
}

export function pgRollbackLedger(pool: Pick<pg.Pool, 'query'>, leaseMs: number): RollbackLedger {
  const lease = leaseMs / 1000;
  return {
    async pick(opId, token, limit) {
      // Everything whose destructive call may have happened (write-ahead mark set), whatever its
      // state, except what is restored, what a live run still holds, and failed restores that
      // are final or waiting for their backoff. Submitted items newest first, each with its
      // eligible descendants; a descendant alone only once its parent is restored.
      // An earlier run of this rollback holds nothing any more: runs of an operation's rollback
      // are one at a time (exclusive.ts: this run holds the lock, so that one is dead, or fenced
      // and sends nothing more), so its claims are taken over at once, as a chunk job takes over
      // its own. Waiting out their lease kept a rollback still ~50 s after a worker's `kill -9`
      // for items restored seconds before (a trial). A restore it may have sent is sent again
      // under the item's one restore key, which the downstream applies once.
      const eligible = (t: string) => `${t}.operation_id = $1 AND ${t}.executed_seq IS NOT NULL
        AND (${t}.state IN ('done', 'failed', 'pending')
             OR (${t}.state IN ('claimed', 'restoring') AND ${t}.claimed_at < now() - make_interval(secs => $4))
             OR (${t}.state = 'restoring' AND ${t}.claimed_by = 'rollback' AND ${t}.claim_token IS DISTINCT FROM $2)
             OR (${t}.state = 'restore_failed' AND NOT ${t}.permanent AND ${t}.restore_attempts < $5
                 AND (${t}.next_attempt_at IS NULL OR ${t}.next_attempt_at <= now())))`;
      // First the bulk of a rollback, deleted items not yet touched, newest first through
      // operation_items_undo: found by that condition alone, they were found by scanning the whole
      // ledger for every batch (0.3–2 s a pick on a 1M-item operation, ~150 items/s restored:
      // npm run bench -- control). The rest (retries due, claims a crashed run left, a descendant
      // whose parent is back) are few and come once those run short, with the whole condition.
      // A root never deleted itself (ownUnsent) is not picked: its deleted descendants are, alone.
      const roots = {
        bulk: `r.operation_id = $1 AND r.executed_seq IS NOT NULL AND r.parent_seq IS NULL
               AND r.state IN ('done', 'failed', 'pending') AND NOT ${ownUnsent('r')}`,
        all: `${eligible('r')} AND r.parent_seq IS NULL AND NOT ${ownUnsent('r')}`,
      };
      const claim = (rootsWhere: string, orphans: boolean, n: number) =>
        pool.query(
          `WITH roots AS (
             SELECT r.ctid AS tid, seq, wave, parent_seq, ${moveClass('r')} AS cls FROM operation_items r WHERE ${rootsWhere}
             ORDER BY r.executed_seq DESC LIMIT $3 FOR UPDATE SKIP LOCKED
           ), kids AS (
             SELECT d.ctid AS tid, seq, wave, parent_seq, ${moveClass('d')} AS cls FROM operation_items d
             WHERE ${eligible('d')} AND d.parent_seq IS NOT NULL AND d.parent_seq IN (SELECT seq FROM roots)
             FOR UPDATE SKIP LOCKED
           ), orphans AS (
             SELECT d.ctid AS tid, seq, wave, parent_seq, ${moveClass('d')} AS cls FROM operation_items d
             WHERE ${orphans ? eligible('d') : 'false'} AND d.parent_seq IS NOT NULL
               AND EXISTS (SELECT 1 FROM operation_items p WHERE p.operation_id = $1 AND p.seq = d.parent_seq
                           AND (p.state = 'restored' OR ${ownUnsent('p')}))
             LIMIT $6 FOR UPDATE SKIP LOCKED
           ), pick AS (SELECT * FROM roots UNION SELECT * FROM kids UNION SELECT * FROM orphans),
           -- The class each item had when locked (above), for the wave's moves.
           claimed AS (
             UPDATE operation_items i SET state = 'restoring', claimed_by = 'rollback', claim_token = $2,
               claimed_at = now(), restore_attempts = i.restore_attempts + 1, updated_at = now(),
               -- Taken from a call of unknown outcome (not done, not in the restore states already):
               -- its restore states must not read as a delete that took effect (history.ts unconfirmedUndo).
               forward_unconfirmed = i.forward_unconfirmed OR i.state NOT IN ('done', 'restoring', 'restore_failed')
             -- By the locked row's ctid, not its key: with a ledger written since the last ANALYZE
             -- the key join was planned as a walk over the operation's every row, the pick looked up
             -- per row (60,000 rows read per claim in test/execution/ledger-plans.test.ts).
             FROM pick
             WHERE i.ctid = pick.tid
             RETURNING i.seq, i.resource_id, i.tenant_id, i.executed_seq, i.state, i.parent_seq, i.depth,
               i.resource_type, i.snapshot_id, i.restore_calls, i.wave, pick.cls AS from_class,
               'restoring'::text AS to_class
           ), ${recordMoves('counted', 'claimed')}
           SELECT * FROM claimed`,
          [opId, token, n, lease, RESTORE_ATTEMPTS, ORPHANS_PER_PICK],
        );
      const rows = (await claim(roots.bulk, false, limit)).rows;
      const bulkRoots = rows.filter((x) => x.parent_seq === null).length;
      // Claimed just now, the bulk's items are no longer eligible: the second look finds others.
      if (bulkRoots < limit) rows.push(...(await claim(roots.all, true, limit - bulkRoots)).rows);
      return rows.map((x) => ({
        seq: x.seq,
        resourceId: x.resource_id,
        tenantId: x.tenant_id,
        executedSeq: x.executed_seq === null ? null : Number(x.executed_seq),
        state: x.state,
        parentSeq: x.parent_seq,
        depth: x.depth,
        type: x.resource_type,
        snapshotId: x.snapshot_id === null ? null : Number(x.snapshot_id),
        restoreCalls: x.restore_calls,
      }));
    },

    async finish(opId, token, results) {
      if (results.length === 0) return;
      await pool.query(
        `WITH u AS (
           UPDATE operation_items i SET state = CASE WHEN u.ok THEN 'restored' ELSE 'restore_failed' END,
             last_error = u.err, permanent = u.perm, claimed_by = NULL, claim_token = NULL, claimed_at = NULL, updated_at = now(),
             restore_calls = i.restore_calls + u.calls,
             -- Never sent (the rollback was ended, or this process shut down): no attempt was made,
             -- so none is counted and none is waited for; the next run sends it at once.
             restore_attempts = i.restore_attempts - CASE WHEN u.skipped THEN 1 ELSE 0 END,
             next_attempt_at = CASE WHEN u.ok OR u.skipped THEN NULL
               ELSE now() + make_interval(secs => least($5::float8, $4::float8 * power(2, i.restore_attempts - 1)) / 1000) END
           FROM unnest($2::int[], $3::boolean[], $6::text[], $7::boolean[], $9::int[], $10::boolean[])
             AS u(seq, ok, err, perm, calls, skipped)
           -- The batch's seq span as well as the join: an index condition on the key whatever the
           -- statistics say. Joined to unnest alone, a ledger written since the table's last ANALYZE
           -- (a 1M-item plan; the statistics then say the operation has next to no rows) was read
           -- whole per batch: 0.3-0.9 s per 200 restores (EXPLAIN ANALYZE in bench control).
           WHERE i.operation_id = $1 AND i.seq BETWEEN $11 AND $12 AND i.seq = u.seq AND i.state = 'restoring'
             AND i.claim_token = $8
           RETURNING i.resource_id, u.ok, i.wave, i.parent_seq, 'restoring'::text AS from_class,
             ${moveClass('i')} AS to_class),
         ${recordMoves('counted', 'u')},
         -- Brought back: no longer due for a purge (purges/retention.ts).
         -- By key only: "purge_after IS NOT NULL" is an index condition too, and with statistics
         -- from before a large delete set it (they say no row is due) the planner read every row
         -- due for a purge per batch (60,010 in test/execution/ledger-plans.test.ts). IS TRUE
         -- keeps it a filter on the rows found by key.
         kept AS (
           UPDATE resources r SET purge_after = NULL FROM u
           WHERE u.ok AND r.id = u.resource_id AND (r.purge_after IS NOT NULL) IS TRUE AND r.state <> 'purged')
         UPDATE operations SET progress_at = now() WHERE id = $1 AND EXISTS (SELECT 1 FROM u)`,
        [
          opId,
          results.map((r) => r.seq),
          results.map((r) => r.ok),
          RESTORE_BACKOFF_MS,
          RESTORE_BACKOFF_CAP_MS,
          results.map((r) => r.error),
          results.map((r) => r.permanent),
          token,
          results.map((r) => r.attempts ?? 0),
          results.map((r) => r.skipped === true),
          Math.min(...results.map((r) => r.seq)),
          Math.max(...results.map((r) => r.seq)),
        ],
      );
    },

    async nextWake(opId, lastError) {
      // The same two reads of the operation's items as before, and one write of the operations row
      // (skipped when it says that already): the views read what the rollback sleeps for from there
      // instead of scanning the ledger per GET. Until the next retry is due, nothing else changes
      // those items (the rollback picks a failed restore only once it is due, and this run is the
      // only one), so what is written stays true until then; the views show it only until then.
      // The last error is the run's own (it just met it); a run that met none (woken to look again)
      // reads the newest one, the only case where this looks further.
      // How many: every failed restore with attempts left, due or not. Against a downstream that
      // hangs most are due long before the rollback gets to them (it sends untried items first, and
      // each batch waits out its timeouts): counting those not yet due said 5–16 while 170+ waited
      // (a trial). Items a batch handed back unsent never failed (no attempt used) and are not counted.
      const waiting = `operation_id = $1 AND executed_seq IS NOT NULL AND state = 'restore_failed' AND NOT permanent
             AND restore_attempts > 0 AND restore_attempts < $3`;
      const r = await pool.query<{ at: Date | null }>(
        `WITH held AS (${heldItemsSql()}), retry AS (
           SELECT count(*)::int AS items, min(next_attempt_at) FILTER (WHERE next_attempt_at > now()) AS at,
             max(updated_at) AS since
           FROM operation_items WHERE ${waiting}
         ), wait AS (
           -- Items another run holds (a delete chunk still calling, or a run whose worker died: it
           -- keeps them until its lease ends) are said too, with when this was noted: a crashed
           -- run's 320 items sat still while the view said only "16 restores wait for their retry",
           -- then nothing at all (a new-user trial). The views show it until an outcome is recorded.
           SELECT nullif(
               coalesce(CASE WHEN retry.at IS NOT NULL THEN jsonb_build_object('items', retry.items, 'nextRetryAt', retry.at,
                 'since', retry.since, 'lastError', left(coalesce($4::text, (SELECT last_error FROM operation_items
                                                   WHERE ${waiting} ORDER BY updated_at DESC LIMIT 1)), ${ERROR_SHOWN})) END, '{}')
               || coalesce(CASE WHEN held.items > 0 THEN ${HELD_JSON} END, '{}'),
             '{}') AS w FROM retry, held
         ), noted AS (
           UPDATE operations o SET restore_wait = wait.w FROM wait
           WHERE o.id = $1 AND o.state = 'rolling_back' AND o.restore_wait IS DISTINCT FROM wait.w
         )
         SELECT least(held.at, retry.at) AS at FROM held, retry`,
        [opId, lease, RESTORE_ATTEMPTS, lastError ?? null],
      );
      return r.rows[0]?.at?.getTime() ?? null;
    },

    async counts(opId) {
      const r = await pool.query<{ restored: number; failed: number }>(
        `SELECT count(*) FILTER (WHERE state = 'restored')::int AS restored,
                count(*) FILTER (WHERE state <> 'restored' AND NOT ${ownUnsent('operation_items')})::int AS failed
         FROM operation_items WHERE operation_id = $1 AND executed_seq IS NOT NULL`,
        [opId],
      );
      return r.rows[0]!;
    },
  };
}
