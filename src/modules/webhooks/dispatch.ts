// The dispatcher: turns audit events into deliveries. It reads audit_events after a durable cursor
// (settings key `webhook_cursor`), and in ONE transaction records a delivery per event and matching
// endpoint and moves the cursor past what it read: a crash before the commit reads the same events
// again, one after it has the deliveries on record (a unique key makes a repeat add nothing). The
// queue jobs are added after the commit; a delivery whose job was lost (crash, Redis restart) is
// still `pending` and re-armed by a later pass. One dispatcher at a time across every worker
// process (a transaction-scoped advisory lock; the others skip the pass).
//
// Why a seq cursor cannot skip an event: appendAudit takes the chain lock before the INSERT that
// draws the seq and holds it to commit, so audit events become visible in seq order.
import type pg from 'pg';
import { inTransaction, type Queryable } from '../../lib/sql.ts';
import { buildEvents, matches, type AuditSource } from './events.ts';

const DISPATCH_LOCK = 7_342_020; // one webhook dispatcher at a time
const CURSOR_KEY = 'webhook_cursor';
/** Audit events read per pass: bounds the transaction; a backlog drains over several passes. */
export const DISPATCH_BATCH = 500;

/** Creates the cursor at `seq` unless it exists (the first endpoint starts it at "now"). */
export async function ensureCursor(tx: Queryable, seq: number, by: string) {
  await tx.query(`INSERT INTO settings (key, value, updated_by) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING`, [
    CURSOR_KEY,
    JSON.stringify({ seq }),
    by,
  ]);
}

interface EndpointFilter {
  id: string;
  events: string[];
  sinceSeq: number;
}

async function readSources(tx: Queryable, after: number, limit: number): Promise<AuditSource[]> {
  const r = await tx.query(
    `SELECT a.seq, a.at, a.actor, a.action, a.operation_id, a.payload,
            o.action AS kind, o.state, o.target_type, o.item_count, o.tenant_count, o.ticket, o.reason,
            o.requested_by_name, o.halt_reason, jsonb_array_length(o.plan->'waves') AS wave_count
       FROM audit_events a LEFT JOIN operations o ON o.id = a.operation_id
      WHERE a.seq > $1 ORDER BY a.seq LIMIT $2`,
    [after, limit],
  );
  return r.rows.map((row) => ({
    seq: Number(row.seq),
    at: (row.at as Date).toISOString(),
    actor: row.actor,
    action: row.action,
    operationId: row.operation_id ?? null,
    payload: row.payload ?? {},
    operation:
      row.kind == null
        ? null
        : {
            kind: row.kind,
            state: row.state,
            targetType: row.target_type,
            itemCount: row.item_count,
            tenantCount: row.tenant_count,
            waveCount: row.wave_count ?? null,
            ticket: row.ticket,
            reason: row.reason,
            requestedBy: row.requested_by_name,
            haltReason: row.halt_reason ?? null,
          },
  }));
}

/** A delivery to queue; its endpoint goes on the job, for the per-endpoint bound (endpoint-gate.ts). */
export interface Queued {
  id: string;
  endpointId: string;
}

export interface Dispatched {
  /** Audit events read this pass (0: nothing new, or another process holds the dispatcher lock). */
  read: number;
  /** Deliveries recorded this pass, to queue. */
  deliveries: Queued[];
}

export async function dispatchOnce(pool: pg.Pool, batch = DISPATCH_BATCH): Promise<Dispatched> {
  return inTransaction(pool, async (tx) => {
    const lock = await tx.query<{ ok: boolean }>('SELECT pg_try_advisory_xact_lock($1) AS ok', [DISPATCH_LOCK]);
    if (!lock.rows[0]!.ok) return { read: 0, deliveries: [] };
    const cur = await tx.query<{ value: { seq: number } }>(`SELECT value FROM settings WHERE key = $1`, [CURSOR_KEY]);
    // No cursor: no endpoint was ever registered, so there is nothing to send.
    if (!cur.rows[0]) return { read: 0, deliveries: [] };
    const sources = await readSources(tx, Number(cur.rows[0].value.seq), batch);
    if (sources.length === 0) return { read: 0, deliveries: [] };
    const eps = await tx.query(
      `SELECT id, events, since_seq FROM webhook_endpoints WHERE enabled AND deleted_at IS NULL`,
    );
    const endpoints: EndpointFilter[] = eps.rows.map((e) => ({
      id: e.id,
      events: e.events ?? [],
      sinceSeq: Number(e.since_seq),
    }));
    const rows: { endpoint: string; seq: number; id: string; type: string; op: string | null; body: string }[] = [];
    for (const s of sources) {
      const targets = endpoints.filter((e) => s.seq > e.sinceSeq);
      if (targets.length === 0) continue;
      for (const ev of buildEvents(s)) {
        for (const e of targets) {
          if (!matches(e.events, ev.type)) continue;
          rows.push({
            endpoint: e.id,
            seq: s.seq,
            id: ev.id,
            type: ev.type,
            op: s.operationId,
            body: JSON.stringify(ev.body),
          });
        }
      }
    }
    let deliveries: Queued[] = [];
    if (rows.length) {
      const ins = await tx.query<{ id: string; endpoint_id: string }>(
        `INSERT INTO webhook_deliveries (endpoint_id, audit_seq, event_id, event_type, operation_id, payload)
         SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::jsonb[])
         ON CONFLICT (endpoint_id, audit_seq, event_type) DO NOTHING RETURNING id, endpoint_id`,
        [
          rows.map((r) => r.endpoint),
          rows.map((r) => r.seq),
          rows.map((r) => r.id),
          rows.map((r) => r.type),
          rows.map((r) => r.op),
          rows.map((r) => r.body),
        ],
      );
      deliveries = ins.rows.map((r) => ({ id: String(r.id), endpointId: r.endpoint_id }));
    }
    await tx.query(`UPDATE settings SET value = $2, updated_at = now() WHERE key = $1`, [
      CURSOR_KEY,
      JSON.stringify({ seq: sources[sources.length - 1]!.seq }),
    ]);
    return { read: sources.length, deliveries };
  });
}

