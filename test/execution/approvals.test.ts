// Promise 6 on the real stack: nobody approves their own operation; an approval binds to the plan
// hash that was reviewed; break-glass plans need a second approval by an admin; nothing starts
// before it is approved; a rejected plan (the April 2022 shape: site IDs submitted as app IDs) can
// never be approved or started. Each refusal leaves the operation as it was and sends nothing.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Role } from '../../src/modules/auth/roles.ts';
import {
  buildExecHarness,
  getOperation,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { appsOf, command, range } from '../support/exec-helpers.ts';
import { query, seedRegistry, siteId } from '../support/seed.ts';

const APPS = 2;
const ROLLOUT = { bakeSeconds: 0, concurrency: 4, waves: ['100%'] };
const OTHER_HASH = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

let h: ExecHarness;
let secondApprover: string;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 200, appsPerSite: APPS, internalTenants: 2 });
  await useHttpAdapter(h);
  const admin = { tokenId: 'test', name: 'test', role: 'admin' as const };
  secondApprover = (await h.app.authService.createToken('test-approver-2', 'approver', admin)).token;
});
afterAll(async () => {
  await h?.close();
});

function submit(role: Role, ids: string[], extra: Record<string, unknown> = {}) {
  return request(h.app.server)
    .post('/v1/operations')
    .set('authorization', h.auth(role))
    .send({ targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-9', ids, rollout: ROLLOUT, ...extra });
}
const approveWith = (authorization: string, id: string, planHash: string) =>
  request(h.app.server).post(`/v1/operations/${id}/approve`).set('authorization', authorization).send({ planHash });
const approvalsOf = (id: string) =>
  query<{ role: string; break_glass: boolean }>(
    h.databaseUrl,
    'SELECT role, break_glass FROM approvals WHERE operation_id = $1 ORDER BY id',
    [id],
  );
const deletesOf = (ids: string[]) => h.downstream.destructiveCalls().filter((c) => ids.includes(c.resourceId!));

describe('who may approve', () => {
  it('refuses self-approval: an admin who submitted cannot approve their own operation', async () => {
    const ids = appsOf([10, 11], APPS);
    const op = await submit('admin', ids);
    expect(op.status, JSON.stringify(op.body)).toBe(201);
    const self = await approveWith(h.auth('admin'), op.body.id, op.body.planHash);
    expect(self.status).toBe(403);
    expect(self.body.code).toBe('SELF_APPROVAL');
    expect(await approvalsOf(op.body.id)).toEqual([]);
    // Someone else can.
    expect((await approveWith(h.auth('approver'), op.body.id, op.body.planHash)).body.state).toBe('approved');
  });

  it('refuses approval by requesters, operators and viewers, and submission by approvers', async () => {
    const op = await submit('requester', appsOf([12], APPS));
    expect(op.status).toBe(201);
    for (const role of ['requester', 'operator', 'viewer'] as const) {
      const r = await approveWith(h.auth(role), op.body.id, op.body.planHash);
      expect(r.status, role).toBe(403);
    }
    expect((await submit('approver', appsOf([13], APPS))).status).toBe(403);
    expect((await getOperation(h, op.body.id)).state).toBe('planned');
    expect(await approvalsOf(op.body.id)).toEqual([]);
  });

  it('binds the approval to the reviewed plan: another plan hash is 409 PLAN_HASH_MISMATCH', async () => {
    const a = await submit('requester', appsOf([14], APPS));
    const b = await submit('requester', appsOf([15], APPS));
    expect(a.body.planHash).not.toBe(b.body.planHash);
    for (const stale of [a.body.planHash as string, OTHER_HASH]) {
      const r = await approveWith(h.auth('approver'), b.body.id, stale);
      expect(r.status).toBe(409);
      expect(r.body.code).toBe('PLAN_HASH_MISMATCH');
      // Names the hash given and where the plan and its hash are, never the current hash itself
      // (an approval follows a review of the plan).
      expect(r.body.message).toContain(`(planHash ${stale.slice(0, 12)}…)`);
      // This operation's own route, not the template (a trial was handed "{id}").
      expect(r.body.message).toContain(`GET /v1/operations/${b.body.id} shows it and the planHash to approve`);
      expect(JSON.stringify(r.body)).not.toContain(b.body.planHash as string);
    }
    expect((await getOperation(h, b.body.id)).state).toBe('planned');
    expect(await approvalsOf(b.body.id)).toEqual([]);
    expect((await approveWith(h.auth('approver'), b.body.id, b.body.planHash)).body.state).toBe('approved');
  });
});

describe('nothing starts before approval', () => {
  it('refuses start of a planned operation with 409 and sends nothing', async () => {
    const ids = appsOf([16], APPS);
    const op = await submit('requester', ids);
    const r = await command(h, 'operator', op.body.id, 'start');
    expect(r.status).toBe(409);
    expect(r.body.code).toBe('INVALID_TRANSITION');
    expect(r.body.message).toContain('it needs an approval by someone other than the requester first');
    expect((await getOperation(h, op.body.id)).state).toBe('planned');
    expect(deletesOf(ids)).toEqual([]);
  });

  it('refuses to approve or start a rejected operation (site IDs submitted as app IDs)', async () => {
    const sites = range(20, 30).map(siteId);
    const res = await submit('requester', sites);
    expect(res.status).toBe(422);
    expect(res.body.code).toBe('PLAN_REJECTED');
    const id = res.body.details.operationId as string;
    expect(id).toMatch(/^op_/);
    expect((await getOperation(h, id)).state).toBe('rejected');
    for (const [auth, path, body] of [
      [h.auth('approver'), 'approve', { planHash: OTHER_HASH }],
      [h.auth('admin'), 'approve', { planHash: OTHER_HASH }],
      [h.auth('operator'), 'start', {}],
    ] as const) {
      const r = await request(h.app.server).post(`/v1/operations/${id}/${path}`).set('authorization', auth).send(body);
      expect(r.status, `${path}: ${JSON.stringify(r.body)}`).toBe(409);
      expect(r.body.code).toBe('INVALID_TRANSITION');
    }
    expect((await getOperation(h, id)).state).toBe('rejected');
    expect(await approvalsOf(id)).toEqual([]);
    expect(h.downstream.calls.filter((c) => sites.includes(c.resourceId!))).toEqual([]);
  });
});

describe('break-glass', () => {
  it('an erasure stays unapproved after approvers alone, is approved by an added admin approval, and then runs', async () => {
    const ids = appsOf([40, 41], APPS);
    const keyed = () => submit('requester', ids, { erasure: true }).set('idempotency-key', 'erasure-40-41');
    const op = await keyed();
    expect(op.status).toBe(201);
    expect(op.body.requiresBreakGlass).toBe(true);
    const { id, planHash } = op.body as { id: string; planHash: string };
    // The create answer says what the plan needs, as its GET does: it said nothing (a trial).
    expect(op.body.approvals).toEqual([]);
    expect(op.body.approvalsNeeded).toMatch(/two approvals|2 approvals|an admin/);
    const fresh = await request(h.app.server).get(`/v1/operations/${id}`).set('authorization', h.auth('viewer'));
    expect(op.body.approvalsNeeded).toBe(fresh.body.approvalsNeeded);

    const first = await approveWith(h.auth('approver'), id, planHash);
    expect(first.status).toBe(200);
    expect(first.body.state).toBe('planned');
    // Approved once, still planned: the answer and the start refusal say what is missing.
    expect(first.body.command.approvalsNeeded).toMatch(/^an admin's approval \(a compliance erasure needs/);
    // A GET shows it too: who approved, and what is still needed (it read only `planned`).
    const viewed = await request(h.app.server).get(`/v1/operations/${id}`).set('authorization', h.auth('viewer'));
    expect(viewed.body.approvals).toEqual([{ by: expect.any(String), role: 'approver', at: expect.any(String) }]);
    expect(viewed.body.approvalsNeeded).toBe(first.body.command.approvalsNeeded);
    // A replay of the create answers with the approval in, as the GET does.
    const replay = await keyed();
    expect(replay.status).toBe(200);
    expect(replay.body.approvals).toEqual(viewed.body.approvals);
    expect(replay.body.approvalsNeeded).toBe(viewed.body.approvalsNeeded);
    const early = await command(h, 'operator', id, 'start');
    expect(early.status).toBe(409);
    expect(early.body.message).toContain("it needs an admin's approval (a compliance erasure needs one of its two");
    const second = await approveWith(`Bearer ${secondApprover}`, id, planHash);
    expect(second.status).toBe(200);
    expect(second.body.state).toBe('planned'); // two approvers, but no admin among them
    expect(second.body.command.approvalsNeeded).toContain('2 in, none by an admin');
    expect((await approveWith(h.auth('approver'), id, planHash)).body.code).toBe('DUPLICATE_APPROVAL');
    expect(deletesOf(ids)).toEqual([]);

    const admin = await approveWith(h.auth('admin'), id, planHash);
    expect(admin.status).toBe(200);
    expect(admin.body.state).toBe('approved');
    expect(admin.body.command.approvalsNeeded).toBeUndefined();
    expect(admin.body.approvals.map((a: { role: string }) => a.role)).toEqual(['approver', 'approver', 'admin']);
    expect(admin.body.approvalsNeeded).toBeNull();
    expect(await approvalsOf(id)).toEqual([
      { role: 'approver', break_glass: false },
      { role: 'approver', break_glass: false },
      { role: 'admin', break_glass: true },
    ]);

    expect((await command(h, 'operator', id, 'start')).status).toBe(200);
    expect((await waitForState(h, id, ['completed', 'halted', 'rolled_back', 'paused'])).state).toBe('completed');
    expect(new Set(deletesOf(ids).map((c) => `${c.action} ${c.resourceId}`))).toEqual(
      new Set(ids.map((i) => `hardDelete ${i}`)),
    );
    for (const i of ids) expect(h.downstream.state(i)).toBe('purged');
  });

  it('a plan over the tenant budget (> 50 tenants) needs an admin as the second approver', async () => {
    const op = await submit('requester', appsOf(range(100, 160), APPS));
    expect(op.status).toBe(201);
    expect(op.body.tenantCount).toBe(60);
    expect(op.body.requiresBreakGlass).toBe(true);
    const { id, planHash } = op.body as { id: string; planHash: string };
    expect((await approveWith(h.auth('approver'), id, planHash)).body.state).toBe('planned');
    expect((await command(h, 'operator', id, 'start')).status).toBe(409);
    expect((await approveWith(h.auth('admin'), id, planHash)).body.state).toBe('approved');
  });

  it('an admin approval alone is not enough for an erasure either: break-glass needs two people', async () => {
    const op = await submit('requester', appsOf([42], APPS), { erasure: true });
    const { id, planHash } = op.body as { id: string; planHash: string };
    expect((await approveWith(h.auth('admin'), id, planHash)).body.state).toBe('planned');
    expect((await approveWith(h.auth('approver'), id, planHash)).body.state).toBe('approved');
  });
});

describe('approvals that arrive together', () => {
  it('the second of two break-glass approvals waiting on the same lock approves the operation (it saw only its own)', async () => {
    const ids = appsOf([60, 61], APPS);
    const op = await submit('requester', ids, { erasure: true });
    expect(op.status).toBe(201);
    const { id, planHash } = op.body as { id: string; planHash: string };
    // Both wait behind a transaction holding the operation's row, as behind a third command: the
    // second to get the lock read the approvals as they were when it began to wait, without the
    // first one's, and both answered "planned", needing one more (a trial saw "6 in" three times).
    const pgmod = await import('pg');
    const holder = new pgmod.default.Client({ connectionString: h.databaseUrl });
    await holder.connect();
    let answers: request.Response[];
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM operations WHERE id = $1 FOR UPDATE', [id]);
      const both = Promise.all([
        approveWith(h.auth('approver'), id, planHash),
        approveWith(h.auth('admin'), id, planHash),
      ]);
      // Until both wait on the row (pg_stat_activity: their statements blocked by the holder).
      for (let k = 0; k < 100; k++) {
        const waiting = await query<{ n: number }>(
          h.databaseUrl,
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FROM operations o WHERE o.id%'`,
        );
        if (waiting[0]!.n >= 2) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      await holder.query('COMMIT');
      answers = await both;
    } finally {
      await holder.end();
    }
    expect(answers.map((a) => a.status)).toEqual([200, 200]);
    expect((await approvalsOf(id)).map((a) => a.role).sort()).toEqual(['admin', 'approver']);
    expect((await getOperation(h, id)).state).toBe('approved');
    // The answer of the one that completed the approvals says so.
    expect(answers.map((a) => a.body.state)).toContain('approved');
  });
});
