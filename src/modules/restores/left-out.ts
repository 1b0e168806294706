// What a tenant or an operation scope names but a restore (or purge) plan leaves out, and why
// (`leftOut`). Nothing is skipped silently: each left-out resource is counted under its reason and
// the first of each reason are named with who did it. Runs inside resolveDeleted's transaction,
// after plan_input holds what the plan takes.
import type pg from 'pg';
import type { RestoreScope } from './schemas.ts';
import {
  activeAgainHere,
  DELETED_ITEM_STATES,
  deletedItem,
  isErased,
  nothingTookEffectSince,
  tookEffect,
} from './history.ts';
import { ownUnsent } from '../execution/rollback-ledger.ts';
import { MOVED_SINCE_DELETE } from './classify.ts';
import { heldByLive } from '../operations/lifecycle-types.ts';
import { detailOf, keptDetail, type Note } from './left-out-words.ts';

/** How many IDs of each reason leftOut names (and liveAtAsOf). */
export const LEFT_OUT_SAMPLE = 20;

export type LeftOutReason =
  | 'purged'
  | 'erased'
  | 'restored'
  | 'deleted_again'
  | 'uncertain'
  | 'active_again'
  | 'moved'
  | 'children_kept'
  | 'other_tenant'
  | 'restore_uncertain'
  | 'adapter_changed';

/** What a scope leaves out (`note`: other_tenant's parent and tenant, moved's tenant and type); a purge's plan adds to it too. */
export const LEFT_OUT_TABLE = `CREATE TEMP TABLE IF NOT EXISTS left_out
  (id text PRIMARY KEY, reason text, by text, rollback boolean, note jsonb) ON COMMIT DROP`;

export interface LeftOutItem {
  id: string;
  reason: LeftOutReason;
  /**
   * The operation that did it: the purge or erasure; the restore, or the delete whose rollback
   * brought it back; the delete that took it again. Null when only an import said it is purged.
   */
  by: string | null;
  /** other_tenant: the parent whose delete took it along, and the tenant whose restore brings it back; moved: where it is now. */
  parentId?: string;
  tenantId?: string;
  detail: string;
}

export interface LeftOut {
  /** Purged since (by a purge or an erasure): final. Erased ones are counted here too. */
  purged: number;
  /** The first purged ones by ID. */
  ids: string[];
  /** Of the purged, those a compliance erasure erased (their snapshots destroyed). */
  erased: number;
  /** An operation scope: brought back since, by another restore or a rollback. */
  restored: number;
  /** An operation scope: brought back since, and deleted again by another operation (whose restore takes it). */
  deletedAgain: number;
  /** Whose delete may or may not have happened: a try of unknown outcome, then the item failed (see uncertain()). */
  uncertain: number;
  /** Brought back outside Blastgate since its delete (its system restored it; an import said it is active). */
  activeAgain: number;
  /** Moved to another tenant or type since its delete (an import said so): not this scope's to act on. */
  moved?: number;
  /** A purge: kept because a child its hard delete would take or orphan is not purged with it. */
  childrenKept?: number;
  /** A tenant's restore: of another tenant, taken along by a delete of a parent of this one. */
  otherTenant?: number;
  /** A purge: a restore of it (or a rollback's) went out since its delete with its outcome unknown: it may be live. */
  restoreUncertain?: number;
  /** A purge: deleted through another system than its type's adapter reaches now (restores refuse it). */
  adapterChanged?: number;
  /** The first of each reason, by ID, with why. */
  items: LeftOutItem[];
}

type Scope = Extract<RestoreScope, { kind: 'tenant' | 'operation' }>;

/**
 * Fills left_out (id, reason, by) with what the scope names that is gone for good, purged by a
 * purge or an erasure: for a tenant, what Blastgate's deletes that stand took (since deletedSince)
 * and what a purge or an erasure of it took since then; for an operation, what it deleted, whatever
 * happened to it in between. An erasure may take a resource that was
 * active (never soft-deleted first): no delete of it is in the tenant's history, so it was named
 * nowhere, and the requester could not tell it apart from something never deleted (a trial).
 */
