// What a purge's scope names and does not take, moved from plan_input / plan_class to left_out with
// why (restores/left-out.ts summarizes it): a tenant, an operation or everything due purges the rest
// of its scope, where a list of IDs is refused for one such resource (resolve.ts).
import type pg from 'pg';
import { heldByLive } from '../operations/lifecycle-types.ts';
import { takenByCascade, CASCADE_DEPTH } from '../operations/cascade-plan.ts';
import { MOVED_SINCE_DELETE } from '../restores/classify.ts';
import { LEFT_OUT_TABLE } from '../restores/left-out.ts';
import { createRestoreIds, isExternal, latestEvents, notImportedSince } from '../restores/history.ts';

/**
 * Everything due: what an import moved to another tenant or type since its delete is left out
 * (left_out: moved, naming where it is now), as a tenant's or an operation's scope leaves it out
 * (restores/resolve.ts). It is another customer's now, and no restore brings it back (by ID it is
 * superseded); the daily proposal hard-deleted it under the tenant it was moved to, with nothing
 * saying why (a trial). A live operation's resources are not (classify names them in_flight): a
 * rollback under way writes the registry before its ledger. Returns how many. Reads restore_latest.
 */
export async function leaveOutMoved(client: pg.PoolClient): Promise<number> {
  await client.query(LEFT_OUT_TABLE);
  const r = await client.query(
    `WITH gone AS (
       DELETE FROM plan_input i USING restore_latest l, resources r, resource_types t
       WHERE l.id = i.id AND r.id = i.id AND t.name = r.type
         AND l.deleted AND ${MOVED_SINCE_DELETE} AND NOT ${heldByLive('i.id')}
       RETURNING i.id, l.op_id, r.tenant_id, r.type
     )
     INSERT INTO left_out (id, reason, by, note)
     SELECT id, 'moved', op_id, jsonb_build_object('tenant', tenant_id, 'type', type) FROM gone
     ON CONFLICT (id) DO NOTHING`,
  );
  return r.rowCount ?? 0;
}

/**
 * SQL: child `ch` (not purged) of parent type `parentType` that a purge of the parent must not go
 * before: one of a type its cascade takes, or one deleted whatever its type. A cascade declared on
 * the top type only (corp → dept, user) takes a user under a dept whose own type cascades to
 * nothing, and a purge of the dept left that user deleted under a purged dept, never restorable (a
 * probe): a deleted child is kept restorable whichever cascade took it. An HTTP type's row stays
 * active when it is deleted; `history` (restore_latest holds such children: readChildHistory) has
 * one whose latest act in Blastgate is a delete not undone count as deleted (a folder under a
 * folder, deleted on its own, was purged under: a probe). Without it, only cascade types' count.
 */
export const familyChild = (ch: string, parentType: string, history = false) =>
  `(${ch}.state = 'soft_deleted' OR ${takenByCascade(`${ch}.type`, parentType, "'{}'")}${
    history
      ? ` OR (${ch}.state = 'active' AND EXISTS (SELECT 1 FROM restore_latest hl WHERE hl.id = ${ch}.id AND hl.deleted
            AND ${notImportedSince('hl.at', ch)}))`
      : ''
  })`;

/**
 * SQL: each ok resource of plan_class with a child (familyChild, with history) that is neither
 * purged nor in plan_class (`inPlan` narrows what counts as in it), with its first such child
 * (`child`, `state`).
 */
export const unpurgedChildren = (inPlan: string) =>
  `SELECT DISTINCT ON (c.id) c.id, ch.id AS child, ch.state
   FROM plan_class c JOIN resources ch ON ch.parent_id = c.id AND ch.state <> 'purged'
   WHERE c.class = 'ok' AND ${familyChild('ch', 'c.type', true)}
     AND NOT EXISTS (SELECT 1 FROM plan_class x WHERE x.id = ch.id ${inPlan})
   ORDER BY c.id, ch.id`;

/**
 * Adds to restore_latest the history of plan_class's children whose type lives in another system
 * (HTTP: their row says active whether or not they are deleted) and that the plan does not take,
 * for familyChild's `history`. Read only when such a child exists: most plans have none.
 */
