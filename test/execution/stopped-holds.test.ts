// A running delete whose worker was killed mid-chunk: its chunk job stays locked by the dead worker
// until BullMQ's job lock lapses (BLASTGATE_WORKER_LOCK_MS), and its claimed items wait for that
// job's next run. The view said nothing about it for up to 30 s (then only "no item outcome"); the
// reconciler now notes the stopped run's claims, as it does for a rollback (stopped-holds.ts).
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import pg from 'pg';
import {
  buildExecHarness,
  getOperation,
  submitAndStart,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { appsOf, ledger, waitForWaiting } from '../support/exec-helpers.ts';
import { query, seedRegistry } from '../support/seed.ts';
import { LOCK_SESSIONS } from '../../src/modules/execution/exclusive.ts';
import { QUEUE_NAMES } from '../../src/modules/execution/queues.ts';
import { createRedis } from '../../src/plugins/redis.ts';

const APPS = 4;
const ROLLOUT = { bakeSeconds: 0, concurrency: 2, waves: ['100%'] };

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 4, appsPerSite: APPS, internalTenants: 2 });
  await useHttpAdapter(h);
});
afterAll(async () => {
  await h?.close();
});

describe('a running delete whose items a stopped run holds', () => {
  it('says so within seconds (waiting: claims, how many, until when), then goes on once its job runs again', async () => {
    const ids = appsOf([1, 2], APPS);
    // The dead worker's locked chunk job: a paused chunk queue stands in for it (nothing runs).
    const conn = createRedis(h.redisUrl, true);
    const chunks = new Queue(QUEUE_NAMES.items, { connection: conn, prefix: h.prefix });
    // Of the claimed items, 3 are a run's whose process is gone, 2 a run's whose lock session is
    // connected (alive: it records them when its calls land), 1 a token that names no process.
    const stopped = `${randomUUID()}/${randomUUID()}`;
    const alive = randomUUID();
    const session = new pg.Client({ connectionString: h.databaseUrl, application_name: `${LOCK_SESSIONS}/${alive}` });
    await session.connect();
    try {
      await chunks.pause();
      const plan = await submitAndStart(h, { ids, rollout: ROLLOUT, haltPolicy: { probe: 'optional' } });
      expect((await getOperation(h, plan.id)).state).toBe('running');
      const tokens = [stopped, stopped, stopped, `${alive}/${randomUUID()}`, `${alive}/${randomUUID()}`, 'no-runner'];
      const claimed = await query<{ seq: number }>(
        h.databaseUrl,
        `WITH was AS (
           SELECT seq, row_number() OVER (ORDER BY seq) AS k FROM operation_items
           WHERE operation_id = $1 AND state = 'pending' ORDER BY seq LIMIT 6
         )
         UPDATE operation_items i SET state = 'claimed', claimed_by = 'a-chunk-job', claim_token = ($2::text[])[was.k],
           claimed_at = now()
         FROM was WHERE i.operation_id = $1 AND i.seq = was.seq RETURNING i.seq`,
        [plan.id, tokens],
      );
      expect(claimed).toHaveLength(6);
      const { waiting, live } = await waitForWaiting(
        h,
        plan.id,
        'claims',
        'the view to say that a stopped run holds items of the running delete',
        15_000,
      );
      expect(waiting).toMatchObject({ on: 'claims', items: 3 });
      expect(Date.parse(waiting.until!)).toBeGreaterThan(Date.now());
      expect(waiting.detail).toMatch(/job lock lapses/);
      expect(live).toEqual(waiting);
      // Its job runs again (the lock lapsed), after the leases ended: every item is deleted.
      await query(
        h.databaseUrl,
        `UPDATE operation_items SET claimed_at = now() - interval '1 hour' WHERE operation_id = $1 AND state = 'claimed'`,
        [plan.id],
      );
      await chunks.resume();
      const end = await waitForState(h, plan.id, ['completed', 'completed_with_failures', 'halted'], 30_000);
      expect(end.state).toBe('completed');
      expect((await ledger(h, plan.id)).every((r) => r.state === 'done')).toBe(true);
      const after = await request(h.app.server).get(`/v1/operations/${plan.id}`).set('authorization', h.auth('viewer'));
      expect(after.body.waiting).toBeNull();
    } finally {
      await chunks.resume();
      await chunks.close();
      conn.disconnect();
      await session.end();
    }
  }, 60_000);
});
