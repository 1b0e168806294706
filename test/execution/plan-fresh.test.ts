// `start` reads a delete's whole ledger against the registry (plan-stale.ts) only when something it
// was checked against may have changed since the plan's snapshot: every statement that could do so
// notes its transaction (prisma/sql/registry_changes.sql, protection_changes.sql). These tests see
// which way start went by a ledger row altered behind its back (no statement on the ledger is
// noted): the full check reports it as stale, the shortcut does not look. So each case below fails
// if the shortcut is missing (the first), or if a kind of change is not noted (the others).
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { buildExecHarness, getOperation, type ExecHarness } from '../support/execution.ts';
import { appsOf, command } from '../support/exec-helpers.ts';
import { appId, query, seedRegistry, siteId, tenantId } from '../support/seed.ts';

const APPS = 3;
let nextSite = 1;
const freshSites = (n: number) => Array.from({ length: n }, () => nextSite++);

let h: ExecHarness;
beforeAll(async () => {
  // No workers: a started operation only has to be started, not run.
  h = await buildExecHarness({ workers: 0 });
  await seedRegistry(h.databaseUrl, { sites: 120, appsPerSite: APPS });
});
afterAll(async () => {
  await h?.close();
});

const ROLLOUT = { bakeSeconds: 0, concurrency: 2, waves: ['100%'] };

/** A planned and approved delete of `ids` (apps by default: a type without cascades). */
async function approved(ids: string[], targetType = 'app') {
  const op = await request(h.app.server)
    .post('/v1/operations')
    .set('authorization', h.auth('requester'))
    .send({ targetType, reason: 'fresh plan check', ticket: 'CHG-7', ids, rollout: ROLLOUT })
    .expect(201);
  await command(h, 'approver', op.body.id, 'approve', { planHash: op.body.planHash }).expect(200);
  return op.body.id as string;
}

/** Alters the first item's planned tenant in the ledger itself: only the full check can see it. */
async function alterLedger(opId: string) {
  await query(
    h.databaseUrl,
    `UPDATE operation_items SET tenant_id = 'tenant_elsewhere' WHERE operation_id = $1 AND seq = 0`,
    [opId],
  );
}

/** The registry.held_changed events on an operation's own audit trail. */
async function heldEvents(opId: string) {
  const audit = await request(h.app.server)
    .get(`/v1/audit?operationId=${opId}`)
    .set('authorization', h.auth('viewer'))
    .expect(200);
  return (audit.body.items as { action: string; actor: string; payload: Record<string, unknown> }[])
    .filter((e) => e.action === 'registry.held_changed')
    .map((e) => e.payload);
}

/** Starts it: 'shortcut' when start did not read the ledger (it starts), 'full' when it did (PLAN_STALE). */
async function startWent(opId: string): Promise<'shortcut' | 'full'> {
  const res = await command(h, 'operator', opId, 'start');
  if (res.status === 200) return 'shortcut';
  expect(res.status).toBe(409);
  expect(res.body.code).toBe('PLAN_STALE');
  expect(res.body.details.changed[0].reason).toContain('it belongs to tenant');
  await command(h, 'operator', opId, 'abort', { reason: 'test' }).expect(200);
  return 'full';
}

describe("start: a delete's plan nothing changed since", () => {
  it('starts without reading its ledger against the registry again', async () => {
    const id = await approved(appsOf(freshSites(2), APPS));
    await alterLedger(id);
    expect(await startWent(id)).toBe('shortcut');
    expect((await getOperation(h, id)).state).toBe('running');
  });

  it("starts after only retention's due time changed elsewhere (not noted: it stales no plan)", async () => {
    const [other] = freshSites(1);
    const id = await approved(appsOf(freshSites(1), APPS));
    await alterLedger(id);
    await query(
      h.databaseUrl,
      `UPDATE resources SET purge_after = now() + interval '30 days', updated_at = now() WHERE id = $1`,
      [appId(other!, 0)],
    );
    expect(await startWent(id)).toBe('shortcut');
  });
});

const importApp = (site: number, extra: Record<string, unknown> = {}) =>
  request(h.app.server)
    .post('/v1/registry/resources')
    .set('authorization', h.auth('admin'))
    .send({
      resources: [{ id: appId(site, 2), type: 'app', tenantId: tenantId(site), parentId: siteId(site), ...extra }],
    })
    .expect(200);

