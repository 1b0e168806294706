// Cascades at planning: a delete of a type with `cascadeTo` takes the active descendants of each
// submitted resource with it (an erasure: active and soft-deleted ones) (following cascade types only, up to CASCADE_DEPTH levels). They are
// resolved once into the temp table `plan_cascade` (id, type, tenant, root, depth, protected), then
// classified, counted, budgeted and locked with the submitted IDs, and written to the ledger after
// them, each naming the item whose delete takes it.
import type pg from 'pg';
import { UnprocessableError } from '../../lib/errors.ts';
import { ACTIVE_ONLY } from '../erasure/states.ts';
import { DELETE_STANDS, EXTERNAL_TYPES, ledgerDecides, readHistory } from '../restores/history.ts';
import { holdsResources, LIVE_STATES } from './lifecycle-types.ts';

/** Levels of descendants followed below a submitted resource. */
export const CASCADE_DEPTH = 5;

/**
 * SQL: a child of type `child` under a resource of type `parent` is taken by the cascade: its type
 * is in the submitted type's cascadeTo (`rootCascade`, a parameter), or in its parent's type's own.
 * An org → proj → task chain declares each level's children on its own type; following only the
 * org's list deleted the projects and left their tasks active, unlocked and unsnapshotted (a trial).
 */
export function takenByCascade(child: string, parent: string, rootCascade: string): string {
  return `(${child} = ANY(${rootCascade}::text[])
    OR ${child} = ANY(coalesce((SELECT ct.cascade_to FROM resource_types ct WHERE ct.name = ${parent}), '{}')))`;
}

/**
 * Resolves the descendants of the submitted resources classified ok so far. Always creates the
 * table (empty without cascade types), so that the queries after it need no special case.
 */
export async function expandCascade(
  client: pg.PoolClient,
  cascadeTo: string[],
  states: readonly string[] = ACTIVE_ONLY,
): Promise<void> {
  await client.query(
    `CREATE TEMP TABLE plan_cascade (id text, type text, tenant_id text, root text, depth int, protected boolean, parent_id text)
     ON COMMIT DROP`,
  );
  if (cascadeTo.length === 0) return;
  // A submitted resource classified ok is an item of its own, never a descendant of another one;
  // what lies under it is its own cascade (DISTINCT ON keeps the shallowest path, which ends at it).
  // One listed but refused (an app in a site plan is a type_mismatch) is no item: its parent's
  // delete would still take it, so it counts against the parent (a protected app listed by mistake
  // next to its site left the site "ok" in the report, and the corrected list was refused again).
  await client.query(
    `WITH RECURSIVE tree AS (
       SELECT r.id, r.type, r.tenant_id, c.id AS root, 1 AS depth, r.protected, r.parent_id
       FROM plan_class c JOIN resources r ON r.parent_id = c.id
       WHERE c.class = 'ok' AND r.state = ANY($3::text[]) AND r.type = ANY($1::text[])
       UNION ALL
       SELECT r.id, r.type, r.tenant_id, t.root, t.depth + 1, r.protected, r.parent_id
       FROM tree t JOIN resources r ON r.parent_id = t.id
       WHERE r.state = ANY($3::text[]) AND ${takenByCascade('r.type', 't.type', '$1')} AND t.depth < $2
     )
     INSERT INTO plan_cascade
     SELECT DISTINCT ON (t.id) t.id, t.type, t.tenant_id, t.root, t.depth, t.protected, t.parent_id FROM tree t
     WHERE NOT EXISTS (SELECT 1 FROM plan_class c WHERE c.id = t.id AND c.class = 'ok')
     ORDER BY t.id, t.depth`,
    [cascadeTo, CASCADE_DEPTH, states],
  );
  if (ledgerDecides(states)) await leaveOutDeletedElsewhere(client);
  await refuseDeeperCascades(client, cascadeTo, states);
}

/**
 * A descendant of an HTTP-adapter type that Blastgate already deleted (its delete stands) is not
 * taken again, with what lies under it: the registry row still reads active, but a second delete
 * would snapshot it in its deleted state and this operation's rollback would then restore it,
 * undoing the first delete. The registry adapter's descendants need no such check: their deleted
 * state is in the row, which the expansion above already filters on.
 */
async function leaveOutDeletedElsewhere(client: pg.PoolClient): Promise<void> {
  const asked = await readHistory(client, `SELECT id FROM plan_cascade WHERE type IN (${EXTERNAL_TYPES})`);
  if (!asked) return;
  await client.query(
    `WITH RECURSIVE gone AS (
       SELECT pc.id FROM plan_cascade pc JOIN restore_latest l ON l.id = pc.id JOIN resources r ON r.id = pc.id
       WHERE ${DELETE_STANDS}
       UNION
       SELECT pc.id FROM plan_cascade pc JOIN gone g ON pc.parent_id = g.id
     )
     DELETE FROM plan_cascade pc USING gone g WHERE pc.id = g.id`,
  );
}

