// The engine's PostgreSQL store: one transaction per decision, the state loaded under the
// operation's row lock, guards checked against the registry and the resource locks, and the
// decision written with its audit events before the commit.
import type { Redis } from 'ioredis';
import type pg from 'pg';
import { ConflictError, type AppError } from '../../lib/errors.ts';
import { inTransaction } from '../../lib/sql.ts';
import { appendAudit } from '../audit/repository.ts';
import type { Guard, LifecycleState } from '../operations/lifecycle.ts';
import { ENDED_STATES, TERMINAL_STATES } from '../operations/lifecycle.ts';
import { CASCADE_DEPTH } from '../operations/cascade-plan.ts';
import { relockTouched } from '../operations/resource-locks.ts';
import { DELETE_STANDS, EXTERNAL_TYPES, ledgerDecides, readHistory } from '../restores/history.ts';
import { restoreStale } from '../restores/stale.ts';
import type { Metrics } from '../../plugins/metrics.ts';
import { erasureAuditDetail } from '../erasure/keys.ts';
import { statesActedOn } from '../erasure/states.ts';
import { createEngine, type Change, type Engine, type EngineStore } from './engine.ts';
import type { Queues } from './queues.ts';
import { freshRestoreAttempts } from './rollback-ledger.ts';
import { retryFailedOnResume } from './resume-retry.ts';
import { loadOperation, type OperationRecord } from './state.ts';

const STALE_LISTED = 100;
const date = (ms: number | null) => (ms === null ? null : new Date(ms));

export function pgEngineStore(pool: pg.Pool): EngineStore<pg.PoolClient> {
  return {
    transaction: (fn) => inTransaction(pool, fn),
    load: (tx, opId) => loadOperation(tx, opId, true),
    guard: (tx, record, guard) => checkGuard(tx, record, guard),
    persist,
  };
}

async function checkGuard(tx: pg.PoolClient, record: OperationRecord, guard: Guard): Promise<AppError | null> {
  if (guard === 'take_locks') {
    const held = await relockTouched(tx, record.id);
    if (held.length === 0) {
      // Only a rollback of an ended operation takes its locks back: a new attempt at its restores.
      await freshRestoreAttempts(tx, record.id);
      return null;
    }
    return new ConflictError(
      'RESOURCES_IN_FLIGHT',
      `${held.length === STALE_LISTED ? 'At least ' : ''}${held.length} resource(s) of this operation are now part of another live operation; finish or abort that one first`,
      { heldBy: held },
    );
  }
  if (record.action === 'purge') return restoreStale(tx, record.id, 'purge');
  return record.action === 'restore' ? restoreStale(tx, record.id) : planStale(tx, record);
}

/**
 * The plan was made against the registry as it was then: a resource whose type, tenant, state or
 * protection changed since, or whose ID its type's idPattern (redeclared since) no longer matches,
 * makes the plan stale, and starting it would act on something nobody
 * reviewed. (A protected tenant is fine only when the plan already needed break-glass for protected
 * tenants, and only for those: OperationRecord.approvedTenants; break-glass for a budget breach covers none.)
 * A cascade's descendants are checked against their own type, and a resource that a cascade would
 * now take but the plan does not list (created, or made active, since) makes it stale too: the
 * registry adapter would leave it active under a deleted parent, and nobody approved its delete.
 * So does a planned descendant moved out of the cascade that takes it (its parent now a resource
 * that is not that item or one of its planned descendants, or none): the delete would take, or
 * record as deleted, a resource that its planned parent no longer holds (a trial: an app moved out
 * of its site after the plan was recorded as deleted with the site, and set due for a purge).
 */
