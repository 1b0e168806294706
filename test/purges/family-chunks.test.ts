// A family across chunks of one wave. A purge's ledger puts a site's apps before the site, so a site
// with more apps than a chunk holds has its apps in the chunks before its own, and chunks of a wave
// run side by side. The chunk's look for children covered only children it did not hold and those
// in its own chunk: a site was purged while another chunk still had its app's hard delete out, or
// after that chunk's call for the app had failed, leaving the app deleted under a purged site,
// never restorable. A child the purge holds in another chunk now makes its parent wait for that
// chunk's outcome: purged, the parent goes; failed, the parent fails naming it.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { command } from '../support/exec-helpers.ts';
import { buildExecHarness, until, waitForState, waitSettled, type ExecHarness } from '../support/execution.ts';
import {
  ageTwoDays,
  deleteAndComplete,
  httpAdapterOn,
  postPurge,
  registryStates,
  useHttp,
} from '../support/restores.ts';
import { appId, query, seedRegistry, siteId, tenantId } from '../support/seed.ts';
import { childrenOutstanding } from '../../src/modules/execution/purge-children.ts';

/** 1,100 apps, then the 11 sites: the second chunk holds the last 100 apps and every site. */
const SITES = 11;
const APPS = 100;
let h: ExecHarness;

beforeAll(async () => {
  // Two chunk workers: the wave's two chunks run side by side.
  h = await buildExecHarness({ workers: 2 });
  await seedRegistry(h.databaseUrl, { sites: 4 * SITES, appsPerSite: APPS });
  await useHttp(h);
  await query(h.databaseUrl, `UPDATE resource_types SET adapter = '{"kind":"registry"}' WHERE name = 'site'`);
});
afterAll(async () => {
  await h?.close();
});

/**
 * Deletes case `c`'s sites with their apps, ages them past retention and plans their purge in one
 * wave; returns it with the first app of its ledger (in the first chunk) and that app's site.
 */
async function planPurge(c: number) {
  const sites = Array.from({ length: SITES }, (_, k) => c * SITES + k);
  for (const s of sites)
    for (let j = 0; j < APPS; j++)
      h.downstream.resources.set(appId(s, j), { id: appId(s, j), tenantId: tenantId(s), state: 'active', data: {} });
  await deleteAndComplete(h, 'site', sites.map(siteId));
  await ageTwoDays(h, [
    ...sites.map(siteId),
    ...sites.flatMap((s) => Array.from({ length: APPS }, (_, j) => appId(s, j))),
  ]);
  const r = await postPurge(h, {
    targetType: 'site',
    ids: sites.map(siteId),
    rollout: { bakeSeconds: 0, concurrency: 8, waves: ['100%'] },
    haltPolicy: { maxFailureRate: 1, probe: 'optional' },
  });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  const items = await query<{ seq: number; resource_id: string }>(
    h.databaseUrl,
    'SELECT seq, resource_id FROM operation_items WHERE operation_id = $1 ORDER BY seq',
    [r.body.id],
  );
  expect(items).toHaveLength(SITES * (APPS + 1));
  // The app in the first chunk whose call is the test's to hold or refuse, and its site (second chunk).
  const firstApp = items[0]!.resource_id;
  const site = (
    await query<{ parent_id: string }>(h.databaseUrl, 'SELECT parent_id FROM resources WHERE id = $1', [firstApp])
  )[0]!.parent_id;
  expect(items.findIndex((i) => i.resource_id === site)).toBeGreaterThanOrEqual(1_000);
  return { id: r.body.id as string, planHash: r.body.planHash as string, site, firstApp };
}

async function run(p: { id: string; planHash: string }) {
  await command(h, 'approver', p.id, 'approve', { planHash: p.planHash }).expect(200);
  await command(h, 'operator', p.id, 'start').expect(200);
  return waitForState(h, p.id, ['completed', 'completed_with_failures', 'halted', 'paused'], 60_000);
}

const itemOf = async (opId: string, resourceId: string) =>
  (
    await query<{ state: string; last_error: string | null }>(
      h.databaseUrl,
      'SELECT state, last_error FROM operation_items WHERE operation_id = $1 AND resource_id = $2',
      [opId, resourceId],
    )
  )[0]!;