/** The declared types, as `GET /v1/registry/types` gives them, PUT back as a config sync would. */
async function putTypesAsTheyAre() {
  const list = await request(h.app.server).get('/v1/registry/types').set('authorization', h.auth('viewer')).expect(200);
  const types = (list.body.items as Record<string, unknown>[]).map((t) =>
    Object.fromEntries(
      ['name', 'idPattern', 'parentType', 'cascadeTo', 'adapter', 'retentionDays'].flatMap((k) =>
        t[k] === null || t[k] === undefined ? [] : [[k, t[k]]],
      ),
    ),
  );
  await request(h.app.server)
    .put('/v1/registry/types')
    .set('authorization', h.auth('admin'))
    .send({ types })
    .expect(200);
}

describe('start: a routine sync that changes nothing is no change', () => {
  it('the types declared again as they are: the plan is not read whole', async () => {
    await putTypesAsTheyAre();
    const id = await approved(appsOf(freshSites(1), APPS));
    await alterLedger(id);
    await putTypesAsTheyAre();
    expect(await startWent(id)).toBe('shortcut');
  });

  it('resources and tenants imported again as they are: the plan is not read whole', async () => {
    const [other] = freshSites(1);
    const id = await approved(appsOf(freshSites(1), APPS));
    await alterLedger(id);
    const res = await importApp(other!);
    expect(res.body).toMatchObject({ inserted: 0, updated: 0 });
    const tenants = await request(h.app.server)
      .post('/v1/registry/tenants')
      .set('authorization', h.auth('admin'))
      .send({ tenants: [{ id: tenantId(other!), name: `Customer ${other!}` }] })
      .expect(200);
    expect(tenants.body).toMatchObject({ inserted: 0, updated: 0 });
    expect(await startWent(id)).toBe('shortcut');
  });
});

describe('start: a change since the plan, anywhere in the registry, makes it read the plan whole', () => {
  // Each on resources no plan here lists: what matters is that the change is noted, not what it is.
  const cases: [string, (site: number) => Promise<unknown>][] = [
    [
      'a state changed (another operation deleted or restored)',
      (s) => query(h.databaseUrl, `UPDATE resources SET state = 'soft_deleted' WHERE id = $1`, [appId(s, 0)]),
    ],
    [
      'a resource moved to another tenant',
      (s) => query(h.databaseUrl, `UPDATE resources SET tenant_id = $2 WHERE id = $1`, [appId(s, 0), tenantId(0)]),
    ],
    [
      'a resource moved to another parent',
      (s) => query(h.databaseUrl, `UPDATE resources SET parent_id = $2 WHERE id = $1`, [appId(s, 0), siteId(0)]),
    ],
    [
      'a resource of another type now',
      (s) => query(h.databaseUrl, `UPDATE resources SET type = 'site' WHERE id = $1`, [appId(s, 0)]),
    ],
    [
      'a resource marked protected',
      (s) => query(h.databaseUrl, `UPDATE resources SET protected = true WHERE id = $1`, [appId(s, 0)]),
    ],
    [
      'a tenant marked protected',
      (s) => query(h.databaseUrl, `UPDATE tenants SET protected = true WHERE id = $1`, [tenantId(s)]),
    ],
    [
      'a resource added',
      (s) =>
        query(h.databaseUrl, `INSERT INTO resources (id, type, tenant_id) VALUES ($1, 'app', $2)`, [
          appId(s, 50),
          tenantId(s),
        ]),
    ],
    ['a resource removed', (s) => query(h.databaseUrl, `DELETE FROM resources WHERE id = $1`, [appId(s, 1)])],
    [
      'a type redeclared (its row updated, even to what it was)',
      () => query(h.databaseUrl, `UPDATE resource_types SET id_pattern = id_pattern WHERE name = 'app'`),
    ],
    ['an import through the API that changes a resource', (s) => importApp(s, { state: 'soft_deleted' })],
  ];
  for (const [what, change] of cases)
    it(what, async () => {
      const [other] = freshSites(1);
      const id = await approved(appsOf(freshSites(1), APPS));
      await alterLedger(id);
      await change(other!);
      expect(await startWent(id)).toBe('full');
    });

  it('a change by a transaction already running when the plan was made, committed after it', async () => {
    const [other] = freshSites(1);
    const c = new pg.Client({ connectionString: h.databaseUrl });
    await c.connect();
    try {
      await c.query('BEGIN');
      await c.query(`UPDATE resources SET state = 'soft_deleted' WHERE id = $1`, [appId(other!, 0)]);
      const id = await approved(appsOf(freshSites(1), APPS));
      await c.query('COMMIT');
      await alterLedger(id);
      expect(await startWent(id)).toBe('full');
    } finally {
      await c.end();
    }
  });

  it('not a change rolled back', async () => {
    const [other] = freshSites(1);
    const id = await approved(appsOf(freshSites(1), APPS));
    await alterLedger(id);
    const c = new pg.Client({ connectionString: h.databaseUrl });
    await c.connect();
    try {
      await c.query('BEGIN');
      await c.query(`UPDATE resources SET state = 'soft_deleted' WHERE id = $1`, [appId(other!, 0)]);
      await c.query('ROLLBACK');
    } finally {
      await c.end();
    }
    expect(await startWent(id)).toBe('shortcut');
  });
});

