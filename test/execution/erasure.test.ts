// Compliance erasure on the real stack (PostgreSQL, Redis, the downstream HTTP fake): `mode: "hard"`
// is refused on every submission form (HARD_MODE_REPLACED); `erasure: true` needs an admin and a
// second approver, hard-deletes each item once, destroys the per-resource keys so every snapshot of
// the erased resources (an earlier delete's too) reads `erased`, leaves the audit chain verifying,
// can never be rolled back to a state that reads as success, and a restore of an erased resource is
// refused per ID with `erased`. An item whose hard delete failed keeps its keys; one whose applied
// call lost its answer keeps them until the retry is recorded done. Soft-deleted resources (within
// retention) are erasable, and the delete that soft-deleted them can then not roll back as success.
import pg from 'pg';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshotStore } from '../../src/modules/snapshots/store.ts';
import { appsOf, command } from '../support/exec-helpers.ts';
import {
  buildExecHarness,
  getOperation,
  submitAndStart,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { TEST_SNAPSHOT_KEY_BYTES } from '../support/keys.ts';
import { METRICS_TOKEN } from '../support/secrets.ts';
import { postRestore } from '../support/restores.ts';
import { query, seedRegistry, siteId } from '../support/seed.ts';

const APPS = 2;
const ROLLOUT = { bakeSeconds: 0, concurrency: 4, waves: ['1', '100%'] };
const HALT = { probe: 'optional', onHalt: 'pause' };
const SPEC = { targetType: 'app', reason: 'GDPR erasure request 7731', ticket: 'DPO-7731' };

let h: ExecHarness;
let pool: pg.Pool;
let secondAdmin: string;
let nextSite = 0;
const freshSites = (n: number) => Array.from({ length: n }, () => nextSite++);

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 40, appsPerSite: APPS });
  await useHttpAdapter(h, false);
  pool = new pg.Pool({ connectionString: h.databaseUrl, max: 2 });
  const admin = { tokenId: 'test', name: 'test', role: 'admin' as const };
  secondAdmin = (await h.app.authService.createToken('test-admin-2', 'admin', admin)).token;
});
afterAll(async () => {
  await pool?.end();
  await h?.close();
});

const submit = (body: Record<string, unknown>, role: 'requester' | 'admin' = 'requester') =>
  request(h.app.server)
    .post('/v1/operations')
    .set('authorization', h.auth(role))
    .send({ ...SPEC, rollout: ROLLOUT, haltPolicy: HALT, ...body });
const approve = (role: 'approver' | 'admin', id: string, planHash: string) =>
  command(h, role, id, 'approve', { planHash });
const operationCount = async () =>
  Number((await query<{ n: string }>(h.databaseUrl, 'SELECT count(*) AS n FROM operations'))[0]!.n);
const snapshotIdsOf = async (ids: string[]) =>
  (
    await query<{ id: string }>(h.databaseUrl, 'SELECT id FROM snapshots WHERE resource_id = ANY($1) ORDER BY id', [
      ids,
    ])
  ).map((r) => Number(r.id));
const readSnapshots = async (ids: string[]) => [
  ...(await snapshotStore(TEST_SNAPSHOT_KEY_BYTES).get(pool, await snapshotIdsOf(ids))).values(),
];
const verify = async () =>
  (await request(h.app.server).get('/v1/audit/verify').set('authorization', h.auth('viewer')).expect(200)).body as {
    valid: boolean;
    checked: number;
  };

