// The sentence a rejection opens with: what is wrong with how many IDs, in words an operator reads
// at a glance, each with the class name the counts and the report use.
import { describe, expect, it } from 'vitest';
import { offenceSummary } from '../../src/modules/operations/submission.ts';
import { ID_CLASSES } from '../../src/modules/operations/planner.ts';
import { PURGE_CLASSES } from '../../src/modules/purges/schemas.ts';
import { RESTORE_CLASSES } from '../../src/modules/restores/schemas.ts';

describe('offenceSummary', () => {
  it.each([
    [{ ok: 3, duplicate: 2 }, '2 IDs submitted more than once (duplicate)'],
    [{ ok: 0, in_flight: 500_000 }, '500,000 IDs held by another live operation (in_flight)'],
    [{ unknown: 1 }, '1 ID not in the registry (unknown)'],
    [
      { ok: 1, unknown: 0, type_mismatch: 1, out_of_scope: 2, protected: 1 },
      "1 ID of another type (type_mismatch), 2 IDs outside the token's scope (out_of_scope), 1 ID of a protected resource (protected)",
    ],
  ])('%j → %s', (counts, expected) => {
    expect(offenceSummary(counts)).toBe(expected);
  });

  it('says something of its own for every class a delete, restore or purge can reject with', () => {
    const classes = new Set([...ID_CLASSES, ...RESTORE_CLASSES, ...PURGE_CLASSES].filter((c) => c !== 'ok'));
    for (const c of classes) {
      const s = offenceSummary({ [c]: 2 });
      expect(s).toMatch(new RegExp(`^2 IDs .+ \\(${c}\\)$`));
      // Not the class name restated with spaces: a phrase of its own.
      expect(s.replace(` (${c})`, '')).not.toBe(`2 IDs ${c.replace(/_/g, ' ')}`);
    }
  });

  it('an unknown class still reads (its name, spaced)', () => {
    expect(offenceSummary({ some_new_class: 3 })).toBe('3 IDs some new class (some_new_class)');
  });
});
