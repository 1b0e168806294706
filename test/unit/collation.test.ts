// The start-up hint about the database's collation (src/db/collation.ts), and that the test
// suite's PostgreSQL compares IDs as the embedded one does.
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { collationHint, databaseCollation } from '../../src/db/collation.ts';
import { createTestDatabase } from '../support/db.ts';

describe('the database collation hint', () => {
  it('says nothing for a bytewise collation', () => {
    expect(collationHint('C')).toBeNull();
    expect(collationHint('POSIX')).toBeNull();
  });

  it('names a linguistic collation and the way to a faster one', () => {
    expect(collationHint('en_US.UTF-8')).toBe(
      `the database compares text under the collation "en_US.UTF-8": plans run ~10% faster in a database ` +
        `created with LC_COLLATE 'C' (README, Production: PostgreSQL's collation)`,
    );
    expect(collationHint('C.UTF-8')).toContain('"C.UTF-8"');
  });
});

describe("the test suite's PostgreSQL (initdb as the embedded one)", () => {
  it('compares bytewise (LC_COLLATE C) and keeps Unicode character classes and case (LC_CTYPE C.UTF-8)', async () => {
    const pool = new pg.Pool({ connectionString: await createTestDatabase(), max: 1 });
    try {
      expect(await databaseCollation(pool)).toBe('C');
      const r = await pool.query<{ alpha: boolean; lower: string; order: boolean }>(
        `SELECT 'é' ~ '^[[:alpha:]]$' AS alpha, lower('ÉA') AS lower, 'B' < 'a' AS order`,
      );
      expect(r.rows[0]).toEqual({ alpha: true, lower: 'éa', order: true });
    } finally {
      await pool.end();
    }
  });
});
