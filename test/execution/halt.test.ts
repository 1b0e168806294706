// Promise 3 on the real stack: damage stops at the canary. A downstream that starts failing, and
// an external signal mid-wave, both halt the operation; the halt overshoot is bounded by the calls
// in flight; the automatic rollback restores everything that was touched. Also the live view
// (currentWave, waveProgress, haltReason) and the halt metrics.
import { Queue } from 'bullmq';
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
  softDeletesAfter,
  softDeletesOf,
  tenantsOfWave,
} from '../support/exec-helpers.ts';
import { query, seedRegistry, tenantId } from '../support/seed.ts';
import { METRICS_TOKEN } from '../support/secrets.ts';

const APPS = 4; // apps per site (= items per tenant)
const CHUNK_CONCURRENCY = 2; // the harness worker's chunk jobs at once
const STOPPED = ['completed', 'halted', 'rolling_back', 'rolled_back', 'paused'];

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 100, appsPerSite: APPS, internalTenants: 5 });
  await useHttpAdapter(h);
});
afterAll(async () => {
  await h?.close();
});
beforeEach(() => h.downstream.reset());

describe('halt on item failures', () => {
  it('stops inside wave 2 when the downstream starts failing, touches no later tenant, and rolls back everything touched', async () => {
    // Wave 0: internal tenant 0; wave 1: tenant 10; wave 2: tenants 11-24 (56 items); wave 3: 25-39.
    const ids = appsOf([0, ...range(10, 40)], APPS);
    const rollout = { bakeSeconds: 0, concurrency: 2, waves: ['1', '50%', '100%'] };
    const haltPolicy = { onHalt: 'rollback', minSample: 4, maxConsecutiveFailures: 3, maxFailureRate: 0.05 };
    const plan = await submitAndStart(h, { ids, rollout, haltPolicy }, false);
    expect(plan.waves.map((w) => w.items)).toEqual([4, 4, 56, 60]);
    // Deletes fail from the first call after waves 0 and 1 (and the restore drill's re-delete of
    // one wave-0 item, between them); restores keep working.
    h.downstream.failOnly(['softDelete']);
    h.downstream.failAfter(plan.waves[0]!.items + 1 + plan.waves[1]!.items, 500);
    expect((await command(h, 'operator', plan.id, 'start')).status).toBe(200);

    const end = await waitForState(h, plan.id, ['completed', 'rolled_back', 'paused', 'halted']);
    expect(end.state).toBe('rolled_back');
    expect(end.haltReason).toMatch(/^wave 3 of 4: /);

    const rows = await ledger(h, plan.id);
    const deletes = softDeletesOf(h, rows);
    const waveOfTenant = new Map(rows.map((r) => [r.tenant_id, r.wave]));
    const touchedTenants = new Set(deletes.map((c) => c.tenantId!));
    // Nothing beyond the failing wave was touched …
    for (const t of touchedTenants) expect(waveOfTenant.get(t), t).toBeLessThanOrEqual(2);
    // … and inside it only what it took to see the failures plus what was already in flight.
    const wave2Items = new Set(deletes.filter((c) => waveOfTenant.get(c.tenantId!) === 2).map((c) => c.resourceId));
    const inFlight = rollout.concurrency * CHUNK_CONCURRENCY;
    expect(wave2Items.size).toBeGreaterThanOrEqual(haltPolicy.maxConsecutiveFailures);
    expect(wave2Items.size).toBeLessThanOrEqual(haltPolicy.maxConsecutiveFailures + inFlight);
    expect(touchedTenants.size).toBeLessThanOrEqual(
      tenantsOfWave(rows, 0).size + tenantsOfWave(rows, 1).size + inFlight,
    );
    // Waves 0 and 1 were fully deleted before, and are fully restored now, newest first.
    for (const w of [0, 1])
      for (const r of rows.filter((x) => x.wave === w))
        expect(deletes.some((c) => c.resourceId === r.resource_id && c.status === 200)).toBe(true);
    await expectEverythingTouchedRestored(h, plan.id);
    const restores = h.downstream.calls.filter((c) => c.action === 'restore' && c.status === 200 && !isDrillCall(c));
    const waveOfItem = new Map(rows.map((r) => [r.resource_id, r.wave]));
    expect(waveOfItem.get(restores[0]!.resourceId!)).toBe(2); // the newest deletes are undone first
    expect(waveOfItem.get(restores[restores.length - 1]!.resourceId!)).toBe(0);
  });
});

