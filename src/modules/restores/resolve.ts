// Resolves a restore's scope to resources and classifies each one, in set-based SQL inside the
// caller's transaction. It leaves the delete planner's staging tables behind (plan_input, plan_class,
// plan_cascade), so that the plan, the locks and the rejection report are the delete plan's own.
// What Blastgate did to each resource is read from its snapshots (history.ts).
import type pg from 'pg';
import { CASCADE_DEPTH } from '../operations/cascade-plan.ts';
import { createRestoreIds, DELETED_ITEM_STATES, deletedItem, latestEvents } from './history.ts';
import { classify, sources } from './classify.ts';
import {
  CHANGED_ELSEWHERE,
  LEFT_OUT_SAMPLE,
  leftOutOf,
  otherTenants,
  summarizeLeftOut,
  type LeftOut,
} from './left-out.ts';
import type { RestoreScope } from './schemas.ts';

export type { LeftOut } from './left-out.ts';

/**
 * Fills plan_input (ord, id) with what the scope names, then classifies it into plan_class. For a
 * tenant or an operation the input is what Blastgate deleted and has not brought back, newest
 * deletion first; for IDs it is the list as submitted (the caller has COPYed it into plan_input).
 */
export async function resolveRestore(client: pg.PoolClient, scope: RestoreScope): Promise<LeftOut | null> {
  let leftOut = await resolveDeleted(client, scope);
  if (scope.kind === 'tenant' && (await otherTenants(client, scope.tenantId))) leftOut = await summarizeLeftOut(client);
  await sources(client, scope.asOf);
  await classify(client, scope.kind === 'ids' ? scope.targetType : null);
  return leftOut;
}

/**
 * Resources that were live at `asOf`: brought back after the delete whose snapshot is their source
 * (by a restore, or by that delete's rollback), and deleted again since. No snapshot holds their
 * state at asOf: they go back to the source, their state when they were brought back, and edits
 * made between then and asOf are not in it. The plan says so instead of passing that off as the
 * state at asOf (a trial lost a customer's edit this way). Null when there are none. Only what the
 * plan restores (plan_input): restore_source also has the registry parents read to check that a
 * child may come back, and a parent that is live now is not restored at all.
 */
export async function liveAtAsOf(
  client: pg.PoolClient,
  asOf: string,
): Promise<{ count: number; ids: string[] } | null> {
  const r = await client.query<{ id: string; n: number }>(
    `SELECT p.id, count(*) OVER ()::int AS n FROM restore_source p JOIN snapshots s ON s.id = p.snap_id
     WHERE p.id IN (SELECT id FROM plan_input) AND (EXISTS (SELECT 1 FROM snapshots b JOIN operations o ON o.id = b.operation_id AND o.action = 'restore'
                   WHERE b.resource_id = p.id AND b.created_at > s.created_at AND b.created_at < $1::timestamptz)
        OR EXISTS (SELECT 1 FROM operation_items i WHERE i.snapshot_id = p.snap_id AND i.state = 'restored'
                   AND i.updated_at < $1::timestamptz))
     ORDER BY p.id LIMIT $2`,
    [asOf, LEFT_OUT_SAMPLE],
  );
  return r.rows.length ? { count: r.rows[0]!.n, ids: r.rows.map((x) => x.id) } : null;
}

/**
 * The part of resolveRestore that a purge shares: plan_input (what the scope names, or what it
 * deleted and has not brought back), restore_ids (with `taken`: pulled in by a cascade) and
 * restore_latest (each resource's latest delete or restore, and whether it is still deleted).
 */