/**
 * A descendant at the last level followed that has active children of cascade types would leave
 * them behind, live under a deleted parent: such a plan is refused, naming the resources whose
 * cascade is too deep, rather than deleting part of a tree and saying nothing.
 */
async function refuseDeeperCascades(
  client: pg.PoolClient,
  cascadeTo: string[],
  states: readonly string[],
): Promise<void> {
  const deep = await client.query<{ root: string; id: string }>(
    `SELECT DISTINCT ON (pc.root) pc.root, r.id FROM plan_cascade pc
     JOIN resources r ON r.parent_id = pc.id AND r.state = ANY($3::text[]) AND ${takenByCascade('r.type', 'pc.type', '$1')}
     WHERE pc.depth = $2 ORDER BY pc.root, r.id LIMIT 100`,
    [cascadeTo, CASCADE_DEPTH, states],
  );
  if (deep.rowCount === 0) return;
  throw new UnprocessableError(
    'CASCADE_TOO_DEEP',
    `The cascade of ${deep.rows.length === 100 ? 'at least 100' : deep.rows.length} submitted resource(s) goes deeper than ${CASCADE_DEPTH} levels (e.g. ${deep.rows[0]!.root} reaches ${deep.rows[0]!.id}); nothing was planned. Delete the deepest resources first, in an operation of their own.`,
    { maxDepth: CASCADE_DEPTH, resources: deep.rows.map((r) => ({ id: r.root, beyondDepth: r.id })) },
  );
}

/**
 * A submitted resource whose cascade would take a resource of a tenant outside the submitting
 * token's scope is out_of_scope (a scope limits what a token deletes, descendants included); one
 * whose cascade would take a resource another live operation holds is in_flight (naming that
 * operation); one whose cascade would take a protected resource is protected. Each rejects the plan
 * like the resource itself would.
 */
export async function classifyCascade(client: pg.PoolClient, scopeTenants: string[] | null = null): Promise<void> {
  if (scopeTenants) {
    await client.query(
      `UPDATE plan_class c SET class = 'out_of_scope', via = x.id
       FROM (SELECT DISTINCT ON (pc.root) pc.root, pc.id FROM plan_cascade pc
             LEFT JOIN (SELECT DISTINCT unnest($1::text[])) AS st(tenant_id) ON st.tenant_id = pc.tenant_id
             WHERE st.tenant_id IS NULL ORDER BY pc.root, pc.id) x
       WHERE c.id = x.root AND c.class = 'ok'`,
      [scopeTenants],
    );
  }
  await client.query(
    `UPDATE plan_class c SET class = 'in_flight', held_by = x.held_by, via = x.id
     FROM (SELECT DISTINCT ON (pc.root) pc.root, pc.id, lo.id AS held_by
           FROM plan_cascade pc JOIN resource_locks l ON l.resource_id = pc.id
           JOIN operations lo ON lo.id = l.operation_id AND ${holdsResources('lo', '$1')}
           ORDER BY pc.root, pc.id) x
     WHERE c.id = x.root AND c.class = 'ok'`,
    [LIVE_STATES],
  );
  await client.query(
    `UPDATE plan_class c SET class = 'protected', via = x.id
     FROM (SELECT DISTINCT ON (pc.root) pc.root, pc.id FROM plan_cascade pc WHERE pc.protected ORDER BY pc.root, pc.id) x
     WHERE c.id = x.root AND c.class = 'ok'`,
  );
}