async function gone(client: pg.PoolClient, scope: Scope): Promise<void> {
  const inScope =
    scope.kind === 'tenant'
      ? `SELECT l.id FROM restore_latest l
         WHERE l.deleted AND l.tenant_id = $1 AND l.at >= coalesce($2::timestamptz, '-infinity')
         UNION
         SELECT s.resource_id FROM snapshots s
         JOIN operations o ON o.id = s.operation_id AND o.action IN ('purge', 'erase')
         JOIN operation_items i ON i.snapshot_id = s.id AND (i.operation_id || '') = s.operation_id AND i.state = 'done'
         WHERE s.tenant_id = $1 AND s.created_at >= coalesce($2::timestamptz, '-infinity')`
      : // Whatever happened to it since the operation deleted it: gone for good is the last word.
        `SELECT DISTINCT resource_id AS id FROM operation_items
         WHERE operation_id = $1 AND executed_seq IS NOT NULL AND state = ANY($2::text[] || '{restored}')`;
  await client.query(
    `INSERT INTO left_out (id, reason, by)
     SELECT g.id, CASE WHEN ${isErased('g.id')} THEN 'erased' ELSE 'purged' END, hd.op_id
     FROM (${inScope}) g JOIN resources r ON r.id = g.id AND r.state = 'purged'
     -- Who hard-deleted it: its latest purge or erasure that took effect (none when only an import
     -- said it is purged).
     LEFT JOIN LATERAL (
       SELECT s.operation_id AS op_id FROM snapshots s
       JOIN operations o ON o.id = s.operation_id AND o.action IN ('purge', 'erase')
       JOIN operation_items i ON i.snapshot_id = s.id AND (i.operation_id || '') = s.operation_id AND i.state = 'done'
       WHERE s.resource_id = g.id ORDER BY s.created_at DESC, s.id DESC LIMIT 1) hd ON true`,
    scope.kind === 'tenant' ? [scope.tenantId, scope.deletedSince] : [scope.operationId, DELETED_ITEM_STATES],
  );
}

/**
 * SQL: the deleted resource `r` of restore_latest `l` (type `t`) changed outside Blastgate since
 * that delete, so a tenant's or an operation's scope leaves it out (resolve.ts) and says why
 * (changedElsewhere): active again, or moved to another tenant or type. Not what a live operation
 * holds: a rollback under way writes the registry before its ledger (classify: in_flight).
 */
export const CHANGED_ELSEWHERE = `((${MOVED_SINCE_DELETE} OR ${activeAgainHere('l')}) AND NOT ${heldByLive('l.id')})`;

/**
 * What the scope's deletes took that changed outside Blastgate since (resolve.ts leaves it out of
 * plan_input), named with the delete: active again, brought back (not deleted any more, so not
 * restored nor purged; said first, wherever it is now), or else moved to another tenant or type
 * (another customer's now, or another system's: not this scope's to restore or purge).
 */
async function changedElsewhere(client: pg.PoolClient, scope: Scope): Promise<void> {
  const where =
    scope.kind === 'tenant' ? `l.tenant_id = $1 AND l.at >= coalesce($2::timestamptz, '-infinity')` : `l.op_id = $1`;
  await client.query(
    `INSERT INTO left_out (id, reason, by, note)
     SELECT l.id, CASE WHEN ${activeAgainHere('l')} THEN 'active_again' ELSE 'moved' END, l.op_id,
       CASE WHEN NOT ${activeAgainHere('l')} THEN jsonb_build_object('tenant', r.tenant_id, 'type', r.type) END
     FROM restore_latest l
     JOIN resources r ON r.id = l.id AND r.state <> 'purged' JOIN resource_types t ON t.name = r.type
     WHERE l.deleted AND ${where} AND ${CHANGED_ELSEWHERE}
     ON CONFLICT (id) DO NOTHING`,
    scope.kind === 'tenant' ? [scope.tenantId, scope.deletedSince] : [scope.operationId],
  );
}

/**
 * An operation scope: what it deleted that is not deleted by it any more and not gone for good,
 * by the latest act on it that took effect: a restore, or a delete's rollback (this operation's
 * own, or a later delete's), brought it back; or a later delete took it again. Only the purged
 * ones were named, so a restore of an operation restored less than it deleted without saying why.
 */