describe('a site whose app is in an earlier chunk of the same wave', () => {
  it('waits for that chunk: purged after its app, whose call was still out when its chunk started', async () => {
    const p = await planPurge(0);
    let appPurgedAt = 0;
    let meanwhile: Promise<{ state: string; last_error: string | null }> | undefined;
    h.downstream.beforeApply(async (c) => {
      if (c.action !== 'hardDelete' || c.resourceId !== p.firstApp) return;
      // What the site's item says while it waits.
      meanwhile = new Promise((r) => setTimeout(r, 1_200)).then(() => itemOf(p.id, p.site));
      // Long enough for the other chunk to run in the meantime.
      await new Promise((r) => setTimeout(r, 2_500));
      appPurgedAt = Date.now();
    });
    try {
      const end = await run(p);
      expect(end.state).toBe('completed');
    } finally {
      h.downstream.beforeApply(undefined);
    }
    expect(appPurgedAt).toBeGreaterThan(0);
    // (Pending, or claimed for an instant by a look of its chunk.)
    expect(await meanwhile).toMatchObject({
      state: expect.stringMatching(/^(pending|claimed)$/),
      last_error: expect.stringMatching(/^not sent yet: this purge waits for the outcome of its child app_/),
    });
    const [site] = await query<{ state: string; updated_at: Date }>(
      h.databaseUrl,
      'SELECT state, updated_at FROM resources WHERE id = $1',
      [p.site],
    );
    expect(site!.state).toBe('purged');
    // Purged by the registry's statement after the app's hard delete answered, not during it.
    expect(site!.updated_at.getTime()).toBeGreaterThanOrEqual(appPurgedAt - 5);
  });

  it("fails naming the app when that chunk's call for it failed, and stays soft-deleted", async () => {
    const p = await planPurge(1);
    h.downstream.answer((c) => (c.action === 'hardDelete' && c.resourceId === p.firstApp ? 403 : null));
    try {
      const end = await run(p);
      expect(end.state).toBe('completed_with_failures');
    } finally {
      h.downstream.answer(null);
    }
    expect((await registryStates(h, [p.site]))[p.site]).toBe('soft_deleted');
    expect(h.downstream.state(p.firstApp)).toBe('soft_deleted');
    const item = await itemOf(p.id, p.site);
    expect(item.state).toBe('failed');
    expect(item.last_error).toMatch(new RegExp(`its child ${p.firstApp} was not purged by this purge`));
  });
});

describe("what a parent's chunk makes of its child in another chunk (childrenOutstanding)", () => {
  it('waits for one still to run, goes after one purged, and fails naming one failed or in a later wave', async () => {
    const p = await planPurge(2);
    const pool = new pg.Pool({ connectionString: h.databaseUrl, max: 1 });
    try {
      const look = () => childrenOutstanding(pool, p.id, [p.site], [], 0);
      const setItem = (sql: string) =>
        query(h.databaseUrl, `UPDATE operation_items SET ${sql} WHERE operation_id = $1 AND resource_id = $2`, [
          p.id,
          p.firstApp,
        ]);
      // Every app of the site is still to run: the site waits (no reason it never could go).
      expect((await look()).get(p.site)).toEqual({ child: expect.any(String), failed: null });
      // The other chunk's own items do not count from inside it.
      const apps = Array.from({ length: APPS }, (_, j) => appId(Number(p.site.slice(5)), j));
      expect((await childrenOutstanding(pool, p.id, [p.site], apps, 0)).size).toBe(0);
      await setItem(`state = 'failed'`);
      expect((await look()).get(p.site)).toEqual({ child: p.firstApp, failed: 'its item failed' });
      await setItem(`state = 'pending', wave = 1`);
      expect((await look()).get(p.site)).toEqual({ child: p.firstApp, failed: 'it goes in a later wave (1)' });
      // Purged (its item done, its row purged): no longer outstanding; the others still are.
      await setItem(`state = 'done', wave = 0`);
      await query(h.databaseUrl, `UPDATE resources SET state = 'purged' WHERE id = $1`, [p.firstApp]);
      const after = (await look()).get(p.site);
      expect(after?.failed).toBeNull();
      expect(after?.child).not.toBe(p.firstApp);
    } finally {
      // As planned again: the harness checks the wave counters against the ledger at its close.
      await query(h.databaseUrl, `UPDATE operation_items SET state = 'pending', wave = 0 WHERE operation_id = $1`, [
        p.id,
      ]);
      await pool.end();
    }
  });
});

