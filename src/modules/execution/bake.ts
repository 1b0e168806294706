// Bake probe rounds: probe every tenant touched so far, hand the results to decide(), and while the
// decided state is still baking this wave, schedule the next round. Silence and errors count as
// unhealthy (fail closed); decide() judges whether the bake is over against its own clock.
import type { Queryable } from '../../lib/sql.ts';
import type { ProbeResult, TargetAdapter } from '../adapters/types.ts';
import type { ProbeOutcome } from '../operations/lifecycle.ts';
import type { AdapterCache } from './adapters-cache.ts';
import type { Engine } from './engine.ts';
import type { ControlJob } from './queues.ts';
import type { OperationRecord } from './state.ts';

/** Time between probe rounds during a bake. */
export const PROBE_INTERVAL_MS = 5_000;
const PROBE_CONCURRENCY = 16;
const SYSTEM = { name: 'system' };

export interface BakeDeps<Tx = Queryable> {
  load(opId: string): Promise<OperationRecord | undefined>;
  /** Tenants with an executed item in the waves up to (not including) seq `toSeq`, by the item's type (null: the operation's). */
  touchedTenants(opId: string, toSeq: number): Promise<{ tenantId: string; type: string | null }[]>;
  /** Keeps the round for the live views (events, /ui); decide() reads the round from the event, not from here. */
  recordProbes?(opId: string, wave: number, probes: ProbeOutcome[]): Promise<void>;
  adapters: Pick<AdapterCache, 'get'>;
  engine: Pick<Engine<Tx>, 'apply'>;
  enqueueControl(job: ControlJob, delayMs?: number): Promise<void>;
  clock(): number;
  log?: { warn(obj: object, msg: string): void };
}

export async function processBake<Tx>(deps: BakeDeps<Tx>, j: Extract<ControlJob, { kind: 'bake' }>): Promise<void> {
  const op = await deps.load(j.opId);
  if (!op || op.lifecycle.state !== 'baking' || op.lifecycle.currentWave !== j.wave || !op.wave) return;
  const targets = probeTargets(await deps.touchedTenants(j.opId, op.wave.toSeq), op.targetType);
  // A type whose adapter cannot be built (its declaration broke since the plan) fails its probes:
  // unhealthy, fail closed, rather than a bake job that throws until the watchdog halts.
  const adapters = new Map<string, Awaited<ReturnType<BakeDeps['adapters']['get']>> | { broken: string }>();
  for (const t of new Set(targets.map((x) => x.type)))
    adapters.set(t, await deps.adapters.get(t).catch((e: unknown) => ({ broken: String(e) })));
  const timeoutMs = op.lifecycle.haltPolicy.probeTimeoutMs;
  const probes: ProbeOutcome[] = new Array(targets.length);
  // A descendant's system is named: "tenant_b (unhealthy)" alone would point at the site's.
  const named = (k: number) => {
    const { tenantId, type } = targets[k]!;
    return { tenantId, ...(type === op.targetType ? {} : { type }) };
  };
  const record = (k: number, r: ProbeResult) =>
    (probes[k] = { ...named(k), result: r.result, ...(r.detail ? { detail: r.detail } : {}) });
  // The adapter enforces the timeout; this race is the backstop for a probe that never settles.
  const bounded = <T>(p: Promise<T>, late: T) => {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([p, new Promise<T>((res) => (timer = setTimeout(() => res(late), timeoutMs + 500)))]).finally(
      () => clearTimeout(timer),
    );
  };
  const LATE: ProbeResult = { result: 'timeout', detail: 'no answer' };
  const failed = (e: unknown): ProbeResult => ({ result: 'error', detail: String(e) });
  const one: number[] = [];
  const many = new Map<string, number[]>();
  targets.forEach(({ type }, k) => {
    const a = adapters.get(type)!;
    if ('broken' in a) probes[k] = { ...named(k), result: 'error', detail: a.broken };
    else if (!a.hasProbe) probes[k] = { ...named(k), result: 'not_configured' };
    else if (a.adapter.probeMany) {
      const ks = many.get(type);
      if (ks) ks.push(k);
      else many.set(type, [k]);
    } else one.push(k);
  });
  // An adapter that probes many tenants at once gets one call per round (the registry: one query).
  const batches = [...many].map(async ([type, ks]) => {
    const { adapter } = adapters.get(type) as { adapter: TargetAdapter };
    const all = ks.map(() => LATE);
    const rs = await bounded(
      adapter.probeMany!(
        ks.map((k) => targets[k]!.tenantId),
        { timeoutMs },
      ),
      all,
    ).catch((e: unknown) => ks.map(() => failed(e)));
    ks.forEach((k, i) => record(k, rs[i] ?? LATE));
  });
  let next = 0;
  const lane = async () => {
    for (let i = next++; i < one.length; i = next++) {
      const k = one[i]!;
      const { adapter } = adapters.get(targets[k]!.type) as { adapter: TargetAdapter };
      record(k, await bounded(adapter.probe(targets[k]!.tenantId, { timeoutMs }), LATE).catch(failed));
    }
  };
  await Promise.all([...batches, ...Array.from({ length: Math.min(PROBE_CONCURRENCY, one.length) }, lane)]);
  // For people watching only: a round that cannot be recorded must not stop the bake it judges.
  await deps
    .recordProbes?.(j.opId, j.wave, probes)
    .catch((e: unknown) => deps.log?.warn({ err: e }, 'probe round not recorded'));
  const applied = await deps.engine.apply(j.opId, { type: 'probes', wave: j.wave, probes }, SYSTEM, { report: true });
  // The state decide() left (no second read): still baking this wave → the next round.
  const s = applied?.state;
  if (s?.state === 'baking' && s.currentWave === j.wave) {
    const n = nextBakeRound(s.bakeUntil, s.rollout.bakeSeconds, deps.clock(), j.round);
    await deps.enqueueControl({ ...j, epoch: applied!.version, round: n.round }, n.delayMs);
  }
}