describe('mode "hard" is replaced by compliance erasure', () => {
  it('refuses mode hard with 422 HARD_MODE_REPLACED naming the field, on JSON, NDJSON and text; nothing is planned', async () => {
    const ids = appsOf(freshSites(1), APPS);
    const before = await operationCount();
    const json = await submit({ mode: 'hard', ids });
    const ndjson = await request(h.app.server)
      .post('/v1/operations')
      .set('authorization', h.auth('requester'))
      .set('content-type', 'application/x-ndjson')
      .send(`${JSON.stringify({ ...SPEC, mode: 'hard' })}\n${ids.map((i) => JSON.stringify(i)).join('\n')}\n`);
    const text = await request(h.app.server)
      .post('/v1/operations/text')
      .query({ ...SPEC, mode: 'hard' })
      .set('authorization', h.auth('requester'))
      .set('content-type', 'text/plain')
      .send(ids.join('\n'));
    for (const r of [json, ndjson, text]) {
      expect(r.status, JSON.stringify(r.body)).toBe(422);
      expect(r.body).toMatchObject({ code: 'HARD_MODE_REPLACED', details: { field: 'mode', use: { erasure: true } } });
      expect(r.body.message).toMatch(/erasure: true/);
    }
    expect(await operationCount()).toBe(before);
    expect(h.downstream.calls.filter((c) => ids.includes(c.resourceId!))).toEqual([]);
    // Soft stays the default, and may still be said.
    const soft = await submit({ mode: 'soft', ids, dryRun: true });
    expect(soft.status, JSON.stringify(soft.body)).toBe(200);
    expect(soft.body.plan.requiresBreakGlass).toBe(false);
    // The text form takes erasure=true in its query string.
    const textErasure = await request(h.app.server)
      .post('/v1/operations/text')
      .query({ ...SPEC, erasure: true, dryRun: true })
      .set('authorization', h.auth('requester'))
      .set('content-type', 'text/plain')
      .send(ids.join('\n'));
    expect(textErasure.status, JSON.stringify(textErasure.body)).toBe(200);
    expect(textErasure.body.plan.breakGlassReasons).toContain('compliance erasure: permanent, destroys snapshots');
  });

  it("an aborted erasure's closing event keeps the operator's reason beside the one it was requested for", async () => {
    const op = await submit({ erasure: true, ids: appsOf(freshSites(1), 1) });
    expect(op.status, JSON.stringify(op.body)).toBe(201);
    await command(h, 'operator', op.body.id, 'abort', { reason: 'not wanted any more' }).expect(200);
    const [last] = await query<{ action: string; payload: Record<string, unknown> }>(
      h.databaseUrl,
      'SELECT action, payload FROM audit_events WHERE operation_id = $1 ORDER BY seq DESC LIMIT 1',
      [op.body.id],
    );
    expect(last).toMatchObject({
      action: 'operation.cancelled',
      payload: { kind: 'erase', reason: 'not wanted any more', requestReason: SPEC.reason },
    });
  });
});

