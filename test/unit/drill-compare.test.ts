// The restore drill's comparison: canonical JSON equality of the read-back with the pre-delete
// snapshot, leaving out only the fields an adapter declares as its own write time.
import { describe, expect, it } from 'vitest';
import { differingFields } from '../../src/modules/execution/drill.ts';

describe('differingFields', () => {
  const before = { id: 'a', state: 'active', data: { plan: 'pro', seats: 3 }, updatedAt: '2026-01-01T00:00:00Z' };

  it('equal whatever the key order (canonical JSON)', () => {
    const after = { updatedAt: '2026-01-01T00:00:00Z', data: { seats: 3, plan: 'pro' }, state: 'active', id: 'a' };
    expect(differingFields(before, after, [])).toBeNull();
  });

  it("leaves out the adapter's volatile fields, and only those", () => {
    const after = { ...before, updatedAt: '2026-11-30T00:00:00Z' };
    expect(differingFields(before, after, ['updatedAt'])).toBeNull();
    expect(differingFields(before, after, [])).toEqual(['updatedAt']);
  });

  it('names the top-level fields that differ, a nested change included', () => {
    const after = { ...before, data: { plan: 'free', seats: 3 }, extra: true };
    expect(differingFields(before, after, ['updatedAt'])).toEqual(['data', 'extra']);
  });

  it('a missing read or a value of another kind differs', () => {
    expect(differingFields(before, null, [])).toEqual([]);
    expect(differingFields('x', 'y', [])).toEqual([]);
    expect(differingFields([1], [1], [])).toBeNull();
  });
});
