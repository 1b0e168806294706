// `start` re-checks a delete's plan against the registry as it is now (engine-store.ts checkGuard):
// what changed since makes the plan stale (409 PLAN_STALE), and nothing starts.
import type pg from 'pg';
import { ConflictError, type AppError } from '../../lib/errors.ts';
import { CASCADE_DEPTH, takenByCascade } from '../operations/cascade-plan.ts';
import { statesActedOn } from '../erasure/states.ts';
import { DELETE_STANDS, EXTERNAL_TYPES, ledgerDecides, readHistory } from '../restores/history.ts';
import { registryChangedSince } from './protected-now.ts';
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
  const cascadeTo = await cascadeTypes(tx, record.targetType);
  const kids = await tx.query(
    `SELECT 1 FROM operation_items WHERE operation_id = $1 AND parent_seq IS NOT NULL LIMIT 1`,
    [record.id],
  );
  // Nothing it was checked against changed since the plan's snapshot (no import, no type redeclared,
  // no protection marked, no other operation's delete or restore), and no cascade: nothing can be
  // stale, and its whole ledger (1M rows for a 1M-ID plan: ~0.4 s per 100,000 items, under the
  // operation's row lock) is not read against the registry again. Its own resources are locked by it,
  // so only those changes could have touched them. A cascade is left to the full check: whether a
  // child's delete elsewhere still stands is the ledger's word (readHistory), not the registry's.
  if (
    record.action === 'delete' &&
    record.protectionSeen !== null &&
    !kids.rowCount &&
    !cascadeTo.length &&
    !(await registryChangedSince(tx, record.protectionSeen))
  )
    return null;
  // The cascade checks look the ledger up by resource ID, which it has no index for: they read a
  // copy of it that PostgreSQL has statistics of (see stale_ledger). A plan without cascades
  // (no descendants, none to look for) reads its ledger once, as before.
  if (kids.rowCount || cascadeTo.length) await copyLedger(tx, record.id, record.targetType);
  const r = await tx.query<StaleRow & { total: number }>(
    // A descendant moved out of its cascade: its parent now is neither the submitted item that takes
    // it nor another planned descendant of that item.
    `WITH moved AS MATERIALIZED (
       ${
         kids.rowCount
           ? `SELECT d.seq, root.resource_id AS root_id
       FROM stale_ledger d
       JOIN resources r ON r.id = d.resource_id
       JOIN stale_ledger root ON root.seq = d.parent_seq
       WHERE d.parent_seq IS NOT NULL AND r.parent_id IS DISTINCT FROM root.resource_id
         AND NOT EXISTS (SELECT 1 FROM stale_ledger q WHERE q.parent_seq = d.parent_seq AND q.resource_id = r.parent_id)`
           : 'SELECT NULL::int AS seq, NULL::text AS root_id WHERE false'
       }
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
  // Both kinds in one answer: with the cascade's new children asked only when nothing planned had
  // changed, fixing what one 409 named met another at the next start (a trial).
  const unplanned = cascadeTo.length ? await unplannedDescendants(tx, cascadeTo, states) : [];
  if (r.rows.length === 0 && unplanned.length === 0) return null;
  const changedTotal = r.rows[0]?.total ?? 0;
  const total = changedTotal + unplanned.length;
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
  const what = [
    ...(changed.length
      ? [
          `${changedTotal} planned resource(s) changed in the registry since the plan was made (e.g. ${changed[0]!.resourceId}: ${changed[0]!.reason})`,
        ]
      : []),
    ...(unplanned.length
      ? [
          `${unplanned.length}${unplanned.length === STALE_LISTED ? ' or more' : ''} resource(s) that the plan does not list would now be taken by its cascade (e.g. ${unplanned[0]!.resourceId}, now ${unplanned[0]!.now.state} under ${unplanned[0]!.now.parentId})`,
        ]
      : []),
  ].join(', and ');
  return new ConflictError(
    'PLAN_STALE',
    `${what}; nothing was started. Abort this operation (POST /v1/operations/${record.id}/abort with a reason; its locks hold the planned resources), then submit a new plan.`,
    { total, changed: [...changed, ...unplanned] },
  );
}

/**
 * What changed of one planned resource, in words (the first one's is in PLAN_STALE's message):
 * every change, not the first only — a resource moved to another tenant and protected read only
 * "belongs to tenant …", and an operator who put the tenant back was refused again (a trial).
 */
function staleReason(x: StaleRow, states: readonly string[], approvedTenants: readonly string[]): string {
  if (x.type === null) return 'not in the registry any more';
  const why: string[] = [];
  if (x.type !== x.planned_type) why.push(`it is a ${x.type} now, not a ${x.planned_type}`);
  if (x.tenant_id !== x.planned_tenant) why.push(`it belongs to tenant ${x.tenant_id} now, not ${x.planned_tenant}`);
  if (x.state !== null && !states.includes(x.state)) why.push(`it is ${x.state} now`);
  if (x.protected) why.push('it is protected now');
  if (x.tenant_protected && x.tenant_id !== null && !approvedTenants.includes(x.tenant_id))
    why.push(
      `its tenant ${x.tenant_id} is protected now (${approvedTenants.length ? "the plan's break-glass did not cover it" : 'it was not when the plan was made'})`,
    );
  if (x.unmatched_pattern !== null) why.push(`its ID no longer matches the type's idPattern ${x.unmatched_pattern}`);
  if (x.moved_from !== null)
    why.push(`it is no longer in ${x.moved_from}'s cascade (its parent is ${x.parent_id ?? 'none'} now)`);
  return why.length ? why.join('; ') : 'changed';
}

