// Cascades that run and come back (promise 4), on the real stack: a site delete with
// cascadeTo [app] takes the site's apps with it, their snapshots are stored before the site's
// destructive call, and a rollback brings site and apps back — with the registry adapter (one
// transaction each way) and with the HTTP adapter (the downstream cascades the delete itself;
// Blastgate restores each app after its site).
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildExecHarness, submitAndStart, waitForState, type ExecHarness } from '../support/execution.ts';
import { command, isDrillCall } from '../support/exec-helpers.ts';
import { appId, query, seedRegistry, siteId } from '../support/seed.ts';
import { createMetrics } from '../../src/plugins/metrics.ts';
import { readLive } from '../../src/modules/events/feed.ts';
import { lineView } from '../../src/cli/watch-view.ts';
import { useHttp as useHttpOn } from '../support/restores.ts';

const APPS = 3;
const ROLLOUT = { bakeSeconds: 0, concurrency: 2, waves: ['1', '100%'] };
const HALT = { probe: 'optional' };
let nextSite = 0;
const freshSites = (n: number) => Array.from({ length: n }, () => nextSite++);
const appsOfSite = (s: number) => Array.from({ length: APPS }, (_, j) => appId(s, j));

let h: ExecHarness;
const metrics = createMetrics();
/** blastgate_items_total{outcome} as the workers counted it. */
const itemsTotal = async (outcome: string) =>
  (await metrics.items.get()).values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1, workerMetrics: metrics });
  await seedRegistry(h.databaseUrl, { sites: 40, appsPerSite: APPS });
});
afterAll(async () => {
  await h?.close();
});
beforeEach(() => h.downstream.reset());

/** Both types act on the test downstream: sites under /sites, apps under /apps. */
const useHttp = () => useHttpOn(h);
const useRegistry = () => query(h.databaseUrl, `UPDATE resource_types SET adapter = '{"kind":"registry"}'`);

const deleteSites = (sites: number[], extra: Record<string, unknown> = {}) =>
  submitAndStart(h, {
    targetType: 'site',
    reason: 'Decommission sites',
    ids: sites.map(siteId),
    rollout: ROLLOUT,
    haltPolicy: HALT,
    ...extra,
  });

interface Row {
  seq: number;
  resource_id: string;
  parent_seq: number | null;
  state: string;
  snapshot_id: number | null;
  executed_seq: number | null;
  last_error: string | null;
}
const items = (opId: string) =>
  query<Row>(
    h.databaseUrl,
    `SELECT seq, resource_id, parent_seq, state, snapshot_id, executed_seq, last_error FROM operation_items
     WHERE operation_id = $1 ORDER BY seq`,
    [opId],
  );
const registry = (ids: string[]) =>
  query<{ id: string; state: string; deleted_at: Date | null; updated_at: Date }>(
    h.databaseUrl,
    `SELECT id, state, deleted_at, updated_at FROM resources WHERE id = ANY($1) ORDER BY id`,
    [ids],
  );

