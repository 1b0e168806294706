// Wave schedule: pure. Tenant-aligned (a tenant's items never straddle two waves, so one wave's
// damage is one set of customers), internal tenants first, then canary steps over the rest.
export interface TenantLoad {
  tenantId: string;
  items: number;
  internal: boolean;
}

export interface WavePlan {
  index: number;
  kind: 'internal' | 'canary';
  /** The step this wave reaches ("1", "10%"); null for the internal wave. */
  step: string | null;
  tenants: number;
  items: number;
  /** External tenants reached by the end of this wave. */
  cumulativeTenants: number;
  /** The wave's items are the ledger rows fromSeq ≤ seq < toSeq. */
  fromSeq: number;
  toSeq: number;
}

export interface Schedule {
  waves: WavePlan[];
  /** tenantId → wave index. */
  waveOf: Map<string, number>;
}

/** Cumulative external tenants a step reaches, out of `total`. */
export function stepTarget(step: string, total: number): number {
  const n = step.endsWith('%') ? Math.ceil((total * Number(step.slice(0, -1))) / 100) : Number(step);
  return Math.min(total, Math.max(1, n));
}

/**
 * Internal tenants form wave 0 (when there are any). External tenants go smallest first, so that
 * the first canary wave risks the least data; ties by tenant id keep the plan deterministic.
 * Empty steps are dropped and the last wave always reaches every tenant.
 */
export function scheduleWaves(tenants: TenantLoad[], steps: readonly string[]): Schedule {
  const waves: WavePlan[] = [];
  const waveOf = new Map<string, number>();
  const internal = tenants.filter((t) => t.internal).sort(byId);
  const external = tenants.filter((t) => !t.internal).sort((a, b) => a.items - b.items || byId(a, b));

  if (internal.length) {
    waves.push({
      index: 0,
      kind: 'internal',
      step: null,
      tenants: internal.length,
      items: sum(internal),
      cumulativeTenants: 0,
      fromSeq: 0,
      toSeq: sum(internal),
    });
    for (const t of internal) waveOf.set(t.tenantId, 0);
  }
  let reached = 0;
  for (let s = 0; s < steps.length && reached < external.length; s++) {
    const last = s === steps.length - 1;
    const target = last ? external.length : stepTarget(steps[s]!, external.length);
    if (target <= reached) continue;
    const slice = external.slice(reached, target);
    const index = waves.length;
    for (const t of slice) waveOf.set(t.tenantId, index);
    const fromSeq = waves.length ? waves[waves.length - 1]!.toSeq : 0;
    waves.push({
      index,
      kind: 'canary',
      step: last ? '100%' : steps[s]!,
      tenants: slice.length,
      items: sum(slice),
      cumulativeTenants: target,
      fromSeq,
      toSeq: fromSeq + sum(slice),
    });
    reached = target;
  }
  return { waves, waveOf };
}

const byId = (a: TenantLoad, b: TenantLoad) => (a.tenantId < b.tenantId ? -1 : a.tenantId > b.tenantId ? 1 : 0);
const sum = (ts: TenantLoad[]) => ts.reduce((n, t) => n + t.items, 0);
