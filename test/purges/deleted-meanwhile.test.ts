// A registry-adapter resource that an import marks soft_deleted while a soft delete of it runs (its
// own system deleted it first) is recorded done by the delete, which found its outcome in place: it
// must get the operation's retention like the rest, or a purge of everything due never takes it
// (a trial: 1 of 1,000 deleted apps kept purgeAfter null; only the same-database chunk missed it,
// the general path's record gave it one). A rollback or a restore of that delete leaves it
// soft_deleted, as the import said, and clears that retention again: Blastgate did not delete it.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { command } from '../support/exec-helpers.ts';
import {
  buildExecHarness,
  getOperation,
  submitAndStart,
  until,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { ndjson } from '../support/registry-fixtures.ts';
import { appsOfSite, runRestore, useRegistry } from '../support/restores.ts';
import { query, seedRegistry, siteId, tenantId } from '../support/seed.ts';

const DAY = 86_400_000;
const ENDS = ['completed', 'completed_with_failures', 'halted', 'paused', 'rolled_back', 'rollback_incomplete'];

let h: ExecHarness;
let nextSite = 0;

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 8, appsPerSite: 3 });
  await useRegistry(h);
});
afterAll(async () => {
  await h?.close();
});

/** The owning system says it deleted these (NDJSON import with an explicit state). */
const importDeleted = (rows: { id: string; type: string; tenantId: string }[]) =>
  request(h.app.server)
    .post('/v1/registry/resources')
    .set('authorization', h.auth('admin'))
    .set('content-type', 'application/x-ndjson')
    .send(ndjson(rows.map((r) => ({ ...r, state: 'soft_deleted' }))))
    .expect(200);

/** A dry run of a purge of everything due now. */
const dueNow = () =>
  request(h.app.server)
    .post('/v1/purges')
    .set('authorization', h.auth('requester'))
    .send({ reason: 'Retention ended', ticket: 'CHG-2211', dueBefore: new Date().toISOString(), dryRun: true });

const rowsOf = async (ids: string[]) =>
  Object.fromEntries(
    (
      await query<{ id: string; state: string; purge_after: Date | null }>(
        h.databaseUrl,
        'SELECT id, state, purge_after FROM resources WHERE id = ANY($1)',
        [ids],
      )
    ).map((r) => [r.id, { state: r.state, purgeAfter: r.purge_after }]),
  );

/**
 * A soft delete of `ids` (two tenants: a canary wave, then the other after a bake) during whose bake
 * `gone` is imported as soft_deleted; returns the operation once it ended.
 */
async function deleteWithImportInBake(
  targetType: string,
  ids: string[],
  gone: { id: string; type: string; tenantId: string },
) {
  const op = await submitAndStart(h, {
    targetType,
    ids,
    rollout: { bakeSeconds: 3, concurrency: 4, waves: ['1', '100%'], restoreDrill: false },
    haltPolicy: { probe: 'optional' },
  });
  await until(async () => {
    const v = await getOperation(h, op.id);
    return v.state === 'baking' && v.currentWave === 0;
  }, 'the canary wave to bake');
  await importDeleted([gone]);
  return { id: op.id, end: await waitForState(h, op.id, ENDS) };
}

/**
 * Checks the retention of what the delete recorded done, undoes the delete (its rollback, or a
 * restore of the operation), and checks what is left.
 */
