// The read memo: one computation per key and ttl, a new one when the key changes or the ttl ends,
// none kept after a failure, and never more than `max` keys.
import { describe, expect, it } from 'vitest';
import { memo } from '../../src/lib/memo.ts';

describe('memo', () => {
  it('computes once per key within the ttl, again after it or for another key', async () => {
    let now = 0;
    let calls = 0;
    const m = memo<number>({ ttlMs: 5_000, max: 10, clock: () => now });
    const compute = async () => ++calls;
    expect(await Promise.all([m.get('a', compute), m.get('a', compute)])).toEqual([1, 1]);
    now = 4_999;
    expect(await m.get('a', compute)).toBe(1);
    expect(await m.get('b', compute)).toBe(2);
    now = 5_000;
    expect(await m.get('a', compute)).toBe(3);
  });

  it('keeps no failure, and holds at most max keys', async () => {
    let calls = 0;
    const m = memo<number>({ ttlMs: 60_000, max: 2, clock: () => 0 });
    await expect(m.get('x', async () => Promise.reject(new Error('db down')))).rejects.toThrow('db down');
    expect(await m.get('x', async () => ++calls)).toBe(1);
    await m.get('y', async () => ++calls);
    await m.get('z', async () => ++calls); // x, the oldest, goes
    expect(await m.get('x', async () => ++calls)).toBe(4);
  });

  it('keeps a value that took long to compute for costFactor times its time, at least the ttl', async () => {
    let now = 0;
    let calls = 0;
    const m = memo<number>({ ttlMs: 1_000, max: 10, clock: () => now, costFactor: 4 });
    const slow = async () => {
      now += 500; // the computation takes 500 ms
      return ++calls;
    };
    expect(await m.get('a', slow)).toBe(1);
    now = 1_999; // within 4 × 500 ms of its start
    expect(await m.get('a', slow)).toBe(1);
    now = 2_000;
    expect(await m.get('a', slow)).toBe(2);
    const quick = async () => ++calls;
    now = 10_000;
    expect(await m.get('b', quick)).toBe(3);
    now = 10_999; // a quick one keeps the ttl
    expect(await m.get('b', quick)).toBe(3);
    now = 11_000;
    expect(await m.get('b', quick)).toBe(4);
  });

  it('with staleMs, serves the last value while one new computation runs, then the new one', async () => {
    let now = 0;
    let calls = 0;
    let release: (() => void) | undefined;
    const m = memo<number>({ ttlMs: 1_000, max: 10, clock: () => now, staleMs: 2_000 });
    const held = () =>
      new Promise<number>((res) => {
        const n = ++calls;
        release = () => res(n);
      });
    const first = m.get('a', held);
    release!();
    expect(await first).toBe(1);
    now = 1_500; // past the ttl: the old value at once, one computation started
    expect(await m.get('a', held)).toBe(1);
    expect(await m.get('a', held)).toBe(1);
    expect(calls).toBe(2);
    release!();
    await Promise.resolve();
    await Promise.resolve();
    expect(await m.get('a', held)).toBe(2);
    // Not read for longer than ttl + staleMs: computed, and waited for.
    now = 10_000;
    const late = m.get('a', held);
    expect(calls).toBe(3);
    release!();
    expect(await late).toBe(3);
  });
});