/**
 * Pending deliveries not touched for `staleMs`: their queue job may be gone (a crash between the
 * commit and the enqueue, a Redis restart). Queuing them again is harmless: a job that still
 * exists keeps its ID, so the add is a no-op.
 */
export async function stalePending(db: Queryable, staleMs: number, limit = 1000): Promise<Queued[]> {
  const r = await db.query<{ id: string; endpoint_id: string }>(
    `SELECT id, endpoint_id FROM webhook_deliveries
      WHERE status = 'pending' AND updated_at < now() - make_interval(secs => $1::double precision / 1000)
      ORDER BY id LIMIT $2`,
    [staleMs, limit],
  );
  return r.rows.map((x) => ({ id: String(x.id), endpointId: x.endpoint_id }));
}

/**
 * Queues the redeliveries an admin asked for (repository.ts redeliver), and only then unmarks
 * them: with Redis away the enqueue fails, the marks stay, and the next pass (a poll later) tries
 * again, not the stale-pending pass a minute later. Two dispatchers may queue one at once: its job
 * ID is the delivery's, so the second add is a no-op. One no longer pending (its endpoint disabled
 * since) is only unmarked, and so is none asked for again meanwhile (that mark is the next pass's).
 * Returns how many it queued.
 */
export async function queueRedeliveries(
  db: Queryable,
  enqueue: (ds: Queued[]) => Promise<void>,
  batch = 1000,
): Promise<number> {
  let queued = 0;
  for (let after = '0'; ;) {
    const r = await db.query<{ id: string; endpoint_id: string; status: string; redeliver_at: Date }>(
      // ORDER BY d.id, the number: by the text column, the cursor skipped ids ("1000" < "301").
      `SELECT d.id::text AS id, d.endpoint_id, d.status, d.redeliver_at FROM webhook_deliveries d
        WHERE d.redeliver_at IS NOT NULL AND d.id > $1::bigint ORDER BY d.id LIMIT $2`,
      [after, batch],
    );
    if (r.rows.length === 0) return queued;
    const queue = r.rows.filter((x) => x.status === 'pending').map((x) => ({ id: x.id, endpointId: x.endpoint_id }));
    if (queue.length) await enqueue(queue);
    await db.query(
      `UPDATE webhook_deliveries d SET redeliver_at = NULL FROM unnest($1::bigint[], $2::timestamptz[]) AS u(id, at)
        WHERE d.id = u.id AND d.redeliver_at = u.at`,
      [r.rows.map((x) => x.id), r.rows.map((x) => x.redeliver_at)],
    );
    queued += queue.length;
    if (r.rows.length < batch) return queued;
    after = r.rows[r.rows.length - 1]!.id;
  }
}

/**
 * An earlier delivery of `endpoint` than `id` is pending and not tried in its current series: it goes
 * first (endpoint-gate.ts). One that was tried and waits for its retry does not hold later ones up.
 * Through the partial index of pending deliveries (a scan of the endpoint's history otherwise).
 */
export async function earlierUntried(db: Queryable, endpoint: string, id: string): Promise<boolean> {
  const r = await db.query(
    `SELECT 1 FROM webhook_deliveries
      WHERE endpoint_id = $1 AND status = 'pending' AND id < $2::bigint AND attempts = attempt_base LIMIT 1`,
    [endpoint, id],
  );
  return r.rows.length > 0;
}