describe('registry adapter: descendants change state with their parent, in one transaction', () => {
  it('deletes each site with its apps, snapshots them first, and rolls both back together', async () => {
    await useRegistry();
    const sites = freshSites(2);
    const apps = sites.flatMap(appsOfSite);
    const doneBefore = await itemsTotal('done');
    const op = await deleteSites(sites);
    expect((await waitForState(h, op.id, ['completed', 'halted', 'rolling_back'])).state).toBe('completed');
    // Every resource the delete took counts, its cascade's too, as restores and erasures count them.
    expect((await itemsTotal('done')) - doneBefore).toBe(sites.length * (1 + APPS));

    const after = await registry([...sites.map(siteId), ...apps]);
    expect(after.every((r) => r.state === 'soft_deleted')).toBe(true);
    for (const s of sites) {
      // One statement: the site's apps carry its deleted_at to the microsecond.
      const at = after.find((r) => r.id === siteId(s))!.deleted_at!.getTime();
      for (const a of appsOfSite(s)) expect(after.find((r) => r.id === a)!.deleted_at!.getTime()).toBe(at);
    }
    // The live stream's waves count the sites and say what their cascades took beside them, as the
    // plan's waves did ("wave 2: 4 items" over 1 site streamed as "w2 1/1" with no word of its apps).
    const live = (await readLive(h.app.db.pool, op.id))!;
    expect(live.waves.map((w) => [w.items, w.descendants, w.done])).toEqual([
      [1, APPS, 1],
      [1, APPS, 1],
    ]);
    const lines: string[] = [];
    lineView((x) => lines.push(x)).waves(live.waves, { ...live, skewMs: 0 });
    expect(lines).toEqual([
      `progress completed · wave 2/2 · w1 1/1 (+${APPS} by cascade) · w2 1/1 (+${APPS} by cascade)\n`,
    ]);

    const ledger = await items(op.id);
    expect(ledger).toHaveLength(sites.length * (1 + APPS));
    for (const r of ledger) {
      expect(r.state, r.resource_id).toBe('done');
      expect(r.snapshot_id, r.resource_id).not.toBeNull();
      expect(r.executed_seq, r.resource_id).not.toBeNull();
    }
    // Every snapshot (encrypted, in the store) was committed before the statement that deleted.
    const snaps = await query<{ resource_id: string; created_at: Date; data: unknown; content_hash: string }>(
      h.databaseUrl,
      `SELECT s.resource_id, s.created_at, s.data, s.content_hash FROM snapshots s
       JOIN operation_items i ON i.snapshot_id = s.id AND i.operation_id = $1`,
      [op.id],
    );
    expect(snaps).toHaveLength(ledger.length);
    for (const s of snaps) {
      expect(s.data).toBeNull(); // nothing in the clear
      expect(s.content_hash).toMatch(/^[0-9a-f]{64}$/);
      expect(s.created_at.getTime()).toBeLessThanOrEqual(
        after.find((r) => r.id === s.resource_id)!.deleted_at!.getTime(),
      );
    }

    const restoredBefore = await itemsTotal('restored');
    await command(h, 'operator', op.id, 'rollback', { reason: 'wrong sites' }).expect(200);
    expect((await waitForState(h, op.id, ['rolled_back', 'rollback_incomplete'])).state).toBe('rolled_back');
    expect((await itemsTotal('restored')) - restoredBefore).toBe(sites.length * (1 + APPS));
    const back = await registry([...sites.map(siteId), ...apps]);
    expect(back.map((r) => [r.id, r.state, r.deleted_at])).toEqual(back.map((r) => [r.id, 'active', null]));
    for (const s of sites) {
      const at = back.find((r) => r.id === siteId(s))!.updated_at.getTime();
      for (const a of appsOfSite(s)) expect(back.find((r) => r.id === a)!.updated_at.getTime()).toBe(at);
    }
    expect((await items(op.id)).every((r) => r.state === 'restored')).toBe(true);
    // The items route shows each app against its site.
    const page = await request(h.app.server)
      .get(`/v1/operations/${op.id}/items`)
      .set('authorization', h.auth('viewer'))
      .expect(200);
    const site0 = page.body.items.find((i: { resourceId: string }) => i.resourceId === siteId(sites[0]!));
    expect(site0).toMatchObject({ type: 'site', parentSeq: null });
    expect(
      page.body.items.find((i: { resourceId: string }) => i.resourceId === appsOfSite(sites[0]!)[0]),
    ).toMatchObject({ type: 'app', parentSeq: site0.seq, state: 'restored' });
  });
});

describe('registry adapter: a descendant protected while the operation runs', () => {
  it("leaves its parent and the parent's whole cascade: the parent fails naming it, nothing of it changes", async () => {
    await useRegistry();
    const sites = freshSites(2);
    const op = await deleteSites(sites, {
      rollout: { ...ROLLOUT, bakeSeconds: 2 },
      haltPolicy: { ...HALT, maxFailureRate: 1, onHalt: 'pause' },
    });
    // An app of the second wave's site, protected (as an import would) during the first wave's bake.
    const guarded = appsOfSite(sites[1]!)[1]!;
    await query(h.databaseUrl, `UPDATE resources SET protected = true WHERE id = $1`, [guarded]);
    const end = await waitForState(h, op.id, ['completed', 'completed_with_failures', 'halted', 'paused']);
    expect(end.state).toBe('completed_with_failures');
    const site = (await items(op.id)).find((r) => r.resource_id === siteId(sites[1]!))!;
    expect(site.state).toBe('failed');
    expect(site.last_error).toContain(`its cascade would take ${guarded}, which is protected`);
    const kept = await registry([siteId(sites[1]!), ...appsOfSite(sites[1]!)]);
    expect(kept.map((r) => [r.id, r.state])).toEqual(kept.map((r) => [r.id, 'active']));
    const gone = await registry([siteId(sites[0]!), ...appsOfSite(sites[0]!)]);
    expect(gone.every((r) => r.state === 'soft_deleted')).toBe(true);
  }, 60_000);
});

