// The registry import's loop finding (registry/import.ts parentLoops): among links from one start (a
// row whose parent link the import changes) to the next start up its chain, every start on a loop is
// reported with the loop from it; starts that lead into a loop or to a top are not.
import { describe, expect, it } from 'vitest';
import { parentLoops } from '../../src/modules/registry/import.ts';

const links = (l: [string, string, string[]][]) => new Map(l.map(([s, reached, path]) => [s, { reached, path }]));

describe('parentLoops', () => {
  it.each([
    ['no loop: a chain of starts to a top', [['a', 'b', ['a']]], {}],
    [
      'a loop of two starts, each reported from itself',
      [
        ['a', 'b', ['a']],
        ['b', 'a', ['b']],
      ],
      {
        a: 'a → b → a',
        b: 'b → a → b',
      },
    ],
    ['a start back to itself through unchanged rows', [['t', 't', ['t', 'low', 'mid']]], { t: 't → low → mid → t' }],
    [
      'a start leading into a loop is not on it',
      [
        ['x', 'a', ['x']],
        ['a', 'b', ['a']],
        ['b', 'a', ['b']],
      ],
      {
        a: 'a → b → a',
        b: 'b → a → b',
      },
    ],
  ] as [string, [string, string, string[]][], Record<string, string>][])('%s', (_, l, want) => {
    expect(Object.fromEntries(parentLoops(links(l)))).toEqual(want);
  });

  it('handles a loop of 100,000 starts', () => {
    const n = 100_000;
    const l = links(Array.from({ length: n }, (_, k) => [`s${k}`, `s${(k + 1) % n}`, [`s${k}`]]));
    expect(parentLoops(l).size).toBe(n);
  });
});
