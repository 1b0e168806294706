// A purge or an erasure aborted while its hard delete is out ends at once (cancelled), but the call
// may still land. Its resources were released with the abort: a restore of the same resource was
// planned, ran and read completed, and then the hard delete landed and purged it; a second purge
// sent a second hard delete under another key; a rollback of the delete read rolled_back over a
// resource that ended purged (a probe). An aborted operation now holds its resources until its run
// is settled (execution/settle-aborted.ts), and then lets them go.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { command, isDrillCall } from '../support/exec-helpers.ts';
import { buildExecHarness, submitAndStart, until, waitForState, type ExecHarness } from '../support/execution.ts';
import {
  APPS,
  appsOfSite,
  deleteAndComplete,
  ONE_LANE,
  postPurge as postPurgeAs,
  postRestore,
  tamperSnapshots,
  useHttp,
} from '../support/restores.ts';
import { query, seedRegistry, tenantId } from '../support/seed.ts';

let h: ExecHarness;
let nextSite = 0;

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 6, appsPerSite: APPS });
  await useHttp(h);
});
afterAll(async () => {
  await h?.close();
});

const postPurge = (body: Record<string, unknown>) => postPurgeAs(h, body);
const hardDeletes = () => h.downstream.calls.filter((c) => c.action === 'hardDelete' && !isDrillCall(c));
const itemState = async (opId: string) =>
  (
    await query<{ state: string }>(h.databaseUrl, `SELECT state FROM operation_items WHERE operation_id = $1`, [opId])
  )[0]!.state;

/** A fresh app, live downstream, soft-deleted through HTTP and past its retention. */
async function appDeleted() {
  h.downstream.reset();
  const s = nextSite++;
  const X = appsOfSite(s)[0]!;
  h.downstream.resources.set(X, { id: X, tenantId: tenantId(s), state: 'active', data: { name: X } });
  const del = await deleteAndComplete(h, 'app', [X]);
  await query(h.databaseUrl, `UPDATE resources SET purge_after = now() - interval '1 day' WHERE id = $1`, [X]);
  return { X, del };
}

/** The first hard delete is held downstream, not applied, until `release`. */
function holdFirstHardDelete() {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  h.downstream.beforeApply(async (c) => {
    if (c.action === 'hardDelete' && c.idempotencyKey === hardDeletes()[0]?.idempotencyKey) await gate;
  });
  return () => {
    release();
    h.downstream.beforeApply(undefined);
  };
}

/** Its offenders of one class, as a 422 plan names them. */
const offenders = (r: request.Response, cls: string) =>
  (r.body.details?.offenders?.[cls] ?? []) as { id: string; heldBy?: string }[];

describe('an aborted purge whose hard delete is still out', () => {
  it('holds the resource until its run is settled: no restore, second purge or rollback meanwhile', async () => {
    const { X, del } = await appDeleted();
    const release = holdFirstHardDelete();
    let purgeId = '';
    try {
      const p = await postPurge({ targetType: 'app', ids: [X] });
      expect(p.status, JSON.stringify(p.body)).toBe(201);
      purgeId = p.body.id;
      await command(h, 'approver', purgeId, 'approve', { planHash: p.body.planHash }).expect(200);
      await command(h, 'operator', purgeId, 'start').expect(200);
      await until(() => hardDeletes().length > 0, 'the hard delete out');
      await command(h, 'operator', purgeId, 'abort', { reason: 'wrong list' }).expect(200);
      expect((await waitForState(h, purgeId, ['cancelled'])).state).toBe('cancelled');

      const restore = await postRestore(h, { targetType: 'app', ids: [X], rollout: ONE_LANE });
      expect(restore.status, JSON.stringify(restore.body)).toBe(422);
      expect(offenders(restore, 'in_flight')).toEqual([expect.objectContaining({ id: X, heldBy: purgeId })]);
      const again = await postPurge({ targetType: 'app', ids: [X] });
      expect(again.status, JSON.stringify(again.body)).toBe(422);
      expect(offenders(again, 'in_flight')).toEqual([expect.objectContaining({ id: X, heldBy: purgeId })]);
      const rollback = await command(h, 'operator', del, 'rollback', { reason: 'undo the cleanup' });
      expect(rollback.status, JSON.stringify(rollback.body)).toBe(409);
      expect(rollback.body.code).toBe('RESOURCES_IN_FLIGHT');
    } finally {
      release();
    }
    // The call lands: the purge records it, one hard delete was ever sent.
    await until(async () => (await itemState(purgeId)) === 'done', 'the purge item recorded');
    expect(new Set(hardDeletes().map((c) => c.idempotencyKey)).size).toBe(1);
    expect(h.downstream.state(X)).toBe('purged');
    // Settled (two claim leases after the abort), it holds nothing: a restore is told the truth.
    await until(
      async () =>
        (await query(h.databaseUrl, `SELECT 1 FROM operations WHERE id = $1 AND settled_at IS NOT NULL`, [purgeId]))
          .length > 0,
      'the aborted purge settled',
      30_000,
    );
    const after = await postRestore(h, { targetType: 'app', ids: [X], dryRun: true });
    expect(after.status, JSON.stringify(after.body)).toBe(422);
    expect(after.body.details.counts).toMatchObject({ in_flight: 0, purged: 1 });
  });
});

describe('an aborted erasure whose hard delete is still out', () => {
  it('holds the resource: a restore planned right after is refused', async () => {
    const { X } = await appDeleted();
    const release = holdFirstHardDelete();
    try {
      const erasure = await submitAndStart(h, {
        targetType: 'app',
        ids: [X],
        erasure: true,
        reason: 'GDPR erasure request 7731',
        rollout: ONE_LANE,
        haltPolicy: { probe: 'optional', onHalt: 'pause' },
      });
      await until(() => hardDeletes().length > 0, 'the hard delete out');
      await command(h, 'operator', erasure.id, 'abort', { reason: 'wrong person' }).expect(200);
      expect((await waitForState(h, erasure.id, ['cancelled'])).state).toBe('cancelled');
      const restore = await postRestore(h, { targetType: 'app', ids: [X], rollout: ONE_LANE });
      expect(restore.status, JSON.stringify(restore.body)).toBe(422);
      expect(offenders(restore, 'in_flight')).toEqual([expect.objectContaining({ id: X, heldBy: erasure.id })]);
    } finally {
      release();
    }
  });
});

describe('a rollback that ends by itself', () => {
  it('holds nothing once it ends rollback_incomplete: a restore planned right after is not refused in_flight', async () => {
    const { X, del } = await appDeleted();
    // Its snapshot fails verification: the rollback cannot restore it, and ends by itself.
    await tamperSnapshots(
      h,
      `UPDATE snapshots SET content_hash = repeat('f', 64) WHERE operation_id = $1 AND resource_id = $2`,
      [del, X],
    );
    await command(h, 'operator', del, 'rollback', { reason: 'undo the cleanup' }).expect(200);
    expect((await waitForState(h, del, ['rolled_back', 'rollback_incomplete'])).state).toBe('rollback_incomplete');
    const restore = await postRestore(h, { targetType: 'app', ids: [X], dryRun: true });
    expect(restore.body.details?.counts?.in_flight ?? 0, JSON.stringify(restore.body)).toBe(0);
  });
});
