// The chunk's progress recorder (execution/chunk-progress.ts): what it records while calls are out,
// when, and what it leaves to the chunk's last record.
import { describe, expect, it, vi } from 'vitest';
import type { ItemResult } from '../../src/modules/adapters/index.ts';
import { landedOutcome, nextBatchSize, progressRecorder } from '../../src/modules/execution/chunk-progress.ts';

import type { Outcome } from '../../src/modules/execution/ledger.ts';

const ok: ItemResult = { ok: true };
const failed: ItemResult = { ok: false, permanent: true, error: 'HTTP 404' };
const interrupted: ItemResult = { ok: false, permanent: false, error: 'HTTP 503', interrupted: true };
const skipped: ItemResult = { ok: false, skipped: true, error: 'halted' };
const refused: ItemResult = { ok: false, permanent: true, error: 'HTTP 422', status: 422, unapplied: true };

describe('landedOutcome', () => {
  it.each([
    [ok, { seq: 7, state: 'done', error: null }],
    [failed, { seq: 7, state: 'failed', error: 'HTTP 404', permanent: true }],
    [refused, { seq: 7, state: 'failed', error: 'HTTP 422', permanent: true, unapplied: true }],
    [interrupted, null],
    [skipped, null],
  ] as const)('%j → %j', (r, want) => {
    expect(landedOutcome(7, r)).toEqual(want);
  });
});

describe('progressRecorder', () => {
  it('records what landed once the interval is over even when no other call lands (the last one hangs)', async () => {
    vi.useFakeTimers();
    try {
      const batches: number[][] = [];
      const rec = progressRecorder(
        async (b) => {
          batches.push(b.map((o) => o.seq));
        },
        2_000,
        () => Date.now(),
      );
      rec.arrive({ seq: 0 }, ok);
      await vi.advanceTimersByTimeAsync(500);
      rec.arrive({ seq: 1 }, failed);
      await vi.advanceTimersByTimeAsync(1_400);
      expect(batches).toEqual([]);
      await vi.advanceTimersByTimeAsync(200);
      expect(batches).toEqual([[0, 1]]);
      // Once the chunk settles, nothing more is recorded behind its own record.
      rec.arrive({ seq: 2 }, ok);
      expect([...(await rec.settle())]).toEqual([0, 1]);
      await vi.advanceTimersByTimeAsync(5_000);
      expect(batches).toEqual([[0, 1]]);
    } finally {
      vi.useRealTimers();
    }
  });

  function harness(fail = false) {
    let now = 0;
    const batches: Outcome[][] = [];
    const rec = progressRecorder(
      async (b) => {
        batches.push(b);
        if (fail) throw new Error('connection lost');
      },
      2_000,
      () => now,
    );
    return { rec, batches, tick: (ms: number) => (now += ms) };
  }

  it('records nothing within the interval, then what has landed, once per interval', async () => {
    const { rec, batches, tick } = harness();
    rec.arrive({ seq: 0 }, ok);
    tick(1_999);
    rec.arrive({ seq: 1 }, failed);
    expect(batches).toEqual([]);
    tick(1);
    rec.arrive({ seq: 2 }, ok);
    expect(batches.map((b) => b.map((o) => o.seq))).toEqual([[0, 1, 2]]);
    await Promise.resolve();
    rec.arrive({ seq: 3 }, ok); // the interval starts again when a record ends
    expect(batches).toHaveLength(1);
    expect([...(await rec.settle())]).toEqual([0, 1, 2]);
  });

  it('never records an outcome that is not final (interrupted, never sent)', async () => {
    const { rec, batches, tick } = harness();
    tick(5_000);
    rec.arrive({ seq: 0 }, interrupted);
    rec.arrive({ seq: 1 }, skipped);
    expect(batches).toEqual([]);
    expect((await rec.settle()).size).toBe(0);
  });

  it('records each descendant’s own outcome when it differs from its parent’s (a cascade across systems)', async () => {
    const { rec, batches, tick } = harness();
    tick(2_000);
    // An HTTP site refused after its registry app went: the app is done, though the site failed.
    const siteRefused: ItemResult = {
      ok: false,
      permanent: true,
      error: 'HTTP 403',
      descendants: [{ ok: true }, { ok: false, permanent: true, error: 'not deleted: HTTP 403', unapplied: true }],
    };
    rec.arrive({ seq: 4, descendants: [{ seq: 5 }, { seq: 6 }] }, siteRefused);
    expect(batches).toEqual([
      [
        {
          seq: 4,
          state: 'failed',
          error: 'HTTP 403',
          permanent: true,
          descendants: [
            { seq: 5, state: 'done', error: null },
            { seq: 6, state: 'failed', error: 'not deleted: HTTP 403', permanent: true, unapplied: true },
          ],
        },
      ],
    ]);
  });

  it('leaves a batch whose record failed to the chunk’s last record', async () => {
    const { rec, batches, tick } = harness(true);
    tick(2_000);
    rec.arrive({ seq: 0 }, ok);
    expect(batches).toHaveLength(1);
    expect((await rec.settle()).size).toBe(0);
  });
});

describe('rollback batch size (rollback.ts nextBatchSize)', () => {
  it.each([
    // size, restores called, elapsed ms → next size
    [20, 20, 300, 40], // fast: doubles
    [640, 640, 900, 1_000], // up to 1,000
    [1_000, 1_000, 900, 1_000],
    [20, 20, 1_500, 20], // about right: kept
    [20, 20, 5_000, 8], // slow: what takes ~2 s at this pace
    [20, 20, 60_000, 5], // very slow: at least 5
    [20, 0, 5_000, 20], // nothing called (all decided without a call): kept
  ])('size %i, %i restores in %i ms → %i', (size, sent, ms, next) => {
    expect(nextBatchSize(size, sent, ms)).toBe(next);
  });
});
