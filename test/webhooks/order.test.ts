// A healthy receiver hears an endpoint's events in the order they happened, also in a burst: a trial
// redelivered an operation's failed deliveries to a receiver that was back and got "halted" and
// "rolled_back" before "started". Each worker process sends one attempt at a time per endpoint; a
// delivery waits for any earlier one of its endpoint not yet tried, and the one woken when an attempt
// ends is the earliest waiting. (Retries of a failing receiver may still overtake: a delivery waits
// for an earlier one's first try, never for its retries.)
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildExecHarness, until, type ExecHarness } from '../support/execution.ts';
import { startReceiver, type Receiver } from '../support/webhook-receiver.ts';

const WEBHOOKS = { attempts: 2, backoffMs: 50, timeoutMs: 4_000, pollMs: 100, concurrency: 4 };
const EVENTS = 24;

describe('webhooks: a burst reaches a healthy receiver in event order (one worker, four slots)', () => {
  let h: ExecHarness;
  let ok: Receiver;
  let endpoint = '';
  beforeAll(async () => {
    // The events come before the worker: its first dispatch pass queues them all at once.
    h = await buildExecHarness({ workers: 0, webhooks: WEBHOOKS });
    ok = await startReceiver('fail');
    const res = await request(h.app.server)
      .post('/v1/admin/webhooks')
      .set('authorization', h.auth('admin'))
      .send({ url: ok.url, events: ['freeze.on', 'freeze.off'] });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    endpoint = res.body.id;
    for (let i = 0; i < EVENTS; i++) {
      const r = await request(h.app.server)
        .put('/v1/admin/freeze')
        .set('authorization', h.auth('admin'))
        .send({ frozen: i % 2 === 0, reason: `drill ${i}` });
      expect(r.status).toBe(200);
    }
    await h.startWorker();
  });
  afterAll(async () => {
    await ok?.close();
    await h?.close();
  });

  const seqs = (from: number) =>
    ok
      .events()
      .slice(from)
      .map((e) => e.data.auditSeq as number);
  const failedCount = async () => {
    const r = await request(h.app.server)
      .get(`/v1/admin/webhooks/${endpoint}`)
      .set('authorization', h.auth('admin'))
      .expect(200);
    return r.body.deliveries.failed as number;
  };

  it('a redelivery of what failed, to the receiver back up, arrives in event order', async () => {
    // Every delivery fails (the receiver is down), then the receiver comes back.
    await until(async () => (await failedCount()) === EVENTS, 'every delivery failed', 60_000);
    const before = ok.received.length;
    ok.setMode('ok');
    const r = await request(h.app.server)
      .post(`/v1/admin/webhooks/${endpoint}/redeliver`)
      .set('authorization', h.auth('admin'))
      .send({ reason: 'receiver back' });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.redelivered).toBe(EVENTS);
    await until(() => ok.received.length >= before + EVENTS, 'every redelivery', 60_000);
    const got = seqs(before);
    expect(got).toHaveLength(EVENTS);
    expect(got).toEqual([...got].sort((a, b) => a - b));
  });
});
