// Retention: how long a soft-deleted resource is kept before a purge may hard-delete it. Per type
// (resource_types.retention_days) or else the policy default; stored on the registry row as
// purge_after when an operation's soft delete of it succeeds, whatever the adapter (an HTTP
// adapter leaves the row's state alone, so the ledger outcome is what sets it), and cleared when
// a restore or a rollback brings it back.
import type { Queryable } from '../../lib/sql.ts';
import type { OperationRecord } from '../execution/state.ts';

export const DEFAULT_RETENTION_DAYS = 30;
export const MIN_RETENTION_DAYS = 1;
export const MAX_RETENTION_DAYS = 3650;

/**
 * Items $2 of operation $1 and the descendants their cascades took: two index lookups (the
 * ledger's key, and its partial index on parent_seq), never a scan of a 1M-item ledger per chunk.
 * The seq bounds make the key's range the index condition (with `seq = ANY` alone the planner read
 * every item of the operation).
 */
const itemsAndDescendants = `
  SELECT resource_id, state FROM operation_items WHERE operation_id = $1 AND seq = ANY($2::int[])
    AND seq BETWEEN (SELECT min(s) FROM unnest($2::int[]) s) AND (SELECT max(s) FROM unnest($2::int[]) s)
  UNION ALL
  SELECT resource_id, state FROM operation_items
  WHERE operation_id = $1 AND parent_seq = ANY($2::int[]) AND parent_seq IS NOT NULL`;

export async function getRetentionDays(db: Queryable): Promise<number> {
  const r = await db.query<{ value: { days?: number } }>(`SELECT value FROM settings WHERE key = 'retention'`);
  return r.rows[0]?.value.days ?? DEFAULT_RETENTION_DAYS;
}

export async function setRetentionDays(db: Queryable, days: number, by: string): Promise<void> {
  await db.query(
    `INSERT INTO settings (key, value, updated_by) VALUES ('retention', $1, $2)
     ON CONFLICT (key) DO UPDATE SET value = $1, updated_by = $2, updated_at = now()`,
    [JSON.stringify({ days }), by],
  );
}

/**
 * After a soft delete's outcomes are recorded (in the same transaction): the items that are done,
 * and the descendants their cascades took, get purge_after = now + their type's retention. Only
 * rows not purged meanwhile; an item recorded done twice (a retried report) keeps its first time.
 *
 * Done includes a resource the delete found soft_deleted already (its own system deleted it after
 * the plan, and an import said so): the delete is idempotent, records it done with its snapshot,
 * and the operator reads it as one of what the operation deleted, so it gets the same retention.
 * Without one, a purge of everything due never took it (a trial: 1 of 1,000 deleted apps kept
 * purge_after null). A retention already set is never shortened or replaced. A rollback or a
 * restore of such an item leaves it soft_deleted (its snapshot's state) and clears the retention
 * (clearRetention, rollback-ledger.ts) as for every item it brings back: it ends as it was before
 * the operation, deleted by its own system with no retention of Blastgate's, so no purge of
 * everything due takes what the operator undid.
 */
export async function recordRetention(tx: Queryable, operationId: string, doneSeqs: number[]): Promise<void> {
  if (doneSeqs.length === 0) return;
  await tx.query(
    `UPDATE resources r SET purge_after = now() + make_interval(days => coalesce(t.retention_days,
         (SELECT (value->>'days')::int FROM settings WHERE key = 'retention'), $3))
     FROM (${itemsAndDescendants}) i, resource_types t
     WHERE i.state = 'done' AND r.id = i.resource_id AND t.name = r.type AND r.state <> 'purged' AND r.purge_after IS NULL`,
    [operationId, doneSeqs, DEFAULT_RETENTION_DAYS],
  );
}

/**
 * A restore (items `done`) or a rollback (items `restored`) brought these items' resources, and
 * those of their cascades that came back too, back: there is nothing to purge any more.
 */
export async function clearRetention(
  tx: Queryable,
  operationId: string,
  seqs: number[],
  backState: 'done' | 'restored',
): Promise<void> {
  if (seqs.length === 0) return;
  await tx.query(
    // (purge_after IS NOT NULL) IS TRUE: a filter on the rows found by key, never the index's
    // condition, which statistics from before a large delete (no row due) made look cheap: a
    // restore chunk read every row due for a purge (test/execution/ledger-plans.test.ts).
    `UPDATE resources r SET purge_after = NULL FROM (${itemsAndDescendants}) i
     WHERE i.state = $3 AND r.id = i.resource_id AND (r.purge_after IS NOT NULL) IS TRUE AND r.state <> 'purged'`,
    [operationId, seqs, backState],
  );
}

/**
 * A purge's items that are done are gone downstream: the registry says so. The registry adapter
 * already wrote it in its statement; an HTTP adapter leaves the row alone, so this does.
 */
export async function recordPurged(tx: Queryable, operationId: string, doneSeqs: number[]): Promise<void> {
  if (doneSeqs.length === 0) return;
  await tx.query(
    `UPDATE resources r SET state = 'purged', deleted_at = coalesce(r.deleted_at, now()), updated_at = now()
     FROM (${itemsAndDescendants}) i
     WHERE i.state = 'done' AND r.id = i.resource_id AND r.state <> 'purged'`,
    [operationId, doneSeqs],
  );
}

/** The chunk's registryFollows (execution/chunk.ts): what a done outcome means for the registry row. */
export async function registryFollows(
  tx: Queryable,
  op: Pick<OperationRecord, 'id' | 'action' | 'mode'>,
  doneSeqs: number[],
): Promise<void> {
  if (op.action === 'purge') return recordPurged(tx, op.id, doneSeqs);
  if (op.action === 'restore') return clearRetention(tx, op.id, doneSeqs, 'done');
  if (op.action === 'delete' && op.mode === 'soft') return recordRetention(tx, op.id, doneSeqs);
}
