// The registry adapter's destructive statement: one per chunk of items, with their cascades.
//
// A cascade runs in the same statement as its parent, so the parent and its descendants change
// state together or not at all (one statement is atomic): a soft delete gives them the same
// deleted_at, a restore brings each back to its own snapshot's state. A delete takes all of a
// parent's descendants or none: one that no longer matches the registry (gone, another type or
// tenant) blocks its parent, which fails permanently and changes nothing. A restore is per
// resource: a parent can come back while a purged descendant cannot (each gets its own result).
import type pg from 'pg';
import { textArray } from '../../lib/pg-array.ts';
import { ACTIONS, applySql, TARGET_STATE, type ApplyRow, type State } from './registry-apply-sql.ts';
import {
  DESCENDANT_PROTECTED_SINCE_PLAN,
  mismatch,
  PROTECTED_SINCE_PLAN,
  TENANT_PROTECTED_SINCE_PLAN,
} from './registry-refusals.ts';
import type { AdapterItem, ApplyOptions, DestructiveAction, ItemResult } from './types.ts';

type Pool = Pick<pg.Pool, 'query'>;
export type { State } from './registry-apply-sql.ts';

/** What a snapshot of a registry resource holds; restore reads `state` and `deletedAt` back. */
export interface RegistrySnapshot {
  id: string;
  type: string;
  tenantId: string;
  parentId: string | null;
  state: State;
  protected: boolean;
  deletedAt: string | null;
  updatedAt: string;
}

/**
 * A delete operation's guard against what was protected after its plan (an import while it runs):
 * the resource, its tenant, or a descendant its cascade takes. A tenant that was protected when the
 * plan was made (`approvedTenants`: the plan needed break-glass for it, and a start needs that
 * approval) is not news; any other protected tenant is. `start` judges a stale plan the same way
 * (engine-store.ts).
 */
export interface DeleteGuard {
  approvedTenants: string[];
}

/** The state a restore returns to: the snapshot's, when it is a live state; else active. */
function restoreTarget(snapshot: unknown): { state: State; deletedAt: string | null } {
  const s = snapshot as Partial<RegistrySnapshot> | undefined;
  if (s?.state === 'soft_deleted') return { state: 'soft_deleted', deletedAt: s.deletedAt ?? null };
  return { state: 'active', deletedAt: null };
}

export async function applyChunk(
  pool: Pool,
  action: DestructiveAction,
  items: AdapterItem[],
  opts: ApplyOptions,
): Promise<ItemResult[]> {
  return (await applyRows(pool, action, items, opts.snapshots, opts.guard)).results;
}

/**
 * applyChunk, and each item's row as it was just before the statement changed it (null where no
 * row matched): in a caller's transaction, that is the item's snapshot, read under the same row
 * lock as the change, so the two commit together or not at all (chunk-same-db.ts).
 */
export async function applyChunkWithBefore(
  tx: Pool,
  action: DestructiveAction,
  items: AdapterItem[],
  guard: DeleteGuard,
): Promise<{ results: ItemResult[]; before: (RegistrySnapshot | null)[] }> {
  const { results, byId } = await applyRows(tx, action, items, undefined, guard);
  const before = items.map((item): RegistrySnapshot | null => {
    const row = byId.get(item.resourceId);
    const updatedAt = row?.before_updated_iso ?? row?.before_updated_at?.toISOString();
    if (!row || row.before === null || updatedAt === undefined) return null;
    // Keys in canonical order: its canonical JSON (the snapshot's hash) then needs no sort.
    return {
      deletedAt: row.before_deleted_iso ?? row.before_deleted_at?.toISOString() ?? null,
      id: item.resourceId,
      parentId: row.before_parent_id,
      protected: row.before_protected ?? false,
      state: row.before as State,
      tenantId: item.tenantId,
      type: item.type,
      updatedAt,
    };
  });
  return { results, before };
}