export async function readChildHistory(client: pg.PoolClient): Promise<void> {
  await createRestoreIds(client, true);
  const r = await client.query(
    `INSERT INTO restore_ids (id)
     SELECT DISTINCT ch.id FROM plan_class c JOIN resources ch ON ch.parent_id = c.id AND ch.state = 'active'
     JOIN resource_types t ON t.name = ch.type
     WHERE c.class = 'ok' AND ${isExternal('t')} AND NOT EXISTS (SELECT 1 FROM plan_class x WHERE x.id = ch.id)
     ON CONFLICT DO NOTHING`,
  );
  // familyChild's history reads restore_latest, which no earlier step may have made.
  const made = async () =>
    (await client.query<{ e: boolean }>(`SELECT to_regclass('pg_temp.restore_latest') IS NOT NULL AS e`)).rows[0]!.e;
  if (r.rowCount || !(await made())) await latestEvents(client);
}

/**
 * Moves the restore_uncertain and adapter_changed resources of plan_class to left_out (their parents
 * are then kept): a scope's purge takes the rest, and the daily proposal is not refused for them.
 */
export async function leaveOutUnsafe(client: pg.PoolClient): Promise<number> {
  await client.query(LEFT_OUT_TABLE);
  const r = await client.query(
    `WITH gone AS (
       DELETE FROM plan_class c WHERE c.class IN ('restore_uncertain', 'adapter_changed') RETURNING c.id, c.class
     ), noted AS (
       -- Named: the restore operation, or the delete whose rollback sent the restore (it was null:
       -- trial M); the delete, for adapter_changed.
       INSERT INTO left_out (id, reason, by)
       SELECT g.id, g.class, CASE WHEN g.class = 'restore_uncertain' THEN coalesce(ur.op_id, l.op_id) ELSE l.op_id END
       FROM gone g
       LEFT JOIN restore_uncertain_ids ur ON ur.id = g.id LEFT JOIN restore_latest l ON l.id = g.id
       ON CONFLICT (id) DO NOTHING
     )
     DELETE FROM plan_input i USING gone g WHERE i.id = g.id`,
  );
  return r.rowCount ?? 0;
}

/**
 * A scope of everything due, a tenant or an operation names resources, not their cascades: a site
 * due for purging whose apps were still within their retention (or active again) was purged alone,
 * its apps left soft-deleted under a purged parent, never restorable (parent_deleted), and an HTTP
 * downstream that cascades its own hard delete would have taken a live app (a trial). Such a
 * parent is left out (left_out: children_kept) until its children are purged with it; up to the
 * cascade's depth, since leaving a child out keeps its own parent in turn. Returns how many.
 */
export async function keepParentsOfKept(client: pg.PoolClient): Promise<number> {
  await client.query(LEFT_OUT_TABLE);
  await readChildHistory(client);
  let kept = 0;
  for (let level = 0; level <= CASCADE_DEPTH; level++) {
    const r = await client.query(
      `WITH k AS (${unpurgedChildren(`AND x.class = 'ok'`)}), gone AS (
         DELETE FROM plan_class c USING k WHERE c.id = k.id RETURNING c.id
       ), noted AS (
         INSERT INTO left_out (id, reason, by) SELECT id, 'children_kept', child FROM k ON CONFLICT (id) DO NOTHING
       )
       DELETE FROM plan_input i USING gone g WHERE i.id = g.id`,
    );
    if (!r.rowCount) break;
    kept += r.rowCount;
  }
  return kept;
}

/**
 * A listed resource with a child of a cascade type that is neither purged nor in this purge (one
 * its delete did not take: created, moved in or brought back since) is refused through it (`via`):
 * not_deleted; within_retention when the child is deleted; child_not_listed when that child's
 * retention has ended too (deleted on its own: a probe read "within its retention" with a date
 * already past). A child of an HTTP type is deleted by Blastgate's history, its registry row
 * staying active (it read not_deleted: a probe). Its delete's own cascade is pulled in and judged
 * already (restores/resolve.ts); a trial purged a zone by ID over a live box imported under it after
 * the delete.
 */
export async function refuseParentsOfKept(client: pg.PoolClient, now: Date): Promise<void> {
  await readChildHistory(client);
  await client.query(
    // (The child's retention end is the report's: retentionEnds.)
    `UPDATE plan_class c SET class = CASE
         WHEN NOT (k.state = 'soft_deleted'
                   OR (${isExternal('t')} AND coalesce(l.deleted, false) AND ${notImportedSince('l.at')})) THEN 'not_deleted'
         WHEN r.purge_after <= $1 THEN 'child_not_listed'
         ELSE 'within_retention' END,
       via = k.child
     FROM (${unpurgedChildren('')}) k JOIN resources r ON r.id = k.child JOIN resource_types t ON t.name = r.type
     LEFT JOIN restore_latest l ON l.id = k.child
     WHERE c.id = k.id`,
    [now],
  );
}
