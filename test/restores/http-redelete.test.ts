// A resource that Blastgate deleted through an HTTP adapter keeps its registry row's state (the
// system of record says what it is, by import). A second delete of it must still be refused as
// already_deleted: planned `ok`, it was sent a second delete, snapshotted in its deleted state, and
// the second operation's rollback then restored it, undoing the first delete without anyone
// asking. A delete undone (restore), or an import saying it is active, makes it plannable again.
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildExecHarness, type ExecHarness } from '../support/execution.ts';
import { command } from '../support/exec-helpers.ts';
import { submitAndStart, waitForState } from '../support/execution.ts';
import { appsOfSite, deleteAndComplete, runRestore, useHttp, useRegistry } from '../support/restores.ts';
import { query, seedRegistry, siteId } from '../support/seed.ts';

let h: ExecHarness;

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 6, appsPerSite: 3 });
  await useHttp(h);
});
afterAll(async () => {
  await h?.close();
});
beforeEach(() => h.downstream.reset());

const plan = (ids: string[]) =>
  request(h.app.server)
    .post('/v1/operations')
    .set('authorization', h.auth('requester'))
    .send({ targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-2', ids, dryRun: true });
const resourceView = async (id: string) =>
  (await request(h.app.server).get(`/v1/registry/resources/${id}`).set('authorization', h.auth('viewer')).expect(200))
    .body as { state: string; deletedBy: { operationId: string; mode: string } | null };
/** An import of the row as it stands, with `extra` (state omitted unless given). */
async function importRow(id: string, extra: object) {
  const [row] = await query<{ type: string; tenant_id: string; parent_id: string | null }>(
    h.databaseUrl,
    'SELECT type, tenant_id, parent_id FROM resources WHERE id = $1',
    [id],
  );
  await request(h.app.server)
    .post('/v1/registry/resources')
    .set('authorization', h.auth('admin'))
    .send({ resources: [{ id, type: row!.type, tenantId: row!.tenant_id, parentId: row!.parent_id, ...extra }] })
    .expect(200);
}
const operationCount = async () =>
  (await query<{ n: number }>(h.databaseUrl, `SELECT count(*)::int AS n FROM operations WHERE state <> 'rejected'`))[0]!
    .n;

describe('a second delete of what an HTTP adapter already deleted', () => {
  it('is refused per ID as already_deleted (soft_deleted), sends nothing and plans nothing (the rejection is recorded)', async () => {
    const [a, b, c] = appsOfSite(1);
    await deleteAndComplete(h, 'app', [a!, b!]);
    const states = await query<{ state: string }>(h.databaseUrl, 'SELECT state FROM resources WHERE id = ANY($1)', [
      [a, b],
    ]);
    expect(states.map((s) => s.state)).toEqual(['active', 'active']); // the row is left alone
    // The registry views say it all the same: the row's state is the owning system's, and
    // deletedBy is Blastgate's delete that stands.
    const first = (
      await query<{ id: string }>(h.databaseUrl, `SELECT operation_id AS id FROM snapshots WHERE resource_id = $1`, [a])
    )[0]!.id;
    const view = await request(h.app.server)
      .get(`/v1/registry/resources/${a}`)
      .set('authorization', h.auth('viewer'))
      .expect(200);
    expect(view.body).toMatchObject({
      state: 'active',
      deletedBy: { operationId: first, mode: 'soft', at: expect.any(String) },
    });
    const list = await request(h.app.server)
      .get(`/v1/registry/resources?parentId=${siteId(1)}`)
      .set('authorization', h.auth('viewer'))
      .expect(200);
    expect(list.body.items.map((r: { id: string; deletedBy: unknown }) => [r.id, r.deletedBy !== null])).toEqual([
      [a, true],
      [b, true],
      [c, false],
    ]);
    // The owning system confirming the delete (an import of its state) keeps it so.
    await importRow(b!, { state: 'soft_deleted' });
    expect(await resourceView(b!)).toMatchObject({ state: 'soft_deleted', deletedBy: { mode: 'soft' } });
    h.downstream.reset();
    const before = await operationCount();
    const res = await request(h.app.server)
      .post('/v1/operations')
      .set('authorization', h.auth('requester'))
      .send({ targetType: 'app', reason: 'Run the script again', ticket: 'CHG-3', ids: [a, b, c] });
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    expect(res.body.code).toBe('PLAN_REJECTED');
    expect(res.body.details.counts).toMatchObject({ ok: 1, already_deleted: 2 });
    expect(res.body.details.offenders.already_deleted).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ id: a, state: 'soft_deleted' }),
        expect.objectContaining({ id: b, state: 'soft_deleted' }),
      ]),
    );
    // The recorded full report says the same, state included.
    const report = await request(h.app.server)
      .get(res.body.details.reportUrl)
      .set('authorization', h.auth('viewer'))
      .expect(200);
    expect(report.body.items).toEqual([
      expect.objectContaining({ id: a, class: 'already_deleted', state: 'soft_deleted' }),
      expect.objectContaining({ id: b, class: 'already_deleted', state: 'soft_deleted' }),
    ]);
    expect(h.downstream.calls).toHaveLength(0);
    expect(await operationCount()).toBe(before);
  });

  it('is planned again once a restore brought it back', async () => {
    const [a] = appsOfSite(2);
    const deleted = await deleteAndComplete(h, 'app', [a!]);
    expect((await plan([a!])).status).toBe(422);
    // Imports that change the row but say nothing of its state neither supersede the delete
    // (the restore below must still take it) nor undo it.
    await importRow(a!, { protected: true });
    await importRow(a!, { protected: false });
    expect((await plan([a!])).status).toBe(422);
    const restore = await runRestore(h, { operationId: deleted });
    expect(restore.state).toBe('completed');
    expect((await resourceView(a!)).deletedBy).toBeNull();
    const again = await plan([a!]);
    expect(again.status, JSON.stringify(again.body)).toBe(200);
    expect(again.body.plan.itemCount).toBe(1);
  });

  it('is planned again once an import says it is active (brought back in its own system), not after a routine sync', async () => {
    const [a] = appsOfSite(3);
    await deleteAndComplete(h, 'app', [a!]);
    expect((await plan([a!])).status).toBe(422);
    const [row] = await query<{ type: string; tenant_id: string; parent_id: string | null; purge_after: Date | null }>(
      h.databaseUrl,
      'SELECT type, tenant_id, parent_id, purge_after FROM resources WHERE id = $1',
      [a],
    );
    expect(row!.purge_after).not.toBeNull();
    const upsert = (extra: object) =>
      request(h.app.server)
        .post('/v1/registry/resources')
        .set('authorization', h.auth('admin'))
        .send({ resources: [{ id: a, type: row!.type, tenantId: row!.tenant_id, parentId: row!.parent_id, ...extra }] })
        .expect(200);
    // A routine sync omits the state: it must not undo Blastgate's delete.
    await upsert({});
    expect((await plan([a!])).status).toBe(422);
    // Nor does one that changes something else of the row (a protection set and lifted).
    await importRow(a!, { protected: true });
    await importRow(a!, { protected: false });
    const again = await plan([a!]);
    expect(again.status, JSON.stringify(again.body)).toBe(422);
    expect(again.body.details.counts).toMatchObject({ already_deleted: 1 });
    expect((await resourceView(a!)).deletedBy).toMatchObject({ mode: 'soft' });
    // The system of record says it is active: it was brought back there. Its retention ends with it
    // (no purge may hard-delete it), and it may be planned again.
    await upsert({ state: 'active' });
    const [after] = await query<{ purge_after: Date | null }>(
      h.databaseUrl,
      'SELECT purge_after FROM resources WHERE id = $1',
      [a],
    );
    expect(after!.purge_after).toBeNull();
    expect((await resourceView(a!)).deletedBy).toBeNull();
    expect((await plan([a!])).status).toBe(200);
  });
});