/** How many descendants the ok submitted resources take with them (what must be locked with them). */
export async function countDescendants(client: pg.PoolClient): Promise<number> {
  const r = await client.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM plan_cascade pc WHERE EXISTS (SELECT 1 FROM plan_class c WHERE c.id = pc.root AND c.class = 'ok')`,
  );
  return r.rows[0]!.n;
}

/** Lock rows for the descendants of the ok submitted resources (see lockPlanned). */
export const DESCENDANT_IDS = `SELECT pc.id FROM plan_cascade pc JOIN plan_class c ON c.id = pc.root AND c.class = 'ok'`;

/** A concurrent plan locked a descendant first: its root is in_flight, naming that plan. */
export async function markDescendantsLockedByOthers(client: pg.PoolClient, operationId: string): Promise<void> {
  await client.query(
    `UPDATE plan_class c SET class = 'in_flight', held_by = x.held_by, via = x.id
     FROM (SELECT DISTINCT ON (pc.root) pc.root, pc.id, l.operation_id AS held_by
           FROM plan_cascade pc JOIN resource_locks l ON l.resource_id = pc.id
           JOIN operations o ON o.id = l.operation_id AND ${holdsResources('o', '$2')}
           WHERE l.operation_id <> $1 ORDER BY pc.root, pc.id) x
     WHERE c.id = x.root AND c.class = 'ok'`,
    [operationId, LIVE_STATES],
  );
}

/** Descendants a plan's cascade does not take, by type: the count and the first IDs. */
export type CascadeLeftOut = { type: string; count: number; ids: string[] }[];

/**
 * The children of cascade types, under what the plan takes, that it does not take because they
 * are already deleted: soft-deleted or purged in the registry, or deleted over HTTP by an earlier
 * operation whose delete stands (leaveOutDeletedElsewhere). Without them a site with three apps,
 * two already deleted, planned as "cascade: 1 app" and said nothing of the other two (a trial).
 */
export async function cascadeLeftOut(client: pg.PoolClient, cascadeTo: string[]): Promise<CascadeLeftOut> {
  if (cascadeTo.length === 0) return [];
  const r = await client.query<{ type: string; count: number; ids: string[] }>(
    `SELECT r.type, count(*)::int AS count, (array_agg(r.id ORDER BY r.id))[1:10] AS ids
     FROM (SELECT c.id, c.actual_type AS type FROM plan_class c WHERE c.class = 'ok'
           UNION ALL SELECT pc.id, pc.type FROM plan_cascade pc) t
     JOIN resources r ON r.parent_id = t.id
     WHERE ${takenByCascade('r.type', 't.type', '$1')}
       AND NOT EXISTS (SELECT 1 FROM plan_cascade x WHERE x.id = r.id)
       AND NOT EXISTS (SELECT 1 FROM plan_class x WHERE x.id = r.id AND x.class = 'ok')
     GROUP BY r.type ORDER BY count DESC, r.type`,
    [cascadeTo],
  );
  return r.rows;
}

export interface CascadeSummary {
  /** Descendants by type, most first. */
  byType: { type: string; count: number }[];
  /** Descendants per tenant of the submitted resource that takes them (its wave is theirs). */
  perRootTenant: Map<string, number>;
  /** Descendants by their own tenant and the tenant of the submitted resource that takes them. */
  spread: { tenantId: string; rootTenant: string; items: number }[];
  /**
   * Tenants that only descendants belong to, and their protection (what the cascade takes of them,
   * and in which waves, is in `spread`).
   */
  otherTenants: { tenantId: string; protected: boolean; internal: boolean }[];
}

export async function cascadeSummary(client: pg.PoolClient): Promise<CascadeSummary> {
  const byType = await client.query<{ type: string; count: number }>(
    `SELECT type, count(*)::int AS count FROM plan_cascade GROUP BY type ORDER BY count DESC, type`,
  );
  if (byType.rows.length === 0) return { byType: [], perRootTenant: new Map(), spread: [], otherTenants: [] };
  const spread = await client.query<{ tenant_id: string; root_tenant: string; n: number }>(
    `SELECT pc.tenant_id, c.tenant_id AS root_tenant, count(*)::int AS n
     FROM plan_cascade pc JOIN plan_class c ON c.id = pc.root GROUP BY 1, 2 ORDER BY 1, 2`,
  );
  const perRootTenant = new Map<string, number>();
  for (const r of spread.rows) perRootTenant.set(r.root_tenant, (perRootTenant.get(r.root_tenant) ?? 0) + r.n);
  const others = await client.query<{ tenant_id: string; protected: boolean; internal: boolean }>(
    `SELECT DISTINCT pc.tenant_id, t.protected, t.internal
     FROM plan_cascade pc JOIN tenants t ON t.id = pc.tenant_id JOIN plan_class c ON c.id = pc.root
     WHERE NOT EXISTS (SELECT 1 FROM plan_class x WHERE x.tenant_id = pc.tenant_id) ORDER BY 1`,
  );
  return {
    byType: byType.rows,
    perRootTenant,
    spread: spread.rows.map((r) => ({ tenantId: r.tenant_id, rootTenant: r.root_tenant, items: r.n })),
    otherTenants: others.rows.map((r) => ({ tenantId: r.tenant_id, protected: r.protected, internal: r.internal })),
  };
}

/**
 * Descendants go into the ledger after every submitted item (seq ≥ `after`, so no wave's range
 * holds them), in their parent's order, each with its parent's seq, wave and ordinal.
 */
export async function insertDescendants(client: pg.PoolClient, operationId: string, after: number): Promise<void> {
  await client.query(
    `INSERT INTO operation_items (operation_id, seq, resource_id, tenant_id, ordinal, wave, parent_seq, resource_type, depth)
     SELECT $1, ($2 + row_number() OVER (ORDER BY p.seq, pc.depth, pc.id) - 1)::int, pc.id, pc.tenant_id, p.ordinal, p.wave,
            p.seq, pc.type, pc.depth
     FROM plan_cascade pc JOIN operation_items p ON p.operation_id = $1 AND p.resource_id = pc.root AND p.parent_seq IS NULL
     ORDER BY 2`,
    [operationId, after],
  );
}
