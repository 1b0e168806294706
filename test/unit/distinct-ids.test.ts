// DistinctIds may say "distinct" only when no ID came twice (the plan then skips grouping by ID):
// a duplicate it missed would be planned, locked and deleted as two items.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DistinctIds } from '../../src/modules/operations/distinct-ids.ts';

const ascii = (s: string) => Buffer.from(s, 'latin1');

function read(ids: string[], asBytes: (i: number) => boolean = () => false) {
  const d = new DistinctIds();
  ids.forEach((id, i) =>
    asBytes(i) && /^[\x21-\x7e]*$/.test(id) ? d.addAscii(ascii(id), 0, id.length) : d.addString(id),
  );
  return d.distinct;
}

describe('DistinctIds', () => {
  it('says distinct exactly when no ID repeats, whichever form (bytes or string) each came in', () => {
    // A small alphabet, so that most lists repeat an ID somewhere.
    const id = fc.stringMatching(/^[ab_é1]{0,4}$/);
    fc.assert(
      fc.property(
        fc.array(id, { maxLength: 30 }),
        fc.array(fc.boolean(), { minLength: 30, maxLength: 30 }),
        (ids, bytes) => {
          expect(read(ids, (i) => bytes[i]!)).toBe(new Set(ids).size === ids.length);
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it('finds a repeat of the first or the last of 1,000,000 IDs, across every growth of its table', () => {
    const n = 1_000_000;
    const d = new DistinctIds();
    const buf = Buffer.alloc(16);
    for (let i = 0; i < n; i++) d.addAscii(buf, 0, buf.write(`app_${i}`, 'latin1'));
    expect(d.distinct).toBe(true);
    for (const again of ['app_0', `app_${n - 1}`]) {
      const e = new DistinctIds();
      for (let i = 0; i < n; i++) e.addString(`app_${i}`);
      e.addAscii(ascii(again), 0, again.length);
      expect(e.distinct).toBe(false);
    }
  });

  it('tells apart IDs that differ only in a code unit above 255, or by one in 2^16', () => {
    expect(read(['app_\u0101', 'app_\u0201'])).toBe(true);
    expect(read(['\u{1F600}', '\u{1F601}'])).toBe(true);
    expect(read(['a'.repeat(200), `${'a'.repeat(199)}b`])).toBe(true);
  });

  it('reads every line of a packed batch', () => {
    const d = new DistinctIds();
    d.addPacked(ascii('app_1\napp_2\napp_3\n'));
    expect(d.distinct).toBe(true);
    d.addPacked(ascii('app_4\napp_2\n'));
    expect(d.distinct).toBe(false);
  });
});
