// The workers' retries of a delivery double up to BLASTGATE_WEBHOOK_BACKOFF_MAX_MS and no further
// (settings.ts retryDelayMs): real workers, a real receiver that always answers 500. Uncapped,
// these settings put 600, 1,200 and 2,400 ms between the last POSTs.
import request from 'supertest';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildExecHarness, until, type ExecHarness } from '../support/execution.ts';
import { startReceiver, type Receiver } from '../support/webhook-receiver.ts';

const WEBHOOKS = { attempts: 5, backoffMs: 300, backoffMaxMs: 300, timeoutMs: 1_000, pollMs: 100, concurrency: 2 };

let h: ExecHarness;
let receiver: Receiver;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1, webhooks: WEBHOOKS });
  receiver = await startReceiver('fail');
});
afterAll(async () => {
  await receiver?.close();
  await h?.close();
});

it('spaces the retries of a failing delivery by the cap once the doubling reaches it', async () => {
  const created = await request(h.app.server)
    .post('/v1/admin/webhooks')
    .set('authorization', h.auth('admin'))
    .send({ url: receiver.url, events: ['freeze.on'] });
  expect(created.status).toBe(201);
  await request(h.app.server)
    .put('/v1/admin/freeze')
    .set('authorization', h.auth('admin'))
    .send({ frozen: true, reason: 'backoff cap' })
    .expect(200);
  await until(() => receiver.received.length >= WEBHOOKS.attempts, 'every attempt of the delivery', 20_000);
  const at = receiver.received.map((r) => r.at);
  const gaps = at.slice(1).map((t, k) => t - at[k]!);
  expect(gaps).toHaveLength(WEBHOOKS.attempts - 1);
  // Each waited for its backoff, and none for more than the cap (plus a queue's promotion time).
  for (const g of gaps) expect(g).toBeGreaterThanOrEqual(WEBHOOKS.backoffMaxMs - 50);
  expect(Math.max(...gaps)).toBeLessThan(1_100);
  await request(h.app.server)
    .put('/v1/admin/freeze')
    .set('authorization', h.auth('admin'))
    .send({ frozen: false, reason: 'backoff cap' })
    .expect(200);
});