async function planStale(tx: pg.PoolClient, record: OperationRecord): Promise<AppError | null> {
  const states = statesActedOn(record.action);
  const r = await tx.query<{
    resource_id: string;
    planned_type: string;
    planned_tenant: string;
    type: string | null;
    tenant_id: string | null;
    state: string | null;
    protected: boolean | null;
    tenant_protected: boolean | null;
    /** The type's idPattern when the ID no longer matches it (the type was redeclared since the plan). */
    unmatched_pattern: string | null;
    /** A descendant moved out of its cascade: the submitted item whose delete was planned to take it. */
    moved_from: string | null;
    parent_id: string | null;
    total: number;
  }>(
    `WITH items AS (
       SELECT i.*, root.resource_id AS root_id,
              i.parent_seq IS NOT NULL AND r.id IS NOT NULL
                AND (q.seq IS NULL OR (q.seq <> i.parent_seq AND q.parent_seq IS DISTINCT FROM i.parent_seq)) AS moved
       FROM operation_items i
       LEFT JOIN resources r ON r.id = i.resource_id
       LEFT JOIN operation_items root ON root.operation_id = i.operation_id AND root.seq = i.parent_seq
       LEFT JOIN operation_items q ON q.operation_id = i.operation_id AND q.resource_id = r.parent_id
       WHERE i.operation_id = $1
     )
     SELECT i.resource_id, coalesce(i.resource_type, $2) AS planned_type, i.tenant_id AS planned_tenant, r.type,
            r.tenant_id, r.state, r.protected, t.protected AS tenant_protected,
            CASE WHEN i.resource_id !~ rt.id_pattern THEN rt.id_pattern END AS unmatched_pattern,
            CASE WHEN i.moved THEN i.root_id END AS moved_from, r.parent_id,
            count(*) OVER ()::int AS total
     FROM items i
     LEFT JOIN resources r ON r.id = i.resource_id
     LEFT JOIN tenants t ON t.id = r.tenant_id
     LEFT JOIN resource_types rt ON rt.name = coalesce(i.resource_type, $2)
     WHERE (r.id IS NULL OR r.type <> coalesce(i.resource_type, $2) OR r.tenant_id <> i.tenant_id
            OR NOT (r.state = ANY($5::text[])) OR r.protected OR (t.protected AND NOT (t.id = ANY($3::text[])))
            OR i.resource_id !~ rt.id_pattern OR i.moved)
     ORDER BY i.seq LIMIT $4`,
    [record.id, record.targetType, record.approvedTenants, STALE_LISTED, states],
  );
  const unplanned = r.rows.length ? [] : await unplannedDescendants(tx, record, states);
  if (r.rows.length === 0 && unplanned.length === 0) return null;
  const total = r.rows[0]?.total ?? unplanned.length;
  const changed = r.rows.map((x) => ({
    resourceId: x.resource_id,
    reason: staleReason(x, states, record.approvedTenants),
    planned: { type: x.planned_type, tenantId: x.planned_tenant, state: states.join(' or '), protected: false },
    now:
      x.type === null
        ? null
        : {
            type: x.type,
            tenantId: x.tenant_id,
            state: x.state,
            protected: x.protected,
            tenantProtected: x.tenant_protected,
            ...(x.unmatched_pattern !== null ? { idPattern: x.unmatched_pattern, matchesIdPattern: false } : {}),
            ...(x.moved_from !== null ? { parentId: x.parent_id } : {}),
          },
  }));
  // The stale operation keeps its locks until it ends, so a new plan of the same resources would
  // be refused as in_flight: the message says to abort it first.
  const what = changed.length
    ? `${total} planned resource(s) changed in the registry since the plan was made (e.g. ${changed[0]!.resourceId}: ${changed[0]!.reason})`
    : `${total} resource(s) that the plan does not list would now be taken by its cascade (e.g. ${unplanned[0]!.resourceId}, now ${unplanned[0]!.now.state} under ${unplanned[0]!.now.parentId})`;
  return new ConflictError(
    'PLAN_STALE',
    `${what}; nothing was started. Abort this operation (POST /v1/operations/${record.id}/abort with a reason; its locks hold the planned resources), then submit a new plan.`,
    { total, changed: [...changed, ...unplanned] },
  );
}