describe('registry adapter: a child created under a planned site while the operation runs', () => {
  /** Deletes `sites` (the first in the canary wave); during its bake, an app appears under the last. */
  async function withNewApp(sites: number[]) {
    const last = sites.at(-1)!;
    const op = await deleteSites(sites, {
      rollout: { ...ROLLOUT, bakeSeconds: 2 },
      haltPolicy: { ...HALT, maxFailureRate: 1, onHalt: 'pause' },
    });
    const born = appId(last, 90);
    await query(h.databaseUrl, `INSERT INTO resources (id, type, tenant_id, parent_id) VALUES ($1, 'app', $2, $3)`, [
      born,
      `tenant_${String(last).padStart(5, '0')}`,
      siteId(last),
    ]);
    const end = await waitForState(h, op.id, ['completed', 'completed_with_failures', 'halted', 'paused']);
    expect(end.state).toBe('completed_with_failures');
    const site = (await items(op.id)).find((r) => r.resource_id === siteId(last))!;
    expect(site.state).toBe('failed');
    expect(site.last_error).toContain(`its cascade would now take ${born}, which the plan does not list`);
    const kept = await registry([siteId(last), born]);
    expect(kept.map((r) => [r.id, r.state])).toEqual([
      [born, 'active'],
      [siteId(last), 'active'],
    ]);
  }

  it('leaves a site with apps (the general path): it fails naming the new app, nothing of it changes', async () => {
    await useRegistry();
    await withNewApp(freshSites(2));
  }, 60_000);

  it('leaves a site whose planned app got a new child of its own (a grandchild) the same way', async () => {
    await useRegistry();
    await query(
      h.databaseUrl,
      `INSERT INTO resource_types (name, id_pattern, parent_type) VALUES ('module', '^mod_[0-9_]+$', 'app')
       ON CONFLICT (name) DO NOTHING`,
    );
    await query(h.databaseUrl, `UPDATE resource_types SET cascade_to = '{module}' WHERE name = 'app'`);
    try {
      const sites = freshSites(2);
      const last = sites.at(-1)!;
      const op = await deleteSites(sites, {
        rollout: { ...ROLLOUT, bakeSeconds: 2 },
        haltPolicy: { ...HALT, maxFailureRate: 1, onHalt: 'pause' },
      });
      // Under one of the last site's planned apps, during the canary's bake.
      const born = `mod_${last}_1`;
      await query(
        h.databaseUrl,
        `INSERT INTO resources (id, type, tenant_id, parent_id) VALUES ($1, 'module', $2, $3)`,
        [born, `tenant_${String(last).padStart(5, '0')}`, appsOfSite(last)[0]],
      );
      const end = await waitForState(h, op.id, ['completed', 'completed_with_failures', 'halted', 'paused']);
      expect(end.state).toBe('completed_with_failures');
      const site = (await items(op.id)).find((r) => r.resource_id === siteId(last))!;
      expect(site.state).toBe('failed');
      expect(site.last_error).toContain(`its cascade would now take ${born}, which the plan does not list`);
      const kept = await registry([siteId(last), ...appsOfSite(last), born]);
      expect(kept.every((r) => r.state === 'active')).toBe(true);
    } finally {
      await query(h.databaseUrl, `UPDATE resource_types SET cascade_to = '{}' WHERE name = 'app'`);
    }
  }, 60_000);

  it('leaves a site without apps (one registry statement per chunk) the same way', async () => {
    await useRegistry();
    const sites = freshSites(2);
    await query(h.databaseUrl, `UPDATE resources SET parent_id = NULL WHERE parent_id = ANY($1)`, [sites.map(siteId)]);
    await withNewApp(sites);
  }, 60_000);
});

