// GET /v1/operations/{id} reads the view beside the token lookup, not after it: under load each is a
// database round trip, and a polled GET waited for the two in turn (npm run bench -- control). The
// view read is used only once the request is authorised.
import pg from 'pg';
import request from 'supertest';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { until } from '../support/execution.ts';
import { appId, seedRegistry } from '../support/seed.ts';

let t: TestApp;
let opId: string;
beforeAll(async () => {
  t = await buildTestApp();
  await seedRegistry(t.databaseUrl, { sites: 2, appsPerSite: 2 });
  const res = await request(t.app.server)
    .post('/v1/operations')
    .set('authorization', t.auth('requester'))
    .send({ targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-1', ids: [appId(0, 0), appId(1, 0)] })
    .expect(201);
  opId = res.body.id;
});
afterAll(async () => {
  await t?.close();
});

/** Statements of this database waiting on a lock, by what they read. */
async function waiting(c: pg.Client) {
  const r = await c.query<{ query: string }>(
    `SELECT query FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
  );
  return {
    tokenLookup: r.rows.some((x) => x.query.includes('FROM api_token_secrets s JOIN api_tokens')),
    view: r.rows.some((x) => x.query.includes('AS wave_counters')),
  };
}

it('the view read is under way while the token lookup still waits, and the answer is the view', async () => {
  const c = new pg.Client({ connectionString: t.databaseUrl });
  await c.connect();
  try {
    // Both reads wait on these locks until the commit, so each is seen in flight.
    await c.query('BEGIN');
    await c.query('LOCK TABLE api_tokens, operations IN ACCESS EXCLUSIVE MODE');
    const answer = request(t.app.server).get(`/v1/operations/${opId}`).set('authorization', t.auth('viewer')).then();
    await until(async () => (await waiting(c)).tokenLookup, 'the token lookup waiting on its lock', 10_000);
    await until(
      async () => (await waiting(c)).view,
      'the view read to be sent while the token lookup waits (it waited for the lookup)',
      5_000,
    );
    await c.query('COMMIT');
    const res = await answer;
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id: opId, state: 'planned', itemCount: 2 });
  } finally {
    await c.end();
  }
});

it('a request that does not authenticate gets its 401, never the view it started reading', async () => {
  const bad = await request(t.app.server).get(`/v1/operations/${opId}`).set('authorization', 'Bearer bgt_nope');
  expect(bad.status).toBe(401);
  expect(bad.body.id).toBeUndefined();
  // An operation that does not exist: still 401, not the 404 its read ended with.
  const unknown = await request(t.app.server)
    .get('/v1/operations/op_doesnotexist000')
    .set('authorization', 'Bearer bgt_nope');
  expect(unknown.status).toBe(401);
  // An ID the params schema refuses is a 400, with no read started for it.
  const nul = await request(t.app.server).get('/v1/operations/op_%00x').set('authorization', t.auth('viewer'));
  expect(nul.status).toBe(400);
});
