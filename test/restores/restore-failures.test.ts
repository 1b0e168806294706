// Restores that cannot bring everything back never read as success: a snapshot that fails
// verification (edited, or its key erased after the plan) is never restored from, the item fails
// saying why, a parent that comes back without one of its children is a failure for its wave, and
// the restore ends completed_with_failures — or halts and waits, and an abort ends it cancelled —
// listing what did not come back. Plans go stale, and a policy may let restores run unapproved.
import pg from 'pg';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshotStore } from '../../src/modules/snapshots/store.ts';
import { buildExecHarness, waitForState, waitSettled, type ExecHarness } from '../support/execution.ts';
import { command } from '../support/exec-helpers.ts';
import { TEST_SNAPSHOT_KEY_BYTES } from '../support/keys.ts';
import {
  APPS,
  appsOfSite,
  deleteAndComplete,
  getRestore,
  postRestore,
  registryStates,
  restoreItems,
  runRestore,
  useRegistry,
} from '../support/restores.ts';
import { query, seedRegistry, siteId, tenantId } from '../support/seed.ts';

let h: ExecHarness;
let nextSite = 0;
const freshSite = () => nextSite++;
/** Failures finish the restore instead of halting it. */
const LENIENT = { maxFailureRate: 1, maxConsecutiveFailures: 1_000_000 };

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 30, appsPerSite: APPS });
  await useRegistry(h);
});
afterAll(async () => {
  await h?.close();
});

/** Someone with superuser rights goes around the insert-only trigger. */
async function corrupt(deleteOp: string, resourceId: string, hash: string) {
  await query(
    h.databaseUrl,
    `ALTER TABLE snapshots DISABLE TRIGGER snapshots_append_only;
     UPDATE snapshots SET content_hash = '${hash}' WHERE operation_id = '${deleteOp}' AND resource_id = '${resourceId}';
     ALTER TABLE snapshots ENABLE TRIGGER snapshots_append_only;`,
  );
}

