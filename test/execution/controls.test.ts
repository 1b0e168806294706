// Operator controls on the real stack: pause stops deletions at once (beyond the calls in flight)
// and resume finishes the job with every item deleted exactly once; abort rolls back as the halt
// policy says; a completed operation can be rolled back in full; a global freeze pauses running
// operations and refuses start/resume until lifted; every command is refused for the wrong role.
import pg from 'pg';
import request from 'supertest';
import { signalTenantWarning } from '../../src/modules/execution/signal-tenant.ts';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Role } from '../../src/modules/auth/roles.ts';
import {
  buildExecHarness,
  getOperation,
  submitAndStart,
  until,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
  type Submitted,
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
} from '../support/exec-helpers.ts';
import { query, seedRegistry, tenantId } from '../support/seed.ts';

const APPS = 4;
const CHUNK_CONCURRENCY = 2;
const ROLLOUT = { bakeSeconds: 0, concurrency: 2, waves: ['100%'] }; // wave 0 internal, wave 1 the rest
const IN_FLIGHT = ROLLOUT.concurrency * CHUNK_CONCURRENCY;
const STOPPED = ['completed', 'halted', 'rolling_back', 'rolled_back', 'paused'];

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 100, appsPerSite: APPS, internalTenants: 8 });
  await useHttpAdapter(h);
});
afterAll(async () => {
  await h?.close();
});
beforeEach(() => h.downstream.reset());
afterEach(async () => {
  await request(h.app.server)
    .put('/v1/admin/freeze')
    .set('authorization', h.auth('admin'))
    .send({ frozen: false, reason: 'test cleanup' });
});

/** Starts an operation over slow deletes and returns once wave 1's deletes reach the downstream. */
async function startSlow(sites: number[], haltPolicy: Record<string, unknown> = {}) {
  h.downstream.hang(30);
  const ids = appsOf(sites, APPS);
  const plan = await submitAndStart(h, { ids, rollout: ROLLOUT, haltPolicy });
  const wave1 = new Set(appsOf(sites.slice(1), APPS));
  await until(async () => {
    const op = await getOperation(h, plan.id);
    if (STOPPED.includes(op.state)) throw new Error(`ended early: ${op.state}`);
    return (
      op.currentWave === 1 && h.downstream.calls.some((c) => c.action === 'softDelete' && wave1.has(c.resourceId!))
    );
  }, 'wave 1 to be under way');
  return { plan, ids };
}

/** Every item was soft-deleted exactly once: one call, one application, per item. */
async function expectDeletedExactlyOnce(plan: Submitted, ids: string[]) {
  const rows = await ledger(h, plan.id);
  expect(rows.map((r) => r.state)).toEqual(ids.map(() => 'done'));
  const deletes = softDeletesOf(h, rows);
  expect(deletes).toHaveLength(ids.length);
  expect(new Set(deletes.map((c) => c.resourceId))).toEqual(new Set(ids));
  expect(deletes.every((c) => c.status === 200)).toBe(true);
  for (const c of deletes) expect(h.downstream.appliedByKey.get(c.idempotencyKey!)).toBe(1);
  for (const id of ids) expect(h.downstream.state(id)).toBe('soft_deleted');
}

/** Waits until no item is claimed any more (the in-flight chunk has recorded), then asks the worker to reconcile. */
async function quiesce(opId: string) {
  await until(
    async () => (await ledger(h, opId)).every((r) => r.state !== 'claimed'),
    'in-flight items to be recorded',
  );
  for (const w of h.workers) await w.reconcile();
}

