// What the event stream reads, all from the database record, so every API replica serves the same
// stream: the operation row with its wave counters and last probe round (one statement), and the
// operation's audit events after a cursor (the audit seq, which is also the stream's event id).
import type { Queryable } from '../../lib/sql.ts';
import { LAST_PROGRESS_SQL, ROLLBACK_STATES } from '../operations/repository.ts';
import { MOVES_JSON_SQL, shownClass, type WaveMove } from '../execution/wave-moves.ts';
import { ENDED_STATES, TERMINAL_STATES, type OpState } from '../operations/lifecycle-types.ts';
import { refusalOf } from '../operations/views.ts';
import { NO_HOLDS, throttleOf, waitingOf, type QueueHolds } from '../operations/waiting.ts';

export interface WaveProgress {
  wave: number;
  /** Submitted items of the wave (its ledger seq range): what done, failed and pending count. */
  items: number;
  /**
   * Descendants the wave's cascades take (the plan's `waves[].descendants`): deleted with their
   * parents, in the same call or just before it, and not counted in items. Without them a site
   * delete planned as "wave 2: 8 items" (2 sites, 6 apps) streamed as "2/2".
   */
  descendants: number;
  done: number;
  failed: number;
  pending: number;
  /** Items of the wave that a rollback restored. */
  restored: number;
  /** Items of the wave whose restore failed (ledger state restore_failed): a rollback could not bring them back. */
  restoreFailed: number;
  /**
   * Items of the wave a running rollback is restoring (a restore out, or one it will try again):
   * the live view drew them as done, or not at all when their delete's outcome was unknown (trial M).
   */
  restoring: number;
  startedAt: string | null;
  settledAt: string | null;
}

export interface ProbeRound {
  wave: number;
  at: string;
  results: { tenantId: string; type?: string; result: string; detail?: string }[];
}

export interface OpLive {
  id: string;
  kind: string;
  state: OpState;
  targetType: string;
  itemCount: number;
  tenantCount: number;
  currentWave: number | null;
  waveCount: number;
  haltReason: string | null;
  bakeUntil: string | null;
  planHash: string | null;
  requestedBy: string;
  createdAt: string;
  /** The newest audit seq of this operation: a client behind it has transitions to read. */
  lastSeq: number;
  waves: WaveProgress[];
  probes: ProbeRound | null;
  /** Why a running operation does not move, as its view says it (operations/waiting.ts). */
  throttled: ReturnType<typeof throttleOf>;
  waiting: ReturnType<typeof waitingOf>;
  refused: ReturnType<typeof refusalOf>;
}

export interface Transition {
  seq: number;
  at: string;
  action: string;
  actor: string;
  outcome: string;
  from: string | null;
  to: string | null;
  wave: number | null;
  detail: Record<string, unknown>;
}

/** Nothing more will be streamed for these (a later rollback of an ended one is a new stream). */
export const streamEnds = (s: string) => TERMINAL_STATES.includes(s as OpState) || ENDED_STATES.includes(s as OpState);

const iso = (d: Date | null | undefined) => (d ? new Date(d).toISOString() : null);

interface WaveRow {
  wave: number;
  items: number;
  done: number;
  failed: number;
  started_at: string | null;
  settled_at: string | null;
  probes: ProbeRound['results'] | null;
  probed_at: string | null;
}