describe('snapshots that fail verification are never restored from', () => {
  it('a corrupted app: it fails snapshot_corrupt while its site comes back, and the restore ends completed_with_failures', async () => {
    const s = freshSite();
    const del = await deleteAndComplete(h, 'site', [siteId(s)]);
    const badApp = appsOfSite(s)[1]!;
    await corrupt(del, badApp, 'f'.repeat(64));

    const op = await runRestore(h, { tenantId: tenantId(s), haltPolicy: LENIENT });
    // Not completed: the site is back, one of the apps its delete took is not.
    expect(op.state).toBe('completed_with_failures');
    const items = new Map((await restoreItems(h, op.id)).map((i) => [i.resource_id, i]));
    expect(items.get(badApp)).toMatchObject({
      state: 'failed',
      last_error: expect.stringMatching(/^snapshot_corrupt: /),
    });
    expect(items.get(siteId(s))).toMatchObject({
      state: 'done',
      last_error: expect.stringMatching(new RegExp(`^restored, but 1 of the ${APPS} it took were not: ${badApp}`)),
    });
    const states = await registryStates(h, [siteId(s), ...appsOfSite(s)]);
    for (const x of [siteId(s), ...appsOfSite(s)]) expect(states[x], x).toBe(x === badApp ? 'soft_deleted' : 'active');
    expect(op.counts).toMatchObject({ items: 1 + APPS, restored: APPS, notRestored: 1 });
    expect(op.unfinished).toMatchObject({ count: 1, items: [{ resourceId: badApp, state: 'failed' }] });
    expect(op.haltReason).toMatch(/1 item\(s\) failed/);
  });

  it('a corrupted site: it is not restored, nor are the apps it took', async () => {
    const s = freshSite();
    const del = await deleteAndComplete(h, 'site', [siteId(s)]);
    const [appSnap] = await query<{ content_hash: string }>(
      h.databaseUrl,
      `SELECT content_hash FROM snapshots WHERE operation_id = $1 AND resource_id = $2`,
      [del, appsOfSite(s)[0]],
    );
    await corrupt(del, siteId(s), appSnap!.content_hash); // points at content that is not the site's

    const op = await runRestore(h, { operationId: del, haltPolicy: LENIENT });
    expect(op.state).toBe('completed_with_failures');
    const items = new Map((await restoreItems(h, op.id)).map((i) => [i.resource_id, i]));
    expect(items.get(siteId(s))).toMatchObject({
      state: 'failed',
      last_error: expect.stringMatching(/^snapshot_corrupt: /),
    });
    for (const x of appsOfSite(s))
      expect(items.get(x)).toMatchObject({
        state: 'failed',
        last_error: expect.stringMatching(new RegExp(`^not restored: ${siteId(s)} was not \\(snapshot_corrupt`)),
      });
    const states = await registryStates(h, [siteId(s), ...appsOfSite(s)]);
    expect(Object.values(states)).toEqual(Array(1 + APPS).fill('soft_deleted'));
    expect(op.counts).toMatchObject({ restored: 0, notRestored: 1 + APPS, pending: 0 });
    expect(op.unfinished!.count).toBe(1 + APPS);
  });

  it('a key erased after the plan: the item fails erased, the restore halts and waits, rollback is refused, abort ends it cancelled', async () => {
    const s = freshSite();
    await deleteAndComplete(h, 'site', [siteId(s)]);
    const planned = await postRestore(h, { tenantId: tenantId(s) });
    expect(planned.status, JSON.stringify(planned.body)).toBe(201);
    // A compliance erasure lands between plan and start.
    const client = new pg.Client({ connectionString: h.databaseUrl });
    await client.connect();
    try {
      await client.query('BEGIN');
      await snapshotStore(TEST_SNAPSHOT_KEY_BYTES).erase(client as unknown as pg.PoolClient, [siteId(s)]);
      await client.query('COMMIT');
    } finally {
      await client.end();
    }
    await command(h, 'approver', planned.body.id, 'approve', { planHash: planned.body.planHash }).expect(200);
    await command(h, 'operator', planned.body.id, 'start').expect(200);
    const halted = await waitForState(h, planned.body.id, [
      'halted',
      'completed',
      'completed_with_failures',
      'rolling_back',
    ]);
    expect(halted.state).toBe('halted'); // a restore waits for a human: never rolled back
    expect(halted.haltReason).toMatch(/failure/);
    const items = new Map((await restoreItems(h, planned.body.id)).map((i) => [i.resource_id, i]));
    expect(items.get(siteId(s))).toMatchObject({ state: 'failed', last_error: expect.stringMatching(/^erased: /) });
    for (const x of appsOfSite(s)) expect(items.get(x)!.state).toBe('failed');

    const rb = await command(h, 'operator', planned.body.id, 'rollback', { reason: 'undo' });
    expect([rb.status, rb.body.code]).toEqual([409, 'ROLLBACK_NOT_SUPPORTED']);
    const aborted = await command(h, 'operator', planned.body.id, 'abort', { reason: 'cannot be restored' }).expect(
      200,
    );
    // The abort says what the operator did, and why the restore had halted (its cause is kept).
    expect(aborted.body).toMatchObject({
      state: 'cancelled',
      haltReason: `restore aborted by test-operator: cannot be restored (halted: ${halted.haltReason})`,
    });
    const op = await getRestore(h, planned.body.id);
    expect(op.unfinished!.count).toBe(1 + APPS);
    // The abort gave the resources back once settled; a new restore of them is refused as erased, not in_flight.
    await waitSettled(h, planned.body.id);
    const again = await postRestore(h, { tenantId: tenantId(s) });
    expect(again.status).toBe(422);
    expect(again.body.details.counts).toMatchObject({ erased: 1, in_flight: 0 });
  });
});

