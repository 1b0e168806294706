// Bake-time analysis on the real stack: a tenant whose health probe turns unhealthy during the
// bake halts the rollout before the next wave; a probe that does not answer counts as unhealthy
// (fail closed); a resource type with no probe at all is inconclusive when probes are required
// (paused for a human, nothing rolled back), and not when they are optional.
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  buildExecHarness,
  getOperation,
  submitAndStart,
  until,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import {
  appsOf,
  command,
  expectEverythingTouchedRestored,
  ledger,
  range,
  isDrillCall,
  softDeletesOf,
  tenantsOfWave,
} from '../support/exec-helpers.ts';
import { seedRegistry, tenantId } from '../support/seed.ts';

const APPS = 3;
const ENDED = ['completed', 'halted', 'rolled_back', 'paused'];

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 80, appsPerSite: APPS, internalTenants: 5 });
  await useHttpAdapter(h);
});
afterAll(async () => {
  await h?.close();
});
beforeEach(async () => {
  h.downstream.reset();
  await useHttpAdapter(h);
});

/** Waves: 0 = the internal tenant, 1 = the first external tenant, 2 = the next two, 3 = the rest. */
const rolloutWith = (bakeSeconds: number) => ({ bakeSeconds, concurrency: 2, waves: ['1', '3', '100%'] });

describe('health probes during the bake', () => {
  it('halts before wave 2 when a wave-1 tenant turns unhealthy during its bake, then rolls back', async () => {
    const external = range(10, 20);
    const plan = await submitAndStart(h, {
      ids: appsOf([0, ...external], APPS),
      rollout: rolloutWith(2),
      haltPolicy: { onHalt: 'rollback' },
    });
    expect(plan.waves.map((w) => w.tenants)).toEqual([1, 1, 2, 7]);
    const wave1Tenant = tenantId(10);

    // Wave 1 is settled and baking: only now does its tenant start failing its health check.
    let baking: { bakeUntil?: string | null; seenAt: number } | undefined;
    await until(async () => {
      const op = await getOperation(h, plan.id);
      if (ENDED.includes(op.state)) throw new Error(`operation ended early: ${JSON.stringify(op)}`);
      if (op.state === 'baking' && op.currentWave === 1) baking = { ...op, seenAt: Date.now() };
      return baking !== undefined;
    }, 'wave 1 to bake');
    h.downstream.probe(wave1Tenant, 'unhealthy');
    // A client polling REST sees when the bake ends (only the event stream said it before): within
    // the 2 s bake of the moment it was read.
    const left = Date.parse(String(baking!.bakeUntil)) - baking!.seenAt;
    expect(left, String(baking!.bakeUntil)).toBeGreaterThan(0);
    expect(left).toBeLessThanOrEqual(2_000);

    const end = await waitForState(h, plan.id, ['rolled_back', 'completed', 'paused', 'halted']);
    expect(end.state).toBe('rolled_back');
    expect(end.currentWave).toBe(1);
    expect(end.haltReason).toMatch(new RegExp(`^wave 2 of 4: unhealthy probes: ${wave1Tenant} \\(unhealthy`));
    const ended = await request(h.app.server).get(`/v1/operations/${plan.id}`).set('authorization', h.auth('viewer'));
    expect(ended.body.bakeUntil).toBeNull();

    // Wave 2 never started: no destructive call for any of its tenants (or later ones).
    const rows = await ledger(h, plan.id);
    const later = new Set([...tenantsOfWave(rows, 2), ...tenantsOfWave(rows, 3)]);
    expect(h.downstream.destructiveCalls().filter((c) => later.has(c.tenantId!))).toEqual([]);
    expect(rows.filter((r) => r.wave >= 2).every((r) => r.state === 'pending')).toBe(true);
    // Waves 0 and 1 were deleted in full, and are restored in full.
    const { touched } = await expectEverythingTouchedRestored(h, plan.id);
    expect(touched.size).toBe(2 * APPS);
    // The probe was actually asked during the bake, for both touched tenants.
    const probed = new Set(h.downstream.calls.filter((c) => c.action === 'probe').map((c) => c.tenantId));
    expect(probed).toEqual(new Set([tenantId(0), wave1Tenant]));
  });

  it('counts a probe that never answers as unhealthy (fail closed): halted, nothing more deleted', async () => {
    const internal = tenantId(1);
    h.downstream.probe(internal, 'hang'); // the wave-0 tenant's health endpoint never answers
    const haltPolicy = { onHalt: 'pause', probeTimeoutMs: 200 };
    const plan = await submitAndStart(h, {
      ids: appsOf([1, ...range(20, 30)], APPS),
      rollout: rolloutWith(1),
      haltPolicy,
    });

    const end = await waitForState(h, plan.id, ['halted', 'completed', 'paused', 'rolled_back'], 20_000);
    expect(end.state).toBe('halted');
    expect(end.currentWave).toBe(0);
    expect(end.haltReason).toMatch(new RegExp(`^wave 1 of \\d+: unhealthy probes: ${internal} \\(timeout`));
    const rows = await ledger(h, plan.id);
    const deletes = softDeletesOf(h, rows);
    expect(new Set(deletes.map((c) => c.tenantId))).toEqual(new Set([internal]));
    // onHalt 'pause': nothing is restored by itself; the deleted items stay deleted and done.
    expect(h.downstream.calls.filter((c) => c.action === 'restore' && !isDrillCall(c))).toEqual([]);
    expect(rows.filter((r) => r.wave === 0).map((r) => r.state)).toEqual(['done', 'done', 'done']);

    // A human decides: roll it back.
    const rb = await command(h, 'operator', plan.id, 'rollback', { reason: 'probe silent, undo' });
    expect(rb.status, JSON.stringify(rb.body)).toBe(200);
    expect((await waitForState(h, plan.id, ['rolled_back'])).state).toBe('rolled_back');
    await expectEverythingTouchedRestored(h, plan.id);
  });
});