describe('HTTP adapter: the downstream owns its cascade, Blastgate stores the snapshots first', () => {
  it("stores every app's snapshot before the site's delete, then restores the site and each app", async () => {
    await useHttp();
    const sites = freshSites(3);
    for (const s of sites) h.downstream.cascade(siteId(s), appsOfSite(s));
    // What the database holds at the instant each site's delete reaches the downstream.
    const seenAtDelete = new Map<string, string[]>();
    h.downstream.beforeApply(async (call) => {
      if (call.action !== 'softDelete') return;
      const rows = await query<{ resource_id: string }>(
        h.databaseUrl,
        `SELECT s.resource_id FROM snapshots s JOIN operation_items i ON i.snapshot_id = s.id
         WHERE i.resource_id = ANY($1) ORDER BY 1`,
        [appsOfSite(Number(call.resourceId!.slice(5)))],
      );
      seenAtDelete.set(
        call.resourceId!,
        rows.map((r) => r.resource_id),
      );
    });
    const op = await deleteSites(sites);
    expect((await waitForState(h, op.id, ['completed', 'halted', 'rolling_back'])).state).toBe('completed');

    // The restore drill restored one site with its apps and deleted the site again (keys of its own).
    const drill = h.downstream.calls.filter(isDrillCall);
    expect(drill.filter((c) => c.action === 'softDelete').map((c) => c.resourceId)).toEqual([siteId(sites[0]!)]);
    const drillRestores = drill.filter((c) => c.action === 'restore').map((c) => c.resourceId!);
    expect(drillRestores[0]).toBe(siteId(sites[0]!)); // the site first, then its apps
    expect(drillRestores.slice(1).sort()).toEqual(appsOfSite(sites[0]!));
    const deletes = h.downstream.destructiveCalls().filter((c) => c.action === 'softDelete' && !isDrillCall(c));
    expect(deletes.map((c) => c.resourceId).sort()).toEqual(sites.map(siteId).sort()); // no app deletes: the downstream cascades
    for (const s of sites) {
      expect(seenAtDelete.get(siteId(s))).toEqual(appsOfSite(s));
      for (const a of appsOfSite(s)) expect(h.downstream.state(a)).toBe('soft_deleted');
      const siteDelete = deletes.find((c) => c.resourceId === siteId(s))!;
      // The pre-delete reads (the drill reads its restored apps back later, after its own restore).
      const drillAt = drill.find((c) => c.resourceId === siteId(s))?.seq ?? Infinity;
      const reads = h.downstream.calls.filter(
        (c) => c.action === 'snapshot' && appsOfSite(s).includes(c.resourceId!) && c.seq < drillAt,
      );
      expect(reads).toHaveLength(APPS);
      for (const r of reads) expect(r.seq).toBeLessThan(siteDelete.seq);
    }
    expect((await items(op.id)).every((r) => r.state === 'done')).toBe(true);

    await command(h, 'operator', op.id, 'rollback', { reason: 'wrong sites' }).expect(200);
    expect((await waitForState(h, op.id, ['rolled_back', 'rollback_incomplete'])).state).toBe('rolled_back');
    const restores = h.downstream
      .destructiveCalls()
      .filter((c) => c.action === 'restore' && c.status === 200 && !isDrillCall(c));
    for (const s of sites) {
      const site = restores.find((c) => c.resourceId === siteId(s))!;
      expect(site).toBeDefined();
      for (const a of appsOfSite(s)) {
        expect(h.downstream.state(a)).toBe('active');
        // Each app through its own type's adapter (/apps), after its site.
        const app = restores.find((c) => c.resourceId === a)!;
        expect(app.path).toBe(`/apps/${a}/restore`);
        expect(app.seq).toBeGreaterThan(site.seq);
      }
    }
    expect((await items(op.id)).every((r) => r.state === 'restored')).toBe(true);
  });

  it('an erasure with a cascade is never rolled back: 409, still completed, every item done, the apps purged', async () => {
    await useHttp();
    const sites = freshSites(1);
    h.downstream.cascade(siteId(sites[0]!), appsOfSite(sites[0]!));
    const [doneBefore, erasedBefore] = [await itemsTotal('done'), await itemsTotal('erased')];
    const op = await deleteSites(sites, { erasure: true });
    expect((await waitForState(h, op.id, ['completed', 'halted', 'rolling_back'])).state).toBe('completed');
    // One outcome per item: erased, not done as well (a trial found each erased item counted twice).
    expect([(await itemsTotal('erased')) - erasedBefore, (await itemsTotal('done')) - doneBefore]).toEqual([
      1 + APPS,
      0,
    ]);
    for (const a of appsOfSite(sites[0]!)) expect(h.downstream.state(a)).toBe('purged');
    const r = await command(h, 'operator', op.id, 'rollback', { reason: 'we need them back' });
    expect([r.status, r.body.code]).toEqual([409, 'ROLLBACK_NOT_SUPPORTED']);
    const full = await request(h.app.server)
      .get(`/v1/operations/${op.id}`)
      .set('authorization', h.auth('viewer'))
      .expect(200);
    expect(full.body).toMatchObject({
      kind: 'erase',
      state: 'completed',
      counts: { items: 1 + APPS, erased: 1 + APPS },
    });
    const ledger = await items(op.id);
    expect(ledger.every((x) => x.state === 'done')).toBe(true);
    // Nothing was sent to bring anything back.
    expect(
      h.downstream.calls.filter((c) => c.action === 'restore' && ledger.some((x) => x.resource_id === c.resourceId)),
    ).toEqual([]);
  });
});