describe('pause and resume', () => {
  it('pauses before the next destructive call and resumes to completion, each item deleted exactly once', async () => {
    const { plan, ids } = await startSlow([0, ...range(10, 25)]);
    const paused = await command(h, 'operator', plan.id, 'pause', { reason: 'checking dashboards' });
    const committed = Date.now();
    expect(paused.status, JSON.stringify(paused.body)).toBe(200);
    expect(paused.body.state).toBe('paused');
    expect(paused.body.haltReason).toBe('checking dashboards');

    await quiesce(plan.id);
    const rows = await ledger(h, plan.id);
    const before = softDeletesOf(h, rows).length;
    expect(softDeletesAfter(h, rows, committed).length).toBeLessThanOrEqual(IN_FLIGHT);
    expect(before).toBeLessThan(ids.length);
    expect(rows.filter((r) => r.state === 'pending').length).toBeGreaterThan(0);
    // Still paused, and nothing more is sent even after the reconciler has looked.
    expect((await getOperation(h, plan.id)).state).toBe('paused');
    expect(softDeletesOf(h, rows).length).toBe(before);

    h.downstream.hang(0);
    const resumed = await command(h, 'operator', plan.id, 'resume', {});
    expect(resumed.status, JSON.stringify(resumed.body)).toBe(200);
    expect(resumed.body.state).toBe('running');
    // The answer says what this request did, apart from where the operation is when it is read.
    expect(resumed.body.command).toEqual({ action: 'resume', from: 'paused', to: 'running', changed: true });
    const twice = await command(h, 'operator', plan.id, 'pause', { reason: 'second look' });
    const again = await command(h, 'operator', plan.id, 'pause', { reason: 'double click' });
    expect(twice.body.command).toEqual({ action: 'pause', from: 'running', to: 'paused', changed: true });
    expect(again.status, JSON.stringify(again.body)).toBe(409);
    expect(again.body.code).toBe('INVALID_TRANSITION');
    await command(h, 'operator', plan.id, 'resume', {}).expect(200);
    expect((await waitForState(h, plan.id, ['completed', 'halted', 'rolled_back', 'paused'])).state).toBe('completed');
    await expectDeletedExactlyOnce(plan, ids);
  });

  it('keeps the reason given to start and resume in their audit events (the CLI requires one "kept in the audit log")', async () => {
    h.downstream.hang(30);
    const plan = await submitAndStart(h, { ids: appsOf([6, ...range(95, 100)], APPS), rollout: ROLLOUT }, false);
    await command(h, 'operator', plan.id, 'start', { reason: 'Change window open' }).expect(200);
    await command(h, 'operator', plan.id, 'pause', { reason: 'checking dashboards' }).expect(200);
    await command(h, 'operator', plan.id, 'resume', { reason: 'Dashboards are fine' }).expect(200);
    h.downstream.hang(0);
    await waitForState(h, plan.id, ['completed', 'halted', 'rolled_back', 'paused']);
    const audit = await request(h.app.server)
      .get(`/v1/audit?operationId=${plan.id}`)
      .set('authorization', h.auth('viewer'))
      .expect(200);
    const reasonOf = (action: string) =>
      (audit.body.items as { action: string; payload: { reason?: string } }[]).find((e) => e.action === action)?.payload
        .reason;
    expect(reasonOf('operation.started')).toBe('Change window open');
    expect(reasonOf('operation.paused')).toBe('checking dashboards');
    expect(reasonOf('operation.resumed')).toBe('Dashboards are fine');
  });

  it('survives a pause and an immediate resume while a chunk is in flight: completed, each item deleted exactly once', async () => {
    const { plan, ids } = await startSlow([5, ...range(85, 95)]);
    expect((await command(h, 'operator', plan.id, 'pause', { reason: 'blip' })).status).toBe(200);
    const resumed = await command(h, 'operator', plan.id, 'resume', {});
    expect(resumed.status, JSON.stringify(resumed.body)).toBe(200);
    h.downstream.hang(0);
    expect((await waitForState(h, plan.id, ['completed', 'halted', 'rolled_back', 'paused'])).state).toBe('completed');
    await expectDeletedExactlyOnce(plan, ids);
  });
});