export async function resolveDeleted(client: pg.PoolClient, scope: RestoreScope): Promise<LeftOut | null> {
  await client.query(`SET LOCAL work_mem = '256MB'`);
  // These statements join temp tables the planner has no statistics for, so it guesses millions of
  // rows and JIT-compiles them: 3 of the 4.4 s of planning a 17,660-item restore, for queries that
  // run in milliseconds (EXPLAIN ANALYZE in the mass-restore benchmark's notes).
  await client.query(`SET LOCAL jit = off`);
  await createRestoreIds(client);
  if (scope.kind === 'ids') {
    await client.query(`INSERT INTO restore_ids (id) SELECT DISTINCT id FROM plan_input`);
  } else if (scope.kind === 'tenant') {
    await client.query(
      `INSERT INTO restore_ids (id)
       SELECT DISTINCT s.resource_id FROM snapshots s JOIN operations o ON o.id = s.operation_id AND o.action = 'delete'
       WHERE s.tenant_id = $1 AND s.created_at >= coalesce($2::timestamptz, '-infinity')`,
      [scope.tenantId, scope.deletedSince],
    );
  } else {
    await client.query(
      `INSERT INTO restore_ids (id) SELECT DISTINCT resource_id FROM operation_items i
       WHERE operation_id = $1 AND executed_seq IS NOT NULL AND ${deletedItem('i', '$2')}`,
      [scope.operationId, DELETED_ITEM_STATES],
    );
  }
  // Their registry parents too: a child may only come back with its parent, or under a live one.
  await client.query(
    `INSERT INTO restore_ids (id) SELECT DISTINCT r.parent_id FROM restore_ids x JOIN resources r ON r.id = x.id
     WHERE r.parent_id IS NOT NULL ON CONFLICT DO NOTHING`,
  );
  await latestEvents(client);
  if (scope.kind === 'ids' && (await expandCascades(client))) {
    await latestEvents(client);
    // Taken along only while still deleted: one brought back since is simply not part of this.
    await client.query(
      `DELETE FROM plan_input i USING restore_ids x WHERE i.id = x.id AND x.taken
         AND NOT EXISTS (SELECT 1 FROM restore_latest l WHERE l.id = i.id AND l.deleted)`,
    );
  }
  if (scope.kind !== 'ids') {
    // What the scope deleted and Blastgate has not brought back, newest deletion first.
    const which =
      scope.kind === 'tenant'
        ? {
            where: `l.tenant_id = $1 AND l.at >= coalesce($2::timestamptz, '-infinity')`,
            params: [scope.tenantId, scope.deletedSince],
          }
        : { where: `l.op_id = $1`, params: [scope.operationId] };
    // A purged resource (purged by a purge or an erasure) is final: it can never be restored nor
    // purged again. Named by the scope, it rejected the whole plan, so a tenant's restore or purge
    // was refused for good once anything of it was purged. It is left out, and the plan says how
    // many and why (leftOut); a list of IDs still names each one (purged, erased).
    // Nor is one brought back outside Blastgate since (its system restored it, an import said it is
    // active): it is not deleted any more, and writing its snapshot over it would undo what came
    // since. Named by the scope, it was `superseded` and refused the whole restore (a trial). Nor
    // one moved to another tenant or type since: another customer's now, which a tenant's purge
    // hard-deleted (a probe), and which refused a tenant's restore for good. What a live operation
    // holds is neither: a rollback under way writes the registry before its ledger (classify names
    // it in_flight); it was said to be "brought back outside Blastgate" (a probe). Nor is what was
    // deleted through another system than its type reaches now: its row is read as that system's
    // (classify refuses it, adapter_changed).
    await client.query(
      `INSERT INTO plan_input (ord, id)
       SELECT (row_number() OVER (ORDER BY l.at DESC, l.id) - 1)::int, l.id FROM restore_latest l
       WHERE l.deleted AND ${which.where}
         AND NOT EXISTS (SELECT 1 FROM resources r JOIN resource_types t ON t.name = r.type
                         WHERE r.id = l.id AND (r.state = 'purged'
                           OR ${CHANGED_ELSEWHERE}))`,
      which.params,
    );
    return leftOutOf(client, scope);
  }
  return null;
}

/**
 * A listed resource comes back with what its latest delete's cascade took (the descendants that
 * delete's ledger records against it and that are still deleted by it): they follow the list in
 * plan_input, and their parents' restores. Returns whether there were any.
 */
