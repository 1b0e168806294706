// The velocity cap holds across workers, on the workers' own clock: with a cap of N items per
// minute, two workers together run no more than N in a minute, and the rest wait (their chunk jobs
// delayed, never failed) until the clock reaches the next minute. The clock is injected, so the
// test moves it forward instead of waiting for a real minute.
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildExecHarness,
  getOperation,
  submitAndStart,
  until,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { isDrillCall } from '../support/exec-helpers.ts';
import { appId, query, seedRegistry } from '../support/seed.ts';
import { readLive } from '../../src/modules/events/feed.ts';
import { CHUNK_SIZE } from '../../src/modules/execution/queues.ts';

const MINUTE = 60_000;
// The workers' clock starts at the beginning of a minute and moves only when the test says so.
let now = Math.ceil(Date.now() / MINUTE) * MINUTE + 1;
let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 2, clock: () => now });
  await seedRegistry(h.databaseUrl, { sites: 20, appsPerSite: 100 });
  await useHttpAdapter(h);
  // A type of Blastgate's own registry without cascades: its delete chunks take the one-transaction
  // path (chunk-same-db.ts).
  await query(h.databaseUrl, `INSERT INTO resource_types (name, id_pattern) VALUES ('gadget', '^gadget_[0-9]+$')`);
  await query(
    h.databaseUrl,
    `INSERT INTO resources (id, type, tenant_id)
     SELECT 'gadget_' || i, 'gadget', 'tenant_' || lpad((i % 20)::text, 5, '0') FROM generate_series(0, $1 - 1) i`,
    [2 * CHUNK_SIZE],
  );
});
afterAll(async () => {
  await h?.close();
});

const done = async (opId: string) =>
  (
    await query<{ n: number }>(
      h.databaseUrl,
      `SELECT count(*)::int AS n FROM operation_items WHERE operation_id = $1 AND state = 'done'`,
      [opId],
    )
  )[0]!.n;

describe('velocity caps', () => {
  it('runs at most maxItemsPerMinute items per minute across two workers, and the rest when the clock moves on', async () => {
    const ids = Array.from({ length: 20 }, (_, s) => Array.from({ length: 100 }, (_, j) => appId(s, j))).flat();
    const op = await submitAndStart(h, {
      ids,
      rollout: { bakeSeconds: 0, waves: ['100%'], maxItemsPerMinute: 700, concurrency: 8 },
      haltPolicy: { probe: 'optional' },
    });
    await until(async () => (await done(op.id)) >= 700, '700 items done');
    const queue = new Queue('items', { connection: { url: h.redisUrl }, prefix: h.prefix });
    try {
      // Every chunk job has been turned away at least once: the cap, not a slow worker, holds them.
      await until(
        async () => (await queue.getDelayedCount()) > 0 && (await queue.getActiveCount()) === 0,
        'the rest held back',
      );
      // The operation's own deletes (the restore drill's re-delete has keys of its own, and is not an item).
      const deletes = () =>
        h.downstream.destructiveCalls().filter((c) => c.action === 'softDelete' && !isDrillCall(c)).length;
      expect(deletes()).toBe(700);
      expect(await done(op.id)).toBe(700);
      // Running but not moving: the view says which cap holds it, and until when (the next minute).
      const held = (await getOperation(h, op.id)) as {
        state: string;
        throttled: { cap: string; until: string } | null;
      };
      expect(held.state).toBe('running');
      expect(held.throttled).toEqual({
        cap: 'maxItemsPerMinute',
        until: new Date(Math.ceil(now / MINUTE) * MINUTE).toISOString(),
      });
      // The live view's stream (GET …/events, the /ui page) says the same.
      expect((await readLive(h.app.db.pool, op.id))?.throttled).toEqual(held.throttled);

      now += MINUTE; // the next minute: another 700
      await until(async () => (await done(op.id)) >= 1400, '1400 items done', 30_000);
      await until(
        async () => (await queue.getActiveCount()) === 0 && (await queue.getDelayedCount()) > 0,
        'held back again',
      );
      expect(deletes()).toBe(1400);

      now += MINUTE;
      await waitForState(h, op.id, ['completed'], 30_000);
      expect(deletes()).toBe(2000);
      expect(await getOperation(h, op.id)).toMatchObject({ throttled: null });
    } finally {
      await queue.close();
    }
  });
  it('says which cap holds a registry operation whose chunk was granted nothing', async () => {
    // Two chunks and a cap of one chunk's items: one chunk is granted all it asked for (no cap bound
    // it), the other nothing. That one went back to the queue until the next minute without a word:
    // the view read running, 500 pending, throttled null (a new-user trial after a restart, 500-item chunks).
    const ids = Array.from({ length: 2 * CHUNK_SIZE }, (_, i) => `gadget_${i}`);
    const op = await submitAndStart(h, {
      ids,
      targetType: 'gadget',
      rollout: { bakeSeconds: 0, waves: ['100%'], maxItemsPerMinute: CHUNK_SIZE, concurrency: 8, restoreDrill: false },
      haltPolicy: { probe: 'optional' },
    });
    await until(async () => (await done(op.id)) >= CHUNK_SIZE, 'the first chunk done');
    await until(
      async () => ((await getOperation(h, op.id)) as { throttled: unknown }).throttled !== null,
      'the view to say which cap holds the rest',
      10_000,
    );
    expect(await done(op.id)).toBe(CHUNK_SIZE);
    expect(await getOperation(h, op.id)).toMatchObject({
      state: 'running',
      throttled: { cap: 'maxItemsPerMinute', until: new Date(Math.ceil(now / MINUTE) * MINUTE).toISOString() },
    });
    now += MINUTE;
    await waitForState(h, op.id, ['completed'], 30_000);
    expect(await done(op.id)).toBe(2 * CHUNK_SIZE);
  });
});
