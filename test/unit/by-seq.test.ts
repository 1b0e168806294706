// seqLayout (lib/sql.ts): a ledger UPDATE reads each row's value at `i.seq - from + 1` instead of
// scanning the seq list (array_position). Every seq must find its own value there, whatever the
// order and gaps of the seqs, and a seq not in the list must find null.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { seqLayout } from '../../src/lib/sql.ts';

/** One list of values laid out by seq, as a ledger UPDATE sends it. */
function bySeq<T>(seqs: number[], values: T[]) {
  const layout = seqLayout(seqs);
  return { from: layout.from, values: layout.lay(values) };
}

describe('seqLayout', () => {
  it('puts each value at its seq (1-based from the smallest seq, as SQL arrays index) and null in the gaps', () => {
    const { from, values } = bySeq([12, 10, 15], ['c', 'a', 'f']);
    expect(from).toBe(10);
    expect(values).toEqual(['a', null, 'c', null, null, 'f']);
    expect(bySeq([], [])).toEqual({ from: 0, values: [] });
  });

  it('finds every seq its own value, for any set of distinct seqs in any order', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 5_000 }), { minLength: 1, maxLength: 300 }), (seqs) => {
        const values = seqs.map((s) => `v${s}`);
        const laid = bySeq(seqs, values);
        const listed = new Set(seqs);
        for (const s of seqs) expect(laid.values[s - laid.from]).toBe(`v${s}`);
        // What SQL reads at i.seq - from + 1 for a seq in the range but not in the list: null.
        for (let s = laid.from; s < laid.from + laid.values.length; s++)
          if (!listed.has(s)) expect(laid.values[s - laid.from]).toBeNull();
        expect(laid.from).toBe(Math.min(...seqs));
        expect(laid.values.length).toBe(Math.max(...seqs) - laid.from + 1);
      }),
    );
  });
});