describe('the bake schedule', () => {
  it('probes once per slot of the bake (its start and its end for a 3 s bake), however often the reconciler sweeps', async () => {
    const internal = tenantId(4);
    const plan = await submitAndStart(h, {
      ids: appsOf([4, 50, 51], APPS),
      rollout: { ...rolloutWith(3), waves: ['100%'] },
    });
    const end = await waitForState(h, plan.id, ['completed', 'halted', 'rolled_back', 'paused']);
    expect(end.state).toBe('completed');
    // Wave 0 baked 3 s while the harness's reconciler swept every 500 ms; wave 1 was the last (no bake).
    const rounds = h.downstream.calls.filter((c) => c.action === 'probe' && c.tenantId === internal);
    expect(rounds.length).toBeGreaterThanOrEqual(2);
    expect(rounds.length).toBeLessThanOrEqual(3);
  });
});

describe('a resource type without a health probe', () => {
  it('is inconclusive when probes are required: paused after wave 0, not halted, nothing rolled back', async () => {
    await useHttpAdapter(h, false);
    const plan = await submitAndStart(h, {
      ids: appsOf([2, ...range(30, 40)], APPS),
      rollout: rolloutWith(0),
      haltPolicy: { onHalt: 'rollback', probe: 'required' },
    });

    const end = await waitForState(h, plan.id, ['paused', 'completed', 'halted', 'rolling_back', 'rolled_back']);
    expect(end.state).toBe('paused');
    expect(end.currentWave).toBe(0);
    expect(end.haltReason).toBe(
      `inconclusive: no health probe for ${tenantId(2)} (not_configured); the halt policy requires a probe: ` +
        'declare one on the type (adapter probe) and resume, or roll back',
    );
    const rows = await ledger(h, plan.id);
    // Not rolled back: wave 0 stays deleted, no restore call, and wave 1 never started.
    expect(
      h.downstream.calls.filter((c) => (c.action === 'restore' && !isDrillCall(c)) || c.action === 'probe'),
    ).toEqual([]);
    expect(rows.filter((r) => r.wave === 0).map((r) => r.state)).toEqual(['done', 'done', 'done']);
    for (const r of rows.filter((x) => x.wave === 0)) expect(h.downstream.state(r.resource_id)).toBe('soft_deleted');
    expect(softDeletesOf(h, rows).every((c) => c.tenantId === tenantId(2))).toBe(true);
    expect(rows.filter((r) => r.wave > 0).every((r) => r.state === 'pending')).toBe(true);

    // The human looks, decides it is fine to undo: abort → rollback (the halt policy).
    const abort = await command(h, 'operator', plan.id, 'abort', { reason: 'no way to check health' });
    expect(abort.status, JSON.stringify(abort.body)).toBe(200);
    expect((await waitForState(h, plan.id, ['rolled_back'])).state).toBe('rolled_back');
    await expectEverythingTouchedRestored(h, plan.id);
  });

  it('is no obstacle when probes are optional: the rollout completes', async () => {
    await useHttpAdapter(h, false);
    const ids = appsOf([3, ...range(40, 50)], APPS);
    const plan = await submitAndStart(h, { ids, rollout: rolloutWith(0), haltPolicy: { probe: 'optional' } });
    const end = await waitForState(h, plan.id, ['completed', 'paused', 'halted', 'rolling_back', 'rolled_back']);
    expect(end.state).toBe('completed');
    expect(new Set(softDeletesOf(h, await ledger(h, plan.id)).map((c) => c.resourceId))).toEqual(new Set(ids));
  });
});
