// Rate limits, on the real Redis: per token (its id is the key), answered 429 in the project's
// shape with Retry-After; operator commands have a budget of their own that a token's submissions
// cannot use up; public routes are limited per client address (never /healthz); two app instances
// on one Redis share the budget; a Redis that does not answer lets requests through.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Role } from '../../src/modules/auth/roles.ts';
import { batchedRedisStore } from '../../src/plugins/rate-limit-store.ts';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { appId, seedRegistry } from '../support/seed.ts';

const LIMITS = { rateLimitMax: 5, rateLimitControlMax: 3, rateLimitWindowMs: 60_000 };
const PREFIX = `bgt_rl_${process.pid}_${Date.now().toString(36)}`;

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp({ queuePrefix: PREFIX, limits: LIMITS });
  await seedRegistry(t.databaseUrl, { sites: 5, appsPerSite: 2 });
});
afterAll(async () => {
  await t?.close();
});

/** A token of its own for each test: budgets are per token and last the whole window. */
async function newToken(role: Role, on: TestApp = t) {
  return on.app.authService.createToken(`rl-${role}-${Math.random().toString(36).slice(2, 8)}`, role, {
    tokenId: 'test',
    name: 'test',
  });
}
const list = (token: string, on: TestApp = t) =>
  request(on.app.server).get('/v1/operations').set('authorization', `Bearer ${token}`);
const dryRun = (token: string) =>
  request(t.app.server)
    .post('/v1/operations')
    .set('authorization', `Bearer ${token}`)
    .send({ targetType: 'app', reason: 'dry run', ticket: 'CHG-RL', ids: [appId(1, 0)], dryRun: true });
const pause = (token: string) =>
  request(t.app.server)
    .post('/v1/operations/op_does_not_exist/pause')
    .set('authorization', `Bearer ${token}`)
    .send({ reason: 'stop it' });

function expectLimited(res: request.Response, details: Record<string, unknown>) {
  expect(res.status, JSON.stringify(res.body)).toBe(429);
  const retryAfter = Number(res.headers['retry-after']);
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  expect(retryAfter).toBeLessThanOrEqual(LIMITS.rateLimitWindowMs / 1000);
  expect(res.body).toMatchObject({
    code: 'RATE_LIMITED',
    message: expect.stringContaining(`per ${LIMITS.rateLimitWindowMs / 1000} s`),
    details: { windowMs: LIMITS.rateLimitWindowMs, retryAfterSeconds: retryAfter, ...details },
    requestId: expect.any(String),
  });
}

describe('per token', () => {
  it('answers 429 with Retry-After once a token used its budget; another token has its own', async () => {
    const a = await newToken('viewer');
    const b = await newToken('viewer');
    for (let i = 0; i < LIMITS.rateLimitMax; i++) {
      const res = await list(a.token);
      expect(res.status).toBe(200);
      expect(Number(res.headers['x-ratelimit-remaining'])).toBe(LIMITS.rateLimitMax - i - 1);
    }
    expectLimited(await list(a.token), { limit: LIMITS.rateLimitMax, budget: 'api', keyedBy: 'token' });
    expect((await list(b.token)).status).toBe(200);
    // The budget is kept in Redis under the token's id.
    const keys = await t.app.redis.keys(`${PREFIX}:ratelimit:*`);
    expect(keys).toContain(`${PREFIX}:ratelimit:api:token:${a.id}`);
    expect(keys).toContain(`${PREFIX}:ratelimit:api:token:${b.id}`);
  });

  it("operator commands have a budget of their own: a token's submissions cannot use up its pause", async () => {
    const admin = await newToken('admin');
    for (let i = 0; i < LIMITS.rateLimitMax; i++) expect((await dryRun(admin.token)).status).toBe(200);
    expectLimited(await dryRun(admin.token), { limit: LIMITS.rateLimitMax, budget: 'api' });
    // Still let through to the route (404: no such operation), not refused by the limiter.
    for (let i = 0; i < LIMITS.rateLimitControlMax; i++) expect((await pause(admin.token)).status).toBe(404);
    // The command budget is per token too, and has its own limit.
    expectLimited(await pause(admin.token), { limit: LIMITS.rateLimitControlMax, budget: 'control' });
    expect((await pause((await newToken('operator')).token)).status).toBe(404);
  });
});