describe('compliance erasure', () => {
  it('needs an admin and a second approver, hard-deletes each item once, and leaves every snapshot unreadable', async () => {
    const ids = appsOf(freshSites(2), APPS);
    // An earlier delete, rolled back: the resources have snapshots from before the erasure too.
    const earlier = await submitAndStart(h, { ids, rollout: ROLLOUT, haltPolicy: HALT });
    await waitForState(h, earlier.id, ['completed']);
    await command(h, 'operator', earlier.id, 'rollback', { reason: 'put back before the erasure' }).expect(200);
    expect((await waitForState(h, earlier.id, ['rolled_back', 'rollback_incomplete'])).state).toBe('rolled_back');
    expect((await readSnapshots(ids)).every((r) => r.ok)).toBe(true);
    const chainBefore = await verify();
    expect(chainBefore.valid).toBe(true);

    // Submitted by an admin: the requester's own admin approval does not count.
    const planned = await submit({ erasure: true, ids }, 'admin');
    expect(planned.status, JSON.stringify(planned.body)).toBe(201);
    expect(planned.body).toMatchObject({ kind: 'erase', action: 'erase', mode: 'hard', requiresBreakGlass: true });
    expect(planned.body.plan.breakGlassReasons).toContain('compliance erasure: permanent, destroys snapshots');
    const { id, planHash } = planned.body as { id: string; planHash: string };

    // The requester cannot be one of the two; an approver alone is not enough; nothing runs before both.
    expect((await approve('admin', id, planHash)).body.code).toBe('SELF_APPROVAL');
    expect((await approve('approver', id, planHash)).body.state).toBe('planned');
    expect((await approve('approver', id, planHash)).body.code).toBe('DUPLICATE_APPROVAL');
    expect((await command(h, 'operator', id, 'start')).status).toBe(409);
    const admin2 = await command(h, 'operator', id, 'approve', { planHash }).set(
      'authorization',
      `Bearer ${secondAdmin}`,
    );
    expect(admin2.body.state).toBe('approved');
    const before = h.downstream.calls.length;
    await command(h, 'operator', id, 'start').expect(200);
    expect((await waitForState(h, id, ['completed', 'completed_with_failures', 'halted', 'paused'])).state).toBe(
      'completed',
    );

    // One hard delete per item, nothing else destructive.
    const calls = h.downstream.calls.slice(before).filter((c) => c.action !== 'snapshot');
    expect(calls.map((c) => `${c.action} ${c.resourceId}`).sort()).toEqual(ids.map((i) => `hardDelete ${i}`).sort());
    for (const i of ids) expect(h.downstream.state(i)).toBe('purged');

    // Every snapshot of them (the earlier delete's and the erasure's own) reads erased.
    const reads = await readSnapshots(ids);
    expect(reads.length).toBeGreaterThanOrEqual(2 * ids.length);
    expect(reads.every((r) => !r.ok && r.reason === 'erased')).toBe(true);
    const keys = await query<{ wrapped: Buffer | null; erased_at: Date | null }>(
      h.databaseUrl,
      'SELECT wrapped, erased_at FROM resource_keys WHERE resource_id = ANY($1)',
      [ids],
    );
    expect(keys).toHaveLength(ids.length);
    expect(keys.every((k) => k.wrapped === null && k.erased_at !== null)).toBe(true);
    const states = await query<{ state: string }>(h.databaseUrl, 'SELECT state FROM resources WHERE id = ANY($1)', [
      ids,
    ]);
    expect(new Set(states.map((s) => s.state))).toEqual(new Set(['purged']));

    // The view and the audit say what it was, who asked, why, and how much.
    const view = await request(h.app.server)
      .get(`/v1/operations/${id}`)
      .set('authorization', h.auth('viewer'))
      .expect(200);
    expect(view.body).toMatchObject({
      kind: 'erase',
      requestedBy: expect.any(String),
      reason: SPEC.reason,
      counts: { items: ids.length, erased: ids.length, notErased: 0 },
    });
    const audit = await query<{ action: string; actor: string; payload: Record<string, unknown> }>(
      h.databaseUrl,
      'SELECT action, actor, payload FROM audit_events WHERE operation_id = $1 ORDER BY seq',
      [id],
    );
    expect(audit[0]).toMatchObject({
      action: 'operation.planned',
      payload: { kind: 'erase', reason: SPEC.reason, items: ids.length },
    });
    const erasedEvents = audit.filter((a) => a.action === 'operation.keys_erased');
    // Every event of the operation says what it is (README), this one too (a trial found it without).
    for (const a of audit.filter((x) => x.action.startsWith('operation.')))
      expect(a.payload.kind, a.action).toBe('erase');
    expect(erasedEvents.reduce((n, a) => n + (a.payload.keys as number), 0)).toBe(ids.length);
    expect(audit.at(-1)).toMatchObject({
      action: 'operation.completed',
      payload: {
        kind: 'erase',
        requestReason: SPEC.reason,
        items: ids.length,
        erased: ids.length,
        keysDestroyed: ids.length,
      },
    });
    // Audit payloads hold IDs and counts, never snapshot content; the chain verifies.
    expect(JSON.stringify(audit)).not.toMatch(/"tenantId":|"deletedAt"/);
    const chain = await verify();
    expect(chain.valid).toBe(true);
    expect(chain.checked).toBeGreaterThan(chainBefore.checked);

    // Never rolled back: 409, and the state that says completed stays exactly that.
    const rb = await command(h, 'operator', id, 'rollback', { reason: 'customer changed their mind' });
    expect([rb.status, rb.body.code]).toEqual([409, 'ROLLBACK_NOT_SUPPORTED']);
    expect((await getOperation(h, id)).state).toBe('completed');
    expect(
      await query(h.databaseUrl, `SELECT 1 FROM operation_items WHERE operation_id = $1 AND state <> 'done'`, [id]),
    ).toEqual([]);

    // A restore of an erased resource is refused per ID: erased (not purged).
    const restore = await postRestore(h, { targetType: 'app', ids });
    expect(restore.status, JSON.stringify(restore.body)).toBe(422);
    expect(restore.body.details.counts).toMatchObject({ erased: ids.length, ok: 0 });
    expect(restore.body.details.counts.purged ?? 0).toBe(0);

    // /metrics counts erasures, their items and the keys destroyed.
    const metrics = await request(h.app.server)
      .get('/metrics')
      .set('authorization', `Bearer ${METRICS_TOKEN}`)
      .expect(200);
    expect(Number(/blastgate_snapshot_keys_erased_total (\d+)/.exec(metrics.text)?.[1])).toBeGreaterThanOrEqual(
      ids.length,
    );
    expect(Number(/blastgate_erasures\{state="completed"\} (\d+)/.exec(metrics.text)?.[1])).toBeGreaterThanOrEqual(1);
    expect(Number(/blastgate_erasure_items\{outcome="erased"\} (\d+)/.exec(metrics.text)?.[1])).toBeGreaterThanOrEqual(
      ids.length,
    );
  });

  it('erases resources a delete left soft-deleted (within retention); that delete can then never roll back as success', async () => {
    // The registry adapter: the registry row holds the soft delete (an HTTP adapter leaves it to imports).
    await query(h.databaseUrl, `UPDATE resource_types SET adapter = '{"kind":"registry"}' WHERE name = 'app'`);
    try {
      const ids = appsOf(freshSites(1), APPS);
      const registry = async () =>
        new Set(
          (await query<{ state: string }>(h.databaseUrl, 'SELECT state FROM resources WHERE id = ANY($1)', [ids])).map(
            (r) => r.state,
          ),
        );
      const del = await submitAndStart(h, { ids, rollout: ROLLOUT, haltPolicy: HALT });
      await waitForState(h, del.id, ['completed']);
      expect(await registry()).toEqual(new Set(['soft_deleted']));
      // A second delete of them is refused (already deleted); an erasure takes them.
      const again = await submit({ ids, dryRun: true });
      expect(again.body.details.counts.already_deleted).toBe(ids.length);
      const op = await submitAndStart(h, { ...SPEC, erasure: true, ids, rollout: ROLLOUT, haltPolicy: HALT });
      expect((await waitForState(h, op.id, ['completed', 'completed_with_failures', 'halted', 'paused'])).state).toBe(
        'completed',
      );
      expect(await registry()).toEqual(new Set(['purged']));
      expect((await readSnapshots(ids)).every((r) => !r.ok && r.reason === 'erased')).toBe(true);
      // The delete's rollback has nothing to restore from: it ends rollback_incomplete, never rolled_back.
      await command(h, 'operator', del.id, 'rollback', { reason: 'bring them back' }).expect(200);
      expect((await waitForState(h, del.id, ['rolled_back', 'rollback_incomplete'])).state).toBe('rollback_incomplete');
      const items = await query<{ state: string; last_error: string }>(
        h.databaseUrl,
        'SELECT state, last_error FROM operation_items WHERE operation_id = $1',
        [del.id],
      );
      expect(items.every((x) => x.state === 'restore_failed')).toBe(true);
      // Told apart from a routine purge: an erasure's lastError starts with erased: (README).
      expect(items.every((x) => x.last_error.startsWith('erased: '))).toBe(true);
      expect(await registry()).toEqual(new Set(['purged']));
      expect((await verify()).valid).toBe(true);
    } finally {
      await useHttpAdapter(h, false);
    }
  });

  it('a hard delete applied whose answer was lost: keys stay until the retry is recorded done, then go; applied once', async () => {
    const ids = appsOf(freshSites(1), APPS);
    const seenAtApply: { id: string; live: number }[] = [];
    h.downstream.beforeApply(async (call) => {
      if (call.action !== 'hardDelete' || !ids.includes(call.resourceId!)) return;
      const [k] = await query<{ live: number }>(
        h.databaseUrl,
        'SELECT count(*)::int AS live FROM resource_keys WHERE resource_id = $1 AND erased_at IS NULL',
        [call.resourceId],
      );
      seenAtApply.push({ id: call.resourceId!, live: k!.live });
    });
    h.downstream.failOnly(['hardDelete']);
    h.downstream.failNext(ids.length, 502, { afterApply: true });
    try {
      const op = await submitAndStart(h, {
        ...SPEC,
        erasure: true,
        ids,
        rollout: { ...ROLLOUT, waves: ['100%'] },
        haltPolicy: HALT,
      });
      expect((await waitForState(h, op.id, ['completed', 'completed_with_failures', 'halted', 'paused'])).state).toBe(
        'completed',
      );
      // Applied once each (the retry was answered from the idempotency record), with the key live then.
      expect(seenAtApply.map((x) => x.id).sort()).toEqual([...ids].sort());
      expect(seenAtApply.every((x) => x.live === 1)).toBe(true);
      const sent = h.downstream.calls.filter((c) => c.action === 'hardDelete' && ids.includes(c.resourceId!));
      expect(sent.length).toBeGreaterThan(ids.length);
      expect((await readSnapshots(ids)).every((r) => !r.ok && r.reason === 'erased')).toBe(true);
    } finally {
      h.downstream.beforeApply(undefined);
      h.downstream.failNext(0, 502);
      h.downstream.failOnly(null);
    }
  });

  it('a hard delete applied and answered 500 on every try: the registry view says it may be purged (uncertainPurge)', async () => {
    // A trial: the erasure halted and was aborted, and the app read as active and never touched
    // (deletedBy, uncertainDelete and uncertainPurge all null) while its system had it purged.
    const ids = appsOf(freshSites(1), 1);
    // The first try is applied and answered 500; every later one is answered 500.
    let tried = false;
    h.downstream.answer((c) => (c.action !== 'hardDelete' ? null : tried ? 500 : ((tried = true), null)));
    h.downstream.failOnly(['hardDelete']);
    h.downstream.failNext(1, 500, { afterApply: true });
    try {
      const op = await submitAndStart(h, {
        ...SPEC,
        erasure: true,
        ids,
        rollout: { ...ROLLOUT, waves: ['100%'] },
        haltPolicy: { ...HALT, maxConsecutiveFailures: 1 },
      });
      const end = await waitForState(h, op.id, ['completed', 'completed_with_failures', 'halted', 'paused']);
      expect(end.state).not.toBe('completed');
      await command(h, 'operator', op.id, 'abort', { reason: 'the downstream is failing' }).expect(200);
      expect(h.downstream.state(ids[0]!)).toBe('purged');
      const view = await request(h.app.server)
        .get(`/v1/registry/resources/${ids[0]}`)
        .set('authorization', h.auth('viewer'))
        .expect(200);
      expect(view.body).toMatchObject({ uncertainPurge: { operationId: op.id }, uncertainDelete: null });
    } finally {
      h.downstream.answer(null);
      h.downstream.failNext(0, 500);
      h.downstream.failOnly(null);
    }
  });

  it('an item whose hard delete failed keeps its keys and its readable snapshot; the end does not read as success', async () => {
    const [s] = freshSites(1);
    const ids = appsOf([s!], APPS);
    h.downstream.failOnly(['hardDelete']);
    h.downstream.failAll(422);
    try {
      const op = await submitAndStart(h, {
        ...SPEC,
        erasure: true,
        ids,
        rollout: { ...ROLLOUT, waves: ['100%'] },
        haltPolicy: { ...HALT, maxFailureRate: 1, maxConsecutiveFailures: 100, minSample: 100 },
      });
      const end = await waitForState(h, op.id, ['completed', 'completed_with_failures', 'halted', 'paused']);
      expect(end.state).not.toBe('completed');
      const reads = await readSnapshots(ids);
      expect(reads.length).toBeGreaterThanOrEqual(ids.length);
      expect(reads.every((r) => r.ok)).toBe(true);
      const keys = await query<{ erased_at: Date | null }>(
        h.databaseUrl,
        'SELECT erased_at FROM resource_keys WHERE resource_id = ANY($1)',
        [ids],
      );
      expect(keys.every((k) => k.erased_at === null)).toBe(true);
      expect(
        await query(h.databaseUrl, `SELECT 1 FROM operation_items WHERE operation_id = $1 AND state = 'done'`, [op.id]),
      ).toEqual([]);
      expect(
        await query(
          h.databaseUrl,
          `SELECT 1 FROM audit_events WHERE operation_id = $1 AND action = 'operation.keys_erased'`,
          [op.id],
        ),
      ).toEqual([]);
    } finally {
      h.downstream.failAll(null);
      h.downstream.failOnly(null);
    }
  });

  it('a site erasure with the registry adapter takes its apps and destroys every key of the cascade', async () => {
    await query(h.databaseUrl, `UPDATE resource_types SET adapter = '{"kind":"registry"}'`);
    try {
      const [s] = freshSites(1);
      const site = siteId(s!);
      const apps = appsOf([s!], APPS);
      const op = await submitAndStart(h, {
        ...SPEC,
        targetType: 'site',
        erasure: true,
        ids: [site],
        rollout: { ...ROLLOUT, waves: ['100%'] },
      });
      expect((await waitForState(h, op.id, ['completed', 'completed_with_failures', 'halted'])).state).toBe(
        'completed',
      );
      const states = await query<{ id: string; state: string }>(
        h.databaseUrl,
        'SELECT id, state FROM resources WHERE id = ANY($1) ORDER BY id',
        [[site, ...apps]],
      );
      expect(states.every((r) => r.state === 'purged')).toBe(true);
      const reads = await readSnapshots([site, ...apps]);
      expect(reads.length).toBe(1 + APPS);
      expect(reads.every((r) => !r.ok && r.reason === 'erased')).toBe(true);
      const [done] = await query<{ payload: { items: number; descendants: number; keys: number } }>(
        h.databaseUrl,
        `SELECT payload FROM audit_events WHERE operation_id = $1 AND action = 'operation.keys_erased'`,
        [op.id],
      );
      expect(done!.payload).toMatchObject({ items: 1, descendants: APPS, keys: 1 + APPS });
      expect((await verify()).valid).toBe(true);
    } finally {
      await useHttpAdapter(h, false);
      await query(h.databaseUrl, `UPDATE resource_types SET adapter = '{"kind":"registry"}' WHERE name = 'site'`);
    }
  });
});
