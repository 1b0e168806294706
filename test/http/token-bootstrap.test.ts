// The bootstrap admin token across restarts: a "restart" is a second app on the same database
// calling ensureBootstrap as src/server.ts does at start. A revoked bootstrap token stays revoked;
// a bootstrap secret only creates an admin while none is active; with none, start-up is refused.
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { buildApp } from '../../src/app.ts';
import type { App } from '../../src/lib/schemas.ts';
import { BootstrapRefused } from '../../src/modules/auth/bootstrap.ts';
import { UNBOUNDED } from '../support/app.ts';
import { createTestDatabase } from '../support/db.ts';
import { TEST_SNAPSHOT_KEY_BYTES } from '../support/keys.ts';
import { query } from '../support/seed.ts';

const SECRET = 'bg_bootstrap_test_secret_0000000000';
const open: App[] = [];
afterEach(async () => {
  for (const app of open.splice(0)) await app.close();
});

/**
 * A fresh start of the API on `databaseUrl` (as the server process would make it), with the rate
 * budgets and load shedding of every other test (test/support/app.ts): a busy machine must not
 * turn an answer about tokens into 503 OVERLOADED.
 */
async function start(databaseUrl: string): Promise<App> {
  const app = await buildApp({
    config: {
      databaseUrl,
      redisUrl: inject('redisUrl'),
      logLevel: 'silent',
      limits: UNBOUNDED,
      snapshotKey: TEST_SNAPSHOT_KEY_BYTES,
    },
    logger: false,
  });
  await app.ready();
  open.push(app);
  return app;
}
const as = (secret: string) => `Bearer ${secret}`;

describe('bootstrap admin token', () => {
  it('creates the admin token from the secret when none exists, once, with an audit event', async () => {
    const db = await createTestDatabase();
    const app = await start(db);
    expect(await app.authService.ensureBootstrap(SECRET)).toMatchObject({ kind: 'created' });
    expect(await app.authService.ensureBootstrap(SECRET)).toMatchObject({ kind: 'active' });
    await request(app.server).get('/v1/admin/tokens').set('authorization', as(SECRET)).expect(200);
    const events = await query(
      db,
      `SELECT actor, payload->>'name' AS name FROM audit_events WHERE action = 'token.bootstrap'`,
    );
    expect(events).toEqual([{ actor: 'system', name: 'bootstrap-admin' }]);
  });

  it('is not resurrected by a restart after a revoke: 401 TOKEN_REVOKED, and the start goes on with the other admin', async () => {
    const db = await createTestDatabase();
    const first = await start(db);
    await first.authService.ensureBootstrap(SECRET);
    const other = await request(first.server)
      .post('/v1/admin/tokens')
      .set('authorization', as(SECRET))
      .send({ name: 'alice-admin', role: 'admin' })
      .expect(201);
    const list = await request(first.server).get('/v1/admin/tokens').set('authorization', as(SECRET)).expect(200);
    const bootstrap = list.body.items.find((x: { name: string }) => x.name === 'bootstrap-admin');
    await request(first.server)
      .delete(`/v1/admin/tokens/${bootstrap.id}`)
      .set('authorization', as(other.body.token))
      .expect(200);
    await first.close();
    open.splice(0);

    const second = await start(db);
    const result = await second.authService.ensureBootstrap(SECRET);
    expect(result).toEqual({
      kind: 'ignored',
      why: expect.stringMatching(/^it belongs to token "bootstrap-admin", revoked at /),
    });
    const r = await request(second.server).get('/v1/admin/tokens').set('authorization', as(SECRET)).expect(401);
    expect(r.body).toMatchObject({
      code: 'TOKEN_REVOKED',
      details: { tokenId: bootstrap.id, name: 'bootstrap-admin' },
    });
    await request(second.server).get('/v1/admin/tokens').set('authorization', as(other.body.token)).expect(200);
  });

  it('refuses the start when no admin token is active and the bootstrap secret is a revoked one', async () => {
    const db = await createTestDatabase();
    const app = await start(db);
    await app.authService.ensureBootstrap(SECRET);
    // The last admin token cannot be revoked through the API; an expiry (or a database edit) can still leave none.
    await query(db, `UPDATE api_tokens SET revoked_at = now() WHERE name = 'bootstrap-admin'`);
    const refused = app.authService.ensureBootstrap(SECRET);
    await expect(refused).rejects.toBeInstanceOf(BootstrapRefused);
    await expect(refused).rejects.toThrow(
      /^no active admin token exists, and the bootstrap secret cannot be used: it belongs to token "bootstrap-admin", revoked at \S+ \(revoked tokens are never brought back\)$/,
    );
    // A new secret bootstraps a new admin token; the revoked one stays revoked.
    const fresh = 'bg_bootstrap_test_secret_1111111111';
    expect(await app.authService.ensureBootstrap(fresh)).toMatchObject({ kind: 'created' });
    expect((await request(app.server).get('/v1/audit').set('authorization', as(SECRET)).expect(401)).body.code).toBe(
      'TOKEN_REVOKED',
    );
  });

  it('refuses the start when no admin token exists and no secret is given', async () => {
    const app = await start(await createTestDatabase());
    await expect(app.authService.ensureBootstrap(undefined)).rejects.toThrow(
      'no active admin token exists and no bootstrap secret was given',
    );
  });

  it('leaves an unknown secret alone once an admin exists (it does not pile up admin tokens)', async () => {
    const db = await createTestDatabase();
    const app = await start(db);
    await app.authService.ensureBootstrap(SECRET);
    expect(await app.authService.ensureBootstrap(undefined)).toEqual({ kind: 'not_needed' });
    expect(await app.authService.ensureBootstrap('bg_another_secret_000000000000000')).toMatchObject({
      kind: 'ignored',
      why: expect.stringMatching(/not a known token/),
    });
    const admins = await query(db, `SELECT name FROM api_tokens WHERE role = 'admin'`);
    expect(admins).toEqual([{ name: 'bootstrap-admin' }]);
  });

  it('concurrent starts bootstrap exactly one admin token', async () => {
    const db = await createTestDatabase();
    const [a, b] = [await start(db), await start(db)];
    const results = await Promise.all([a, b, a, b].map((x) => x.authService.ensureBootstrap(SECRET)));
    expect(results.map((r) => r.kind).sort()).toEqual(['active', 'active', 'active', 'created']);
  });
});
