// The per-operation budget of calls in flight in one process (call-slots.ts), on its own: never
// more than the capacity at once, first come first served, a slot given back when a call throws,
// one operation's calls never waiting on another's, and the calls of the chunk that came first
// served before a later chunk's (so chunks do not move in lockstep).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { callSlots } from '../../src/modules/execution/call-slots.ts';

const tick = () => new Promise((r) => setImmediate(r));

function gate() {
  let open!: () => void;
  const p = new Promise<void>((r) => (open = r));
  return { p, open };
}

describe('callSlots', () => {
  it('holds calls beyond the capacity until one ends, then lets them in in arrival order', async () => {
    const s = callSlots();
    const gates = Array.from({ length: 5 }, gate);
    const started: number[] = [];
    const runs = gates.map((g, k) =>
      s.run('op', 2, async () => {
        started.push(k);
        await g.p;
        return k;
      }),
    );
    await tick();
    expect(started).toEqual([0, 1]);
    expect(s.inFlight('op')).toEqual({ active: 2, waiting: 3 });
    gates[1]!.open();
    await tick();
    expect(started).toEqual([0, 1, 2]);
    gates[0]!.open();
    await tick();
    expect(started).toEqual([0, 1, 2, 3]);
    gates.forEach((g) => g.open());
    expect(await Promise.all(runs)).toEqual([0, 1, 2, 3, 4]);
    expect(s.inFlight('op')).toEqual({ active: 0, waiting: 0 });
  });

  it("serves the waiting calls of the chunk that came first before a later chunk's, whatever their arrival", async () => {
    // Two chunks of one operation queue their calls interleaved behind one slot. Served in arrival
    // order, both finish only at the very end (lockstep: then both snapshot and record at once
    // while no call goes out); served by chunk, the first finishes after its own calls.
    const s = callSlots();
    const first = s.rank();
    const second = s.rank();
    const hold = gate();
    const order: string[] = [];
    const blocker = s.run('op', 1, () => hold.p, first);
    const runs: Promise<unknown>[] = [];
    for (let k = 0; k < 3; k++) {
      runs.push(s.run('op', 1, async () => order.push(`b${k}`), second));
      runs.push(s.run('op', 1, async () => order.push(`a${k}`), first));
    }
    await tick();
    expect(s.inFlight('op')).toEqual({ active: 1, waiting: 6 });
    hold.open();
    await blocker;
    await Promise.all(runs);
    expect(order).toEqual(['a0', 'a1', 'a2', 'b0', 'b1', 'b2']);
  });

  it('gives the slot back when the call throws', async () => {
    const s = callSlots();
    await expect(s.run('op', 1, () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await s.run('op', 1, async () => 'next')).toBe('next');
    expect(s.inFlight('op')).toEqual({ active: 0, waiting: 0 });
  });

  it('keeps operations apart: one at its capacity does not hold another', async () => {
    const s = callSlots();
    const g = gate();
    const a = s.run('a', 1, () => g.p);
    expect(await s.run('b', 1, async () => 'b ran')).toBe('b ran');
    expect(s.inFlight('a')).toEqual({ active: 1, waiting: 0 });
    g.open();
    await a;
  });

  it('treats a capacity below 1 as 1 (a call always goes out eventually)', async () => {
    const s = callSlots();
    expect(await s.run('op', 0, async () => 1)).toBe(1);
  });

  it('never has more than the capacity in flight, whatever the timings (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 6 }),
        fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 40 }),
        async (capacity, delays) => {
          const s = callSlots();
          let active = 0;
          let peak = 0;
          await Promise.all(
            delays.map((d) =>
              s.run('op', capacity, async () => {
                peak = Math.max(peak, ++active);
                for (let k = 0; k < d; k++) await tick();
                active--;
              }),
            ),
          );
          expect(peak).toBeLessThanOrEqual(capacity);
          expect(peak).toBe(Math.min(capacity, delays.length));
          expect(s.inFlight('op')).toEqual({ active: 0, waiting: 0 });
        },
      ),
      { numRuns: 50 },
    );
  });
});
