// `start` re-checks a delete's plan against the registry as it is now (engine-store.ts checkGuard):
// what changed since makes the plan stale (409 PLAN_STALE), and nothing starts.
import type pg from 'pg';
import { ConflictError, type AppError } from '../../lib/errors.ts';
import { CASCADE_DEPTH } from '../operations/cascade-plan.ts';
import { statesActedOn } from '../erasure/states.ts';
import { DELETE_STANDS, EXTERNAL_TYPES, ledgerDecides, readHistory } from '../restores/history.ts';
import type { OperationRecord } from './state.ts';

/** Changed resources a PLAN_STALE lists (and held ones a RESOURCES_IN_FLIGHT counts up to). */
export const STALE_LISTED = 100;

/** A planned resource as it is now, beside what the plan recorded of it. */
interface StaleRow {
  resource_id: string;
  planned_type: string;
  planned_tenant: string;
  type: string | null;
  tenant_id: string | null;
  state: string | null;
  protected: boolean | null;
  tenant_protected: boolean | null;
  /** The type's idPattern when the ID no longer matches it (the type was redeclared since the plan). */
  unmatched_pattern: string | null;
  /** A descendant moved out of its cascade: the submitted item whose delete was planned to take it. */
  moved_from: string | null;
  parent_id: string | null;
}

/**
 * The plan was made against the registry as it was then: a resource whose type, tenant, state or
 * protection changed since, or whose ID its type's idPattern (redeclared since) no longer matches,
 * makes the plan stale, and starting it would act on something nobody
 * reviewed. (A protected tenant is fine only when the plan already needed break-glass for protected
 * tenants, and only for those: OperationRecord.approvedTenants; break-glass for a budget breach covers none.)
 * A cascade's descendants are checked against their own type, and a resource that a cascade would
 * now take but the plan does not list (created, or made active, since) makes it stale too: the
 * registry adapter would leave it active under a deleted parent, and nobody approved its delete.
 * So does a planned descendant moved out of the cascade that takes it (its parent now a resource
 * that is not that item or one of its planned descendants, or none): the delete would take, or
 * record as deleted, a resource that its planned parent no longer holds (a trial: an app moved out
 * of its site after the plan was recorded as deleted with the site, and set due for a purge).
 */
export async function planStale(tx: pg.PoolClient, record: OperationRecord): Promise<AppError | null> {
  const states = statesActedOn(record.action);
  const r = await tx.query<StaleRow & { total: number }>(
    // Only descendants (parent_seq set: few, and none in most plans) are looked at for a move, so
    // the ledger of a plan without cascades is read once, as before.
    `WITH moved AS (
       SELECT i.seq, root.resource_id AS root_id
       FROM operation_items i
       JOIN resources r ON r.id = i.resource_id
       JOIN operation_items root ON root.operation_id = i.operation_id AND root.seq = i.parent_seq
       LEFT JOIN operation_items q ON q.operation_id = i.operation_id AND q.resource_id = r.parent_id
       WHERE i.operation_id = $1 AND i.parent_seq IS NOT NULL
         AND (q.seq IS NULL OR (q.seq <> i.parent_seq AND q.parent_seq IS DISTINCT FROM i.parent_seq))
     )
     SELECT i.resource_id, coalesce(i.resource_type, $2) AS planned_type, i.tenant_id AS planned_tenant, r.type,
            r.tenant_id, r.state, r.protected, t.protected AS tenant_protected,
            CASE WHEN i.resource_id !~ rt.id_pattern THEN rt.id_pattern END AS unmatched_pattern,
            m.root_id AS moved_from, r.parent_id,
            count(*) OVER ()::int AS total
     FROM operation_items i
     LEFT JOIN moved m ON m.seq = i.seq
     LEFT JOIN resources r ON r.id = i.resource_id
     LEFT JOIN tenants t ON t.id = r.tenant_id
     LEFT JOIN resource_types rt ON rt.name = coalesce(i.resource_type, $2)
     WHERE i.operation_id = $1
       AND (r.id IS NULL OR r.type <> coalesce(i.resource_type, $2) OR r.tenant_id <> i.tenant_id
            OR NOT (r.state = ANY($5::text[])) OR r.protected OR (t.protected AND NOT (t.id = ANY($3::text[])))
            OR i.resource_id !~ rt.id_pattern OR m.seq IS NOT NULL)
     ORDER BY i.seq LIMIT $4`,
    [record.id, record.targetType, record.approvedTenants, STALE_LISTED, states],
  );
  const unplanned = r.rows.length ? [] : await unplannedDescendants(tx, record, states);
  if (r.rows.length === 0 && unplanned.length === 0) return null;
  const total = r.rows[0]?.total ?? unplanned.length;
  const changed = r.rows.map((x) => ({
    resourceId: x.resource_id,
    reason: staleReason(x, states, record.approvedTenants),
    planned: { type: x.planned_type, tenantId: x.planned_tenant, state: states.join(' or '), protected: false },
    now:
      x.type === null
        ? null
        : {
            type: x.type,
            tenantId: x.tenant_id,
            state: x.state,
            protected: x.protected,
            tenantProtected: x.tenant_protected,
            ...(x.unmatched_pattern !== null ? { idPattern: x.unmatched_pattern, matchesIdPattern: false } : {}),
            ...(x.moved_from !== null ? { parentId: x.parent_id } : {}),
          },
  }));
  // The stale operation keeps its locks until it ends, so a new plan of the same resources would
  // be refused as in_flight: the message says to abort it first.
  const what = changed.length
    ? `${total} planned resource(s) changed in the registry since the plan was made (e.g. ${changed[0]!.resourceId}: ${changed[0]!.reason})`
    : `${total} resource(s) that the plan does not list would now be taken by its cascade (e.g. ${unplanned[0]!.resourceId}, now ${unplanned[0]!.now.state} under ${unplanned[0]!.now.parentId})`;
  return new ConflictError(
    'PLAN_STALE',
    `${what}; nothing was started. Abort this operation (POST /v1/operations/${record.id}/abort with a reason; its locks hold the planned resources), then submit a new plan.`,
    { total, changed: [...changed, ...unplanned] },
  );
}