/** What changed of one planned resource, in words (the first one's is in PLAN_STALE's message). */
function staleReason(
  x: {
    planned_type: string;
    planned_tenant: string;
    type: string | null;
    tenant_id: string | null;
    state: string | null;
    protected: boolean | null;
    tenant_protected: boolean | null;
    unmatched_pattern: string | null;
    moved_from: string | null;
    parent_id: string | null;
  },
  states: readonly string[],
  approvedTenants: readonly string[],
): string {
  if (x.type === null) return 'not in the registry any more';
  if (x.type !== x.planned_type) return `it is a ${x.type} now, not a ${x.planned_type}`;
  if (x.tenant_id !== x.planned_tenant) return `it belongs to tenant ${x.tenant_id} now, not ${x.planned_tenant}`;
  if (x.state !== null && !states.includes(x.state)) return `it is ${x.state} now`;
  if (x.protected) return 'it is protected now';
  if (x.tenant_protected && !approvedTenants.includes(x.tenant_id))
    return `its tenant ${x.tenant_id} is protected now (the plan's break-glass did not cover it)`;
  if (x.unmatched_pattern !== null) return `its ID no longer matches the type's idPattern ${x.unmatched_pattern}`;
  if (x.moved_from !== null)
    return `it is no longer in ${x.moved_from}'s cascade (its parent is ${x.parent_id ?? 'none'} now)`;
  return 'changed';
}

/** Resources (in a state it acts on) a cascade of this operation would take that its ledger does not list. */
async function unplannedDescendants(tx: pg.PoolClient, record: OperationRecord, states: readonly string[]) {
  const type = await tx.query<{ cascade_to: string[] }>(`SELECT cascade_to FROM resource_types WHERE name = $1`, [
    record.targetType,
  ]);
  const cascadeTo = type.rows[0]?.cascade_to ?? [];
  if (cascadeTo.length === 0) return [];
  // Every level's parent is in the ledger, so one join over direct children covers every depth.
  const children = `SELECT c.id, c.type, c.tenant_id, c.parent_id, c.state FROM operation_items p
     JOIN resources c ON c.parent_id = p.resource_id AND c.state = ANY($4::text[]) AND c.type = ANY($2::text[])
     LEFT JOIN operation_items i ON i.operation_id = $1 AND i.resource_id = c.id
     WHERE p.operation_id = $1 AND i.seq IS NULL AND p.depth < $3`;
  const params = [record.id, cascadeTo, CASCADE_DEPTH, states];
  // The planner left out what Blastgate already deleted through an HTTP adapter (see
  // leaveOutDeletedElsewhere): such a child is not new, unless that delete was undone since.
  const asked = ledgerDecides(states)
    ? await readHistory(tx, `SELECT x.id FROM (${children}) x WHERE x.type IN (${EXTERNAL_TYPES})`, params)
    : 0;
  const r = await tx.query<{ id: string; type: string; tenant_id: string; parent_id: string; state: string }>(
    `SELECT x.* FROM (${children}) x
     ${asked ? `WHERE NOT EXISTS (SELECT 1 FROM restore_latest l JOIN resources r ON r.id = l.id WHERE l.id = x.id AND ${DELETE_STANDS})` : ''}
     ORDER BY x.id LIMIT $5`,
    [...params, STALE_LISTED],
  );
  return r.rows.map((x) => ({
    resourceId: x.id,
    planned: null,
    now: { type: x.type, tenantId: x.tenant_id, state: x.state, parentId: x.parent_id },
  }));
}

