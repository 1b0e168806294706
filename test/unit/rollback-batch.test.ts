// One rollback batch against typed fakes (no database, no downstream): a snapshot that fails
// verification never reaches an adapter; a registry-like adapter gets a parent with its
// descendants in one call, an HTTP-like one gets the parent, then each descendant through its own
// type's adapter, shallowest first; the descendants of a parent that did not come back fail with it.
import { describe, expect, it } from 'vitest';
import { SKIPPED, type AdapterItem, type ItemResult, type TargetAdapter } from '../../src/modules/adapters/types.ts';
import { RESTORE_NOT_SENT, restoreBatch, saysUncertain } from '../../src/modules/execution/rollback-batch.ts';
import type { RestoreCandidate } from '../../src/modules/execution/rollback-ledger.ts';
import type { SnapshotRead } from '../../src/modules/snapshots/store.ts';

type Call = { type: string; ids: string[]; descendants: string[][] };

function fakeAdapter(
  type: string,
  cascade: TargetAdapter['cascade'],
  calls: Call[],
  fail = new Set<string>(),
  skip = new Set<string>(),
) {
  const adapter: TargetAdapter = {
    kind: cascade === 'same_transaction' ? 'registry' : 'http',
    cascade,
    system: cascade === 'same_transaction' ? 'registry' : 'http://apps.internal',
    snapshot: async () => [],
    probe: async () => ({ result: 'healthy' }),
    async apply(_action, items: AdapterItem[], opts) {
      calls.push({
        type,
        ids: items.map((i) => i.resourceId),
        descendants: items.map((i) => (i.descendants ?? []).map((d) => d.resourceId)),
      });
      return items.map((i): ItemResult => {
        if (opts.snapshots?.get(i.resourceId) === undefined) throw new Error(`no snapshot data for ${i.resourceId}`);
        // The run stopped before this one's call (the adapters' shouldContinue said no).
        if (skip.has(i.resourceId)) return SKIPPED;
        if (fail.has(i.resourceId)) return { ok: false, permanent: true, error: `cannot restore ${i.resourceId}` };
        return cascade === 'same_transaction' && i.descendants?.length
          ? {
              ok: true,
              descendants: i.descendants.map((d): ItemResult =>
                fail.has(d.resourceId) ? { ok: false, permanent: true, error: 'purged' } : { ok: true },
              ),
            }
          : { ok: true };
      });
    },
  };
  return adapter;
}

const row = (seq: number, resourceId: string, o: Partial<RestoreCandidate> = {}): RestoreCandidate => ({
  seq,
  resourceId,
  tenantId: 't1',
  state: 'restoring',
  executedSeq: 100 - seq,
  parentSeq: null,
  depth: 0,
  type: null,
  snapshotId: seq,
  ...o,
});

function run(
  cascade: TargetAdapter['cascade'],
  rows: RestoreCandidate[],
  o: { corrupt?: number[]; fail?: string[]; skip?: string[]; appCascade?: TargetAdapter['cascade'] } = {},
) {
  const calls: Call[] = [];
  const fail = new Set(o.fail ?? []);
  const skip = new Set(o.skip ?? []);
  const adapters = {
    site: fakeAdapter('site', cascade, calls, fail, skip),
    app: fakeAdapter('app', o.appCascade ?? cascade, calls, fail, skip),
  };
  return restoreBatch(
    {
      opId: 'op_1',
      targetType: 'site',
      concurrency: 4,
      adapters: { get: async (type: string) => ({ adapter: adapters[type as 'site' | 'app'], hasProbe: true }) },
      readSnapshots: async (ids) =>
        new Map(
          ids.map((id): [number, SnapshotRead] => [
            id,
            o.corrupt?.includes(id)
              ? { ok: false, reason: 'snapshot_corrupt', detail: `snapshot ${id} failed verification` }
              : { ok: true, data: { id } },
          ]),
        ),
      shouldContinue: () => true,
    },
    rows,
  ).then((results) => ({ results, calls }));
}

const siteWithApps = [
  row(0, 'site_a'),
  row(3, 'app_a1', { parentSeq: 0, depth: 1, type: 'app' }),
  row(4, 'widget_a', { parentSeq: 0, depth: 2, type: 'app' }),
  row(5, 'app_a2', { parentSeq: 0, depth: 1, type: 'app' }),
];

