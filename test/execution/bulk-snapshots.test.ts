// Bulk snapshot reads (snapshotBatch) on the real stack (API, an in-process worker, a real
// downstream): an operation reads its items' snapshots in bulk and stores them before any delete;
// an ID the bulk answer leaves out fails that item exactly as a failed single snapshot does (no
// snapshot, no call, "snapshot failed: …"); a bad declaration is refused with a 422.
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { appsOf, isDrillCall } from '../support/exec-helpers.ts';
import {
  buildExecHarness,
  submitAndStart,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { query, seedRegistry } from '../support/seed.ts';

const APPS = 4;
const ROLLOUT = { bakeSeconds: 0, concurrency: 2, waves: ['100%'] };
const ENDED = ['completed', 'completed_with_failures', 'rolled_back', 'rollback_incomplete', 'halted', 'paused'];

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 10, appsPerSite: APPS });
});
afterAll(async () => {
  await h?.close();
});
beforeEach(() => h.downstream.reset());

const itemsOf = (opId: string) =>
  query<{ resource_id: string; state: string; last_error: string | null; snapshot_id: string | null }>(
    h.databaseUrl,
    'SELECT resource_id, state, last_error, snapshot_id FROM operation_items WHERE operation_id = $1 ORDER BY seq',
    [opId],
  );
const run = async (ids: string[], haltPolicy: Record<string, unknown> = { probe: 'optional' }) => {
  const op = await submitAndStart(h, { ids, targetType: 'app', rollout: ROLLOUT, haltPolicy });
  const end = await waitForState(h, op.id, ENDED, 60_000);
  return { op, end, items: await itemsOf(op.id) };
};

describe('an adapter that declares snapshotBatch', () => {
  it('reads snapshots in bulk, stores them, then deletes: no per-item snapshot read', async () => {
    await useHttpAdapter(h, false, { snapshotBatch: 'POST /apps/snapshots' });
    const ids = appsOf([0, 1], APPS);
    const { end, items } = await run(ids);
    expect(end.state).toBe('completed');
    expect(items.every((i) => i.state === 'done' && i.snapshot_id !== null)).toBe(true);
    const calls = h.downstream.calls.filter((c) => !isDrillCall(c));
    expect(calls.filter((c) => c.action === 'snapshot')).toEqual([]);
    const read = calls.filter((c) => c.action === 'snapshotBatch').flatMap((c) => c.resourceIds);
    expect(new Set(read)).toEqual(new Set(ids));
    // Each item's delete came after the bulk read that held it.
    for (const id of ids) {
      const readAt = calls.find((c) => c.action === 'snapshotBatch' && c.resourceIds?.includes(id))!.seq;
      const del = calls.find((c) => c.action === 'softDelete' && c.resourceId === id)!.seq;
      expect(del).toBeGreaterThan(readAt);
    }
  });

  it('fails an ID absent from the bulk answer as a failed snapshot: no snapshot, no call; the rest go on', async () => {
    await useHttpAdapter(h, false, { snapshotBatch: 'POST /apps/snapshots' });
    const ids = appsOf([2, 3, 4], APPS);
    const missing = ids[5]!;
    h.downstream.snapshotBatchOmits([missing]);
    const { end, items } = await run(ids, { probe: 'optional', maxFailureRate: 0.5 });
    expect(end.state).toBe('completed_with_failures');
    expect(items.find((i) => i.resource_id === missing)).toEqual({
      resource_id: missing,
      state: 'failed',
      last_error: 'snapshot failed: absent from the snapshotBatch answer',
      snapshot_id: null,
    });
    expect(items.filter((i) => i.resource_id !== missing).every((i) => i.state === 'done')).toBe(true);
    expect(h.downstream.calls.filter((c) => c.resourceId === missing && c.action === 'softDelete')).toEqual([]);
  });

  it('is refused with a 422 naming the field when it is not "POST /path"', async () => {
    const res = await request(h.app.server)
      .put('/v1/registry/types')
      .set('authorization', h.auth('admin'))
      .send({
        types: [
          {
            name: 'app',
            idPattern: '^app_[0-9_]+$',
            parentType: 'site',
            adapter: {
              kind: 'http',
              baseUrl: h.downstream.url,
              snapshot: 'GET /apps/{id}',
              snapshotBatch: 'GET /apps/{id}',
              softDelete: 'POST /apps/{id}/soft-delete',
              restore: 'POST /apps/{id}/restore',
              hardDelete: 'DELETE /apps/{id}',
            },
          },
        ],
      });
    expect(res.status).toBe(422);
    expect(res.body.details).toEqual([
      expect.objectContaining({
        field: 'types[0].adapter.snapshotBatch',
        problem: 'invalid_method',
        allowed: ['POST'],
      }),
    ]);
  });
});
