// API tokens: optional expiry, rotation with a grace period, scope, clear 401s for each reason a
// secret no longer works, and audit events that commit with the change they record.
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

const admin = () => t.auth('admin');
const create = (body: Record<string, unknown>) =>
  request(t.app.server).post('/v1/admin/tokens').set('authorization', admin()).send(body);
const rotate = (id: string, body: Record<string, unknown> = {}) =>
  request(t.app.server).post(`/v1/admin/tokens/${id}/rotate`).set('authorization', admin()).send(body);
/** A read any role may do: answers 200 while the secret works. */
const whoami = (secret: string) =>
  request(t.app.server).get('/v1/audit?limit=1').set('authorization', `Bearer ${secret}`);
const auditOf = (action: string, tokenId: string) =>
  query<{ actor: string; payload: Record<string, unknown> }>(
    t.databaseUrl,
    `SELECT actor, payload FROM audit_events WHERE action = $1 AND payload->>'tokenId' = $2 ORDER BY seq`,
    [action, tokenId],
  );

describe('token expiry', () => {
  it('a token with an expiry works until then, and afterwards is 401 TOKEN_EXPIRED naming when', async () => {
    const expiresAt = new Date(Date.now() + 3_600_000).toISOString();
    const made = await create({ name: 'nightly-job', role: 'viewer', expiresAt }).expect(201);
    expect(made.body).toMatchObject({ name: 'nightly-job', role: 'viewer', expiresAt });
    await whoami(made.body.token).expect(200);
    // The clock moves on: the expiry is now in the past.
    await query(t.databaseUrl, `UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1`, [
      made.body.id,
    ]);
    const r = await whoami(made.body.token).expect(401);
    expect(r.body).toMatchObject({
      code: 'TOKEN_EXPIRED',
      message: expect.stringMatching(/^The token "nightly-job" expired at \S+Z; ask an admin for a new one$/),
      details: { tokenId: made.body.id, name: 'nightly-job', expiredAt: expect.any(String) },
    });
  });

  it('refuses an expiry that is not in the future, naming the field', async () => {
    const r = await create({ name: 'late', role: 'viewer', expiresAt: '2020-01-01T00:00:00Z' }).expect(400);
    expect(r.body).toMatchObject({ code: 'EXPIRY_NOT_IN_FUTURE', details: { field: 'body.expiresAt' } });
  });
});

describe('token rotation', () => {
  it('gives a new secret once; the old one works through the grace period, then is 401 TOKEN_ROTATED', async () => {
    const made = await create({ name: 'ci-rotating', role: 'requester' }).expect(201);
    const rotated = await rotate(made.body.id, { graceSeconds: 3600 }).expect(200);
    expect(rotated.body).toMatchObject({ id: made.body.id, name: 'ci-rotating', role: 'requester' });
    expect(rotated.body.token).not.toBe(made.body.token);
    const until = Date.parse(rotated.body.previousSecretsValidUntil);
    expect(until - Date.now()).toBeGreaterThan(3_500_000);
    expect(until - Date.now()).toBeLessThanOrEqual(3_600_000);
    // Inside the grace period both secrets work, as the same token.
    await whoami(made.body.token).expect(200);
    await whoami(rotated.body.token).expect(200);
    await query(
      t.databaseUrl,
      `UPDATE api_token_secrets SET retires_at = now() - interval '1 second' WHERE retires_at IS NOT NULL AND token_id = $1`,
      [made.body.id],
    );
    const r = await whoami(made.body.token).expect(401);
    expect(r.body).toMatchObject({
      code: 'TOKEN_ROTATED',
      message: expect.stringMatching(
        /^This secret of token "ci-rotating" was replaced by a rotation; it stopped working at \S+Z/,
      ),
      details: { tokenId: made.body.id, name: 'ci-rotating', retiredAt: expect.any(String) },
    });
    await whoami(rotated.body.token).expect(200);
    const [event] = await auditOf('token.rotate', made.body.id);
    expect(event).toMatchObject({ actor: 'bootstrap-admin', payload: { name: 'ci-rotating', graceSeconds: 3600 } });
  });

  it('with graceSeconds 0 (a leaked secret) the old secret stops at once; the default grace is 24 h', async () => {
    const made = await create({ name: 'leaked', role: 'viewer' }).expect(201);
    const rotated = await rotate(made.body.id, { graceSeconds: 0 }).expect(200);
    expect((await whoami(made.body.token).expect(401)).body.code).toBe('TOKEN_ROTATED');
    await whoami(rotated.body.token).expect(200);
    const again = await rotate(made.body.id).expect(200);
    expect(Date.parse(again.body.previousSecretsValidUntil) - Date.now()).toBeGreaterThan(86_400_000 - 60_000);
    await whoami(rotated.body.token).expect(200);
  });

  it('refuses to rotate a revoked or unknown token', async () => {
    const made = await create({ name: 'gone', role: 'viewer' }).expect(201);
    // A client that sends a JSON content type on every request, with no body: it was refused
    // "Body cannot be empty" (400), so such a client could not revoke a token (a trial).
    await request(t.app.server)
      .delete(`/v1/admin/tokens/${made.body.id}`)
      .set('authorization', admin())
      .set('content-type', 'application/json')
      .expect(200);
    expect((await rotate(made.body.id).expect(409)).body).toMatchObject({
      code: 'TOKEN_REVOKED',
      details: { tokenId: made.body.id },
    });
    await rotate('00000000-0000-4000-8000-000000000000').expect(404);
  });
});

