// The classification of a restore's resources (resolve.ts resolveRestore): the snapshot each one goes
// back to (restore_source), then one pass that classifies every staged ID into plan_class, the
// delete planner's table, so that the plan, the locks and the rejection report are its own.
import type pg from 'pg';
import { ownUnsent } from '../execution/rollback-ledger.ts';
import { holdsResources, LIVE_STATES } from '../operations/lifecycle-types.ts';
import {
  DELETED_ITEM_STATES,
  deletedItem,
  deletedThroughOtherSystem,
  isErased,
  isExternal,
  notImportedSince,
} from './history.ts';

/**
 * restore_source: the snapshot each resource goes back to. By default the one its latest delete
 * took; with asOf, the last one a delete took strictly before that time (a restore's own snapshots
 * show the deleted state it overwrote, so they are never a source). Why not lastSnapshotsBefore():
 * it does not tell a delete's snapshots from a restore's.
 */
export async function sources(client: pg.PoolClient, asOf: string | null): Promise<void> {
  const pick =
    asOf === null
      ? `SELECT l.id, l.snap_id FROM restore_latest l WHERE l.deleted`
      : `SELECT x.id, s.id AS snap_id FROM restore_ids x CROSS JOIN LATERAL (
           SELECT s.id FROM snapshots s JOIN operations o ON o.id = s.operation_id AND o.action = 'delete'
           WHERE s.resource_id = x.id AND s.created_at < $1::timestamptz
           ORDER BY s.created_at DESC, s.id DESC LIMIT 1) s`;
  await client.query(
    `CREATE TEMP TABLE restore_source ON COMMIT DROP AS
     SELECT p.id, p.snap_id, (k.erased_at IS NOT NULL) AS erased
     FROM (${pick}) p JOIN snapshots s ON s.id = p.snap_id LEFT JOIN resource_keys k ON k.id = s.key_id`,
    asOf === null ? [] : [asOf],
  );
}

/**
 * SQL: resource `r` (of type `t`) belongs to another tenant than its delete `l` recorded, and was
 * moved before that delete: an import moved it while an HTTP delete ran, whose call still went out
 * with the plan's tenant (README: a running HTTP delete does not stop for a tenant move), and the
 * row has not changed since the delete's snapshot (`updated_at` follows every change of a row, and
 * an HTTP adapter's delete writes none). The delete's snapshot is then the latest word: the
 * resource comes back as that delete sent it, under the tenant its ledger and snapshot say (the
 * scope of that tenant takes it, and the restore's call is addressed as the delete's was). A row
 * changed after the snapshot (strictly: the same millisecond is not known to be before) may have
 * moved after the delete, and stays superseded; so does any move of a registry adapter's row,
 * whose delete refuses a moved resource and writes the row itself. Asked after the type is known
 * to be the delete's (`t` is then its type).
 */
export const MOVED_BEFORE_DELETE = `(l.deleted AND r.tenant_id <> l.tenant_id AND ${isExternal('t')}
              AND r.updated_at < l.at)`;

/**
 * SQL: resource `r` (of type `t`) has another type or tenant than its delete `l` recorded, by a
 * change that may have come after that delete (not MOVED_BEFORE_DELETE): its snapshot is of what
 * the resource was, not of what it is. A list of IDs is refused `superseded` for it; a tenant's or
 * an operation's scope leaves it out (left-out.ts: moved).
 */
export const MOVED_SINCE_DELETE = `(r.type <> l.type OR (r.tenant_id <> l.tenant_id AND NOT ${MOVED_BEFORE_DELETE}))`;

/**
 * One pass: duplicate (ids only), unknown, type_mismatch (ids only), in_flight (a live operation
 * holds it, named), erased (purged by a compliance erasure, its snapshot keys destroyed), purged, not_deleted (Blastgate has no delete of it to undo; no_snapshot when the
 * registry says it is deleted anyway), superseded (its type or tenant changed since the delete, or
 * it was changed or re-created after it), no_snapshot (none to go back to, e.g. before asOf), erased
 * (its snapshot key was destroyed), parent_deleted (its parent is deleted and not restored with it).
 *
 * Superseded, by adapter kind: the registry adapter writes the delete into the registry row, so a
 * row that is active again, or changed after its deleted_at, was superseded; an HTTP adapter leaves
 * the row alone, so only a row an import said is active after the delete is (state_imported_at),
 * or one moved to another tenant after it (MOVED_BEFORE_DELETE).
 */
