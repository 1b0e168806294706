// A resume after a halt tries again what failed. The halt stopped the wave on its failures; the
// operator fixed the cause and resumed. Left as they were, the failed items were never sent again
// and the wave's counters still held their failures, so the re-judged wave halted again at once:
// a sub-second blip downstream left a halted operation only an abort (a new-user trial).
// Safe to send again: an item keeps its snapshot (a chunk snapshots only items without one) and
// its write-ahead mark, and its call carries the same idempotency key, which the downstream
// applies once.
import type { Queryable } from '../../lib/sql.ts';

/**
 * In the resume's transaction: the wave's items that failed for a reason that may have passed
 * (not permanent) go back to pending with fresh attempts, and the wave's counters forget their
 * failures. The wave's last error becomes that of the failures it still counts (the newest), so a
 * halt on them after the resume quotes their cause, not a 500 the retries got past. Returns how
 * many went back.
 */
export async function retryFailedOnResume(tx: Queryable, opId: string, wave: number): Promise<number> {
  const r = await tx.query<{ submitted: number; all: number }>(
    `WITH back AS (
       UPDATE operation_items SET state = 'pending', attempts = 0, claimed_by = NULL, claim_token = NULL,
         claimed_at = NULL, updated_at = now()
       WHERE operation_id = $1 AND wave = $2 AND state = 'failed' AND NOT permanent
       RETURNING parent_seq)
     SELECT count(*) FILTER (WHERE parent_seq IS NULL)::int AS submitted, count(*)::int AS all FROM back`,
    [opId, wave],
  );
  const { submitted, all } = r.rows[0]!;
  if (submitted > 0)
    await tx.query(
      `UPDATE operation_waves SET failed = greatest(failed - $3, 0), consecutive_failures = 0,
         last_error = (SELECT last_error FROM operation_items
                       WHERE operation_id = $1 AND wave = $2 AND state = 'failed' AND last_error IS NOT NULL
                       ORDER BY updated_at DESC, seq DESC LIMIT 1)
       WHERE operation_id = $1 AND wave = $2`,
      [opId, wave, submitted],
    );
  return all;
}
