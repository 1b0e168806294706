// What the API's count of connected workers says when Redis is reachable, gone or hung
// (execution/worker-presence.ts). A Redis frozen with its connection open (SIGSTOP, a partition)
// made each view wait for the count's 5 s timeout and then say nothing (`waiting: null`) while
// nothing moved (a probe): a count out for HUNG_AFTER_MS, or one that timed out, is "hung since".
import { describe, expect, it } from 'vitest';
import { workerPresence } from '../../src/modules/execution/worker-presence.ts';
import { waitingOf } from '../../src/modules/operations/waiting.ts';

const HUNG_AFTER = 30;

/** A queue whose counts are answered by hand: each call waits for settle(). */
function handQueue() {
  const calls: { resolve: (n: number) => void; reject: (e: Error) => void }[] = [];
  return {
    calls,
    getWorkersCount: () => new Promise<number>((resolve, reject) => calls.push({ resolve, reject })),
  };
}

describe('workerPresence', () => {
  it('a count that answers at once: workers seen, not hung', async () => {
    const p = workerPresence({ getWorkersCount: async () => 2 }, { everyMs: 0, hungAfterMs: HUNG_AFTER });
    expect(await p.noneSince()).toBeNull();
    expect(p.hungSince()).toBeNull();
  });

  it('a count that never answers: the view waits HUNG_AFTER at most, then Redis is hung since it went out', async () => {
    const q = handQueue();
    const p = workerPresence(q, { everyMs: 0, hungAfterMs: HUNG_AFTER });
    const sent = Date.now();
    expect(await p.noneSince()).toBeNull();
    expect(q.calls).toHaveLength(1);
    const hung = p.hungSince();
    expect(hung).not.toBeNull();
    expect(Math.abs(hung!.getTime() - sent)).toBeLessThan(HUNG_AFTER);
    // A second view does not send a second count while the first is out, and says the same.
    await p.noneSince();
    expect(q.calls).toHaveLength(1);
    expect(p.hungSince()).toEqual(hung);
    // It times out (ioredis's commandTimeout): still hung, since the same moment, through the next count.
    q.calls[0]!.reject(new Error('Command timed out'));
    await new Promise((r) => setTimeout(r, 0));
    expect(p.hungSince()).toEqual(hung);
    await p.noneSince();
    expect(q.calls).toHaveLength(2);
    expect(p.hungSince()).toEqual(hung);
    // One that answers ends it.
    q.calls[1]!.resolve(1);
    await new Promise((r) => setTimeout(r, 0));
    expect(p.hungSince()).toBeNull();
  });

  it('a count refused for another reason (connection lost, CLIENT LIST forbidden) is unknown, not hung', async () => {
    const p = workerPresence(
      {
        getWorkersCount: async () => {
          throw new Error('Connection is closed.');
        },
      },
      { everyMs: 0, hungAfterMs: HUNG_AFTER },
    );
    expect(await p.noneSince()).toBeNull();
    expect(p.hungSince()).toBeNull();
  });

  it('no worker connected: since the first count that found none', async () => {
    let t = 1_000;
    const p = workerPresence({ getWorkersCount: async () => 0 }, { everyMs: 0, hungAfterMs: HUNG_AFTER, now: () => t });
    expect((await p.noneSince())?.getTime()).toBe(1_000);
    t = 5_000;
    expect((await p.noneSince())?.getTime()).toBe(1_000);
  });
});

describe('waitingOf a hung Redis', () => {
  it('says the queue does not answer, not that it cannot be reached', () => {
    const since = new Date('2026-12-01T12:00:00.000Z');
    const hung = waitingOf({ state: 'running' }, { queueDownSince: since, queueHung: true, noWorkersSince: null });
    expect(hung).toMatchObject({ on: 'redis', since: since.toISOString() });
    expect(hung?.detail).toMatch(/does not answer, though its connection is open/);
    const lost = waitingOf({ state: 'running' }, { queueDownSince: since, noWorkersSince: null });
    expect(lost?.detail).toMatch(/cannot be reached/);
  });
});
