// The edges an operator reaches in the first hour, on the real stack (real workers, a real
// downstream over HTTP): two operations on the same resources, a plan that sat too long or went
// stale, a type whose stored adapter no longer works, rollbacks that cannot restore everything,
// an operation that stops making progress, and a freeze that must show on every live operation.
import request from 'supertest';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  buildExecHarness,
  getOperation,
  submitAndStart,
  until,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { appsOf, command, ledger, waitForWaiting } from '../support/exec-helpers.ts';
import { readLive } from '../../src/modules/events/feed.ts';
import { query, seedRegistry, tenantId } from '../support/seed.ts';
import { moveClass, recordMoves } from '../../src/modules/execution/wave-moves.ts';
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import pg from 'pg';
import { LOCK_SESSIONS } from '../../src/modules/execution/exclusive.ts';
import { QUEUE_NAMES } from '../../src/modules/execution/queues.ts';
import { RECHECK_MS } from '../../src/modules/execution/protection-recheck.ts';
import { BATCH_BUDGET_MS } from '../../src/modules/execution/rollback.ts';
import { noteStoppedHolds } from '../../src/modules/execution/stopped-holds.ts';
import { createRedis } from '../../src/plugins/redis.ts';

const APPS = 4;
const ROLLOUT = { bakeSeconds: 0, concurrency: 2, waves: ['100%'] };
const FAST_HALT = { probe: 'optional' };
let nextSite = 10;
/** Sites no other test in this file uses (resource locks make overlaps a different test). */
const freshSites = (n: number) => Array.from({ length: n }, () => nextSite++);

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 200, appsPerSite: APPS, internalTenants: 2 });
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