/** What changed of one planned resource, in words (the first one's is in PLAN_STALE's message). */
function staleReason(x: StaleRow, states: readonly string[], approvedTenants: readonly string[]): string {
  if (x.type === null) return 'not in the registry any more';
  if (x.type !== x.planned_type) return `it is a ${x.type} now, not a ${x.planned_type}`;
  if (x.tenant_id !== x.planned_tenant) return `it belongs to tenant ${x.tenant_id} now, not ${x.planned_tenant}`;
  if (x.state !== null && !states.includes(x.state)) return `it is ${x.state} now`;
  if (x.protected) return 'it is protected now';
  if (x.tenant_protected && !approvedTenants.includes(x.tenant_id))
    return `its tenant ${x.tenant_id} is protected now (the plan's break-glass did not cover it)`;
  if (x.unmatched_pattern !== null) return `its ID no longer matches the type's idPattern ${x.unmatched_pattern}`;
  if (x.moved_from !== null)
    return `it is no longer in ${x.moved_from}'s cascade (its parent is ${x.parent_id ?? 'none'} now)`;
  return 'changed';
}

/** Resources (in a state it acts on) a cascade of this operation would take that its ledger does not list. */
async function unplannedDescendants(tx: pg.PoolClient, record: OperationRecord, states: readonly string[]) {
  const type = await tx.query<{ cascade_to: string[] }>(`SELECT cascade_to FROM resource_types WHERE name = $1`, [
    record.targetType,
  ]);
  const cascadeTo = type.rows[0]?.cascade_to ?? [];
  if (cascadeTo.length === 0) return [];
  // Every level's parent is in the ledger, so one join over direct children covers every depth.
  const children = `SELECT c.id, c.type, c.tenant_id, c.parent_id, c.state FROM operation_items p
     JOIN resources c ON c.parent_id = p.resource_id AND c.state = ANY($4::text[]) AND c.type = ANY($2::text[])
     LEFT JOIN operation_items i ON i.operation_id = $1 AND i.resource_id = c.id
     WHERE p.operation_id = $1 AND i.seq IS NULL AND p.depth < $3`;
  const params = [record.id, cascadeTo, CASCADE_DEPTH, states];
  // The planner left out what Blastgate already deleted through an HTTP adapter (see
  // leaveOutDeletedElsewhere): such a child is not new, unless that delete was undone since.
  const asked = ledgerDecides(states)
    ? await readHistory(tx, `SELECT x.id FROM (${children}) x WHERE x.type IN (${EXTERNAL_TYPES})`, params)
    : 0;
  const r = await tx.query<{ id: string; type: string; tenant_id: string; parent_id: string; state: string }>(
    `SELECT x.* FROM (${children}) x
     ${asked ? `WHERE NOT EXISTS (SELECT 1 FROM restore_latest l JOIN resources r ON r.id = l.id WHERE l.id = x.id AND ${DELETE_STANDS})` : ''}
     ORDER BY x.id LIMIT $5`,
    [...params, STALE_LISTED],
  );
  return r.rows.map((x) => ({
    resourceId: x.id,
    planned: null,
    now: { type: x.type, tenantId: x.tenant_id, state: x.state, parentId: x.parent_id },
  }));
}