export async function readLive(
  db: Queryable,
  opId: string,
  /** What holds an operation in a state, as this process sees it (app.queueHolds). */
  holdsOf: (state: string, lastProgressAt: Date | null) => Promise<QueueHolds> = async (_state, lastProgressAt) => ({
    ...NO_HOLDS,
    lastProgressAt,
  }),
): Promise<OpLive | null> {
  const res = await db.query(
    `SELECT o.id, o.action, o.state, o.target_type, o.item_count, o.tenant_count, o.current_wave, o.halt_reason,
            o.bake_until, o.plan_hash, o.requested_by_name, o.created_at, o.throttled_by, o.throttled_until,
            o.restore_wait, o.updated_at, o.last_refusal,
            ${LAST_PROGRESS_SQL} AS last_progress_at,
            coalesce((SELECT max(seq) FROM audit_events a WHERE a.operation_id = o.id), 0) AS last_seq,
            coalesce((SELECT json_agg(json_build_object('wave', w.wave, 'items', w.to_seq - w.from_seq, 'done', w.done,
                        'failed', w.failed, 'started_at', w.started_at, 'settled_at', w.settled_at,
                        'probes', w.probes, 'probed_at', w.probed_at) ORDER BY w.wave)
                      FROM operation_waves w WHERE w.operation_id = o.id), '[]') AS waves,
            o.plan->'waves' AS plan_waves,
            CASE WHEN o.state = ANY($2) THEN ${MOVES_JSON_SQL('o.id')} END AS moves
     FROM operations o WHERE o.id = $1`,
    [opId, ROLLBACK_STATES],
  );
  const r = res.rows[0];
  if (!r) return null;
  const rows = r.waves as WaveRow[];
  const planned = new Map(
    ((r.plan_waves ?? []) as { index: number; descendants?: number }[]).map((w) => [w.index, w.descendants ?? 0]),
  );
  // Restore outcomes exist only once a rollback began: the wave's moves (execution/wave-moves.ts).
  const undone = restoresByWave((r.moves ?? []) as WaveMove[], r.state === 'rolling_back');
  let probes: ProbeRound | null = null;
  for (const w of rows) {
    if (w.probes && w.probed_at && (!probes || w.probed_at >= probes.at))
      probes = { wave: w.wave, at: iso(new Date(w.probed_at))!, results: w.probes };
  }
  return {
    id: r.id,
    kind: r.action,
    state: r.state,
    targetType: r.target_type,
    itemCount: r.item_count,
    tenantCount: r.tenant_count,
    currentWave: r.current_wave,
    waveCount: rows.length,
    haltReason: r.halt_reason,
    bakeUntil: iso(r.bake_until),
    planHash: r.plan_hash,
    requestedBy: r.requested_by_name,
    createdAt: iso(r.created_at)!,
    lastSeq: Number(r.last_seq),
    waves: rows.map((w) => ({
      wave: w.wave,
      items: w.items,
      descendants: planned.get(w.wave) ?? 0,
      done: w.done,
      failed: w.failed,
      pending: Math.max(0, w.items - w.done - w.failed),
      restored: undone.get(w.wave)?.restored ?? 0,
      restoreFailed: undone.get(w.wave)?.restoreFailed ?? 0,
      restoring: undone.get(w.wave)?.restoring ?? 0,
      startedAt: iso(w.started_at ? new Date(w.started_at) : null),
      settledAt: iso(w.settled_at ? new Date(w.settled_at) : null),
    })),
    probes,
    throttled: throttleOf({ state: r.state, throttledBy: r.throttled_by, throttledUntil: r.throttled_until }),
    waiting: waitingOf(
      {
        state: r.state,
        throttledBy: r.throttled_by,
        throttledUntil: r.throttled_until,
        restoreWait: r.restore_wait,
        bakeUntil: r.bake_until,
      },
      await holdsOf(r.state, r.last_progress_at),
    ),
    refused: refusalOf({ state: r.state, lastRefusal: r.last_refusal }),
  };
}

/**
 * Submitted items (not cascaded descendants, as the wave counters count them) by restore outcome,
 * per wave, from the wave's moves (one row per wave and class; the streams of a rolling-back
 * operation read them on every tick, where they used to scan the ledger). While the rollback runs,
 * a failed restore that will be tried again is not "restore failed" yet (the counts went up and
 * down between attempts): it counts as restoring, with the restores out.
 */
function restoresByWave(moves: WaveMove[], rollbackRuns: boolean) {
  const byWave = new Map<number, { restored: number; restoreFailed: number; restoring: number }>();
  for (const m of moves) {
    const w = byWave.get(m.wave) ?? { restored: 0, restoreFailed: 0, restoring: 0 };
    const c = shownClass(m.class, rollbackRuns);
    if (c === 'restored') w.restored += m.n;
    if (c === 'restore_failed') w.restoreFailed += m.n;
    if (c === 'restoring') w.restoring += m.n;
    byWave.set(m.wave, w);
  }
  return byWave;
}

/** The newest audit seq of all (an event id any stream may have sent); 0 without events. */
export async function newestEventId(db: Queryable): Promise<number> {
  const r = await db.query<{ seq: string | null }>(`SELECT max(seq) AS seq FROM audit_events`);
  return Number(r.rows[0]?.seq ?? 0);
}

/** The operation's audit events after `after`, oldest first. */
export async function readTransitions(db: Queryable, opId: string, after: number, limit: number) {
  const res = await db.query(
    `SELECT seq, at, actor, action, outcome, payload FROM audit_events
     WHERE operation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
    [opId, after, limit],
  );
  return res.rows.map((r): Transition => {
    const { from, to, wave, ...detail } = (r.payload ?? {}) as Record<string, unknown>;
    return {
      seq: Number(r.seq),
      at: iso(r.at)!,
      action: r.action,
      actor: r.actor,
      outcome: r.outcome,
      from: typeof from === 'string' ? from : null,
      to: typeof to === 'string' ? to : null,
      wave: typeof wave === 'number' ? wave : null,
      detail,
    };
  });
}