describe('three levels across chunks (org → proj → 1,001 tasks)', () => {
  it('keeps the org back while its proj, in the same chunk, waits for a task in the chunk before', async () => {
    const http = (col: string) => httpAdapterOn(h, col);
    await query(
      h.databaseUrl,
      `INSERT INTO resource_types (name, parent_type, cascade_to, adapter) VALUES
         ('org', NULL, ARRAY['proj', 'task'], '{"kind":"registry"}'),
         ('proj', 'org', ARRAY['task'], $1::jsonb), ('task', 'proj', ARRAY[]::text[], $2::jsonb)`,
      [http('projs'), http('tasks')],
    );
    await query(h.databaseUrl, `INSERT INTO tenants (id, name) VALUES ('to_1', 'Org one')`);
    await query(
      h.databaseUrl,
      `INSERT INTO resources (id, type, tenant_id, parent_id)
       SELECT 'org_1', 'org', 'to_1', NULL UNION ALL SELECT 'proj_1', 'proj', 'to_1', 'org_1'
       UNION ALL SELECT 'task_' || lpad(n::text, 4, '0'), 'task', 'to_1', 'proj_1' FROM generate_series(0, 1000) n`,
    );
    const tasks = Array.from({ length: 1_001 }, (_, n) => `task_${String(n).padStart(4, '0')}`);
    await deleteAndComplete(h, 'org', ['org_1']);
    await ageTwoDays(h, ['org_1', 'proj_1', ...tasks]);
    const r = await postPurge(h, {
      targetType: 'org',
      ids: ['org_1'],
      rollout: { bakeSeconds: 0, concurrency: 8, waves: ['100%'] },
      haltPolicy: { maxFailureRate: 1, probe: 'optional' },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const ledger = await query<{ resource_id: string }>(
      h.databaseUrl,
      'SELECT resource_id FROM operation_items WHERE operation_id = $1 ORDER BY seq',
      [r.body.id],
    );
    // Chunk 0: 1,000 tasks; chunk 1: the last task, the proj, the org.
    expect(ledger.slice(-2).map((x) => x.resource_id)).toEqual(['proj_1', 'org_1']);
    const slow = ledger[0]!.resource_id;
    let taskPurgedAt = 0;
    h.downstream.beforeApply(async (c) => {
      if (c.action !== 'hardDelete' || c.resourceId !== slow) return;
      await new Promise((res) => setTimeout(res, 2_500));
      taskPurgedAt = Date.now();
    });
    try {
      const end = await run({ id: r.body.id, planHash: r.body.planHash });
      expect(end.state).toBe('completed');
    } finally {
      h.downstream.beforeApply(undefined);
    }
    const rows = await query<{ id: string; state: string; updated_at: Date }>(
      h.databaseUrl,
      `SELECT id, state, updated_at FROM resources WHERE id IN ('org_1', 'proj_1') ORDER BY id`,
    );
    expect(rows.map((x) => x.state)).toEqual(['purged', 'purged']);
    // Neither went while the task's hard delete was out.
    for (const x of rows) expect(x.updated_at.getTime(), x.id).toBeGreaterThanOrEqual(taskPurgedAt - 5);
  });
});

describe('a site waiting for its app when the purge is aborted', () => {
  it('says it was not sent for the abort, not that it waits for its app (nothing sends it now)', async () => {
    const p = await planPurge(3);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    h.downstream.beforeApply(async (c) => {
      if (c.action === 'hardDelete' && c.resourceId === p.firstApp) await held;
    });
    try {
      await command(h, 'approver', p.id, 'approve', { planHash: p.planHash }).expect(200);
      await command(h, 'operator', p.id, 'start').expect(200);
      await until(
        async () => (await itemOf(p.id, p.site)).last_error?.startsWith('not sent yet') ?? false,
        'the site to wait for its app',
        30_000,
      );
      await command(h, 'operator', p.id, 'abort', { reason: 'wrong list' }).expect(200);
    } finally {
      release();
      h.downstream.beforeApply(undefined);
    }
    await waitSettled(h, p.id);
    const item = await itemOf(p.id, p.site);
    expect(item.state).toBe('pending');
    expect(item.last_error).toMatch(/^not sent: the purge was aborted while it waited for its child app_/);
    expect((await registryStates(h, [p.site]))[p.site]).toBe('soft_deleted');
  });
});
