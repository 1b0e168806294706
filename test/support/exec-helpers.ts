// Helpers for the execution tests: operator commands over HTTP, the item ledger, what reached the
// downstream, and the "everything touched was restored" check shared by every rollback test.
import { randomUUID } from 'node:crypto';
import { Worker, type Job } from 'bullmq';
import request from 'supertest';
import { expect } from 'vitest';
import type { Role } from '../../src/modules/auth/roles.ts';
import { DRILL_KEY_PREFIX } from '../../src/modules/adapters/signing.ts';
import { readLive } from '../../src/modules/events/feed.ts';
import { QUEUE_NAMES, type ChunkJob } from '../../src/modules/execution/queues.ts';
import { createRedis } from '../../src/plugins/redis.ts';
import { submitAndStart, until, type ExecHarness } from './execution.ts';
import { appId, query, siteId } from './seed.ts';

/** POST /v1/operations/:id/<command> as `role`. */
export const command = (h: ExecHarness, role: Role, id: string, path: string, body: Record<string, unknown> = {}) =>
  request(h.app.server).post(`/v1/operations/${id}/${path}`).set('authorization', h.auth(role)).send(body);

/** A started delete of these sites (and what their cascade takes): canary of 1 tenant, then the rest, no bake. */
export const deleteSitesOf = (h: ExecHarness, sites: number[], extra: Record<string, unknown> = {}) =>
  submitAndStart(h, {
    targetType: 'site',
    reason: 'Decommission sites',
    ids: sites.map(siteId),
    rollout: { bakeSeconds: 0, concurrency: 2, waves: ['1', '100%'] },
    haltPolicy: { probe: 'optional' },
    ...extra,
  });

/** Every app of the given sites, grouped by site (so a tenant's items are contiguous). */
export const appsOf = (sites: number[], appsPerSite: number) =>
  sites.flatMap((s) => Array.from({ length: appsPerSite }, (_, j) => appId(s, j)));
export const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

export interface LedgerRow {
  seq: number;
  resource_id: string;
  tenant_id: string;
  wave: number;
  state: string;
}
export const ledger = (h: ExecHarness, opId: string) =>
  query<LedgerRow>(
    h.databaseUrl,
    'SELECT seq, resource_id, tenant_id, wave, state FROM operation_items WHERE operation_id = $1 ORDER BY seq',
    [opId],
  );

/** A call of the restore drill (its own Idempotency-Keys), not of the operation's own run. */
export const isDrillCall = (c: { idempotencyKey?: string }) => c.idempotencyKey?.startsWith(DRILL_KEY_PREFIX) === true;

/** The operation's own destructive calls of one action (not the restore drill's), as they reached the downstream. */
export const ownCalls = (h: ExecHarness, action: 'softDelete' | 'restore' | 'hardDelete') =>
  h.downstream.calls.filter((c) => c.action === action && !isDrillCall(c));

/**
 * Soft-delete calls (every attempt) that reached the downstream for the operation's items; the
 * restore drill's re-delete is not one of them (its calls are told apart by key: see drillCallsOf).
 */
export function softDeletesOf(h: ExecHarness, rows: LedgerRow[]) {
  const ids = new Set(rows.map((r) => r.resource_id));
  return h.downstream.calls.filter((c) => c.action === 'softDelete' && ids.has(c.resourceId!) && !isDrillCall(c));
}

/** The restore drill's calls (a restore and a soft delete of one item per drill run). */
export const drillCallsOf = (h: ExecHarness) => h.downstream.calls.filter(isDrillCall);

/** Tenants of a wave, from the ledger. */
export const tenantsOfWave = (rows: LedgerRow[], wave: number) =>
  new Set(rows.filter((r) => r.wave === wave).map((r) => r.tenant_id));

/**
 * After a rollback: every item that received a soft-delete call is active again downstream and
 * `restored` in the ledger; every other item is still `pending` (never touched).
 *
 * `unrecorded`: the run was cut where it records outcomes (a PostgreSQL restart). An item marked
 * for its call whose outcome was never recorded may have been sent, as far as Blastgate can know:
 * the rollback restores it (README: a run met after an earlier run may have sent the item), so such
 * an item may read `restored` without a soft delete having reached the downstream, and its restore
 * call must then have left it as it was (active).
 */
export async function expectEverythingTouchedRestored(
  h: ExecHarness,
  opId: string,
  opts: { unrecorded?: boolean } = {},
) {
  const rows = await ledger(h, opId);
  const touched = new Set(softDeletesOf(h, rows).map((c) => c.resourceId!));
  expect(touched.size).toBeGreaterThan(0);
  const story = (id: string) =>
    `${id}: ledger ${rows.find((r) => r.resource_id === id)?.state}; calls ${JSON.stringify(h.downstream.calls.filter((c) => c.resourceId === id).map((c) => [c.action, c.status, c.at]))}`;
  for (const id of touched) expect(h.downstream.state(id), story(id)).toBe('active');
  for (const r of rows) {
    if (touched.has(r.resource_id)) expect(r.state, story(r.resource_id)).toBe('restored');
    else if (opts.unrecorded && r.state === 'restored') expect(h.downstream.state(r.resource_id)).toBe('active');
    else expect(r.state, story(r.resource_id)).toBe('pending');
  }
  const restores = h.downstream.calls.filter(
    (c) => c.action === 'restore' && touched.has(c.resourceId!) && c.status === 200,
  );
  expect(new Set(restores.map((c) => c.resourceId))).toEqual(touched);
  return { rows, touched };
}

/** Softdeletes sent after `at` (epoch ms). */
export const softDeletesAfter = (h: ExecHarness, rows: LedgerRow[], at: number) =>
  softDeletesOf(h, rows).filter((c) => c.at > at);

export interface Waiting {
  on: string;
  since: string;
  detail: string;
  items?: number;
  until?: string;
}

/**
 * Polls the operation's view until its `waiting` is `on`; returns it with what the live stream's
 * snapshot (events/feed.ts readLive) said right after, which must be the same.
 */
export async function waitForWaiting(h: ExecHarness, opId: string, on: string, what: string, timeoutMs = 20_000) {
  let seen: { waiting: Waiting; live: Waiting | null | undefined } | undefined;
  await until(
    async () => {
      const view = await request(h.app.server).get(`/v1/operations/${opId}`).set('authorization', h.auth('viewer'));
      if (view.body.waiting?.on !== on) return false;
      const live = await readLive(h.app.db.pool, opId, h.app.queueHolds);
      seen = { waiting: view.body.waiting, live: live?.waiting };
      return true;
    },
    what,
    timeoutMs,
  );
  return seen!;
}

/**
 * A worker of a process that dies with a chunk job in hand: it takes the next chunk job and never
 * finishes it, and is closed without a word to BullMQ, which keeps the job active under its lock (no
 * renewal: it lapses `lockMs` later). Its runner (`name`) has no lock session. Returns the job.
 */
export async function deadWorkerTakesChunk(h: ExecHarness, lockMs: number, name = randomUUID()) {
  const conn = createRedis(h.redisUrl, true);
  let job: Job<ChunkJob> | undefined;
  const dead = new Worker<ChunkJob>(
    QUEUE_NAMES.items,
    (j) => {
      job ??= j;
      return new Promise<void>(() => undefined);
    },
    { connection: conn, prefix: h.prefix, name, lockDuration: lockMs },
  );
  try {
    await until(async () => job !== undefined, 'the doomed worker to take the chunk job', 10_000);
    await dead.close(true);
  } finally {
    conn.disconnect();
  }
  return job!;
}
