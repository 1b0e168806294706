// A purge never plans a parent in an earlier wave than a child it purges. Its waves go by tenant,
// and a site of one tenant with an app of another (cascades cross tenants) was purged in wave 0
// with its app in wave 1: stopped in between (an abort, a halt, a failed call), the app was left
// soft-deleted under a purged parent, never restorable (parent_deleted naming a purged site), which
// is what keeping parents back was for (leave-out.ts keepParentsOfKept; a trial, by ID and by
// dueBefore alike). A tenant, an operation or everything due leaves such a parent out, kept until
// its children are gone (children_kept, naming the child); a list of IDs refuses it (child_later).
import type pg from 'pg';
import { planTenantLoads } from '../operations/plan-build.ts';
import { scheduleWaves, type TenantLoad } from '../operations/waves.ts';
import { LEFT_OUT_TABLE } from '../restores/left-out.ts';
import { familyChild, keepParentsOfKept } from './leave-out.ts';
import type { PurgeScope } from './schemas.ts';

/**
 * Holds each parent of plan_class whose cascade child in it would go in a later wave (by the waves
 * `steps` make of the plan's tenants): left out, or refused for a list of IDs. Returns whether it
 * changed plan_class (the caller summarizes what was left out again).
 */
export async function holdParentsBehindChildren(
  client: pg.PoolClient,
  scope: PurgeScope,
  steps: readonly string[],
): Promise<boolean> {
  // Only a family across tenants can span waves: a tenant's items are all in one wave.
  const links = await client.query(
    `CREATE TEMP TABLE purge_links ON COMMIT DROP AS
     SELECT k.id AS child, k.tenant_id AS child_tenant, c.id AS parent, c.tenant_id AS parent_tenant
     FROM plan_class c
     JOIN resources ch ON ch.parent_id = c.id AND ${familyChild('ch', 'c.type')}
     JOIN plan_class k ON k.id = ch.id AND k.class = 'ok'
     WHERE c.class = 'ok' AND k.tenant_id <> c.tenant_id`,
  );
  if (!links.rowCount) return false;
  let changed = false;
  // Each round leaves at least one parent out (or refuses them and ends), and each may move tenants
  // between waves and so bring another parent ahead of its child: until none is (a probe built a
  // plan that needed 9 rounds; a cap of 8 planned the last parent ahead of its child).
  for (;;) {
    const waveOf = await wavesOfPlan(client, steps);
    const tenants = [...waveOf.keys()];
    const waves = tenants.map((t) => waveOf.get(t)!);
    const early = await client.query<{ parent: string; child: string }>(
      `SELECT DISTINCT ON (l.parent) l.parent, l.child
       FROM purge_links l
       JOIN plan_class c ON c.id = l.parent AND c.class = 'ok'
       JOIN plan_class k ON k.id = l.child AND k.class = 'ok'
       JOIN unnest($1::text[], $2::int[]) AS pw(tenant_id, wave) ON pw.tenant_id = l.parent_tenant
       JOIN unnest($1::text[], $2::int[]) AS cw(tenant_id, wave) ON cw.tenant_id = l.child_tenant
       WHERE cw.wave > pw.wave
       ORDER BY l.parent, cw.wave DESC, l.child`,
      [tenants, waves],
    );
    if (!early.rowCount) break;
    changed = true;
    const parents = early.rows.map((r) => r.parent);
    const children = early.rows.map((r) => r.child);
    if (scope.kind === 'ids') {
      await client.query(
        `UPDATE plan_class c SET class = 'child_later', via = x.child
         FROM unnest($1::text[], $2::text[]) AS x(parent, child) WHERE c.id = x.parent`,
        [parents, children],
      );
      break;
    }
    await client.query(LEFT_OUT_TABLE);
    await client.query(
      `WITH gone AS (
         DELETE FROM plan_class c USING unnest($1::text[], $2::text[]) AS x(parent, child)
         WHERE c.id = x.parent RETURNING c.id, x.child
       ), noted AS (
         INSERT INTO left_out (id, reason, by) SELECT id, 'children_kept', child FROM gone ON CONFLICT (id) DO NOTHING
       )
       DELETE FROM plan_input i USING gone g WHERE i.id = g.id`,
      [parents, children],
    );
    // Their own parents wait for them in turn.
    await keepParentsOfKept(client);
  }
  return changed;
}

/** Each tenant's wave, as the purge's plan will schedule them (plan-build.ts: a purge takes no cascade). */
async function wavesOfPlan(client: pg.PoolClient, steps: readonly string[]): Promise<Map<string, number>> {
  const loads = await planTenantLoads(client);
  const tenants: TenantLoad[] = loads.rows.map((r) => ({
    tenantId: r.tenant_id,
    items: r.items,
    internal: r.internal,
  }));
  return scheduleWaves(tenants, steps).waveOf;
}
