// Wave schedule: pure. Tenant-aligned (a tenant's items never straddle two waves, so one wave's
// damage is one set of customers), internal tenants first, then canary steps over the rest.
export interface TenantLoad {
  tenantId: string;
  /** Submitted items: the tenant's ledger seqs. */
  items: number;
  internal: boolean;
  /** Descendants its items' cascades take with them (not in any seq range); 0 without a cascade. */
  descendants?: number;
}

export interface WavePlan {
  index: number;
  kind: 'internal' | 'canary';
  /** The step this wave reaches ("1", "10%"); null for the internal wave. */
  step: string | null;
  tenants: number;
  /** Everything the wave deletes: its submitted items and the descendants their cascades take. */
  items: number;
  /** Of `items`, the descendants (they follow their parent; the seq range holds the parents). */
  descendants: number;
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
 * Internal tenants form wave 0 (when there are any). External tenants go smallest first (counting
 * what their cascades take), so that the first canary wave risks the least data; ties by tenant id
 * keep the plan deterministic. Empty steps are dropped and the last wave always reaches every tenant.
 */
export function scheduleWaves(tenants: TenantLoad[], steps: readonly string[]): Schedule {
  const waves: WavePlan[] = [];
  const waveOf = new Map<string, number>();
  const internal = tenants.filter((t) => t.internal).sort(byId);
  const external = tenants.filter((t) => !t.internal).sort((a, b) => weight(a) - weight(b) || byId(a, b));

  if (internal.length) {
    waves.push({
      index: 0,
      kind: 'internal',
      step: null,
      tenants: internal.length,
      items: total(internal),
      descendants: total(internal) - sum(internal),
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
      items: total(slice),
      descendants: total(slice) - sum(slice),
      cumulativeTenants: target,
      fromSeq,
      toSeq: fromSeq + sum(slice),
    });
    reached = target;
  }
  return { waves, waveOf };
}

const byId = (a: TenantLoad, b: TenantLoad) => (a.tenantId < b.tenantId ? -1 : a.tenantId > b.tenantId ? 1 : 0);
const weight = (t: TenantLoad) => t.items + (t.descendants ?? 0);
/** Submitted items: the length of the seq range. */
const sum = (ts: TenantLoad[]) => ts.reduce((n, t) => n + t.items, 0);
/** Everything deleted, descendants included. */
const total = (ts: TenantLoad[]) => ts.reduce((n, t) => n + weight(t), 0);
