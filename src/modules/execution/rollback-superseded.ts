// What a rollback must not restore: a resource that was purged since this operation deleted it, or
// whose latest act by Blastgate is a later operation's. A rollback restores from this operation's
// snapshots, so it may only undo this operation's own delete where that delete is still what
// happened last. Through an HTTP adapter nothing else stops the call: a rollback after a purge sent
// a signed restore, carrying the old snapshot, for a resource the registry says is purged, and
// reported rolled_back (a new-user trial). The registry adapter refuses a purged row itself, but it
// too would undo a later operation's delete with this one's snapshot.
//
// Nor, through an HTTP adapter, a resource the registry says changed since the delete: brought back
// in its own system (an import said active), moved to another tenant, or given another type. A
// restore refuses those as superseded (restores/classify.ts); a rollback sent the old snapshot,
// overwriting an edit made since, or restored under the old tenant (a probe). The registry adapter's
// own statement restores only a soft-deleted row of the item's type and tenant.
import type pg from 'pg';
import { isErased, isExternal, notImportedSince, readHistory } from '../restores/history.ts';
import type { RestoreCandidate, RestoreResult } from './rollback-ledger.ts';

/**
 * The items among `picked` decided without a call: a permanent failure for one that is purged or
 * deleted again by another operation, success for one another operation brought back since (it is
 * back; sending this operation's older snapshot would overwrite what it is now).
 */
