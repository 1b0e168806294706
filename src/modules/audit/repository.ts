// The audit log is append-only (database triggers forbid UPDATE, DELETE and TRUNCATE) and each
// event's hash covers the previous event's hash, so any edit or removal breaks the chain.
import { createHash } from 'node:crypto';
import { canonicalJson } from '../../lib/canonical-json.ts';
import type pg from 'pg';
import { inTransaction, type Queryable } from '../../lib/sql.ts';

/** Every outcome an audit event records. */
export const AUDIT_OUTCOMES = ['accepted', 'refused', 'info'] as const;

export interface AuditInput {
  actor: string;
  action: string;
  outcome: (typeof AUDIT_OUTCOMES)[number];
  operationId?: string | null;
  payload?: Record<string, unknown>;
}

export interface AuditRow {
  seq: number;
  at: string;
  actor: string;
  action: string;
  outcome: string;
  operationId: string | null;
  payload: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

export const GENESIS_HASH = '0'.repeat(64);
// Serialises appends so that each event chains onto exactly one predecessor.
export const AUDIT_CHAIN_LOCK = 7_342_002;

/** What an event's hash covers after the previous hash: its fields as canonical JSON. */
function eventBody(e: Omit<AuditRow, 'seq' | 'prevHash' | 'hash'>): string {
  return canonicalJson({
    at: e.at,
    actor: e.actor,
    action: e.action,
    outcome: e.outcome,
    operationId: e.operationId,
    payload: e.payload,
  });
}

const chainHash = (prevHash: string, body: string) => createHash('sha256').update(`${prevHash}\n${body}`).digest('hex');

export function eventHash(prevHash: string, e: Omit<AuditRow, 'seq' | 'prevHash' | 'hash'>): string {
  return chainHash(prevHash, eventBody(e));
}

/**
 * Appends one event. Call inside the transaction that makes the change it records, so that the
 * change and its audit event commit together; the chain lock is held from the read of the last
 * hash to that commit. The client must be in a transaction: on a bare pool every statement would
 * commit on its own connection and the lock would be gone before the read (a forked chain).
 *
 * `chainLocked`: an earlier statement of this transaction took AUDIT_CHAIN_LOCK (the engine takes
 * it with its state update), so this is one round trip. Each round trip of a command waits its turn
 * on an API event loop busy with reads (a pause under 500 GET/s: ~10 of them, ~15 ms each), so the
 * last hash is read by the INSERT itself and the hash made there: PostgreSQL's sha256 over the same
 * UTF-8 bytes as eventHash. Its statement starts after the lock is held, so its snapshot sees the
 * newest event (a lock taken inside this same statement would not: its snapshot is older). The
 * hash is checked against eventHash before the commit, so the SQL can never write a chain that
 * does not verify.
 */
export async function appendAudit(
  tx: pg.PoolClient,
  input: AuditInput,
  o: { chainLocked?: boolean } = {},
): Promise<void> {
  if (!o.chainLocked) await tx.query('SELECT pg_advisory_xact_lock($1)', [AUDIT_CHAIN_LOCK]);
  const e = {
    at: new Date().toISOString(),
    actor: input.actor,
    action: input.action,
    outcome: input.outcome,
    operationId: input.operationId ?? null,
    payload: input.payload ?? {},
  };
  const body = eventBody(e);
  const r = await tx.query<{ prev_hash: string; hash: string }>(
    `INSERT INTO audit_events (at, actor, action, outcome, operation_id, payload, prev_hash, hash)
     SELECT $1::timestamptz, $2::text, $3::text, $4::text, $5::text, $6::jsonb, p.h,
       encode(sha256(convert_to(p.h || E'\\n' || $7::text, 'UTF8')), 'hex')
     FROM (SELECT coalesce((SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1), $8::text) AS h) p
     RETURNING prev_hash, hash`,
    [e.at, e.actor, e.action, e.outcome, e.operationId, JSON.stringify(e.payload), body, GENESIS_HASH],
  );
  const row = r.rows[0]!;
  if (row.hash !== chainHash(row.prev_hash, body))
    throw new Error(`audit event hashed by the database as ${row.hash}, not as the chain verifies it: not appended`);
}

/** An event that records no other change of its own (a refused request): one transaction for it alone. */
export function auditAlone(pool: pg.Pool, input: AuditInput): Promise<void> {
  return inTransaction(pool, (tx) => appendAudit(tx, input));
}

const toRow = (r: Record<string, unknown>): AuditRow => ({
  seq: Number(r.seq),
  at: (r.at as Date).toISOString(),
  actor: r.actor as string,
  action: r.action as string,
  outcome: r.outcome as string,
  operationId: (r.operation_id as string | null) ?? null,
  payload: r.payload as Record<string, unknown>,
  prevHash: r.prev_hash as string,
  hash: r.hash as string,
});

/** A LIKE pattern that matches `prefix` and anything after it (its own `%`, `_` and `\\` literal). */
const likePrefix = (prefix: string) => `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

export async function listAudit(
  db: Queryable,
  q: { after?: number; limit: number; operationId?: string; action?: string[]; actor?: string[]; outcome?: string[] },
) {
  // An action ending in `*` is a prefix (`registry.*`); any other is matched exactly.
  const exact = q.action?.filter((a) => !a.endsWith('*'));
  const prefixes = q.action?.filter((a) => a.endsWith('*')).map((a) => likePrefix(a.slice(0, -1)));
  const res = await db.query(
    `SELECT * FROM audit_events WHERE seq > $1 AND ($2::text IS NULL OR operation_id = $2)
       AND ($4::text[] IS NULL OR action = ANY($4) OR action LIKE ANY($5::text[]))
       AND ($6::text[] IS NULL OR actor = ANY($6)) AND ($7::text[] IS NULL OR outcome = ANY($7))
     ORDER BY seq LIMIT $3`,
    [q.after ?? 0, q.operationId ?? null, q.limit, exact ?? null, prefixes ?? [], q.actor ?? null, q.outcome ?? null],
  );
  return res.rows.map(toRow);
}

/** Walks the whole chain in pages; reports the first event whose link or hash does not hold. */
export async function verifyAudit(db: Queryable, pageSize = 5000) {
  let prevHash = GENESIS_HASH;
  let after = 0;
  let checked = 0;
  for (;;) {
    const res = await db.query('SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2', [after, pageSize]);
    if (res.rows.length === 0) break;
    for (const raw of res.rows) {
      const r = toRow(raw);
      if (r.prevHash !== prevHash)
        return { valid: false, checked, brokenAt: r.seq, reason: 'prev_hash does not match the previous event' };
      if (eventHash(prevHash, r) !== r.hash)
        return { valid: false, checked, brokenAt: r.seq, reason: 'hash does not match the event content' };
      prevHash = r.hash;
      after = r.seq;
      checked++;
    }
  }
  return { valid: true, checked, brokenAt: null, reason: null, head: prevHash };
}
