// What a rollback must not restore: a resource that was purged since this operation deleted it, or
// whose latest act by Blastgate is a later operation's. A rollback restores from this operation's
// snapshots, so it may only undo this operation's own delete where that delete is still what
// happened last. Through an HTTP adapter nothing else stops the call: a rollback after a purge sent
// a signed restore, carrying the old snapshot, for a resource the registry says is purged, and
// reported rolled_back (a new-user trial). The registry adapter refuses a purged row itself, but it
// too would undo a later operation's delete with this one's snapshot.
import type pg from 'pg';
import { isErased, readHistory } from '../restores/history.ts';
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
  const seqs = picked.map((p) => p.seq);
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const decided = new Map<number, RestoreResult>();
    // Erased: purged by a compliance erasure, every key of its snapshots destroyed (as a restore
    // classifies it). Said so, with the prefix a snapshot read gives (`erased:`), so an operator
    // tells an erasure from a routine purge.
    const purged = await client.query<{ seq: number; resource_id: string; erased: boolean }>(
      `SELECT i.seq, i.resource_id, ${isErased('i.resource_id')} AS erased
       FROM operation_items i JOIN resources r ON r.id = i.resource_id
       WHERE i.operation_id = $1 AND i.seq = ANY($2::int[]) AND r.state = 'purged'`,
      [opId, seqs],
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
    const idsSql = `SELECT resource_id FROM operation_items WHERE operation_id = $1 AND seq = ANY($2::int[])`;
    if (await readHistory(client, idsSql, [opId, seqs])) {
      const later = await client.query<{ seq: number; resource_id: string; op_id: string; deleted: boolean }>(
        `SELECT i.seq, i.resource_id, l.op_id, l.deleted FROM operation_items i JOIN restore_latest l ON l.id = i.resource_id
         WHERE i.operation_id = $1 AND i.seq = ANY($2::int[]) AND l.op_id <> $1`,
        [opId, seqs],
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
    await client.query('COMMIT');
    return [...decided.values()];
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
