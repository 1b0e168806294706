// A database remembers the fingerprint of the master key its snapshots were written under: a process
// started with another key refuses to start instead of failing every restore later.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ConfigError } from '../../src/config.ts';
import { checkSnapshotKey, keyFingerprint } from '../../src/modules/snapshots/key-check.ts';
import { createTestDatabase } from '../support/db.ts';

let pool: pg.Pool;
beforeAll(async () => {
  pool = new pg.Pool({ connectionString: await createTestDatabase(), max: 4 });
});
afterAll(async () => {
  await pool?.end();
});

it('records the first key, accepts it again, refuses any other, and stores no key', async () => {
  const key = randomBytes(32);
  // Two processes starting at once on a new database agree on one key.
  await Promise.all([checkSnapshotKey(pool, key), checkSnapshotKey(pool, key)]);
  await checkSnapshotKey(pool, key);
  const other = checkSnapshotKey(pool, randomBytes(32));
  await expect(other).rejects.toBeInstanceOf(ConfigError);
  await expect(other).rejects.toThrow(/BLASTGATE_SNAPSHOT_KEY is not the key this database was written with/);
  const stored = (await pool.query(`SELECT value::text AS v FROM settings WHERE key = 'snapshot_key'`)).rows[0].v;
  expect(JSON.parse(stored)).toEqual({ fingerprint: keyFingerprint(key) });
  expect(stored).not.toContain(key.toString('hex'));
  expect(stored).not.toContain(key.toString('base64'));
});
