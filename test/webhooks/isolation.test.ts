// One slow receiver and one failing one do not hold up a healthy one (a new-user trial: a healthy
// endpoint heard of a freeze 43 s late while a slow and a failing endpoint took every delivery
// slot). Each worker process has at most one attempt in flight per endpoint; a delivery whose
// endpoint is at that bound is put back without using an attempt and woken when the attempt ahead
// of it ends, in whichever process.
import { Queue } from 'bullmq';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildExecHarness, until, type ExecHarness } from '../support/execution.ts';
import { startReceiver, type Receiver } from '../support/webhook-receiver.ts';
import type { DeliveryRow } from '../../src/modules/webhooks/repository.ts';
import { WEBHOOK_QUEUE } from '../../src/modules/webhooks/runtime.ts';

const TIMEOUT_MS = 4_000;
const WEBHOOKS = { attempts: 3, backoffMs: 50, timeoutMs: TIMEOUT_MS, pollMs: 100, concurrency: 3 };

async function register(h: ExecHarness, url: string) {
  const res = await request(h.app.server)
    .post('/v1/admin/webhooks')
    .set('authorization', h.auth('admin'))
    .send({ url, events: ['*'] });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.id as string;
}
const deliveries = async (h: ExecHarness, id: string) => {
  const res = await request(h.app.server)
    .get(`/v1/admin/webhooks/${id}/deliveries?limit=100`)
    .set('authorization', h.auth('admin'));
  expect(res.status).toBe(200);
  return res.body.items as DeliveryRow[];
};
/** `n` audit events, freeze.on and freeze.off alternately. */
async function freezeToggles(h: ExecHarness, n: number) {
  for (let i = 0; i < n; i++) {
    const res = await request(h.app.server)
      .put('/v1/admin/freeze')
      .set('authorization', h.auth('admin'))
      .send({ frozen: i % 2 === 0, reason: `drill ${i}` });
    expect(res.status).toBe(200);
  }
}
/**
 * Every event reached `r`, each well before an attempt at a receiver slower than the deadline
 * could have timed out. Measured from each event's own audit time (same host clock): half the
 * deadline is far more than a healthy delivery needs (a dispatch interval and a local POST), and
 * far less than waiting for a slot the slow endpoint holds or for a lost wake's park delay.
 */
async function expectPrompt(r: Receiver, n: number) {
  await until(() => r.received.length >= n, `${n} events at the healthy receiver`, 60_000);
  const lateness = r.events().map((e, k) => r.received[k]!.at - Date.parse(e.timestamp));
  expect(Math.max(...lateness), `ms after each event: ${lateness.join(', ')}`).toBeLessThan(TIMEOUT_MS / 2);
  expect(r.received).toHaveLength(n);
}