describe('abort and rollback', () => {
  it('abort of a running operation rolls back as its halt policy says', async () => {
    const { plan, ids } = await startSlow([1, ...range(25, 40)], { onHalt: 'rollback' });
    const aborted = await command(h, 'operator', plan.id, 'abort', { reason: 'wrong list' });
    expect(aborted.status, JSON.stringify(aborted.body)).toBe(200);
    expect(['rolling_back', 'rolled_back']).toContain(aborted.body.state);
    h.downstream.hang(0);
    const end = await waitForState(h, plan.id, ['rolled_back']);
    // People read the token's name, not its UUID; the audit keeps the id for identity.
    expect(end.haltReason).toBe('aborted by test-operator: wrong list');
    const [halted] = await query<{ actor: string; payload: Record<string, unknown> }>(
      h.databaseUrl,
      `SELECT actor, payload FROM audit_events WHERE operation_id = $1 AND action = 'operation.halted'`,
      [plan.id],
    );
    expect(halted).toMatchObject({ actor: 'test-operator', payload: { actor: 'test-operator' } });
    expect(halted!.payload.tokenId).toMatch(/^[0-9a-f-]{36}$/);
    const { touched } = await expectEverythingTouchedRestored(h, plan.id);
    expect(touched.size).toBeLessThan(ids.length);
  });

  it('abort with onHalt pause halts and keeps what was done until a human decides', async () => {
    const { plan } = await startSlow([2, ...range(40, 50)], { onHalt: 'pause' });
    const aborted = await command(h, 'operator', plan.id, 'abort', { reason: 'stop here' });
    expect(aborted.status, JSON.stringify(aborted.body)).toBe(200);
    expect(aborted.body.state).toBe('halted');
    h.downstream.hang(0);
    await quiesce(plan.id);
    expect(h.downstream.calls.filter((c) => c.action === 'restore' && !isDrillCall(c))).toEqual([]);
    expect((await getOperation(h, plan.id)).state).toBe('halted');
    expect((await command(h, 'operator', plan.id, 'rollback', { reason: 'undo it' })).status).toBe(200);
    await waitForState(h, plan.id, ['rolled_back']);
    await expectEverythingTouchedRestored(h, plan.id);
  });

  it('a signal naming a tenant that is unknown, or not in the operation, is kept with a warning (a typo?)', async () => {
    const ids = appsOf([82, 83], APPS);
    const plan = await submitAndStart(h, { ids, rollout: ROLLOUT });
    expect((await waitForState(h, plan.id, ['completed', 'halted', 'rolled_back', 'paused'])).state).toBe('completed');
    const signal = (tenantId: string) =>
      command(h, 'requester', plan.id, 'signals', { kind: 'support_ticket', tenantId, detail: 'ZD-3' });
    const own = await signal(tenantId(82));
    expect(own.status, JSON.stringify(own.body)).toBe(200);
    expect(own.body.command.warning).toBeUndefined();
    const typo = await signal('tenant_0O061');
    expect(typo.status).toBe(200);
    expect(typo.body.command.warning).toBe(
      'tenant tenant_0O061 is not in the registry (a typo?); the signal was recorded all the same',
    );
    const other = await signal(tenantId(84));
    expect(other.body.command.warning).toBe(
      `tenant ${tenantId(84)} has no item in this operation (a typo?); the signal was recorded all the same`,
    );
    // Each one was recorded all the same.
    const kept = await query(h.databaseUrl, 'SELECT tenant_id FROM signals WHERE operation_id = $1', [plan.id]);
    expect(kept).toHaveLength(3);
    // Past the plan's top tenants, the ledger says whether the tenant has an item in it.
    const pool = new pg.Pool({ connectionString: h.databaseUrl, max: 1 });
    try {
      const top = range(100, 120).map((t) => ({ tenantId: tenantId(t) }));
      const op = { id: plan.id, plan: { tenants: { top } }, tenantCount: 22 };
      expect(await signalTenantWarning(pool, op, tenantId(83))).toBeNull();
      expect(await signalTenantWarning(pool, op, tenantId(84))).toContain('has no item in this operation');
    } finally {
      await pool.end();
    }
  });

  it('rolls back a completed operation in full', async () => {
    const ids = appsOf([3, ...range(50, 60)], APPS);
    const plan = await submitAndStart(h, { ids, rollout: ROLLOUT });
    expect((await waitForState(h, plan.id, ['completed', 'halted', 'rolled_back', 'paused'])).state).toBe('completed');
    await expectDeletedExactlyOnce(plan, ids);
    // A support ticket after the end is kept (it was refused as 'only a rollback is possible'),
    // and changes nothing: the operator who reads it decides.
    const late = await command(h, 'requester', plan.id, 'signals', {
      kind: 'support_ticket',
      detail: 'ZD-2 apps gone',
    });
    expect(late.status, JSON.stringify(late.body)).toBe(200);
    expect(late.body.state).toBe('completed');
    // Recorded, and the answer does not say it changed the operation (it read changed: true).
    expect(late.body.command).toMatchObject({ action: 'signals', from: 'completed', to: 'completed', changed: false });
    const kept = await query<{ kind: string; detail: string }>(
      h.databaseUrl,
      'SELECT kind, detail FROM signals WHERE operation_id = $1',
      [plan.id],
    );
    expect(kept).toEqual([{ kind: 'support_ticket', detail: 'ZD-2 apps gone' }]);
    const logged = await query<{ action: string }>(
      h.databaseUrl,
      `SELECT action FROM audit_events WHERE operation_id = $1 AND action = 'operation.signal_recorded'`,
      [plan.id],
    );
    expect(logged).toHaveLength(1);
    const rb = await command(h, 'operator', plan.id, 'rollback', { reason: 'customer asked' });
    expect(rb.status, JSON.stringify(rb.body)).toBe(200);
    expect((await waitForState(h, plan.id, ['rolled_back'])).state).toBe('rolled_back');
    const { touched } = await expectEverythingTouchedRestored(h, plan.id);
    expect(touched).toEqual(new Set(ids));
    // Terminal: nothing more can be done with it.
    expect((await command(h, 'operator', plan.id, 'resume', {})).status).toBe(409);
  });
});

