// Reading the audit log as an investigation does: "who protected what", "every refusal today",
// "what did this token do". Filters by action (exact, or a prefix ending in `*`), actor and
// outcome, combined with operationId and paging; pages carry links.next with the same filters.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { changedTables, fingerprint } from '../support/fingerprint.ts';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
  const s = t.app.server;
  // Accepted by the admin: a tenant import and a resource type; refused: an operator command on
  // an operation that does not exist, twice.
  await request(s)
    .post('/v1/registry/tenants')
    .set('authorization', t.auth('admin'))
    .send({ tenants: [{ id: 'tn_audit_1', name: 'Audit one', protected: true }] })
    .expect(200);
  await request(s)
    .put('/v1/registry/types')
    .set('authorization', t.auth('admin'))
    .send({ types: [{ name: 'auditapp' }] })
    .expect(200);
  for (const k of [1, 2])
    await request(s)
      .post(`/v1/operations/op_missing${k}/pause`)
      .set('authorization', t.auth('operator'))
      .send({ reason: 'checking' })
      .expect(404);
});
afterAll(async () => {
  await t?.close();
});

interface Event {
  seq: number;
  actor: string;
  action: string;
  outcome: string;
}
const get = (path: string) => request(t.app.server).get(path).set('authorization', t.auth('viewer'));
const events = async (qs: string) => {
  const r = await get(`/v1/audit?${qs}`).expect(200);
  return r.body as { items: Event[]; nextAfter: number | null; links: { next: string | null } };
};

describe('GET /v1/audit filters', () => {
  it('by action: exact, several (repeated or comma-separated), or a prefix ending in *', async () => {
    const tenants = await events('action=registry.tenants.upsert');
    expect(tenants.items.length).toBeGreaterThan(0);
    expect(new Set(tenants.items.map((e) => e.action))).toEqual(new Set(['registry.tenants.upsert']));

    const registry = await events('action=registry.*');
    expect(new Set(registry.items.map((e) => e.action))).toEqual(
      new Set(['registry.tenants.upsert', 'registry.types.put']),
    );
    const two = await events('action=registry.tenants.upsert,registry.types.put');
    expect(two.items.map((e) => e.seq)).toEqual(registry.items.map((e) => e.seq));
    const repeated = await events('action=registry.tenants.upsert&action=registry.types.put');
    expect(repeated.items.map((e) => e.seq)).toEqual(registry.items.map((e) => e.seq));
    // `_` and `%` are letters here, not LIKE wildcards.
    expect((await events('action=registry_*')).items).toEqual([]);
    expect((await events('action=%25')).items).toEqual([]);
  });

  it('by actor and by outcome, combined with the action', async () => {
    const refused = await events('outcome=refused');
    expect(refused.items.length).toBeGreaterThanOrEqual(2);
    expect(refused.items.every((e) => e.outcome === 'refused')).toBe(true);
    const byOperator = await events('actor=test-operator&outcome=refused');
    expect(byOperator.items).toHaveLength(2);
    expect(byOperator.items.every((e) => e.actor === 'test-operator')).toBe(true);
    const admin = (await events('action=registry.types.put')).items[0]!.actor;
    expect((await events(`actor=${admin}&outcome=refused`)).items).toEqual([]);
    const adminTypes = await events(`actor=${admin}&action=registry.types.*`);
    expect(adminTypes.items.map((e) => e.action)).toEqual(['registry.types.put']);
    expect((await events('actor=test-operator&action=registry.types.*')).items).toEqual([]);
  });

  it('pages with links.next that keeps the filters, to the end', async () => {
    const first = await events('outcome=refused&limit=1');
    expect(first.items).toHaveLength(1);
    expect(first.links.next).toBe(`/v1/audit?outcome=refused&limit=1&after=${first.nextAfter}`);
    const second = (await get(first.links.next!).expect(200)).body as typeof first;
    expect(second.items).toHaveLength(1);
    expect(second.items[0]!.seq).toBeGreaterThan(first.items[0]!.seq);
    expect(second.items[0]!.outcome).toBe('refused');
    const all = await events('limit=1000');
    expect(all.links).toEqual({ next: null });
    // A last page that is exactly full offers no next page (it led to an empty one).
    const exact = await events(`limit=${all.items.length}`);
    expect(exact.items).toEqual(all.items);
    expect(exact).toMatchObject({ nextAfter: null, links: { next: null } });
  });

  it('refuses an empty or oversized filter value with 400 naming it, and changes nothing', async () => {
    for (const [qs, field] of [
      ['action=', 'querystring.action'],
      [`actor=${'x'.repeat(300)}`, 'querystring.actor'],
      ['outcome=a%00b', 'querystring.outcome'],
      // An outcome the log never records: it was an empty page, as if nothing had been refused (a trial).
      ['outcome=meh', 'querystring.outcome'],
      ['outcome=refused,failed', 'querystring.outcome'],
    ] as const) {
      const before = await fingerprint(t.app.db.pool);
      const r = await get(`/v1/audit?${qs}`).expect(400);
      expect(r.body.code, qs).toBe('VALIDATION_FAILED');
      expect(JSON.stringify(r.body.details), qs).toContain(field);
      expect(changedTables(before, await fingerprint(t.app.db.pool))).toEqual([]);
    }
  });
});
