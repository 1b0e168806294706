// The estimate's arithmetic: per-type time summed, rounded up, measured only when all of it is.
import { describe, expect, it } from 'vitest';
import { estimateRestore, measuredRate, restoreBreach } from '../../src/modules/operations/restore-estimate.ts';

describe('estimateRestore', () => {
  it('sums each type over its own rate and rounds the time up', () => {
    const e = estimateRestore([
      { type: 'site', items: 3, itemsPerSecond: 500, basis: 'measured' },
      { type: 'app', items: 41, itemsPerSecond: 20, basis: 'measured' },
    ]);
    // 0.006 s + 2.05 s
    expect(e).toMatchObject({ seconds: 3, items: 44, basis: 'measured', itemsPerSecond: 21.4 });
  });

  it('is measured only when every type with items was measured', () => {
    const measuredApp = { type: 'app', items: 10, itemsPerSecond: 100, basis: 'measured' } as const;
    expect(
      estimateRestore([{ type: 'site', items: 1, itemsPerSecond: 500, basis: 'default' }, measuredApp]).basis,
    ).toBe('default');
    // A type with nothing to restore does not make the estimate a default one.
    expect(
      estimateRestore([measuredApp, { type: 'page', items: 0, itemsPerSecond: 20, basis: 'default' }]),
    ).toMatchObject({ basis: 'measured', seconds: 1, itemsPerSecond: 100 });
  });

  it('breaches the budget only beyond it', () => {
    const at = estimateRestore([{ type: 'app', items: 1200, itemsPerSecond: 20, basis: 'default' }]);
    expect(at.seconds).toBe(60);
    expect(restoreBreach(at, 1)).toBeNull();
    const over = estimateRestore([{ type: 'app', items: 1201, itemsPerSecond: 20, basis: 'default' }]);
    expect(restoreBreach(over, 1)).toBe(
      'an estimated 2 minutes to restore 1201 items (20 items/s, default) exceeds the budget of 1 minutes',
    );
  });
});

describe('measuredRate', () => {
  it("a handful of items restored in one batch's fixed cost leaves the estimate near the adapter's default", () => {
    // A first trial rollback: 2 registry items in 40 ms (the batch's overhead, not its speed). Taken
    // as measured, 50 items/s made a 100,000-item plan estimate 33 minutes instead of 3.
    expect(measuredRate(2, 40, 500)).toBeGreaterThan(400);
    expect(measuredRate(2, 40, 500)).toBeLessThan(500);
  });

  it('real volume decides: thousands restored at 50/s read as ~50/s, and fast ones as fast', () => {
    expect(measuredRate(10_000, 200_000, 500)).toBeCloseTo(50, 0);
    expect(measuredRate(10_000, 2_000, 20)).toBeGreaterThan(1_000);
  });
});
