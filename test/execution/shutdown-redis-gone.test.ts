// Ctrl-C with Redis gone (an operator's first hour: Redis died, so they stop Blastgate to restart
// both). Closing BullMQ's consumers and QUIT waited for a Redis that never came back: the process
// sat out the whole shutdown timeout, then exited by force with status 1 ("shutdown did not finish
// within …"). Now a close that finds Redis unreachable waits for the work in hand only and drops
// the connections: the shutdown finishes on its own, with status 0.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiChild } from '../support/api-child.ts';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { startDownstream, type Downstream } from '../support/downstream.ts';
import { SECRET, until, useHttpAdapter } from '../support/execution.ts';
import { startOwnRedis, type OwnRedis } from '../support/redis-server.ts';
import { appId, query, seedRegistry } from '../support/seed.ts';

let t: TestApp;
let redis: OwnRedis;
let downstream: Downstream;
beforeAll(async () => {
  t = await buildTestApp();
  redis = await startOwnRedis();
  downstream = await startDownstream({ secret: SECRET });
});
afterAll(async () => {
  await t?.close();
  await redis?.destroy().catch(() => undefined);
  await downstream?.close();
});

describe('a graceful shutdown after Redis went away', () => {
  it.each(['SIGINT', 'SIGTERM'] as const)(
    '%s: the API and its workers close on their own, status 0',
    async (signal) => {
      await redis.start().catch(() => undefined);
      const api = await startApiChild({
        databaseUrl: t.databaseUrl,
        redisUrl: redis.url,
        queuePrefix: `bgt_gone_${Date.now().toString(36)}`,
        adminToken: t.tokens.admin,
        env: {
          BLASTGATE_WORKERS_IN_PROCESS: 'true',
          // Long enough that a close waiting for Redis ends by force, not by finishing.
          BLASTGATE_SHUTDOWN_TIMEOUT_MS: '20000',
          LOG_LEVEL: 'info',
        },
      });
      await redis.stop('SIGKILL');
      const status = await api.stop(signal);
      const out = api.output();
      expect(out).not.toContain('did not finish within');
      expect(out).toContain('Redis is unreachable: closing without waiting for the queues');
      expect(status, out).toBe(0);
    },
  );
});

describe('a graceful shutdown after Redis went away, with restores of a rollback in flight', () => {
  it('records the restores that land and exits on its own, status 0', async () => {
    await redis.start().catch(() => undefined);
    await seedRegistry(t.databaseUrl, { sites: 1, appsPerSite: 8 });
    await useHttpAdapter({ databaseUrl: t.databaseUrl, downstream }, false, { timeoutMs: 10_000 });
    const api = await startApiChild({
      databaseUrl: t.databaseUrl,
      redisUrl: redis.url,
      queuePrefix: `bgt_gone_rb_${Date.now().toString(36)}`,
      adminToken: t.tokens.admin,
      env: {
        BLASTGATE_WORKERS_IN_PROCESS: 'true',
        BLASTGATE_SIGNING_SECRET: SECRET,
        BLASTGATE_DOWNSTREAM_ALLOW: '127.0.0.1,localhost',
        BLASTGATE_SHUTDOWN_TIMEOUT_MS: '25000',
        LOG_LEVEL: 'info',
      },
    });
    const http = request(`http://127.0.0.1:${api.port}`);
    const ids = Array.from({ length: 8 }, (_, j) => appId(0, j));
    const plan = await http
      .post('/v1/operations')
      .set('authorization', t.auth('requester'))
      .send({
        targetType: 'app',
        reason: 'Remove the legacy app',
        ticket: 'CHG-1',
        ids,
        rollout: { bakeSeconds: 0, waves: ['100%'], concurrency: 4 },
      });
    expect(plan.status, JSON.stringify(plan.body)).toBe(201);
    const id = plan.body.id as string;
    await http
      .post(`/v1/operations/${id}/approve`)
      .set('authorization', t.auth('approver'))
      .send({ planHash: plan.body.planHash })
      .expect(200);
    await http.post(`/v1/operations/${id}/start`).set('authorization', t.auth('operator')).send({}).expect(200);
    const state = async () =>
      (await http.get(`/v1/operations/${id}`).set('authorization', t.auth('viewer'))).body.state;
    await until(async () => (await state()) === 'completed', 'the delete to complete', 30_000);
    // The restores hang 3 s at the downstream: the rollback's batch is in flight when Redis dies.
    downstream.hang(3_000);
    await http
      .post(`/v1/operations/${id}/rollback`)
      .set('authorization', t.auth('operator'))
      .send({ reason: 'undo' })
      .expect(200);
    // The rollback's (a restore drill at the canary restored and deleted one item again before).
    const restores = () =>
      downstream.destructiveCalls().filter((c) => c.action === 'restore' && !c.idempotencyKey?.includes('drill'));
    await until(() => restores().length > 0, 'restores to be in flight', 15_000);
    await redis.stop('SIGKILL');
    const began = Date.now();
    const status = await api.stop('SIGTERM');
    const out = api.output();
    // The batch's restores land after 3 s and are recorded; then the rollback would put itself
    // back in the queue (Redis), which waited for a Redis that never came back until the shutdown
    // timeout ended the process by force.
    expect(out).not.toContain('did not finish within');
    expect(status, out).toBe(0);
    expect(Date.now() - began).toBeLessThan(15_000);
    const landed = restores()
      .filter((c) => c.status !== undefined && c.status < 300)
      .map((c) => c.resourceId!);
    expect(landed.length).toBeGreaterThan(0);
    const rows = await query<{ resource_id: string; state: string }>(
      t.databaseUrl,
      `SELECT resource_id, state FROM operation_items WHERE operation_id = $1`,
      [id],
    );
    for (const r of rows.filter((x) => landed.includes(x.resource_id))) expect(r.state, r.resource_id).toBe('restored');
  }, 90_000);
});