describe('start: what a stale plan says', () => {
  it('of a tenant protected since a plan without break-glass: that it was not protected then', async () => {
    const [site] = freshSites(1);
    const id = await approved(appsOf([site!], APPS));
    await query(h.databaseUrl, `UPDATE tenants SET protected = true WHERE id = $1`, [tenantId(site!)]);
    const res = await command(h, 'operator', id, 'start').expect(409);
    expect(res.body.details.changed[0].reason).toBe(
      `its tenant ${tenantId(site!)} is protected now (it was not when the plan was made)`,
    );
    await command(h, 'operator', id, 'abort', { reason: 'test' }).expect(200);
  });
});

describe('start: always the whole plan', () => {
  it('for a plan with a cascade (sites take their apps)', async () => {
    const id = await approved(freshSites(2).map(siteId), 'site');
    await alterLedger(id);
    expect(await startWent(id)).toBe('full');
  });

  it('for a plan older than its snapshot may be compared (12 hours)', async () => {
    const id = await approved(appsOf(freshSites(1), APPS));
    await alterLedger(id);
    await query(h.databaseUrl, `UPDATE operations SET created_at = now() - interval '13 hours' WHERE id = $1`, [id]);
    expect(await startWent(id)).toBe('full');
  });
});

describe('an import that changes what a live operation holds', () => {
  it('says so in its answer (the holder and its state); the plan then does not start', async () => {
    const [site, elsewhere] = freshSites(2);
    const ids = appsOf([site!], APPS);
    const id = await approved(ids);
    // A wrong tenantId in an import meant to mark one resource: it moves the resource.
    const moved = await request(h.app.server)
      .post('/v1/registry/resources')
      .set('authorization', h.auth('admin'))
      .send({
        resources: [
          { id: ids[1], type: 'app', tenantId: tenantId(elsewhere!), parentId: siteId(site!), protected: true },
          { id: appId(elsewhere!, 0), type: 'app', tenantId: tenantId(elsewhere!), protected: true },
        ],
      })
      .expect(200);
    expect(moved.body).toMatchObject({ updated: 2 });
    expect(moved.body.held).toEqual({
      count: 1,
      resources: [{ id: ids[1], operationId: id, operationState: 'approved' }],
    });
    // The operation's own audit trail shows the import that changed what it holds.
    expect(await heldEvents(id)).toEqual([
      { by: 'registry.import', operationState: 'approved', count: 1, resources: [ids[1]] },
    ]);
    const res = await command(h, 'operator', id, 'start').expect(409);
    expect(res.body.details.changed.map((c: { resourceId: string }) => c.resourceId)).toEqual([ids[1]]);
    // Nothing held among what an import changes: no `held`.
    const other = await request(h.app.server)
      .post('/v1/registry/resources')
      .set('authorization', h.auth('admin'))
      .send({ resources: [{ id: appId(elsewhere!, 1), type: 'app', tenantId: tenantId(elsewhere!), protected: true }] })
      .expect(200);
    expect(other.body.updated).toBe(1);
    expect(other.body).not.toHaveProperty('held');
  });
});

