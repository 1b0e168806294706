// The plan of an all-ok classification: tenant loads, waves, cascade and per-operation budgets,
// then the item ledger and wave counters it is written as, and the hash an approval binds to.
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { cascadeSummary, insertDescendants, type CascadeLeftOut, type CascadeSummary } from './cascade-plan.ts';
import type { LeftOut } from '../restores/left-out.ts';
import type { Budgets } from './policy.ts';
import { estimatePlanRestore, restoreBreach, type EstimatedRestore } from './restore-estimate.ts';
import type { RollingView } from './rolling-budgets.ts';
import { scheduleWaves, type TenantLoad, type WavePlan } from './waves.ts';

export const TOP_TENANTS = 20;

export interface PlanSummary {
  itemCount: number;
  tenantCount: number;
  tenants: {
    total: number;
    internal: number;
    protected: number;
    top: { tenantId: string; items: number; internal: boolean; wave: number }[];
  };
  /** Active descendants the delete takes with it, by type (counted in itemCount and tenantCount). */
  cascade: { type: string; count: number }[];
  /** Descendants under what it takes that the cascade leaves out, already deleted (cascade-plan.ts). */
  cascadeLeftOut?: CascadeLeftOut;
  waves: WavePlan[];
  budgets: Budgets & {
    withinBudget: boolean;
    breaches: string[];
    /** Usage across operations over the rolling window (plans made before it existed have none). */
    rolling?: RollingView;
  };
  /** How long restoring everything this plan deletes would take (see restore-estimate.ts). */
  estimatedRestore: EstimatedRestore;
  /** Restores and purges of a tenant or an operation: what the scope names but leaves out, and why. */
  leftOut?: LeftOut;
  /** Restores asOf a time: resources that were live then, so no snapshot holds that moment (restores/resolve.ts). */
  liveAtAsOf?: { count: number; ids: string[] };
  requiresBreakGlass: boolean;
  breakGlassReasons: string[];
  planHash: string;
}

export interface PlanInput {
  targetType: string;
  budgets: Budgets;
  steps: readonly string[];
  /** Submitted items by type when they are not all targetType (a restore's); default: all targetType. */
  rootTypes?: { type: string; count: number }[];
  /** Whether the estimated time to restore is a budget (a delete's plan); a restore only shows it. */
  restoreBudget?: boolean;
  /**
   * Whether a protected tenant needs break-glass (default: it does). A restore brings data back,
   * the direction protection exists for: in an incident, the biggest customers' restore must not
   * wait for an admin. The plan still counts them (`tenants.protected`).
   */
  guardProtected?: boolean;
}

/** The plan's items per tenant (plan_class), with the tenant's flags. */
export const planTenantLoads = (client: pg.PoolClient) =>
  client.query<{ tenant_id: string; items: number; internal: boolean; protected: boolean }>(
    // Counted per tenant before the join: PostgreSQL joins before it groups, which joined every
    // item to its tenant (100k IDs: 20 → 10 ms; psql, 2026-12-07).
    `SELECT c.tenant_id, c.items, t.internal, t.protected
     FROM (SELECT tenant_id, count(*)::int AS items FROM plan_class GROUP BY tenant_id) c
     JOIN tenants t ON t.id = c.tenant_id`,
  );

/**
 * Tenant loads, waves, cascade and budgets for an all-ok classification. `loads` is what the plan
 * deletes per tenant, descendants included (in their own tenants): what the rolling budgets count.
 */
export async function buildPlan(
  client: pg.PoolClient,
  input: PlanInput,
): Promise<{
  summary: Omit<PlanSummary, 'planHash'>;
  waveOf: Map<string, number>;
  loads: { tenantId: string; items: number }[];
  /** Every tenant of the plan that is protected (the summary counts them and names the first 10). */
  protectedTenants: string[];
}> {
  const loads = await planTenantLoads(client);
  // Descendants count where the item that takes them is (its wave is theirs), and their tenants
  // count toward the budget even when no submitted item belongs to them.
  const cascade = await cascadeSummary(client);
  const tenants: TenantLoad[] = loads.rows.map((r) => ({
    tenantId: r.tenant_id,
    items: r.items,
    internal: r.internal,
    descendants: cascade.perRootTenant.get(r.tenant_id) ?? 0,
  }));
  const { waves, waveOf } = scheduleWaves(tenants, input.steps);
  const touched = touchedByWave(waves, waveOf, tenants, cascade);
  const itemCount = tenants.reduce((n, t) => n + t.items + (t.descendants ?? 0), 0);
  const tenantCount = tenants.length + cascade.otherTenants.length;
  const protectedTenants = [...loads.rows, ...cascade.otherTenants.map((t) => ({ tenant_id: t.tenantId, ...t }))]
    .filter((r) => r.protected)
    .map((r) => r.tenant_id);
  const estimatedRestore = await estimatePlanRestore(client, [
    ...(input.rootTypes ?? [{ type: input.targetType, count: tenants.reduce((n, t) => n + t.items, 0) }]),
    ...cascade.byType,
  ]);

  const breaches: string[] = [];
  if (tenantCount > input.budgets.maxTenants)
    breaches.push(`${tenantCount} tenants exceeds the budget of ${input.budgets.maxTenants}`);
  if (itemCount > input.budgets.maxItems)
    breaches.push(`${itemCount} items exceeds the budget of ${input.budgets.maxItems}`);
  const slowRestore =
    input.restoreBudget === false ? null : restoreBreach(estimatedRestore, input.budgets.maxRestoreMinutes);
  if (slowRestore) breaches.push(slowRestore);
  const breakGlassReasons = [...breaches];
  if (protectedTenants.length && input.guardProtected !== false) {
    breakGlassReasons.push(
      `${protectedTenants.length} protected tenant(s): ${protectedTenants.slice(0, 10).join(', ')}${protectedTenants.length > 10 ? ', …' : ''}`,
    );
  }
  const top = touched.sort((a, b) => b.items - a.items || (a.tenantId < b.tenantId ? -1 : 1)).slice(0, TOP_TENANTS);
  return {
    waveOf,
    protectedTenants,
    loads: cascade.byType.length ? await loadsByTenant(client) : tenants,
    summary: {
      itemCount,
      tenantCount,
      tenants: {
        total: tenantCount,
        internal: touched.filter((t) => t.internal).length,
        protected: protectedTenants.length,
        top,
      },
      cascade: cascade.byType,
      waves,
      budgets: {
        maxTenants: input.budgets.maxTenants,
        maxItems: input.budgets.maxItems,
        maxRestoreMinutes: input.budgets.maxRestoreMinutes,
        withinBudget: breaches.length === 0,
        breaches,
      },
      estimatedRestore,
      requiresBreakGlass: breakGlassReasons.length > 0,
      breakGlassReasons,
    },
  };
}

