// An operator command answered 503 HANDLER_TIMEOUT after it committed (the effects' wait on a hung
// Redis outlasted the handler deadline) said "a command that times out is rolled back", while the
// start stood and its deletes went out (a probe). The answer now says it was committed.
import request from 'supertest';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  buildExecHarness,
  submitAndStart,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { startOwnRedis, type OwnRedis } from '../support/redis-server.ts';
import { appId, query, seedRegistry } from '../support/seed.ts';

let redis: OwnRedis;
let h: ExecHarness;
beforeAll(async () => {
  redis = await startOwnRedis();
  h = await buildExecHarness({
    workers: 0,
    redisUrl: redis.url,
    limits: { requestTimeoutMs: 1_000, handlerTimeoutMs: 2_000 },
  });
  await seedRegistry(h.databaseUrl, { sites: 4, appsPerSite: 5 });
  await useHttpAdapter(h);
});
afterAll(async () => {
  try {
    redis?.thaw();
    await h?.close();
  } finally {
    await redis?.destroy();
  }
});

it('a start committed before the deadline is answered as committed, not rolled back', async () => {
  const ids = Array.from({ length: 4 }, (_, s) => Array.from({ length: 5 }, (_, j) => appId(s, j))).flat();
  const op = await submitAndStart(h, { ids, rollout: { bakeSeconds: 0, waves: ['100%'] } }, false);
  redis.freeze();
  let res: request.Response;
  try {
    res = await request(h.app.server)
      .post(`/v1/operations/${op.id}/start`)
      .set('authorization', h.auth('operator'))
      .send({});
  } finally {
    redis.thaw();
  }
  const row = (
    await query<{ state: string }>(h.databaseUrl, 'SELECT state FROM operations WHERE id = $1', [op.id])
  )[0]!;
  expect(row.state).toBe('running');
  // Answered before the view could be read, it says what happened: committed, not rolled back.
  expect(res.status, JSON.stringify(res.body)).toBe(503);
  expect(res.body).toMatchObject({ code: 'HANDLER_TIMEOUT', details: { committed: true } });
  expect(res.body.message).toContain('the command was committed before it and takes effect');
  expect(res.body.message).not.toContain('rolled back');
  await h.startWorker();
  expect((await waitForState(h, op.id, ['completed', 'completed_with_failures', 'halted'], 30_000)).state).toBe(
    'completed',
  );
});
