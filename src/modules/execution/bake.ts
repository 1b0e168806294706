// Bake probe rounds: probe every tenant touched so far, hand the results to decide(), and while the
// decided state is still baking this wave, schedule the next round. Silence and errors count as
// unhealthy (fail closed); decide() judges whether the bake is over against its own clock.
import type { Queryable } from '../../lib/sql.ts';
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
  /** Tenants with an executed item in the waves up to (not including) seq `toSeq`. */
  touchedTenants(opId: string, toSeq: number): Promise<string[]>;
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
  const ids = await deps.touchedTenants(j.opId, op.wave.toSeq);
  const { adapter, hasProbe } = await deps.adapters.get(op.targetType);
  const timeoutMs = op.lifecycle.haltPolicy.probeTimeoutMs;
  const probes: ProbeOutcome[] = new Array(ids.length);
  let next = 0;
  const lane = async () => {
    for (let k = next++; k < ids.length; k = next++) {
      if (!hasProbe) {
        probes[k] = { tenantId: ids[k]!, result: 'not_configured' };
        continue;
      }
      // The adapter enforces the timeout; this race is the backstop for a probe that never settles.
      let timer: NodeJS.Timeout | undefined;
      const r = await Promise.race([
        adapter.probe(ids[k]!, { timeoutMs }),
        new Promise<{ result: 'timeout'; detail: string }>((res) => {
          timer = setTimeout(() => res({ result: 'timeout', detail: 'no answer' }), timeoutMs + 500);
        }),
      ])
        .catch((e: unknown) => ({ result: 'error' as const, detail: String(e) }))
        .finally(() => clearTimeout(timer));
      probes[k] = { tenantId: ids[k]!, result: r.result, ...(r.detail ? { detail: r.detail } : {}) };
    }
  };
  await Promise.all(Array.from({ length: Math.min(PROBE_CONCURRENCY, ids.length) }, lane));
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