describe('webhooks: one endpoint cannot hold up the others (one worker, three slots)', () => {
  const EVENTS = 12;
  let h: ExecHarness;
  let ok: Receiver, failing: Receiver, slow: Receiver;
  const ids: Record<string, string> = {};
  beforeAll(async () => {
    h = await buildExecHarness({ webhooks: WEBHOOKS });
    [ok, failing, slow] = await Promise.all([
      startReceiver('ok'),
      startReceiver('fail'),
      // Answers long after the delivery deadline: every attempt holds its slot for TIMEOUT_MS.
      startReceiver('slow', { slowMs: 2 * TIMEOUT_MS }),
    ]);
    ids.slow = await register(h, slow.url);
    ids.failing = await register(h, failing.url);
    ids.ok = await register(h, ok.url);
    await freezeToggles(h, EVENTS);
  });
  afterAll(async () => {
    // Receivers first: cutting the slow one's sockets ends the attempt in flight, so the worker
    // closes without waiting out its deadline.
    await Promise.all([ok, failing, slow].map((r) => r?.close()));
    await h?.close();
  });

  it('delivers every event to the healthy endpoint before an attempt at the slow one could time out', async () => {
    await expectPrompt(ok, EVENTS);
    expect(slow.received.length).toBeGreaterThan(0);
    const last = Math.max(...ok.received.map((r) => r.at));
    expect(last - slow.received[0]!.at, 'the last healthy delivery after the first slow request (ms)').toBeLessThan(
      TIMEOUT_MS,
    );
    expect(new Set(ok.events().map((e) => e.type))).toEqual(new Set(['freeze.on', 'freeze.off']));
  });

  it('keeps at most one request open at the slow receiver', async () => {
    await until(() => slow.received.length >= 2, 'a second attempt at the slow receiver', 3 * TIMEOUT_MS);
    expect(slow.maxOpen()).toBe(1);
  });

  it('uses no attempt when it puts a delivery back: the failing endpoint gets exactly `attempts` each', async () => {
    await until(
      async () => (await deliveries(h, ids.failing!)).filter((d) => d.status === 'failed').length === EVENTS,
      'every delivery to the failing endpoint recorded failed',
    );
    for (const d of await deliveries(h, ids.failing!)) {
      expect(d).toMatchObject({ status: 'failed', attempts: WEBHOOKS.attempts, lastStatusCode: 500 });
      expect(d.lastError).toContain('HTTP 500');
    }
    const perEvent = new Map<string, number>();
    for (const r of failing.received) {
      const id = r.headers['webhook-id']!;
      perEvent.set(id, (perEvent.get(id) ?? 0) + 1);
    }
    expect([...perEvent.values()]).toEqual(Array(EVENTS).fill(WEBHOOKS.attempts));
  });

  it('cancels what waits behind the slow endpoint when it is disabled, and sends it nothing more', async () => {
    const res = await request(h.app.server)
      .patch(`/v1/admin/webhooks/${ids.slow!}`)
      .set('authorization', h.auth('admin'))
      .send({ enabled: false });
    expect(res.status).toBe(200);
    const log = await deliveries(h, ids.slow!);
    expect(log).toHaveLength(EVENTS);
    expect(log.filter((d) => d.status === 'pending')).toEqual([]);
    expect(log.filter((d) => d.status === 'cancelled').length).toBeGreaterThan(0);
    const sent = slow.received.length;
    // Every job left (the attempt in flight, those put back) runs out without another request.
    const queue = new Queue(WEBHOOK_QUEUE, { connection: { url: h.redisUrl }, prefix: h.prefix });
    try {
      await until(
        async () => {
          const c = await queue.getJobCounts('wait', 'active', 'delayed', 'prioritized');
          return Object.values(c).every((n) => n === 0);
        },
        'the webhook queue to drain',
        3 * TIMEOUT_MS,
      );
    } finally {
      await queue.close();
    }
    expect(slow.received.length).toBe(sent);
    // Every POST that reached it is counted in the log, also the one in flight when it was disabled
    // (its delivery cancelled meanwhile), which the log showed as `attempts: 0` (trial Y).
    const after = await deliveries(h, ids.slow!);
    expect(after.reduce((n, d) => n + d.attempts, 0)).toBe(slow.received.length);
  });
});

describe('webhooks: the bound is per worker process, and a burst is not held to it (two workers)', () => {
  const EVENTS = 20;
  // A parked delivery that nobody wakes comes back after about one deadline (its park delay): a
  // long one here keeps that far from what the burst takes on a loaded machine.
  const BURST = { ...WEBHOOKS, timeoutMs: 10_000, concurrency: 4 };
  let h: ExecHarness;
  let ok: Receiver, slow: Receiver;
  beforeAll(async () => {
    // The events come before the workers: their first dispatch pass queues all of them at once, a
    // burst in which many deliveries to the healthy endpoint find it at its bound.
    h = await buildExecHarness({ workers: 0, webhooks: BURST });
    [ok, slow] = await Promise.all([startReceiver('ok'), startReceiver('slow', { slowMs: 2 * BURST.timeoutMs })]);
    await register(h, slow.url);
    await register(h, ok.url);
    await freezeToggles(h, EVENTS);
    await h.startWorker();
    await h.startWorker();
  });
  afterAll(async () => {
    await Promise.all([ok, slow].map((r) => r?.close()));
    await h?.close();
  });

  it('sends a burst to the healthy endpoint one after the other, none waiting out a park delay', async () => {
    await until(() => ok.received.length >= EVENTS, `${EVENTS} events at the healthy receiver`, 60_000);
    // From the burst's first request anywhere: each parked delivery was woken by the end of the
    // attempt ahead of it (in either process), not left to come back after its park delay.
    const first = Math.min(ok.received[0]!.at, slow.received[0]?.at ?? Infinity);
    const spans = ok.received.map((r) => r.at - first);
    expect(Math.max(...spans), `ms after the first request: ${spans.join(', ')}`).toBeLessThan(BURST.timeoutMs / 2);
    expect(new Set(ok.received.map((r) => r.headers['webhook-id'])).size).toBe(EVENTS);
  });

  it('has at most one request open at the slow receiver per worker process', async () => {
    // Every one of its deliveries has been taken up (and parked) by now.
    await until(() => slow.received.length >= 2, 'attempts at the slow receiver from both processes', 30_000);
    expect(slow.maxOpen()).toBeLessThanOrEqual(2);
  });
});
