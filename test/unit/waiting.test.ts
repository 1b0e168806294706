// Why a running operation does not move, as its view says it (operations/waiting.ts waitingOf): the
// queue lost, no worker, a rollback asleep until its failed restores are retried, or no item outcome
// for STILL_AFTER_MS — in that order, and never for a state that does not move through the queue or
// an operation a velocity cap holds back.
import { describe, expect, it } from 'vitest';
import {
  BAKE_LATE_MS,
  NO_HOLDS,
  RECONNECT_GRACE_MS,
  STILL_AFTER_MS,
  waitingOf,
  type QueueHolds,
} from '../../src/modules/operations/waiting.ts';

const NOW = Date.parse('2026-12-01T12:00:00.000Z');
const ago = (ms: number) => new Date(NOW - ms);
const still = ago(STILL_AFTER_MS);
const fresh = ago(STILL_AFTER_MS - 1);
const capped = { throttledBy: 'maxItemsPerMinute', throttledUntil: new Date(NOW + 10_000) };
// What the rollback job writes on the operation when it sleeps for its restores' retries (nextWake).
const retrying = (nextRetryAt: number) => ({
  restoreWait: {
    items: 3,
    nextRetryAt: new Date(nextRetryAt).toISOString().replace('Z', '+00:00'),
    since: ago(4_000).toISOString(),
    lastError: 'HTTP 503 Service Unavailable (after 4 attempts)',
  },
});

