// The audit chain stays linear under load: hundreds of concurrent requests, refused ones (a reused
// Idempotency-Key with another body, commands on operations that do not exist, submissions by the
// wrong role) and accepted ones (token creation), and afterwards every event links to exactly the
// one before it. Before the fix, refusals appended from a hook on the bare pool released the chain
// lock before reading the last hash, and twenty racing refusals already forked the chain.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { appId, query, seedRegistry } from '../support/seed.ts';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
  await seedRegistry(t.databaseUrl, { sites: 20, appsPerSite: 5 });
});
afterAll(async () => {
  await t?.close();
});

const spec = { targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-1' };

describe('the audit chain under concurrent load', () => {
  it('verifies after 300 concurrent refused and accepted requests, with one event per request', async () => {
    const before = (await query<{ n: number }>(t.databaseUrl, 'SELECT count(*)::int AS n FROM audit_events'))[0]!.n;
    const s = t.app.server;
    const requests = Array.from({ length: 300 }, (_, i) => {
      switch (i % 5) {
        case 0: // the same key with two different bodies: one plan, the rest 409 refusals
          return request(s)
            .post('/v1/operations')
            .set('authorization', t.auth('requester'))
            .set('idempotency-key', 'race-key')
            .send({ ...spec, ids: [appId(i % 2, 0)], dryRun: false });
        case 1:
          return request(s)
            .post(`/v1/operations/op_missing${i}/pause`)
            .set('authorization', t.auth('operator'))
            .send({ reason: 'checking' });
        case 2:
          return request(s)
            .post('/v1/operations')
            .set('authorization', t.auth('viewer'))
            .send({ ...spec, ids: [appId(3, 1)] });
        case 3:
          return request(s)
            .post('/v1/admin/tokens')
            .set('authorization', t.auth('admin'))
            .send({ name: `ci-${i}`, role: 'requester' });
        default:
          return request(s)
            .post('/v1/operations/op_missing/abort')
            .set('authorization', t.auth('operator'))
            .send({ reason: 'x' });
      }
    });
    const res = await Promise.all(requests);
    expect(res.filter((r) => r.status >= 500).map((r) => r.body)).toEqual([]);
    // Every request left exactly one event (token creations, the one plan, a refusal for each
    // other), except idempotent replays of the plan, which changed nothing. A refusal is recorded
    // by an onResponse hook, after its response has reached the client: wait for the last ones.
    const replays = res.filter((r) => r.status === 200 && r.headers['idempotent-replayed'] === 'true').length;
    expect(replays).toBeGreaterThan(0);
    const count = async () =>
      (await query<{ n: number }>(t.databaseUrl, 'SELECT count(*)::int AS n FROM audit_events'))[0]!.n;
    await expect.poll(async () => (await count()) - before, { timeout: 10_000, interval: 200 }).toBe(300 - replays);
    const verify = await request(s).get('/v1/audit/verify').set('authorization', t.auth('viewer')).expect(200);
    expect(verify.body).toMatchObject({ valid: true, brokenAt: null });
    const forks = await query<{ n: number }>(
      t.databaseUrl,
      'SELECT count(*)::int AS n FROM (SELECT prev_hash FROM audit_events GROUP BY prev_hash HAVING count(*) > 1) f',
    );
    expect(forks[0]!.n).toBe(0);
  });
});
