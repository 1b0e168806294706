// Loads an operation's lifecycle state in ONE query: the row, its waves and their counters, its
// approvals and the global freeze. Every job and command reads the state this way, once.
import type { Queryable } from '../../lib/sql.ts';
import { PLAN_LOOK_MAX_MS } from './protected-now.ts';
import type { DrillStatus, LifecycleState, OperationKind, OpState, WaveStats } from '../operations/lifecycle.ts';
import { withHaltDefaults, withRolloutDefaults, type HaltPolicy, type RolloutPolicy } from '../operations/policy.ts';

export interface WaveRange {
  wave: number;
  fromSeq: number;
  toSeq: number;
}

export interface OperationRecord {
  id: string;
  version: number;
  /** delete or restore: which destructive call the chunk job makes, and how. */
  action: OperationKind;
  targetType: string;
  mode: string;
  /**
   * The tenants that were protected when the plan was made, which its break-glass approval covers:
   * one of them protected now is not news to this operation; any other is (registry-apply.ts DeleteGuard).
   */
  approvedTenants: string[];
  /**
   * The snapshot taken before the plan read protection (a delete's or erasure's plan), while it is
   * recent enough to compare with protection_changes (PLAN_LOOK_MAX_MS); null otherwise.
   */
  protectionSeen: string | null;
  lifecycle: LifecycleState;
  waves: WaveRange[];
  /** Counters of the current wave (undefined before the start). */
  wave: (WaveRange & WaveStats) | undefined;
}

export interface FreezeSetting {
  frozen: boolean;
  reason?: string;
  by?: string;
}

export async function readFreeze(db: Queryable, lock = false): Promise<FreezeSetting> {
  const r = await db.query<{ value: FreezeSetting }>(
    `SELECT value FROM settings WHERE key = 'freeze' ${lock ? 'FOR UPDATE' : ''}`,
  );
  return r.rows[0]?.value ?? { frozen: false };
}

const ms = (d: unknown) => (d instanceof Date ? d.getTime() : null);

interface Row {
  id: string;
  state: OpState;
  version: number;
  action: OperationKind;
  target_type: string;
  mode: string;
  current_wave: number | null;
  paused_from: 'running' | 'baking' | null;
  halt_reason: string | null;
  halt_cause: string | null;
  requires_break_glass: boolean;
  plan_hash: string | null;
  requested_by: string;
  auto_start: boolean;
  halt_policy: Partial<HaltPolicy>;
  rollout: Partial<RolloutPolicy>;
  bake_until: Date | null;
  wave_deadline: Date | null;
  progress_at: Date | null;
  expires_at: Date | null;
  drill_state: DrillStatus | null;
  waves: [number, number, number, number, number, number, Date | null][] | null;
  approvals: { by: string; role: LifecycleState['approvals'][number]['role']; planHash: string }[];
  frozen: boolean;
  approved_tenants: string[];
  protection_seen: string | null;
  created_at: Date;
}

export async function loadOperation(db: Queryable, id: string, lock: boolean): Promise<OperationRecord | undefined> {
  if (!lock) return first((await db.query<Row>(readSql('$1'), [id])).rows);
  // The lock first, the read in a statement after it. One statement that locked while it read took
  // its snapshot before waiting for the lock: its approvals (and waves) were as they were then,
  // without those of the command it waited for, so two break-glass approvals that waited together
  // each saw only its own, and the operation stayed planned with both in (a trial). A statement's
  // snapshot (READ COMMITTED) sees every command committed before it began. Both go in one simple
  // query, one round trip as before (a command's trips each wait their turn under load:
  // command-round-trips.test.ts); the ID as a literal, since a simple query takes no parameters.
  const idSql = `'${id.replace(/'/g, "''")}'`;
  const results = (await db.query(
    `SELECT 1 FROM operations o WHERE o.id = ${idSql} FOR UPDATE OF o; ${readSql(idSql)}`,
  )) as unknown as { rows: Row[] }[];
  return first(results[1]?.rows ?? []);
}

const first = (rows: Row[]) => (rows[0] ? toRecord(rows[0]) : undefined);