describe('token names', () => {
  it('a name in use is 409 TOKEN_NAME_TAKEN naming that token (racing creates included); free again once it is revoked', async () => {
    const first = await create({ name: 'release-bot', role: 'requester' }).expect(201);
    const again = await create({ name: 'release-bot', role: 'approver' }).expect(409);
    expect(again.body).toMatchObject({
      code: 'TOKEN_NAME_TAKEN',
      details: { field: 'name', name: 'release-bot', tokenId: first.body.id },
    });
    // Names that read the same in an audit log are the same name.
    for (const lookAlike of ['release-bot ', 'Release-Bot', 'release-bot\u00a0', ' RELEASE-BOT'])
      expect((await create({ name: lookAlike, role: 'approver' })).body.code, JSON.stringify(lookAlike)).toBe(
        'TOKEN_NAME_TAKEN',
      );
    // Ten creates of one new name at once: exactly one is made.
    const raced = await Promise.all(Array.from({ length: 10 }, () => create({ name: 'racing-bot', role: 'viewer' })));
    expect(raced.map((r) => r.status).sort()).toEqual([201, ...Array(9).fill(409)]);
    await request(t.app.server).delete(`/v1/admin/tokens/${first.body.id}`).set('authorization', admin()).expect(200);
    await create({ name: 'release-bot', role: 'approver' }).expect(201);
  });
});

describe('token revocation', () => {
  it('a revoked token is 401 TOKEN_REVOKED, with every secret it had', async () => {
    const made = await create({ name: 'old-ci', role: 'viewer' }).expect(201);
    const rotated = await rotate(made.body.id).expect(200);
    await request(t.app.server).delete(`/v1/admin/tokens/${made.body.id}`).set('authorization', admin()).expect(200);
    for (const secret of [made.body.token, rotated.body.token]) {
      const r = await whoami(secret).expect(401);
      expect(r.body).toMatchObject({ code: 'TOKEN_REVOKED', details: { tokenId: made.body.id, name: 'old-ci' } });
    }
    expect((await whoami('bg_never_issued_000000000000000000').expect(401)).body.code).toBe('UNAUTHORIZED');
  });

  it('refuses to revoke the last active admin token (nobody could manage tokens any more)', async () => {
    const list = await request(t.app.server).get('/v1/admin/tokens').set('authorization', admin()).expect(200);
    const bootstrap = list.body.items.find((x: { name: string }) => x.name === 'bootstrap-admin');
    const r = await request(t.app.server)
      .delete(`/v1/admin/tokens/${bootstrap.id}`)
      .set('authorization', admin())
      .expect(409);
    expect(r.body).toMatchObject({ code: 'LAST_ADMIN_TOKEN', details: { tokenId: bootstrap.id } });
    await whoami(t.tokens.admin).expect(200);
  });
});