export async function supersededItems(
  pool: Pick<pg.Pool, 'connect'>,
  opId: string,
  picked: RestoreCandidate[],
): Promise<RestoreResult[]> {
  if (picked.length === 0) return [];
  // Asked of the batch's own (seq, resource) pairs, never of the ledger: the ledger's statistics,
  // taken before a large plan wrote it, say the operation has next to no rows, and `seq = ANY(…)`
  // of a few hundred seqs was planned as a scan of all of them: 0.2–0.8 s per statement on a
  // 1M-item operation, most of a rollback batch's time (npm run bench -- control, auto_explain).
  const seqs = picked.map((p) => p.seq);
  const ids = picked.map((p) => p.resourceId);
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const decided = new Map<number, RestoreResult>();
    // Erased: purged by a compliance erasure, every key of its snapshots destroyed (as a restore
    // classifies it). Said so, with the prefix a snapshot read gives (`erased:`), so an operator
    // tells an erasure from a routine purge.
    const purged = await client.query<{ seq: number; resource_id: string; erased: boolean }>(
      `SELECT p.seq, p.id AS resource_id, ${isErased('p.id')} AS erased
       FROM unnest($1::int[], $2::text[]) AS p(seq, id) JOIN resources r ON r.id = p.id
       WHERE r.state = 'purged'`,
      [seqs, ids],
    );
    for (const r of purged.rows)
      decided.set(r.seq, {
        seq: r.seq,
        ok: false,
        error: r.erased
          ? `erased: cannot restore ${r.resource_id}: a compliance erasure purged it and destroyed its snapshot keys`
          : `cannot restore ${r.resource_id}: it is purged`,
        permanent: true,
      });
    // Only a resource another operation snapshotted can have a later act than this one's delete
    // (every act by Blastgate stores a snapshot first): the history is read for those alone, most
    // batches none (one probe per resource, by the snapshots' resource index).
    const idsSql = `SELECT DISTINCT p.id FROM unnest($1::text[]) AS p(id)
      WHERE EXISTS (SELECT 1 FROM snapshots s WHERE s.resource_id = p.id AND s.operation_id <> $2)`;
    if (await readHistory(client, idsSql, [ids, opId])) {
      // Later than this operation's own snapshot of the item: its delete may have taken effect with
      // no answer (applied, then a 500), which restore_latest does not count, and an earlier
      // operation's rollback then read as the latest act: "already restored", nothing sent, and
      // rolled_back over a resource still deleted downstream (a probe).
      const later = await client.query<{ seq: number; resource_id: string; op_id: string; deleted: boolean }>(
        `SELECT p.seq, p.id AS resource_id, l.op_id, l.deleted
         FROM unnest($1::int[], $2::text[], $4::bigint[]) AS p(seq, id, snap) JOIN restore_latest l ON l.id = p.id
         LEFT JOIN LATERAL (SELECT created_at AS at FROM snapshots WHERE id = p.snap OFFSET 0) s ON true
         WHERE l.op_id <> $3 AND (s.at IS NULL OR (l.at, l.snap_id) > (s.at, p.snap))`,
        [seqs, ids, opId, picked.map((p) => p.snapshotId)],
      );
      for (const r of later.rows) {
        if (decided.has(r.seq)) continue;
        decided.set(
          r.seq,
          r.deleted
            ? {
                seq: r.seq,
                ok: false,
                error: `not restored: ${r.resource_id} was deleted again since, by ${r.op_id}; restore it through that operation`,
                permanent: true,
              }
            : // Back already: restored, with who did it, so the items and the count do not read as
              // this rollback's work (a trial read "restored: 4" as four restores it had sent).
              {
                seq: r.seq,
                ok: true,
                error: `already restored by ${r.op_id}: nothing sent (this operation's older snapshot would overwrite it)`,
                permanent: false,
              },
        );
      }
    }
    for (const r of await changedSince(client, opId, picked)) if (!decided.has(r.seq)) decided.set(r.seq, r);
    await client.query('COMMIT');
    return [...decided.values()];
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/**
 * The HTTP-adapter items among `picked` whose registry row changed since this operation's snapshot
 * of them: another type or tenant (not restored, for good), or active again by an import (back
 * already: nothing sent). A tenant that differs but changed before the delete is the move a
 * restore also allows (classify.ts MOVED_BEFORE_DELETE): the item kept the tenant it was planned
 * with. One snapshot lookup per item (OFFSET 0), as elsewhere: never a scan of the ledger.
 */
async function changedSince(client: pg.PoolClient, opId: string, picked: RestoreCandidate[]): Promise<RestoreResult[]> {
  const r = await client.query<{
    seq: number;
    id: string;
    type: string;
    planned_type: string;
    tenant: string;
    planned_tenant: string;
    change: string;
  }>(
    `SELECT seq, id, type, planned_type, tenant, planned_tenant, change FROM (
       SELECT p.seq, p.id, r.type, t.name AS planned_type, r.tenant_id AS tenant, p.tenant AS planned_tenant,
         CASE
           WHEN r.type <> t.name THEN 'type'
           WHEN r.tenant_id <> p.tenant AND NOT coalesce(r.updated_at < s.at, false) THEN 'tenant'
           WHEN r.state = 'active' AND NOT ${notImportedSince('s.at')} THEN 'active'
         END AS change
       FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::bigint[]) AS p(seq, id, tenant, type, snap)
       JOIN operations o ON o.id = $6
       JOIN resource_types t ON t.name = coalesce(p.type, o.target_type) AND ${isExternal('t')}
       JOIN resources r ON r.id = p.id
       LEFT JOIN LATERAL (SELECT created_at AS at FROM snapshots WHERE id = p.snap OFFSET 0) s ON true
     ) c WHERE change IS NOT NULL`,
    [
      picked.map((p) => p.seq),
      picked.map((p) => p.resourceId),
      picked.map((p) => p.tenantId),
      picked.map((p) => p.type),
      picked.map((p) => p.snapshotId),
      opId,
    ],
  );
  return r.rows.map((c): RestoreResult => {
    if (c.change === 'active')
      return {
        seq: c.seq,
        ok: true,
        error: `active again since this delete (a registry import said so): nothing sent (this operation's older snapshot would overwrite it)`,
        permanent: false,
      };
    const what =
      c.change === 'type'
        ? `is a ${c.type} now, not the ${c.planned_type}`
        : `belongs to ${c.tenant} now, not ${c.planned_tenant}`;
    return {
      seq: c.seq,
      ok: false,
      error: `not restored: ${c.id} ${what} this operation deleted (a registry import changed it since): restoring would undo that change; check it in its own system`,
      permanent: true,
    };
  });
}
