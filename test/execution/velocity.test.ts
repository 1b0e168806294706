// The velocity cap holds across workers: with a cap of N items per minute, no more than N items
// run in a minute; the rest wait for the next minute (the job is delayed, not failed).
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildExecHarness,
  getOperation,
  submitAndStart,
  until,
  useHttpAdapter,
  type ExecHarness,
} from '../support/execution.ts';
import { appId, query, seedRegistry } from '../support/seed.ts';

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 2 });
  await seedRegistry(h.databaseUrl, { sites: 20, appsPerSite: 100 });
  await useHttpAdapter(h);
});
afterAll(async () => {
  await h?.close();
});

describe('velocity caps', () => {
  it('runs at most maxItemsPerMinute items in the current minute and holds the rest back', async () => {
    // Start early in a minute so the assertion window stays inside one minute.
    const secondOfMinute = new Date().getSeconds();
    if (secondOfMinute > 40) await until(() => new Date().getSeconds() < 5, 'the next minute', 25_000);
    const ids = Array.from({ length: 20 }, (_, s) => Array.from({ length: 100 }, (_, j) => appId(s, j))).flat();
    const op = await submitAndStart(h, { ids, rollout: { bakeSeconds: 0, waves: ['100%'], maxItemsPerMinute: 1000 } });
    // Two chunks (1000 items) may run this minute; the others are delayed to the next one.
    await until(
      async () =>
        (
          await query<{ n: number }>(
            h.databaseUrl,
            `SELECT count(*)::int AS n FROM operation_items WHERE operation_id = $1 AND state = 'done'`,
            [op.id],
          )
        )[0]!.n >= 1000,
      '1000 items done',
    );
    const queue = new Queue('items', { connection: { url: h.redisUrl }, prefix: h.prefix });
    const delayed = await queue.getDelayedCount();
    await queue.close();
    expect(delayed).toBeGreaterThan(0);
    const deletes = h.downstream.destructiveCalls().filter((c) => c.action === 'softDelete').length;
    expect(deletes).toBe(1000);
    const state = await getOperation(h, op.id);
    expect(state.state).toBe('running');
  });
});