async function persist(tx: pg.PoolClient, record: OperationRecord, n: LifecycleState, c: Change): Promise<number> {
  const opId = record.id;
  const { event, actor } = c;
  if (event.type === 'approve') {
    await tx.query(
      `INSERT INTO approvals (operation_id, approver, approver_name, role, plan_hash, break_glass, comment)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [
        opId,
        event.by.id,
        event.by.name,
        event.role,
        event.planHash,
        record.lifecycle.requiresBreakGlass && event.role === 'admin',
        event.comment ?? null,
      ],
    );
  }
  if (event.type === 'signal') {
    await tx.query(`INSERT INTO signals (operation_id, kind, tenant_id, detail, source) VALUES ($1, $2, $3, $4, $5)`, [
      opId,
      event.kind,
      event.tenantId ?? null,
      event.detail ?? null,
      actor.name,
    ]);
  }
  if (event.type === 'resume' && record.lifecycle.state === 'halted' && n.currentWave !== null)
    await retryFailedOnResume(tx, opId, n.currentWave);
  const ended = TERMINAL_STATES.includes(n.state) || ENDED_STATES.includes(n.state);
  const upd = await tx.query<{ version: number }>(
    `UPDATE operations SET state = $2, current_wave = $3, halt_reason = $4, paused_from = $5, version = version + 1,
       updated_at = now(), bake_until = $6, wave_deadline = $7, progress_at = $8, expires_at = $9,
       started_at = CASE WHEN started_at IS NULL AND $2 = 'running' THEN now() ELSE started_at END,
       finished_at = CASE WHEN $10 THEN now() ELSE NULL END, drill_state = $11
     WHERE id = $1 RETURNING version`,
    [
      opId,
      n.state,
      n.currentWave,
      n.haltReason,
      n.pausedFrom,
      date(n.bakeUntil),
      date(n.waveDeadline),
      date(n.progressAt),
      date(n.expiresAt),
      ended,
      n.drill === 'off' || n.drill === 'pending' ? null : n.drill,
    ],
  );
  for (const e of c.effects) {
    // The drill's row, written with the decision that asks for it: its job finds it by operation.
    if (e.type === 'run_drill')
      await tx.query(`INSERT INTO operation_drills (operation_id, wave) VALUES ($1, $2)`, [opId, e.wave]);
    if (e.type === 'enqueue_wave') {
      await tx.query(
        `UPDATE operation_waves SET started_at = coalesce(started_at, now()) WHERE operation_id = $1 AND wave = $2`,
        [opId, e.wave],
      );
    }
  }
  if (event.type === 'wave_settled') {
    await tx.query(
      `UPDATE operation_waves SET settled_at = coalesce(settled_at, now()) WHERE operation_id = $1 AND wave = $2`,
      [opId, event.wave],
    );
  }
  // A restore's (a purge's) events say so, and the one that ends it says how many items came back
  // (were purged). An erasure's likewise, with the snapshot keys it destroyed.
  const restore =
    record.action === 'restore'
      ? { kind: 'restore', ...(ended ? await restoreCounts(tx, opId) : {}) }
      : record.action === 'purge'
        ? { kind: 'purge', ...(ended ? await purgeCounts(tx, opId) : {}) }
        : record.action === 'erase'
          ? await erasureAuditDetail(tx, opId, ended)
          : {};
  for (const e of c.effects) {
    if (e.type !== 'audit') continue;
    await appendAudit(tx, {
      actor: actor.name,
      action: e.action,
      outcome: 'accepted',
      operationId: opId,
      payload: { ...e.detail, ...restore, tokenId: actor.tokenId ?? null },
    });
  }
  return upd.rows[0]!.version;
}

/** Items of a restore (cascaded descendants included) restored and not, from the ledger. */
async function restoreCounts(tx: pg.PoolClient, opId: string) {
  const r = await tx.query<{ items: number; restored: number }>(
    `SELECT count(*)::int AS items, count(*) FILTER (WHERE state = 'done')::int AS restored
     FROM operation_items WHERE operation_id = $1`,
    [opId],
  );
  const { items, restored } = r.rows[0]!;
  return { items, restored, notRestored: items - restored };
}

/** Items of a purge purged and not, from the ledger. */
async function purgeCounts(tx: pg.PoolClient, opId: string) {
  const { items, restored } = await restoreCounts(tx, opId);
  return { items, purged: restored, notPurged: items - restored };
}

export interface PgEngineOptions {
  pool: pg.Pool;
  queues: Pick<Queues, 'enqueueWave' | 'enqueueControl'>;
  /** Publishes halt notices to workers (Redis pub/sub). */
  publisher: Pick<Redis, 'publish'>;
  channel: string;
  clock?: () => number;
  metrics?: Pick<Metrics, 'transitions' | 'halts'>;
  log?: { warn(obj: object, msg: string): void };
}

/** The engine as the API and the workers run it: PostgreSQL store, BullMQ and Redis pub/sub effects. */
export function pgEngine(o: PgEngineOptions): Engine<pg.PoolClient> {
  return createEngine({
    store: pgEngineStore(o.pool),
    effects: {
      publishHalt: async (opId) => {
        await o.publisher.publish(o.channel, opId);
      },
      enqueueWave: (job, range) => o.queues.enqueueWave(job, { from: range.fromSeq, to: range.toSeq }),
      enqueueControl: (job, delayMs) => o.queues.enqueueControl(job, delayMs),
    },
    clock: o.clock ?? Date.now,
    metrics: o.metrics,
    log: o.log,
  });
}