async function since(client: pg.PoolClient, operationId: string): Promise<void> {
  await client.query(
    `INSERT INTO left_out (id, reason, by, rollback)
     SELECT c.id, CASE WHEN e.deleted THEN 'deleted_again' ELSE 'restored' END, e.op_id, e.action = 'delete'
     -- EXCEPT, not NOT EXISTS: plan_input is a temp table without statistics, and the planner chose
     -- a nested loop over it: planning a 17,660-item operation restore took 10 s instead of under 1.
     FROM (SELECT resource_id AS id FROM operation_items i
           WHERE operation_id = $1 AND executed_seq IS NOT NULL AND ${deletedItem('i', '$2', true)}
           EXCEPT SELECT id FROM plan_input EXCEPT SELECT id FROM left_out) c
     CROSS JOIN LATERAL (
       SELECT s.operation_id AS op_id, o.action, (o.action = 'delete' AND i.state <> 'restored') AS deleted
       FROM snapshots s JOIN operations o ON o.id = s.operation_id
       JOIN operation_items i ON i.snapshot_id = s.id AND (i.operation_id || '') = s.operation_id
       WHERE s.resource_id = c.id AND ${tookEffect('$2')}
       ORDER BY s.created_at DESC, s.id DESC LIMIT 1) e
     -- Its delete by this operation stands: the plan takes it (or classified it), not left out.
     WHERE NOT (e.deleted AND e.op_id = $1)`,
    [operationId, DELETED_ITEM_STATES],
  );
}

/**
 * What the scope's deletes may have deleted without knowing it: a try of unknown outcome (a timeout,
 * a 5xx), then the item failed (a 404 on the retry, the retries ran out). Its write-ahead mark stays
 * (execution/ledger.ts) and a rollback restores it; a restore takes only what is known to be deleted
 * (DELETED_ITEM_STATES), so such an item was skipped without a word. Only a delete newer than the
 * resource's latest act that took effect: an older one was settled since.
 */
async function uncertain(client: pg.PoolClient, scope: Scope): Promise<void> {
  // A tenant's through the snapshots by tenant; an operation's through its own ledger (snapshots
  // have no index by operation).
  const [from, params] =
    scope.kind === 'tenant'
      ? [
          `snapshots s JOIN operation_items i ON i.snapshot_id = s.id AND (i.operation_id || '') = s.operation_id
           WHERE s.tenant_id = $2 AND s.created_at >= coalesce($3::timestamptz, '-infinity')`,
          [scope.tenantId, scope.deletedSince],
        ]
      : [`operation_items i JOIN snapshots s ON s.id = i.snapshot_id WHERE i.operation_id = $2`, [scope.operationId]];
  await client.query(
    `INSERT INTO left_out (id, reason, by)
     SELECT DISTINCT ON (s.resource_id) s.resource_id, 'uncertain', s.operation_id
     FROM ${from} AND i.executed_seq IS NOT NULL AND NOT ${deletedItem('i', '$1', true)}
       AND NOT ${ownUnsent('i')}
       AND EXISTS (SELECT 1 FROM operations o WHERE o.id = s.operation_id AND o.action = 'delete')
       -- Settled since by a later act that took effect (a later delete, or its rollback: a trial
       -- was told to roll this one back for a resource another rollback had brought back).
       AND ${nothingTookEffectSince('s')}
       AND NOT EXISTS (SELECT 1 FROM plan_input p WHERE p.id = s.resource_id)
     ORDER BY s.resource_id, s.created_at DESC
     ON CONFLICT (id) DO NOTHING`,
    [DELETED_ITEM_STATES, ...params],
  );
}

/**
 * A tenant's restore: what its deletes' cascades took along that belongs to another tenant (a site
 * of t_c with an app of t_a) and is still deleted. It is not this tenant's to bring back, so the
 * plan leaves it out, and says so: a trial's restore of t_c came back without t_a's app and said
 * nothing. Named with the delete that took it, its parent and its tenant (whose restore brings it
 * back once the parent is back). Runs after plan_input holds what the plan takes. Returns how many.
 */
