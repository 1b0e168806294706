// A compliance erasure's second half: once an item's hard delete succeeded, the per-resource keys
// of its snapshots (and of its cascade's descendants) are destroyed, so no snapshot of them can be
// read again (SnapshotStore.get answers `erased`). Runs in the transaction that records the items
// done, fenced by the same claim: an item is recorded done if and only if its keys are destroyed,
// and a key is never destroyed for an item whose hard delete did not succeed (failed, unknown and
// unsent items are not recorded done). The audit event says how many; it names IDs and counts only,
// never snapshot content, so the hash chain stays whole and verifiable.
import type pg from 'pg';
import { appendAudit } from '../audit/repository.ts';
import type { SnapshotStore } from '../snapshots/store.ts';

export interface ErasedKeys {
  /** Submitted items recorded done in this transaction. */
  items: number;
  /** Their cascaded descendants (gone with them). */
  descendants: number;
  /** Snapshot keys destroyed (a resource has one live key; 0 when an earlier run already did it). */
  keys: number;
}

export async function destroyKeysOf(
  tx: pg.PoolClient,
  store: Pick<SnapshotStore, 'erase'>,
  operationId: string,
  doneSeqs: number[],
): Promise<ErasedKeys> {
  if (doneSeqs.length === 0) return { items: 0, descendants: 0, keys: 0 };
  const r = await tx.query<{ resource_id: string; descendant: boolean }>(
    `SELECT resource_id, parent_seq IS NOT NULL AS descendant FROM operation_items
     WHERE operation_id = $1 AND (seq = ANY($2::int[]) OR parent_seq = ANY($2::int[]))`,
    [operationId, doneSeqs],
  );
  const ids = r.rows.map((x) => x.resource_id);
  // The registry says what the downstream now holds: nothing. An HTTP adapter leaves registry rows
  // to imports, so without this an erased resource would read active and could be planned again.
  await tx.query(
    `UPDATE resources SET state = 'purged', deleted_at = coalesce(deleted_at, now()), updated_at = now()
     WHERE id = ANY($1::text[]) AND state <> 'purged'`,
    [ids],
  );
  const keys = await store.erase(tx, ids);
  const descendants = r.rows.filter((x) => x.descendant).length;
  const erased = { items: ids.length - descendants, descendants, keys };
  await appendAudit(tx, {
    actor: 'system',
    action: 'operation.keys_erased',
    outcome: 'accepted',
    operationId,
    // kind, as every other event of the operation says it (README; a trial found this one without).
    payload: { kind: 'erase', ...erased, resourceIds: ids.slice(0, 100), listed: Math.min(ids.length, 100) },
  });
  return erased;
}

/**
 * What every audit event of an erasure carries (kind erase), and the one that ends it the counts:
 * items, how many were erased and not, and the snapshot keys destroyed (summed from its
 * keys_erased events, so a key destroyed by an earlier erasure is not counted twice), with the
 * reason it was requested for.
 */
export async function erasureAuditDetail(tx: pg.PoolClient, operationId: string, ended: boolean) {
  if (!ended) return { kind: 'erase' };
  const r = await tx.query<{ reason: string; items: number; erased: number; keys: number }>(
    `SELECT o.reason,
       (SELECT count(*)::int FROM operation_items i WHERE i.operation_id = o.id) AS items,
       (SELECT count(*)::int FROM operation_items i WHERE i.operation_id = o.id AND i.state = 'done') AS erased,
       (SELECT coalesce(sum((a.payload->>'keys')::int), 0)::int FROM audit_events a
          WHERE a.operation_id = o.id AND a.action = 'operation.keys_erased') AS keys
     FROM operations o WHERE o.id = $1`,
    [operationId],
  );
  const x = r.rows[0]!;
  // requestReason, not reason: the event's own reason (an operator's abort) must not be overwritten.
  return {
    kind: 'erase',
    requestReason: x.reason,
    items: x.items,
    erased: x.erased,
    notErased: x.items - x.erased,
    keysDestroyed: x.keys,
  };
}
