// A delete chunk's look at protection (chunk-guards.ts refuseProtected): the plan's own snapshot
// stands in for it while no statement that may change protection committed since (what the plan saw
// still holds: none of its items protected); after such a change, or without that snapshot (an
// operation planned before it was kept, or planned too long ago), the items' rows are read again.
import { describe, expect, it } from 'vitest';
import type { TargetAdapter } from '../../src/modules/adapters/index.ts';
import { refuseProtected } from '../../src/modules/execution/chunk-guards.ts';
import type { ChunkDeps } from '../../src/modules/execution/chunk.ts';
import type { ClaimedItem } from '../../src/modules/execution/ledger.ts';
import type { OperationRecord } from '../../src/modules/execution/state.ts';

const item = (seq: number): ClaimedItem => ({
  seq,
  resourceId: `app_${seq}`,
  tenantId: 't_1',
  type: null,
  snapshotId: null,
  sourceSnapshotId: null,
  descendants: [],
  executedSeq: null,
  attempts: 0,
  lastError: null,
});
const http = { kind: 'http' } as unknown as TargetAdapter;

function world(changed: boolean, protectedIds: string[]) {
  const looks: string[][] = [];
  const compared: string[] = [];
  const deps = {
    clock: () => 5_000,
    protectedNow: async (ids: string[]) => {
      looks.push(ids);
      const refusals = new Map(ids.filter((id) => protectedIds.includes(id)).map((id) => [id, `${id} is protected`]));
      return { refusals, seen: 'now' };
    },
    protectionChangedSince: async (seen: string) => (compared.push(seen), changed),
  } as unknown as ChunkDeps<unknown>;
  const op = (protectionSeen: string | null) =>
    ({ id: 'op_1', action: 'delete', approvedTenants: [], protectionSeen }) as unknown as OperationRecord;
  const refuse = (protectionSeen: string | null) =>
    refuseProtected(deps, op(protectionSeen), [item(1), item(2)], http, new Map());
  return { looks, compared, refuse };
}

describe('refuseProtected', () => {
  it("reads nothing while protection is unchanged since the plan's snapshot, and hands that snapshot on", async () => {
    const w = world(false, ['app_2']);
    const r = await w.refuse('plan');
    expect(w.compared).toEqual(['plan']);
    expect(w.looks).toEqual([]);
    expect(r.refused).toEqual([]);
    expect(r.first).toEqual({ at: 5_000, look: { refusals: new Map(), seen: 'plan' } });
  });

  it('reads the rows again once protection changed since, and refuses what is protected now', async () => {
    const w = world(true, ['app_2']);
    const r = await w.refuse('plan');
    expect(w.looks).toEqual([['app_1', 'app_2']]);
    expect(r.refused).toEqual([{ seq: 2, state: 'failed', error: 'app_2 is protected', permanent: true }]);
    expect(r.first?.look.seen).toBe('now');
  });

  it('reads the rows without a snapshot of the plan to compare with', async () => {
    const w = world(false, ['app_1']);
    const r = await w.refuse(null);
    expect(w.compared).toEqual([]);
    expect(r.refused.map((f) => f.seq)).toEqual([1]);
  });
});