export async function classify(client: pg.PoolClient, targetType: string | null): Promise<void> {
  // The `uncertain` lookup below reads a resource's snapshots once per planned row: without an index
  // each read scanned all of restore_snaps (every snapshot of every resource asked about), so this
  // statement grew with items × snapshots: 53 s for a 16,000-item operation on its second delete,
  // 0.2 s with the index (EXPLAIN ANALYZE: a seq scan of restore_snaps looped once per row).
  await client.query(`CREATE INDEX ON restore_snaps (id, at)`);
  await client.query(
    `CREATE TEMP TABLE plan_dups ON COMMIT DROP AS
     SELECT id, min(ord) AS first_ord FROM plan_input GROUP BY id HAVING count(*) > 1`,
  );
  await client.query(
    `CREATE TEMP TABLE plan_class ON COMMIT DROP AS
     SELECT i.ord, i.id, r.type AS actual_type,
       CASE WHEN r.type = l.type AND ${MOVED_BEFORE_DELETE} THEN l.tenant_id ELSE coalesce(r.tenant_id, l.tenant_id) END AS tenant_id, r.state,
       lo.id AS held_by, u.op_id AS uncertain_by, NULL::text AS via, r.parent_id, coalesce(l.type, r.type) AS type, l.at AS deleted_at, src.snap_id AS source_snapshot_id,
       CASE
         WHEN d.first_ord IS NOT NULL AND i.ord > d.first_ord THEN 'duplicate'
         WHEN r.id IS NULL THEN 'unknown'
         WHEN $1::text IS NOT NULL AND r.type <> $1 AND NOT x.taken THEN 'type_mismatch'
         WHEN lo.id IS NOT NULL THEN 'in_flight'
         -- Erased before purged: an erasure purges too, and what it also did (destroy the keys) is
         -- what the requester needs to hear. Only a purged row is asked (an erasure leaves every
         -- row it erased purged), and a resource snapshotted again since has a live key.
         WHEN r.state = 'purged' AND ${isErased('i.id')} THEN 'erased'
         WHEN r.state = 'purged' THEN 'purged'
         WHEN NOT coalesce(l.deleted, false) THEN
           CASE WHEN u.op_id IS NOT NULL THEN 'uncertain' WHEN r.state = 'active' THEN 'not_deleted' ELSE 'no_snapshot' END
         -- Another tenant now: superseded only when it may have moved after the delete. Any tenant
         -- mismatch was, and a tenant's restore refused an app an import had moved while the HTTP
         -- delete ran, before its call went out, which a rollback restored (a trial).
         WHEN ${MOVED_SINCE_DELETE} THEN 'superseded'
         -- Before the row's own checks: those read the row as the system declared now keeps it.
         WHEN ${deletedThroughOtherSystem('l')} THEN 'adapter_changed'
         WHEN NOT ${isExternal('t')}
              AND (r.state = 'active' OR r.updated_at > coalesce(r.deleted_at, '-infinity')) THEN 'superseded'
         WHEN r.state = 'active' AND NOT ${notImportedSince('l.at')} THEN 'superseded'
         WHEN src.snap_id IS NULL THEN 'no_snapshot'
         WHEN src.erased THEN 'erased'
         WHEN p.id IS NOT NULL AND (p.state <> 'active' OR coalesce(pl.deleted, false))
              AND NOT EXISTS (SELECT 1 FROM plan_input x WHERE x.id = p.id) THEN 'parent_deleted'
         ELSE 'ok'
       END AS class
     FROM plan_input i
     JOIN restore_ids x ON x.id = i.id
     LEFT JOIN plan_dups d ON d.id = i.id
     LEFT JOIN resources r ON r.id = i.id
     LEFT JOIN resource_types t ON t.name = r.type
     LEFT JOIN restore_latest l ON l.id = i.id
     LEFT JOIN restore_source src ON src.id = i.id
     LEFT JOIN resources p ON p.id = r.parent_id
     LEFT JOIN restore_latest pl ON pl.id = r.parent_id
     LEFT JOIN resource_locks lk ON lk.resource_id = i.id
     LEFT JOIN operations lo ON lo.id = lk.operation_id AND ${holdsResources('lo', '$2')}
     -- A delete of it since its latest event that took effect whose outcome is unknown: a try that
     -- may have applied (a timeout, a 5xx), then the item failed. Its write-ahead mark stays, so a
     -- rollback of that delete restores it; a restore by ID cannot tell, and must not say
     -- not_deleted as if that were certain (left-out.ts uncertain() is the same for other scopes).
     LEFT JOIN LATERAL (
       SELECT rs.op_id FROM restore_snaps rs
       JOIN operations uo ON uo.id = rs.op_id AND uo.action = 'delete'
       JOIN operation_items ui ON ui.snapshot_id = rs.snap_id AND (ui.operation_id || '') = rs.op_id
       WHERE rs.id = i.id AND rs.at >= coalesce(l.at, '-infinity') AND ui.executed_seq IS NOT NULL
         AND NOT ${deletedItem('ui', '$3', true)} AND NOT ${ownUnsent('ui')}
       ORDER BY rs.at DESC, rs.snap_id DESC LIMIT 1) u ON true`,
    [targetType, LIVE_STATES, DELETED_ITEM_STATES],
  );
  // The report names the delete an uncertain one awaits (heldBy's column: at most one of the two),
  // and the parent a parent_deleted one waits for, with its type and tenant (`via`): "whose parent
  // is still deleted" alone sent a trial looking for which parent, in which tenant.
  await client.query(`UPDATE plan_class SET held_by = uncertain_by WHERE class = 'uncertain'`);
  await client.query(`UPDATE plan_class SET via = parent_id WHERE class = 'parent_deleted'`);
  await client.query(
    `CREATE TEMP TABLE plan_cascade (id text, type text, tenant_id text, root text, depth int, protected boolean,
       source_snapshot_id bigint) ON COMMIT DROP`,
  );
}
