// The Atlassian case, automated (issue 8, item 4): 883 tenants × 20 items deleted by one completed
// operation, brought back by one restore operation, with the registry adapter. The full size, as
// the benchmark runs it (`npm run bench -- restore` times it, registry and HTTP downstream): about
// 30-40 s here on a shared 2-core machine, most of it the delete and the restore running.
// Speed is the benchmark's to measure, not this test's: it proves the mass restore is complete.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildExecHarness, submitAndStart, waitForState, type ExecHarness } from '../support/execution.ts';
import { command } from '../support/exec-helpers.ts';
import { getRestore, postRestore, RESTORE_ENDS } from '../support/restores.ts';
import { query } from '../support/seed.ts';

const TENANTS = 883;
const PER_TENANT = 20;
const ITEMS = TENANTS * PER_TENANT;

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 0 });
  await h.startWorker({ concurrency: 4 });
  await query(h.databaseUrl, `INSERT INTO resource_types (name) VALUES ('mitem')`);
  await query(
    h.databaseUrl,
    `INSERT INTO tenants (id, name) SELECT 'mt_' || t, 'Customer ' || t FROM generate_series(0, $1 - 1) t`,
    [TENANTS],
  );
  await query(
    h.databaseUrl,
    `INSERT INTO resources (id, type, tenant_id)
     SELECT 'mitem_' || t || '_' || i, 'mitem', 'mt_' || t FROM generate_series(0, $1 - 1) t, generate_series(0, $2 - 1) i`,
    [TENANTS, PER_TENANT],
  );
});
afterAll(async () => {
  await h?.close();
});

describe('mass restore', () => {
  it(`restores ${ITEMS} items of ${TENANTS} tenants deleted by one completed operation with one restore`, async () => {
    const ids = Array.from({ length: ITEMS }, (_, k) => `mitem_${Math.floor(k / PER_TENANT)}_${k % PER_TENANT}`);
    const del = await submitAndStart(h, {
      targetType: 'mitem',
      ids,
      rollout: { waves: ['100%'], bakeSeconds: 0, concurrency: 64 },
      haltPolicy: { probe: 'optional' },
    });
    expect((await waitForState(h, del.id, ['completed', 'halted', 'rolling_back'], 180_000)).state).toBe('completed');
    const deleted = await query<{ n: number }>(
      h.databaseUrl,
      `SELECT count(*)::int AS n FROM resources WHERE type = 'mitem' AND state = 'soft_deleted'`,
    );
    expect(deleted[0]!.n).toBe(ITEMS);

    const r = await postRestore(h, { operationId: del.id, rollout: { concurrency: 64 } });
    expect(r.status, JSON.stringify(r.body).slice(0, 500)).toBe(201);
    expect(r.body).toMatchObject({ itemCount: ITEMS, tenantCount: TENANTS, requiresBreakGlass: true });
    // Default restore waves ["10%", "100%"]: a tenth of the tenants first, then the rest.
    expect(r.body.plan.waves.map((w: { tenants: number }) => w.tenants)).toEqual([89, TENANTS - 89]);
    for (const role of ['approver', 'admin'] as const)
      await command(h, role, r.body.id, 'approve', { planHash: r.body.planHash }).expect(200);
    await command(h, 'operator', r.body.id, 'start').expect(200);
    await waitForState(h, r.body.id, RESTORE_ENDS, 180_000);

    const op = await getRestore(h, r.body.id);
    expect(op.state).toBe('completed');
    expect(op.counts).toMatchObject({ items: ITEMS, restored: ITEMS, notRestored: 0 });
    const items = await query<{ state: string; n: number }>(
      h.databaseUrl,
      `SELECT state, count(*)::int AS n FROM operation_items WHERE operation_id = $1 GROUP BY state`,
      [r.body.id],
    );
    expect(items).toEqual([{ state: 'done', n: ITEMS }]);
    // Every tenant has all of its items back, and nothing of this type is left deleted.
    const perTenant = await query<{ tenants: number; min: number; max: number; left: number }>(
      h.databaseUrl,
      `SELECT count(*)::int AS tenants, min(active)::int AS min, max(active)::int AS max, sum(other)::int AS left
       FROM (SELECT tenant_id, count(*) FILTER (WHERE state = 'active') AS active,
                    count(*) FILTER (WHERE state <> 'active') AS other
             FROM resources WHERE type = 'mitem' GROUP BY tenant_id) t`,
    );
    expect(perTenant[0]).toEqual({ tenants: TENANTS, min: PER_TENANT, max: PER_TENANT, left: 0 });
  }, 420_000);
});
