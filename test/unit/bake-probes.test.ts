// A bake round's probes: an adapter that probes many tenants at once (the registry) is asked once
// per round with all of its tenants, one that does not is asked per tenant; each outcome lands on
// its own tenant, in the round's order, and one that never answers is a timeout (fail closed).
import { describe, expect, it } from 'vitest';
import type { ProbeResult, TargetAdapter } from '../../src/modules/adapters/types.ts';
import { processBake, type BakeDeps } from '../../src/modules/execution/bake.ts';
import type { ProbeOutcome } from '../../src/modules/operations/lifecycle.ts';

const op = {
  id: 'op_1',
  targetType: 'site',
  lifecycle: { state: 'baking', currentWave: 1, haltPolicy: { probeTimeoutMs: 50 } },
  wave: { toSeq: 10 },
};

function round(adapters: Record<string, Partial<TargetAdapter>>, touched: { tenantId: string; type: string | null }[]) {
  let sent: ProbeOutcome[] | undefined;
  const deps = {
    load: async () => op,
    touchedTenants: async () => touched,
    adapters: { get: async (t: string) => ({ adapter: adapters[t] as TargetAdapter, hasProbe: true }) },
    engine: {
      apply: async (_id: string, e: { probes: ProbeOutcome[] }) => {
        sent = e.probes;
        return undefined;
      },
    },
    enqueueControl: async () => undefined,
    clock: () => 0,
  } as unknown as BakeDeps;
  return processBake(deps, { kind: 'bake', opId: 'op_1', epoch: 1, wave: 1, round: 0 }).then(() => sent);
}

describe('bake probe round', () => {
  it('asks a many-tenant adapter once, a one-tenant adapter per tenant, and keeps each outcome on its tenant', async () => {
    const many: string[][] = [];
    const one: string[] = [];
    const sent = await round(
      {
        site: {
          probe: async () => ({ result: 'healthy' }),
          probeMany: async (ids: string[]) => {
            many.push(ids);
            return ids.map((id): ProbeResult =>
              id === 't2' ? { result: 'error', detail: 'gone' } : { result: 'healthy' },
            );
          },
        },
        app: {
          probe: async (id: string) => {
            one.push(id);
            return { result: 'unhealthy', detail: `app of ${id}` };
          },
        },
      },
      [
        { tenantId: 't3', type: null },
        { tenantId: 't1', type: null },
        { tenantId: 't2', type: null },
        { tenantId: 't1', type: 'app' },
      ],
    );
    expect(many).toEqual([['t1', 't2', 't3']]);
    expect(one).toEqual(['t1']);
    expect(sent).toEqual([
      { tenantId: 't1', result: 'healthy' },
      { tenantId: 't1', type: 'app', result: 'unhealthy', detail: 'app of t1' },
      { tenantId: 't2', result: 'error', detail: 'gone' },
      { tenantId: 't3', result: 'healthy' },
    ]);
  });

  it('a many-tenant probe that never answers, or throws, fails every tenant of it', async () => {
    const never = await round({ site: { probeMany: () => new Promise<ProbeResult[]>(() => undefined) } }, [
      { tenantId: 't1', type: null },
      { tenantId: 't2', type: null },
    ]);
    expect(never).toEqual([
      { tenantId: 't1', result: 'timeout', detail: 'no answer' },
      { tenantId: 't2', result: 'timeout', detail: 'no answer' },
    ]);
    const thrown = await round({ site: { probeMany: async () => Promise.reject(new Error('boom')) } }, [
      { tenantId: 't1', type: null },
    ]);
    expect(thrown).toEqual([{ tenantId: 't1', result: 'error', detail: 'Error: boom' }]);
  });
});
