// Webhooks end to end: a real operation (registry adapter, bake 0) on real workers, real receivers
// on 127.0.0.1. One endpoint takes everything and verifies each signature with the standardwebhooks
// package; one takes only halts; one always answers 500 (retried, then recorded failed); one never
// answers (the operation completes anyway).
import request from 'supertest';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildExecHarness, submitAndStart, until, waitForState, type ExecHarness } from '../support/execution.ts';
import { appId, query, seedRegistry } from '../support/seed.ts';
import { METRICS_TOKEN } from '../support/secrets.ts';
import { startReceiver, type Receiver } from '../support/webhook-receiver.ts';
import type { DeliveryRow } from '../../src/modules/webhooks/repository.ts';

// Fast retries so the failing endpoint runs out of attempts within the test.
const WEBHOOKS = { attempts: 3, backoffMs: 50, timeoutMs: 1_000, pollMs: 100, concurrency: 4 };

let h: ExecHarness;
let all: Receiver, haltsOnly: Receiver, broken: Receiver, hanging: Receiver;
const endpoints: Record<string, { id: string; secret: string }> = {};
let opId: string;
let finalState: string;

async function register(name: string, url: string, events: string[], format = 'standard') {
  const res = await request(h.app.server)
    .post('/v1/admin/webhooks')
    .set('authorization', h.auth('admin'))
    .send({ url, events, format, description: `${name} receiver` });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  expect(res.body.secret).toMatch(/^whsec_/);
  endpoints[name] = { id: res.body.id, secret: res.body.secret };
}

const deliveries = async (name: string) => {
  const res = await request(h.app.server)
    .get(`/v1/admin/webhooks/${endpoints[name]!.id}/deliveries`)
    .set('authorization', h.auth('admin'));
  expect(res.status).toBe(200);
  return res.body.items as DeliveryRow[];
};

beforeAll(async () => {
  // Two worker processes' worth of dispatchers and consumers: each event is still sent once.
  h = await buildExecHarness({ workers: 2, webhooks: WEBHOOKS });
  // 1 internal tenant + 3 others, 2 apps each: several waves, a handful of items.
  await seedRegistry(h.databaseUrl, { sites: 4, appsPerSite: 2, internalTenants: 1 });
  [all, haltsOnly, broken, hanging] = await Promise.all([
    startReceiver('ok'),
    startReceiver('ok'),
    startReceiver('fail'),
    startReceiver('hang'),
  ]);
  await register('all', all.url, ['*']);
  await register('haltsOnly', haltsOnly.url, ['operation.halted']);
  await register('broken', broken.url, ['operation.planned']);
  await register('hanging', hanging.url, ['*']);
  const ids = [0, 1, 2, 3].flatMap((s) => [appId(s, 0), appId(s, 1)]);
  const op = await submitAndStart(h, { ids, rollout: { bakeSeconds: 0 } });
  expect(op.waves.length).toBeGreaterThan(1);
  opId = op.id;
  // The hanging receiver holds its deliveries for the whole request deadline, over and over:
  // the operation does not wait for it.
  finalState = (await waitForState(h, opId, ['completed', 'halted', 'rolled_back', 'paused', 'failed'])).state;
});
afterAll(async () => {
  await h?.close();
  await Promise.all([all, haltsOnly, broken, hanging].map((r) => r?.close()));
});

