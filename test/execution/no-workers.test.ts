// An operation started while no worker process takes work from the queue (an API run with
// BLASTGATE_WORKERS_IN_PROCESS=false and no `npm run worker` beside it) read as `running` with
// nothing moving and no reason. Its view and its event stream now say it waits for a worker, since
// when; it moves once one starts, and the API sees the last one go.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLive } from '../../src/modules/events/feed.ts';
import { buildExecHarness, submitAndStart, until, waitForState, type ExecHarness } from '../support/execution.ts';
import { appId, seedRegistry } from '../support/seed.ts';

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 0 });
  await seedRegistry(h.databaseUrl, { sites: 3, appsPerSite: 2 });
});
afterAll(async () => {
  await h?.close();
});

describe('no worker connected to the queue', () => {
  it('shows waiting on workers while none is connected, then runs once one starts', async () => {
    // A worker of this database started under a mistyped prefix: it warned only itself, and this
    // view said "no worker process is connected" while that worker ran the operation (a trial).
    await h.app.db.pool.query(
      `INSERT INTO settings (key, value, updated_by)
       VALUES ('queue_prefixes', jsonb_build_object($1::text, jsonb_build_object('at', now(), 'role', 'worker')), 'system')`,
      [`${h.prefix}-typo`],
    );
    const t0 = Date.now();
    const op = await submitAndStart(h, { ids: [appId(0, 0), appId(1, 0), appId(2, 0)], rollout: { bakeSeconds: 0 } });
    const seen = await request(h.app.server).get(`/v1/operations/${op.id}`).set('authorization', h.auth('viewer'));
    expect(seen.status).toBe(200);
    expect(seen.body.state).toBe('running');
    expect(seen.body.waiting, JSON.stringify(seen.body)).toMatchObject({ on: 'workers' });
    expect(seen.body.waiting.detail).toContain('npm run worker');
    expect(seen.body.waiting.detail).toMatch(
      new RegExp(
        `started under another queue prefix within the last day: "${h.prefix}-typo" \\(worker, last at [^)]+\\); this one uses "${h.prefix}"\\. .*check BLASTGATE_QUEUE_PREFIX`,
      ),
    );
    expect(Date.parse(seen.body.waiting.since)).toBeGreaterThanOrEqual(t0 - 1_000);
    // The live view's stream says the same.
    expect((await readLive(h.app.db.pool, op.id, h.app.queueHolds))?.waiting).toEqual(seen.body.waiting);
    // And the list, which read plain `running` (a trial); not for an operation that is not queued.
    const listed = await request(h.app.server).get('/v1/operations').set('authorization', h.auth('viewer'));
    expect(listed.status).toBe(200);
    const summary = listed.body.items.find((o: { id: string }) => o.id === op.id);
    expect(summary.waiting).toEqual(seen.body.waiting);
    // Not claimed for an operation that does not move through the queue.
    expect((await h.app.queueHolds('planned')).noWorkersSince).toBeNull();

    const worker = await h.startWorker();
    await until(
      async () => (await h.app.queueHolds('running')).noWorkersSince === null,
      'the worker to be seen',
      10_000,
    );
    const done = await waitForState(h, op.id, ['completed', 'completed_with_failures', 'rolled_back'], 60_000);
    expect(done.state).toBe('completed');

    // The last worker goes: seen again, with a new `since`.
    const closedAt = Date.now();
    await worker.close();
    h.workers.splice(h.workers.indexOf(worker), 1);
    await until(
      async () => (await h.app.queueHolds('running')).noWorkersSince !== null,
      'no worker to be seen',
      10_000,
    );
    expect((await h.app.queueHolds('running')).noWorkersSince!.getTime()).toBeGreaterThanOrEqual(closedAt - 100);
  }, 120_000);
});
