// A restore's plan_fresh guard (checked when it starts): the registry as the plan saw it. A
// resource that is gone, moved to another type or tenant, purged, or made active again since the
// plan (re-created, restored by someone else, or said to be active by an import) makes the plan
// stale; starting it would restore over something nobody reviewed. Its snapshot is verified again
// right before each call.
import type pg from 'pg';
import { ConflictError, type AppError } from '../../lib/errors.ts';
import { isExternal, notImportedSince } from './history.ts';

const LISTED = 100;

/**
 * SQL: ledger item `i` of operation `o` belongs to another tenant than its registry row `r` (of type
 * `t`) says, and that is a change since the plan. Not for a restore's item of a resource moved
 * before the delete it undoes (restores/classify.ts MOVED_BEFORE_DELETE): its plan took the tenant
 * of that delete's ledger on purpose, and the row is as the plan saw it as long as it has not
 * changed since a snapshot of a delete under the item's tenant (every change of a row moves its
 * updated_at past it). Without it such a restore was refused at `start` as PLAN_STALE.
 */
export const TENANT_CHANGED = `(r.tenant_id <> i.tenant_id AND NOT (o.action = 'restore' AND ${isExternal('t')}
  AND EXISTS (SELECT 1 FROM snapshots ds JOIN operations d ON d.id = ds.operation_id AND d.action = 'delete'
              WHERE ds.resource_id = i.resource_id AND ds.tenant_id = i.tenant_id AND ds.created_at > r.updated_at)))`;

/**
 * SQL: ledger item `i` of operation `o` (a restore's or a purge's: each item names its type), its
 * registry row `r` and that row's type `t`, changed since the plan: gone, of another type or tenant,
 * purged, or made active again — a registry-adapter row by any change (its state is Blastgate's),
 * another system's only by an import that said so. `start` asks it of the whole ledger, each chunk
 * of its own items (execution/changed-since-plan.ts).
 */
export const CHANGED_SINCE_PLAN = `(r.id IS NULL OR r.type <> i.resource_type OR ${TENANT_CHANGED} OR r.state = 'purged'
  OR (r.state = 'active' AND CASE WHEN ${isExternal('t')} THEN NOT ${notImportedSince('o.created_at')}
                                  ELSE r.updated_at > o.created_at END))`;

/** A purge's plan_fresh guard is the same check (`what` names it in the refusal). */
export async function restoreStale(
  tx: pg.PoolClient,
  operationId: string,
  what: 'restore' | 'purge' = 'restore',
): Promise<AppError | null> {
  const r = await tx.query<{
    resource_id: string;
    planned_type: string;
    planned_tenant: string;
    type: string | null;
    tenant_id: string | null;
    state: string | null;
    updated_at: Date | null;
    total: number;
  }>(
    `SELECT i.resource_id, i.resource_type AS planned_type, i.tenant_id AS planned_tenant, r.type, r.tenant_id, r.state,
            r.updated_at, count(*) OVER ()::int AS total
     FROM operation_items i JOIN operations o ON o.id = i.operation_id
     LEFT JOIN resources r ON r.id = i.resource_id LEFT JOIN resource_types t ON t.name = r.type
     WHERE i.operation_id = $1
       AND ${CHANGED_SINCE_PLAN}
     ORDER BY i.seq LIMIT $2`,
    [operationId, LISTED],
  );
  if (r.rows.length === 0) return null;
  const total = r.rows[0]!.total;
  const changed = r.rows.map((x) => ({
    resourceId: x.resource_id,
    planned: { type: x.planned_type, tenantId: x.planned_tenant, state: 'deleted' },
    now:
      x.type === null
        ? null
        : { type: x.type, tenantId: x.tenant_id, state: x.state, updatedAt: x.updated_at?.toISOString() ?? null },
  }));
  return new ConflictError(
    'PLAN_STALE',
    `${total} resource(s) of this ${what} changed in the registry since the plan was made (e.g. ${changed[0]!.resourceId}); nothing was started. Abort this ${what} (POST /v1/operations/${operationId}/abort with a reason; its locks hold the planned resources), then submit a new one.`,
    { total, changed },
  );
}
