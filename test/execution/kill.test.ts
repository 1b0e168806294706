// Promise 5 with real processes: a worker (src/worker.ts in a child process) is SIGKILLed at a
// chosen instant of an operation, another worker process takes over, and at the end every item was
// soft-deleted downstream exactly once (counted by Idempotency-Key), none is missing, and the
// ledger shows every item done. Kill points are targeted either by counting the calls that reached
// the downstream, or by holding a Postgres lock that the worker's next step needs (so the worker is
// frozen at exactly that step when it dies).
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import request from 'supertest';
import {
  appliedCount,
  expectEachAppliedOnce,
  holdLock,
  ledgerCounts,
  lockWaiters,
  pollUntil,
  relaxAdapterTimeout,
  type HeldLock,
} from '../support/crash.ts';
import {
  buildExecHarness,
  SECRET,
  submitAndStart,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { appId, query, seedRegistry } from '../support/seed.ts';
import { killAllWorkers, spawnWorker, type WorkerChild } from '../support/worker-child.ts';
import { CHUNK_SIZE } from '../../src/modules/execution/queues.ts';

const SITES_PER_CASE = 12;
const APPS_PER_SITE = 50;
const CASES = 9;
const TOTAL = SITES_PER_CASE * APPS_PER_SITE; // 600: wave 0 = 1 tenant (50), wave 1 = 550 (one chunk: CHUNK_SIZE)
const LOCK_MS = 1_500;
const END_STATES = ['completed', 'halted', 'rolling_back', 'rolled_back', 'paused', 'failed', 'cancelled'];

let h: ExecHarness;
/** The worker process that is alive between cases; each case kills it and starts the next one. */
let current: WorkerChild | undefined;
let spawned = 0;
const outputs: WorkerChild[] = [];

async function startWorker(): Promise<WorkerChild> {
  const w = await spawnWorker({
    databaseUrl: h.databaseUrl,
    redisUrl: h.redisUrl,
    queuePrefix: h.prefix,
    signingSecret: SECRET,
    lockMs: LOCK_MS,
    concurrency: 4,
    name: `worker#${++spawned}`,
  });
  outputs.push(w);
  return w;
}

async function ensureWorker(): Promise<WorkerChild> {
  if (!current || current.exited) current = await startWorker();
  return current;
}

const idsFor = (c: number) =>
  Array.from({ length: SITES_PER_CASE }, (_, s) =>
    Array.from({ length: APPS_PER_SITE }, (_, j) => appId(c * SITES_PER_CASE + s, j)),
  ).flat();

let nextCase = 0;
/** A fresh slice of the registry, a clean downstream, and a live first worker. */
async function prepareCase(hangMs = 0) {
  const ids = idsFor(nextCase++);
  h.downstream.reset();
  h.downstream.hang(hangMs);
  const victim = await ensureWorker();
  onTestFailed(() => {
    for (const w of outputs.slice(-3)) console.error(w.output());
  });
  return { ids, victim };
}

const submit = (ids: string[], start = true) =>
  submitAndStart(h, { ids, rollout: { bakeSeconds: 0, waves: ['1', '100%'], concurrency: 16 } }, start);

async function start(opId: string) {
  const s = await request(h.app.server)
    .post(`/v1/operations/${opId}/start`)
    .set('authorization', h.auth('operator'))
    .send({});
  expect(s.status, JSON.stringify(s.body)).toBe(200);
}

const opRow = async (opId: string) =>
  (
    await query<{ state: string; current_wave: number | null }>(
      h.databaseUrl,
      'SELECT state, current_wave FROM operations WHERE id = $1',
      [opId],
    )
  )[0]!;

/** SIGKILLs the worker, releases the lock that froze it (if any), starts a new worker process. */
async function killAndTakeOver(victim: WorkerChild, lock?: HeldLock) {
  await victim.kill();
  await lock?.release();
  h.downstream.hang(0);
  current = await startWorker();
}

/** Takeover must not wait for the 60 s claim lease: the 45 s bound fails a lease-based recovery. */
async function expectCompletedOnce(opId: string, ids: string[]) {
  const final = await waitForState(h, opId, END_STATES, 45_000);
  expect(final.state, JSON.stringify(final)).toBe('completed');
  await expectEachAppliedOnce(h.databaseUrl, h.downstream, opId, ids);
}

const destructive = () => h.downstream.destructiveCalls().length;

beforeAll(async () => {
  h = await buildExecHarness({ workers: 0, lockDurationMs: LOCK_MS });
  await seedRegistry(h.databaseUrl, { sites: CASES * SITES_PER_CASE, appsPerSite: APPS_PER_SITE });
  await useHttpAdapter(h);
  await relaxAdapterTimeout(h.databaseUrl);
});
afterEach(async (ctx) => {
  // After a failure nothing of the failed case may leak into the next one.
  if (ctx.task.result?.state === 'fail') {
    await killAllWorkers();
    current = undefined;
  }
});
afterAll(async () => {
  await killAllWorkers();
  await h?.close();
});

describe('a worker process SIGKILLed mid-operation; another process takes over', () => {
  it('during the snapshot phase: snapshots read, not yet stored, nothing destructive sent', async () => {
    const { ids, victim } = await prepareCase();
    const op = await submit(ids, false);
    // INSERT INTO snapshots needs ROW EXCLUSIVE, which SHARE blocks: the worker claims, reads
    // every snapshot over HTTP, and stops right before storing them.
    const lock = await holdLock(h.databaseUrl, 'LOCK TABLE snapshots IN SHARE MODE');
    try {
      await start(op.id);
      await pollUntil(
        async () => (await lockWaiters(h.databaseUrl, 'snapshots')) > 0,
        'the worker blocked storing snapshots',
      );
      expect(destructive()).toBe(0);
      const atKill = await ledgerCounts(h.databaseUrl, op.id);
      expect(atKill.claimed).toBeGreaterThan(0);
      await killAndTakeOver(victim, lock);
    } finally {
      await lock.release();
    }
    await expectCompletedOnce(op.id, ids);
  });

  it('at the first destructive call of the operation', async () => {
    // The call hangs until the kill: 200 ms was too short a window on a loaded machine (the kill
    // landed after the call was applied, once, with another test run beside the suite).
    const { ids, victim } = await prepareCase(2_000);
    const op = await submit(ids);
    await pollUntil(() => destructive() >= 1, 'the first destructive call');
    await killAndTakeOver(victim);
    expect(appliedCount(h.downstream, op.id, ids)).toBe(0); // it was in flight: dropped unapplied
    await expectCompletedOnce(op.id, ids);
  });

  it('with destructive calls in flight at a slow downstream (k = 24: 16 answered, 8 hanging)', async () => {
    // Each call held 400 ms: the kill must land before the wave's 50 calls have all been answered
    // (applied < 50 below), which with 150 ms left ~450 ms for the poll and the SIGKILL on a loaded
    // 2-core box. This case failed once under load, with no record of which check; this is the one
    // timing it depends on.
    const { ids, victim } = await prepareCase(400);
    const op = await submit(ids);
    await pollUntil(() => destructive() >= 24, 'the 24th destructive call');
    const inFlight = h.downstream.destructiveCalls().filter((c) => c.status === undefined).length;
    await killAndTakeOver(victim);
    expect(inFlight).toBeGreaterThan(0);
    const applied = appliedCount(h.downstream, op.id, ids);
    expect(applied).toBeGreaterThan(0);
    expect(applied).toBeLessThan(50);
    await expectCompletedOnce(op.id, ids);
  });

  it('in the middle of the big wave, its calls going out at full speed (k = 300)', async () => {
    const { ids, victim } = await prepareCase();
    const op = await submit(ids);
    await pollUntil(() => destructive() >= 300, 'the 300th destructive call', 20_000, 1);
    await victim.kill();
    const atKill = destructive();
    await killAndTakeOver(victim);
    expect(atKill).toBeLessThan(TOTAL);
    await expectCompletedOnce(op.id, ids);
  });

  it("twice: the worker that took over is killed too while re-sending the first one's calls", async () => {
    const { ids, victim } = await prepareCase(100);
    const op = await submit(ids);
    await pollUntil(() => destructive() >= 250, 'the 250th destructive call', 20_000, 1);
    await victim.kill();
    const atFirstKill = destructive();
    current = await startWorker(); // the downstream stays slow: the second worker is caught mid-chunk too
    const second = current;
    await pollUntil(
      () => destructive() >= atFirstKill + 40,
      '40 more destructive calls from the second worker',
      20_000,
      1,
    );
    await killAndTakeOver(second);
    await expectCompletedOnce(op.id, ids);
    // The second worker re-sent keys the first had already applied: each was answered, not re-applied.
    expect([...h.downstream.callsByKey.values()].some((n) => n > 1)).toBe(true);
  });

  it('after the last destructive call of the operation arrived (k = 600)', async () => {
    const { ids, victim } = await prepareCase(30);
    const op = await submit(ids);
    await pollUntil(() => destructive() >= TOTAL, 'the last destructive call', 20_000, 1);
    await killAndTakeOver(victim);
    await expectCompletedOnce(op.id, ids);
  });

  it('after every call of the wave was answered, before its outcomes were recorded', async () => {
    const { ids, victim } = await prepareCase(25);
    const op = await submit(ids);
    const lastWave = op.waves.length - 1;
    await pollUntil(async () => (await opRow(op.id)).current_wave === lastWave, 'the last wave to start', 20_000, 5);
    // recordOutcomes updates the wave's counters in the same transaction as the items: with the
    // wave row locked, every chunk job of it stops after its calls, before anything is committed.
    const lock = await holdLock(
      h.databaseUrl,
      'SELECT 1 FROM operation_waves WHERE operation_id = $1 AND wave = $2 FOR UPDATE',
      [op.id, lastWave],
    );
    try {
      const chunks = Math.ceil(op.waves[lastWave]!.items / CHUNK_SIZE);
      await pollUntil(
        async () =>
          appliedCount(h.downstream, op.id, ids) === TOTAL &&
          (await lockWaiters(h.databaseUrl, 'operation_waves')) >= chunks,
        'every chunk of the last wave blocked recording outcomes after all calls were applied',
        // A wait, not a timing: the worker's PostgreSQL backends run at nice 10, and on a loaded
        // machine (a fresh-clone run beside a 2M-row seed) 20 s did not suffice once.
        60_000,
        20,
      );
      const atKill = await ledgerCounts(h.databaseUrl, op.id);
      expect(atKill.claimed).toBe(op.waves[lastWave]!.items);
      await killAndTakeOver(victim, lock);
    } finally {
      await lock.release();
    }
    await expectCompletedOnce(op.id, ids);
    // The new worker re-sent the calls with the same keys and got the stored answers back.
    const resent = [...h.downstream.callsByKey.values()].filter((n) => n > 1).length;
    expect(resent).toBeGreaterThanOrEqual(op.waves[lastWave]!.items);
  }, 150_000);

  it('while the transaction that records the outcomes and reports the settled wave waits for the operation lock', async () => {
    const { ids, victim } = await prepareCase(25);
    const op = await submit(ids);
    // Outcomes and the decision on them commit together: with the operation's row locked, the
    // chunk that settles the wave has written its outcomes but cannot commit them. The lock is
    // taken once every item is marked write-ahead and calls are going out (a chunk that has not
    // marked its items yet would wait for the same lock before its first call: the big chunk
    // sends its first 100 items before it marks the rest, so calls alone do not say it).
    await pollUntil(
      async () =>
        appliedCount(h.downstream, op.id, ids) >= 150 &&
        (
          await query<{ n: number }>(
            h.databaseUrl,
            'SELECT count(*)::int AS n FROM operation_items WHERE operation_id = $1 AND executed_seq IS NOT NULL',
            [op.id],
          )
        )[0]!.n === TOTAL,
      'every item marked and the last wave sending',
      20_000,
      5,
    );
    const lock = await holdLock(h.databaseUrl, 'SELECT 1 FROM operations WHERE id = $1 FOR UPDATE', [op.id]);
    try {
      await pollUntil(
        async () =>
          appliedCount(h.downstream, op.id, ids) === TOTAL && (await lockWaiters(h.databaseUrl, 'operations')) > 0,
        'every call applied and the settling report blocked',
      );
      expect((await opRow(op.id)).state).toBe('running');
      // Nothing of that transaction is visible: the outcomes are not half-recorded.
      expect((await ledgerCounts(h.databaseUrl, op.id)).done).toBeLessThan(TOTAL);
      await killAndTakeOver(victim, lock);
    } finally {
      await lock.release();
    }
    await expectCompletedOnce(op.id, ids);
  });

  it('between waves: the bake decided, the next wave not yet committed', async () => {
    const { ids, victim } = await prepareCase();
    const op = await submit(ids, false);
    const nextWave = 1;
    // Starting wave 1 stamps its row; with the row locked the bake job's transition blocks
    // inside its transaction (after the probes), holding the operation's row lock.
    const lock = await holdLock(
      h.databaseUrl,
      'SELECT 1 FROM operation_waves WHERE operation_id = $1 AND wave = $2 FOR UPDATE',
      [op.id, nextWave],
    );
    try {
      await start(op.id);
      await pollUntil(
        async () => (await lockWaiters(h.databaseUrl, 'operation_waves')) > 0,
        'the bake job blocked starting wave 1',
      );
      expect((await opRow(op.id)).state).toBe('baking');
      expect(appliedCount(h.downstream, op.id, ids)).toBe(op.waves[0]!.items);
      await killAndTakeOver(victim, lock);
    } finally {
      await lock.release();
    }
    await expectCompletedOnce(op.id, ids);
  });
});
