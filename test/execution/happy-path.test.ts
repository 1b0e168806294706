// 40 tenants, 2,000 app IDs, bake 0 → completed; the downstream saw exactly one signed soft delete
// per item, each with its own idempotency key.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IDEMPOTENCY_KEY_PATTERN } from '../support/keys.ts';
import {
  buildExecHarness,
  submitAndStart,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { isDrillCall } from '../support/exec-helpers.ts';
import { appId, query, seedRegistry } from '../support/seed.ts';

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 2 });
  await seedRegistry(h.databaseUrl, { sites: 40, appsPerSite: 50, internalTenants: 1 });
  await useHttpAdapter(h);
});
afterAll(async () => {
  await h?.close();
});

describe('canary waves, happy path', () => {
  it('runs every wave to completed with one signed, keyed soft delete per item', async () => {
    const ids = Array.from({ length: 40 }, (_, s) => Array.from({ length: 50 }, (_, j) => appId(s, j))).flat();
    const op = await submitAndStart(h, { ids, rollout: { bakeSeconds: 0 } });
    expect(op.waves.length).toBeGreaterThan(2);
    const done = await waitForState(h, op.id, ['completed', 'halted', 'rolling_back', 'rolled_back', 'paused']);
    expect(done.state, JSON.stringify(done)).toBe('completed');

    // The restore drill restored one item of wave 0 and deleted it again, with keys of its own.
    const drill = h.downstream.destructiveCalls().filter(isDrillCall);
    expect(drill.map((c) => c.action)).toEqual(['restore', 'softDelete']);
    expect(drill[0]!.resourceId).toBe(drill[1]!.resourceId);
    const deletes = h.downstream.destructiveCalls().filter((c) => c.action === 'softDelete' && !isDrillCall(c));
    expect(deletes).toHaveLength(2000);
    expect(new Set(deletes.map((c) => c.resourceId))).toEqual(new Set(ids));
    expect(new Set(deletes.map((c) => c.idempotencyKey)).size).toBe(2000);
    for (const c of deletes) {
      expect(c.signatureValid).toBe(true);
      expect(c.idempotencyKey).toMatch(IDEMPOTENCY_KEY_PATTERN);
    }
    for (const id of ids.slice(0, 10)) expect(h.downstream.state(id)).toBe('soft_deleted');

    // Waves ran in order: every delete of wave n happened before any delete of wave n+1.
    const waveOf = new Map(
      (
        await query<{ resource_id: string; wave: number }>(
          h.databaseUrl,
          'SELECT resource_id, wave FROM operation_items WHERE operation_id = $1',
          [op.id],
        )
      ).map((r) => [r.resource_id, r.wave]),
    );
    let lastWave = 0;
    for (const c of deletes) {
      const w = waveOf.get(c.resourceId!)!;
      expect(w).toBeGreaterThanOrEqual(lastWave);
      lastWave = w;
    }
    // The internal tenant went first.
    const firstTenant = deletes[0]!.tenantId;
    expect(firstTenant).toBe('tenant_00000');

    // Ledger and snapshots: every item done, one immutable snapshot each.
    const ledger = await query<{ state: string; n: number }>(
      h.databaseUrl,
      'SELECT state, count(*)::int AS n FROM operation_items WHERE operation_id = $1 GROUP BY state',
      [op.id],
    );
    expect(ledger).toEqual([{ state: 'done', n: 2000 }]);
    const snaps = await query<{ n: number }>(
      h.databaseUrl,
      'SELECT count(DISTINCT resource_id)::int AS n FROM snapshots WHERE operation_id = $1',
      [op.id],
    );
    expect(snaps[0]!.n).toBe(2000);
    const audit = await query<{ action: string }>(
      h.databaseUrl,
      'SELECT action FROM audit_events WHERE operation_id = $1 ORDER BY seq',
      [op.id],
    );
    expect(audit.map((a) => a.action)).toEqual(
      expect.arrayContaining([
        'operation.planned',
        'operation.approved',
        'operation.wave_settled',
        'operation.completed',
      ]),
    );
  });
});