/**
 * The operation with its waves, approvals and the freeze. pg_stat_activity shows a statement's first
 * 1,023 bytes (track_activity_query_size): keep the FROM within them, so that whoever looks at what
 * waits for an operation's lock sees which table (kill.test.ts lockWaiters does). Hence the short
 * indents and the plan's age judged here, not in SQL.
 */
const readSql = (idSql: string) =>
  `SELECT o.id, o.state, o.version, o.action, o.target_type, o.mode, o.current_wave, o.paused_from, o.halt_reason,
   o.halt_cause, o.requires_break_glass, o.plan_hash, o.requested_by, o.auto_start, o.halt_policy, o.rollout,
   o.bake_until, o.wave_deadline, o.progress_at, o.expires_at, o.drill_state,
   (SELECT json_agg(json_build_array(w.wave, w.from_seq, w.to_seq, w.done, w.failed, w.consecutive_failures, w.progress_at) ORDER BY w.wave)
      FROM operation_waves w WHERE w.operation_id = o.id) AS waves,
   (SELECT coalesce(json_agg(json_build_object('by', a.approver, 'role', a.role, 'planHash', a.plan_hash) ORDER BY a.id), '[]')
      FROM approvals a WHERE a.operation_id = o.id) AS approvals,
   coalesce((SELECT (s.value->>'frozen')::boolean FROM settings s WHERE s.key = 'freeze'), false) AS frozen,
   CASE WHEN o.requires_break_glass THEN coalesce(o.protected_tenants, '{}') ELSE '{}' END AS approved_tenants,
   o.protection_seen, o.created_at
     FROM operations o WHERE o.id = ${idSql}`;

function toRecord(o: Row): OperationRecord {
  const waves = (o.waves ?? []).map(([wave, fromSeq, toSeq, done, failed, consecutiveFailures, progressAt]) => ({
    wave,
    fromSeq,
    toSeq,
    done,
    failed,
    consecutiveFailures,
    pending: toSeq - fromSeq - done - failed,
    // json_agg turns timestamps into strings.
    progressAt: progressAt === null ? null : new Date(progressAt).getTime(),
  }));
  const current = waves.find((w) => w.wave === o.current_wave);
  const failedBefore = waves
    .filter((w) => o.current_wave !== null && w.wave < o.current_wave)
    .reduce((n, w) => n + w.failed, 0);
  const rollout = withRolloutDefaults(o.rollout);
  // Only a soft delete can be drilled: a hard delete has nothing to restore, a restore nothing to undo.
  const drilled = o.action === 'delete' && o.mode === 'soft' && rollout.restoreDrill;
  const progress = [ms(o.progress_at), current?.progressAt ?? null].filter((x): x is number => x !== null);
  const lifecycle: LifecycleState = {
    state: o.state,
    kind: o.action,
    waveCount: Math.max(1, waves.length),
    currentWave: o.current_wave,
    pausedFrom: o.paused_from,
    haltReason: o.halt_reason,
    haltCause: o.halt_cause,
    requiresBreakGlass: o.requires_break_glass,
    planHash: o.plan_hash ?? '',
    requestedBy: o.requested_by,
    approvals: o.approvals,
    autoStart: o.auto_start,
    frozen: o.frozen,
    haltPolicy: withHaltDefaults(o.halt_policy),
    rollout,
    failedBefore,
    bakeUntil: ms(o.bake_until),
    waveDeadline: ms(o.wave_deadline),
    progressAt: progress.length ? Math.max(...progress) : null,
    expiresAt: ms(o.expires_at),
    drill: drilled ? (o.drill_state ?? 'pending') : 'off',
  };
  return {
    id: o.id,
    version: o.version,
    action: o.action,
    targetType: o.target_type,
    mode: o.mode,
    approvedTenants: o.approved_tenants,
    protectionSeen:
      o.protection_seen && Date.now() - o.created_at.getTime() < PLAN_LOOK_MAX_MS ? o.protection_seen : null,
    lifecycle,
    waves: waves.map(({ wave, fromSeq, toSeq }) => ({ wave, fromSeq, toSeq })),
    wave: current && {
      wave: current.wave,
      fromSeq: current.fromSeq,
      toSeq: current.toSeq,
      done: current.done,
      failed: current.failed,
      consecutiveFailures: current.consecutiveFailures,
      pending: current.pending,
    },
  };
}
