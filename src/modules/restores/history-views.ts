// Per-resource answers from Blastgate's history (history.ts), for the registry's views of a page of
// resources: the delete that stands, and a delete or restore whose outcome is unknown.
import type { Queryable } from '../../lib/sql.ts';
import { LIVE_STATES } from '../operations/lifecycle-types.ts';
import { ownUnsent } from '../execution/rollback-ledger.ts';
import {
  DELETED_ITEM_STATES,
  deletedItem,
  isExternal,
  itemOfSnapshot,
  nothingTookEffectSince,
  notImportedSince,
  TOOK_EFFECT,
  UNDO_UNCERTAIN,
  unconfirmedUndo,
} from './history.ts';

export interface StandingDelete {
  operationId: string;
  mode: 'soft' | 'hard';
  at: Date;
}

/**
 * The resources' deletes by Blastgate that stand (each one's latest act on it, not rolled back or
 * restored, and not overtaken by its row since), by resource ID: what the registry views show beside
 * the row, whose state an HTTP adapter's delete leaves as the owning system's. One statement for a
 * page of IDs (snapshots are indexed by resource).
 */
export async function standingDeletes(db: Queryable, ids: string[]): Promise<Map<string, StandingDelete>> {
  if (ids.length === 0) return new Map();
  const r = await db.query<{ id: string; operation_id: string; mode: 'soft' | 'hard'; at: Date; stands: boolean }>(
    `SELECT DISTINCT ON (s.resource_id) s.resource_id AS id, s.operation_id, o.mode, s.created_at AS at,
       o.action IN ('purge', 'erase') OR o.action = 'delete' AND i.state <> 'restored' AND (
         -- Since that delete, a row that reads deleted says so itself; one that reads active was
         -- made active again if it is the registry adapter's (whose delete wrote the state), and
         -- another system's (HTTP adapter) only if an import said so.
         r.state <> 'active'
         OR (${isExternal('t')} AND ${notImportedSince('s.created_at')})) AS stands
     FROM snapshots s JOIN operations o ON o.id = s.operation_id
     ${itemOfSnapshot('s')}
     JOIN resources r ON r.id = s.resource_id JOIN resource_types t ON t.name = r.type
     WHERE s.resource_id = ANY($2::text[])
       -- A purge or an erasure that took effect is the last word: the view names it, not the soft
       -- delete before it (a new-user trial saw purged rows named by their soft delete).
       AND (${TOOK_EFFECT} OR (o.action IN ('purge', 'erase') AND i.state = 'done'))
     ORDER BY s.resource_id, s.created_at DESC, s.id DESC`,
    [DELETED_ITEM_STATES, ids],
  );
  return new Map(
    r.rows.filter((l) => l.stands).map((l) => [l.id, { operationId: l.operation_id, mode: l.mode, at: l.at }]),
  );
}

export interface UncertainDelete {
  operationId: string;
  at: Date;
  /** delete, or purge: a hard delete whose outcome is unknown (the resource may be gone for good). */
  action: 'delete' | 'purge';
}

/**
 * The resources' deletes (and purges, erasures) by Blastgate whose outcome is unknown, by resource ID: a try
 * that may have applied (a timeout, a 5xx), then the item failed, in an operation that has ended, and
 * nothing of Blastgate's took effect on it since. The registry views show it beside `deletedBy`:
 * without it, a resource that may be gone read as never touched (a delete) or as only soft-deleted,
 * restorable (a purge). A rollback of that delete restores it; a restore cannot (restores/left-out.ts,
 * and `uncertain` in resolve.ts); a later purge that takes it tries again.
 */