const submit = (ids: string[], extra: Record<string, unknown> = {}) =>
  request(h.app.server)
    .post('/v1/operations')
    .set('authorization', h.auth('requester'))
    .send({ targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-9', ids, rollout: ROLLOUT, ...extra });
const audit = (opId: string) =>
  query<{ action: string; payload: Record<string, unknown> }>(
    h.databaseUrl,
    'SELECT action, payload FROM audit_events WHERE operation_id = $1 ORDER BY seq',
    [opId],
  );

describe('two operations on the same resources', () => {
  it('rejects the second plan as in_flight, naming the operation that holds them, until the first ends', async () => {
    const ids = appsOf(freshSites(3), APPS);
    const first = await submit(ids).expect(201);
    const second = await submit([...ids.slice(4, 8), ...appsOf(freshSites(1), APPS)]).expect(422);
    expect(second.body.details.counts).toMatchObject({ ok: 4, in_flight: 4 });
    expect(second.body.details.offenders.in_flight).toHaveLength(4);
    for (const o of second.body.details.offenders.in_flight) expect(o.heldBy).toBe(first.body.id);
    const report = await request(h.app.server)
      .get(`/v1/operations/${second.body.details.operationId}/report?class=in_flight`)
      .set('authorization', h.auth('viewer'))
      .expect(200);
    expect(report.body.items.map((i: { heldBy: string }) => i.heldBy)).toEqual(Array(4).fill(first.body.id));
    // A dry run shows the same, and writes nothing.
    const dry = await submit(ids, { dryRun: true }).expect(422);
    expect(dry.body.details.counts.in_flight).toBe(ids.length);

    await command(h, 'operator', first.body.id, 'abort', { reason: 'wrong list' }).expect(200);
    expect((await getOperation(h, first.body.id)).state).toBe('cancelled');
    await submit(ids).expect(201);
  });

  it('lets exactly one of many concurrent plans on the same resources through', async () => {
    const ids = appsOf(freshSites(5), APPS);
    const results = await Promise.all(Array.from({ length: 8 }, () => submit(ids)));
    const statuses = results.map((r) => r.status).sort();
    expect(statuses).toEqual([201, 422, 422, 422, 422, 422, 422, 422]);
    const winner = results.find((r) => r.status === 201)!.body.id as string;
    for (const r of results.filter((x) => x.status === 422)) {
      expect(r.body.details.counts).toMatchObject({ ok: 0, in_flight: ids.length });
      expect(r.body.details.offenders.in_flight[0].heldBy).toBe(winner);
    }
  });
});

describe('plans that sat too long or went stale', () => {
  it('expires a plan past its TTL (the reconciler sees the clock), releases its resources and refuses its start', async () => {
    const ids = appsOf(freshSites(2), APPS);
    const op = await submit(ids).expect(201);
    expect(Date.parse(op.body.expiresAt) - Date.now()).toBeGreaterThan(86_000_000); // 24 h by default
    await command(h, 'approver', op.body.id, 'approve', { planHash: op.body.planHash }).expect(200);
    // As if the TTL had passed: the plan's expiry time is now behind us.
    await query(h.databaseUrl, `UPDATE operations SET expires_at = now() - interval '1 second' WHERE id = $1`, [
      op.body.id,
    ]);
    const refused = await command(h, 'operator', op.body.id, 'start').expect(409);
    expect(refused.body.code).toMatch(/OPERATION_EXPIRED|INVALID_TRANSITION/);
    const expired = await waitForState(h, op.body.id, ['expired']);
    // It still says when it expired (it read null once expired: a trial).
    expect(Date.parse((expired as { expiresAt?: string }).expiresAt ?? '')).toBeLessThan(Date.now());
    expect((await audit(op.body.id)).map((a) => a.action)).toContain('operation.expired');
    await submit(ids).expect(201);
    expect(h.downstream.destructiveCalls()).toHaveLength(0);
  });

  it('refuses to start a plan whose resources changed in the registry since it was approved (409 PLAN_STALE)', async () => {
    const sites = freshSites(4);
    const ids = appsOf(sites, APPS);
    const op = await submit(ids).expect(201);
    await command(h, 'approver', op.body.id, 'approve', { planHash: op.body.planHash }).expect(200);
    const [moved, deleted, guarded] = [ids[0]!, ids[5]!, ids[9]!];
    // Moved and protected at once: both are said (only the move was, and putting the tenant back
    // was refused again for the protection: a trial).
    await query(h.databaseUrl, `UPDATE resources SET tenant_id = $2, protected = true WHERE id = $1`, [
      moved,
      tenantId(sites[3]!),
    ]);
    await query(h.databaseUrl, `UPDATE resources SET state = 'soft_deleted' WHERE id = $1`, [deleted]);
    await query(h.databaseUrl, `UPDATE resources SET protected = true WHERE id = $1`, [guarded]);
    const res = await command(h, 'operator', op.body.id, 'start').expect(409);
    expect(res.body.code).toBe('PLAN_STALE');
    expect(res.body.details.total).toBe(3);
    expect(res.body.details.changed.map((c: { resourceId: string }) => c.resourceId).sort()).toEqual(
      [moved, deleted, guarded].sort(),
    );
    expect(res.body.details.changed.find((c: { resourceId: string }) => c.resourceId === moved).now.tenantId).toBe(
      tenantId(sites[3]!),
    );
    // Each says what changed, in words; the message says it of the first.
    const reasons = Object.fromEntries(
      res.body.details.changed.map((c: { resourceId: string; reason: string }) => [c.resourceId, c.reason]),
    );
    expect(reasons).toEqual({
      [moved]: `it belongs to tenant ${tenantId(sites[3]!)} now, not ${tenantId(sites[0]!)}; it is protected now`,
      [deleted]: 'it is soft_deleted now',
      [guarded]: 'it is protected now',
    });
    expect(res.body.message).toContain(
      `(e.g. ${res.body.details.changed[0].resourceId}: ${res.body.details.changed[0].reason})`,
    );
    const after = await getOperation(h, op.body.id);
    expect(after.state).toBe('approved');
    // Still `approved`, and it can never start: the view says why (it said nothing: a trial).
    expect(after.refused).toMatchObject({ command: 'start', code: 'PLAN_STALE', message: res.body.message });
    expect(Date.parse(after.refused!.at)).toBeGreaterThan(0);
    expect(h.downstream.destructiveCalls()).toHaveLength(0);
    // The next transition clears it.
    await command(h, 'operator', op.body.id, 'abort', { reason: 'stale plan' }).expect(200);
    const aborted = await getOperation(h, op.body.id);
    expect(aborted.state).toBe('cancelled');
    expect(aborted.refused).toBeNull();
  });

  it('refuses to start a plan whose IDs its type no longer matches (idPattern redeclared since): PLAN_STALE', async () => {
    const [site] = freshSites(1);
    const ids = appsOf([site!], APPS);
    const op = await submit(ids).expect(201);
    await command(h, 'approver', op.body.id, 'approve', { planHash: op.body.planHash }).expect(200);
    // Tightened to the first two apps of each site (a trial's redeclaration left a planned delete running).
    await query(h.databaseUrl, `UPDATE resource_types SET id_pattern = '^app_[0-9]+_0[01]$' WHERE name = 'app'`);
    try {
      const res = await command(h, 'operator', op.body.id, 'start').expect(409);
      expect(res.body.code).toBe('PLAN_STALE');
      const changed = res.body.details.changed as { resourceId: string; now: Record<string, unknown> }[];
      expect(changed.map((c) => c.resourceId).sort()).toEqual(ids.slice(2).sort());
      expect(changed[0]!.now).toMatchObject({ matchesIdPattern: false, idPattern: '^app_[0-9]+_0[01]$' });
    } finally {
      await query(h.databaseUrl, `UPDATE resource_types SET id_pattern = '^app_[0-9_]+$' WHERE name = 'app'`);
    }
    expect((await getOperation(h, op.body.id)).state).toBe('approved');
    expect(h.downstream.destructiveCalls()).toHaveLength(0);
  });
});

describe('a resource protected while the operation runs', () => {
  it('is left alone: its item fails saying so, never marked or sent, and the rest runs', async () => {
    const sites = freshSites(3);
    const ids = appsOf(sites, APPS);
    const op = await submit(ids, {
      rollout: { bakeSeconds: 2, concurrency: 2, waves: ['1', '100%'] },
      haltPolicy: { ...FAST_HALT, maxFailureRate: 0.5, onHalt: 'pause' },
    }).expect(201);
    await command(h, 'approver', op.body.id, 'approve', { planHash: op.body.planHash }).expect(200);
    // The plan kept the snapshot its chunks compare with (chunk-guards.ts refuseProtected): the
    // mark below is a change since it, so the last wave's chunk reads protection again.
    const [kept] = await query<{ seen: string | null }>(
      h.databaseUrl,
      'SELECT protection_seen AS seen FROM operations WHERE id = $1',
      [op.body.id],
    );
    expect(kept!.seen).toMatch(/^\d+:\d+:/);
    // One app of the last wave's tenants (waves go by tenant id at equal sizes), protected (as an
    // import would) right after the start, seconds before its wave runs (after the 2 s bake).
    const guarded = appsOf([sites[2]!], APPS)[1]!;
    await command(h, 'operator', op.body.id, 'start').expect(200);
    await query(h.databaseUrl, `UPDATE resources SET protected = true WHERE id = $1`, [guarded]);
    const end = await waitForState(h, op.body.id, ['completed', 'completed_with_failures', 'paused', 'rolled_back']);
    expect(end.state).toBe('completed_with_failures');
    const rows = await query<{ resource_id: string; state: string; last_error: string | null; permanent: boolean }>(
      h.databaseUrl,
      'SELECT resource_id, state, last_error, permanent FROM operation_items WHERE operation_id = $1',
      [op.body.id],
    );
    const mine = rows.find((r) => r.resource_id === guarded)!;
    expect(mine).toMatchObject({ state: 'failed', permanent: true });
    expect(mine.last_error).toContain('protected');
    expect(rows.filter((r) => r.state === 'done')).toHaveLength(ids.length - 1);
    expect(h.downstream.destructiveCalls().filter((c) => c.resourceId === guarded)).toEqual([]);
  }, 60_000);
});

/**
 * Three sites' apps in waves "1" then "100%" (2 s bake between), started; the last site's tenant
 * is then protected (as an import would), before its wave runs. Unprotect `guarded` when done.
 */
/** One wave, one chunk, one call at a time (the chunk reads protection before its first call), run to its end. */
async function runOneCallAtATime(ids: string[]) {
  const op = await submit(ids, {
    rollout: { bakeSeconds: 0, concurrency: 1, waves: ['100%'] },
    haltPolicy: { ...FAST_HALT, maxFailureRate: 1 },
  }).expect(201);
  await command(h, 'approver', op.body.id, 'approve', { planHash: op.body.planHash }).expect(200);
  await command(h, 'operator', op.body.id, 'start').expect(200);
  const end = await waitForState(h, op.body.id, ['completed', 'completed_with_failures', 'paused', 'halted']);
  return { id: op.body.id as string, end };
}

async function protectLastTenantMidRun(maxFailureRate: number) {
  const sites = freshSites(3);
  const ids = appsOf(sites, APPS);
  const op = await submit(ids, {
    rollout: { bakeSeconds: 2, concurrency: 2, waves: ['1', '100%'] },
    haltPolicy: { ...FAST_HALT, maxFailureRate, onHalt: 'pause' },
  }).expect(201);
  await command(h, 'approver', op.body.id, 'approve', { planHash: op.body.planHash }).expect(200);
  const guarded = tenantId(sites[2]!);
  await command(h, 'operator', op.body.id, 'start').expect(200);
  await query(h.databaseUrl, `UPDATE tenants SET protected = true WHERE id = $1`, [guarded]);
  return { op, ids, guarded };
}

describe('a tenant protected while the operation runs', () => {
  it("is left alone: its items fail saying so, none is sent, and other tenants' items run", async () => {
    const { op, ids, guarded } = await protectLastTenantMidRun(1);
    try {
      const end = await waitForState(h, op.body.id, ['completed', 'completed_with_failures', 'paused', 'halted']);
      expect(end.state).toBe('completed_with_failures');
      const rows = await query<{ resource_id: string; tenant_id: string; state: string; last_error: string | null }>(
        h.databaseUrl,
        'SELECT resource_id, tenant_id, state, last_error FROM operation_items WHERE operation_id = $1',
        [op.body.id],
      );
      const theirs = rows.filter((r) => r.tenant_id === guarded);
      expect(theirs).toHaveLength(APPS);
      for (const r of theirs) {
        expect(r.state).toBe('failed');
        expect(r.last_error).toContain(`its tenant ${guarded} is protected`);
      }
      expect(rows.filter((r) => r.state === 'done')).toHaveLength(ids.length - APPS);
      const sent = new Set(h.downstream.destructiveCalls().map((c) => c.resourceId));
      expect(theirs.filter((r) => sent.has(r.resource_id))).toEqual([]);
    } finally {
      await query(h.databaseUrl, `UPDATE tenants SET protected = false WHERE id = $1`, [guarded]);
    }
  }, 60_000);

  it('a resume that halts again on the refused items says why again: the halt reason keeps the last error', async () => {
    const { op, guarded } = await protectLastTenantMidRun(0.1);
    try {
      const first = await waitForState(h, op.body.id, ['halted', 'completed', 'completed_with_failures']);
      expect(first.state).toBe('halted');
      expect(first.haltReason).toContain(`its tenant ${guarded} is protected`);
      // The refusals are permanent: a resume does not send them again, and the wave halts again
      // on them. It said only "item failure rate 50% over 10%", and the operator lost the cause.
      await command(h, 'operator', op.body.id, 'resume').expect(200);
      const halts = async () => (await audit(op.body.id)).filter((a) => a.action === 'operation.halted').length;
      await until(async () => (await halts()) === 2, 'the second halt', 20_000);
      const again = await getOperation(h, op.body.id);
      expect(again.state).toBe('halted');
      expect(again.haltReason).toContain('failure rate');
      expect(again.haltReason).toContain(`its tenant ${guarded} is protected`);
    } finally {
      await query(h.databaseUrl, `UPDATE tenants SET protected = false WHERE id = $1`, [guarded]);
    }
  }, 60_000);

  it('is left alone when marked while its chunk is sending (after the chunk read the protection)', async () => {
    // One wave, one chunk, one call at a time: the chunk read protection before its first call.
    const sites = freshSites(2);
    const ids = appsOf(sites, APPS);
    const [guardedApp, guardedTenant] = [ids[2]!, tenantId(sites[1]!)];
    let marked = false;
    h.downstream.beforeApply(async () => {
      if (marked) return;
      marked = true;
      await query(h.databaseUrl, `UPDATE resources SET protected = true WHERE id = $1`, [guardedApp]);
      await query(h.databaseUrl, `UPDATE tenants SET protected = true WHERE id = $1`, [guardedTenant]);
      // Longer than the protection a call may be checked against is old (RECHECK_MS).
      await new Promise((r) => setTimeout(r, RECHECK_MS + 200));
    });
    try {
      const op = await runOneCallAtATime(ids);
      expect(op.end.state).toBe('completed_with_failures');
      const sent = new Set(h.downstream.destructiveCalls().map((c) => c.resourceId));
      const refused = [guardedApp, ...appsOf([sites[1]!], APPS)];
      expect(refused.filter((id) => sent.has(id))).toEqual([]);
      const rows = await ledger(h, op.id);
      for (const id of refused) expect(rows.find((r) => r.resource_id === id)!.state).toBe('failed');
      // Refused before the call: not marked as possibly deleted, so no rollback restores them.
      const marks = await query(
        h.databaseUrl,
        'SELECT resource_id FROM operation_items WHERE operation_id = $1 AND executed_seq IS NOT NULL AND resource_id = ANY($2)',
        [op.id, refused],
      );
      expect(marks).toEqual([]);
    } finally {
      h.downstream.beforeApply(undefined);
      await query(h.databaseUrl, `UPDATE resources SET protected = false WHERE id = $1`, [guardedApp]);
      await query(h.databaseUrl, `UPDATE tenants SET protected = false WHERE id = $1`, [guardedTenant]);
    }
  }, 60_000);

  it('is left alone when moved into a tenant protected all along, and its error does not say the tenant was just marked', async () => {
    const [site, shelter] = freshSites(2);
    const ids = appsOf([site!], APPS);
    const movedApp = ids[2]!;
    const sheltered = tenantId(shelter!);
    await query(h.databaseUrl, `UPDATE tenants SET protected = true WHERE id = $1`, [sheltered]);
    let moved = false;
    h.downstream.beforeApply(async () => {
      if (moved) return;
      moved = true;
      await query(h.databaseUrl, `UPDATE resources SET tenant_id = $2 WHERE id = $1`, [movedApp, sheltered]);
      await new Promise((r) => setTimeout(r, RECHECK_MS + 200));
    });
    try {
      const op = await runOneCallAtATime(ids);
      expect(op.end.state).toBe('completed_with_failures');
      expect(h.downstream.destructiveCalls().some((c) => c.resourceId === movedApp)).toBe(false);
      const [row] = await query<{ state: string; last_error: string }>(
        h.databaseUrl,
        'SELECT state, last_error FROM operation_items WHERE operation_id = $1 AND resource_id = $2',
        [op.id, movedApp],
      );
      expect(row!.state).toBe('failed');
      expect(row!.last_error).toContain(`its tenant ${sheltered} is protected`);
      expect(row!.last_error).toContain('or the resource moved into it');
    } finally {
      h.downstream.beforeApply(undefined);
      await query(h.databaseUrl, `UPDATE tenants SET protected = false WHERE id = $1`, [sheltered]);
    }
  }, 60_000);

  it("a plan's break-glass covers the tenants protected at the plan, not another protected since", async () => {
    const sites = freshSites(3);
    const [covered, later] = [tenantId(sites[1]!), tenantId(sites[2]!)];
    await query(h.databaseUrl, `UPDATE tenants SET protected = true WHERE id = $1`, [covered]);
    try {
      const ids = appsOf(sites, APPS);
      const rollout = { bakeSeconds: 2, concurrency: 2, waves: ['1', '100%'] };
      const halt = { ...FAST_HALT, maxFailureRate: 1, onHalt: 'pause' };
      // Protected between the approvals and the start: the start refuses the plan as stale.
      const first = await submitAndStart(h, { ids, rollout, haltPolicy: halt }, false);
      await query(h.databaseUrl, `UPDATE tenants SET protected = true WHERE id = $1`, [later]);
      const stale = await command(h, 'operator', first.id, 'start').expect(409);
      expect(stale.body.code).toBe('PLAN_STALE');
      expect(stale.body.message).toContain(
        `its tenant ${later} is protected now (the plan's break-glass did not cover it)`,
      );
      expect(stale.body.details.changed.map((c: { now: { tenantId: string } }) => c.now.tenantId)).toEqual(
        appsOf([sites[2]!], APPS).map(() => later),
      );
      await command(h, 'operator', first.id, 'abort', { reason: 'stale' }).expect(200);
      await query(h.databaseUrl, `UPDATE tenants SET protected = false WHERE id = $1`, [later]);
      // Protected while it runs (during the canary's bake): that tenant's items are left.
      const op = await submitAndStart(h, { ids, rollout, haltPolicy: halt });
      await query(h.databaseUrl, `UPDATE tenants SET protected = true WHERE id = $1`, [later]);
      const end = await waitForState(h, op.id, ['completed', 'completed_with_failures', 'paused', 'halted']);
      expect(end.state).toBe('completed_with_failures');
      const rows = await query<{ tenant_id: string; state: string; last_error: string | null }>(
        h.databaseUrl,
        'SELECT tenant_id, state, last_error FROM operation_items WHERE operation_id = $1',
        [op.id],
      );
      for (const r of rows) {
        if (r.tenant_id === later) expect(r.last_error).toContain(`its tenant ${later} is protected`);
        expect([r.tenant_id, r.state]).toEqual([r.tenant_id, r.tenant_id === later ? 'failed' : 'done']);
      }
    } finally {
      await query(h.databaseUrl, `UPDATE tenants SET protected = false WHERE id = ANY($1)`, [[covered, later]]);
    }
  }, 60_000);

  it('runs when the tenant was protected at the plan and break-glass approval covered it', async () => {
    const sites = freshSites(2);
    const guarded = tenantId(sites[1]!);
    await query(h.databaseUrl, `UPDATE tenants SET protected = true WHERE id = $1`, [guarded]);
    try {
      const op = await submitAndStart(h, { ids: appsOf(sites, APPS), rollout: ROLLOUT, haltPolicy: FAST_HALT });
      const end = await waitForState(h, op.id, ['completed', 'completed_with_failures', 'paused', 'halted']);
      expect(end.state).toBe('completed');
      const theirs = new Set(appsOf([sites[1]!], APPS));
      expect(h.downstream.destructiveCalls().filter((c) => theirs.has(c.resourceId ?? ''))).toHaveLength(APPS);
    } finally {
      await query(h.databaseUrl, `UPDATE tenants SET protected = false WHERE id = $1`, [guarded]);
    }
  }, 60_000);
});

describe('an operation that records no outcome', () => {
  it('says since when (waiting: progress) in its view and its stream, until an outcome lands', async () => {
    h.downstream.latency(2_000);
    try {
      const ids = appsOf(freshSites(1), APPS);
      const op = await submit(ids, {
        rollout: { bakeSeconds: 0, concurrency: 1, waves: ['100%'], restoreDrill: false },
        haltPolicy: FAST_HALT,
      }).expect(201);
      await command(h, 'approver', op.body.id, 'approve', { planHash: op.body.planHash }).expect(200);
      await command(h, 'operator', op.body.id, 'start').expect(200);
      await until(() => h.downstream.calls.length > 0, 'the first call to be out');
      // As if its last outcome were a minute old (a worker died holding the claims, a downstream hangs).
      await query(h.databaseUrl, `UPDATE operations SET progress_at = now() - interval '60 seconds' WHERE id = $1`, [
        op.body.id,
      ]);
      await query(
        h.databaseUrl,
        `UPDATE operation_waves SET progress_at = now() - interval '60 seconds' WHERE operation_id = $1`,
        [op.body.id],
      );
      const stuck = await request(h.app.server)
        .get(`/v1/operations/${op.body.id}`)
        .set('authorization', h.auth('viewer'));
      expect(stuck.body.state).toBe('running');
      expect(stuck.body.waiting, JSON.stringify(stuck.body)).toMatchObject({ on: 'progress' });
      expect(Date.now() - Date.parse(stuck.body.waiting.since)).toBeGreaterThanOrEqual(59_000);
      expect(stuck.body.waiting.detail).toContain('BLASTGATE_WORKER_LOCK_MS');
      expect((await readLive(h.app.db.pool, op.body.id, h.app.queueHolds))?.waiting).toEqual(stuck.body.waiting);
      // The first delete lands (recorded while the others are out): it moves again, and says nothing.
      let moving: request.Response | undefined;
      await until(
        async () => {
          moving = await request(h.app.server)
            .get(`/v1/operations/${op.body.id}`)
            .set('authorization', h.auth('viewer'));
          return (moving.body.counts?.byState?.done ?? 0) > 0;
        },
        'an outcome to be recorded',
        30_000,
      );
      expect(moving!.body.state).toBe('running');
      expect(moving!.body.waiting).toBeNull();
      expect((await waitForState(h, op.body.id, ['completed', 'halted', 'paused', 'rolled_back'])).state).toBe(
        'completed',
      );
    } finally {
      h.downstream.latency(0);
    }
  }, 60_000);
});

describe('no operation can wedge', () => {
  it('fails the items of a type whose stored adapter no longer works, with the reason, and ends', async () => {
    const ids = appsOf(freshSites(2), APPS);
    // A row written before adapters were validated on declaration (or edited by hand), there when
    // the plan was made (changed after it, the start is refused: ADAPTER_CHANGED).
    await query(
      h.databaseUrl,
      `UPDATE resource_types SET adapter = '{"kind":"http","baseUrl":"not a url"}' WHERE name = 'app'`,
    );
    try {
      const op = await submit(ids, { haltPolicy: FAST_HALT }).expect(201);
      await command(h, 'approver', op.body.id, 'approve', { planHash: op.body.planHash }).expect(200);
      await command(h, 'operator', op.body.id, 'start').expect(200);
      const end = await waitForState(
        h,
        op.body.id,
        ['rolled_back', 'rollback_incomplete', 'completed_with_failures'],
        30_000,
      );
      // Nothing was sent, so there is nothing to restore: rolled back is the truth.
      expect(end.state).toBe('rolled_back');
      expect(end.haltReason).toMatch(/consecutive item failures|failure rate/);
      const rows = await query<{ state: string; last_error: string | null; attempts: number }>(
        h.databaseUrl,
        'SELECT state, last_error, attempts FROM operation_items WHERE operation_id = $1',
        [op.body.id],
      );
      expect(rows.length).toBeGreaterThan(0);
      for (const r of rows) {
        if (r.state === 'pending') continue; // never claimed: the halt came first
        expect(r.state).toBe('failed');
        expect(r.last_error).toMatch(/adapter for type app unavailable: .*baseUrl/);
      }
      expect(h.downstream.destructiveCalls()).toHaveLength(0);
    } finally {
      await useHttpAdapter(h);
    }
  });

  it('halts an operation that makes no progress for stallSeconds, with reason stalled', async () => {
    const ids = appsOf(freshSites(2), APPS);
    h.downstream.hang(60_000); // every call hangs; the adapter gives up after its timeout and retries
    const plan = await submitAndStart(h, {
      ids,
      rollout: { ...ROLLOUT, waveDeadlineSeconds: 600 },
      haltPolicy: { ...FAST_HALT, stallSeconds: 10, onHalt: 'pause' },
    });
    const stopped = await waitForState(h, plan.id, ['halted', 'rolling_back', 'completed'], 40_000);
    expect(stopped.state).toBe('halted');
    expect(stopped.haltReason).toMatch(/^stalled: no progress for 1\ds \(limit 10s\)/);
    h.downstream.hang(0);
    // The way out: the operator rolls back what may have been touched.
    await command(h, 'operator', plan.id, 'rollback', { reason: 'stalled' }).expect(200);
    await waitForState(h, plan.id, ['rolled_back', 'rollback_incomplete'], 60_000);
  });
});

describe('terminal states tell the truth', () => {
  it('an erasure is never rolled back to a state that reads as success: 409, the operation as it was', async () => {
    await query(h.databaseUrl, `UPDATE resource_types SET adapter = '{"kind":"registry"}' WHERE name = 'app'`);
    try {
      const ids = appsOf(freshSites(2), APPS);
      // mode "hard" is gone: a permanent delete is a compliance erasure, by name.
      const hard = await request(h.app.server)
        .post('/v1/operations')
        .set('authorization', h.auth('requester'))
        .send({ targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-1', ids, mode: 'hard' });
      expect([hard.status, hard.body.code]).toEqual([422, 'HARD_MODE_REPLACED']);
      const plan = await submitAndStart(h, { ids, erasure: true, rollout: ROLLOUT, haltPolicy: FAST_HALT });
      await waitForState(h, plan.id, ['completed']);
      const before = await request(h.app.server)
        .get(`/v1/operations/${plan.id}`)
        .set('authorization', h.auth('viewer'))
        .expect(200);
      const r = await command(h, 'operator', plan.id, 'rollback', { reason: 'we need them back' });
      expect([r.status, r.body.code]).toEqual([409, 'ROLLBACK_NOT_SUPPORTED']);
      const after = await request(h.app.server)
        .get(`/v1/operations/${plan.id}`)
        .set('authorization', h.auth('viewer'))
        .expect(200);
      expect(after.body.state).toBe('completed');
      expect(after.body.updatedAt).toBe(before.body.updatedAt);
      expect((await ledger(h, plan.id)).every((x) => x.state === 'done')).toBe(true);
    } finally {
      await useHttpAdapter(h);
    }
  });

  it('retries failed restores with backoff: two failures, then the downstream recovers → rolled_back', async () => {
    const ids = appsOf(freshSites(1), APPS);
    const plan = await submitAndStart(h, { ids, rollout: ROLLOUT, haltPolicy: FAST_HALT });
    await waitForState(h, plan.id, ['completed']);
    h.downstream.failOnly(['restore']);
    h.downstream.failNext(2 * ids.length, 503);
    await command(h, 'operator', plan.id, 'rollback', { reason: 'undo' }).expect(200);
    const end = await waitForState(h, plan.id, ['rolled_back', 'rollback_incomplete'], 30_000);
    expect(end.state).toBe('rolled_back');
    for (const id of ids) expect(h.downstream.state(id)).toBe('active');
    const attempts = await query<{ restore_attempts: number }>(
      h.databaseUrl,
      'SELECT restore_attempts FROM operation_items WHERE operation_id = $1',
      [plan.id],
    );
    expect(Math.max(...attempts.map((a) => a.restore_attempts))).toBeGreaterThan(1);
  });

  it('keeps retrying restores through a downstream outage of ~10 s (it gave up after ~8 s) → rolled_back', async () => {
    const ids = appsOf(freshSites(1), APPS);
    const plan = await submitAndStart(h, { ids, rollout: ROLLOUT, haltPolicy: FAST_HALT });
    await waitForState(h, plan.id, ['completed']);
    h.downstream.failOnly(['restore']);
    h.downstream.failAll(503);
    try {
      await command(h, 'operator', plan.id, 'rollback', { reason: 'undo' }).expect(200);
      await until(async () => (await ledger(h, plan.id)).some((r) => r.state === 'restore_failed'), 'a failed restore');
      // A restart of the downstream: down for 10 s after the first failure, then back.
      await new Promise((r) => setTimeout(r, 10_000));
      expect((await getOperation(h, plan.id)).state).toBe('rolling_back');
    } finally {
      h.downstream.failAll(null);
    }
    const end = await waitForState(h, plan.id, ['rolled_back', 'rollback_incomplete'], 60_000);
    expect(end.state).toBe('rolled_back');
    for (const id of ids) expect(h.downstream.state(id)).toBe('active');
  }, 90_000);

  it('a rollback whose restores keep failing can be ended by the operator: rollback_incomplete with the items', async () => {
    const ids = appsOf(freshSites(1), APPS);
    const plan = await submitAndStart(h, { ids, rollout: ROLLOUT, haltPolicy: FAST_HALT });
    await waitForState(h, plan.id, ['completed']);
    h.downstream.failOnly(['restore']);
    h.downstream.failAll(500);
    await command(h, 'operator', plan.id, 'rollback', { reason: 'undo' }).expect(200);
    await until(async () => (await ledger(h, plan.id)).some((r) => r.state === 'restore_failed'), 'a failed restore');
    // A plain abort (a second click, a retried request, a second operator) never ends a rollback: it
    // would leave deleted what the rollback had not restored yet.
    const again = await command(h, 'operator', plan.id, 'abort', { reason: 'abort again' }).expect(409);
    expect(again.body.code).toBe('INVALID_TRANSITION');
    expect(again.body.message).toMatch(/already rolling back.*endRollback: true/);
    const view = () => request(h.app.server).get(`/v1/operations/${plan.id}`).set('authorization', h.auth('viewer'));
    // A failed restore that the rollback will try again is not "restore failed" yet (the counts went
    // up and down between attempts): restoring in the view, still deleted in the stream's waves.
    type Counts = { wave: number; counts: Record<string, number> }[];
    const sum = (p: Counts, k: string) => p.reduce((n, w) => n + (w.counts[k] ?? 0), 0);
    let still = await view();
    await until(async () => {
      still = await view();
      return sum(still.body.waveProgress as Counts, 'restoring') === ids.length;
    }, 'the view to count them restoring');
    expect(still.body.state).toBe('rolling_back');
    expect(sum(still.body.waveProgress as Counts, 'restore_failed')).toBe(0);
    expect(sum(still.body.waveProgress as Counts, 'restoring')).toBe(ids.length);
    const live = await readLive(h.app.db.pool, plan.id, h.app.queueHolds);
    expect(live!.waves.reduce((n, w) => n + w.restoreFailed, 0)).toBe(0);
    // The items and tenants routes say the same: ?state=restoring found none of the items the view
    // counted restoring (a trial).
    const get = (path: string) => request(h.app.server).get(path).set('authorization', h.auth('viewer')).expect(200);
    const restoring = await get(`/v1/operations/${plan.id}/items?state=restoring&limit=1000`);
    expect(restoring.body.items).toHaveLength(ids.length);
    expect((await get(`/v1/operations/${plan.id}/items?state=restore_failed`)).body.items).toEqual([]);
    const tenants = await get(`/v1/operations/${plan.id}/tenants`);
    expect(tenants.body.items.map((x: { states: Record<string, number> }) => x.states)).toEqual([
      { restoring: ids.length },
    ]);
    const ended = await command(h, 'operator', plan.id, 'abort', {
      reason: 'restoring by hand',
      endRollback: true,
    }).expect(200);
    expect(ended.body.state).toBe('rollback_incomplete');
    expect(ended.body.unfinished.count).toBe(ids.length);
    expect(ended.body.unfinished.items[0].lastError).toMatch(/HTTP 500/);
    // Ended: nothing will try them again, so now they are restore_failed, everywhere.
    expect(sum(ended.body.waveProgress as Counts, 'restore_failed')).toBe(ids.length);
    expect((await get(`/v1/operations/${plan.id}/items?state=restore_failed&limit=1000`)).body.items).toHaveLength(
      ids.length,
    );
    const over = await readLive(h.app.db.pool, plan.id, h.app.queueHolds);
    expect(over!.waves.reduce((n, w) => n + w.restoreFailed, 0)).toBe(ids.length);
    // From there a new rollback may be tried once the downstream is back — also when the items used
    // up their restore attempts in the first one (as after a minute of a failing downstream).
    // (The counted moves follow, as the rollback's own statements keep them: a failed restore with
    // attempts left is counted apart from a final one.)
    await query(
      h.databaseUrl,
      `WITH up AS (
         UPDATE operation_items SET restore_attempts = 5 WHERE operation_id = $1 AND state = 'restore_failed'
         RETURNING wave, parent_seq, NOT permanent AS was_retry),
       moved AS (SELECT wave, count(*)::int AS n FROM up WHERE parent_seq IS NULL AND was_retry GROUP BY wave),
       out AS (UPDATE operation_wave_moves m SET n = m.n - moved.n FROM moved
               WHERE m.operation_id = $1 AND m.wave = moved.wave AND m.class = 'restore_retry')
       INSERT INTO operation_wave_moves AS m (operation_id, wave, class, n) SELECT $1, wave, 'restore_failed', n FROM moved
       ON CONFLICT (operation_id, wave, class) DO UPDATE SET n = m.n + excluded.n`,
      [plan.id],
    );
    h.downstream.failAll(null);
    await command(h, 'operator', plan.id, 'rollback', { reason: 'downstream is back' }).expect(200);
    const end = await waitForState(h, plan.id, ['rolled_back', 'rollback_incomplete'], 30_000);
    expect(end.state).toBe('rolled_back');
    for (const id of ids) expect(h.downstream.state(id)).toBe('active');
  });
});

describe('a rollback tried again', () => {
  it('retries restores that failed with a 4xx too, once the operator asks again (the downstream was fixed)', async () => {
    const ids = appsOf(freshSites(1), APPS);
    const plan = await submitAndStart(h, { ids, rollout: ROLLOUT, haltPolicy: FAST_HALT });
    await waitForState(h, plan.id, ['completed']);
    // A 400 is final for the rollback that meets it: it does not retry on its own.
    h.downstream.failOnly(['restore']);
    h.downstream.failAll(400);
    await command(h, 'operator', plan.id, 'rollback', { reason: 'undo' }).expect(200);
    const first = await waitForState(h, plan.id, ['rolled_back', 'rollback_incomplete'], 30_000);
    expect(first.state).toBe('rollback_incomplete');
    // Fixed downstream, a new rollback: it made no call and ended as it was (a new-user trial).
    h.downstream.failAll(null);
    await command(h, 'operator', plan.id, 'rollback', { reason: 'restores fixed downstream' }).expect(200);
    const end = await waitForState(h, plan.id, ['rolled_back', 'rollback_incomplete'], 30_000);
    expect(end.state, JSON.stringify(end)).toBe('rolled_back');
    for (const id of ids) expect(h.downstream.state(id)).toBe('active');
  });
});

describe('a rollback whose failed restores wait for their retry', () => {
  it('says so in its view and its stream (waiting: restore_retry, how many, when the next is due, the last error)', async () => {
    const ids = appsOf(freshSites(1), APPS);
    const plan = await submitAndStart(h, { ids, rollout: ROLLOUT, haltPolicy: FAST_HALT });
    await waitForState(h, plan.id, ['completed']);
    // The downstream sheds every restore (503): each one fails and waits for its retry with backoff
    // (4 s, then 8, 16, 32), and the rollback sits in rolling_back meanwhile. It showed no reason;
    // only the items route had the error (a trial: an on-call SRE with a downstream told to fail restores).
    h.downstream.failOnly(['restore']);
    h.downstream.failAll(503);
    type Waiting = {
      on: string;
      since: string;
      detail: string;
      items?: number;
      nextRetryAt?: string;
      lastError?: string | null;
    };
    let seen: { state: string; waiting: Waiting; due: Date; live: Waiting | null | undefined } | undefined;
    const retries = () =>
      query<{ due: Date | null; n: number }>(
        h.databaseUrl,
        `SELECT min(next_attempt_at) AS due, count(*)::int AS n FROM operation_items
         WHERE operation_id = $1 AND state = 'restore_failed' AND next_attempt_at > now()`,
        [plan.id],
      ).then((r) => r[0]!);
    try {
      await command(h, 'operator', plan.id, 'rollback', { reason: 'undo' }).expect(200);
      await until(
        async () => {
          const before = await retries();
          const view = await request(h.app.server)
            .get(`/v1/operations/${plan.id}`)
            .set('authorization', h.auth('viewer'));
          const live = await readLive(h.app.db.pool, plan.id, h.app.queueHolds);
          const after = await retries();
          // Compared only while the ledger stood still between the reads (no retry ran in between).
          if (after.n !== ids.length || before.n !== after.n || before.due?.getTime() !== after.due?.getTime())
            return false;
          if (view.body.waiting?.on !== 'restore_retry') return false;
          seen = { state: view.body.state, waiting: view.body.waiting, due: after.due!, live: live?.waiting };
          return true;
        },
        'the view to say that the rollback waits for its restore retries',
        20_000,
      );
      const { state, waiting, due, live } = seen!;
      expect(state).toBe('rolling_back');
      expect(waiting).toMatchObject({ on: 'restore_retry', items: ids.length, nextRetryAt: due.toISOString() });
      expect(Date.parse(waiting.nextRetryAt!)).toBeGreaterThan(Date.parse(waiting.since));
      expect(waiting.lastError).toMatch(/HTTP 503/);
      expect(waiting.detail).toMatch(/tried again with backoff/);
      // The event stream's progress frames (the CLI's watch, the live view) say the same.
      expect(live).toEqual(waiting);
    } finally {
      h.downstream.failAll(null);
    }
    // The downstream is back: the next retries land, and nothing waits any more.
    const end = await waitForState(h, plan.id, ['rolled_back', 'rollback_incomplete'], 60_000);
    expect(end.state).toBe('rolled_back');
    const after = await request(h.app.server).get(`/v1/operations/${plan.id}`).set('authorization', h.auth('viewer'));
    expect(after.body.waiting).toBeNull();
  }, 90_000);
});

describe('a rollback whose restores time out against a downstream that hangs', () => {
  it('says it waits for their retry while it keeps trying (it never sleeps, and said nothing)', async () => {
    // 32 restores one at a time, each timing out after 1 s: a first batch of 20 took 20 s and
    // recorded nothing until its end; the run never slept (always another item due), so what it
    // waits for was never written.
    const ids = appsOf(freshSites(8), APPS);
    const plan = await submitAndStart(h, { ids, rollout: { ...ROLLOUT, concurrency: 1 }, haltPolicy: FAST_HALT });
    await waitForState(h, plan.id, ['completed']);
    await useHttpAdapter(h, true, { timeoutMs: 1_000, retries: 0 });
    h.downstream.hang(5_000);
    try {
      await command(h, 'operator', plan.id, 'rollback', { reason: 'undo' }).expect(200);
      let waiting: { on: string; items?: number; lastError?: string | null } | null = null;
      await until(
        async () => {
          const view = await getOperation(h, plan.id);
          waiting = (view as { waiting?: typeof waiting }).waiting ?? null;
          return view.state === 'rolling_back' && waiting?.on === 'restore_retry';
        },
        'the view to say why the rollback does not move',
        BATCH_BUDGET_MS + 8_000,
      );
      expect(waiting).toMatchObject({ on: 'restore_retry', lastError: expect.stringMatching(/timeout/) });
      expect(waiting!.items).toBeGreaterThan(0);
    } finally {
      h.downstream.hang(0);
      await useHttpAdapter(h);
    }
    const end = await waitForState(h, plan.id, ['rolled_back', 'rollback_incomplete'], 90_000);
    expect(end.state).toBe('rolled_back');
  }, 120_000);
});

/** Ends every claim's lease (moved back in time, not waited for): the rollback ends rolled_back, no longer waiting. */
async function endLeasesAndRollBack(opId: string) {
  await query(
    h.databaseUrl,
    `UPDATE operation_items SET claimed_at = now() - interval '1 hour' WHERE operation_id = $1 AND state = 'restoring'`,
    [opId],
  );
  const end = await waitForState(h, opId, ['rolled_back', 'rollback_incomplete'], 30_000);
  expect(end.state).toBe('rolled_back');
  const after = await request(h.app.server).get(`/v1/operations/${opId}`).set('authorization', h.auth('viewer'));
  expect(after.body.waiting).toBeNull();
}

/**
 * 3 deleted items as a run left them when its worker died: restoring, claimed by `claimedBy` under
 * `token`, for 30 s more than the lease; their moves recorded as a claim records them.
 */
const holdThree = (opId: string, claimedBy: string, token: string) =>
  query<{ seq: number }>(
    h.databaseUrl,
    `WITH was AS (
       SELECT seq, ${moveClass('operation_items')} AS cls FROM operation_items
       WHERE operation_id = $1 AND state = 'done' ORDER BY seq LIMIT 3 FOR UPDATE
     ), up AS (
       UPDATE operation_items i SET state = 'restoring', claimed_by = $2, claim_token = $3,
         claimed_at = now() + interval '30 seconds'
       FROM was WHERE i.operation_id = $1 AND i.seq = was.seq
       RETURNING i.seq, i.wave, i.parent_seq, was.cls AS from_class, ${moveClass('i')} AS to_class
     ), ${recordMoves('counted', 'up')}
     SELECT seq FROM up`,
    [opId, claimedBy, token],
  );

describe('a rollback whose items another run holds', () => {
  it('says so in its view and its stream (waiting: claims, how many, until when) until it takes them over', async () => {
    const ids = appsOf(freshSites(2), APPS);
    const plan = await submitAndStart(h, { ids, rollout: ROLLOUT, haltPolicy: FAST_HALT });
    await waitForState(h, plan.id, ['completed']);
    // A run whose worker died holds 3 deleted items (state restoring, as a rollback's claim leaves
    // them) for 30 s more; its moves are recorded as the claim records them. A trial saw 320 such
    // items sit still while the view said only that 16 restores waited for their retry, then nothing.
    expect(await holdThree(plan.id, 'a-worker-that-died', 'dead')).toHaveLength(3);
    await command(h, 'operator', plan.id, 'rollback', { reason: 'undo' }).expect(200);
    const { waiting, live } = await waitForWaiting(
      h,
      plan.id,
      'claims',
      'the view to say that the rollback waits for items another run holds',
    );
    expect(waiting).toMatchObject({ on: 'claims', items: 3 });
    expect(Date.parse(waiting.until!)).toBeGreaterThan(Date.now());
    expect(waiting.detail).toMatch(/claim lease ends/);
    expect(live).toEqual(waiting);
    // Everything else is back meanwhile; the held items wait for the lease.
    const rows = await ledger(h, plan.id);
    expect(rows.filter((r) => r.state === 'restored')).toHaveLength(ids.length - 3);
    // The lease ends (moved back in time rather than waited for): the rollback takes them over.
    await endLeasesAndRollBack(plan.id);
  }, 60_000);
});

describe('a rollback whose earlier run died holding items', () => {
  it('takes them over at once (its runs are one at a time), not after their lease', async () => {
    const ids = appsOf(freshSites(2), APPS);
    const plan = await submitAndStart(h, { ids, rollout: ROLLOUT, haltPolicy: FAST_HALT });
    await waitForState(h, plan.id, ['completed']);
    // 3 items as a run of this rollback left them when its worker was killed mid-batch: restoring,
    // claimed by the rollback under that run's token, their lease running 30 s more. A trial's
    // rollback sat ~50 s after such a kill for items it had restored seconds before.
    expect(await holdThree(plan.id, 'rollback', 'a-run-that-died')).toHaveLength(3);
    await command(h, 'operator', plan.id, 'rollback', { reason: 'undo' }).expect(200);
    const end = await waitForState(h, plan.id, ['rolled_back', 'rollback_incomplete'], 15_000);
    expect(end.state).toBe('rolled_back');
    expect((await ledger(h, plan.id)).every((r) => r.state === 'restored')).toBe(true);
  }, 60_000);
});

describe('a rollback whose job waits out a dead worker', () => {
  it('says which items stopped runs hold from the reconciler, before its own job runs again', async () => {
    const ids = appsOf(freshSites(2), APPS);
    const plan = await submitAndStart(h, { ids, rollout: ROLLOUT, haltPolicy: FAST_HALT });
    await waitForState(h, plan.id, ['completed']);
    // After a `kill -9` of the only worker its rollback job stays locked by the dead worker (BullMQ's
    // lock duration) and nothing runs it: a paused control queue stands in for that here. Of the
    // items claimed meanwhile, 3 are held by a run of a process that is gone, 2 by a run of one
    // whose lock session is connected, 1 by a token that names no process (a drill's, an older
    // version's): only the first 3 are certain to wait for their lease. A trial saw the view say
    // nothing for ~60 s after such a kill, then `progress`, and `claims` only in the lease's last seconds.
    const stopped = `${randomUUID()}/${randomUUID()}`;
    const alive = randomUUID();
    const session = new pg.Client({ connectionString: h.databaseUrl, application_name: `${LOCK_SESSIONS}/${alive}` });
    await session.connect();
    const conn = createRedis(h.redisUrl, true);
    const control = new Queue(QUEUE_NAMES.control, { connection: conn, prefix: h.prefix });
    try {
      const tokens = [stopped, stopped, stopped, `${alive}/${randomUUID()}`, `${alive}/${randomUUID()}`, 'no-runner'];
      await query(
        h.databaseUrl,
        `WITH locked AS (
           SELECT seq, ${moveClass('operation_items')} AS cls FROM operation_items
           WHERE operation_id = $1 AND state = 'done' ORDER BY seq LIMIT 6 FOR UPDATE
         ), was AS (SELECT seq, cls, row_number() OVER (ORDER BY seq) AS k FROM locked), up AS (
           UPDATE operation_items i SET state = 'restoring', claimed_by = 'rollback', claim_token = ($2::text[])[was.k],
             claimed_at = now() + interval '30 seconds'
           FROM was WHERE i.operation_id = $1 AND i.seq = was.seq
           RETURNING i.seq, i.wave, i.parent_seq, was.cls AS from_class, ${moveClass('i')} AS to_class
         ), ${recordMoves('counted', 'up')}
         SELECT seq FROM up`,
        [plan.id, tokens],
      );
      await control.pause();
      await command(h, 'operator', plan.id, 'rollback', { reason: 'undo' }).expect(200);
      // Just started: a rollback that may be moving is not said to wait.
      expect(await noteStoppedHolds(h.app.db.pool, plan.id, 6_000)).toBe(0);
      const view = () => request(h.app.server).get(`/v1/operations/${plan.id}`).set('authorization', h.auth('viewer'));
      let waiting: { on: string; items?: number; until?: string; since?: string } | undefined;
      await until(
        async () => {
          waiting = (await view()).body.waiting;
          return waiting?.on === 'claims';
        },
        'the view to say that stopped runs hold items of the rollback',
        15_000,
      );
      expect(waiting).toMatchObject({ on: 'claims', items: 3 });
      expect(Date.parse(waiting!.until!)).toBeGreaterThan(Date.now() + 20_000);
      expect((await getOperation(h, plan.id)).state).toBe('rolling_back');
      // Noted once: what the views show is current, so the next ticks leave it as it is.
      const restoreWait = () =>
        query<{ w: unknown }>(h.databaseUrl, 'SELECT restore_wait AS w FROM operations WHERE id = $1', [plan.id]);
      const noted = await restoreWait();
      expect(await noteStoppedHolds(h.app.db.pool, plan.id, 6_000)).toBe(0);
      expect(await restoreWait()).toEqual(noted);
      // The job runs, the leases end: every item comes back, and the view stops waiting.
      await control.resume();
      await endLeasesAndRollBack(plan.id);
    } finally {
      await control.resume();
      await control.close();
      conn.disconnect();
      await session.end();
    }
  }, 60_000);
});

describe('resuming a halt once the downstream is fixed', () => {
  it('retries the items that failed, instead of halting again on the same failures', async () => {
    const ids = appsOf(freshSites(2), APPS);
    const haltPolicy = { ...FAST_HALT, onHalt: 'pause', minSample: 1, maxConsecutiveFailures: 2 };
    const plan = await submitAndStart(h, { ids, rollout: ROLLOUT, haltPolicy });
    h.downstream.failOnly(['softDelete']);
    h.downstream.failAll(500);
    const halted = await waitForState(h, plan.id, ['halted', 'completed', 'completed_with_failures']);
    expect(halted.state).toBe('halted');
    const failedAtHalt = (await ledger(h, plan.id)).filter((r) => r.state === 'failed').length;
    expect(failedAtHalt).toBeGreaterThan(0);
    // The operator fixes the downstream and resumes. It used to halt again at once on the wave's
    // recorded failures, its failed items never tried again, until only an abort was left.
    h.downstream.failAll(null);
    await command(h, 'operator', plan.id, 'resume', {}).expect(200);
    const end = await waitForState(h, plan.id, ['completed', 'completed_with_failures', 'halted']);
    expect(end.state, JSON.stringify(end)).toBe('completed');
    expect((await ledger(h, plan.id)).every((r) => r.state === 'done')).toBe(true);
    for (const id of ids) expect(h.downstream.state(id)).toBe('soft_deleted');
  });
});

describe('ending a rollback while its restores are under way', () => {
  it('stops sending restores (at most one more per lane), and records truly each one that was applied', async () => {
    // 10 sites × 4 apps: one 40-item rollback batch, 2 restores in flight at a time.
    const ids = appsOf(freshSites(10), APPS);
    const plan = await submitAndStart(h, { ids, rollout: ROLLOUT, haltPolicy: FAST_HALT });
    await waitForState(h, plan.id, ['completed']);
    const restores = () => h.downstream.destructiveCalls().filter((c) => c.action === 'restore');
    h.downstream.hang(150);
    await command(h, 'operator', plan.id, 'rollback', { reason: 'undo' }).expect(200);
    await until(() => restores().length >= 4, 'restores to be under way');
    const ended = await command(h, 'operator', plan.id, 'abort', {
      reason: 'the restores overload the downstream',
      endRollback: true,
    }).expect(200);
    expect(ended.body.state).toBe('rollback_incomplete');
    const atEnd = restores().length;
    // Give a rollback that did not stop the time to send several more (2 lanes × 150 ms per call).
    await new Promise((r) => setTimeout(r, 1_500));
    await until(() => restores().every((c) => c.status !== undefined), 'restores in flight to end');
    const sent = restores().length;
    // In flight at the end (one per lane), and at most one more per lane before the watch's next
    // reading (100 ms) showed the end. Before, the whole 40-item batch went on being restored.
    expect(sent - atEnd).toBeLessThanOrEqual(2 * ROLLOUT.concurrency);
    expect(sent).toBeLessThan(ids.length);
    h.downstream.hang(0);
    // The ledger tells the truth about every restore the downstream applied, late ones included.
    await until(
      async () => (await ledger(h, plan.id)).every((r) => r.state !== 'restoring'),
      'the last restores to be recorded',
    );
    const rows = await ledger(h, plan.id);
    for (const r of rows) {
      const active = h.downstream.state(r.resource_id) === 'active';
      expect(r.state === 'restored', `${r.resource_id}: ledger ${r.state}, downstream active=${active}`).toBe(active);
    }
    expect(rows.filter((r) => r.state === 'restored').length).toBeGreaterThan(0);
  });
});

describe('freeze and unfreeze on every live operation', () => {
  it('records frozen/unfrozen on planned, approved and running operations and reports them affected', async () => {
    const planned = (await submit(appsOf(freshSites(1), APPS)).expect(201)).body.id as string;
    const approvedOp = (await submit(appsOf(freshSites(1), APPS)).expect(201)).body;
    await command(h, 'approver', approvedOp.id, 'approve', { planHash: approvedOp.planHash }).expect(200);
    const set = await request(h.app.server)
      .put('/v1/admin/freeze')
      .set('authorization', h.auth('admin'))
      .send({ frozen: true, reason: 'Incident INC-7' })
      .expect(200);
    expect(set.body.affected).toEqual(expect.arrayContaining([planned, approvedOp.id]));
    // The same freeze again is not a change: no second event anywhere.
    const again = await request(h.app.server)
      .put('/v1/admin/freeze')
      .set('authorization', h.auth('admin'))
      .send({ frozen: true, reason: 'Incident INC-7, still' })
      .expect(200);
    expect(again.body.affected).toEqual([]);
    const lifted = await request(h.app.server)
      .put('/v1/admin/freeze')
      .set('authorization', h.auth('admin'))
      .send({ frozen: false, reason: 'Incident over' })
      .expect(200);
    expect(lifted.body.affected).toEqual(expect.arrayContaining([planned, approvedOp.id]));
    for (const id of [planned, approvedOp.id]) {
      const actions = (await audit(id)).map((a) => a.action);
      expect(actions.filter((a) => a === 'operation.frozen')).toHaveLength(1);
      expect(actions.filter((a) => a === 'operation.unfrozen')).toHaveLength(1);
    }
  });
});