describe('halt on failed snapshot reads', () => {
  it("stops sending a chunk's deletes once its failed snapshot reads make the wave unhealthy, as failed deletes do", async () => {
    // A trial: a downstream whose reads answered 500 while its deletes worked got 448 deletes of a
    // chunk whose reads had failed 117 times, then the halt ("item failure rate 21.2%"): failed
    // reads counted in the wave only once the chunk was recorded, after all its calls.
    const ids = appsOf([0, ...range(10, 40)], APPS);
    const rollout = { bakeSeconds: 0, concurrency: 2, waves: ['1', '50%', '100%'] };
    const haltPolicy = { onHalt: 'rollback', minSample: 4, maxConsecutiveFailures: 3, maxFailureRate: 0.05 };
    const plan = await submitAndStart(h, { ids, rollout, haltPolicy }, false);
    expect(plan.waves.map((w) => w.items)).toEqual([4, 4, 56, 60]);
    // Wave 2 (tenants 11-24, one chunk): the reads of its first two tenants' 8 apps fail.
    const unreadable = appsOf([11, 12], APPS);
    h.downstream.failSnapshotsOf(unreadable);
    expect((await command(h, 'operator', plan.id, 'start')).status).toBe(200);

    const end = await waitForState(h, plan.id, ['completed', 'rolled_back', 'paused', 'halted']);
    expect(end.state).toBe('rolled_back');
    expect(end.haltReason).toMatch(/^wave 3 of 4: .*snapshot failed/);
    const rows = await ledger(h, plan.id);
    const waveOf = new Map(rows.map((r) => [r.resource_id, r.wave]));
    const wave2 = softDeletesOf(h, rows).filter((c) => waveOf.get(c.resourceId!) === 2);
    // No item without a snapshot was sent anything; of the others, at most the calls in flight.
    expect(wave2.filter((c) => unreadable.includes(c.resourceId!))).toEqual([]);
    expect(wave2.length).toBeLessThanOrEqual(rollout.concurrency * CHUNK_CONCURRENCY);
    // What was deleted is back; the unread items failed saying why; the rest were never sent.
    const touched = new Set(softDeletesOf(h, rows).map((c) => c.resourceId!));
    for (const r of rows) {
      const want = touched.has(r.resource_id) ? 'restored' : unreadable.includes(r.resource_id) ? 'failed' : 'pending';
      expect(r.state, r.resource_id).toBe(want);
      if (touched.has(r.resource_id)) expect(h.downstream.state(r.resource_id)).toBe('active');
    }
  });
});

describe('halt on a missed deadline', () => {
  it('halts a wave still running after its deadline, and rolls back what it touched', async () => {
    // Wave 0: internal tenant 2 (4 items, ~0.4 s); wave 1: tenants 60-69 (40 items, ~4 s > 2 s).
    const ids = appsOf([2, ...range(60, 70)], APPS);
    h.downstream.hang(100);
    const plan = await submitAndStart(h, {
      ids,
      rollout: { bakeSeconds: 0, concurrency: 1, waves: ['100%'], waveDeadlineSeconds: 2 },
    });
    const halted = await waitForState(h, plan.id, ['rolling_back', 'rolled_back', 'completed', 'paused', 'halted']);
    h.downstream.hang(0);
    expect(['rolling_back', 'rolled_back']).toContain(halted.state);
    const end = await waitForState(h, plan.id, ['rolled_back']);
    expect(end.haltReason).toBe('wave 2 of 2 missed its deadline of 2s');
    const { touched } = await expectEverythingTouchedRestored(h, plan.id);
    expect(touched.size).toBeGreaterThan(4);
    expect(touched.size).toBeLessThan(ids.length);
  });

  it('still halts when Redis lost every queued job: the deadline lives in the state and the reconciler judges it', async () => {
    const ids = appsOf([3, ...range(70, 80)], APPS);
    h.downstream.hang(100);
    const plan = await submitAndStart(h, {
      ids,
      rollout: { bakeSeconds: 0, concurrency: 1, waves: ['100%'], waveDeadlineSeconds: 2 },
    });
    await until(async () => (await getOperation(h, plan.id)).currentWave === 1, 'wave 1 to start');
    // What a Redis restart without its data would do: no job of this operation is left queued.
    for (const name of ['control', 'items']) {
      const q = new Queue(name, { connection: { url: h.redisUrl }, prefix: h.prefix });
      try {
        await q.drain(true);
      } finally {
        await q.close();
      }
    }
    const halted = await waitForState(h, plan.id, ['rolling_back', 'rolled_back', 'completed', 'paused', 'halted']);
    h.downstream.hang(0);
    expect(['rolling_back', 'rolled_back']).toContain(halted.state);
    expect(halted.haltReason).toBe('wave 2 of 2 missed its deadline of 2s');
    await waitForState(h, plan.id, ['rolled_back']);
    await expectEverythingTouchedRestored(h, plan.id);
  });
});

