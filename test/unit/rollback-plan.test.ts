// rollbackOrder: only what this operation may have touched, newest first, input untouched.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { rollbackOrder, type RollbackCandidate } from '../../src/modules/operations/rollback-plan.ts';

const STATES = ['pending', 'claimed', 'done', 'failed', 'restoring', 'restored', 'restore_failed'];
const itemArb: fc.Arbitrary<RollbackCandidate> = fc.record({
  resourceId: fc.constantFrom('r1', 'r2', 'r3', 'r4', 'r5'),
  state: fc.constantFrom(...STATES),
  executedSeq: fc.oneof(fc.constant(null), fc.nat(20), fc.bigInt({ min: 0n, max: 20n })),
});

describe('rollbackOrder', () => {
  it('restores newest first and skips items never executed or already restored', () => {
    const items = [
      { resourceId: 'a', state: 'done', executedSeq: 1 },
      { resourceId: 'b', state: 'pending', executedSeq: null },
      { resourceId: 'c', state: 'failed', executedSeq: 3 },
      { resourceId: 'd', state: 'claimed', executedSeq: 2 }, // worker died mid-call: may be deleted
      { resourceId: 'e', state: 'restored', executedSeq: 4 },
      { resourceId: 'f', state: 'restore_failed', executedSeq: 5 },
    ];
    expect(rollbackOrder(items).map((i) => i.resourceId)).toEqual(['f', 'c', 'd', 'a']);
  });

  it('accepts bigint sequence numbers (BIGINT column) and breaks ties by resourceId', () => {
    const items = [
      { resourceId: 'y', state: 'done', executedSeq: 7n },
      { resourceId: 'x', state: 'done', executedSeq: 7n },
      { resourceId: 'z', state: 'done', executedSeq: 9_007_199_254_740_993n },
    ];
    expect(rollbackOrder(items).map((i) => i.resourceId)).toEqual(['z', 'x', 'y']);
  });

  it('never includes an unexecuted or restored item, is sorted newest first, keeps every eligible item, leaves input alone', () => {
    fc.assert(
      fc.property(fc.array(itemArb, { maxLength: 30 }), (items) => {
        const before = structuredClone(items);
        const out = rollbackOrder(items);
        expect(items).toEqual(before);
        expect(out.every((i) => i.executedSeq !== null && i.state !== 'restored')).toBe(true);
        for (let k = 1; k < out.length; k++) expect(out[k - 1]!.executedSeq! >= out[k]!.executedSeq!).toBe(true);
        expect(out.length).toBe(items.filter((i) => i.executedSeq !== null && i.state !== 'restored').length);
        expect(out.every((i) => items.includes(i))).toBe(true); // the same objects, nothing invented
      }),
      { numRuns: 500 },
    );
  });

  it('puts each descendant right after its parent, shallowest first; one whose parent is not there goes by its own order', () => {
    const items = [
      { seq: 0, resourceId: 'site_a', state: 'done', executedSeq: 10 },
      { seq: 1, resourceId: 'site_b', state: 'done', executedSeq: 20 },
      { seq: 2, resourceId: 'app_a1', state: 'done', executedSeq: 11, parentSeq: 0, depth: 1 },
      { seq: 3, resourceId: 'widget_a', state: 'done', executedSeq: 12, parentSeq: 0, depth: 2 },
      { seq: 4, resourceId: 'app_a2', state: 'done', executedSeq: 13, parentSeq: 0, depth: 1 },
      { seq: 5, resourceId: 'app_b1', state: 'done', executedSeq: 21, parentSeq: 1, depth: 1 },
      // Its parent came back earlier (not in this batch): it goes by its own executedSeq.
      { seq: 6, resourceId: 'app_c1', state: 'restore_failed', executedSeq: 15, parentSeq: 9, depth: 1 },
    ];
    expect(rollbackOrder(items).map((i) => i.resourceId)).toEqual([
      'site_b',
      'app_b1',
      'app_c1',
      'site_a',
      'app_a2',
      'app_a1',
      'widget_a',
    ]);
  });
});
