// IDs (resources, tenants, operations) are opaque strings that Blastgate only compares for
// equality and order. Under a linguistic collation every comparison goes through the C library's
// locale code, and PostgreSQL cannot shorten sort keys: a 100k-ID plan's classify stage took
// 300 ms against 350–400 ms, and a 1M-ID plan's lock rows 1.65–1.72 s against 1.94–1.99 s, with
// LC_COLLATE C (interleaved `npm run bench -- plan`, 2026-12-07). The embedded PostgreSQL is created
// so; a database given by DATABASE_URL is what its owner made it, so the start says which it is.
import type pg from 'pg';

/** Collations that compare bytes: PostgreSQL's fast path. */
const BYTEWISE = new Set(['C', 'POSIX']);

/** The start-up hint for a database whose collation is not bytewise; null when it is. */
export function collationHint(collation: string): string | null {
  if (BYTEWISE.has(collation)) return null;
  return (
    `the database compares text under the collation "${collation}": plans run ~10% faster in a database ` +
    `created with LC_COLLATE 'C' (README, Production: PostgreSQL's collation)`
  );
}

export async function databaseCollation(pool: Pick<pg.Pool, 'query'>): Promise<string> {
  const r = await pool.query<{ collation: string }>(
    `SELECT datcollate AS collation FROM pg_database WHERE datname = current_database()`,
  );
  return r.rows[0]?.collation ?? '';
}
