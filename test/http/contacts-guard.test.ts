// Tenant contacts are out of reach of every path but the registry's own upsert, enforced by the
// database: a plain UPDATE, DELETE or TRUNCATE is refused whatever code sends it.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { query } from '../support/seed.ts';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
});
afterAll(async () => {
  await t?.close();
});

describe('tenant contacts guard', () => {
  it('lets the registry write contacts and refuses any other change in the database', async () => {
    const tenants = [{ id: 'tn_guard', name: 'Guarded', contact: { email: 'ops@example.test' } }];
    await request(t.app.server)
      .post('/v1/registry/tenants')
      .set('authorization', t.auth('admin'))
      .send({ tenants })
      .expect(200);
    const updated = [{ id: 'tn_guard', name: 'Guarded', contact: { email: 'new@example.test' } }];
    await request(t.app.server)
      .post('/v1/registry/tenants')
      .set('authorization', t.auth('admin'))
      .send({ tenants: updated })
      .expect(200);
    expect(await query(t.databaseUrl, `SELECT contact FROM tenant_contacts WHERE tenant_id = 'tn_guard'`)).toEqual([
      { contact: { email: 'new@example.test' } },
    ]);
    for (const sql of [
      `UPDATE tenant_contacts SET contact = '{}' WHERE tenant_id = 'tn_guard'`,
      `DELETE FROM tenant_contacts WHERE tenant_id = 'tn_guard'`,
      `TRUNCATE tenant_contacts`,
      `INSERT INTO tenant_contacts (tenant_id, contact) VALUES ('tn_guard2', '{}')`,
    ]) {
      await expect(query(t.databaseUrl, sql), sql).rejects.toThrow(/tenant contacts|append-only/);
    }
    expect(await query(t.databaseUrl, `SELECT contact FROM tenant_contacts WHERE tenant_id = 'tn_guard'`)).toEqual([
      { contact: { email: 'new@example.test' } },
    ]);
  });
});