async function expandCascades(client: pg.PoolClient): Promise<boolean> {
  // Each taken resource with the listed one that takes it (its root): a rejection names the root.
  // A delete's ledger points every descendant at its root (parent_seq), so a listed resource that
  // was itself a descendant (a dept deleted with its corp) takes, of that root's descendants, those
  // under it in the registry: it took none, and a purge was refused through a user the same delete
  // had taken under it (a probe). Found from the registry down, each by its snapshot of that delete
  // (indexed), not among the root's descendants: a list of many such resources under one root would
  // have read all of them for each.
  await client.query(
    `CREATE TEMP TABLE restore_taken ON COMMIT DROP AS
     WITH RECURSIVE listed AS (
       SELECT l.id, p.operation_id, p.seq, p.parent_seq FROM restore_latest l
       JOIN operation_items p ON p.operation_id = l.op_id AND p.snapshot_id = l.snap_id
       WHERE l.deleted AND l.id IN (SELECT id FROM plan_input)
     ), under (top, op, root_seq, id, n) AS (
       SELECT x.id, x.operation_id, x.parent_seq, r.id, 1 FROM listed x JOIN resources r ON r.parent_id = x.id
       WHERE x.parent_seq IS NOT NULL
       UNION ALL
       SELECT u.top, u.op, u.root_seq, r.id, u.n + 1 FROM under u JOIN resources r ON r.parent_id = u.id WHERE u.n < $1
     ), taken AS (
       SELECT d.resource_id, x.id AS root FROM listed x
       JOIN operation_items d ON d.operation_id = x.operation_id AND d.parent_seq = x.seq
       WHERE x.parent_seq IS NULL AND d.executed_seq IS NOT NULL
       UNION ALL
       SELECT d.resource_id, u.top FROM under u
       JOIN snapshots sn ON sn.resource_id = u.id AND sn.operation_id = u.op
       JOIN operation_items d ON d.snapshot_id = sn.id AND d.operation_id = u.op AND d.parent_seq = u.root_seq
       WHERE d.executed_seq IS NOT NULL
     )
     SELECT DISTINCT ON (t.resource_id) t.resource_id AS id, t.root FROM taken t
     WHERE t.resource_id NOT IN (SELECT id FROM plan_input)
     ORDER BY t.resource_id, t.root`,
    [CASCADE_DEPTH],
  );
  const r = await client.query(
    `INSERT INTO plan_input (ord, id)
     SELECT (SELECT coalesce(max(ord), -1) FROM plan_input) + row_number() OVER (ORDER BY id), id FROM restore_taken
     RETURNING id`,
  );
  if (!r.rowCount) return false;
  const taken = r.rows.map((x: { id: string }) => x.id);
  await client.query(
    `INSERT INTO restore_ids (id, taken) SELECT unnest($1::text[]), true ON CONFLICT (id) DO UPDATE SET taken = true`,
    [taken],
  );
  await client.query(
    `INSERT INTO restore_ids (id) SELECT DISTINCT r.parent_id FROM resources r
     WHERE r.id = ANY($1::text[]) AND r.parent_id IS NOT NULL ON CONFLICT DO NOTHING`,
    [taken],
  );
  return true;
}

/**
 * A rejected restore or purge of IDs reports only the IDs submitted, at their positions in the
 * list, as a rejected delete does: a resource a listed one's cascade takes along and that cannot
 * be taken (erased, purged, held…) is reported as that listed ID, under the taken one's class
 * (first by ID), and the taken rows leave the classification. Without it they were named at
 * positions past the end of the list and counted as submitted IDs. An all-ok classification is
 * left as it is (the plan needs the taken rows). Returns whether anything changed.
 */
export async function foldTakenIntoRoots(client: pg.PoolClient): Promise<boolean> {
  // Only a scope of IDs whose cascades took something has the table (this transaction's own).
  const exists = await client.query<{ ok: boolean }>(`SELECT to_regclass('pg_temp.restore_taken') IS NOT NULL AS ok`);
  if (!exists.rows[0]!.ok) return false;
  const rejected = await client.query(`SELECT 1 FROM plan_class WHERE class <> 'ok' LIMIT 1`);
  if (!rejected.rowCount) return false;
  await client.query(
    // A purge's child_later names the child its wave goes after, not the taken parent (a probe).
    `UPDATE plan_class c SET class = x.class, held_by = coalesce(c.held_by, x.held_by),
       via = CASE WHEN x.class = 'child_later' THEN coalesce(x.via, x.id) ELSE x.id END
     FROM (SELECT DISTINCT ON (t.root) t.root, k.id, k.class, k.held_by, k.via FROM restore_taken t JOIN plan_class k ON k.id = t.id
           WHERE k.class <> 'ok' ORDER BY t.root, k.id) x
     WHERE c.id = x.root AND c.class = 'ok'`,
  );
  const r = await client.query(`DELETE FROM plan_class c USING restore_taken t WHERE c.id = t.id`);
  return (r.rowCount ?? 0) > 0;
}

