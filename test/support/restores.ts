// Helpers for the restore tests: deleting sites (with their apps) through real operations, asking
// for restores, and running one to its end through approval and start.
import request from 'supertest';
import { expect } from 'vitest';
import { command } from './exec-helpers.ts';
import { submitAndStart, waitForState, type ExecHarness } from './execution.ts';
import { appId, query } from './seed.ts';

export const APPS = 3;
export const appsOfSite = (s: number) => Array.from({ length: APPS }, (_, j) => appId(s, j));
/** A restore has ended, one way or the other (or waits for a human). */
export const RESTORE_ENDS = ['completed', 'completed_with_failures', 'cancelled', 'halted', 'paused'];
const DELETE_ROLLOUT = { bakeSeconds: 0, concurrency: 4, waves: ['1', '100%'] };

/** An HTTP adapter declaration (JSON) for resources under /{col} of the test downstream. */
export const httpAdapterOn = (h: Pick<ExecHarness, 'downstream'>, col: string) =>
  JSON.stringify({
    kind: 'http',
    baseUrl: h.downstream.url,
    // With the tenant: the downstream knows it from the first read (the restore drill compares reads).
    snapshot: `GET /${col}/{id}?tenantId={tenantId}`,
    softDelete: `POST /${col}/{id}/soft-delete`,
    restore: `POST /${col}/{id}/restore`,
    hardDelete: `DELETE /${col}/{id}`,
    timeoutMs: 5_000,
    retries: 1,
    retryBaseMs: 10,
  });

/** Both fixture types act on the test downstream: sites under /sites, apps under /apps. */
export async function useHttp(h: ExecHarness) {
  const adapter = (col: string) => httpAdapterOn(h, col);
  await query(h.databaseUrl, `UPDATE resource_types SET adapter = $1 WHERE name = 'site'`, [adapter('sites')]);
  await query(h.databaseUrl, `UPDATE resource_types SET adapter = $1 WHERE name = 'app'`, [adapter('apps')]);
}
export const useRegistry = (h: ExecHarness) =>
  query(h.databaseUrl, `UPDATE resource_types SET adapter = '{"kind":"registry"}'`);

/** A delete operation run to its end (completed expected). */
export async function deleteAndComplete(h: ExecHarness, targetType: string, ids: string[], extra = {}) {
  const op = await submitAndStart(h, {
    targetType,
    reason: 'Cleanup script',
    ids,
    rollout: DELETE_ROLLOUT,
    haltPolicy: { probe: 'optional' },
    ...extra,
  });
  const end = await waitForState(h, op.id, ['completed', 'completed_with_failures', 'halted', 'rolled_back']);
  expect(end.state, JSON.stringify(end)).toBe('completed');
  return op.id;
}

export const postRestore = (h: ExecHarness, body: Record<string, unknown>, key?: string) => {
  const r = request(h.app.server).post('/v1/restores').set('authorization', h.auth('requester'));
  if (key) r.set('idempotency-key', key);
  return r.send({ reason: 'Bring back what the script deleted', ticket: 'INC-883', ...body });
};

/** One call at a time: a purge's or a restore's calls go out in order, so one held call holds the rest. */
export const ONE_LANE = { bakeSeconds: 0, concurrency: 1, waves: ['100%'] };

/** POST /v1/purges as the requester, one lane unless the body gives a rollout. */
export const postPurge = (h: ExecHarness, body: Record<string, unknown>) =>
  request(h.app.server)
    .post('/v1/purges')
    .set('authorization', h.auth('requester'))
    .send({ reason: 'Retention ended', ticket: 'CHG-2211', rollout: ONE_LANE, ...body });

