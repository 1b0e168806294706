// The rules of the rollout itself: item reports of the running wave, probe rounds of a bake, and
// the clock (wave deadlines, plan expiry, the stall watchdog).
import type { Decision, LifecycleEvent, LifecycleState } from './lifecycle-types.ts';
import {
  afterSettled,
  BAD_PROBE,
  endRollback,
  expired,
  finish,
  halt,
  listTenants,
  ok,
  pauseFor,
  refuse,
  runWave,
  secs,
  SYSTEM,
  unchanged,
  audit,
  validStats,
} from './lifecycle-steps.ts';
import { assessWave } from './wave-health.ts';
import { drillLate, drillGate } from './lifecycle-drill.ts';

/**
 * A wave as people count it, in the reasons an operator reads ("wave 1 of 5" is the canary). The
 * API's `currentWave` and every event's `wave` stay 0-based indexes; the CLI and the live view
 * show waves from 1 too, so a halt reason agrees with the wave they show.
 */
/** How much of an item's error a halt reason quotes. */
const LAST_ERROR_CHARS = 200;

export const waveName = (s: Pick<LifecycleState, 'waveCount'>, index: number) => `wave ${index + 1} of ${s.waveCount}`;

export function waveReport(
  s: LifecycleState,
  e: Extract<LifecycleEvent, { type: 'item_outcomes' | 'wave_settled' }>,
  now: number,
): Decision {
  const problem = validStats(e.stats, e.type === 'wave_settled');
  if (problem) return refuse(422, 'INVALID_EVENT', problem);
  // Reports for another wave, or arriving after the wave left running, are late and harmless.
  const executing = s.state === 'running' || (s.state === 'paused' && s.pausedFrom === 'running');
  if (e.wave !== s.currentWave || !executing) return unchanged(s);
  const verdict = assessWave(e.stats, s.haltPolicy);
  // A pause must not hide damage done by items that were in flight: unhealthy still halts.
  // The last error says why the items failed: "50 consecutive item failures" alone sent a trial to
  // the item ledger to find that the worker lacked the adapter's signing secret.
  const cause = e.lastError ? `; last error: ${e.lastError.slice(0, LAST_ERROR_CHARS)}` : '';
  if (!verdict.healthy) return halt(s, `${waveName(s, e.wave)}: ${verdict.reason}${cause}`, SYSTEM, { stats: e.stats });
  if (e.type === 'item_outcomes' || s.state !== 'running') return unchanged(s);
  return drillGate(s, e.wave, e.stats) ?? afterSettled(s, e.wave, e.stats, now);
}

export function probes(s: LifecycleState, e: Extract<LifecycleEvent, { type: 'probes' }>, now: number): Decision {
  const active = s.state === 'running' || s.state === 'baking' || s.state === 'paused';
  if (e.wave !== s.currentWave || !active) return unchanged(s);
  // Fail closed in every active state: no data, an error or a timeout all count as unhealthy.
  // The round probes the tenants the operation has acted on so far (bake-store.ts touchedTenants):
  // none means no call of it went out or had an effect. Said so: "no probe data" alone sent a probe's
  // operator looking for a broken probe, where the wave's only item had been refused (403).
  if (e.probes.length === 0)
    return halt(
      s,
      `${waveName(s, e.wave)}: no probe data: nothing was sent to any tenant so far, or every call was refused with no effect (each item says why)`,
      SYSTEM,
    );
  const bad = e.probes.filter((p) => BAD_PROBE.includes(p.result));
  if (bad.length > 0)
    return halt(s, `${waveName(s, e.wave)}: unhealthy probes: ${listTenants(bad)}`, SYSTEM, { unhealthy: bad.length });
  if (s.state !== 'baking') return unchanged(s); // only a bake moves the rollout forward
  const missing = e.probes.filter((p) => p.result === 'not_configured');
  if (missing.length > 0 && s.haltPolicy.probe === 'required') {
    // Inconclusive (Argo's term): neither healthy nor failing, so a human decides. The reason says
    // how: a resume alone came back here at once (a new-user trial read it as working).
    const way = 'the halt policy requires a probe: declare one on the type (adapter probe) and resume, or roll back';
    return pauseFor(s, `inconclusive: no health probe for ${listTenants(missing)}; ${way}`, SYSTEM, {
      inconclusive: missing.length,
    });
  }
  if (s.bakeUntil !== null && now < s.bakeUntil) return unchanged(s);
  if (e.wave + 1 >= s.waveCount) return finish(s, 0);
  return runWave(s, e.wave + 1, 'wave_started', SYSTEM, now, { bakedWave: e.wave, probes: e.probes.length });
}

/** The clock: expiry of unstarted plans, wave deadlines, and the stall watchdog. */
export function timer(s: LifecycleState, now: number): Decision {
  const stallMs = s.haltPolicy.stallSeconds * 1000;
  const still = s.progressAt === null ? 0 : now - s.progressAt;
  if (s.state === 'planned' || s.state === 'approved') {
    if (!expired(s, now)) return unchanged(s);
    const next: LifecycleState = {
      ...s,
      state: 'expired',
      haltReason: 'the plan expired before it was started',
      haltCause: null,
    };
    return ok(next, [audit('expired', s, next, SYSTEM, { expiresAt: new Date(s.expiresAt!).toISOString() })]);
  }
  // A freeze whose fan-out did not reach this operation (the API died halfway) is caught here.
  if ((s.state === 'running' || s.state === 'baking') && s.frozen)
    return pauseFor(s, 'global freeze in effect', SYSTEM);
  // A drill that does not answer is a drill that failed: it halts whatever onStall says.
  const late = drillLate(s, now);
  if (late) return late;
  if (s.state === 'running' && s.waveDeadline !== null && now >= s.waveDeadline) {
    return halt(
      s,
      `${waveName(s, s.currentWave ?? 0)} missed its deadline of ${s.rollout.waveDeadlineSeconds}s`,
      SYSTEM,
    );
  }
  // A bake moves on its own probe rounds; it has stalled when it outlives its end by stallSeconds.
  const stalled =
    s.state === 'baking'
      ? s.bakeUntil !== null && now >= s.bakeUntil + stallMs
      : (s.state === 'running' || s.state === 'rolling_back') && s.progressAt !== null && still >= stallMs;
  if (!stalled) return unchanged(s);
  const reason = `stalled: no progress for ${secs(still)} (limit ${s.haltPolicy.stallSeconds}s)`;
  if (s.state === 'rolling_back') return endRollback(s, reason, SYSTEM, { stalled: true });
  if (s.haltPolicy.onStall === 'pause') return pauseFor(s, reason, SYSTEM, { stalled: true });
  return halt(s, reason, SYSTEM, { stalled: true });
}
