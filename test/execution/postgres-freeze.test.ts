// Reads outlive a frozen PostgreSQL: its postmaster and backends are stopped (SIGSTOP), so the
// connections stay open and new ones are accepted by the kernel, but nothing answers (a hung host,
// a partition). Before the fix a GET waited for as long as the freeze lasted (75 s in a trial)
// while commands answered 503: a query sent on an idle pooled connection had no deadline at all.
// Now every GET answers 503 DEPENDENCY_UNAVAILABLE within the read deadline, the stuck connections
// are discarded, and once PostgreSQL thaws the same GETs answer 200.
//
// Runs on a PostgreSQL of its own: the suite's shared one must not be frozen under other files.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeDb, createDb } from '../../src/plugins/db.ts';
import { DatabaseTimeoutError, withReadDeadline } from '../../src/plugins/db-deadline.ts';
import { inTransaction } from '../../src/lib/sql.ts';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { startOwnPostgres } from '../support/pg-server.ts';
import { appId, seedRegistry } from '../support/seed.ts';

// Short, so the test runs quickly; an answer must come well before the control pool's own 10 s
// connection timeout, which is what answered commands before the fix.
const READ_TIMEOUT_MS = 1_000;
const NO_ANSWER_MS = 8_000;

let pgs: Awaited<ReturnType<typeof startOwnPostgres>>;
let t: TestApp;
let opId: string;

beforeAll(async () => {
  pgs = await startOwnPostgres();
  t = await buildTestApp({ databaseUrl: pgs.url, limits: { dbReadTimeoutMs: READ_TIMEOUT_MS } });
  await seedRegistry(t.databaseUrl, { sites: 2, appsPerSite: 5 });
  const r = await request(t.app.server)
    .post('/v1/operations')
    .set('authorization', t.auth('requester'))
    .send({ targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-1', ids: [appId(0, 0)] });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  opId = r.body.id;
}, 180_000);
afterAll(async () => {
  pgs?.server.thaw();
  await t?.close().catch(() => undefined);
  pgs?.destroy();
});

/** The answer, or null when none came within NO_ANSWER_MS. */
async function get(url: string) {
  let timer: NodeJS.Timeout | undefined;
  const none = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), NO_ANSWER_MS)));
  const answer = t.app.inject({ method: 'GET', url, headers: { authorization: t.auth('viewer') } });
  try {
    return await Promise.race([answer, none]);
  } finally {
    clearTimeout(timer);
  }
}

const reads = () => [`/v1/operations/${opId}`, '/v1/operations?limit=1', `/v1/registry/resources/${appId(0, 1)}`];

describe('a frozen PostgreSQL (SIGSTOP of every process)', () => {
  it('reads answer 503 DEPENDENCY_UNAVAILABLE with Retry-After, and 200 again once it thaws', async () => {
    // Every pool has idle connections to the server about to freeze.
    for (const url of reads()) expect((await get(url))?.statusCode, url).toBe(200);
    pgs.server.freeze();
    try {
      // Twice: first on the pooled connections (a query sent, never answered), then on new ones
      // (the startup handshake never answered), as the first round discarded the stuck ones.
      for (const round of [1, 2]) {
        for (const url of reads()) {
          const r = await get(url);
          expect(r, `round ${round}, ${url}: no answer within ${NO_ANSWER_MS} ms`).not.toBeNull();
          expect(r!.statusCode, `round ${round}, ${url}: ${r!.body}`).toBe(503);
          expect(r!.json()).toMatchObject({
            code: 'DEPENDENCY_UNAVAILABLE',
            message: expect.stringMatching(/^PostgreSQL did not answer within 1000 ms/),
          });
          expect(r!.headers['retry-after']).toBeDefined();
        }
      }
      const ready = await get('/readyz');
      expect(ready?.statusCode).toBe(503);
      expect(ready!.json()).toMatchObject({ failing: ['postgres'], checks: { postgres: 'timeout', redis: 'ok' } });
    } finally {
      pgs.server.thaw();
    }
    // The pools recovered: nothing stuck was handed out again.
    for (const url of reads()) expect((await get(url))?.statusCode, url).toBe(200);
    expect((await get('/readyz'))?.statusCode).toBe(200);
  });

  it('a connection that did not answer in time is discarded, not handed out again (a transaction releases it as healthy)', async () => {
    const db = createDb(pgs.url, 1);
    try {
      await db.pool.query('SELECT 1');
      expect(db.pool.idleCount).toBe(1);
      pgs.server.freeze();
      try {
        // The statement is on the wire when the deadline passes; inTransaction releases without an error.
        const stuck = withReadDeadline(300, () => inTransaction(db.pool, (c) => c.query('SELECT 1')));
        await expect(stuck).rejects.toBeInstanceOf(DatabaseTimeoutError);
        expect(db.pool.totalCount, 'the stuck client is still in the pool').toBe(0);
        // A new connection: the kernel accepts it, the start-up is never answered.
        await expect(withReadDeadline(300, () => db.pool.query('SELECT 1'))).rejects.toBeInstanceOf(
          DatabaseTimeoutError,
        );
        expect(db.pool.totalCount).toBe(0);
      } finally {
        pgs.server.thaw();
      }
      expect((await withReadDeadline(5_000, () => db.pool.query('SELECT 1 AS one'))).rows).toEqual([{ one: 1 }]);
    } finally {
      await closeDb(db);
    }
  });
});

describe('a stopped PostgreSQL', () => {
  it('reads and a plan answer 503 naming PostgreSQL (not "PostgreSQL or Redis"), and 200 again once it is back', async () => {
    for (const url of reads()) expect((await get(url))?.statusCode, url).toBe(200);
    pgs.server.stopSync();
    try {
      for (const url of reads()) {
        const r = await get(url);
        expect(r?.statusCode, `${url}: ${r?.body}`).toBe(503);
        expect(r!.json()).toMatchObject({
          code: 'DEPENDENCY_UNAVAILABLE',
          message: expect.stringMatching(/^PostgreSQL could not be reached; retry later/),
          details: { dependency: 'postgres' },
        });
      }
      const plan = await request(t.app.server)
        .post('/v1/operations')
        .set('authorization', t.auth('requester'))
        .send({ targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-2', ids: [appId(1, 0)] });
      expect(plan.status, JSON.stringify(plan.body)).toBe(503);
      expect(plan.body).toMatchObject({ code: 'DEPENDENCY_UNAVAILABLE', details: { dependency: 'postgres' } });
    } finally {
      await pgs.server.start();
    }
    for (const url of reads()) expect((await get(url))?.statusCode, url).toBe(200);
  });
});