/** Two days pass for these resources: a 1-day retention ends, from their snapshots' time or the row's. */
export async function ageTwoDays(h: Pick<ExecHarness, 'databaseUrl'>, ids: string[]) {
  await tamperSnapshots(
    h,
    `UPDATE snapshots SET created_at = created_at - interval '2 days' WHERE resource_id = ANY($1)`,
    [ids],
  );
  await query(
    h.databaseUrl,
    `UPDATE resources SET purge_after = now() - interval '1 day' WHERE id = ANY($1) AND purge_after IS NOT NULL`,
    [ids],
  );
}

export interface RestoreView {
  id: string;
  kind: string;
  state: string;
  planHash: string;
  requiresBreakGlass: boolean;
  itemCount: number;
  tenantCount: number;
  scope: Record<string, unknown>;
  plan: { waves: { index: number; items: number; tenants: number }[]; cascade: { type: string; count: number }[] };
  counts?: {
    items: number;
    byState: Record<string, number>;
    pending?: number;
    restored?: number;
    notRestored?: number;
  };
  unfinished?: { count: number; items: { resourceId: string; state: string; lastError: string | null }[] };
  haltReason: string | null;
}

/** Plans a restore (201 expected), approves it (twice when break-glass) and starts it. */
export async function startRestore(h: ExecHarness, body: Record<string, unknown>): Promise<RestoreView> {
  const r = await postRestore(h, { rollout: { concurrency: 4 }, ...body });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  const op = r.body as RestoreView;
  for (const role of op.requiresBreakGlass ? (['approver', 'admin'] as const) : (['approver'] as const))
    await command(h, role, op.id, 'approve', { planHash: op.planHash }).expect(200);
  await command(h, 'operator', op.id, 'start').expect(200);
  return op;
}

/** Plans, approves, starts and waits for the restore's end; returns the operation as GET shows it. */
export async function runRestore(h: ExecHarness, body: Record<string, unknown>): Promise<RestoreView> {
  const op = await startRestore(h, body);
  await waitForState(h, op.id, RESTORE_ENDS);
  return getRestore(h, op.id);
}

export async function getRestore(h: ExecHarness, id: string): Promise<RestoreView> {
  const r = await request(h.app.server).get(`/v1/operations/${id}`).set('authorization', h.auth('viewer')).expect(200);
  return r.body as RestoreView;
}

export const registryStates = async (h: ExecHarness, ids: string[]) =>
  Object.fromEntries(
    (
      await query<{ id: string; state: string }>(h.databaseUrl, `SELECT id, state FROM resources WHERE id = ANY($1)`, [
        ids,
      ])
    ).map((r) => [r.id, r.state]),
  );

export const restoreItems = (h: ExecHarness, opId: string) =>
  query<{
    seq: number;
    resource_id: string;
    resource_type: string;
    parent_seq: number | null;
    state: string;
    last_error: string | null;
    snapshot_id: string | null;
    source_snapshot_id: string | null;
  }>(
    h.databaseUrl,
    `SELECT seq, resource_id, resource_type, parent_seq, state, last_error, snapshot_id, source_snapshot_id
     FROM operation_items WHERE operation_id = $1 ORDER BY seq`,
    [opId],
  );

export const auditOf = (h: ExecHarness, opId: string) =>
  query<{ action: string; actor: string; payload: Record<string, unknown> }>(
    h.databaseUrl,
    `SELECT action, actor, payload FROM audit_events WHERE operation_id = $1 ORDER BY seq`,
    [opId],
  );

/**
 * Changes snapshots, insert-only otherwise (their trigger is off meanwhile): what a test simulates
 * (time passing, a corrupted row).
 */
export async function tamperSnapshots(h: Pick<ExecHarness, 'databaseUrl'>, sql: string, params: unknown[]) {
  await query(h.databaseUrl, 'ALTER TABLE snapshots DISABLE TRIGGER snapshots_append_only');
  try {
    await query(h.databaseUrl, sql, params);
  } finally {
    await query(h.databaseUrl, 'ALTER TABLE snapshots ENABLE TRIGGER snapshots_append_only');
  }
}