export async function uncertainDeletes(db: Queryable, ids: string[]): Promise<Map<string, UncertainDelete>> {
  if (ids.length === 0) return new Map();
  const r = await db.query<{ id: string; operation_id: string; at: Date; action: 'delete' | 'purge' | 'erase' }>(
    `SELECT DISTINCT ON (s.resource_id) s.resource_id AS id, s.operation_id, s.created_at AS at, o.action
     FROM snapshots s JOIN operations o ON o.id = s.operation_id AND o.action IN ('delete', 'purge', 'erase') AND o.state <> ALL($3::text[])
     ${itemOfSnapshot('s')}
     WHERE s.resource_id = ANY($2::text[]) AND i.executed_seq IS NOT NULL AND NOT ${deletedItem('i', '$1', true)}
       AND ${nothingTookEffectSince('s')}
       AND NOT ${ownUnsent('i')}
     ORDER BY s.resource_id, s.created_at DESC, s.id DESC`,
    [DELETED_ITEM_STATES, ids, LIVE_STATES],
  );
  // An erasure's hard delete is a purge's: of unknown outcome, the resource may be gone for good. It
  // read as active and never touched while its system had it purged (a trial).
  return new Map(
    r.rows.map((u) => [
      u.id,
      { operationId: u.operation_id, at: u.at, action: u.action === 'delete' ? 'delete' : 'purge' },
    ]),
  );
}

/**
 * The resources' restores by Blastgate whose outcome is unknown, by resource ID: a restore
 * operation's, or a rollback's of the delete that stands, whose call went out (its mark) and that
 * did not end restored, in an operation that has ended, with nothing of Blastgate's taking effect
 * since. The resource may be live again although `deletedBy` says its delete stands (a trial read
 * it as deleted); a purge leaves it out (restore_uncertain), a restore settles it.
 */
export async function uncertainRestores(db: Queryable, ids: string[]): Promise<Map<string, UncertainDelete>> {
  if (ids.length === 0) return new Map();
  // `at`: a restore operation's snapshot time (taken just before its call); a rollback's restore has
  // no snapshot of its own (it restores the delete's), so its item's last change (the restore's
  // failure recorded), not the delete's time, which the view showed (trial M).
  const r = await db.query<{ id: string; operation_id: string; at: Date }>(
    `SELECT DISTINCT ON (s.resource_id) s.resource_id AS id, s.operation_id,
       CASE WHEN o.action = 'delete' THEN i.updated_at ELSE s.created_at END AS at
     FROM snapshots s JOIN operations o ON o.id = s.operation_id AND o.action IN ('delete', 'restore')
       AND o.state <> ALL($3::text[])
     ${itemOfSnapshot('s')}
     WHERE s.resource_id = ANY($2::text[]) AND i.executed_seq IS NOT NULL
       -- A rollback's restore of a delete of unknown outcome: uncertainDeletes names that delete.
       AND ((o.action = 'restore' AND i.state <> 'done')
            OR (o.action = 'delete' AND ${UNDO_UNCERTAIN} AND NOT ${unconfirmedUndo('i')}))
       AND ${nothingTookEffectSince('s')}
     ORDER BY s.resource_id, s.created_at DESC, s.id DESC`,
    [DELETED_ITEM_STATES, ids, LIVE_STATES],
  );
  return new Map(r.rows.map((u) => [u.id, { operationId: u.operation_id, at: u.at, action: 'delete' }]));
}

/** The `uncertainDelete` (`uncertainPurge`, `uncertainRestore`) field of a registry resource view. */
const uncertainView = (u: UncertainDelete | undefined, action: UncertainDelete['action'] = 'delete') =>
  u && u.action === action ? { operationId: u.operationId, at: u.at.toISOString() } : null;

/**
 * What Blastgate's history says of each resource, as the registry views show it beside the row:
 * the delete that stands (`deletedBy`) and the acts of unknown outcome. By resource ID, for a page
 * of IDs (the list) or one (the single read): three statements at once.
 */
export async function historyViews(db: Queryable, ids: string[]) {
  const [deleted, uncertain, restores] = await Promise.all([
    standingDeletes(db, ids),
    uncertainDeletes(db, ids),
    uncertainRestores(db, ids),
  ]);
  return (id: string) => {
    const d = deleted.get(id);
    return {
      deletedBy: d ? { operationId: d.operationId, mode: d.mode, at: d.at.toISOString() } : null,
      uncertainDelete: uncertainView(uncertain.get(id)),
      uncertainPurge: uncertainView(uncertain.get(id), 'purge'),
      uncertainRestore: uncertainView(restores.get(id)),
    };
  };
}
