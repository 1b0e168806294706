// Typed-ID pre-flight: every ID is resolved; one wrong ID rejects the whole operation.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { appId, query, seedRegistry, siteId, tenantId } from '../support/seed.ts';

let t: TestApp;
const PROTECTED_APP = appId(7, 3);
beforeAll(async () => {
  t = await buildTestApp();
  // 900 sites (one customer each) with 20 apps each; the first 2 customers are internal.
  await seedRegistry(t.databaseUrl, {
    sites: 900,
    appsPerSite: 20,
    internalTenants: 2,
    protectedApps: [PROTECTED_APP],
  });
});
afterAll(async () => {
  await t?.close();
});

const submit = (body: object, role: 'requester' | 'admin' = 'requester') =>
  request(t.app.server).post('/v1/operations').set('authorization', t.auth(role)).send(body);
const spec = { targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-1' };

describe('the April 2022 replay', () => {
  it('rejects 883 site IDs submitted as app IDs, every one reported as type_mismatch, and nothing can run', async () => {
    const ids = Array.from({ length: 883 }, (_, i) => siteId(i));
    const res = await submit({ ...spec, ids }).expect(422);
    expect(res.body.code).toBe('PLAN_REJECTED');
    expect(res.body.details.counts).toMatchObject({ ok: 0, type_mismatch: 883, unknown: 0 });
    expect(res.body.details.offenders.type_mismatch).toHaveLength(100);
    for (const o of res.body.details.offenders.type_mismatch) expect(o.actualType).toBe('site');
    const opId = res.body.details.operationId as string;

    // The full report has all 883, each with the actual type and tenant.
    const report = await request(t.app.server)
      .get(`/v1/operations/${opId}/report?limit=5000`)
      .set('authorization', t.auth('viewer'))
      .expect(200);
    expect(report.body.items).toHaveLength(883);
    expect(new Set(report.body.items.map((i: { class: string }) => i.class))).toEqual(new Set(['type_mismatch']));
    expect(report.body.items[5]).toMatchObject({ id: siteId(5), actualType: 'site', tenantId: tenantId(5) });

    // Recorded as rejected, with who asked; no item exists that could ever run.
    const op = await request(t.app.server)
      .get(`/v1/operations/${opId}`)
      .set('authorization', t.auth('viewer'))
      .expect(200);
    expect(op.body).toMatchObject({ state: 'rejected', requestedBy: 'test-requester', itemCount: 0, planHash: null });
    const items = await query(t.databaseUrl, 'SELECT count(*)::int AS n FROM operation_items WHERE operation_id = $1', [
      opId,
    ]);
    expect(items[0]!.n).toBe(0);
    const audit = await query(
      t.databaseUrl,
      `SELECT action, outcome, actor FROM audit_events WHERE operation_id = $1`,
      [opId],
    );
    expect(audit).toEqual([{ action: 'operation.rejected', outcome: 'refused', actor: 'test-requester' }]);
  });
});

describe('per-ID classification', () => {
  it('reports exactly the 7 bad IDs among 5,000 in their classes', async () => {
    const good = Array.from({ length: 5000 }, (_, k) => appId(100 + Math.floor(k / 20), k % 20));
    const sites = [siteId(1), siteId(2), siteId(3)];
    const unknown = ['app_99999_01', 'app_99999_02'];
    const ids = [
      ...good.slice(0, 1000),
      ...sites,
      ...good.slice(1000, 3000),
      ...unknown,
      PROTECTED_APP,
      ...good.slice(3000),
      good[42]!,
    ];
    const res = await submit({ ...spec, ids }).expect(422);
    expect(res.body.details.counts).toEqual({
      ok: 5000,
      unknown: 2,
      type_mismatch: 3,
      pattern_mismatch: 0,
      in_flight: 0,
      out_of_scope: 0,
      duplicate: 1,
      already_deleted: 0,
      restore_uncertain: 0,
      protected: 1,
    });
    const o = res.body.details.offenders;
    expect(o.type_mismatch.map((x: { id: string }) => x.id)).toEqual(sites);
    expect(o.unknown.map((x: { id: string }) => x.id)).toEqual(unknown);
    expect(o.protected.map((x: { id: string }) => x.id)).toEqual([PROTECTED_APP]);
    expect(o.duplicate).toEqual([expect.objectContaining({ id: good[42], index: ids.length - 1 })]);
  });

  it('classifies IDs that do not look like the type as pattern_mismatch, and deleted ones as already_deleted', async () => {
    await query(t.databaseUrl, `UPDATE resources SET state = 'soft_deleted' WHERE id = $1`, [appId(300, 0)]);
    const res = await submit({ ...spec, ids: [appId(300, 1), 'usr_123', appId(300, 0)] }).expect(422);
    expect(res.body.details.counts).toMatchObject({ ok: 1, pattern_mismatch: 1, already_deleted: 1 });
    expect(res.body.details.offenders.already_deleted[0]).toMatchObject({ id: appId(300, 0), state: 'soft_deleted' });
  });
});

describe('resources a live operation holds', () => {
  it('are in_flight, naming the holder, in a list rejected for other IDs too (no lock is taken then)', async () => {
    const held = [appId(400, 0), appId(400, 1)];
    // As admin: the requester's rolling budget stays as the plans below count on it.
    const first = await submit({ ...spec, ids: held }, 'admin').expect(201);
    // Already deleted too: in_flight outranks it, as the holder's rollback may bring it back.
    await query(t.databaseUrl, `UPDATE resources SET state = 'soft_deleted' WHERE id = $1`, [held[1]]);
    const res = await submit({ ...spec, ids: [held[0], 'app_99999_03', appId(400, 2), held[1]] }, 'admin').expect(422);
    expect(res.body.details.counts).toMatchObject({ ok: 1, unknown: 1, in_flight: 2, already_deleted: 0 });
    expect(res.body.details.offenders.in_flight).toEqual([
      expect.objectContaining({ id: held[0], index: 0, heldBy: first.body.id }),
      expect.objectContaining({ id: held[1], index: 3, heldBy: first.body.id }),
    ]);
    expect(res.body.details.offenders.unknown[0]).not.toHaveProperty('heldBy');
  });

  it('many overlapping plans at once: the winners share nothing, and every loser names a winner for each ID it lost', async () => {
    // 60 apps; 9 lists of 12, each overlapping its neighbours by 6, plus 2 dry runs, all at once.
    // Classify leaves an otherwise all-ok list's lock rows to the lock stage: the race is decided
    // there, and a loser must still be told exactly which IDs it lost, and to whom.
    const apps = [700, 701, 702].flatMap((site) => Array.from({ length: 20 }, (_, j) => appId(site, j)));
    const lists = Array.from({ length: 9 }, (_, k) => apps.slice(k * 6, k * 6 + 12));
    const answers = await Promise.all([
      ...lists.map((ids) => submit({ ...spec, ids }, 'admin')),
      submit({ ...spec, ids: lists[2], dryRun: true }, 'admin'),
      submit({ ...spec, ids: lists[5], dryRun: true }, 'admin'),
    ]);
    const runs = answers.slice(0, 9);
    for (const r of runs) expect([201, 422]).toContain(r.status);
    const winners = new Map<string, string>(); // resource → the operation that won it
    for (const [k, r] of runs.entries()) {
      if (r.status !== 201) continue;
      for (const id of lists[k]!) {
        expect(winners.get(id), `${id} won twice`).toBeUndefined();
        winners.set(id, r.body.id);
      }
    }
    expect(winners.size).toBeGreaterThan(0);
    // A loser names the holders that had committed when it lost: a list between two winners may
    // lose to the first, and the second win the rest of it afterwards (its report calls those ok).
    const check = (r: (typeof answers)[number], ids: string[]) => {
      expect(r.body.code).toBe('PLAN_REJECTED');
      const named = r.body.details.offenders.in_flight.map((o: { id: string; heldBy: string }) => [o.id, o.heldBy]);
      expect(named.length).toBeGreaterThan(0);
      expect(r.body.details.counts).toMatchObject({ ok: ids.length - named.length, in_flight: named.length });
      // Each one named is the winner's, in submission order; never a loser's.
      const lost = new Set(named.map(([id]: string[]) => id));
      expect(named).toEqual(ids.filter((id) => lost.has(id)).map((id) => [id, winners.get(id)]));
    };
    for (const [k, r] of runs.entries()) if (r.status === 422) check(r, lists[k]!);
    // The dry runs saw whatever had committed when they classified: winners only, never a loser.
    for (const [i, r] of answers.slice(9).entries()) {
      const ids = lists[i === 0 ? 2 : 5]!;
      expect([200, 422]).toContain(r.status);
      for (const o of r.status === 422 ? r.body.details.offenders.in_flight : [])
        expect(o.heldBy).toBe(winners.get(o.id));
      if (r.status === 200) expect(r.body.plan.itemCount).toBe(ids.length);
    }
    // The lock table says the same: every app a winner's, none a loser's.
    const locks = await query<{ resource_id: string; operation_id: string }>(
      t.databaseUrl,
      'SELECT resource_id, operation_id FROM resource_locks WHERE resource_id = ANY($1) ORDER BY 1',
      [apps],
    );
    expect(locks.map((l) => [l.resource_id, l.operation_id])).toEqual(
      [...winners].sort(([a], [b]) => (a < b ? -1 : 1)),
    );
  });
});

describe('valid plans', () => {
  it('plans a valid list: tenant counts, internal tenants first, canary waves, hash', async () => {
    // 2 internal customers (0, 1) and 98 external ones, 3 apps each.
    const ids = Array.from({ length: 100 }, (_, s) => [0, 1, 2].map((j) => appId(s, j))).flat();
    const res = await submit({ ...spec, ids, rollout: { bakeSeconds: 0 } }).expect(201);
    const plan = res.body.plan;
    expect(res.body.state).toBe('planned');
    expect(plan).toMatchObject({ itemCount: 300, tenantCount: 100, requiresBreakGlass: true });
    expect(plan.tenants).toMatchObject({ total: 100, internal: 2 });
    expect(plan.waves.map((w: { kind: string; tenants: number }) => [w.kind, w.tenants])).toEqual([
      ['internal', 2],
      ['canary', 1],
      ['canary', 9],
      ['canary', 39],
      ['canary', 49],
    ]);
    expect(plan.waves.reduce((n: number, w: { items: number }) => n + w.items, 0)).toBe(300);
    expect(plan.budgets.breaches).toEqual([
      '100 tenants exceeds the budget of 50',
      'rolling 24 h budget of requester "test-requester": 100 tenants (this plan alone) exceeds 50',
    ]);
    expect(plan.planHash).toMatch(/^[0-9a-f]{64}$/);
    expect(plan.cascade).toEqual([]);
    // Where the time went, stage by stage, as a standard Server-Timing header.
    const stages = String(res.headers['server-timing'])
      .split(', ')
      .map((s) => /^([a-z]+);dur=\d+$/.exec(s)?.[1]);
    expect(stages).toEqual(['intake', 'classify', 'lock', 'plan', 'ledger', 'commit']);
    const waves = await query(
      t.databaseUrl,
      'SELECT wave, count(*)::int AS n FROM operation_items WHERE operation_id = $1 GROUP BY wave ORDER BY wave',
      [res.body.id],
    );
    expect(waves.map((w) => w.n)).toEqual([6, 3, 27, 117, 147]);
    const internalWave = await query(
      t.databaseUrl,
      `SELECT DISTINCT tenant_id FROM operation_items WHERE operation_id = $1 AND wave = 0 ORDER BY 1`,
      [res.body.id],
    );
    expect(internalWave.map((r) => r.tenant_id)).toEqual([tenantId(0), tenantId(1)]);
  });

  it('counts the children a site delete would cascade to, within budget', async () => {
    // Another requester than the 100-tenant plan above, which fills test-requester's rolling budget.
    const res = await submit(
      {
        targetType: 'site',
        reason: 'Decommission sites',
        ticket: 'CHG-2',
        ids: [siteId(500), siteId(501), siteId(502)],
      },
      'admin',
    ).expect(201);
    expect(res.body.plan.cascade).toEqual([{ type: 'app', count: 60 }]);
    // The apps are items of the plan: each site takes its 20 with it (see test/http/cascade-plan.test.ts).
    expect(res.body.plan).toMatchObject({ itemCount: 63, tenantCount: 3, requiresBreakGlass: false });
    // 3 tenants: "1" → 1, 1% and 10% reach no new tenant, 50% → 2, 100% → 3.
    expect(res.body.plan.waves.map((w: { tenants: number }) => w.tenants)).toEqual([1, 1, 1]);
    expect(res.body.plan.waves.map((w: { items: number; descendants: number }) => [w.items, w.descendants])).toEqual([
      [21, 20],
      [21, 20],
      [21, 20],
    ]);
  });

  it('marks compliance erasures as requiring break-glass, and refuses mode hard (HARD_MODE_REPLACED)', async () => {
    const res = await submit({ ...spec, erasure: true, ids: [appId(600, 0)] }).expect(201);
    expect(res.body).toMatchObject({ kind: 'erase', mode: 'hard', requiresBreakGlass: true });
    expect(res.body.plan.breakGlassReasons).toContain('compliance erasure: permanent, destroys snapshots');
    const hard = await submit({ ...spec, mode: 'hard', ids: [appId(601, 0)] }).expect(422);
    expect(hard.body).toMatchObject({ code: 'HARD_MODE_REPLACED', details: { field: 'mode' } });
    // The other contradiction: a soft erasure. It was planned as the permanent one without a word.
    const before = await query(t.databaseUrl, 'SELECT count(*)::int AS n FROM operations');
    const softErasure = await submit({ ...spec, erasure: true, mode: 'soft', ids: [appId(602, 0)] }).expect(422);
    expect(softErasure.body).toMatchObject({ code: 'MODE_CONFLICT', details: { field: 'mode', value: 'soft' } });
    expect(softErasure.body.message).toContain('erasure');
    expect(await query(t.databaseUrl, 'SELECT count(*)::int AS n FROM operations')).toEqual(before);
    // mode hard beside erasure: true says the same thing twice: the erasure (a trial was told to use
    // erasure: true, which it had sent).
    const both = await submit({ ...spec, erasure: true, mode: 'hard', ids: [appId(603, 0)] }).expect(201);
    expect(both.body).toMatchObject({ kind: 'erase', mode: 'hard', requiresBreakGlass: true });
    // A plain delete is soft and needs no break-glass for being one.
    const soft = await submit({ ...spec, ids: [appId(601, 0)] }).expect(201);
    expect(soft.body).toMatchObject({ kind: 'delete', mode: 'soft' });
    expect(soft.body.plan.breakGlassReasons.join(' ')).not.toMatch(/erasure/);
  });

  it('dry run returns the plan and stores nothing', async () => {
    const before = await query(t.databaseUrl, 'SELECT count(*)::int AS n FROM operations');
    const res = await submit({ ...spec, dryRun: true, ids: [appId(610, 0), appId(611, 0)] }).expect(200);
    expect(res.body).toMatchObject({ dryRun: true, plan: { itemCount: 2, tenantCount: 2 } });
    const after = await query(t.databaseUrl, 'SELECT count(*)::int AS n FROM operations');
    expect(after[0]!.n).toBe(before[0]!.n);
  });
});