describe('without a token', () => {
  it('public routes are limited per client address; /healthz never is', async () => {
    for (let i = 0; i < LIMITS.rateLimitMax; i++) expect((await request(t.app.server).get('/readyz')).status).toBe(200);
    expectLimited(await request(t.app.server).get('/readyz'), { budget: 'api', keyedBy: 'ip' });
    for (let i = 0; i < LIMITS.rateLimitMax * 2; i++)
      expect((await request(t.app.server).get('/healthz')).status).toBe(200);
  });
});

describe('replicas', () => {
  it('two app instances on the same Redis share a token’s budget', async () => {
    const other = await buildTestApp({ databaseUrl: t.databaseUrl, queuePrefix: PREFIX, limits: LIMITS });
    try {
      const token = (await newToken('viewer')).token;
      for (let i = 0; i < LIMITS.rateLimitMax; i++) {
        expect((await list(token, i % 2 ? other : t)).status).toBe(200);
      }
      expectLimited(await list(token, other), { limit: LIMITS.rateLimitMax, keyedBy: 'token' });
      expectLimited(await list(token, t), { limit: LIMITS.rateLimitMax, keyedBy: 'token' });
    } finally {
      await other.close();
    }
  });

  it('requests of one token racing on two replicas: exactly the budget passes, each counted once', async () => {
    const other = await buildTestApp({ databaseUrl: t.databaseUrl, queuePrefix: PREFIX, limits: LIMITS });
    try {
      const a = await newToken('viewer');
      const answers = await Promise.all(Array.from({ length: 24 }, (_, i) => list(a.token, i % 2 ? other : t)));
      const passed = answers.filter((r) => r.status === 200);
      expect(passed).toHaveLength(LIMITS.rateLimitMax);
      for (const r of answers.filter((x) => x.status !== 200)) expectLimited(r, { limit: LIMITS.rateLimitMax });
      // Each request that passed had a place of its own in the count.
      expect(passed.map((r) => Number(r.headers['x-ratelimit-remaining'])).sort()).toEqual([0, 1, 2, 3, 4]);
      expect(Number(await t.app.redis.get(`${PREFIX}:ratelimit:api:token:${a.id}`))).toBe(24);
    } finally {
      await other.close();
    }
  });

  it('the store counts the requests that arrive while a call is out in one call, each with its own place', async () => {
    // A client of its own, whose script calls are counted here: Redis's own command statistics
    // also count the other test files' rate limits, which share the server (a flaky count).
    const client = t.app.redis.duplicate();
    const Store = batchedRedisStore(client, `${PREFIX}:store-test:`);
    const store = new Store({});
    let sent = 0;
    const scripted = client as unknown as { rateLimitBy: (...a: unknown[]) => unknown };
    const rateLimitBy = scripted.rateLimitBy.bind(client);
    scripted.rateLimitBy = (...a: unknown[]) => {
      sent++;
      return rateLimitBy(...a);
    };
    const calls = async () => sent;
    const before = await calls();
    const answers = await Promise.all(
      Array.from(
        { length: 10 },
        () =>
          new Promise<{ current: number; ttl: number }>((res, rej) =>
            store.incr('k', (err, r) => (err ? rej(err) : res(r!)), 60_000),
          ),
      ),
    );
    expect(answers.map((r) => r.current)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    for (const r of answers) expect(r.ttl).toBeGreaterThan(59_000);
    // The first request's call, then one for the nine that arrived while it was out.
    expect((await calls()) - before).toBe(2);
    expect(await t.app.redis.pttl(`${PREFIX}:store-test:k`)).toBeGreaterThan(59_000);
    const after = await new Promise<{ current: number; ttl: number }>((res, rej) =>
      store.incr('k', (err, r) => (err ? rej(err) : res(r!)), 60_000),
    );
    expect(after.current).toBe(11);
    client.disconnect();
  });

  it('a Redis that does not answer lets requests through instead of holding them', async () => {
    // Nothing listens on port 1.
    const offline = await buildTestApp({ databaseUrl: t.databaseUrl, redisUrl: 'redis://127.0.0.1:1', limits: LIMITS });
    try {
      const token = (await newToken('viewer', offline)).token;
      const started = Date.now();
      for (let i = 0; i < LIMITS.rateLimitMax + 3; i++) expect((await list(token, offline)).status).toBe(200);
      expect(Date.now() - started).toBeLessThan(15_000);
    } finally {
      await offline.close();
    }
  });
});
