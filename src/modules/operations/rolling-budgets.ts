// Budgets across operations: tenants and items per requester and in total over a rolling 24 h, so
// that ten operations of 49 tenants need the same break-glass as one of 490.
//
// What counts: every operation that is not rejected, cancelled or expired (those never deleted
// anything) with its whole plan, from the moment it is planned — a planned-but-not-started
// operation counts, or the slicing would just move to the approval step — while it is live, and
// for 24 h after it ended. Tenants are counted once however many operations touch them (from
// operation_tenants, written with each plan); items are summed.
import type pg from 'pg';
import type { Queryable } from '../../lib/sql.ts';
import { LIVE_STATES } from './lifecycle-types.ts';
import type { PlanSummary } from './plan-build.ts';
import type { Budgets } from './policy.ts';

export const ROLLING_WINDOW_HOURS = 24;

export interface RollingBudgets {
  perRequester: Budgets;
  total: Budgets;
}
/**
 * Per requester, what one operation may do (so slicing buys nothing); in total, room for a few
 * teams' routine work on one day, but not a fleet-wide sweep split among many tokens.
 */
export const DEFAULT_ROLLING_BUDGETS: RollingBudgets = {
  perRequester: { maxTenants: 50, maxItems: 100_000 },
  total: { maxTenants: 200, maxItems: 400_000 },
};

/** Operations in these states never deleted anything, and never will. */
const NOT_COUNTED = ['rejected', 'cancelled', 'expired'];
// Serialises the count and the commit of concurrent plans: two plans of one requester made at the
// same moment would otherwise each miss the other and both stay under the budget.
const ROLLING_BUDGET_LOCK = 7_342_005;

export interface Usage {
  /** Other operations counted in the window. */
  operations: number;
  tenants: { before: number; withPlan: number; max: number };
  items: { before: number; withPlan: number; max: number };
}
export interface RollingView {
  windowHours: number;
  requester: Usage;
  total: Usage;
}

export async function getRollingBudgets(db: Queryable): Promise<RollingBudgets> {
  const r = await db.query<{ value: Partial<RollingBudgets> }>(
    `SELECT value FROM settings WHERE key = 'rolling_budgets'`,
  );
  return { ...DEFAULT_ROLLING_BUDGETS, ...r.rows[0]?.value };
}

interface Counts {
  mine_ops: number;
  all_ops: number;
  mine_items: number;
  all_items: number;
  mine_tenants_before: number;
  mine_tenants_with: number;
  all_tenants_before: number;
  all_tenants_with: number;
}

/** Usage of the requester and of everyone in the window, before and with a plan of these tenants and items. */
export async function rollingUsage(
  db: Queryable,
  q: { requestedBy: string; tenants: string[]; items: number; limits: RollingBudgets },
): Promise<RollingView> {
  const r = await db.query<Counts>(
    `WITH counted AS (
       SELECT o.id, o.requested_by = $1 AS mine, o.item_count FROM operations o
       WHERE (o.state = ANY($2::text[]) OR o.finished_at > now() - make_interval(hours => $3))
         AND o.state <> ALL($4::text[])
     ), tenants AS (
       SELECT ot.tenant_id, c.mine, false AS planned FROM operation_tenants ot JOIN counted c ON c.id = ot.operation_id
       UNION ALL
       SELECT p, true, true FROM unnest($5::text[]) AS p
     )
     SELECT
       (SELECT count(*) FILTER (WHERE mine) FROM counted)::int AS mine_ops,
       (SELECT count(*) FROM counted)::int AS all_ops,
       (SELECT coalesce(sum(item_count) FILTER (WHERE mine), 0) FROM counted)::bigint AS mine_items,
       (SELECT coalesce(sum(item_count), 0) FROM counted)::bigint AS all_items,
       count(DISTINCT tenant_id) FILTER (WHERE mine AND NOT planned)::int AS mine_tenants_before,
       count(DISTINCT tenant_id) FILTER (WHERE mine)::int AS mine_tenants_with,
       count(DISTINCT tenant_id) FILTER (WHERE NOT planned)::int AS all_tenants_before,
       count(DISTINCT tenant_id)::int AS all_tenants_with
     FROM tenants`,
    [q.requestedBy, LIVE_STATES, ROLLING_WINDOW_HOURS, NOT_COUNTED, q.tenants],
  );
  const c = r.rows[0]!;
  const usage = (ops: number, tb: number, tw: number, items: number, limit: Budgets): Usage => ({
    operations: ops,
    tenants: { before: tb, withPlan: tw, max: limit.maxTenants },
    items: { before: items, withPlan: items + q.items, max: limit.maxItems },
  });
  return {
    windowHours: ROLLING_WINDOW_HOURS,
    requester: usage(c.mine_ops, c.mine_tenants_before, c.mine_tenants_with, c.mine_items, q.limits.perRequester),
    total: usage(c.all_ops, c.all_tenants_before, c.all_tenants_with, c.all_items, q.limits.total),
  };
}

/** Which rolling budgets the plan breaches, as reasons a person reads. */
export function rollingBreaches(view: RollingView, requesterName: string): string[] {
  const out: string[] = [];
  const check = (who: string, u: Usage) => {
    for (const [what, m] of [
      ['tenants', u.tenants],
      ['items', u.items],
    ] as const) {
      if (m.withPlan > m.max) {
        const others =
          u.operations > 0
            ? `${m.before} in ${u.operations} other operation(s) in the last ${view.windowHours} h`
            : 'this plan alone';
        out.push(`rolling ${view.windowHours} h budget of ${who}: ${m.withPlan} ${what} (${others}) exceeds ${m.max}`);
      }
    }
  };
  check(`requester "${requesterName}"`, view.requester);
  check('everyone', view.total);
  return out;
}

/**
 * Adds the rolling usage to the plan and any breach to its budgets and break-glass reasons. A plan
 * that will be stored takes the lock first (held until its transaction commits); a dry run does
 * not, as it changes nothing.
 */
export async function applyRollingBudgets(
  client: pg.PoolClient,
  summary: Omit<PlanSummary, 'planHash'>,
  q: { requestedBy: string; requesterName: string; tenants: string[]; lock: boolean },
): Promise<void> {
  if (q.lock) await client.query('SELECT pg_advisory_xact_lock($1)', [ROLLING_BUDGET_LOCK]);
  const limits = await getRollingBudgets(client);
  const view = await rollingUsage(client, { ...q, items: summary.itemCount, limits });
  const breaches = rollingBreaches(view, q.requesterName);
  summary.budgets.rolling = view;
  summary.budgets.breaches.push(...breaches);
  summary.budgets.withinBudget = summary.budgets.breaches.length === 0;
  summary.breakGlassReasons.push(...breaches);
  summary.requiresBreakGlass = summary.breakGlassReasons.length > 0;
}

/** The plan's tenants, written with it: what later plans count. */
export async function insertOperationTenants(
  client: pg.PoolClient,
  operationId: string,
  loads: { tenantId: string; items: number }[],
) {
  await client.query(
    `INSERT INTO operation_tenants (operation_id, tenant_id, items)
     SELECT $1, t, n FROM unnest($2::text[], $3::int[]) AS x(t, n)`,
    [operationId, loads.map((l) => l.tenantId), loads.map((l) => l.items)],
  );
}