describe('restoreBatch', () => {
  it('same_transaction: the parent and its descendants in one call', async () => {
    const { results, calls } = await run('same_transaction', siteWithApps, { fail: ['app_a2'] });
    expect(calls).toEqual([{ type: 'site', ids: ['site_a'], descendants: [['app_a1', 'app_a2', 'widget_a']] }]);
    expect(Object.fromEntries(results.map((r) => [r.seq, r.ok]))).toEqual({ 0: true, 3: true, 4: true, 5: false });
  });

  it('downstream: the parent first, then each descendant through its own type, shallowest first', async () => {
    const { results, calls } = await run('downstream', siteWithApps);
    expect(calls).toEqual([
      { type: 'site', ids: ['site_a'], descendants: [[]] },
      { type: 'app', ids: ['app_a1', 'app_a2'], descendants: [[], []] },
      { type: 'app', ids: ['widget_a'], descendants: [[]] },
    ]);
    expect(results.every((r) => r.ok)).toBe(true);
  });

  it('same_transaction parent, descendants of another adapter: each through its own, after the parent', async () => {
    // A registry site whose apps live in another system: the registry statement cannot bring them back.
    const { results, calls } = await run('same_transaction', siteWithApps, { appCascade: 'downstream' });
    expect(calls).toEqual([
      { type: 'site', ids: ['site_a'], descendants: [[]] },
      { type: 'app', ids: ['app_a1', 'app_a2'], descendants: [[], []] },
      { type: 'app', ids: ['widget_a'], descendants: [[]] },
    ]);
    expect(results.every((r) => r.ok)).toBe(true);
  });

  it('never hands a snapshot that failed verification to an adapter; what its parent took fails with it', async () => {
    for (const cascade of ['same_transaction', 'downstream'] as const) {
      const { results, calls } = await run(
        cascade,
        [...siteWithApps, row(1, 'site_b'), row(6, 'app_b1', { parentSeq: 1, depth: 1, type: 'app' })],
        {
          corrupt: [0, 6],
        },
      );
      const bySeq = new Map(results.map((r) => [r.seq, r]));
      expect(bySeq.get(0)).toMatchObject({
        ok: false,
        permanent: true,
        error: 'snapshot_corrupt: snapshot 0 failed verification',
      });
      for (const s of [3, 4, 5])
        expect(bySeq.get(s)).toMatchObject({
          ok: false,
          permanent: true,
          error: expect.stringContaining('snapshot_corrupt'),
        });
      expect(bySeq.get(6)).toMatchObject({ ok: false, error: expect.stringMatching(/^snapshot_corrupt/) });
      expect(bySeq.get(1)).toMatchObject({ ok: true });
      const sent = calls.flatMap((c) => [...c.ids, ...c.descendants.flat()]);
      for (const id of ['site_a', 'app_a1', 'app_a2', 'widget_a', 'app_b1']) expect(sent).not.toContain(id);
    }
  });

  it('a parent that does not come back keeps its descendants from being sent', async () => {
    const { results, calls } = await run('downstream', siteWithApps, { fail: ['site_a'] });
    expect(calls.map((c) => c.type)).toEqual(['site']);
    expect(results.find((r) => r.seq === 3)).toMatchObject({
      ok: false,
      permanent: true,
      error: 'not restored: site_a was not (cannot restore site_a)',
    });
  });
  it('a restore the run never sent says so, counts no attempt, and neither do the descendants under it', async () => {
    // A shutdown mid-rollback: the adapter stops before site_a's call. The item said "halted" and
    // its descendants "not restored: site_a was not (halted)", counting an attempt each.
    const { results } = await run('downstream', [...siteWithApps, row(1, 'site_b')], { skip: ['site_a'] });
    const bySeq = new Map(results.map((r) => [r.seq, r]));
    for (const s of [0, 3, 4, 5])
      expect(bySeq.get(s)).toEqual({ seq: s, ok: false, permanent: false, error: RESTORE_NOT_SENT, skipped: true });
    expect(bySeq.get(1)).toMatchObject({ ok: true });
  });
});

describe("saysUncertain: a rollback's failed restore, as its item keeps it", () => {
  const base = { seq: 1, ok: false, permanent: false } as const;
  it.each([
    ['sent, answered 503', { ...base, error: 'HTTP 503 (after 3 restore requests)', attempts: 3 }, 'did not succeed'],
    [
      'sent, then the run stopped between retries',
      { ...base, error: 'stopped before retry; last attempt: timeout', attempts: 1, interrupted: true as const },
      'the rollback stopped before its answer',
    ],
  ])('%s: outcome unknown, it may be live again', (_name, r, how) => {
    const out = saysUncertain(r);
    expect(out.error).toBe(
      `outcome unknown: its restore went out and ${how} (${r.error}); it may have been applied, so the resource may be live again: a rollback sends it again to settle it`,
    );
    expect({ ...out, error: r.error }).toEqual(r);
  });
  it.each([
    ['restored', { seq: 1, ok: true, error: null, permanent: false }],
    [
      'refused, nothing applied',
      { ...base, permanent: true, unapplied: true as const, error: 'HTTP 422', attempts: 1 },
    ],
    ['never sent', { ...base, error: RESTORE_NOT_SENT, skipped: true as const }],
    ['not tried: its parent did not come back', { ...base, error: 'not restored: site_1 was not (HTTP 500)' }],
  ])('%s: keeps its own words', (_name, r) => {
    expect(saysUncertain(r)).toBe(r);
  });
});
