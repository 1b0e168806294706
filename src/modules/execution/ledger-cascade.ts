// The ledger rows of a cascade's descendants. They sit after every wave's seq range (no chunk
// claims them) and follow the submitted item that takes them (`parent_seq`): their snapshots are
// stored and their write-ahead mark set in the transaction that marks the parent, and they take
// the parent's outcome when it is recorded. Every write here is fenced by the parent's claim.
import type { Queryable } from '../../lib/sql.ts';
import type { Descendant, Outcome, Range } from './ledger.ts';

/** The descendants of these items, shallowest first (the partial index on parent_seq). */
export async function descendantsOf(db: Queryable, opId: string, seqs: number[]): Promise<Map<number, Descendant[]>> {
  const r = await db.query<{
    seq: number;
    parent_seq: number;
    resource_id: string;
    tenant_id: string;
    resource_type: string;
    depth: number;
    snapshot_id: string | number | null;
    source_snapshot_id: string | number | null;
  }>(
    `SELECT seq, parent_seq, resource_id, tenant_id, resource_type, depth, snapshot_id, source_snapshot_id FROM operation_items
     WHERE operation_id = $1 AND parent_seq = ANY($2::int[]) ORDER BY parent_seq, depth, seq`,
    [opId, seqs],
  );
  const out = new Map<number, Descendant[]>();
  for (const x of r.rows) {
    const list = out.get(x.parent_seq) ?? [];
    list.push({
      seq: x.seq,
      resourceId: x.resource_id,
      tenantId: x.tenant_id,
      type: x.resource_type,
      depth: x.depth,
      snapshotId: x.snapshot_id === null ? null : Number(x.snapshot_id),
      sourceSnapshotId: x.source_snapshot_id === null ? null : Number(x.source_snapshot_id),
    });
    out.set(x.parent_seq, list);
  }
  return out;
}

/** Links stored snapshots to descendants whose parent `token` still holds. */
export async function linkDescendantSnapshots(
  tx: Queryable,
  opId: string,
  range: Range,
  token: string,
  links: { seq: number; id: number }[],
): Promise<void> {
  await tx.query(
    `UPDATE operation_items d SET snapshot_id = coalesce(d.snapshot_id, l.sid)
     FROM unnest($2::int[], $3::bigint[]) AS l(seq, sid), operation_items p
     WHERE d.operation_id = $1 AND d.seq = l.seq AND p.operation_id = $1 AND p.seq = d.parent_seq
       AND p.seq >= $4 AND p.seq < $5 AND p.state = 'claimed' AND p.claim_token = $6`,
    [opId, links.map((l) => l.seq), links.map((l) => l.id), range.from, range.to, token],
  );
}

/** The write-ahead mark on the descendants of items just marked: their delete may happen too. */
export async function markDescendants(tx: Queryable, opId: string, parents: number[]): Promise<void> {
  await tx.query(
    `UPDATE operation_items SET executed_seq = coalesce(executed_seq, nextval('operation_item_exec_seq'))
     WHERE operation_id = $1 AND parent_seq = ANY($2::int[])`,
    [opId, parents],
  );
}

/**
 * Descendants take their parent's outcome: done or failed with it (saying so), pending while it
 * is; and its mark, which a parent loses only when nothing was sent for it (handed back unsent) or
 * every try was refused (failed, unapplied): the descendants' delete rides on the parent's call,
 * so it did not happen either. Returns how many are done (the metric counts them with their parents).
 */
export async function syncDescendants(tx: Queryable, opId: string, parents: number[]): Promise<number> {
  const r = await tx.query<{ state: string }>(
    `UPDATE operation_items d SET
       state = CASE WHEN p.state IN ('done', 'failed') THEN p.state ELSE 'pending' END,
       last_error = CASE WHEN p.state = 'failed' THEN left('taken with ' || p.resource_id || ', which failed: ' || coalesce(p.last_error, ''), 500)
                         WHEN p.state = 'done' THEN NULL ELSE d.last_error END,
       permanent = p.permanent, attempts = p.attempts, updated_at = now(),
       executed_seq = CASE WHEN p.executed_seq IS NULL THEN NULL ELSE d.executed_seq END
     FROM operation_items p
     WHERE p.operation_id = $1 AND p.seq = ANY($2::int[]) AND d.operation_id = $1 AND d.parent_seq = p.seq
     RETURNING d.state`,
    [opId, parents],
  );
  return r.rows.filter((x) => x.state === 'done').length;
}

/**
 * Descendants with outcomes of their own (a restore, a delete through several adapters), written
 * after their parents' in the same transaction: only those of parents just recorded, so the
 * parent's claim fences them too. A descendant keeps its mark only while its parent keeps one, and
 * loses it when it was never acted on and its parent's mark is this run's (`marked`). Returns how many are done.
 */
export async function recordDescendants(
  tx: Queryable,
  opId: string,
  parents: Outcome[],
  marked: ReadonlySet<number> = new Set(),
): Promise<number> {
  const kids = parents.flatMap((p) =>
    (p.descendants ?? []).map((k) => ({ ...k, unmark: k.unapplied === true && marked.has(p.seq) })),
  );
  const r = await tx.query<{ state: string }>(
    `UPDATE operation_items d SET state = u.state, last_error = u.err, permanent = u.perm, attempts = p.attempts,
       updated_at = now(), executed_seq = CASE WHEN p.executed_seq IS NULL OR u.unmark THEN NULL ELSE d.executed_seq END
     FROM unnest($2::int[], $3::text[], $4::text[], $5::boolean[], $7::boolean[]) AS u(seq, state, err, perm, unmark),
       operation_items p
     WHERE d.operation_id = $1 AND d.seq = u.seq AND p.operation_id = $1 AND p.seq = d.parent_seq
       AND p.seq = ANY($6::int[])
     RETURNING d.state`,
    [
      opId,
      kids.map((k) => k.seq),
      kids.map((k) => k.state),
      kids.map((k) => k.error),
      kids.map((k) => k.permanent ?? false),
      parents.map((p) => p.seq),
      kids.map((k) => k.unmark),
    ],
  );
  return r.rows.filter((x) => x.state === 'done').length;
}
