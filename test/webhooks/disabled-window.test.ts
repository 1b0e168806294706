// README Webhooks: "`enabled: false` to pause it: ... events while it is disabled are not
// sent later". With the dispatcher behind (no worker process running for a while: a deploy, a
// crash), an endpoint disabled and enabled again receives the events of the window it was disabled.
import request from 'supertest';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildExecHarness, until, type ExecHarness } from '../support/execution.ts';
import { startReceiver, type Receiver } from '../support/webhook-receiver.ts';

const WEBHOOKS = { attempts: 2, backoffMs: 50, timeoutMs: 4_000, pollMs: 100, concurrency: 4 };
let h: ExecHarness;
let rx: Receiver;
let endpoint = '';
const freeze = async (frozen: boolean, reason: string) => {
  const r = await request(h.app.server)
    .put('/v1/admin/freeze')
    .set('authorization', h.auth('admin'))
    .send({ frozen, reason });
  expect(r.status).toBe(200);
};
const patch = async (enabled: boolean) => {
  const r = await request(h.app.server)
    .patch(`/v1/admin/webhooks/${endpoint}`)
    .set('authorization', h.auth('admin'))
    .send({ enabled });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
};
beforeAll(async () => {
  h = await buildExecHarness({ workers: 0, webhooks: WEBHOOKS });
  rx = await startReceiver('ok');
  const res = await request(h.app.server)
    .post('/v1/admin/webhooks')
    .set('authorization', h.auth('admin'))
    .send({ url: rx.url, events: ['freeze.on', 'freeze.off'] });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  endpoint = res.body.id;
});
afterAll(async () => {
  await rx?.close();
  await h?.close();
});

it('events of the window an endpoint was disabled are not sent once it is enabled again', async () => {
  await patch(false);
  await freeze(true, 'while disabled'); // freeze.on, during the disabled window
  await patch(true);
  await freeze(false, 'after re-enable'); // freeze.off, enabled: must be sent
  await h.startWorker();
  await until(() => rx.received.length >= 1, 'a delivery', 20_000);
  await new Promise((r) => setTimeout(r, 1500));
  const reasons = rx.events().map((e) => `${e.type}:${String(e.data.reason)}`);
  expect(reasons).toEqual(['freeze.off:after re-enable']);
});
