// The per-call protection look of an HTTP delete (protection-recheck.ts): calls share one registry
// query while it is fresh, ask again once it is RECHECK_MS old (only for items not sent yet), and an
// item protected since — or whose unguarded descendant is — fails for good without being sent. With
// a way to ask whether protection changed since a look, a look reads the rows again only when it did.
import { describe, expect, it } from 'vitest';
import type { AdapterItem, ItemResult, TargetAdapter } from '../../src/modules/adapters/index.ts';
import {
  FULL_LOOK_MAX_MS,
  RECHECK_MS,
  recheckingProtection,
  type ProtectionChecks,
} from '../../src/modules/execution/protection-recheck.ts';

const item = (id: string, kids: string[] = []): AdapterItem => ({
  operationId: 'op_1',
  resourceId: id,
  tenantId: 't_1',
  type: 'site',
  ...(kids.length
    ? { descendants: kids.map((k) => ({ operationId: 'op_1', resourceId: k, tenantId: 't_1', type: 'app' })) }
    : {}),
});

function world(protectedIds: Set<string>, opts: { changes?: boolean; first?: boolean } = {}) {
  let now = 1_000;
  // Each full look sees the change counter as it is; changedSince compares with it.
  let changes = 0;
  const asked: string[][] = [];
  const compared: string[] = [];
  const sent: string[] = [];
  const inner = {
    kind: 'http',
    async apply(_action: string, batch: AdapterItem[]): Promise<ItemResult[]> {
      sent.push(...batch.map((i) => i.resourceId));
      return batch.map(() => ({ ok: true }));
    },
  } as unknown as TargetAdapter;
  const items = [item('s_1', ['a_1']), item('s_2'), item('s_3')];
  const refusals = (ids: string[]) =>
    new Map(ids.filter((id) => protectedIds.has(id)).map((id) => [id, `${id} is protected now`]));
  const checks: ProtectionChecks = {
    look: async (ids) => {
      asked.push(ids);
      return { refusals: refusals(ids), seen: String(changes) };
    },
    ...(opts.changes
      ? {
          changedSince: async (seen: string) => {
            compared.push(seen);
            return Number(seen) !== changes;
          },
        }
      : {}),
    ...(opts.first
      ? { first: { at: now, look: { refusals: refusals(['s_1', 'a_1', 's_2', 's_3']), seen: '0' } } }
      : {}),
  };
  const adapter = recheckingProtection(
    inner,
    items,
    (i) => i.descendants ?? [],
    checks,
    () => now,
  );
  const callOpts = { idempotencyKey: () => 'k', concurrency: 1, shouldContinue: () => true };
  const call = (i: AdapterItem) => adapter.apply('softDelete', [i], callOpts).then((r) => r[0]!);
  /** A statement that may change protection commits (and marks `id`, if given). */
  const change = (id?: string) => {
    changes++;
    if (id) protectedIds.add(id);
  };
  return { items, asked, compared, sent, call, change, tick: (ms: number) => (now += ms) };
}

describe('recheckingProtection', () => {
  it('shares one query while it is fresh, then asks again for what is not sent yet', async () => {
    const w = world(new Set());
    const [a, b] = await Promise.all([w.call(w.items[0]!), w.call(w.items[1]!)]);
    expect([a.ok, b.ok]).toEqual([true, true]);
    expect(w.asked).toEqual([['s_1', 'a_1', 's_2', 's_3']]);
    w.tick(RECHECK_MS);
    await w.call(w.items[2]!);
    expect(w.asked[1]).toEqual(['s_3']);
    expect(w.sent).toEqual(['s_1', 's_2', 's_3']);
  });

  it('refuses, unsent and unapplied, an item protected since, or one whose descendant is', async () => {
    const marks = new Set<string>();
    const w = world(marks);
    expect((await w.call(w.items[1]!)).ok).toBe(true);
    marks.add('a_1');
    marks.add('s_3');
    w.tick(RECHECK_MS);
    const [viaChild, own] = await Promise.all([w.call(w.items[0]!), w.call(w.items[2]!)]);
    expect(viaChild).toMatchObject({ ok: false, permanent: true, unapplied: true });
    expect((viaChild as { error: string }).error).toContain('a_1');
    expect(own).toEqual({ ok: false, permanent: true, unapplied: true, error: 's_3 is protected now' });
    expect(w.sent).toEqual(['s_2']);
  });

  it("with the chunk's own look, asks only whether protection changed since, and reads the rows only when it did", async () => {
    const w = world(new Set(), { changes: true, first: true });
    expect((await w.call(w.items[0]!)).ok).toBe(true);
    expect(w.asked).toEqual([]);
    expect(w.compared).toEqual([]);
    w.tick(RECHECK_MS);
    expect((await w.call(w.items[1]!)).ok).toBe(true);
    expect(w.compared).toEqual(['0']);
    expect(w.asked).toEqual([]);
    w.change('s_3');
    w.tick(RECHECK_MS);
    expect(await w.call(w.items[2]!)).toMatchObject({ ok: false, unapplied: true, error: 's_3 is protected now' });
    expect(w.compared).toEqual(['0', '0']);
    expect(w.asked).toEqual([['s_3']]);
    expect(w.sent).toEqual(['s_1', 's_2']);
  });

  it('compares with the last full look, and reads the rows again once that look is too old to compare with', async () => {
    const w = world(new Set(), { changes: true, first: true });
    w.change();
    w.tick(RECHECK_MS);
    await w.call(w.items[0]!);
    expect(w.asked).toHaveLength(1);
    w.tick(RECHECK_MS);
    await w.call(w.items[1]!);
    expect(w.compared).toEqual(['0', '1']);
    expect(w.asked).toHaveLength(1);
    w.tick(FULL_LOOK_MAX_MS);
    await w.call(w.items[2]!);
    expect(w.compared).toEqual(['0', '1']);
    expect(w.asked).toEqual([['s_1', 'a_1', 's_2', 's_3'], ['s_3']]);
  });
});