describe('halt on an external signal', () => {
  it('halts during wave 2 on a support ticket, with overshoot bounded by the calls in flight, then rolls back', async () => {
    // Wave 0: internal tenant 1; wave 1: tenant 40; wave 2: tenants 41-49 (36 items); wave 3: 50-59.
    const ids = appsOf([1, ...range(40, 60)], APPS);
    const rollout = { bakeSeconds: 0, concurrency: 2, waves: ['1', '50%', '100%'] };
    h.downstream.hang(40); // every destructive call takes 40 ms: wave 2 lasts ~0.7 s
    const plan = await submitAndStart(h, { ids, rollout, haltPolicy: { onHalt: 'rollback' } });

    // Under way: running wave 2, and its first deletes have reached the downstream.
    const wave2Ids = new Set(appsOf(range(41, 50), APPS));
    let live = await getOperation(h, plan.id);
    await until(async () => {
      live = await getOperation(h, plan.id);
      const started = h.downstream.calls.some((c) => c.action === 'softDelete' && wave2Ids.has(c.resourceId!));
      return (live.state === 'running' && live.currentWave === 2 && started) || STOPPED.includes(live.state);
    }, 'wave 2 to be under way');
    expect(live.state).toBe('running');

    // Live view mid-wave: waves 0 and 1 done, wave 2 partly, wave 3 untouched.
    expect(live.waveProgress.map((w) => w.wave)).toEqual([0, 1, 2, 3]);
    expect(live.waveProgress[0]!.counts).toEqual({ done: 4 });
    expect(live.waveProgress[1]!.counts).toEqual({ done: 4 });
    expect(live.waveProgress[3]!.counts).toEqual({ pending: 40 });
    expect(Object.values(live.waveProgress[2]!.counts).reduce((a, b) => a + b, 0)).toBe(36);
    // Not settled yet, told apart from failures: wave 3's 40 and whatever of wave 2 is still out.
    expect(live.counts!.pending).toBeGreaterThanOrEqual(40);
    expect(live.counts!.pending).toBeLessThanOrEqual(40 + 36);
    expect(live.haltReason).toBeNull();

    const ticketTenant = tenantId(41);
    const sig = await command(h, 'requester', plan.id, 'signals', {
      kind: 'support_ticket',
      tenantId: ticketTenant,
      detail: 'ZD-1: apps missing',
    });
    const committed = Date.now();
    expect(sig.status, JSON.stringify(sig.body)).toBe(200);
    expect(['rolling_back', 'rolled_back']).toContain(sig.body.state);
    expect(sig.body.haltReason).toBe(`signal support_ticket for tenant ${ticketTenant}: ZD-1: apps missing`);

    const end = await waitForState(h, plan.id, ['rolled_back']);
    expect(end.currentWave).toBe(2);
    h.downstream.hang(0);

    const rows = await ledger(h, plan.id);
    const deletes = softDeletesOf(h, rows);
    const wave3 = tenantsOfWave(rows, 3);
    expect(deletes.filter((c) => wave3.has(c.tenantId!))).toEqual([]);
    // Whatever reached the downstream after the halt committed was already in flight.
    expect(softDeletesAfter(h, rows, committed).length).toBeLessThanOrEqual(rollout.concurrency * CHUNK_CONCURRENCY);
    const { touched } = await expectEverythingTouchedRestored(h, plan.id);
    expect(touched.size).toBeLessThan(ids.length);

    // The halt is on the record: the signal row and the audit trail.
    const after = await getOperation(h, plan.id);
    expect(after.haltReason).toContain('support_ticket');
    expect(after.waveProgress.find((w) => w.wave === 3)!.counts).toEqual({ pending: 40 });
    const audit = await request(h.app.server)
      .get(`/v1/audit?operationId=${plan.id}&limit=1000`)
      .set('authorization', h.auth('viewer'));
    expect(audit.status).toBe(200);
    const actions = (audit.body.items as { action: string }[]).map((a) => a.action);
    expect(actions).toEqual(expect.arrayContaining(['operation.halted', 'operation.rolled_back']));
    expect(
      await query(h.databaseUrl, 'SELECT kind, tenant_id FROM signals WHERE operation_id = $1', [plan.id]),
    ).toEqual([{ kind: 'support_ticket', tenant_id: ticketTenant }]);

    // And on /metrics (the API's registry: the signal's halt and the transitions it committed).
    const res = await request(h.app.server).get('/metrics').set('authorization', `Bearer ${METRICS_TOKEN}`);
    expect(res.status).toBe(200);
    expect(res.text).toMatch(/^blastgate_halts_total\{reason="signal"\} [1-9]/m);
    expect(res.text).toMatch(/^blastgate_operation_transitions_total\{state="running"\} [1-9]/m);
    expect(res.text).toMatch(/^blastgate_operation_transitions_total\{state="rolling_back"\} [1-9]/m);
  });
});