/**
 * Every tenant whose resources a wave deletes, its cascades' included: a site's delete in the
 * canary wave that takes another customer's apps touches that customer in the canary. Waves are
 * tenant-aligned on the submitted items (their tenant's wave is their descendants' wave), so a
 * tenant a cascade reaches can be touched in an earlier wave than its own items' (a trial: the
 * plan read "wave 1: 1 tenant" and its canary deleted three tenants' apps, and the top tenants
 * counted those apps both under the site's tenant and their own). Sets each wave's `tenants` and
 * `cumulativeTenants` (external tenants reached by its end) in place, and returns per tenant what
 * it loses and the first wave that touches it.
 */
function touchedByWave(
  waves: WavePlan[],
  waveOf: Map<string, number>,
  roots: TenantLoad[],
  cascade: CascadeSummary,
): { tenantId: string; items: number; internal: boolean; wave: number }[] {
  const internal = new Map<string, boolean>(roots.map((t) => [t.tenantId, t.internal]));
  for (const o of cascade.otherTenants) internal.set(o.tenantId, o.internal);
  const perWave = new Map<number, Set<string>>(waves.map((w) => [w.index, new Set()]));
  const lost = new Map<string, { items: number; wave: number }>();
  const touch = (tenantId: string, wave: number, items: number) => {
    perWave.get(wave)?.add(tenantId);
    const l = lost.get(tenantId);
    lost.set(tenantId, { items: (l?.items ?? 0) + items, wave: Math.min(l?.wave ?? wave, wave) });
  };
  for (const t of roots) touch(t.tenantId, waveOf.get(t.tenantId)!, t.items);
  for (const s of cascade.spread) touch(s.tenantId, waveOf.get(s.rootTenant)!, s.items);
  const reached = new Set<string>();
  for (const w of waves) {
    const here = perWave.get(w.index)!;
    w.tenants = here.size;
    for (const t of here) if (!internal.get(t)) reached.add(t);
    w.cumulativeTenants = reached.size;
  }
  return [...lost].map(([tenantId, l]) => ({
    tenantId,
    items: l.items,
    internal: internal.get(tenantId) ?? false,
    wave: l.wave,
  }));
}

/** Submitted items and cascaded descendants per tenant each belongs to. */
async function loadsByTenant(client: pg.PoolClient) {
  const r = await client.query<{ tenant_id: string; items: number }>(
    `SELECT tenant_id, count(*)::int AS items
     FROM (SELECT tenant_id FROM plan_class UNION ALL SELECT tenant_id FROM plan_cascade) x
     GROUP BY tenant_id`,
  );
  return r.rows.map((row) => ({ tenantId: row.tenant_id, items: row.items }));
}

/**
 * Writes the item ledger: one row per resolved ID, numbered (seq) in wave order so that a wave is
 * the contiguous range waves[i].fromSeq ≤ seq < waves[i].toSeq. Inserted in key order: the rows
 * leave the window in the order that numbers them (a sort on seq after it, which the planner cannot
 * know is redundant, cost a second 1M-row sort). The descendants of cascades follow, after the last
 * wave's range. The waves are grouped by tenant (each has one) only so that PostgreSQL knows their
 * tenants are distinct: of a bare unnest it assumes a tenant may match a tenth of the plan's rows,
 * and hashed the plan's 100k rows instead of the 500 tenants (the ledger's join 25 → 16 ms; psql).
 */
export async function insertItems(
  client: pg.PoolClient,
  operationId: string,
  waveOf: Map<string, number>,
  submitted: number,
  descendants: number,
) {
  await client.query(
    `INSERT INTO operation_items (operation_id, seq, resource_id, tenant_id, ordinal, wave)
     SELECT $1, (row_number() OVER (ORDER BY w.wave, c.ord) - 1)::int, c.id, c.tenant_id, c.ord, w.wave
     FROM plan_class c JOIN (
       SELECT tenant_id, min(wave) AS wave FROM unnest($2::text[], $3::int[]) AS u(tenant_id, wave) GROUP BY tenant_id
     ) w ON w.tenant_id = c.tenant_id`,
    [operationId, [...waveOf.keys()], [...waveOf.values()]],
  );
  // Skipped without descendants: its join over the whole ledger just written would find nothing.
  if (descendants) await insertDescendants(client, operationId, submitted);
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
 * many items (cascaded descendants included). The ledger written with the plan never changes
 * afterwards, so approving the hash approves the ledger.
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
