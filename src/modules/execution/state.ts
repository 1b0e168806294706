// Reads an operation's lifecycle state from the ledger, under the row lock the caller took.
import type { Queryable } from '../../lib/sql.ts';
import type { Role } from '../auth/roles.ts';
import type { LifecycleState, OpState } from '../operations/lifecycle.ts';
import { withHaltDefaults, withRolloutDefaults, type HaltPolicy, type RolloutPolicy } from '../operations/policy.ts';

export interface OperationRecord {
  id: string;
  state: OpState;
  version: number;
  currentWave: number | null;
  targetType: string;
  mode: string;
  bakeUntil: Date | null;
  lifecycle: LifecycleState;
}

export interface FreezeSetting {
  frozen: boolean;
  reason?: string;
  by?: string;
}

export async function readFreeze(db: Queryable): Promise<FreezeSetting> {
  const r = await db.query<{ value: FreezeSetting }>(`SELECT value FROM settings WHERE key = 'freeze'`);
  return r.rows[0]?.value ?? { frozen: false };
}

export async function loadOperation(db: Queryable, id: string, lock: boolean): Promise<OperationRecord | undefined> {
  const r = await db.query(
    `SELECT o.*, (SELECT count(*) FROM operation_waves w WHERE w.operation_id = o.id)::int AS wave_count
                            FROM operations o WHERE id = $1 ${lock ? 'FOR UPDATE' : ''}`,
    [id],
  );
  const o = r.rows[0] as Record<string, unknown> | undefined;
  if (!o) return undefined;
  const approvals = await db.query<{ approver: string; role: Role; plan_hash: string }>(
    'SELECT approver, role, plan_hash FROM approvals WHERE operation_id = $1 ORDER BY id',
    [id],
  );
  const freeze = await readFreeze(db);
  const lifecycle: LifecycleState = {
    state: o.state as OpState,
    waveCount: Math.max(1, o.wave_count as number),
    currentWave: (o.current_wave as number | null) ?? null,
    pausedFrom: (o.paused_from as 'running' | 'baking' | null) ?? null,
    haltReason: (o.halt_reason as string | null) ?? null,
    requiresBreakGlass: o.requires_break_glass as boolean,
    planHash: (o.plan_hash as string | null) ?? '',
    requestedBy: o.requested_by as string,
    approvals: approvals.rows.map((a) => ({ by: a.approver, role: a.role, planHash: a.plan_hash })),
    autoStart: o.auto_start as boolean,
    frozen: freeze.frozen,
    haltPolicy: withHaltDefaults(o.halt_policy as Partial<HaltPolicy>),
    rollout: withRolloutDefaults(o.rollout as Partial<RolloutPolicy>),
  };
  return {
    id,
    state: lifecycle.state,
    version: o.version as number,
    currentWave: lifecycle.currentWave,
    targetType: o.target_type as string,
    mode: o.mode as string,
    bakeUntil: (o.bake_until as Date | null) ?? null,
    lifecycle,
  };
}

export interface WaveRow {
  wave: number;
  fromSeq: number;
  toSeq: number;
  tenants: number;
  done: number;
  failed: number;
  consecutiveFailures: number;
}

export async function loadWave(db: Queryable, opId: string, wave: number): Promise<WaveRow | undefined> {
  const r = await db.query(
    `SELECT wave, from_seq, to_seq, tenants, done, failed, consecutive_failures FROM operation_waves WHERE operation_id = $1 AND wave = $2`,
    [opId, wave],
  );
  const w = r.rows[0] as Record<string, number> | undefined;
  return (
    w && {
      wave: w.wave!,
      fromSeq: w.from_seq!,
      toSeq: w.to_seq!,
      tenants: w.tenants!,
      done: w.done!,
      failed: w.failed!,
      consecutiveFailures: w.consecutive_failures!,
    }
  );
}
