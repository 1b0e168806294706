// A delivery gets BLASTGATE_WEBHOOK_ATTEMPTS POSTs, whichever jobs carry them: the delivery's own
// count of attempts ends it. Counted by the job, runs that sent nothing (PostgreSQL down before the
// POST) used attempts up, and a delivery re-queued after its job ran out began a new series: a
// receiver got 6 POSTs of a delivery recorded `failed`, or 15 (trial Y, with 8 attempts).
import request from 'supertest';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createAgents, deliverOnce } from '../../src/modules/webhooks/deliver.ts';
import { dispatchOnce } from '../../src/modules/webhooks/dispatch.ts';
import { buildTestApp, testDownstream, type TestApp } from '../support/app.ts';
import { TEST_SNAPSHOT_KEY_BYTES } from '../support/keys.ts';
import { query } from '../support/seed.ts';
import { startReceiver, type Receiver } from '../support/webhook-receiver.ts';

let t: TestApp;
let failing: Receiver;
beforeAll(async () => {
  t = await buildTestApp();
  failing = await startReceiver('fail');
});
afterAll(async () => {
  await failing?.close();
  await t?.close();
});

/** One delivery of a freeze toggle to `url` (a new endpoint), and what deliverOnce needs to send it. */
async function oneDelivery(url: string, frozen: boolean, timeoutMs: number) {
  const event = frozen ? 'freeze.on' : 'freeze.off';
  const created = await request(t.app.server)
    .post('/v1/admin/webhooks')
    .set('authorization', t.auth('admin'))
    .send({ url, events: [event] });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  await request(t.app.server)
    .put('/v1/admin/freeze')
    .set('authorization', t.auth('admin'))
    .send({ frozen, reason: 'attempt count' })
    .expect(200);
  const { deliveries } = await dispatchOnce(t.app.db.pool);
  const mine = deliveries.filter((d) => d.endpointId === created.body.id);
  expect(mine).toHaveLength(1);
  const deps = {
    pool: t.app.db.pool,
    masterKey: TEST_SNAPSHOT_KEY_BYTES,
    allow: testDownstream().allow,
    timeoutMs,
    agents: createAgents(),
  };
  return { id: mine[0]!.id, deps };
}

it('sends a delivery its attempts and no more, however many jobs (or runs of one) try it', async () => {
  const { id, deps } = await oneDelivery(failing.url, true, 5_000);
  const MAX = 3;
  // Two runs, as if from two jobs (a first that ran out on PostgreSQL errors, then a re-queued one):
  // each starts from the delivery's count, not from an attempt number of its own.
  const outcomes = [];
  for (let run = 0; run < MAX + 2; run++) outcomes.push(await deliverOnce(deps, id, MAX));
  expect(failing.received).toHaveLength(MAX);
  // The last POST ends the job too, and later runs send nothing.
  expect(outcomes[MAX - 1]).toMatchObject({ ok: false, retry: false });
  expect(outcomes.slice(MAX)).toEqual(['skipped', 'skipped']);
  const [row] = await query<{ status: string; attempts: number }>(
    t.databaseUrl,
    'SELECT status, attempts FROM webhook_deliveries WHERE id = $1',
    [id],
  );
  expect(row).toEqual({ status: 'failed', attempts: MAX });
});

// Counted before it goes out, as a destructive call is marked before it is sent: a POST out when
// the process died was never counted, and after the restart the receiver had one POST more than
// the delivery's attempts said (5 for 4, a new-user trial with kill -9 during a POST).
it('counts a POST while it is out, so a process that dies then leaves it counted', async () => {
  const hanging = await startReceiver('hang');
  try {
    const { id, deps } = await oneDelivery(hanging.url, false, 30_000);
    const row = async () =>
      (
        await query<{ status: string; attempts: number; last_error: string | null }>(
          t.databaseUrl,
          'SELECT status, attempts, last_error FROM webhook_deliveries WHERE id = $1',
          [id],
        )
      )[0]!;
    const out = deliverOnce(deps, id, 4);
    await expect.poll(() => hanging.received.length, { timeout: 10_000 }).toBe(1);
    // The POST is at the receiver and unanswered: had the process died now, this is what stays.
    expect(await row()).toMatchObject({ status: 'pending', attempts: 1 });
    expect((await row()).last_error).toMatch(/a POST went out at .* and has not been answered yet/);
    // Its outcome replaces the note and adds no second count.
    await hanging.close();
    expect(await out).toMatchObject({ ok: false, retry: true });
    const after = await row();
    expect(after).toMatchObject({ status: 'pending', attempts: 1 });
    expect(after.last_error).not.toMatch(/went out/);
    expect(hanging.received).toHaveLength(1);
  } finally {
    await hanging.close().catch(() => undefined);
  }
});
