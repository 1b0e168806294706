// Redelivery: a receiver that was down longer than the retries last had its deliveries recorded
// failed for good, with no way to send them again (a new-user trial: a receiver stopped for ~2
// minutes lost `operation.started` and `operation.wave_completed`). POST …/redeliver puts failed
// (or cancelled) deliveries back with a fresh series of attempts; real workers send them again to a
// real receiver, with the same event id, and a refused request changes nothing.
import request from 'supertest';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildExecHarness, until, type ExecHarness } from '../support/execution.ts';
import { query } from '../support/seed.ts';
import { startReceiver, type Receiver } from '../support/webhook-receiver.ts';
import type { DeliveryRow } from '../../src/modules/webhooks/repository.ts';

const ATTEMPTS = 2;
const WEBHOOKS = { attempts: ATTEMPTS, backoffMs: 50, timeoutMs: 1_000, pollMs: 100, concurrency: 4 };

let h: ExecHarness;
let receiver: Receiver;
let endpoint: string;

const admin = () => h.auth('admin');

async function register(url: string, enabled = true): Promise<string> {
  const res = await request(h.app.server)
    .post('/v1/admin/webhooks')
    .set('authorization', admin())
    .send({ url, events: ['freeze.on', 'freeze.off'], enabled });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.id as string;
}

async function toggleFreeze(frozen: boolean) {
  await request(h.app.server)
    .put('/v1/admin/freeze')
    .set('authorization', admin())
    .send({ frozen, reason: 'redelivery test' })
    .expect(200);
}

async function deliveries(id = endpoint): Promise<DeliveryRow[]> {
  const res = await request(h.app.server).get(`/v1/admin/webhooks/${id}/deliveries`).set('authorization', admin());
  expect(res.status).toBe(200);
  return res.body.items as DeliveryRow[];
}

const redeliver = (body: object, id = endpoint) =>
  request(h.app.server).post(`/v1/admin/webhooks/${id}/redeliver`).set('authorization', admin()).send(body);

/** Waits until the endpoint has `count` deliveries and every one has ended (none pending). */
async function settled(count: number, id = endpoint) {
  let rows: DeliveryRow[] = [];
  await until(
    async () => {
      rows = await deliveries(id);
      return rows.length === count && rows.every((d) => d.status !== 'pending');
    },
    `every delivery of ${id} ended`,
    20_000,
  );
  return rows;
}

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1, webhooks: WEBHOOKS });
  receiver = await startReceiver('fail');
  endpoint = await register(receiver.url);
  await toggleFreeze(true);
  await toggleFreeze(false);
  const rows = await settled(2);
  expect(rows.map((d) => [d.eventType, d.status, d.attempts])).toEqual([
    ['freeze.on', 'failed', ATTEMPTS],
    ['freeze.off', 'failed', ATTEMPTS],
  ]);
});

afterAll(async () => {
  await receiver?.close();
  await h?.close();
});

it('refuses what it cannot redeliver, naming each delivery, and changes nothing', async () => {
  const before = await deliveries();
  const other = await register(receiver.url);
  const disabled = await register(receiver.url, false);

  const unknown = await redeliver({ reason: 'receiver back', deliveryIds: [before[0]!.id, '999999'] });
  expect(unknown.status).toBe(409);
  expect(unknown.body).toMatchObject({ code: 'DELIVERIES_NOT_REDELIVERABLE', details: { unknown: ['999999'] } });
  expect(unknown.body.message).toContain('999999 (not a delivery of this endpoint)');
  // Another endpoint's delivery is not this one's.
  const foreign = await redeliver({ reason: 'receiver back', deliveryIds: [before[0]!.id] }, other);
  expect(foreign.status).toBe(409);
  expect(foreign.body.details.unknown).toEqual([before[0]!.id]);

  const off = await redeliver({ reason: 'receiver back' }, disabled);
  expect(off.status).toBe(409);
  expect(off.body.code).toBe('WEBHOOK_DISABLED');

  const noReason = await redeliver({ deliveryIds: [before[0]!.id] });
  expect(noReason.status).toBe(400);
  const notANumber = await redeliver({ reason: 'receiver back', deliveryIds: ['1; DROP TABLE x', '\u0000'] });
  expect(notANumber.status).toBe(400);
  const unknownEndpoint = await redeliver({ reason: 'receiver back' }, '0b5f4c1e-7f51-4a39-9a8e-3c2f3f0b2a11');
  expect(unknownEndpoint.status).toBe(404);

  // Nothing moved: still failed, the same attempts, nothing sent again.
  const sent = receiver.received.length;
  await new Promise((r) => setTimeout(r, 500));
  expect(await deliveries()).toEqual(before);
  expect(receiver.received).toHaveLength(sent);
  // The other endpoint shares the receiver: deleted, it gets no POST of the events to come (the
  // same webhook-id as this endpoint's), which the counts below would take for this one's.
  await request(h.app.server).delete(`/v1/admin/webhooks/${other}`).set('authorization', admin()).expect(200);
});