describe('an import that puts resources under a parent a live operation holds', () => {
  it('names them with that parent (under), moved or new; the cascade plan then does not start', async () => {
    const [site, other] = freshSites(2);
    const id = await approved([siteId(site!)], 'site');
    const res = await request(h.app.server)
      .post('/v1/registry/resources')
      .set('authorization', h.auth('admin'))
      .send({
        resources: [
          // Moved from another site under the held one, and a new app under it.
          { id: appId(other!, 0), type: 'app', tenantId: tenantId(site!), parentId: siteId(site!) },
          { id: `app_77777_${site}`, type: 'app', tenantId: tenantId(site!), parentId: siteId(site!) },
          // Under a parent nothing holds: not named.
          { id: `app_77777_${other}`, type: 'app', tenantId: tenantId(other!), parentId: siteId(other!) },
        ],
      });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ inserted: 2, updated: 1 });
    expect(res.body.held).toEqual({
      count: 2,
      resources: [
        { id: appId(other!, 0), operationId: id, operationState: 'approved', under: siteId(site!) },
        { id: `app_77777_${site}`, operationId: id, operationState: 'approved', under: siteId(site!) },
      ],
    });
    expect(await heldEvents(id)).toEqual([
      {
        by: 'registry.import',
        operationState: 'approved',
        count: 2,
        resources: [appId(other!, 0), `app_77777_${site}`],
      },
    ]);
    const stale = await command(h, 'operator', id, 'start').expect(409);
    expect(stale.body.code).toBe('PLAN_STALE');
    // Re-sending the same rows changes nothing, and says nothing.
    const again = await request(h.app.server)
      .post('/v1/registry/resources')
      .set('authorization', h.auth('admin'))
      .send({
        resources: [{ id: `app_77777_${site}`, type: 'app', tenantId: tenantId(site!), parentId: siteId(site!) }],
      })
      .expect(200);
    expect(again.body).toMatchObject({ unchanged: 1 });
    expect(again.body).not.toHaveProperty('held');
    await command(h, 'operator', id, 'abort', { reason: 'test' }).expect(200);
  });

  it('lists a held resource moved under another held parent once, as itself; both operations get the event', async () => {
    const [a, b] = freshSites(2);
    const apps = await approved([appId(a!, 1)]);
    const sites = await approved([siteId(b!)], 'site');
    const res = await request(h.app.server)
      .post('/v1/registry/resources')
      .set('authorization', h.auth('admin'))
      .send({ resources: [{ id: appId(a!, 1), type: 'app', tenantId: tenantId(a!), parentId: siteId(b!) }] })
      .expect(200);
    expect(res.body.held).toEqual({
      count: 1,
      resources: [{ id: appId(a!, 1), operationId: apps, operationState: 'approved' }],
    });
    // Each operation's trail has it: the app's holder, and the holder of the site it went under.
    expect(await heldEvents(apps)).toEqual([
      { by: 'registry.import', operationState: 'approved', count: 1, resources: [appId(a!, 1)] },
    ]);
    expect(await heldEvents(sites)).toEqual([
      { by: 'registry.import', operationState: 'approved', count: 1, resources: [appId(a!, 1)] },
    ]);
    for (const id of [apps, sites]) await command(h, 'operator', id, 'abort', { reason: 'test' }).expect(200);
  });
});

describe('a tenant upsert that protects tenants whose resources a live operation holds', () => {
  it('says which resources (held); the plan then does not start; protecting it again says nothing', async () => {
    const [site] = freshSites(1);
    const ids = appsOf([site!], APPS);
    const id = await approved(ids);
    const protect = () =>
      request(h.app.server)
        .post('/v1/registry/tenants')
        .set('authorization', h.auth('admin'))
        .send({ tenants: [{ id: tenantId(site!), name: `Customer ${site!}`, protected: true }] })
        .expect(200);
    const res = await protect();
    expect(res.body.updated).toBe(1);
    expect(res.body.held).toEqual({
      count: APPS,
      resources: ids.map((r) => ({ id: r, operationId: id, operationState: 'approved' })),
    });
    expect(await heldEvents(id)).toEqual([
      { by: 'registry.tenants.upsert', operationState: 'approved', count: APPS, resources: ids },
    ]);
    await command(h, 'operator', id, 'start').expect(409);
    const again = await protect();
    expect(again.body).toMatchObject({ updated: 0, unchanged: 1 });
    expect(again.body).not.toHaveProperty('held');
    await command(h, 'operator', id, 'abort', { reason: 'test' }).expect(200);
  });
});
