// Request coalescing (lib/coalesce.ts): concurrent callers share a load, and no caller ever gets the
// result of a load that started before it arrived (it could miss a write the caller just made).
import { describe, expect, it } from 'vitest';
import { coalescer } from '../../src/lib/coalesce.ts';

/** A load whose results are released by hand; each records when it started (a version number). */
function manualLoads() {
  let version = 0;
  const pending: { started: number; resolve: (v: number) => void; reject: (e: Error) => void }[] = [];
  const load = (_key: string) =>
    new Promise<number>((resolve, reject) => {
      pending.push({ started: ++version, resolve, reject });
    });
  const settleNext = async (fail = false) => {
    const p = pending.shift()!;
    if (fail) p.reject(new Error(`load ${p.started} failed`));
    else p.resolve(p.started);
    await new Promise((r) => setImmediate(r));
  };
  return { load, pending, settleNext, started: () => version };
}

describe('coalescer', () => {
  it('shares one load among callers that arrive while none is in flight', async () => {
    const m = manualLoads();
    const get = coalescer(m.load);
    const a = get('op_1');
    expect(m.started()).toBe(1);
    await m.settleNext();
    expect(await a).toBe(1);
    // Nothing in flight any more: the next caller starts a new load.
    const b = get('op_1');
    expect(m.started()).toBe(2);
    await m.settleNext();
    expect(await b).toBe(2);
  });

  it('never hands a caller a load that started before it arrived; later arrivals share the next one', async () => {
    const m = manualLoads();
    const get = coalescer(m.load);
    const first = get('op_1'); // starts load 1
    const late = [get('op_1'), get('op_1'), get('op_1')]; // arrive while load 1 is in flight
    expect(m.started()).toBe(1); // they wait; no second query yet
    await m.settleNext(); // load 1 answers `first`, then load 2 starts for the late ones
    expect(await first).toBe(1);
    expect(m.started()).toBe(2);
    const later = get('op_1'); // arrives while load 2 is in flight: must not get load 2
    await m.settleNext();
    expect(await Promise.all(late)).toEqual([2, 2, 2]);
    expect(m.started()).toBe(3);
    await m.settleNext();
    expect(await later).toBe(3);
  });

  it('keeps keys apart and passes a failure to the callers of that load only', async () => {
    const m = manualLoads();
    const get = coalescer(m.load);
    const a = get('op_a');
    const b = get('op_b');
    expect(m.started()).toBe(2);
    const aLate = get('op_a');
    await m.settleNext(true); // op_a's load fails
    await expect(a).rejects.toThrow('load 1 failed');
    await m.settleNext(); // op_b's load
    expect(await b).toBe(2);
    await m.settleNext(); // op_a's next load, for the caller that arrived during the failed one
    expect(await aLate).toBe(3);
  });
});
