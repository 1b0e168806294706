// The event stream with Redis unreachable: it is read from PostgreSQL, and only its per-token bound
// is counted in Redis. It opens, without the bound, rather than answering 503: `watch` gave up with
// exit 1 after ~250 s of 503s during a Redis outage while `status` worked (trial Y).
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { appId, seedRegistry } from '../support/seed.ts';
import { openSse } from '../support/sse.ts';

let t: TestApp;
let offline: TestApp;
let url = '';
beforeAll(async () => {
  t = await buildTestApp();
  await seedRegistry(t.databaseUrl, { sites: 2, appsPerSite: 2 });
  // Nothing listens on port 1: this API's Redis is down for good.
  offline = await buildTestApp({ databaseUrl: t.databaseUrl, redisUrl: 'redis://127.0.0.1:1' });
  await offline.app.listen({ host: '127.0.0.1', port: 0 });
  url = `http://127.0.0.1:${(offline.app.server.address() as AddressInfo).port}`;
}, 60_000);
afterAll(async () => {
  await offline?.close();
  await t?.close();
});

it('streams an operation from the database while Redis is unreachable, its transitions included', async () => {
  const op = await request(t.app.server)
    .post('/v1/operations')
    .set('authorization', t.auth('requester'))
    .send({ targetType: 'app', reason: 'Redis down stream', ticket: 'CHG-SSE', ids: [appId(0, 0), appId(0, 1)] })
    .expect(201);
  const s = await openSse(`${url}/v1/operations/${op.body.id}/events?after=0`, offline.tokens.viewer);
  try {
    expect(s.status).toBe(200);
    const planned = await s.waitFor((f) => f.event === 'transition', 'the plan transition', 15_000);
    expect(planned.data).toMatchObject({ action: 'operation.planned' });
    await s.waitFor((f) => f.event === 'progress', 'a progress frame', 15_000);
  } finally {
    s.close();
  }
}, 60_000);
