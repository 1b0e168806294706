// A purge's parents and the children they wait for (execution/purge-children.ts): who is handed
// back, who fails, and how long a chunk waits before it looks again.
import { describe, expect, it } from 'vitest';
import {
  awaitChildren,
  childrenFirst,
  childrenWaitMs,
  type OutstandingChild,
} from '../../src/modules/execution/purge-children.ts';
import type { ClaimedItem } from '../../src/modules/execution/ledger.ts';

const item = (seq: number, resourceId: string, executedSeq: number | null = null) =>
  ({
    seq,
    resourceId,
    tenantId: 't',
    type: null,
    snapshotId: null,
    executedSeq,
    attempts: 1,
  }) as unknown as ClaimedItem;

/** A chunk of: task_9 (its own), proj_1 (waits for task_0, in another chunk), org_1 (proj_1's parent), org_2. */
const chunk = [item(10, 'task_9'), item(11, 'proj_1'), item(12, 'org_1'), item(13, 'org_2')];
const parents = new Map([
  ['task_9', 'proj_1'],
  ['proj_1', 'org_1'],
]);
const deps = (out: Map<string, OutstandingChild>) => ({
  childrenOutstanding: async () => out,
  parentsOf: async (ids: string[]) => new Map(ids.filter((i) => parents.has(i)).map((i) => [i, parents.get(i)!])),
});

describe('awaitChildren', () => {
  it('hands back a parent whose child is still to run, and its parents in the chunk with it, up the chain', async () => {
    const r = await awaitChildren(
      deps(new Map([['proj_1', { child: 'task_0', failed: null }]])),
      'op',
      0,
      chunk,
      chunk,
    );
    expect(r.waiting.map((o) => o.seq).sort()).toEqual([11, 12]);
    expect(r.waiting.every((o) => o.state === 'pending')).toBe(true);
    // Each says what it waits for: the proj its task, the org its proj.
    expect(r.waiting.map((o) => o.error)).toEqual([
      'not sent yet: this purge waits for the outcome of its child task_0 first',
      'not sent yet: this purge waits for the outcome of its child proj_1 first',
    ]);
    expect(r.held).toEqual([]);
    expect(r.part.map((i) => i.resourceId)).toEqual(['task_9', 'org_2']);
  });

  it('fails a parent whose child will not be purged, naming it; its own parents are left to holdParents', async () => {
    const r = await awaitChildren(
      deps(new Map([['proj_1', { child: 'task_0', failed: 'its item failed' }]])),
      'op',
      0,
      chunk,
      chunk,
    );
    expect(r.held).toEqual([expect.objectContaining({ seq: 11, state: 'failed', permanent: true, unapplied: true })]);
    expect(r.held[0]!.error).toContain('its child task_0 was not purged by this purge (its item failed)');
    expect(r.waiting).toEqual([]);
    expect(r.part.map((i) => i.resourceId)).toEqual(['task_9', 'org_1', 'org_2']);
  });

  it('sends an item an earlier run may have sent as it is (again, with its key)', async () => {
    const sent = [item(11, 'proj_1', 42)];
    const r = await awaitChildren(deps(new Map([['proj_1', { child: 'task_0', failed: null }]])), 'op', 0, sent, sent);
    expect(r.part).toEqual(sent);
  });
});

describe('childrenWaitMs', () => {
  it('waits 0.5 s, doubling with each wait in a row, up to 4 s', () => {
    expect([0, 1, 2, 3, 4, 10].map((w) => childrenWaitMs(w))).toEqual([500, 1_000, 2_000, 4_000, 4_000, 4_000]);
    expect(childrenWaitMs()).toBe(500);
  });
});

describe('childrenFirst', () => {
  const names = (rounds: ClaimedItem[][]) => rounds.map((r) => r.map((i) => i.resourceId));
  const items = (...ids: string[]) => ids.map((id, k) => item(k, id));

  it.each([
    ['no family within the items: one round, as given', [['f_b', 'site_0']], ['f_a', 'f_b'], [['f_a', 'f_b']]],
    [
      'a chain listed parents first: deepest first, one level a round',
      [
        ['f_b', 'f_a'],
        ['f_c', 'f_b'],
      ],
      ['f_a', 'f_b', 'f_c', 'f_d'],
      [['f_c', 'f_d'], ['f_b'], ['f_a']],
    ],
    [
      'two children of one parent go together, before it',
      [
        ['f_b', 'f_a'],
        ['f_c', 'f_a'],
      ],
      ['f_a', 'f_b', 'f_c'],
      [['f_b', 'f_c'], ['f_a']],
    ],
    [
      'a parent waits for its deepest child, not its nearest',
      [
        ['f_b', 'f_a'],
        ['f_c', 'f_a'],
        ['f_d', 'f_c'],
      ],
      ['f_a', 'f_b', 'f_c', 'f_d'],
      [['f_b', 'f_d'], ['f_c'], ['f_a']],
    ],
    [
      'a loop of parents (no import makes one) goes last, whole',
      [
        ['f_a', 'f_b'],
        ['f_b', 'f_a'],
      ],
      ['f_a', 'f_b', 'f_c'],
      [['f_c'], ['f_a', 'f_b']],
    ],
  ] as [string, [string, string][], string[], string[][]][])('%s', async (_, links, ids, want) => {
    const rounds = childrenFirst(items(...ids), new Map(links));
    expect(names(rounds)).toEqual(want);
    // Every item goes exactly once.
    expect(rounds.flat().length).toBe(ids.length);
  });
});
