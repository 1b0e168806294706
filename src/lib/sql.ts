// What data-access functions need from Postgres: either the pool or a client inside a transaction.
import type pg from 'pg';

export type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

/**
 * For one statement of a transaction: joins by nested loops only (an index probe per outer row),
 * where PostgreSQL would hash the whole inner table; and PostgreSQL's choice again after it.
 */
export const NESTED_LOOPS = `SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off`;
export const NESTED_LOOPS_END = `SET LOCAL enable_hashjoin TO DEFAULT; SET LOCAL enable_mergejoin TO DEFAULT`;

/** A table's row count as ANALYZE last counted it (pg_class.reltuples); -1 when never analysed. */
export async function estimatedRows(db: Queryable, table: string): Promise<number> {
  const r = await db.query<{ rows: number }>(
    `SELECT reltuples::float8 AS rows FROM pg_class WHERE oid = $1::regclass`,
    [table],
  );
  return r.rows[0]?.rows ?? 0;
}

/** Runs `fn` in one transaction on one pooled client; rolls back on any error. */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/**
 * Per-row values of an UPDATE over ledger rows, laid out by seq: `($n::type[])[i.seq - $from + 1]`
 * finds a row's value in O(1), where `array_position($seqs, i.seq)` scans the list for every use
 * (quadratic: ~12 ms of a 500-item chunk's ledger write, ~4 ms laid out by seq). Joining the rows
 * with unnest() instead made the planner loop over every value per row (see ledger.ts). The bounds
 * are found once; `lay` then lays out each list of values (one per seq, in the order of `seqs`).
 * Seqs not in `seqs` are null; `from` is the smallest seq, `to` the largest.
 */
export function seqLayout(seqs: readonly number[]): {
  from: number;
  to: number;
  lay: <T>(values: readonly T[]) => (T | null)[];
} {
  if (seqs.length === 0) return { from: 0, to: -1, lay: () => [] };
  let from = seqs[0]!;
  let to = from;
  for (const s of seqs) {
    if (s < from) from = s;
    if (s > to) to = s;
  }
  const lay = <T>(values: readonly T[]) => {
    const out = new Array<T | null>(to - from + 1).fill(null);
    seqs.forEach((s, k) => (out[s - from] = values[k]!));
    return out;
  };
  return { from, to, lay };
}