async function applyRows(
  pool: Pool,
  action: DestructiveAction,
  items: AdapterItem[],
  snapshots: ApplyOptions['snapshots'],
  guard: DeleteGuard | undefined,
): Promise<{ results: ItemResult[]; byId: Map<string, ApplyRow> }> {
  const spec = ACTIONS[action];
  const target = (i: AdapterItem) =>
    action === 'restore'
      ? restoreTarget(snapshots?.get(i.resourceId))
      : { state: TARGET_STATE[action], deletedAt: null };
  const kids = items.flatMap((root) => (root.descendants ?? []).map((d) => ({ d, root })));
  const targets = items.map(target);
  const kidTargets = kids.map(({ d }) => target(d));
  // Arrays as literals (lib/pg-array.ts): this is a waves run's largest statement.
  const { rows } = await pool.query<ApplyRow>(applySql(spec), [
    textArray(items.map((i) => i.resourceId)),
    textArray(items.map((i) => i.type)),
    textArray(items.map((i) => i.tenantId)),
    textArray(targets.map((t) => t.state)),
    textArray(targets.map((t) => t.deletedAt)),
    textArray(spec.from),
    textArray(kids.map(({ d }) => d.resourceId)),
    textArray(kids.map(({ d }) => d.type)),
    textArray(kids.map(({ d }) => d.tenantId)),
    textArray(kidTargets.map((t) => t.state)),
    textArray(kidTargets.map((t) => t.deletedAt)),
    textArray(kids.map(({ root }) => root.resourceId)),
    action !== 'restore',
    guard !== undefined && action !== 'restore',
    textArray(guard?.approvedTenants ?? []),
  ]);
  const byId = new Map(rows.map((r) => [r.id, r]));
  await readMovedAgain(pool, rows);
  // Every failure below is an item the statement left as it was, with its cascade (a descendant
  // changes only with a parent that acts): nothing was changed, so it is `unapplied`. A statement
  // that failed fails its chunk as retryable instead (registry-adapter.ts), its outcome unknown.
  const refused = (error: string): ItemResult => ({ ok: false, permanent: true, error, unapplied: true });
  const outcome = (item: AdapterItem, to: State): ItemResult => {
    const row = byId.get(item.resourceId);
    if (!row || row.before === null)
      return refused(mismatch(item, { type: row?.actual_type ?? null, tenant: row?.actual_tenant ?? null }));
    if (row.changed || spec.done(row.before, to)) return { ok: true };
    // Marked protected since the plan (an import while the operation runs): a delete leaves it.
    if (guard && row.before_protected) return refused(PROTECTED_SINCE_PLAN(item.resourceId));
    if (guard && row.before_tenant_protected)
      return refused(TENANT_PROTECTED_SINCE_PLAN(item.resourceId, item.tenantId));
    return refused(`cannot ${action} ${item.resourceId}: it is ${row.before}`);
  };
  const results = items.map((item, k): ItemResult => {
    const row = byId.get(item.resourceId);
    // (Already deleted by an earlier attempt whose outcome was not recorded: that delete stands.)
    if (row?.shielded_by && !row.changed && !(row.before !== null && spec.done(row.before, targets[k]!.state)))
      return refused(DESCENDANT_PROTECTED_SINCE_PLAN(item.resourceId, row.shielded_by));
    if (row?.blocked) {
      const gone = item.descendants!.find((d) => byId.get(d.resourceId)?.before == null)!;
      const why = mismatch(gone, {
        type: byId.get(gone.resourceId)?.actual_type ?? null,
        tenant: byId.get(gone.resourceId)?.actual_tenant ?? null,
      });
      return refused(`cascade of ${item.resourceId} changed since the plan: ${why}; nothing was changed`);
    }
    const own = outcome(item, targets[k]!.state);
    if (!own.ok || !item.descendants?.length || action !== 'restore') return own;
    const first = kids.findIndex((x) => x.root === item);
    return {
      ok: true,
      descendants: item.descendants.map((d, j) => outcome(d, kidTargets[first + j]!.state)),
    };
  });
  return { results, byId };
}

/**
 * What the registry has now for the rows the statement found changed: it read them from its own
 * snapshot, taken before it waited for a row an import was changing, so an item refused that way
 * named the tenant it had been planned with as the one the registry has (a probe). Rare: read again.
 */
async function readMovedAgain(pool: Pool, rows: ApplyRow[]): Promise<void> {
  const missed = rows.filter((r) => r.before === null);
  if (missed.length === 0) return;
  const now = await pool.query<{ id: string; type: string; tenant_id: string }>(
    'SELECT id, type, tenant_id FROM resources WHERE id = ANY($1::text[])',
    [missed.map((r) => r.id)],
  );
  const byId = new Map(now.rows.map((r) => [r.id, r]));
  for (const r of missed) {
    r.actual_type = byId.get(r.id)?.type ?? null;
    r.actual_tenant = byId.get(r.id)?.tenant_id ?? null;
  }
}