describe('plans and policy', () => {
  it('a resource made active again after the plan makes start 409 PLAN_STALE', async () => {
    const s = freshSite();
    await deleteAndComplete(h, 'site', [siteId(s)]);
    const planned = await postRestore(h, { tenantId: tenantId(s) });
    expect(planned.status).toBe(201);
    await request(h.app.server)
      .post('/v1/registry/resources')
      .set('authorization', h.auth('admin'))
      .send({
        resources: [{ id: appsOfSite(s)[0], type: 'app', tenantId: tenantId(s), parentId: siteId(s), state: 'active' }],
      })
      .expect(200);
    await command(h, 'approver', planned.body.id, 'approve', { planHash: planned.body.planHash }).expect(200);
    const start = await command(h, 'operator', planned.body.id, 'start');
    expect(start.status).toBe(409);
    expect(start.body).toMatchObject({
      code: 'PLAN_STALE',
      details: { total: 1, changed: [{ resourceId: appsOfSite(s)[0] }] },
    });
    expect((await getRestore(h, planned.body.id)).state).toBe('approved');
  });

  it('restoreApproval none: a restore with autoStart runs without an approval; required (the default) waits for one', async () => {
    const [a, b] = [freshSite(), freshSite()];
    await deleteAndComplete(h, 'site', [siteId(a), siteId(b)]);
    const waiting = await postRestore(h, { tenantId: tenantId(a), autoStart: true });
    expect(waiting.body.state).toBe('planned');
    await command(h, 'operator', waiting.body.id, 'abort', { reason: 'try without approval' }).expect(200);
    const setPolicy = (restoreApproval: string) =>
      request(h.app.server)
        .put('/v1/admin/policy')
        .set('authorization', h.auth('admin'))
        .send({ budgets: { maxTenants: 50, maxItems: 100_000 }, restoreApproval })
        .expect(200);
    expect((await setPolicy('none')).body.restoreApproval).toBe('none');
    try {
      const r = await postRestore(h, { tenantId: tenantId(b), autoStart: true, rollout: { concurrency: 4 } });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      expect(['running', 'baking', 'completed']).toContain(r.body.state);
      expect((await waitForState(h, r.body.id, ['completed', 'completed_with_failures', 'halted'])).state).toBe(
        'completed',
      );
      expect(Object.values(await registryStates(h, [siteId(b), ...appsOfSite(b)]))).toEqual(
        Array(1 + APPS).fill('active'),
      );
      const audit = await query<{ action: string; payload: { approval?: string } }>(
        h.databaseUrl,
        `SELECT action, payload FROM audit_events WHERE operation_id = $1 ORDER BY seq`,
        [r.body.id],
      );
      expect(audit[0]).toMatchObject({
        action: 'restore.planned',
        payload: { approval: expect.stringMatching(/^not required/) },
      });
      expect(audit.map((e) => e.action)).not.toContain('operation.approved');
    } finally {
      await setPolicy('required');
    }
  });

  it('a restore with autoStart while a global freeze is in effect is 409 FROZEN, and nothing is planned', async () => {
    const a = freshSite();
    await deleteAndComplete(h, 'site', [siteId(a)]);
    const freeze = (frozen: boolean) =>
      request(h.app.server)
        .put('/v1/admin/freeze')
        .set('authorization', h.auth('admin'))
        .send({ frozen, reason: frozen ? 'INC-12' : 'INC-12 over' })
        .expect(200);
    await freeze(true);
    try {
      const before = await query<{ n: number }>(h.databaseUrl, `SELECT count(*)::int AS n FROM operations`);
      // It sat approved, saying why only in the server's log, and did not start after the freeze (a trial).
      const r = await postRestore(h, { tenantId: tenantId(a), autoStart: true });
      expect(r.status, JSON.stringify(r.body)).toBe(409);
      expect(r.body).toMatchObject({ code: 'FROZEN', message: expect.stringContaining('(INC-12)') });
      expect(await query(h.databaseUrl, `SELECT count(*)::int AS n FROM operations`)).toEqual(before);
      // Without autoStart it is planned as usual, to be started after the freeze.
      expect((await postRestore(h, { tenantId: tenantId(a) })).status).toBe(201);
    } finally {
      await freeze(false);
    }
  });
});