async function cascadeTypes(tx: pg.PoolClient, type: string): Promise<string[]> {
  const r = await tx.query<{ cascade_to: string[] }>(`SELECT cascade_to FROM resource_types WHERE name = $1`, [type]);
  return r.rows[0]?.cascade_to ?? [];
}

/**
 * The operation's ledger copied into a temporary table, with statistics. PostgreSQL cannot know
 * how many ledger rows a new operation has (its ID is in no statistics, which older large
 * operations fill), guessed 4, and looked each descendant's parent up in a nested loop over the
 * whole ledger: a site with 5,006 apps took 4-6 minutes to start, all of it under the operation's
 * row lock, so an abort waited behind it (a trial). Counted, it joins by hash.
 */
async function copyLedger(tx: pg.PoolClient, operationId: string, targetType: string) {
  await tx.query(`DROP TABLE IF EXISTS stale_ledger`);
  // `type`: what each item was planned as (a descendant's own type; a submitted one's the target).
  await tx.query(
    `CREATE TEMP TABLE stale_ledger ON COMMIT DROP AS
     SELECT seq, parent_seq, resource_id, depth, coalesce(resource_type, $2) AS type
     FROM operation_items WHERE operation_id = $1`,
    [operationId, targetType],
  );
  await tx.query(`ANALYZE stale_ledger`);
}

/** Resources (in a state it acts on) a cascade of this operation would take that its ledger does not list. */
async function unplannedDescendants(tx: pg.PoolClient, cascadeTo: string[], states: readonly string[]) {
  // Every level's parent is in the ledger, so one join over direct children covers every depth.
  // The ledger is read from its copy with statistics (copyLedger): joined with the operation's
  // own rows, a guess of 4 rows made this a nested loop of the registry against the ledger.
  const children = `SELECT c.id, c.type, c.tenant_id, c.parent_id, c.state FROM stale_ledger p
     JOIN resources c ON c.parent_id = p.resource_id AND c.state = ANY($3::text[]) AND ${takenByCascade('c.type', 'p.type', '$1')}
     WHERE p.depth < $2 AND NOT EXISTS (SELECT 1 FROM stale_ledger i WHERE i.resource_id = c.id)`;
  const params = [cascadeTo, CASCADE_DEPTH, states];
  // The planner left out what Blastgate already deleted through an HTTP adapter (see
  // leaveOutDeletedElsewhere): such a child is not new, unless that delete was undone since.
  const asked = ledgerDecides(states)
    ? await readHistory(tx, `SELECT x.id FROM (${children}) x WHERE x.type IN (${EXTERNAL_TYPES})`, params)
    : 0;
  const r = await tx.query<{ id: string; type: string; tenant_id: string; parent_id: string; state: string }>(
    `SELECT x.* FROM (${children}) x
     ${asked ? `WHERE NOT EXISTS (SELECT 1 FROM restore_latest l JOIN resources r ON r.id = l.id WHERE l.id = x.id AND ${DELETE_STANDS})` : ''}
     ORDER BY x.id LIMIT $4`,
    [...params, STALE_LISTED],
  );
  return r.rows.map((x) => ({
    resourceId: x.id,
    // In words, as every changed resource's (a trial found this one without).
    reason: `it is ${x.state} under ${x.parent_id}, and its cascade would now take it: the plan does not list it`,
    planned: null,
    now: { type: x.type, tenantId: x.tenant_id, state: x.state, parentId: x.parent_id },
  }));
}
