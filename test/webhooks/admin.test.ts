// /v1/admin/webhooks: admins only; a bad URL, a host the allow-list does not name or an unknown
// event type is a 4xx with a code naming it, and creates nothing; every change is audited without
// the URL's path (the audit log is readable by every role).
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

const URL_OK = 'http://127.0.0.1:9/hooks/T000/B000/secret-path';
const post = (body: object, role: Parameters<TestApp['auth']>[0] = 'admin') =>
  request(t.app.server).post('/v1/admin/webhooks').set('authorization', t.auth(role)).send(body);
const count = async () =>
  (await query<{ n: number }>(t.databaseUrl, 'SELECT count(*)::int AS n FROM webhook_endpoints'))[0]!.n;

describe('webhook admin routes', () => {
  it('refuses every role but admin (403 FORBIDDEN), creating nothing', async () => {
    for (const role of ['viewer', 'requester', 'approver', 'operator'] as const) {
      const res = await post({ url: URL_OK, events: ['*'] }, role);
      expect(res.status, role).toBe(403);
      expect(res.body.code).toBe('FORBIDDEN');
      const list = await request(t.app.server).get('/v1/admin/webhooks').set('authorization', t.auth(role));
      expect(list.status).toBe(403);
    }
    expect(await count()).toBe(0);
  });

  it('refuses bad URLs with a code naming the problem', async () => {
    const cases: [string, number, string][] = [
      ['ftp://127.0.0.1/x', 422, 'WEBHOOK_URL_INVALID'],
      ['not a url', 422, 'WEBHOOK_URL_INVALID'],
      ['http://user:pw@127.0.0.1/x', 422, 'WEBHOOK_URL_INVALID'],
      ['https://hooks.example.com/x', 422, 'WEBHOOK_HOST_NOT_ALLOWED'],
      // Link-local (cloud metadata): never, unless the allow-list names it.
      ['http://169.254.169.254/latest', 422, 'WEBHOOK_HOST_NOT_ALLOWED'],
      ['', 400, 'VALIDATION_FAILED'],
    ];
    for (const [url, status, code] of cases) {
      const res = await post({ url, events: ['*'] });
      expect(res.status, url).toBe(status);
      expect(res.body.code, url).toBe(code);
    }
    const notAllowed = await post({ url: 'https://hooks.example.com/x', events: ['*'] });
    expect(notAllowed.body.details).toMatchObject({ field: 'url', allowed: expect.arrayContaining(['127.0.0.1']) });
    expect(await count()).toBe(0);
  });

  it('names unknown event types', async () => {
    const res = await post({ url: URL_OK, events: ['operation.completed', 'operation.exploded', 'freeze.maybe'] });
    expect(res.status).toBe(422);
    expect(res.body.code).toBe('UNKNOWN_EVENT_TYPE');
    expect(res.body.details.unknown).toEqual(['operation.exploded', 'freeze.maybe']);
    expect(res.body.message).toContain('"operation.exploded"');
    expect(res.body.details.allowed).toContain('restore.rolled_back');
    for (const body of [{ url: URL_OK, events: [] }, { url: URL_OK }, { url: URL_OK, events: ['*'], format: 'xml' }]) {
      const r = await post(body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.code).toBe('VALIDATION_FAILED');
    }
    expect(await count()).toBe(0);
  });

  it('creates, lists, reads, updates, rotates and deletes, auditing each change without the URL path', async () => {
    const created = await post({
      url: URL_OK,
      events: ['operation.halted'],
      format: 'slack',
      description: 'Incidents',
    });
    expect(created.status).toBe(201);
    const { id, secret } = created.body as { id: string; secret: string };
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(created.body).toMatchObject({ url: URL_OK, format: 'slack', enabled: true, deletedAt: null });
    // The secret is stored sealed, not as written.
    const raw = await query<{ s: Buffer }>(t.databaseUrl, 'SELECT secret_sealed AS s FROM webhook_endpoints');
    expect(raw[0]!.s.toString('latin1')).not.toContain(secret.slice(6, 20));

    const admin = t.auth('admin');
    const list = await request(t.app.server).get('/v1/admin/webhooks').set('authorization', admin);
    expect(list.body.items.map((e: { id: string }) => e.id)).toEqual([id]);
    expect(JSON.stringify(list.body)).not.toContain('whsec_');
    const got = await request(t.app.server).get(`/v1/admin/webhooks/${id}`).set('authorization', admin);
    expect(got.status).toBe(200);
    expect(got.body.secret).toBeUndefined();

    const bad = await request(t.app.server)
      .patch(`/v1/admin/webhooks/${id}`)
      .set('authorization', admin)
      .send({ events: ['purge.nope'] });
    expect(bad.status).toBe(422);
    expect(bad.body.details.unknown).toEqual(['purge.nope']);
    const patched = await request(t.app.server)
      .patch(`/v1/admin/webhooks/${id}`)
      .set('authorization', admin)
      .send({ enabled: false, events: ['*'] });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ enabled: false, events: ['*'], format: 'slack' });

    const rotated = await request(t.app.server)
      .post(`/v1/admin/webhooks/${id}/rotate-secret`)
      .set('authorization', admin);
    expect(rotated.status).toBe(200);
    expect(rotated.body.secret).toMatch(/^whsec_/);
    expect(rotated.body.secret).not.toBe(secret);

    const deleted = await request(t.app.server).delete(`/v1/admin/webhooks/${id}`).set('authorization', admin);
    expect(deleted.status).toBe(200);
    expect(deleted.body.deletedAt).not.toBeNull();
    const after = await request(t.app.server).get('/v1/admin/webhooks').set('authorization', admin);
    expect(after.body.items).toEqual([]);
    const withDeleted = await request(t.app.server)
      .get('/v1/admin/webhooks?includeDeleted=true')
      .set('authorization', admin);
    expect(withDeleted.body.items).toHaveLength(1);
    const log = await request(t.app.server).get(`/v1/admin/webhooks/${id}/deliveries`).set('authorization', admin);
    expect(log.status).toBe(200);
    expect(log.body).toEqual({ items: [], nextAfter: null, links: { next: null } });
    const again = await request(t.app.server).delete(`/v1/admin/webhooks/${id}`).set('authorization', admin);
    expect(again.status).toBe(409);
    expect(again.body.code).toBe('WEBHOOK_DELETED');

    const audit = await query<{ action: string; payload: Record<string, unknown> }>(
      t.databaseUrl,
      `SELECT action, payload FROM audit_events WHERE action LIKE 'webhook.%' ORDER BY seq`,
    );
    expect(audit.map((a) => a.action)).toEqual([
      'webhook.create',
      'webhook.update',
      'webhook.rotate_secret',
      'webhook.delete',
    ]);
    for (const a of audit) {
      expect(a.payload).toMatchObject({ webhookId: id, origin: 'http://127.0.0.1:9' });
      expect(JSON.stringify(a.payload)).not.toContain('secret-path');
      expect(JSON.stringify(a.payload)).not.toContain('whsec_');
    }
  });

  it('answers 404 for an unknown endpoint, whatever the ID looks like', async () => {
    for (const id of ['00000000-0000-4000-8000-000000000000', 'not-a-uuid']) {
      for (const [method, path] of [
        ['get', `/v1/admin/webhooks/${id}`],
        ['get', `/v1/admin/webhooks/${id}/deliveries`],
        ['delete', `/v1/admin/webhooks/${id}`],
        ['post', `/v1/admin/webhooks/${id}/rotate-secret`],
      ] as const) {
        const res = await request(t.app.server)[method](path).set('authorization', t.auth('admin'));
        expect(res.status, `${method} ${path}`).toBe(404);
        expect(res.body.code).toBe('NOT_FOUND');
      }
    }
  });
});
