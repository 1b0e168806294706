// A redelivery without IDs takes the endpoint's oldest 1,000 failed deliveries and says when more
// are left; asked again, it takes the next ones, and then says none are left. No workers here: what
// the request records (pending again, a fresh series, marked for the dispatcher) is read directly.
import request from 'supertest';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { queueRedeliveries, type Queued } from '../../src/modules/webhooks/dispatch.ts';
import { REDELIVER_MAX } from '../../src/modules/webhooks/repository.ts';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { query } from '../support/seed.ts';

let t: TestApp;
let endpoint: string;
const FAILED = REDELIVER_MAX + 1;

beforeAll(async () => {
  t = await buildTestApp();
  const created = await request(t.app.server)
    .post('/v1/admin/webhooks')
    .set('authorization', t.auth('admin'))
    .send({ url: 'http://127.0.0.1:9/hook', events: ['*'] });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  endpoint = created.body.id;
  // FAILED deliveries that ran out of attempts, and one delivered (never taken by a redelivery).
  await query(
    t.databaseUrl,
    `INSERT INTO webhook_deliveries (endpoint_id, audit_seq, event_id, event_type, payload, status, attempts, failed_at)
     SELECT $1, n, 'evt_' || n, 'operation.completed', '{}'::jsonb, CASE WHEN n > $2 THEN 'delivered' ELSE 'failed' END, 16,
            CASE WHEN n > $2 THEN NULL ELSE now() END
     FROM generate_series(1, $2 + 1) n`,
    [endpoint, FAILED],
  );
});
afterAll(async () => {
  await t?.close();
});

const redeliver = () =>
  request(t.app.server)
    .post(`/v1/admin/webhooks/${endpoint}/redeliver`)
    .set('authorization', t.auth('admin'))
    .send({ reason: 'receiver back' });

const counts = async () => {
  const list = await request(t.app.server).get('/v1/admin/webhooks').set('authorization', t.auth('admin'));
  expect(list.status).toBe(200);
  const one = await request(t.app.server).get(`/v1/admin/webhooks/${endpoint}`).set('authorization', t.auth('admin'));
  expect(one.body.deliveries).toEqual(list.body.items[0].deliveries);
  return list.body.items[0].deliveries as { pending: number; failed: number; lastFailedAt: string | null };
};

it('takes the oldest failed deliveries a thousand at a time, saying when more are left', async () => {
  // The listing shows the endpoint failing, before anyone reads its delivery log.
  expect(await counts()).toMatchObject({ pending: 0, failed: FAILED, lastFailedAt: expect.any(String) });
  const first = await redeliver();
  expect(first.status, JSON.stringify(first.body)).toBe(200);
  expect(first.body.redelivered).toBe(REDELIVER_MAX);
  expect(first.body.more).toBe(true);
  // The oldest first: ids 1..1000 of this endpoint's deliveries, in order.
  const ids = (first.body.deliveryIds as string[]).map(Number);
  expect(ids).toEqual([...ids].sort((a, b) => a - b));

  const second = await redeliver();
  expect(second.body).toMatchObject({ redelivered: 1, more: false });
  expect(Number(second.body.deliveryIds[0])).toBeGreaterThan(Math.max(...ids));

  const third = await redeliver();
  expect(third.body).toEqual({ redelivered: 0, deliveryIds: [], more: false });
  expect(await counts()).toEqual({ pending: FAILED, failed: 0, lastFailedAt: null });

  const rows = await query<{ status: string; n: number; based: number; marked: number; failed_at: number }>(
    t.databaseUrl,
    `SELECT status, count(*)::int AS n, count(*) FILTER (WHERE attempt_base = attempts)::int AS based,
            count(*) FILTER (WHERE redeliver_at IS NOT NULL)::int AS marked,
            count(*) FILTER (WHERE failed_at IS NOT NULL)::int AS failed_at
       FROM webhook_deliveries WHERE endpoint_id = $1 GROUP BY status ORDER BY status`,
    [endpoint],
  );
  expect(rows).toEqual([
    { status: 'delivered', n: 1, based: 0, marked: 0, failed_at: 0 },
    { status: 'pending', n: FAILED, based: FAILED, marked: FAILED, failed_at: 0 },
  ]);
});

// The dispatcher's side, with the queue's add standing in for Redis (the database is real): the
// marks stay until the add succeeds, so a redelivery asked for while Redis is away is queued by the
// first pass after it returns.
it('keeps a redelivery marked while queuing it fails, and queues each marked pending one once it works', async () => {
  const marked = async () =>
    (
      await query<{ n: number }>(
        t.databaseUrl,
        'SELECT count(*)::int AS n FROM webhook_deliveries WHERE endpoint_id = $1 AND redeliver_at IS NOT NULL',
        [endpoint],
      )
    )[0]!.n;
  expect(await marked()).toBe(FAILED);
  // One of them no longer pending (its endpoint was disabled meanwhile): unmarked, not queued.
  await query(
    t.databaseUrl,
    `UPDATE webhook_deliveries SET status = 'cancelled' WHERE endpoint_id = $1 AND audit_seq = 1`,
    [endpoint],
  );
  const down = () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:6379'));
  await expect(queueRedeliveries(t.app.db.pool, down, 300)).rejects.toThrow('ECONNREFUSED');
  expect(await marked()).toBe(FAILED);

  const queued: Queued[] = [];
  const n = await queueRedeliveries(
    t.app.db.pool,
    async (ds) => {
      queued.push(...ds);
    },
    300,
  );
  expect(n).toBe(FAILED - 1);
  expect(new Set(queued.map((d) => d.id)).size).toBe(FAILED - 1);
  expect(queued.every((d) => d.endpointId === endpoint)).toBe(true);
  expect(await marked()).toBe(0);
  // Nothing left: a later pass queues nothing again.
  expect(await queueRedeliveries(t.app.db.pool, down, 300)).toBe(0);
});