async function expectRetainedThenUndone(
  opId: string,
  all: string[],
  gone: string,
  before: number,
  undo: 'rollback' | 'restore' = 'rollback',
) {
  const items = await query<{ resource_id: string; state: string; snapshot_id: string | null }>(
    h.databaseUrl,
    'SELECT resource_id, state, snapshot_id FROM operation_items WHERE operation_id = $1',
    [opId],
  );
  expect(items.find((i) => i.resource_id === gone)).toMatchObject({ state: 'done' });
  expect(items.find((i) => i.resource_id === gone)!.snapshot_id).not.toBeNull();
  const after = await rowsOf(all);
  for (const id of all) {
    expect(after[id]!.state, id).toBe('soft_deleted');
    // The operation's retention (the policy's 30 days), the one already deleted included.
    expect(after[id]!.purgeAfter, id).not.toBeNull();
    expect(after[id]!.purgeAfter!.getTime(), id).toBeGreaterThanOrEqual(before + 30 * DAY - 1000);
    expect(after[id]!.purgeAfter!.getTime(), id).toBeLessThanOrEqual(Date.now() + 30 * DAY);
  }
  const view = await request(h.app.server)
    .get(`/v1/registry/resources/${gone}`)
    .set('authorization', h.auth('viewer'))
    .expect(200);
  expect(view.body.purgeAfter).toBe(after[gone]!.purgeAfter!.toISOString());
  // Once their retention ends, a purge of everything due takes them all, that one too.
  await query(h.databaseUrl, `UPDATE resources SET purge_after = now() - interval '1 day' WHERE id = ANY($1)`, [all]);
  const due = await dueNow();
  expect(due.status, JSON.stringify(due.body)).toBe(200);
  expect(due.body.plan.itemCount, JSON.stringify(due.body)).toBe(all.length);

  if (undo === 'rollback') {
    await command(h, 'operator', opId, 'rollback', { reason: 'wrong apps' }).expect(200);
    expect((await waitForState(h, opId, ['rolled_back', 'rollback_incomplete'])).state).toBe('rolled_back');
  } else {
    const r = await runRestore(h, { operationId: opId });
    expect(r.state, JSON.stringify(r)).toBe('completed');
  }
  const back = await rowsOf(all);
  for (const id of all)
    expect(back[id], id).toEqual(
      // As before the operation: the one its own system deleted stays so, with no retention of
      // Blastgate's (a purge of everything due does not take it); the rest is active again.
      id === gone ? { state: 'soft_deleted', purgeAfter: null } : { state: 'active', purgeAfter: null },
    );
  expect((await dueNow()).body.code).toBe('NOTHING_TO_PURGE');
}

describe('a soft delete of a resource that an import marks soft_deleted while it runs', () => {
  it('same-database chunk (apps): records it done with the operation’s retention; a rollback leaves it deleted without one', async () => {
    const [a, b] = [nextSite++, nextSite++];
    const ids = [...appsOfSite(a), ...appsOfSite(b)];
    const gone = appsOfSite(b)[1]!;
    const before = Date.now();
    const { id, end } = await deleteWithImportInBake('app', ids, { id: gone, type: 'app', tenantId: tenantId(b) });
    expect(end.state, JSON.stringify(end)).toBe('completed');
    await expectRetainedThenUndone(id, ids, gone, before);
  });

  it('same-database chunk: a restore of the operation leaves it deleted without a retention too', async () => {
    const [a, b] = [nextSite++, nextSite++];
    const ids = [...appsOfSite(a), ...appsOfSite(b)];
    const gone = appsOfSite(b)[2]!;
    const before = Date.now();
    const { id, end } = await deleteWithImportInBake('app', ids, { id: gone, type: 'app', tenantId: tenantId(b) });
    expect(end.state, JSON.stringify(end)).toBe('completed');
    await expectRetainedThenUndone(id, ids, gone, before, 'restore');
  });

  it('general path (sites with their cascade): the same', async () => {
    const [a, b] = [nextSite++, nextSite++];
    const all = [a, b].flatMap((s) => [siteId(s), ...appsOfSite(s)]);
    const gone = siteId(b);
    const before = Date.now();
    const { id, end } = await deleteWithImportInBake('site', [siteId(a), siteId(b)], {
      id: gone,
      type: 'site',
      tenantId: tenantId(b),
    });
    expect(end.state, JSON.stringify(end)).toBe('completed');
    await expectRetainedThenUndone(id, all, gone, before);
  });
});
