// The cursors of the operation lists, checked before a page is read: a cursor is the key of the
// last row of a page the list gave (lib/list-query.ts says why anything else is refused). Rows of
// operations, their ledgers and their rejection reports are never deleted, so a cursor the list
// gave stays valid for good.
import { BadRequestError } from '../../lib/errors.ts';
import { invalidCursor } from '../../lib/list-query.ts';
import { MAX_INT4 } from '../../lib/schemas.ts';
import type { Queryable } from '../../lib/sql.ts';

async function exists(db: Queryable, sql: string, params: unknown[]) {
  const r = await db.query<{ found: boolean }>(`SELECT EXISTS (${sql}) AS found`, params);
  return r.rows[0]?.found === true;
}

/** GET /v1/operations: an operation ID (the list's key). */
export async function checkOperationCursor(db: Queryable, cursor: string | undefined) {
  if (cursor === undefined) return;
  if (!(await exists(db, 'SELECT 1 FROM operations WHERE id = $1', [cursor])))
    throw invalidCursor(cursor, 'an operation ID');
}

/** GET /v1/operations/{id}/tenants: a tenant of the operation's item ledger. */
export async function checkTenantCursor(db: Queryable, operationId: string, cursor: string | undefined) {
  if (cursor === undefined) return;
  // operation_tenants (keyed by operation and tenant) answers for a delete's plan at once; the
  // ledger, which has no index by tenant, only for the operations without those rows (restores,
  // purges) or a tenant that is in neither.
  const found =
    (await exists(db, 'SELECT 1 FROM operation_tenants WHERE operation_id = $1 AND tenant_id = $2', [
      operationId,
      cursor,
    ])) ||
    (await exists(db, 'SELECT 1 FROM operation_items WHERE operation_id = $1 AND tenant_id = $2', [
      operationId,
      cursor,
    ]));
  if (!found) throw invalidCursor(cursor, "a tenant ID of this operation's items");
}

/**
 * A position cursor as the list gives it: a decimal integer, written the one way String(n) writes
 * it. Read as a number by the schema, `0x5`, `1e0` and ` 5` were positions 5, 1 and 5, and `zzzz`
 * a VALIDATION_FAILED where every other list says INVALID_CURSOR.
 */
function position(cursor: string, gives: string): number {
  const n = /^(0|[1-9][0-9]{0,9})$/.test(cursor) ? Number(cursor) : NaN;
  if (!(n <= MAX_INT4)) throw invalidCursor(cursor, gives);
  return n;
}

const ITEM_GIVES = "the seq of one of this operation's items";
const REPORT_GIVES = "the index of one of this report's entries";

/** GET /v1/operations/{id}/items: the seq of one of the operation's items. */
export async function checkItemCursor(db: Queryable, operationId: string, cursor: string | undefined) {
  if (cursor === undefined) return undefined;
  const seq = position(cursor, ITEM_GIVES);
  if (!(await exists(db, 'SELECT 1 FROM operation_items WHERE operation_id = $1 AND seq = $2', [operationId, seq])))
    throw invalidCursor(cursor, ITEM_GIVES);
  return seq;
}

/** GET /v1/operations/{id}/report: the index of one of the rejection report's entries. */
export async function checkReportCursor(db: Queryable, operationId: string, cursor: string | undefined) {
  if (cursor === undefined) return undefined;
  const ordinal = position(cursor, REPORT_GIVES);
  const sql = 'SELECT 1 FROM operation_rejections WHERE operation_id = $1 AND ordinal = $2';
  if (!(await exists(db, sql, [operationId, ordinal]))) throw invalidCursor(cursor, REPORT_GIVES);
  return ordinal;
}

/**
 * GET /v1/operations/{id}/items?wave=: one of the operation's waves (numbered from 0, as `wave` in
 * the items and `currentWave` are). Another number is a mistake to say, not an empty page to show.
 */
export async function checkItemWave(db: Queryable, operationId: string, wave: number | undefined) {
  if (wave === undefined) return;
  const r = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM operation_waves WHERE operation_id = $1', [
    operationId,
  ]);
  const n = r.rows[0]!.n;
  if (wave < n) return;
  const has = n === 0 ? 'this operation has no waves' : `this operation's waves are 0 to ${n - 1} (numbered from 0)`;
  throw new BadRequestError('VALIDATION_FAILED', `Invalid querystring.wave: ${wave}: ${has}`, [
    { field: 'querystring.wave', message: has, value: wave },
  ]);
}
