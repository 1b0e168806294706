// A rollback sends its restores through the adapter its types are declared with now. After the
// type of an HTTP delete was re-declared to the registry, the rollback "restored" the registry rows
// (which an HTTP delete leaves active), sent nothing, and read rolled_back while the apps stayed
// deleted in their system; re-pointed at another URL, it restored into a system the delete never
// called (a probe). It is refused now (409 ADAPTER_CHANGED) until the adapter reaches the system
// the delete went through.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { command, ownCalls } from '../support/exec-helpers.ts';
import {
  buildExecHarness,
  getOperation,
  submitAndStart,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { appsOfSite, deleteAndComplete, postPurge, postRestore } from '../support/restores.ts';
import { query, seedRegistry, tenantId } from '../support/seed.ts';

let h: ExecHarness;

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 4, appsPerSite: 3 });
});
afterAll(async () => {
  await h?.close();
});

const declareApps = (adapter: Record<string, unknown>) =>
  request(h.app.server)
    .put('/v1/registry/types')
    .set('authorization', h.auth('admin'))
    .send({ types: [{ name: 'app', parentType: 'site', adapter }] });
const adapterOfApps = async () =>
  (
    await query<{ adapter: Record<string, unknown> }>(
      h.databaseUrl,
      `SELECT adapter FROM resource_types WHERE name = 'app'`,
    )
  )[0]!.adapter;

describe('a rollback after the type was re-declared to another system', () => {
  it('is refused, sends nothing, and runs once the adapter reaches the system the delete used again', async () => {
    await useHttpAdapter(h, false);
    const http = await adapterOfApps();
    const apps = appsOfSite(0);
    for (const x of apps)
      h.downstream.resources.set(x, { id: x, tenantId: tenantId(0), state: 'active', data: { name: x } });
    const del = await deleteAndComplete(h, 'app', apps);

    for (const other of [{ kind: 'registry' }, { ...http, baseUrl: 'http://127.0.0.1:9' }]) {
      expect((await declareApps(other)).status).toBe(200);
      const r = await command(h, 'operator', del, 'rollback', { reason: 'undo the cleanup' });
      expect(r.status, JSON.stringify(r.body)).toBe(409);
      expect(r.body).toMatchObject({
        code: 'ADAPTER_CHANGED',
        details: { changed: [{ type: 'app', was: `http ${h.downstream.url.replace(/\/$/, '')}` }] },
      });
      expect((await getOperation(h, del)).state).toBe('completed');
      // A restore of what it deleted would go there too: refused per ID, by operation and by ID.
      for (const scope of [{ operationId: del }, { targetType: 'app', ids: apps }]) {
        const restore = await postRestore(h, { ...scope, dryRun: true });
        expect(restore.status, JSON.stringify(restore.body)).toBe(422);
        expect(restore.body).toMatchObject({
          code: 'PLAN_REJECTED',
          details: { counts: { ok: 0, adapter_changed: apps.length } },
        });
      }
      // So would a purge's hard deletes (a system that never had them may answer 404, "already
      // gone"): refused by ID, left out of the operation's scope.
      const byIds = await postPurge(h, { targetType: 'app', ids: apps, dryRun: true });
      expect(byIds.status, JSON.stringify(byIds.body)).toBe(422);
      expect(byIds.body).toMatchObject({ details: { counts: { ok: 0, adapter_changed: apps.length } } });
      const ofOp = await postPurge(h, { operationId: del, dryRun: true });
      expect(ofOp.status, JSON.stringify(ofOp.body)).toBe(422);
      expect(ofOp.body).toMatchObject({
        code: 'NOTHING_TO_PURGE',
        details: { leftOut: { adapterChanged: apps.length } },
      });
    }
    expect(ownCalls(h, 'restore')).toEqual([]);
    // Declared as it was, a restore plans (the rollback below runs instead).
    expect((await declareApps(http)).status).toBe(200);
    expect((await postRestore(h, { operationId: del, dryRun: true })).status).toBe(200);

    // Declared as it was (a new timeout is still the same system), the rollback runs.
    expect((await declareApps({ ...http, timeoutMs: 6_000 })).status).toBe(200);
    await command(h, 'operator', del, 'rollback', { reason: 'undo the cleanup' }).expect(200);
    expect((await waitForState(h, del, ['rolled_back', 'rollback_incomplete'])).state).toBe('rolled_back');
    expect(apps.map((x) => h.downstream.state(x))).toEqual(apps.map(() => 'active'));
  });
});