/**
 * One probe per tenant and system its items touched: the operation's own type for every tenant,
 * and each descendant type (a cascade through another adapter) for the tenants it took from. A
 * descendant of the operation's own type needs no second probe. Ordered by tenant, own type first.
 */
export function probeTargets(
  touched: { tenantId: string; type: string | null }[],
  targetType: string,
): { tenantId: string; type: string }[] {
  const seen = new Set<string>();
  const out: { tenantId: string; type: string }[] = [];
  for (const t of touched) {
    const type = t.type ?? targetType;
    const key = `${t.tenantId}\u0000${type}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ tenantId: t.tenantId, type });
  }
  return out.sort(
    (a, b) =>
      (a.tenantId < b.tenantId ? -1 : a.tenantId > b.tenantId ? 1 : 0) ||
      Number(a.type !== targetType) - Number(b.type !== targetType) ||
      (a.type < b.type ? -1 : a.type > b.type ? 1 : 0),
  );
}

/**
 * Probe rounds fall on fixed slots of the bake: every PROBE_INTERVAL_MS from its start, and its
 * end. A round is named by its slot, so a second chain of rounds (the reconciler re-arming a bake
 * whose job it cannot see) gets the job ID of the chain already waiting and merges into it,
 * instead of probing alongside it — one more chain per sweep, for as long as the bake lasts.
 */
export function nextBakeRound(
  bakeUntil: number | null,
  bakeSeconds: number,
  now: number,
  after = -1,
): { round: number; delayMs: number } {
  const end = bakeUntil ?? now;
  const start = end - bakeSeconds * 1000;
  const last = Math.ceil((bakeSeconds * 1000) / PROBE_INTERVAL_MS);
  const round = Math.max(after + 1, Math.min(last, Math.floor((now - start) / PROBE_INTERVAL_MS) + 1));
  return { round, delayMs: Math.max(0, Math.min(start + round * PROBE_INTERVAL_MS, end) - now) };
}
