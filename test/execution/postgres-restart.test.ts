// Workers outlive their dependencies: PostgreSQL is restarted the hard way (every session cut at
// once, `pg_ctl restart -m immediate`) in the middle of a wave and in the middle of a rollback.
// A worker in a process of its own and one inside this process (as in the zero-config start) ride
// it out: they reconnect, their jobs are retried, and the operation ends as it should with every
// item applied exactly once. Before the fix a checked-out pg client emitted an unhandled 'error'
// and the worker process exited ("worker shutting down after an error: Connection terminated").
//
// Runs on a PostgreSQL of its own: the suite's shared one must not be restarted under other files.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { appliedCount, expectEachAppliedOnce, ledgerCounts, pollUntil, relaxAdapterTimeout } from '../support/crash.ts';
import {
  buildExecHarness,
  SECRET,
  submitAndStart,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { command, expectEverythingTouchedRestored } from '../support/exec-helpers.ts';
import { startOwnPostgres } from '../support/pg-server.ts';
import { appId, query, seedRegistry, sequenceValue } from '../support/seed.ts';
import { killAllWorkers, spawnWorker, type WorkerChild } from '../support/worker-child.ts';

const SITES = 12;
const APPS = 50;
const TOTAL = SITES * APPS; // wave 0: 1 tenant (50 items), wave 1: 550
const LOCK_MS = 1_500;

let pgs: Awaited<ReturnType<typeof startOwnPostgres>>;
let h: ExecHarness;
let child: WorkerChild;

beforeAll(async () => {
  pgs = await startOwnPostgres();
  h = await buildExecHarness({ workers: 1, lockDurationMs: LOCK_MS, databaseUrl: pgs.url });
  await seedRegistry(h.databaseUrl, { sites: 2 * SITES, appsPerSite: APPS });
  await useHttpAdapter(h);
  await relaxAdapterTimeout(h.databaseUrl);
  child = await spawnWorker({
    databaseUrl: pgs.url,
    redisUrl: h.redisUrl,
    queuePrefix: h.prefix,
    signingSecret: SECRET,
    lockMs: LOCK_MS,
    name: 'worker-process',
  });
}, 180_000);
afterAll(async () => {
  await killAllWorkers();
  await h?.close().catch(() => undefined);
  pgs?.destroy();
});

const idsFor = (c: number) =>
  Array.from({ length: SITES }, (_, s) => Array.from({ length: APPS }, (_, j) => appId(c * SITES + s, j))).flat();

describe('a PostgreSQL restart (immediate: every session cut)', () => {
  it('in the middle of a wave: the worker processes survive and the operation completes, each item applied once', async () => {
    onTestFailed(() => console.error(child.output()));
    const ids = idsFor(0);
    h.downstream.reset();
    h.downstream.hang(100); // ~3.5 s for the big wave's chunk at 16 in flight: the restart lands inside it
    const op = await submitAndStart(h, { ids, rollout: { bakeSeconds: 0, waves: ['1', '100%'], concurrency: 16 } });
    await pollUntil(
      async () => appliedCount(h.downstream, op.id, ids) > 100,
      'deletes of the big wave under way',
      30_000,
      5,
    );
    await pgs.server.restartImmediate();
    h.downstream.hang(10);
    const end = await waitForState(
      h,
      op.id,
      ['completed', 'completed_with_failures', 'rolling_back', 'rolled_back', 'halted'],
      120_000,
    );
    expect(end.state, JSON.stringify(await ledgerCounts(h.databaseUrl, op.id))).toBe('completed');
    await expectEachAppliedOnce(h.databaseUrl, h.downstream, op.id, ids);
    expect(child.exited, 'the worker process exited').toBe(false);
    expect(child.output()).not.toMatch(/shutting down after an error/);
    expect(TOTAL).toBe(ids.length);
  });

  it('in the middle of a rollback: the rollback resumes and restores everything it touched', async () => {
    onTestFailed(() => console.error(child.output()));
    const ids = idsFor(1);
    h.downstream.reset();
    h.downstream.hang(60);
    const op = await submitAndStart(h, { ids, rollout: { bakeSeconds: 0, waves: ['1', '100%'], concurrency: 16 } });
    await pollUntil(async () => appliedCount(h.downstream, op.id, ids) > 200, 'deletes under way', 30_000, 5);
    await command(h, 'operator', op.id, 'rollback', { reason: 'wrong list' }).expect(200);
    await pollUntil(
      async () => h.downstream.calls.filter((c) => c.action === 'restore' && c.status === 200).length > 20,
      'restores under way',
      30_000,
      5,
    );
    await pgs.server.restartImmediate();
    h.downstream.hang(0);
    await waitForState(h, op.id, ['rolled_back', 'rollback_incomplete'], 120_000);
    expect((await waitForState(h, op.id, ['rolled_back', 'rollback_incomplete'])).state).toBe('rolled_back');
    // The restart may cut a delete chunk's record of calls it never sent (the rollback stopped it
    // moments before): their marks stay, and the rollback restores them once their claims lapse.
    await expectEverythingTouchedRestored(h, op.id, { unrecorded: true });
    expect(child.exited, 'the worker process exited').toBe(false);
  });

  it('inside a registry chunk (one transaction): nothing of it is kept, and the retry applies each item once', async () => {
    onTestFailed(() => console.error(child.output()));
    // A type of its own on the registry adapter (the app type here is the HTTP adapter's), and a
    // trigger that holds a chunk's transaction 1.5 s at its record while armed: the restart then
    // cuts a chunk that has changed its registry rows and stored their snapshots, uncommitted.
    await query(
      h.databaseUrl,
      `INSERT INTO resource_types (name, id_pattern) VALUES ('svc', '^svc_[0-9]+$');
       INSERT INTO resources (id, type, tenant_id)
         SELECT 'svc_' || i, 'svc', 'tenant_' || lpad((i % 10)::text, 5, '0') FROM generate_series(0, 599) i;
       CREATE TABLE test_hold (armed boolean NOT NULL);
       INSERT INTO test_hold VALUES (true);
       CREATE SEQUENCE test_hold_hits;
       CREATE FUNCTION test_hold() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF (SELECT armed FROM test_hold) THEN PERFORM nextval('test_hold_hits'); PERFORM pg_sleep(1.5); END IF;
         RETURN NEW;
       END $$;
       CREATE TRIGGER test_hold BEFORE UPDATE OF done ON operation_waves FOR EACH ROW
         WHEN (NEW.done IS DISTINCT FROM OLD.done) EXECUTE FUNCTION test_hold()`,
    );
    const ids = Array.from({ length: 600 }, (_, i) => `svc_${i}`);
    const op = await submitAndStart(h, {
      ids,
      targetType: 'svc',
      rollout: { bakeSeconds: 0, waves: ['100%'], concurrency: 16, restoreDrill: false },
      haltPolicy: { probe: 'optional' },
    });
    const hits = () => sequenceValue(h.databaseUrl, 'test_hold_hits');
    await pollUntil(async () => (await hits()) >= 1, 'a registry chunk held at its record', 30_000, 5);
    await pgs.server.restartImmediate();
    await query(h.databaseUrl, 'UPDATE test_hold SET armed = false');
    const end = await waitForState(h, op.id, ['completed', 'completed_with_failures', 'halted', 'paused'], 120_000);
    expect(end.state, JSON.stringify(await ledgerCounts(h.databaseUrl, op.id))).toBe('completed');
    const rows = await query<{ state: string; n: number }>(
      h.databaseUrl,
      `SELECT state, count(*)::int AS n FROM resources WHERE type = 'svc' GROUP BY state`,
    );
    expect(rows).toEqual([{ state: 'soft_deleted', n: 600 }]);
    const items = await query<{ n: number; snapped: number; sent: number }>(
      h.databaseUrl,
      `SELECT count(*)::int AS n, count(snapshot_id)::int AS snapped, count(executed_seq)::int AS sent
       FROM operation_items WHERE operation_id = $1 AND state = 'done'`,
      [op.id],
    );
    expect(items).toEqual([{ n: 600, snapped: 600, sent: 600 }]);
    // One snapshot per resource: the cut chunk's uncommitted ones are gone with it.
    const snaps = await query<{ n: number; resources: number }>(
      h.databaseUrl,
      'SELECT count(*)::int AS n, count(DISTINCT resource_id)::int AS resources FROM snapshots WHERE operation_id = $1',
      [op.id],
    );
    expect(snaps).toEqual([{ n: 600, resources: 600 }]);
    expect(child.exited, 'the worker process exited').toBe(false);
  });
});