describe('waitingOf', () => {
  const rows: [string, string, Partial<QueueHolds>, object, string | null][] = [
    ['no outcome for 30 s', 'running', { lastProgressAt: still }, {}, 'progress'],
    ['an outcome 29.999 s ago', 'running', { lastProgressAt: fresh }, {}, null],
    ['a rollback without outcomes', 'rolling_back', { lastProgressAt: still }, {}, 'progress'],
    ['a bake is not a wait for outcomes', 'baking', { lastProgressAt: ago(600_000) }, {}, null],
    // A trial: after PostgreSQL returned, an operation read `baking` with its bakeUntil 15 s past
    // and nothing else while its bake job waited out its retry backoff.
    ['a bake past its end by less than the grace', 'baking', {}, { bakeUntil: ago(BAKE_LATE_MS - 1) }, null],
    ['a bake past its end by the grace', 'baking', {}, { bakeUntil: ago(BAKE_LATE_MS) }, 'bake_end'],
    ['Redis lost says that instead', 'baking', { queueDownSince: ago(5) }, { bakeUntil: ago(60_000) }, 'redis'],
    ['paused: its own reason', 'paused', { lastProgressAt: ago(600_000) }, {}, null],
    ['a velocity cap says why', 'running', { lastProgressAt: still }, capped, null],
    [
      'a cap that has ended does not',
      'running',
      { lastProgressAt: still },
      { ...capped, throttledUntil: ago(1) },
      'progress',
    ],
    ['Redis lost comes first', 'running', { queueDownSince: ago(5), lastProgressAt: still }, {}, 'redis'],
    ['then no worker', 'running', { noWorkersSince: ago(5), lastProgressAt: still }, {}, 'workers'],
    ['no progress time read (a plan answer)', 'running', {}, {}, null],
    [
      'a rollback asleep until its restores are retried',
      'rolling_back',
      { lastProgressAt: still },
      retrying(NOW + 1),
      'restore_retry',
    ],
    // At work once the retry is due: no outcome for 30 s counts from then, not from the failure
    // before the backoff (a trial saw restore_retry turn into "no item outcome recorded since …, a
    // worker that stopped …" the moment the retry went out).
    // Due and out, no answer yet: still said (two trials saw it turn null every few seconds against
    // a downstream that hung, restored 0) until an outcome lands or 30 s pass.
    [
      '… and while the retry is out, not answered yet',
      'rolling_back',
      { lastProgressAt: still },
      retrying(NOW),
      'restore_retry',
    ],
    [
      '… not once an outcome landed after it was due (it moves)',
      'rolling_back',
      { lastProgressAt: ago(1_000) },
      retrying(NOW - 2_000),
      null,
    ],
    [
      '… and no outcome for 30 s after it was due',
      'rolling_back',
      { lastProgressAt: ago(60_000) },
      retrying(NOW - STILL_AFTER_MS),
      'progress',
    ],
    ['Redis lost comes before it', 'rolling_back', { queueDownSince: ago(5) }, retrying(NOW + 1), 'redis'],
    ['an ended rollback waits for nothing', 'rollback_incomplete', {}, retrying(NOW + 1), null],
  ];
  it.each(rows)('%s', (_name, state, holds, fields, on) => {
    const w = waitingOf({ state, ...fields }, { ...NO_HOLDS, ...holds }, NOW);
    expect(w?.on ?? null).toBe(on);
    const due = (fields as { restoreWait?: { nextRetryAt: string } }).restoreWait?.nextRetryAt;
    if (on === 'progress')
      expect(w!.since).toBe(due ? new Date(due).toISOString() : holds.lastProgressAt!.toISOString());
    if (on === 'bake_end') {
      expect(w!.since).toBe((fields as { bakeUntil: Date }).bakeUntil.toISOString());
      expect(w!.detail).toMatch(/retried with backoff/);
    }
  });

  // A restart trial: for ~5 s after Redis came back the view told the operator to start a worker
  // (`npm run worker`) while the workers that were there reconnected on their own.
  it('says the workers are reconnecting while Redis answers again since less than the grace, not to start one', () => {
    const back = waitingOf(
      { state: 'running' },
      { ...NO_HOLDS, noWorkersSince: ago(1_000), queueBackAt: ago(RECONNECT_GRACE_MS - 1) },
      NOW,
    );
    expect(back).toMatchObject({ on: 'workers', since: ago(1_000).toISOString() });
    expect(back!.detail).toContain(`answers again since ${ago(RECONNECT_GRACE_MS - 1).toISOString()}`);
    expect(back!.detail).not.toContain('npm run worker');
    // Past the grace none came back: then it is a missing worker, and says what to do.
    const gone = waitingOf(
      { state: 'running' },
      { ...NO_HOLDS, noWorkersSince: ago(1_000), queueBackAt: ago(RECONNECT_GRACE_MS) },
      NOW,
    );
    expect(gone!.detail).toContain('npm run worker');
  });

  it('says how many restores wait, when the next is due and the last error, with times as ISO', () => {
    const w = waitingOf({ state: 'rolling_back', ...retrying(NOW + 8_000) }, NO_HOLDS, NOW);
    expect(w).toMatchObject({
      on: 'restore_retry',
      since: ago(4_000).toISOString(),
      items: 3,
      nextRetryAt: new Date(NOW + 8_000).toISOString(),
      lastError: 'HTTP 503 Service Unavailable (after 4 attempts)',
    });
    expect(w!.detail).toMatch(/4 to 32 s apart.*after 5 attempts.*endRollback/);
    const out = waitingOf(
      { state: 'rolling_back', ...retrying(NOW - 2_000) },
      { ...NO_HOLDS, lastProgressAt: ago(4_000) },
      NOW,
    );
    expect(out!.detail).toMatch(/^Restores are out now and none has answered since the retry due at \S+ \(/);
  });

  // What nextWake also writes when other runs hold items the rollback must restore (a delete chunk
  // still calling, or a run whose worker died, until its claim lease ends).
  const held = (until: number, notedAt = ago(2_000), retry?: number) => ({
    restoreWait: {
      ...(retry ? retrying(retry).restoreWait : {}),
      held: {
        items: 320,
        since: ago(40_000).toISOString(),
        until: new Date(until).toISOString(),
        notedAt: notedAt.toISOString(),
      },
    },
  });
  it.each([
    ['items held by another run, its lease not ended', held(NOW + 50_000), { lastProgressAt: ago(3_000) }, 'claims'],
    [
      '… before the retries it also waits for (a trial saw "16 wait for retry" while 336 sat still)',
      held(NOW + 50_000, ago(2_000), NOW + 5_000),
      { lastProgressAt: ago(3_000) },
      'claims',
    ],
    ['… not once an outcome was recorded after it was noted', held(NOW + 50_000), { lastProgressAt: ago(1_000) }, null],
    [
      '… then the retries it waits for',
      held(NOW + 50_000, ago(2_000), NOW + 5_000),
      { lastProgressAt: ago(1_000) },
      'restore_retry',
    ],
    ['… not once the lease has ended (the rollback takes them over)', held(NOW), { lastProgressAt: ago(3_000) }, null],
    ['Redis lost comes before it', held(NOW + 50_000), { queueDownSince: ago(5) }, 'redis'],
  ])('%s', (_name, fields, holds, on) => {
    const w = waitingOf({ state: 'rolling_back', ...fields }, { ...NO_HOLDS, ...holds }, NOW);
    expect(w?.on ?? null).toBe(on);
  });

  // A running delete whose worker died: the reconciler notes the stopped run's claims (stopped-holds.ts).
  it.each([
    ['a running delete whose stopped run holds items', 'running', held(NOW + 50_000), 'claims'],
    ['… but not a state that does not move through the queue', 'paused', held(NOW + 50_000), null],
    ['… nor once the lease has ended', 'running', held(NOW), null],
  ])('%s', (_name, state, fields, on) => {
    const w = waitingOf({ state, ...fields }, { ...NO_HOLDS, lastProgressAt: ago(6_000) }, NOW);
    expect(w?.on ?? null).toBe(on);
    // The rollback's retries are no running delete's.
    if (w) expect(w.detail).toMatch(/job lock lapses.*same Idempotency-Key/);
  });

  it('says how many items are held, since when and until when, and the retries besides', () => {
    const w = waitingOf(
      { state: 'rolling_back', ...held(NOW + 50_000, ago(2_000), NOW + 5_000) },
      { ...NO_HOLDS, lastProgressAt: ago(3_000) },
      NOW,
    );
    expect(w).toMatchObject({
      on: 'claims',
      items: 320,
      since: ago(40_000).toISOString(),
      until: new Date(NOW + 50_000).toISOString(),
    });
    expect(w!.detail).toMatch(/claim lease ends.*Besides, 3 failed restores wait for their retry/);
  });
});