it('sends failed deliveries again once the receiver is back: same event id, a fresh series of attempts', async () => {
  const before = await deliveries();
  const sent = receiver.received.length;
  receiver.setMode('ok');
  const res = await redeliver({ reason: 'receiver back after its deploy' });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  expect(res.body).toEqual({ redelivered: 2, deliveryIds: before.map((d) => d.id), more: false });

  const after = await settled(2);
  expect(after.map((d) => [d.status, d.attempts])).toEqual([
    ['delivered', ATTEMPTS + 1],
    ['delivered', ATTEMPTS + 1],
  ]);
  const again = receiver.received.slice(sent);
  expect(again.map((r) => r.headers['webhook-id']).sort()).toEqual(before.map((d) => d.eventId).sort());

  // Delivered now: nothing to send again, said by name.
  const twice = await redeliver({ reason: 'once more', deliveryIds: [before[0]!.id] });
  expect(twice.status).toBe(409);
  expect(twice.body.details.notEnded).toEqual([{ id: before[0]!.id, status: 'delivered' }]);

  const audit = await request(h.app.server)
    .get('/v1/audit?action=webhook.redeliver')
    .set('authorization', h.auth('viewer'));
  expect(audit.status).toBe(200);
  expect(audit.body.items[0].payload).toMatchObject({
    webhookId: endpoint,
    reason: 'receiver back after its deploy',
    deliveryIds: before.map((d) => d.id),
  });
});

it('gives a redelivery BLASTGATE_WEBHOOK_ATTEMPTS more POSTs and no more, and one request of two racing takes it', async () => {
  receiver.setMode('fail');
  await toggleFreeze(true);
  const [failed] = (await settled(3)).filter((d) => d.status === 'failed');
  expect(failed!.attempts).toBe(ATTEMPTS);
  const sent = receiver.received.length;

  const racing = await Promise.all([
    redeliver({ reason: 'first of two', deliveryIds: [failed!.id] }),
    redeliver({ reason: 'second of two', deliveryIds: [failed!.id] }),
    redeliver({ reason: 'third, for all failed' }),
  ]);
  const took = racing.filter((r) => r.status === 200).reduce((n, r) => n + (r.body.redelivered as number), 0);
  expect(took).toBe(1);
  for (const r of racing.filter((x) => x.status !== 200)) expect(r.body.code).toBe('DELIVERIES_NOT_REDELIVERABLE');

  const after = (await settled(3)).find((d) => d.id === failed!.id)!;
  expect(after).toMatchObject({ status: 'failed', attempts: 2 * ATTEMPTS });
  const posts = receiver.received.slice(sent).filter((r) => r.headers['webhook-id'] === failed!.eventId);
  expect(posts).toHaveLength(ATTEMPTS);
  const [row] = await query<{ redeliver_at: Date | null }>(
    h.databaseUrl,
    'SELECT redeliver_at FROM webhook_deliveries WHERE id = $1',
    [failed!.id],
  );
  expect(row!.redeliver_at).toBeNull();
});
