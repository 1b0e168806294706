// When a rollback looks again at items a delete chunk still holds (rollback.ts recheckMs): soon
// after the claim was taken (the chunk usually records within a few calls), later the longer it
// has been held (likely a dead worker's: each look scans the ledger), never after the claim's lease
// ends or a failed restore's retry is due.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { recheckMs } from '../../src/modules/execution/rollback.ts';

const LEASE = 90_000;

describe('recheckMs', () => {
  it.each([
    { what: 'a claim taken just now', due: LEASE, want: 250 },
    { what: 'a claim held 10 s', due: LEASE - 10_000, want: 5_000 },
    { what: 'a claim held 80 s: its lease ends first', due: 10_000, want: 10_000 },
    { what: 'a restore retry due in 2 s', due: 2_000, want: 2_000 },
    { what: 'something due at once', due: 0, want: 50 },
  ])('$what → $want ms', ({ due, want }) => {
    expect(recheckMs(due, LEASE)).toBe(want);
  });

  it('a claim held to its lease end (a dead worker) costs ~15 looks over a 90 s lease, not one per second', () => {
    let held = 0;
    let looks = 0;
    while (held < LEASE && looks < 1_000) {
      held += recheckMs(LEASE - held, LEASE);
      looks++;
    }
    expect(held).toBe(LEASE);
    expect(looks).toBeLessThanOrEqual(16);
  });

  it('never waits past what is due, nor less than 50 ms (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: -1_000, max: 200_000 }), fc.integer({ min: 1_000, max: 200_000 }), (due, lease) => {
        const ms = recheckMs(due, lease);
        expect(ms).toBeGreaterThanOrEqual(50);
        expect(ms).toBeLessThanOrEqual(Math.max(50, due));
      }),
    );
  });
});