describe('webhooks', () => {
  it('delivers planned, approved, started, wave_completed and completed, each signed (standardwebhooks verifies)', async () => {
    expect(finalState).toBe('completed');
    await until(() => all.events().some((e) => e.type === 'operation.completed'), 'the completed event', 30_000);
    const mine = all.received.filter((r) => JSON.parse(r.body).data.operationId === opId);
    const wh = new Webhook(endpoints.all!.secret);
    for (const r of mine) {
      // Throws on a bad signature or a stale timestamp.
      wh.verify(r.body, {
        'webhook-id': r.headers['webhook-id']!,
        'webhook-timestamp': r.headers['webhook-timestamp']!,
        'webhook-signature': r.headers['webhook-signature']!,
      });
      expect(r.headers['content-type']).toBe('application/json');
    }
    // Another endpoint's secret does not verify them.
    expect(() =>
      new Webhook(endpoints.haltsOnly!.secret).verify(mine[0]!.body, {
        'webhook-id': mine[0]!.headers['webhook-id']!,
        'webhook-timestamp': mine[0]!.headers['webhook-timestamp']!,
        'webhook-signature': mine[0]!.headers['webhook-signature']!,
      }),
    ).toThrow();
    const types = new Set(mine.map((r) => JSON.parse(r.body).type as string));
    for (const t of ['planned', 'approved', 'started', 'wave_completed', 'completed'])
      expect(types, [...types].join(',')).toContain(`operation.${t}`);
    expect([...types].every((t) => t.startsWith('operation.'))).toBe(true);
    const completed = mine.map((r) => JSON.parse(r.body)).find((e) => e.type === 'operation.completed');
    expect(completed.data).toMatchObject({
      operationId: opId,
      kind: 'delete',
      state: 'completed',
      targetType: 'app',
      itemCount: 8,
      links: { self: `/v1/operations/${opId}`, events: `/v1/operations/${opId}/events` },
    });
    expect(typeof completed.timestamp).toBe('string');
    // The log agrees: every one of them delivered on the first attempt, with the receiver's status.
    const log = (await deliveries('all')).filter((d) => d.operationId === opId);
    expect(log.length).toBe(mine.length);
    for (const d of log) expect(d).toMatchObject({ status: 'delivered', attempts: 1, lastStatusCode: 204 });
    // Each event once (webhook-id = event id, unique).
    expect(new Set(mine.map((r) => r.headers['webhook-id'])).size).toBe(mine.length);
    // Paged two at a time by links.next (with the filter kept), as every list pages: the same log.
    const paged: DeliveryRow[] = [];
    let next: string | null = `/v1/admin/webhooks/${endpoints.all!.id}/deliveries?limit=2&status=delivered`;
    for (let page = 0; next && page < 100; page++) {
      const res = await request(h.app.server).get(next).set('authorization', h.auth('admin')).expect(200);
      paged.push(...(res.body.items as DeliveryRow[]));
      next = res.body.links.next as string | null;
    }
    expect(next).toBeNull();
    expect(paged.filter((d) => d.operationId === opId).map((d) => d.eventId)).toEqual(log.map((d) => d.eventId));
  });

  it('sends nothing to an endpoint whose filter matches no event of a successful operation', async () => {
    // The completed event's deliveries were recorded for every endpoint in the same dispatch
    // transaction, so by now any delivery for haltsOnly would be on record.
    await until(async () => (await deliveries('all')).some((d) => d.eventType === 'operation.completed'), 'completed');
    expect(await deliveries('haltsOnly')).toEqual([]);
    expect(haltsOnly.received).toEqual([]);
  });

  it('retries an endpoint that answers 500, then records the delivery failed', async () => {
    await until(async () => (await deliveries('broken')).some((d) => d.status === 'failed'), 'a failed delivery');
    const [d] = await deliveries('broken');
    expect(d).toMatchObject({
      eventType: 'operation.planned',
      operationId: opId,
      status: 'failed',
      attempts: WEBHOOKS.attempts,
      lastStatusCode: 500,
      deliveredAt: null,
    });
    expect(d!.lastError).toContain('HTTP 500');
    expect(d!.failedAt).not.toBeNull();
    // The receiver saw every attempt, all of the same message.
    expect(broken.received.length).toBe(WEBHOOKS.attempts);
    expect(new Set(broken.received.map((r) => r.headers['webhook-id']))).toEqual(new Set([d!.eventId]));
  });

  it('lets the operation complete while an endpoint never answers; its attempts time out', async () => {
    expect(finalState).toBe('completed');
    // An outcome, not the note a POST leaves while it is out ("a POST went out at …").
    const timedOut = (x: { lastError: string | null }) => x.lastError !== null && !x.lastError.includes('went out');
    await until(
      async () => (await deliveries('hanging')).some((d) => d.attempts > 0 && timedOut(d)),
      'a timed-out attempt',
    );
    const d = (await deliveries('hanging')).find(timedOut)!;
    expect(d.lastError).toContain('timeout');
    expect(d.status === 'pending' || d.status === 'failed').toBe(true);
  });

  it('reports deliveries by outcome on /metrics', async () => {
    await until(async () => (await deliveries('broken')).some((d) => d.status === 'failed'), 'a failed delivery');
    const res = await request(h.app.server).get('/metrics').set('authorization', `Bearer ${METRICS_TOKEN}`);
    expect(res.status).toBe(200);
    const count = (outcome: string) =>
      Number(new RegExp(`blastgate_webhook_deliveries_total\\{outcome="${outcome}"\\} (\\d+)`).exec(res.text)?.[1]);
    expect(count('delivered')).toBeGreaterThan(0);
    expect(count('failed')).toBeGreaterThanOrEqual(1);
  });

  it('adds nothing when the same audit events are dispatched again', async () => {
    await until(() => all.events().some((e) => e.type === 'operation.completed'), 'the completed event', 30_000);
    const before = (await query<{ n: number }>(h.databaseUrl, 'SELECT count(*)::int AS n FROM webhook_deliveries'))[0]!
      .n;
    const sent = all.received.length;
    // Rewind the cursor to the start of the log: every event is read again.
    await query(h.databaseUrl, `UPDATE settings SET value = '{"seq": 0}' WHERE key = 'webhook_cursor'`);
    await until(async () => {
      const r = await query<{ caught: boolean }>(
        h.databaseUrl,
        `SELECT (value->>'seq')::bigint >= (SELECT max(seq) FROM audit_events) AS caught FROM settings WHERE key = 'webhook_cursor'`,
      );
      return r[0]!.caught;
    }, 'the dispatcher to read the log again');
    const after = (await query<{ n: number }>(h.databaseUrl, 'SELECT count(*)::int AS n FROM webhook_deliveries'))[0]!
      .n;
    expect(after).toBe(before);
    expect(all.received.length).toBe(sent);
  });

  it('cancels what is still waiting when an endpoint is disabled, and sends it nothing more', async () => {
    const res = await request(h.app.server)
      .patch(`/v1/admin/webhooks/${endpoints.hanging!.id}`)
      .set('authorization', h.auth('admin'))
      .send({ enabled: false });
    expect(res.status).toBe(200);
    const log = await deliveries('hanging');
    expect(log.filter((d) => d.status === 'pending')).toEqual([]);
    expect(log.some((d) => d.status === 'cancelled')).toBe(true);
  });
});