describe('snapshots you can trust', () => {
  it('a snapshot row edited with SQL is refused by the trigger', async () => {
    await useRegistry();
    const op = await deleteSites(freshSites(1));
    await waitForState(h, op.id, ['completed']);
    for (const sql of [
      `UPDATE snapshots SET content_hash = repeat('0', 64) WHERE operation_id = $1`,
      `UPDATE snapshots SET data = '{"state":"active"}' WHERE operation_id = $1`,
      `DELETE FROM snapshots WHERE operation_id = $1`,
      `UPDATE snapshots SET ciphertext = '\\x00' WHERE operation_id = $1`,
    ])
      await expect(query(h.databaseUrl, sql, [op.id]), sql).rejects.toThrow(/append-only/);
    // And a plaintext row cannot be added beside the store (only legacy rows may hold data).
    await expect(
      query(
        h.databaseUrl,
        `INSERT INTO snapshots (operation_id, resource_id, tenant_id, data, iv, tag, ciphertext)
         VALUES ($1, 'site_x', 't', '{}', '\\x00', '\\x00', '\\x00')`,
        [op.id],
      ),
    ).rejects.toThrow(/snapshots_encrypted_only/);
  });

  it('an item whose snapshot fails verification is never restored: snapshot_corrupt, rollback_incomplete', async () => {
    await useHttp();
    const [a, b] = freshSites(2) as [number, number];
    for (const s of [a, b]) h.downstream.cascade(siteId(s), appsOfSite(s));
    const op = await deleteSites([a, b]);
    await waitForState(h, op.id, ['completed']);
    // Someone with superuser rights goes around the trigger: site a's snapshot now points at other
    // content (one of its apps'), and one app of site b has its content hash changed.
    const corruptApp = appsOfSite(b)[1]!;
    const c = `ALTER TABLE snapshots DISABLE TRIGGER snapshots_append_only;
      UPDATE snapshots s SET content_hash = (SELECT content_hash FROM snapshots WHERE operation_id = '${op.id}' AND resource_id = '${appsOfSite(a)[0]}')
        WHERE s.operation_id = '${op.id}' AND s.resource_id = '${siteId(a)}';
      UPDATE snapshots s SET content_hash = repeat('f', 64) WHERE s.operation_id = '${op.id}' AND s.resource_id = '${corruptApp}';
      ALTER TABLE snapshots ENABLE TRIGGER snapshots_append_only;`;
    await query(h.databaseUrl, c);

    await command(h, 'operator', op.id, 'rollback', { reason: 'undo' }).expect(200);
    expect((await waitForState(h, op.id, ['rolled_back', 'rollback_incomplete'])).state).toBe('rollback_incomplete');
    const ledger = await items(op.id);
    const byId = new Map(ledger.map((r) => [r.resource_id, r]));
    expect(byId.get(siteId(a))).toMatchObject({
      state: 'restore_failed',
      last_error: expect.stringMatching(/^snapshot_corrupt: /),
    });
    for (const x of appsOfSite(a))
      expect(byId.get(x)).toMatchObject({
        state: 'restore_failed',
        last_error: expect.stringMatching(/snapshot_corrupt/),
      });
    expect(byId.get(corruptApp)).toMatchObject({
      state: 'restore_failed',
      last_error: expect.stringMatching(/^snapshot_corrupt: /),
    });
    // Site b and its other apps came back; nothing was restored from a snapshot that failed.
    for (const x of [siteId(b), ...appsOfSite(b).filter((y) => y !== corruptApp)])
      expect(byId.get(x)!.state).toBe('restored');
    const restored = h.downstream.calls
      .filter((x) => x.action === 'restore' && !isDrillCall(x))
      .map((x) => x.resourceId);
    for (const x of [siteId(a), ...appsOfSite(a), corruptApp]) {
      expect(restored).not.toContain(x);
      expect(h.downstream.state(x)).toBe('soft_deleted');
    }
    const full = await request(h.app.server)
      .get(`/v1/operations/${op.id}`)
      .set('authorization', h.auth('viewer'))
      .expect(200);
    expect(full.body.unfinished.count).toBe(2 + APPS);
  });
});
