// Ledger access for rollbacks: which items to restore next, recording restores (fenced by the
// rollback run's token, with backoff for retryable failures), what the rollback still waits for,
// and the final count.
import type pg from 'pg';
import type { RollbackCandidate } from '../operations/rollback-plan.ts';

/** Restore attempts per item before a retryable failure counts as final. */
export const RESTORE_ATTEMPTS = 5;
/** Backoff before the n-th retry of a failed restore: base × 2^(n−1), capped. */
const RESTORE_BACKOFF_MS = 500;
const RESTORE_BACKOFF_CAP_MS = 60_000;

export interface RestoreCandidate extends RollbackCandidate {
  seq: number;
  tenantId: string;
  snapshot: unknown;
}

export interface RestoreResult {
  seq: number;
  ok: boolean;
  error: string | null;
  permanent: boolean;
}

export interface RollbackLedger {
  /** Claims up to `limit` items that may need restoring, newest execution first. */
  pick(opId: string, token: string, limit: number): Promise<RestoreCandidate[]>;
  finish(opId: string, token: string, results: RestoreResult[]): Promise<void>;
  /** When the rollback should look again: an item still held by a live claim, or a restore waiting for its retry. */
  nextWake(opId: string): Promise<number | null>;
  /** Restored items, and executed items that are not restored (what a settled rollback reports). */
  counts(opId: string): Promise<{ restored: number; failed: number }>;
}

export function pgRollbackLedger(pool: Pick<pg.Pool, 'query'>, leaseMs: number): RollbackLedger {
  const lease = leaseMs / 1000;
  return {
    async pick(opId, token, limit) {
      // Everything whose destructive call may have happened (write-ahead mark set), whatever its
      // state, except what is restored, what a live run still holds, and failed restores that
      // are final or waiting for their backoff.
      const r = await pool.query(
        `UPDATE operation_items i SET state = 'restoring', claimed_by = 'rollback', claim_token = $2, claimed_at = now(),
           restore_attempts = i.restore_attempts + 1, updated_at = now()
         FROM (SELECT seq FROM operation_items
               WHERE operation_id = $1 AND executed_seq IS NOT NULL
                 AND (state IN ('done', 'failed', 'pending')
                      OR (state IN ('claimed', 'restoring') AND claimed_at < now() - make_interval(secs => $4))
                      OR (state = 'restore_failed' AND NOT permanent AND restore_attempts < $5
                          AND (next_attempt_at IS NULL OR next_attempt_at <= now())))
               ORDER BY executed_seq DESC LIMIT $3 FOR UPDATE SKIP LOCKED) pick
         WHERE i.operation_id = $1 AND i.seq = pick.seq
         RETURNING i.seq, i.resource_id, i.tenant_id, i.executed_seq, i.state,
           (SELECT data FROM snapshots s WHERE s.id = i.snapshot_id) AS snapshot`,
        [opId, token, limit, lease, RESTORE_ATTEMPTS],
      );
      return r.rows.map((x) => ({
        seq: x.seq,
        resourceId: x.resource_id,
        tenantId: x.tenant_id,
        executedSeq: x.executed_seq === null ? null : Number(x.executed_seq),
        state: x.state,
        snapshot: x.snapshot,
      }));
    },

    async finish(opId, token, results) {
      await pool.query(
        `WITH u AS (
           UPDATE operation_items i SET state = CASE WHEN u.ok THEN 'restored' ELSE 'restore_failed' END,
             last_error = u.err, permanent = u.perm, claimed_by = NULL, claim_token = NULL, claimed_at = NULL, updated_at = now(),
             next_attempt_at = CASE WHEN u.ok THEN NULL
               ELSE now() + make_interval(secs => least($5::float8, $4::float8 * power(2, i.restore_attempts - 1)) / 1000) END
           FROM unnest($2::int[], $3::boolean[], $6::text[], $7::boolean[]) AS u(seq, ok, err, perm)
           WHERE i.operation_id = $1 AND i.seq = u.seq AND i.state = 'restoring' AND i.claim_token = $8
           RETURNING 1)
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
        ],
      );
    },

    async nextWake(opId) {
      const r = await pool.query<{ at: Date | null }>(
        `SELECT min(at) AS at FROM (
           SELECT claimed_at + make_interval(secs => $2) AS at FROM operation_items
           WHERE operation_id = $1 AND executed_seq IS NOT NULL AND state IN ('claimed', 'restoring')
             AND claimed_at >= now() - make_interval(secs => $2)
           UNION ALL
           SELECT next_attempt_at FROM operation_items
           WHERE operation_id = $1 AND executed_seq IS NOT NULL AND state = 'restore_failed' AND NOT permanent
             AND restore_attempts < $3 AND next_attempt_at > now()
         ) w`,
        [opId, lease, RESTORE_ATTEMPTS],
      );
      return r.rows[0]?.at?.getTime() ?? null;
    },

    async counts(opId) {
      const r = await pool.query<{ restored: number; failed: number }>(
        `SELECT count(*) FILTER (WHERE state = 'restored')::int AS restored,
                count(*) FILTER (WHERE state <> 'restored')::int AS failed
         FROM operation_items WHERE operation_id = $1 AND executed_seq IS NOT NULL`,
        [opId],
      );
      return r.rows[0]!;
    },
  };
}
