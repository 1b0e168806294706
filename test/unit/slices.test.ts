// inSlices (lib/slices.ts): a chunk's CPU work in slices with a turn of the event loop between
// them, so that responses to the calls in flight are not held for the whole of it; results keep
// input order whatever the slicing.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { inSlices } from '../../src/lib/slices.ts';

describe('inSlices', () => {
  it('lets waiting callbacks run between slices, not only after the last', async () => {
    const seen: string[] = [];
    setImmediate(() => seen.push('waiting callback'));
    const items = Array.from({ length: 200 }, (_, k) => k);
    await inSlices(
      items,
      (slice, offset) => {
        seen.push(`slice at ${offset}`);
        return [...slice];
      },
      64,
    );
    expect(seen).toEqual(['slice at 0', 'waiting callback', 'slice at 64', 'slice at 128', 'slice at 192']);
  });

  it('returns one result per item in input order, with each slice given its offset (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer(), { maxLength: 300 }),
        fc.integer({ min: 1, max: 70 }),
        async (xs, size) => {
          const out = await inSlices(xs, (slice, offset) => slice.map((x, k) => [offset + k, x] as const), size);
          expect(out).toEqual(xs.map((x, k) => [k, x]));
        },
      ),
      { numRuns: 100 },
    );
  });
});
