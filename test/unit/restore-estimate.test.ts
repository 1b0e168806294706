// The estimate's arithmetic: per-type time summed, rounded up, measured only when all of it is.
import { describe, expect, it } from 'vitest';
import { estimateRestore, restoreBreach } from '../../src/modules/operations/restore-estimate.ts';

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
