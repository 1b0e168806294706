// Webhook endpoints and their delivery log (plain SQL, like the rest of the write paths).
import type { Queryable } from '../../lib/sql.ts';

export interface EndpointRow {
  id: string;
  url: string;
  description: string | null;
  format: 'standard' | 'slack';
  events: string[];
  enabled: boolean;
  createdBy: string;
  createdAt: string;
  updatedAt: string;
  deletedAt: string | null;
}

export interface DeliveryRow {
  id: string;
  eventId: string;
  eventType: string;
  operationId: string | null;
  status: string;
  attempts: number;
  lastStatusCode: number | null;
  lastError: string | null;
  createdAt: string;
  updatedAt: string;
  deliveredAt: string | null;
  failedAt: string | null;
}

const iso = (v: unknown) => (v instanceof Date ? v.toISOString() : null);

const toEndpoint = (r: Record<string, unknown>): EndpointRow => ({
  id: r.id as string,
  url: r.url as string,
  description: (r.description as string | null) ?? null,
  format: r.format as EndpointRow['format'],
  events: (r.events as string[] | null) ?? [],
  enabled: r.enabled as boolean,
  createdBy: r.created_by as string,
  createdAt: iso(r.created_at)!,
  updatedAt: iso(r.updated_at)!,
  deletedAt: iso(r.deleted_at),
});

