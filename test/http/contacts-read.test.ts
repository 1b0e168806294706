// Who can read tenant contacts: admins, one tenant at a time; admins and operators, for the
// tenants an operation affects. Everyone else sees tenant IDs without contacts. Every read that
// returns contacts is in the audit log.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Role } from '../../src/modules/auth/roles.ts';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { appId, query, seedRegistry, tenantId } from '../support/seed.ts';

let t: TestApp;
const contactOf = (i: number) => ({ email: `ops${i}@example.test`, phone: `+1 555 01${i}` });

beforeAll(async () => {
  t = await buildTestApp();
  await seedRegistry(t.databaseUrl, { sites: 4, appsPerSite: 3 });
  // Tenants 0–2 have contacts; tenant 3 has none.
  await request(t.app.server)
    .post('/v1/registry/tenants')
    .set('authorization', t.auth('admin'))
    .send({ tenants: [0, 1, 2].map((i) => ({ id: tenantId(i), name: `Customer ${i}`, contact: contactOf(i) })) })
    .expect(200);
});
afterAll(async () => {
  await t?.close();
});

const get = (role: Role, path: string) => request(t.app.server).get(path).set('authorization', t.auth(role));
const auditOf = (action: string) =>
  query<{ actor: string; operation_id: string | null; payload: Record<string, unknown> }>(
    t.databaseUrl,
    'SELECT actor, operation_id, payload FROM audit_events WHERE action = $1 ORDER BY seq',
    [action],
  );

describe('GET /v1/registry/tenants/{id}/contact', () => {
  it('answers admins only, and records every read', async () => {
    const r = await get('admin', `/v1/registry/tenants/${tenantId(1)}/contact`).expect(200);
    expect(r.body).toEqual({ tenantId: tenantId(1), contact: contactOf(1), updatedAt: expect.any(String) });
    for (const role of ['viewer', 'requester', 'approver', 'operator'] as const) {
      const refused = await get(role, `/v1/registry/tenants/${tenantId(1)}/contact`).expect(403);
      expect(refused.body.code).toBe('FORBIDDEN');
    }
    // A tenant without contact data: null, not an error.
    const none = await get('admin', `/v1/registry/tenants/${tenantId(3)}/contact`).expect(200);
    expect(none.body).toEqual({ tenantId: tenantId(3), contact: null, updatedAt: null });
    expect(await auditOf('registry.contact.read')).toEqual([
      { actor: 'bootstrap-admin', operation_id: null, payload: { tenantId: tenantId(1), hasContact: true } },
      { actor: 'bootstrap-admin', operation_id: null, payload: { tenantId: tenantId(3), hasContact: false } },
    ]);
  });

  it('answers 404 NOT_FOUND naming an unknown tenant', async () => {
    const r = await get('admin', '/v1/registry/tenants/tn_nobody/contact').expect(404);
    expect(r.body).toMatchObject({
      code: 'NOT_FOUND',
      message: 'Tenant tn_nobody does not exist',
      details: { tenant: 'tn_nobody' },
    });
  });

  it('is not part of the tenant read that every role may make', async () => {
    const r = await get('viewer', `/v1/registry/tenants/${tenantId(1)}`).expect(200);
    expect(JSON.stringify(r.body)).not.toContain(contactOf(1).email);
  });
});

describe('GET /v1/operations/{id}/tenants', () => {
  let opId: string;
  beforeAll(async () => {
    const ids = [0, 1, 3].flatMap((s) => [appId(s, 0), appId(s, 1)]);
    const r = await request(t.app.server)
      .post('/v1/operations')
      .set('authorization', t.auth('requester'))
      .send({ targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-6', ids })
      .expect(201);
    opId = r.body.id;
    expect(r.body.links.tenants).toBe(`/v1/operations/${opId}/tenants`);
  });

  const row = (i: number) => ({
    tenantId: tenantId(i),
    name: `Customer ${i}`,
    internal: false,
    protected: false,
    wave: expect.any(Number),
    items: 2,
    states: { pending: 2 },
  });

  it('lists the affected tenants with their contacts for admins and operators, and records the read', async () => {
    for (const role of ['operator', 'admin'] as const) {
      const r = await get(role, `/v1/operations/${opId}/tenants`).expect(200);
      expect(r.body).toEqual({
        contactsIncluded: true,
        items: [
          { ...row(0), contact: contactOf(0) },
          { ...row(1), contact: contactOf(1) },
          { ...row(3), contact: null },
        ],
        nextCursor: null,
        links: { next: null },
      });
    }
    const audit = await auditOf('operation.contacts.read');
    expect(audit).toEqual([
      {
        actor: 'test-operator',
        operation_id: opId,
        payload: { role: 'operator', tenants: [tenantId(0), tenantId(1), tenantId(3)] },
      },
      {
        actor: 'bootstrap-admin',
        operation_id: opId,
        payload: { role: 'admin', tenants: [tenantId(0), tenantId(1), tenantId(3)] },
      },
    ]);
  });

  it('shows requesters, approvers and viewers the tenant IDs without contacts', async () => {
    const before = (await auditOf('operation.contacts.read')).length;
    for (const role of ['requester', 'approver', 'viewer'] as const) {
      const r = await get(role, `/v1/operations/${opId}/tenants`).expect(200);
      expect(r.body).toEqual({
        contactsIncluded: false,
        items: [row(0), row(1), row(3)],
        nextCursor: null,
        links: { next: null },
      });
    }
    expect(await auditOf('operation.contacts.read')).toHaveLength(before);
  });

  it('pages by tenant ID', async () => {
    const first = await get('viewer', `/v1/operations/${opId}/tenants?limit=2`).expect(200);
    expect(first.body.items.map((r: { tenantId: string }) => r.tenantId)).toEqual([tenantId(0), tenantId(1)]);
    expect(first.body.nextCursor).toBe(tenantId(1));
    // The next page's link, as every other list gives it (it had only nextCursor: a trial).
    expect(first.body.links).toEqual({ next: `/v1/operations/${opId}/tenants?limit=2&cursor=${tenantId(1)}` });
    const second = await get('viewer', first.body.links.next).expect(200);
    expect(second.body).toEqual({ contactsIncluded: false, items: [row(3)], nextCursor: null, links: { next: null } });
  });

  it('answers 404 naming an unknown operation', async () => {
    const r = await get('operator', '/v1/operations/op_nothing/tenants').expect(404);
    expect(r.body).toMatchObject({ code: 'NOT_FOUND', details: { operation: 'op_nothing' } });
  });
});
