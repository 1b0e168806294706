// Why a running operation does not move, as its view says it (operations/views.ts waitingOf): the
// queue lost, no worker, or no item outcome for STILL_AFTER_MS — in that order, and never for a
// state that does not move through the queue or an operation a velocity cap holds back.
import { describe, expect, it } from 'vitest';
import { NO_HOLDS, STILL_AFTER_MS, waitingOf, type QueueHolds } from '../../src/modules/operations/views.ts';

const NOW = Date.parse('2026-12-01T12:00:00.000Z');
const ago = (ms: number) => new Date(NOW - ms);
const still = ago(STILL_AFTER_MS);
const fresh = ago(STILL_AFTER_MS - 1);
const capped = { throttledBy: 'maxItemsPerMinute', throttledUntil: new Date(NOW + 10_000) };

describe('waitingOf', () => {
  const rows: [string, string, Partial<QueueHolds>, object, string | null][] = [
    ['no outcome for 30 s', 'running', { lastProgressAt: still }, {}, 'progress'],
    ['an outcome 29.999 s ago', 'running', { lastProgressAt: fresh }, {}, null],
    ['a rollback without outcomes', 'rolling_back', { lastProgressAt: still }, {}, 'progress'],
    ['a bake is not a wait for outcomes', 'baking', { lastProgressAt: ago(600_000) }, {}, null],
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
  ];
  it.each(rows)('%s', (_name, state, holds, fields, on) => {
    const w = waitingOf({ state, ...fields }, { ...NO_HOLDS, ...holds }, NOW);
    expect(w?.on ?? null).toBe(on);
    if (on === 'progress') expect(w!.since).toBe(holds.lastProgressAt!.toISOString());
  });
});