describe('global freeze', () => {
  const setFreeze = (frozen: boolean, role: Role = 'admin') =>
    request(h.app.server)
      .put('/v1/admin/freeze')
      .set('authorization', h.auth(role))
      .send({ frozen, reason: frozen ? 'Incident INC-7' : 'INC-7 resolved' });

  it('pauses a running operation, refuses start and resume while frozen, and resumes to completion after', async () => {
    const { plan, ids } = await startSlow([4, ...range(60, 75)]);
    const other = await submitAndStart(h, { ids: appsOf(range(75, 78), APPS), rollout: ROLLOUT }, false);

    const frozen = await setFreeze(true);
    const committed = Date.now();
    expect(frozen.status, JSON.stringify(frozen.body)).toBe(200);
    expect(frozen.body.affected).toContain(plan.id);
    expect(
      (await request(h.app.server).get('/v1/admin/freeze').set('authorization', h.auth('viewer'))).body,
    ).toMatchObject({ frozen: true, reason: 'Incident INC-7' });
    const op = await getOperation(h, plan.id);
    expect(op.state).toBe('paused');
    expect(op.haltReason).toBe('global freeze: Incident INC-7');

    await quiesce(plan.id);
    const rows = await ledger(h, plan.id);
    expect(softDeletesAfter(h, rows, committed).length).toBeLessThanOrEqual(IN_FLIGHT);
    for (const [id, path] of [
      [plan.id, 'resume'],
      [other.id, 'start'],
    ] as const) {
      const r = await command(h, 'operator', id, path, {});
      expect(r.status, `${path}: ${JSON.stringify(r.body)}`).toBe(409);
      expect(r.body.code).toBe('FROZEN');
    }
    expect((await getOperation(h, other.id)).state).toBe('approved');

    h.downstream.hang(0);
    const lifted = await setFreeze(false);
    expect(lifted.status).toBe(200);
    expect((await getOperation(h, plan.id)).state).toBe('paused'); // lifting a freeze resumes nothing
    // …and says which operations stay paused, for an operator to resume (it said nothing: a trial).
    expect(lifted.body.stillPaused).toContain(plan.id);
    expect(lifted.body.stillPaused).not.toContain(other.id);
    expect((await command(h, 'operator', plan.id, 'resume', {})).status).toBe(200);
    expect((await waitForState(h, plan.id, ['completed', 'halted', 'rolled_back', 'paused'])).state).toBe('completed');
    await expectDeletedExactlyOnce(plan, ids);
    expect((await command(h, 'operator', other.id, 'start', {})).status).toBe(200);
    expect((await waitForState(h, other.id, ['completed', 'halted', 'rolled_back', 'paused'])).state).toBe('completed');
  });

  it('leaves the way back open: a rollback asked for while frozen, and one running when the freeze came, both finish', async () => {
    const done = await submitAndStart(h, { ids: appsOf([78], APPS), rollout: ROLLOUT });
    const running = await submitAndStart(h, { ids: appsOf([79], APPS), rollout: ROLLOUT });
    for (const op of [done, running])
      expect((await waitForState(h, op.id, ['completed', 'halted', 'rolled_back', 'paused'])).state).toBe('completed');
    h.downstream.hang(300);
    expect((await command(h, 'operator', running.id, 'rollback', { reason: 'wrong apps' })).status).toBe(200);
    expect((await setFreeze(true)).status).toBe(200);
    expect((await command(h, 'operator', done.id, 'rollback', { reason: 'wrong apps too' })).status).toBe(200);
    h.downstream.hang(0);
    for (const op of [done, running])
      expect((await waitForState(h, op.id, ['rolled_back', 'rollback_incomplete'], 60_000)).state).toBe('rolled_back');
  });

  it('only an admin may set or lift it', async () => {
    for (const role of ['viewer', 'requester', 'approver', 'operator'] as const) {
      const r = await setFreeze(true, role);
      expect(r.status, role).toBe(403);
    }
    expect(
      (await request(h.app.server).get('/v1/admin/freeze').set('authorization', h.auth('viewer'))).body.frozen,
    ).toBe(false);
  });
});

