// Staging of submitted IDs. An upload may take minutes to arrive; planning it must not hold a
// transaction (or a connection of the main pool) open meanwhile. So the IDs go first into a table
// of their own — UNLOGGED, in the upload_staging schema, written a batch at a time with one short
// COPY per batch on the uploads pool, outside any transaction — and the plan then reads them in
// one short transaction. The table is dropped when the request ends, however it ends; tables left
// by a process that died mid-upload are dropped by sweepStaleStaging once older than a request can
// live. (PostgreSQL itself empties UNLOGGED tables after its own crash.)
import { randomBytes } from 'node:crypto';
import { finished } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { RetryLaterError } from '../../lib/errors.ts';
import { isPoolExhausted } from '../../plugins/db.ts';

export const STAGING_SCHEMA = 'upload_staging';
// u_<creation time in base-36 epoch ms>_<random>: the sweeper reads a table's age from its name.
const NAME = /^u_([0-9a-z]+)_[0-9a-f]+$/;
// How long the sweeper waits for a table's lock: a table still being read is left for next time.
const SWEEP_LOCK_TIMEOUT = '2s';
const BUSY_RETRY_AFTER_S = 5;
// analyzeStaging samples 300 × this many rows: enough to tell "all distinct" from "many repeats".
const STATISTICS_TARGET = 10;

export interface StagingTable {
  name: string;
  /** Schema-qualified and quoted, for SQL. */
  sql: string;
}

export function newStagingTable(now = Date.now()): StagingTable {
  const name = `u_${now.toString(36)}_${randomBytes(6).toString('hex')}`;
  return { name, sql: `"${STAGING_SCHEMA}"."${name}"` };
}

/** A pooled connection, or 503 with Retry-After when the uploads pool stays full. */
async function connect(pool: pg.Pool): Promise<pg.PoolClient> {
  try {
    return await pool.connect();
  } catch (err) {
    if (!isPoolExhausted(err)) throw err;
    throw new RetryLaterError(
      503,
      'UPLOADS_BUSY',
      'Too many uploads are being written at once; retry later (with the same Idempotency-Key)',
      BUSY_RETRY_AFTER_S,
    );
  }
}

async function run(pool: pg.Pool, sql: string): Promise<void> {
  const client = await connect(pool);
  try {
    await client.query(sql);
  } finally {
    client.release();
  }
}

export async function createStagingTable(pool: pg.Pool, t: StagingTable): Promise<void> {
  // Read once and dropped: vacuuming it would be wasted work (analyzeStaging samples it once).
  await run(
    pool,
    `CREATE UNLOGGED TABLE ${t.sql} (ord int NOT NULL, id text NOT NULL) WITH (autovacuum_enabled = false);
     ALTER TABLE ${t.sql} ALTER COLUMN ord SET STATISTICS 0, ALTER COLUMN id SET STATISTICS ${STATISTICS_TARGET}`,
  );
}

/** One batch in COPY text format (`ord\tid\n` lines), on a connection held only for this COPY. */
export async function copyToStaging(pool: pg.Pool, t: StagingTable, rows: Buffer): Promise<void> {
  const client = await connect(pool);
  try {
    const copy = client.query(copyFrom(`COPY ${t.sql} (ord, id) FROM STDIN`));
    copy.end(rows);
    await finished(copy);
  } finally {
    client.release();
  }
}

/**
 * Statistics for the planner, once every batch is in. Never analysed, the table looks to it like
 * 200 distinct IDs whatever its size, and a 1M-ID plan then resolves the IDs one index probe at a
 * time instead of in one hash join. A small sample is enough: what matters is rows and distinctness.
 */
export async function analyzeStaging(pool: pg.Pool, t: StagingTable): Promise<void> {
  await run(pool, `ANALYZE ${t.sql}`);
}

/**
 * Runs `fn` inside the plan's transaction with the staged IDs visible as `plan_input` (what the
 * planner reads): a temporary view, dropped before the commit (a rollback drops it too). When the
 * request was `abandoned` meanwhile (answered 503 on its time limit), it throws: nothing commits.
 */
export async function withPlanInput<T>(
  client: pg.PoolClient,
  t: StagingTable,
  fn: () => Promise<T>,
  abandoned?: () => boolean,
): Promise<T> {
  await client.query(`CREATE TEMP VIEW plan_input AS SELECT ord, id FROM ${t.sql}`);
  const result = await fn();
  await client.query('DROP VIEW plan_input');
  if (abandoned?.()) throw abandonedError();
  return result;
}

export const abandonedError = () =>
  new Error('the request was answered on its time limit before the plan committed: rolled back');

export async function dropStagingTable(pool: pg.Pool, t: StagingTable): Promise<void> {
  await run(pool, `DROP TABLE IF EXISTS ${t.sql}`);
}

/**
 * Drops staging tables created more than `olderThanMs` ago: uploads of a process that died. Any
 * replica may run it at any time; a table whose lock is held (still being planned) is skipped.
 */
export async function sweepStaleStaging(pool: pg.Pool, olderThanMs: number, now = Date.now()): Promise<string[]> {
  const tables = await pool.query<{ name: string }>(`SELECT tablename AS name FROM pg_tables WHERE schemaname = $1`, [
    STAGING_SCHEMA,
  ]);
  const dropped: string[] = [];
  for (const { name } of tables.rows) {
    const m = NAME.exec(name);
    if (!m || now - parseInt(m[1]!, 36) < olderThanMs) continue;
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(`SET LOCAL lock_timeout = '${SWEEP_LOCK_TIMEOUT}'`);
      await client.query(`DROP TABLE IF EXISTS "${STAGING_SCHEMA}"."${name}"`);
      await client.query('COMMIT');
      dropped.push(name);
    } catch {
      await client.query('ROLLBACK').catch(() => undefined);
    } finally {
      client.release();
    }
  }
  return dropped;
}
