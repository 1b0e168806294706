// Freeze events in the Slack format, signed with the secret in force after a rotation; and the
// allow-list checked again at delivery time: a worker whose BLASTGATE_DOWNSTREAM_ALLOW does not
// name the receiver's host never calls it, and records why.
import request from 'supertest';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allowlistOf } from '../../src/modules/adapters/host-allowlist.ts';
import { buildExecHarness, until, type ExecHarness } from '../support/execution.ts';
import { testDownstream } from '../support/secrets.ts';
import { startReceiver, type Receiver } from '../support/webhook-receiver.ts';

const WEBHOOKS = { attempts: 3, backoffMs: 50, timeoutMs: 1_000, pollMs: 100, concurrency: 2 };

async function register(h: ExecHarness, url: string, body: object = {}) {
  const res = await request(h.app.server)
    .post('/v1/admin/webhooks')
    .set('authorization', h.auth('admin'))
    .send({ url, events: ['freeze.on', 'freeze.off'], ...body });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body as { id: string; secret: string };
}
const freeze = async (h: ExecHarness, frozen: boolean) => {
  const res = await request(h.app.server)
    .put('/v1/admin/freeze')
    .set('authorization', h.auth('admin'))
    .send({ frozen, reason: 'Incident INC-7 <!here>' });
  expect(res.status).toBe(200);
};
const log = async (h: ExecHarness, id: string) =>
  (await request(h.app.server).get(`/v1/admin/webhooks/${id}/deliveries`).set('authorization', h.auth('admin'))).body
    .items as { eventType: string; status: string; attempts: number; lastError: string | null }[];

describe('webhooks: slack format and the allow-list at delivery time', () => {
  let h: ExecHarness;
  let receiver: Receiver;
  beforeAll(async () => {
    h = await buildExecHarness({ webhooks: WEBHOOKS });
    receiver = await startReceiver('ok');
  });
  afterAll(async () => {
    await h?.close();
    await receiver?.close();
  });

  it('sends freeze.on / freeze.off as Slack messages, signed with the rotated secret', async () => {
    const ep = await register(h, receiver.url, { format: 'slack' });
    const rotated = await request(h.app.server)
      .post(`/v1/admin/webhooks/${ep.id}/rotate-secret`)
      .set('authorization', h.auth('admin'));
    expect(rotated.status).toBe(200);
    await freeze(h, true);
    await freeze(h, true); // already frozen: nothing changes, no event
    await freeze(h, false);
    await until(() => receiver.received.length >= 2, 'two freeze messages');
    const bodies = receiver.received.map((r) => JSON.parse(r.body) as { text: string; blocks: unknown[] });
    expect(bodies[0]!.text).toContain('Global freeze set by bootstrap-admin');
    expect(bodies[0]!.text).toContain('&lt;!here&gt;');
    expect(bodies[1]!.text).toContain('Global freeze lifted');
    expect(bodies[0]!.blocks.length).toBeGreaterThan(0);
    for (const r of receiver.received) {
      const headers = {
        'webhook-id': r.headers['webhook-id']!,
        'webhook-timestamp': r.headers['webhook-timestamp']!,
        'webhook-signature': r.headers['webhook-signature']!,
      };
      new Webhook(rotated.body.secret).verify(r.body, headers);
      expect(() => new Webhook(ep.secret).verify(r.body, headers)).toThrow();
    }
    expect((await log(h, ep.id)).map((d) => [d.eventType, d.status])).toEqual([
      ['freeze.on', 'delivered'],
      ['freeze.off', 'delivered'],
    ]);
    expect(receiver.received).toHaveLength(2);
  });
});

describe('webhooks: a worker whose allow-list does not name the host', () => {
  let h: ExecHarness;
  let receiver: Receiver;
  beforeAll(async () => {
    // The API allows 127.0.0.1 (so the endpoint is registered); the workers allow *.internal only.
    h = await buildExecHarness({
      webhooks: WEBHOOKS,
      workerDownstream: { ...testDownstream(), allow: allowlistOf(['*.internal']) },
    });
    receiver = await startReceiver('ok');
  });
  afterAll(async () => {
    await h?.close();
    await receiver?.close();
  });

  it('never calls it, and records the delivery failed at once with the reason', async () => {
    const ep = await register(h, receiver.url);
    await freeze(h, true);
    await until(async () => (await log(h, ep.id)).some((d) => d.status === 'failed'), 'a failed delivery');
    const [d] = await log(h, ep.id);
    expect(d).toMatchObject({ eventType: 'freeze.on', status: 'failed', attempts: 1 });
    expect(d!.lastError).toContain('127.0.0.1 is not in BLASTGATE_DOWNSTREAM_ALLOW');
    expect(receiver.received).toEqual([]);
  });
});