describe('token scope', () => {
  it('is shown in the list with expiry, status and who created the token (by name)', async () => {
    const scope = { resourceTypes: ['app'], tenants: ['tenant_00001', 'tenant_00002'] };
    const made = await create({ name: 'team-a-ci', role: 'requester', scope }).expect(201);
    expect(made.body.scope).toEqual(scope);
    const list = await request(t.app.server).get('/v1/admin/tokens').set('authorization', admin()).expect(200);
    expect(list.body.items.find((x: { id: string }) => x.id === made.body.id)).toMatchObject({
      name: 'team-a-ci',
      scope,
      status: 'active',
      expiresAt: null,
      createdByName: 'bootstrap-admin',
      previousSecretsValidUntil: null,
    });
  });

  it('names what the registry does not have (a typo in a tenant or a type), and nothing when it has all', async () => {
    await query(
      t.databaseUrl,
      `INSERT INTO resource_types (name) VALUES ('scoped_app') ON CONFLICT DO NOTHING;
       INSERT INTO tenants (id, name) VALUES ('tn_scope_known', 'Known') ON CONFLICT DO NOTHING`,
    );
    const typo = await create({
      name: 'typo-ci',
      role: 'requester',
      scope: { resourceTypes: ['scoped_app', 'scoped_ap'], tenants: ['tn_scope_knwon', 'tn_scope_known'] },
    }).expect(201);
    // Made all the same (its tenants may be imported later), but said.
    expect(typo.body.unknownScope).toEqual({ tenants: ['tn_scope_knwon'], resourceTypes: ['scoped_ap'] });
    const known = await create({
      name: 'known-ci',
      role: 'requester',
      scope: { resourceTypes: ['scoped_app'], tenants: ['tn_scope_known'] },
    }).expect(201);
    expect(known.body).not.toHaveProperty('unknownScope');
    const unscoped = await create({ name: 'unscoped-ci', role: 'requester' }).expect(201);
    expect(unscoped.body).not.toHaveProperty('unknownScope');
  });

  it('is refused on roles that cannot submit operations, naming the field', async () => {
    const r = await create({ name: 'scoped-op', role: 'operator', scope: { tenants: ['t1'] } }).expect(400);
    expect(r.body).toMatchObject({ code: 'SCOPE_NOT_APPLICABLE', details: { field: 'scope', role: 'operator' } });
    await create({ name: 'empty-scope', role: 'requester', scope: {} }).expect(400);
  });
});

describe('token audit events', () => {
  it('create, rotate and revoke each leave one event naming the token', async () => {
    const made = await create({ name: 'audited', role: 'viewer' }).expect(201);
    await rotate(made.body.id).expect(200);
    await request(t.app.server).delete(`/v1/admin/tokens/${made.body.id}`).set('authorization', admin()).expect(200);
    for (const action of ['token.create', 'token.rotate', 'token.revoke']) {
      const events = await auditOf(action, made.body.id);
      expect(events, action).toHaveLength(1);
      expect(events[0]).toMatchObject({ actor: 'bootstrap-admin', payload: { name: 'audited' } });
    }
  });

  it('are written in the same transaction as the change: when the audit append fails, no token exists', async () => {
    // Make the audit append of a token creation fail inside the database, as a crash would.
    await query(
      t.databaseUrl,
      `CREATE FUNCTION fail_token_audit() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN IF NEW.action = 'token.create' AND NEW.payload->>'name' = 'doomed' THEN RAISE EXCEPTION 'audit down'; END IF;
       RETURN NEW; END $$`,
    );
    await query(
      t.databaseUrl,
      `CREATE TRIGGER fail_token_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION fail_token_audit()`,
    );
    try {
      await create({ name: 'doomed', role: 'viewer' }).expect(500);
      expect(await query(t.databaseUrl, `SELECT id FROM api_tokens WHERE name = 'doomed'`)).toEqual([]);
    } finally {
      await query(t.databaseUrl, 'DROP TRIGGER fail_token_audit ON audit_events');
    }
  });
});
