// A halted operation waits for a human, who needs to see what it did not do and why before
// choosing resume, abort or rollback: GET /v1/operations/{id} (and so `blastgate status`) lists
// them in `unfinished` with each one's last error. A halted restore showed nothing there (the
// list was computed only for operations that had ended), so its operator read a halt reason
// that counted failures and had no way to see which resources they were.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshotStore } from '../../src/modules/snapshots/store.ts';
import { command } from '../support/exec-helpers.ts';
import { buildExecHarness, submitAndStart, waitForState, type ExecHarness } from '../support/execution.ts';
import { TEST_SNAPSHOT_KEY_BYTES } from '../support/keys.ts';
import {
  APPS,
  appsOfSite,
  deleteAndComplete,
  getRestore,
  postRestore,
  useHttp,
  useRegistry,
} from '../support/restores.ts';
import { query, seedRegistry, siteId, tenantId } from '../support/seed.ts';

let h: ExecHarness;

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 10, appsPerSite: APPS });
});
afterAll(async () => {
  await h?.close();
});

/** A compliance erasure destroys the site's snapshot keys between the restore's plan and its start. */
async function eraseKeys(ids: string[]) {
  const client = new pg.Client({ connectionString: h.databaseUrl });
  await client.connect();
  try {
    await client.query('BEGIN');
    await snapshotStore(TEST_SNAPSHOT_KEY_BYTES).erase(client as unknown as pg.PoolClient, ids);
    await client.query('COMMIT');
  } finally {
    await client.end();
  }
}

describe('a halted operation lists what it did not finish', () => {
  it('a halted restore: every item it has not restored, each with its error', async () => {
    await useRegistry(h);
    const s = 1;
    await deleteAndComplete(h, 'site', [siteId(s)]);
    const planned = await postRestore(h, { tenantId: tenantId(s) });
    expect(planned.status, JSON.stringify(planned.body)).toBe(201);
    await eraseKeys([siteId(s)]);
    await command(h, 'approver', planned.body.id, 'approve', { planHash: planned.body.planHash }).expect(200);
    await command(h, 'operator', planned.body.id, 'start').expect(200);
    await waitForState(h, planned.body.id, ['halted', 'completed', 'completed_with_failures']);
    const op = await getRestore(h, planned.body.id);
    expect(op.state).toBe('halted');
    expect(op.unfinished?.count).toBe(1 + APPS);
    const byId = new Map(op.unfinished!.items.map((i) => [i.resourceId, i]));
    expect(byId.get(siteId(s))).toMatchObject({ state: 'failed', lastError: expect.stringMatching(/^erased: /) });
    for (const app of appsOfSite(s))
      expect(byId.get(app)).toMatchObject({
        state: 'failed',
        lastError: expect.stringMatching(new RegExp(`^not restored: ${siteId(s)} was not`)),
      });
  });

  it('a halted delete: the items that failed, each with its error', async () => {
    await useHttp(h);
    h.downstream.failOnly(['softDelete']);
    h.downstream.failNext(1_000, 500);
    try {
      const op = await submitAndStart(h, {
        targetType: 'app',
        reason: 'Cleanup script',
        ids: [...appsOfSite(2), ...appsOfSite(3)],
        rollout: { bakeSeconds: 0, waves: ['100%'], restoreDrill: false },
        haltPolicy: { probe: 'optional', onHalt: 'pause', maxConsecutiveFailures: 1 },
      });
      await waitForState(h, op.id, ['halted', 'completed', 'completed_with_failures', 'rolled_back']);
      const view = await getRestore(h, op.id);
      expect(view.state).toBe('halted');
      const failed = view.counts!.byState.failed!;
      expect(failed).toBeGreaterThan(0);
      // The ones that got an error: failed, or stopped by the halt before their retry (pending with
      // the error; a resume sends them again) — not those the halt kept from being sent at all.
      const errored = await query<{ n: number }>(
        h.databaseUrl,
        `SELECT count(*)::int AS n FROM operation_items WHERE operation_id = $1
           AND (state = 'failed' OR (state = 'pending' AND last_error IS NOT NULL))`,
        [op.id],
      );
      // Usually some are pending with an error here (6 errored for 5 failed, 3 runs of 3); not asserted,
      // as the number depends on timing.
      expect(errored[0]!.n).toBeGreaterThanOrEqual(failed);
      expect(view.unfinished?.count).toBe(errored[0]!.n);
      for (const i of view.unfinished!.items)
        expect(i).toMatchObject({
          state: expect.stringMatching(/^(failed|pending)$/),
          lastError: expect.stringMatching(/HTTP 500/),
        });
    } finally {
      h.downstream.failOnly(null);
      h.downstream.failNext(0, 500);
    }
  });
});
