// Ctrl-C (or SIGTERM) of a process whose worker is in the middle of a chunk: it stops sending
// destructive calls at once — those in flight finish and are recorded — and hands the chunk's
// unsent items back, so that another worker (or the next start) carries on at once instead of
// after the claim lease. It used to finish the whole chunk first: a trial's Ctrl-C was followed
// by 12–13 more deletes over the 15 s shutdown window, and then a forced exit.
// The same for a rollback in progress: its unsent restores are handed back due at once, with no
// restore attempt used (a worker stopped mid-rollback of a 1M-item operation finished its batch of
// hundreds of restores and was killed at the end of its 15 s window: npm run bench -- control).
// On the real stack: real in-process workers, a real downstream over HTTP that records every call.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { expectEachAppliedOnce } from '../support/crash.ts';
import { appsOf, command, expectEverythingTouchedRestored, ownCalls } from '../support/exec-helpers.ts';
import {
  buildExecHarness,
  submitAndStart,
  until,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { query, seedRegistry } from '../support/seed.ts';

const CONCURRENCY = 2;
let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 3, appsPerSite: 20 });
  await useHttpAdapter(h, false);
});
afterAll(async () => {
  await h?.close();
});

it('stops sending destructive calls at once, hands the rest back, and another worker finishes them', async () => {
  const ids = appsOf([1, 2], 20);
  // Slow enough that the 40 items would take ~6 s at this concurrency.
  h.downstream.beforeApply(async (call) => {
    if (call.action === 'softDelete') await new Promise((r) => setTimeout(r, 300));
  });
  const op = await submitAndStart(h, {
    ids,
    rollout: { bakeSeconds: 0, waves: ['100%'], concurrency: CONCURRENCY, restoreDrill: false },
    haltPolicy: { probe: 'optional', onHalt: 'pause' },
  });
  const sent = () => h.downstream.destructiveCalls().length;
  await until(() => sent() >= 4, 'the first deletes');

  const atClose = sent();
  await h.workers.splice(0, 1)[0]!.close();
  // Those in flight when it was asked to stop may still arrive (each lane had one between its
  // check and the downstream); nothing after.
  expect(sent() - atClose).toBeLessThanOrEqual(CONCURRENCY);
  expect(sent()).toBeLessThan(ids.length);

  // The operation still runs, its recorded outcomes are there, and the unsent items wait for a
  // worker, claimed by nobody (not held until a lease ends).
  const rows = await query<{ state: string; claimed_by: string | null; n: number }>(
    h.databaseUrl,
    `SELECT state, claimed_by, count(*)::int AS n FROM operation_items WHERE operation_id = $1 GROUP BY 1, 2`,
    [op.id],
  );
  expect(rows.filter((r) => r.claimed_by !== null)).toEqual([]);
  expect(rows.find((r) => r.state === 'done')?.n).toBe(sent());
  expect(rows.find((r) => r.state === 'pending')?.n).toBe(ids.length - sent());
  expect((await query(h.databaseUrl, 'SELECT state FROM operations WHERE id = $1', [op.id]))[0]).toEqual({
    state: 'running',
  });

  h.downstream.beforeApply(undefined);
  await h.startWorker();
  expect((await waitForState(h, op.id, ['completed', 'halted', 'paused', 'failed'], 45_000)).state).toBe('completed');
  await expectEachAppliedOnce(h.databaseUrl, h.downstream, op.id, ids);
});

it('stops sending restores at once, hands the batch back unspent, and another worker finishes the rollback', async () => {
  const ids = appsOf([0], 20); // the other test's sites are 1 and 2
  const op = await submitAndStart(h, {
    ids,
    rollout: { bakeSeconds: 0, waves: ['100%'], concurrency: CONCURRENCY, restoreDrill: false },
    haltPolicy: { probe: 'optional', onHalt: 'pause' },
  });
  expect((await waitForState(h, op.id, ['completed', 'halted', 'failed'], 45_000)).state).toBe('completed');

  // Slow enough that the 20 restores would take ~3 s at this concurrency.
  h.downstream.beforeApply(async (call) => {
    if (call.action === 'restore') await new Promise((r) => setTimeout(r, 300));
  });
  const rb = await command(h, 'operator', op.id, 'rollback', { reason: 'undo the cleanup' });
  expect(rb.status, JSON.stringify(rb.body)).toBe(200);
  const mine = new Set(ids);
  const restoreCalls = () => ownCalls(h, 'restore').filter((c) => mine.has(c.resourceId!));
  const restores = () => restoreCalls().length;
  await until(() => restores() >= 4, 'the first restores');

  const atClose = restores();
  await h.workers.splice(0, 1)[0]!.close();
  // Those in flight when it was asked to stop may still arrive (each lane had one between its
  // check and the downstream); nothing after.
  expect(restores() - atClose).toBeLessThanOrEqual(CONCURRENCY);
  expect(restores()).toBeLessThan(ids.length);

  // Still rolling back; nothing is held until a lease ends; what was not sent has used no attempt
  // and waits for nothing.
  expect((await query(h.databaseUrl, 'SELECT state FROM operations WHERE id = $1', [op.id]))[0]).toEqual({
    state: 'rolling_back',
  });
  const rows = await query<{
    resource_id: string;
    state: string;
    claimed_by: string | null;
    restore_attempts: number;
    next_attempt_at: Date | null;
  }>(
    h.databaseUrl,
    `SELECT resource_id, state, claimed_by, restore_attempts, next_attempt_at FROM operation_items WHERE operation_id = $1`,
    [op.id],
  );
  expect(rows.filter((r) => r.claimed_by !== null)).toEqual([]);
  const sentTo = new Set(restoreCalls().map((c) => c.resourceId));
  const unsent = rows.filter((r) => !sentTo.has(r.resource_id));
  expect(unsent.length).toBeGreaterThan(0);
  expect(unsent.filter((r) => r.restore_attempts !== 0 || r.next_attempt_at !== null)).toEqual([]);
  expect(rows.filter((r) => r.state === 'restored').length).toBe(sentTo.size);

  h.downstream.beforeApply(undefined);
  await h.startWorker();
  expect((await waitForState(h, op.id, ['rolled_back', 'rollback_incomplete'], 45_000)).state).toBe('rolled_back');
  await expectEverythingTouchedRestored(h, op.id);
  // Each restored once: the calls in flight at the close were recorded, not sent again.
  const perResource = new Map<string, number>();
  for (const c of restoreCalls()) perResource.set(c.resourceId!, (perResource.get(c.resourceId!) ?? 0) + 1);
  expect([...perResource.values()].filter((n) => n !== 1)).toEqual([]);
  expect(perResource.size).toBe(ids.length);
});