export async function otherTenants(client: pg.PoolClient, tenantId: string): Promise<number> {
  const r = await client.query(
    `INSERT INTO left_out (id, reason, by, note)
     SELECT DISTINCT ON (d.resource_id) d.resource_id, 'other_tenant', l.op_id,
       jsonb_build_object('parent', l.id, 'tenant', d.tenant_id)
     FROM restore_latest l
     JOIN operation_items p ON p.operation_id = l.op_id AND p.snapshot_id = l.snap_id
     JOIN operation_items d ON d.operation_id = p.operation_id AND d.parent_seq = p.seq
     -- Still deleted by that delete: nothing of Blastgate's took effect on it since, and not purged.
     -- Not the registry row's state: an HTTP adapter's delete leaves it active (a trial's check).
     JOIN snapshots s ON s.id = d.snapshot_id
     JOIN resources r ON r.id = d.resource_id AND r.state <> 'purged'
     WHERE l.deleted AND l.id IN (SELECT id FROM plan_input)
       AND d.executed_seq IS NOT NULL AND ${deletedItem('d', '$2')} AND d.tenant_id <> $1
       AND d.resource_id NOT IN (SELECT id FROM plan_input) AND ${nothingTookEffectSince('s', '$2')}
     ORDER BY d.resource_id, l.at DESC
     ON CONFLICT (id) DO NOTHING`,
    [tenantId, DELETED_ITEM_STATES],
  );
  return r.rowCount ?? 0;
}

/** What the scope leaves out, or null when it leaves out nothing. */
export async function leftOutOf(client: pg.PoolClient, scope: Scope): Promise<LeftOut | null> {
  await client.query(LEFT_OUT_TABLE);
  await gone(client, scope);
  await changedElsewhere(client, scope);
  if (scope.kind === 'operation') await since(client, scope.operationId);
  await uncertain(client, scope);
  return summarizeLeftOut(client);
}

/** What left_out holds, counted by reason with the first of each (null when it is empty). */
export async function summarizeLeftOut(client: pg.PoolClient): Promise<LeftOut | null> {
  const counts = await client.query<{ reason: LeftOutReason; n: number }>(
    `SELECT reason, count(*)::int AS n FROM left_out GROUP BY reason`,
  );
  if (!counts.rowCount) return null;
  const n = Object.fromEntries(counts.rows.map((r) => [r.reason, r.n])) as Partial<Record<LeftOutReason, number>>;
  const sample = await client.query<{
    id: string;
    reason: LeftOutReason;
    by: string | null;
    rollback: boolean;
    note: Note | null;
  }>(
    `SELECT id, reason, by, coalesce(rollback, false) AS rollback, note
     FROM (SELECT *, row_number() OVER (PARTITION BY reason ORDER BY id) AS k FROM left_out) x
     WHERE k <= $1 ORDER BY id`,
    [LEFT_OUT_SAMPLE],
  );
  const ids = await client.query<{ id: string }>(
    `SELECT id FROM left_out WHERE reason IN ('purged', 'erased') ORDER BY id LIMIT $1`,
    [LEFT_OUT_SAMPLE],
  );
  return {
    purged: (n.purged ?? 0) + (n.erased ?? 0),
    ids: ids.rows.map((r) => r.id),
    erased: n.erased ?? 0,
    restored: n.restored ?? 0,
    deletedAgain: n.deleted_again ?? 0,
    uncertain: n.uncertain ?? 0,
    activeAgain: n.active_again ?? 0,
    ...(n.children_kept ? { childrenKept: n.children_kept } : {}),
    ...(n.moved ? { moved: n.moved } : {}),
    ...(n.other_tenant ? { otherTenant: n.other_tenant } : {}),
    ...(n.restore_uncertain ? { restoreUncertain: n.restore_uncertain } : {}),
    ...(n.adapter_changed ? { adapterChanged: n.adapter_changed } : {}),
    // A kept parent's `by` column holds the child that keeps it (no operation did anything to it).
    items: sample.rows.map(({ rollback, note, ...r }) =>
      r.reason === 'children_kept'
        ? { ...r, by: null, detail: keptDetail(r.by) }
        : {
            ...r,
            ...(r.reason === 'other_tenant' && note ? { parentId: note.parent, tenantId: note.tenant } : {}),
            ...(r.reason === 'moved' && note ? { tenantId: note.tenant } : {}),
            detail: detailOf(r.reason, r.by, rollback, note),
          },
    ),
  };
}