describe('command roles', () => {
  it('refuses every command to the wrong role and changes nothing', async () => {
    const planned = await submitAndStart(h, { ids: appsOf([80], APPS), rollout: ROLLOUT }, false);
    // submitAndStart approved it; a second plan stays planned for the approve checks.
    const fresh = await request(h.app.server)
      .post('/v1/operations')
      .set('authorization', h.auth('requester'))
      .send({ targetType: 'app', reason: 'roles', ticket: 'CHG-2', ids: appsOf([81], APPS), rollout: ROLLOUT });
    expect(fresh.status).toBe(201);
    const bodies: Record<string, Record<string, unknown>> = {
      approve: { planHash: fresh.body.planHash },
      start: {},
      pause: { reason: 'no' },
      resume: {},
      abort: { reason: 'no' },
      rollback: { reason: 'no' },
      signals: { kind: 'support_ticket' },
    };
    const refusals: [Role, string[]][] = [
      ['viewer', Object.keys(bodies)],
      ['requester', ['start', 'pause', 'resume', 'abort', 'rollback']],
      ['approver', ['start', 'pause', 'resume', 'abort', 'rollback']],
      ['operator', ['approve']],
    ];
    for (const [role, commands] of refusals) {
      for (const c of commands) {
        const id = c === 'approve' ? (fresh.body.id as string) : planned.id;
        const r = await command(h, role, id, c, bodies[c]);
        expect(r.status, `${role} ${c}: ${JSON.stringify(r.body)}`).toBe(403);
        expect(r.body.code).toBe('FORBIDDEN');
      }
    }
    expect((await getOperation(h, planned.id)).state).toBe('approved');
    expect((await getOperation(h, fresh.body.id as string)).state).toBe('planned');
    // The right roles are accepted.
    expect((await command(h, 'approver', fresh.body.id as string, 'approve', bodies.approve)).status).toBe(200);
    expect((await command(h, 'operator', planned.id, 'abort', { reason: 'not needed' })).body.state).toBe('cancelled');
  });
});
