// The plan of an all-ok classification: tenant loads, waves, cascade and per-operation budgets,
// then the item ledger and wave counters it is written as, and the hash an approval binds to.
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { Budgets } from './policy.ts';
import type { RollingView } from './rolling-budgets.ts';
import { scheduleWaves, type TenantLoad, type WavePlan } from './waves.ts';

const TOP_TENANTS = 20;
const CASCADE_DEPTH = 5;

export interface PlanSummary {
  itemCount: number;
  tenantCount: number;
  tenants: {
    total: number;
    internal: number;
    protected: number;
    top: { tenantId: string; items: number; internal: boolean; wave: number }[];
  };
  cascade: { type: string; count: number }[];
  waves: WavePlan[];
  budgets: {
    maxTenants: number;
    maxItems: number;
    withinBudget: boolean;
    breaches: string[];
    /** Usage across operations over the rolling window (plans made before it existed have none). */
    rolling?: RollingView;
  };
  requiresBreakGlass: boolean;
  breakGlassReasons: string[];
  planHash: string;
}

export interface PlanInput {
  cascadeTo: string[];
  budgets: Budgets;
  steps: readonly string[];
}

/** Tenant loads, waves, cascade and budgets for an all-ok classification. */
export async function buildPlan(
  client: pg.PoolClient,
  input: PlanInput,
): Promise<{ summary: Omit<PlanSummary, 'planHash'>; waveOf: Map<string, number>; loads: TenantLoad[] }> {
  const loads = await client.query<{ tenant_id: string; items: number; internal: boolean; protected: boolean }>(
    `SELECT c.tenant_id, count(*)::int AS items, t.internal, t.protected
     FROM plan_class c JOIN tenants t ON t.id = c.tenant_id GROUP BY c.tenant_id, t.internal, t.protected`,
  );
  const tenants: TenantLoad[] = loads.rows.map((r) => ({
    tenantId: r.tenant_id,
    items: r.items,
    internal: r.internal,
  }));
  const { waves, waveOf } = scheduleWaves(tenants, input.steps);
  const itemCount = tenants.reduce((n, t) => n + t.items, 0);
  const protectedTenants = loads.rows.filter((r) => r.protected).map((r) => r.tenant_id);
  const cascade = input.cascadeTo.length ? await cascadeCounts(client, input.cascadeTo) : [];

  const breaches: string[] = [];
  if (tenants.length > input.budgets.maxTenants)
    breaches.push(`${tenants.length} tenants exceeds the budget of ${input.budgets.maxTenants}`);
  if (itemCount > input.budgets.maxItems)
    breaches.push(`${itemCount} items exceeds the budget of ${input.budgets.maxItems}`);
  const breakGlassReasons = [...breaches];
  if (protectedTenants.length) {
    breakGlassReasons.push(
      `${protectedTenants.length} protected tenant(s): ${protectedTenants.slice(0, 10).join(', ')}${protectedTenants.length > 10 ? ', …' : ''}`,
    );
  }
  const top = [...tenants]
    .sort((a, b) => b.items - a.items || (a.tenantId < b.tenantId ? -1 : 1))
    .slice(0, TOP_TENANTS)
    .map((t) => ({ tenantId: t.tenantId, items: t.items, internal: t.internal, wave: waveOf.get(t.tenantId)! }));
  return {
    waveOf,
    loads: tenants,
    summary: {
      itemCount,
      tenantCount: tenants.length,
      tenants: {
        total: tenants.length,
        internal: tenants.filter((t) => t.internal).length,
        protected: protectedTenants.length,
        top,
      },
      cascade,
      waves,
      budgets: {
        maxTenants: input.budgets.maxTenants,
        maxItems: input.budgets.maxItems,
        withinBudget: breaches.length === 0,
        breaches,
      },
      requiresBreakGlass: breakGlassReasons.length > 0,
      breakGlassReasons,
    },
  };
}

/** Active descendants a delete would take with it, by type (following cascade types only). */
async function cascadeCounts(client: pg.PoolClient, cascadeTo: string[]) {
  const res = await client.query<{ type: string; count: number }>(
    `WITH RECURSIVE tree AS (
       SELECT r.id, r.type, 1 AS depth FROM plan_class c JOIN resources r ON r.parent_id = c.id
       WHERE r.state = 'active' AND r.type = ANY($1::text[])
       UNION ALL
       SELECT r.id, r.type, t.depth + 1 FROM tree t JOIN resources r ON r.parent_id = t.id
       WHERE r.state = 'active' AND r.type = ANY($1::text[]) AND t.depth < $2
     )
     SELECT type, count(DISTINCT id)::int AS count FROM tree GROUP BY type ORDER BY count DESC, type`,
    [cascadeTo, CASCADE_DEPTH],
  );
  return res.rows;
}

/**
 * Writes the item ledger: one row per resolved ID, numbered (seq) in wave order so that a wave is
 * the contiguous range waves[i].fromSeq ≤ seq < waves[i].toSeq. Inserted in key order.
 */
export async function insertItems(client: pg.PoolClient, operationId: string, waveOf: Map<string, number>) {
  await client.query(
    `INSERT INTO operation_items (operation_id, seq, resource_id, tenant_id, ordinal, wave)
     SELECT $1, (row_number() OVER (ORDER BY w.wave, c.ord) - 1)::int, c.id, c.tenant_id, c.ord, w.wave
     FROM plan_class c JOIN unnest($2::text[], $3::int[]) AS w(tenant_id, wave) ON w.tenant_id = c.tenant_id
     ORDER BY 2`,
    [operationId, [...waveOf.keys()], [...waveOf.values()]],
  );
}

/** Per-wave counters start at zero; the executor keeps them with the item outcomes. */
export async function insertWaves(client: pg.PoolClient, operationId: string, waves: WavePlan[]) {
  await client.query(
    `INSERT INTO operation_waves (operation_id, wave, from_seq, to_seq, tenants)
     SELECT $1, w, f, t, n FROM unnest($2::int[], $3::int[], $4::int[], $5::int[]) AS x(w, f, t, n)`,
    [
      operationId,
      waves.map((w) => w.index),
      waves.map((w) => w.fromSeq),
      waves.map((w) => w.toSeq),
      waves.map((w) => w.tenants),
    ],
  );
}

/**
 * The plan hash binds an approval to exactly what was planned: action, type and mode, every
 * submitted ID in order (hashed while streaming), and which tenants go in which wave with how
 * many items. The ledger written with the plan never changes afterwards, so approving the hash
 * approves the ledger.
 */
export function computePlanHash(
  header: string,
  idsHash: string,
  waves: WavePlan[],
  waveOf: Map<string, number>,
): string {
  const h = createHash('sha256').update(header).update('\n').update(idsHash).update('\n');
  for (const w of waves) h.update(`wave ${w.index} ${w.kind} ${w.tenants} ${w.items}\n`);
  for (const [tenant, wave] of [...waveOf.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)))
    h.update(`${tenant}:${wave}\n`);
  return h.digest('hex');
}
