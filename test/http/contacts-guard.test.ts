// Tenant contacts are out of reach of every path but the registry's own upsert, enforced by the
// database: a plain UPDATE, DELETE or TRUNCATE is refused whatever code sends it.
import pg from 'pg';
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

  it("refuses writers that are not the registry, and the registry's permission ends with its transaction", async () => {
    // One connection, as a pooled one is reused: what a transaction declared must not outlive it.
    const client = new pg.Client({ connectionString: t.databaseUrl });
    await client.connect();
    try {
      const update = `UPDATE tenant_contacts SET contact = '{"email":"x@example.test"}' WHERE tenant_id = 'tn_guard'`;
      await client.query('BEGIN');
      await client.query(`SET LOCAL blastgate.contact_writer = 'purge'`);
      await expect(client.query(update)).rejects.toThrow(/written only by the registry/);
      await client.query('ROLLBACK');

      await client.query('BEGIN');
      await client.query(`SET LOCAL blastgate.contact_writer = 'registry'`);
      await client.query('COMMIT');
      await expect(client.query(update)).rejects.toThrow(/written only by the registry/);
      await expect(client.query(`DELETE FROM tenant_contacts`)).rejects.toThrow(/never deleted/);
      // Even the registry's own transaction cannot delete a contact.
      await client.query('BEGIN');
      await client.query(`SET LOCAL blastgate.contact_writer = 'registry'`);
      await expect(client.query(`DELETE FROM tenant_contacts WHERE tenant_id = 'tn_guard'`)).rejects.toThrow(
        /never deleted/,
      );
      await client.query('ROLLBACK');
    } finally {
      await client.end();
    }
    expect(await query(t.databaseUrl, `SELECT contact FROM tenant_contacts WHERE tenant_id = 'tn_guard'`)).toEqual([
      { contact: { email: 'new@example.test' } },
    ]);
  });
});
