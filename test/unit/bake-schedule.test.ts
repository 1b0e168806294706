// Probe rounds of a bake fall on fixed slots (start, every 5 s, end), named by slot, so that any
// second chain of rounds merges into the first by job ID instead of probing alongside it.
import { describe, expect, it } from 'vitest';
import { nextBakeRound } from '../../src/modules/execution/bake.ts';

const T0 = Date.parse('2026-11-24T12:00:00Z');
const until = (s: number) => T0 + s * 1000;

describe('nextBakeRound', () => {
  it('schedules every 5 s from the start of the bake, then its end', () => {
    // A 12 s bake started at T0: slots at 0, 5, 10 and 12 s.
    expect(nextBakeRound(until(12), 12, T0 + 10, 0)).toEqual({ round: 1, delayMs: 4_990 });
    expect(nextBakeRound(until(12), 12, T0 + 5_003, 1)).toEqual({ round: 2, delayMs: 4_997 });
    expect(nextBakeRound(until(12), 12, T0 + 10_002, 2)).toEqual({ round: 3, delayMs: 1_998 });
  });

  it('gives a chain started late (the reconciler) the slot the first chain already waits for', () => {
    // The first chain ran round 1 at 5 s and waits for round 2 at 10 s; a sweep at 7.3 s joins it.
    expect(nextBakeRound(until(12), 12, T0 + 7_300)).toEqual({ round: 2, delayMs: 2_700 });
    expect(nextBakeRound(until(12), 12, T0 + 7_300, 1)).toEqual({ round: 2, delayMs: 2_700 });
  });

  it('moves past the last slot when that round ran early, and runs at once once the bake is over', () => {
    expect(nextBakeRound(until(12), 12, T0 + 11_990, 3)).toEqual({ round: 4, delayMs: 10 });
    expect(nextBakeRound(until(12), 12, T0 + 30_000)).toEqual({ round: 3, delayMs: 0 });
    expect(nextBakeRound(until(0), 0, T0 + 1)).toEqual({ round: 0, delayMs: 0 });
  });
});
