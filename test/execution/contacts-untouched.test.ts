// Every destructive path Blastgate has runs against tenants with contacts — soft delete, compliance
// erasure (of apps, and of a site with its cascade), a site delete, a purge, a rollback, registry
// imports that change and replace resources, tenant
// and type upserts — and the contacts are exactly as they were, down to their updated_at.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appsOf, command } from '../support/exec-helpers.ts';
import { buildExecHarness, submitAndStart, waitForState, type ExecHarness } from '../support/execution.ts';
import { appId, query, seedRegistry, siteId, tenantId } from '../support/seed.ts';

const SITES = 10;
const APPS = 4;
let h: ExecHarness;

beforeAll(async () => {
  h = await buildExecHarness();
  await seedRegistry(h.databaseUrl, { sites: SITES, appsPerSite: APPS });
  const tenants = Array.from({ length: SITES }, (_, i) => ({
    id: tenantId(i),
    name: `Customer ${i}`,
    contact: { email: `ops${i}@example.test`, phone: `+1 555 01${i}`, notes: ['call before 18:00'] },
  }));
  await request(h.app.server)
    .post('/v1/registry/tenants')
    .set('authorization', h.auth('admin'))
    .send({ tenants })
    .expect(200);
});
afterAll(async () => {
  await h?.close();
});

const contacts = () =>
  query(h.databaseUrl, 'SELECT tenant_id, contact, updated_at FROM tenant_contacts ORDER BY tenant_id');
const states = async (ids: string[]) =>
  new Set(
    (await query<{ state: string }>(h.databaseUrl, 'SELECT state FROM resources WHERE id = ANY($1)', [ids])).map(
      (r) => r.state,
    ),
  );

async function runToEnd(body: Record<string, unknown>) {
  const op = await submitAndStart(h, { rollout: { bakeSeconds: 0 }, ...body });
  expect((await waitForState(h, op.id, ['completed', 'completed_with_failures', 'halted', 'rolled_back'])).state).toBe(
    'completed',
  );
  return op.id;
}

const admin = (method: 'post' | 'put', path: string) =>
  request(h.app.server)[method](path).set('authorization', h.auth('admin'));

describe('tenant contacts', () => {
  it('are unchanged by every destructive path', async () => {
    const before = await contacts();
    expect(before).toHaveLength(SITES);

    // Soft delete, then a compliance erasure (admin + second approver), of apps.
    await runToEnd({ ids: appsOf([0, 1], APPS) });
    expect(await states(appsOf([0, 1], APPS))).toEqual(new Set(['soft_deleted']));
    await runToEnd({ ids: appsOf([2], APPS), erasure: true });
    expect(await states(appsOf([2], APPS))).toEqual(new Set(['purged']));
    // And an erasure of a site: its cascade takes the apps, and every key is destroyed.
    await runToEnd({ targetType: 'site', ids: [siteId(9)], erasure: true });
    expect(await states([siteId(9), ...appsOf([9], APPS)])).toEqual(new Set(['purged']));

    // A site delete (the type cascades to apps).
    await runToEnd({ targetType: 'site', ids: [siteId(5)] });
    expect(await states([siteId(5)])).toEqual(new Set(['soft_deleted']));

    // A purge of the apps soft-deleted above, once their retention has ended.
    await query(h.databaseUrl, `UPDATE resources SET purge_after = now() - interval '1 day' WHERE id = ANY($1)`, [
      appsOf([0, 1], APPS),
    ]);
    const purge = await request(h.app.server)
      .post('/v1/purges')
      .set('authorization', h.auth('requester'))
      .send({
        targetType: 'app',
        ids: appsOf([0, 1], APPS),
        reason: 'Retention ended',
        ticket: 'CHG-1',
        rollout: { bakeSeconds: 0 },
      });
    expect(purge.status, JSON.stringify(purge.body)).toBe(201);
    await command(h, 'approver', purge.body.id, 'approve', { planHash: purge.body.planHash }).expect(200);
    await command(h, 'operator', purge.body.id, 'start').expect(200);
    expect((await waitForState(h, purge.body.id, ['completed', 'completed_with_failures', 'halted'])).state).toBe(
      'completed',
    );
    expect(await states(appsOf([0, 1], APPS))).toEqual(new Set(['purged']));

    // A completed delete rolled back.
    const rolled = await runToEnd({ ids: appsOf([3, 4], APPS) });
    expect((await command(h, 'operator', rolled, 'rollback', { reason: 'customer asked' })).status).toBe(200);
    expect((await waitForState(h, rolled, ['rolled_back', 'rollback_incomplete'])).state).toBe('rolled_back');
    expect(await states(appsOf([3, 4], APPS))).toEqual(new Set(['active']));

    // Registry imports that change states and parents (JSON) and replace resources (NDJSON).
    await admin('post', '/v1/registry/resources')
      .send({
        resources: [
          { id: appId(6, 0), type: 'app', tenantId: tenantId(6), parentId: null, state: 'purged' },
          { id: appId(6, 1), type: 'app', tenantId: tenantId(6), parentId: siteId(7), state: 'soft_deleted' },
          { id: siteId(6), type: 'site', tenantId: tenantId(6), state: 'purged', protected: true },
        ],
      })
      .expect(200);
    const ndjson = [7, 8]
      .flatMap((s) => [appId(s, 0), appId(s, 1)].map((id) => ({ id, type: 'app', tenantId: tenantId(s) })))
      .map((r) => JSON.stringify({ ...r, state: 'purged' }))
      .join('\n');
    await admin('post', '/v1/registry/resources').set('content-type', 'application/x-ndjson').send(ndjson).expect(200);
    expect(await states([appId(6, 0), appId(7, 0), appId(8, 1), siteId(6)])).toEqual(new Set(['purged']));

    // Tenant upserts without contacts (names and flags change) and a type re-declaration.
    const renamed = await admin('post', '/v1/registry/tenants')
      .send({
        tenants: Array.from({ length: SITES }, (_, i) => ({
          id: tenantId(i),
          name: `Renamed ${i}`,
          internal: i === 0,
          protected: i === 9,
        })),
      })
      .expect(200);
    expect(renamed.body).toMatchObject({ updated: SITES, contactsChanged: 0 });
    await admin('put', '/v1/registry/types')
      .send({
        types: [
          { name: 'site', idPattern: '^site_[0-9]+$' },
          { name: 'app', parentType: 'site' },
        ],
      })
      .expect(200);

    expect(await contacts()).toEqual(before);
    const read = await request(h.app.server)
      .get(`/v1/registry/tenants/${tenantId(2)}/contact`)
      .set('authorization', h.auth('admin'))
      .expect(200);
    expect(read.body.contact).toEqual(before[2]!.contact);
  });
});