describe('a cascade over what an HTTP adapter already deleted', () => {
  // The same hazard one level down: a site delete whose cascade takes an app Blastgate deleted
  // earlier would snapshot it in its deleted state, and the site's rollback would restore it.
  it('leaves the deleted app out of the plan, the start and the rollback; the others are taken and brought back', async () => {
    const s = 4;
    const [a, b, c] = appsOfSite(s);
    h.downstream.cascade(siteId(s), appsOfSite(s));
    await deleteAndComplete(h, 'app', [a!]);
    const dry = await request(h.app.server)
      .post('/v1/operations')
      .set('authorization', h.auth('requester'))
      .send({ targetType: 'site', reason: 'Decommission the site', ticket: 'CHG-4', ids: [siteId(s)], dryRun: true });
    expect(dry.status, JSON.stringify(dry.body)).toBe(200);
    expect(dry.body.plan.itemCount).toBe(3); // the site, b and c
    expect(dry.body.plan.cascade).toEqual([{ type: 'app', count: 2 }]);
    // Said, not silent: the registry row reads active, the plan names it as already deleted.
    expect(dry.body.plan.cascadeLeftOut).toEqual([{ type: 'app', count: 1, ids: [a] }]);

    const from = h.downstream.calls.length;
    // The start's plan-freshness check must not read the app left out as a new descendant.
    const op = await deleteAndComplete(h, 'site', [siteId(s)]);
    const items = await query<{ resource_id: string }>(
      h.databaseUrl,
      'SELECT resource_id FROM operation_items WHERE operation_id = $1 ORDER BY seq',
      [op],
    );
    expect(items.map((i) => i.resource_id)).toEqual([siteId(s), b, c]);
    const callsOfA = () => h.downstream.calls.slice(from).filter((x) => x.resourceId === a);
    expect(callsOfA()).toEqual([]);

    await command(h, 'operator', op, 'rollback', { reason: 'wrong site' }).expect(200);
    expect((await waitForState(h, op, ['rolled_back', 'rollback_incomplete'])).state).toBe('rolled_back');
    expect(h.downstream.state(siteId(s))).toBe('active');
    expect(h.downstream.state(b!)).toBe('active');
    expect(h.downstream.state(c!)).toBe('active');
    expect(h.downstream.state(a!)).toBe('soft_deleted'); // the first delete stands
    expect(callsOfA()).toEqual([]);
  });

  it('a start finds the app new again when its delete was undone after the plan (PLAN_STALE names it)', async () => {
    const s = 5;
    const [a] = appsOfSite(s);
    h.downstream.cascade(siteId(s), appsOfSite(s));
    const first = await deleteAndComplete(h, 'app', [a!]);
    const site = await submitAndStart(
      h,
      {
        targetType: 'site',
        ids: [siteId(s)],
        rollout: { bakeSeconds: 0, waves: ['100%'] },
        haltPolicy: { probe: 'optional' },
      },
      false,
    );
    expect((await runRestore(h, { operationId: first })).state).toBe('completed');
    const start = await command(h, 'operator', site.id, 'start');
    expect(start.status, JSON.stringify(start.body)).toBe(409);
    expect(start.body.code).toBe('PLAN_STALE');
    expect(start.body.details.changed).toEqual([expect.objectContaining({ resourceId: a, planned: null })]);
    // Not "changed in the registry" (its row did not change), and what to do: the stale operation's
    // locks refuse a new plan until it is aborted.
    expect(start.body.message).toContain(
      `would now be taken by its cascade (e.g. ${a}, now active under ${siteId(s)})`,
    );
    expect(start.body.message).toContain('Abort this operation');
    await command(h, 'operator', site.id, 'abort', { reason: 'stale' }).expect(200);
    const again = await request(h.app.server)
      .post('/v1/operations')
      .set('authorization', h.auth('requester'))
      .send({ targetType: 'site', reason: 'Decommission the site', ticket: 'CHG-5', ids: [siteId(s)], dryRun: true });
    expect(again.status, JSON.stringify(again.body)).toBe(200);
    expect(again.body.plan.cascade).toEqual([{ type: 'app', count: 3 }]);
  });
});

describe('deletedBy with the registry adapter', () => {
  it('names the delete of a soft-deleted row, and is null again once a restore brought it back', async () => {
    await useRegistry(h);
    try {
      const [a] = appsOfSite(0);
      const op = await deleteAndComplete(h, 'app', [a!]);
      expect(await resourceView(a!)).toMatchObject({
        state: 'soft_deleted',
        deletedBy: { operationId: op, mode: 'soft' },
      });
      expect((await runRestore(h, { operationId: op })).state).toBe('completed');
      expect(await resourceView(a!)).toMatchObject({ state: 'active', deletedBy: null });
    } finally {
      await useHttp(h);
    }
  });
});