/**
 * After an all-ok classification: a resource whose registry parent is restored too comes back with
 * it, as a descendant of the top of its chain (the delete planner's plan_cascade), so the registry
 * adapter restores both in one statement and an HTTP downstream gets the child after its parent.
 * plan_class keeps the roots. Returns how many descendants there are.
 */
export async function splitDescendants(client: pg.PoolClient): Promise<number> {
  const r = await client.query(
    `WITH RECURSIVE tree AS (
       SELECT c.id, c.id AS root, 0 AS depth FROM plan_class c
       WHERE NOT EXISTS (SELECT 1 FROM plan_class p WHERE p.id = c.parent_id)
       UNION ALL
       SELECT c.id, t.root, t.depth + 1 FROM tree t JOIN plan_class c ON c.parent_id = t.id WHERE t.depth < $1
     )
     INSERT INTO plan_cascade (id, type, tenant_id, root, depth, protected, source_snapshot_id)
     SELECT c.id, c.type, c.tenant_id, t.root, t.depth, false, c.source_snapshot_id
     FROM tree t JOIN plan_class c ON c.id = t.id WHERE t.depth > 0`,
    [CASCADE_DEPTH],
  );
  if (r.rowCount) await client.query(`DELETE FROM plan_class c USING plan_cascade pc WHERE pc.id = c.id`);
  return r.rowCount ?? 0;
}

/** Roots by type, most first: the plan's restore estimate, and the operation's targetType (the first). */
export async function rootTypes(client: pg.PoolClient): Promise<{ type: string; count: number }[]> {
  const r = await client.query<{ type: string; count: number }>(
    `SELECT type, count(*)::int AS count FROM plan_class WHERE type IS NOT NULL GROUP BY type ORDER BY count DESC, type`,
  );
  return r.rows;
}

/**
 * The restore's ledger: roots in wave order, newest deletion first within a wave, each with its own
 * type and the snapshot it goes back to; then the descendants after every wave's range, against
 * their root (the delete ledger's layout, so the engine claims and records them the same way).
 */
export async function insertRestoreItems(
  client: pg.PoolClient,
  operationId: string,
  waveOf: Map<string, number>,
): Promise<number> {
  const roots = await client.query(
    `INSERT INTO operation_items (operation_id, seq, resource_id, tenant_id, ordinal, wave, resource_type, source_snapshot_id)
     SELECT $1, (row_number() OVER (ORDER BY w.wave, c.deleted_at DESC, c.ord) - 1)::int, c.id, c.tenant_id, c.ord, w.wave,
            c.type, c.source_snapshot_id
     FROM plan_class c JOIN unnest($2::text[], $3::int[]) AS w(tenant_id, wave) ON w.tenant_id = c.tenant_id
     ORDER BY 2`,
    [operationId, [...waveOf.keys()], [...waveOf.values()]],
  );
  const submitted = roots.rowCount ?? 0;
  await client.query(
    `INSERT INTO operation_items (operation_id, seq, resource_id, tenant_id, ordinal, wave, parent_seq, resource_type, depth,
       source_snapshot_id)
     SELECT $1, ($2 + row_number() OVER (ORDER BY p.seq, pc.depth, pc.id) - 1)::int, pc.id, pc.tenant_id, p.ordinal, p.wave,
            p.seq, pc.type, pc.depth, pc.source_snapshot_id
     FROM plan_cascade pc JOIN operation_items p ON p.operation_id = $1 AND p.resource_id = pc.root AND p.parent_seq IS NULL
     ORDER BY 2`,
    [operationId, submitted],
  );
  return submitted;
}

/** What the plan hash binds besides the waves: every resource, its type and the snapshot it goes back to. */
export async function restoreDigestInput(client: pg.PoolClient): Promise<string> {
  const r = await client.query<{ s: string | null }>(
    `SELECT string_agg(id || ' ' || type || ' ' || source_snapshot_id, E'\n' ORDER BY id) AS s
     FROM (SELECT id, type, source_snapshot_id FROM plan_class UNION ALL SELECT id, type, source_snapshot_id FROM plan_cascade) x`,
  );
  return r.rows[0]?.s ?? '';
}