const toDelivery = (r: Record<string, unknown>): DeliveryRow => ({
  id: String(r.id),
  eventId: r.event_id as string,
  eventType: r.event_type as string,
  operationId: (r.operation_id as string | null) ?? null,
  status: r.status as string,
  attempts: r.attempts as number,
  lastStatusCode: (r.last_status_code as number | null) ?? null,
  lastError: (r.last_error as string | null) ?? null,
  createdAt: iso(r.created_at)!,
  updatedAt: iso(r.updated_at)!,
  deliveredAt: iso(r.delivered_at),
  failedAt: iso(r.failed_at),
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ENDPOINT_COLUMNS = `id, url, description, format, events, enabled, created_by, created_at, updated_at, deleted_at`;

/** The newest audit seq: an endpoint receives only what happens after it was set up. */
export async function headSeq(db: Queryable): Promise<number> {
  const r = await db.query<{ seq: string }>('SELECT coalesce(max(seq), 0) AS seq FROM audit_events');
  return Number(r.rows[0]!.seq);
}

export async function insertEndpoint(
  db: Queryable,
  e: {
    id: string;
    url: string;
    description: string | null;
    format: string;
    events: string[];
    enabled: boolean;
    sealed: Buffer;
    sinceSeq: number;
    createdBy: string;
  },
): Promise<EndpointRow> {
  const r = await db.query(
    `INSERT INTO webhook_endpoints (id, url, description, format, events, enabled, secret_sealed, since_seq, created_by)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ${ENDPOINT_COLUMNS}`,
    [e.id, e.url, e.description, e.format, e.events, e.enabled, e.sealed, e.sinceSeq, e.createdBy],
  );
  return toEndpoint(r.rows[0]);
}

export async function listEndpoints(db: Queryable, includeDeleted: boolean): Promise<EndpointRow[]> {
  const r = await db.query(
    `SELECT ${ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE $1 OR deleted_at IS NULL ORDER BY created_at, id`,
    [includeDeleted],
  );
  return r.rows.map(toEndpoint);
}

export interface DeliveryCounts {
  pending: number;
  failed: number;
  lastFailedAt: string | null;
}

/** Where each endpoint's deliveries stand (pending and failed ones are few next to delivered ones). */
export async function withDeliveryCounts<E extends { id: string }>(
  db: Queryable,
  endpoints: E[],
): Promise<(E & { deliveries: DeliveryCounts })[]> {
  const r = await db.query<{ endpoint_id: string; pending: number; failed: number; last_failed_at: Date | null }>(
    `SELECT endpoint_id, count(*) FILTER (WHERE status = 'pending')::int AS pending,
            count(*) FILTER (WHERE status = 'failed')::int AS failed,
            max(failed_at) FILTER (WHERE status = 'failed') AS last_failed_at
       FROM webhook_deliveries WHERE endpoint_id = ANY($1::uuid[]) AND status IN ('pending', 'failed')
      GROUP BY endpoint_id`,
    [endpoints.map((e) => e.id)],
  );
  const by = new Map(r.rows.map((x) => [x.endpoint_id, x]));
  return endpoints.map((e) => {
    const c = by.get(e.id);
    return {
      ...e,
      deliveries: { pending: c?.pending ?? 0, failed: c?.failed ?? 0, lastFailedAt: iso(c?.last_failed_at) },
    };
  });
}

/** One endpoint; `lock` takes its row lock (changes are serialised per endpoint). */
export async function getEndpoint(db: Queryable, id: string, lock = false): Promise<EndpointRow | null> {
  // Endpoint IDs are UUIDs: any other ID names no endpoint (and must not reach a uuid column).
  if (!UUID.test(id)) return null;
  const r = await db.query(
    `SELECT ${ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1${lock ? ' FOR UPDATE' : ''}`,
    [id],
  );
  return r.rows[0] ? toEndpoint(r.rows[0]) : null;
}

export async function updateEndpoint(
  db: Queryable,
  id: string,
  set: {
    url?: string;
    description?: string | null;
    format?: string;
    events?: string[];
    enabled?: boolean;
    sealed?: Buffer;
    sinceSeq?: number;
    deleted?: boolean;
  },
): Promise<EndpointRow> {
  const r = await db.query(
    `UPDATE webhook_endpoints SET
       url = coalesce($2, url),
       description = CASE WHEN $3::boolean THEN $4 ELSE description END,
       format = coalesce($5, format),
       events = coalesce($6, events),
       enabled = CASE WHEN $10::boolean THEN false ELSE coalesce($7, enabled) END,
       secret_sealed = coalesce($8, secret_sealed),
       since_seq = coalesce($9, since_seq),
       deleted_at = CASE WHEN $10::boolean THEN now() ELSE deleted_at END,
       updated_at = now()
     WHERE id = $1 RETURNING ${ENDPOINT_COLUMNS}`,
    [
      id,
      set.url ?? null,
      set.description !== undefined,
      set.description ?? null,
      set.format ?? null,
      set.events ?? null,
      set.enabled ?? null,
      set.sealed ?? null,
      set.sinceSeq ?? null,
      set.deleted === true,
    ],
  );
  return toEndpoint(r.rows[0]);
}

/** Deliveries of a deleted or disabled endpoint that were still waiting: they will not be sent. */
export async function cancelPending(db: Queryable, endpointId: string, why: string): Promise<number> {
  const r = await db.query(
    `UPDATE webhook_deliveries SET status = 'cancelled', last_error = $2, updated_at = now()
      WHERE endpoint_id = $1 AND status = 'pending'`,
    [endpointId, why],
  );
  return r.rowCount ?? 0;
}

export async function listDeliveries(
  db: Queryable,
  endpointId: string,
  q: { after?: number; limit: number; status?: string },
): Promise<DeliveryRow[]> {
  const r = await db.query(
    `SELECT * FROM webhook_deliveries
      WHERE endpoint_id = $1 AND id > $2 AND ($3::text IS NULL OR status = $3)
      ORDER BY id LIMIT $4`,
    [endpointId, q.after ?? 0, q.status ?? null, q.limit],
  );
  return r.rows.map(toDelivery);
}

/** How many failed deliveries one redelivery without IDs takes up (the answer says when more are left). */
export const REDELIVER_MAX = 1000;

/** Deliveries named in a redelivery that it may not take, by why. */
export interface RedeliverRefusal {
  /** Not deliveries of this endpoint. */
  unknown: string[];
  /** Pending (still being tried) or delivered: nothing to send again. */
  notEnded: { id: string; status: string }[];
}

/**
 * Puts deliveries of `endpointId` back to pending with a fresh series of attempts, marked for the
 * dispatcher to queue (dispatch.ts queueRedeliveries). `ids`: those (failed or cancelled ones only;
 * any other is refused and nothing changes); null: the oldest REDELIVER_MAX failed ones. Runs in
 * the caller's transaction, under the endpoint's row lock.
 */
export async function redeliver(
  db: Queryable,
  endpointId: string,
  ids: string[] | null,
): Promise<{ ids: string[]; more: boolean } | { refused: RedeliverRefusal }> {
  if (ids) {
    const found = await db.query<{ id: string; status: string }>(
      `SELECT id::text, status FROM webhook_deliveries WHERE endpoint_id = $1 AND id = ANY($2::bigint[]) FOR UPDATE`,
      [endpointId, ids],
    );
    const status = new Map(found.rows.map((r) => [r.id, r.status]));
    const unknown = ids.filter((id) => !status.has(id));
    const notEnded = found.rows.filter((r) => r.status === 'pending' || r.status === 'delivered');
    if (unknown.length || notEnded.length) return { refused: { unknown, notEnded } };
  }
  // Named: those (all failed or cancelled, checked above); else the oldest failed ones.
  const r = await db.query<{ id: string }>(
    `UPDATE webhook_deliveries SET status = 'pending', attempt_base = attempts, redeliver_at = now(), failed_at = NULL,
       updated_at = now()
      WHERE id IN (SELECT id FROM webhook_deliveries
                    WHERE endpoint_id = $1 AND CASE WHEN $2::bigint[] IS NULL THEN status = 'failed'
                      ELSE id = ANY($2::bigint[]) AND status IN ('failed', 'cancelled') END
                    ORDER BY id LIMIT $3 FOR UPDATE)
      RETURNING id::text`,
    [endpointId, ids, ids ? ids.length : REDELIVER_MAX],
  );
  const taken = r.rows.map((x) => x.id).sort((a, b) => Number(a) - Number(b));
  if (ids) return { ids: taken, more: false };
  const left = await db.query(`SELECT 1 FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'failed' LIMIT 1`, [
    endpointId,
  ]);
  return { ids: taken, more: (left.rowCount ?? 0) > 0 };
}