describe('an operation started after its type was re-declared', () => {
  it('is refused, and stays approved', async () => {
    await useHttpAdapter(h, false);
    const http = await adapterOfApps();
    const planned = await submitAndStart(
      h,
      { ids: appsOfSite(1), rollout: { waves: ['100%'], bakeSeconds: 0 } },
      false,
    );
    try {
      expect((await declareApps({ kind: 'registry' })).status).toBe(200);
      const start = await command(h, 'operator', planned.id, 'start');
      expect(start.status, JSON.stringify(start.body)).toBe(409);
      expect(start.body.code).toBe('ADAPTER_CHANGED');
      expect((await getOperation(h, planned.id)).state).toBe('approved');
    } finally {
      await declareApps(http);
      await command(h, 'operator', planned.id, 'cancel', { reason: 'done with it' });
    }
  });
});

// Each chunk builds its adapter from the type's row as it is then: a declaration accepted mid-run
// sent the rest of a running operation's calls to the system declared now (or, to the registry,
// recorded "done" items never touched in their own system). It is refused while one that has
// started holds its resources (409 ADAPTER_IN_USE), and nothing is written.
describe("re-declaring a type's adapter while an operation acts on it", () => {
  it('is refused for a running and a halted operation; the running one completes in its own system', async () => {
    await useHttpAdapter(h, false);
    const http = await adapterOfApps();
    const apps = appsOfSite(3);
    for (const x of apps)
      h.downstream.resources.set(x, { id: x, tenantId: tenantId(3), state: 'active', data: { name: x } });
    h.downstream.hang(1_500);
    let running: string;
    try {
      running = (await submitAndStart(h, { ids: apps, rollout: { waves: ['100%'], bakeSeconds: 0 } })).id;
      await waitForState(h, running, ['running']);
      for (const other of [{ kind: 'registry' }, { ...http, baseUrl: 'http://127.0.0.1:9' }]) {
        const r = await declareApps(other);
        expect(r.status, JSON.stringify(r.body)).toBe(409);
        expect(r.body).toMatchObject({
          code: 'ADAPTER_IN_USE',
          details: {
            inUse: [{ type: 'app', operationId: running, was: `http ${h.downstream.url.replace(/\/$/, '')}` }],
          },
        });
        expect(await adapterOfApps()).toEqual(http);
      }
      // A change that keeps the system (a timeout) is accepted.
      expect((await declareApps({ ...http, timeoutMs: 6_000 })).status).toBe(200);
    } finally {
      h.downstream.hang(0);
    }
    expect((await waitForState(h, running, ['completed', 'completed_with_failures', 'halted'])).state).toBe(
      'completed',
    );
    expect(apps.map((x) => h.downstream.state(x))).toEqual(apps.map(() => 'soft_deleted'));

    // Halted, it still holds its resources: refused too, while a planned one is left to its start.
    h.downstream.failOnly(['softDelete']);
    h.downstream.failNext(1_000, 500);
    try {
      const halted = await submitAndStart(h, {
        ids: appsOfSite(2),
        rollout: { waves: ['100%'], bakeSeconds: 0 },
        haltPolicy: { probe: 'optional', onHalt: 'pause', maxConsecutiveFailures: 1 },
      });
      expect((await waitForState(h, halted.id, ['halted', 'paused', 'completed_with_failures'])).state).toBe('halted');
      const r = await declareApps({ kind: 'registry' });
      expect(r.status, JSON.stringify(r.body)).toBe(409);
      expect(r.body).toMatchObject({ code: 'ADAPTER_IN_USE', details: { inUse: [{ operationId: halted.id }] } });

      // Declared so before this check existed (written as that declaration did): neither a resume
      // nor a rollback goes through the other system.
      await query(h.databaseUrl, `UPDATE resource_types SET adapter = '{"kind":"registry"}' WHERE name = 'app'`);
      for (const [cmd, body] of [
        ['resume', {}],
        ['rollback', { reason: 'undo' }],
      ] as const) {
        const c = await command(h, 'operator', halted.id, cmd, body);
        expect(c.status, `${cmd} ${JSON.stringify(c.body)}`).toBe(409);
        expect(c.body.code).toBe('ADAPTER_CHANGED');
        expect((await getOperation(h, halted.id)).state).toBe('halted');
      }
    } finally {
      h.downstream.failOnly(null);
      h.downstream.failNext(0, 500);
      await query(h.databaseUrl, `UPDATE resource_types SET adapter = $1 WHERE name = 'app'`, [http]);
    }
  });
});
