// The master key a database's snapshots were written under, checked at every start. A process
// started with another key (a regenerated data folder secret, a wrong value from a secret store)
// would write snapshots that the other processes cannot read and could read none of the earlier
// ones: every rollback would then fail with snapshot_corrupt long after the delete. Refusing to
// start says so at once. The database keeps only a fingerprint (an HMAC under the key), never the key.
import { createHmac } from 'node:crypto';
import { ConfigError } from '../../config.ts';
import type { Queryable } from '../../lib/sql.ts';

const SETTING = 'snapshot_key';
const CONTEXT = 'blastgate snapshot master key fingerprint v1';

export const keyFingerprint = (master: Buffer) => createHmac('sha256', master).update(CONTEXT).digest('hex');

/** Records the key's fingerprint on first use; throws ConfigError when the database knows another. */
export async function checkSnapshotKey(db: Queryable, master: Buffer): Promise<void> {
  const fingerprint = keyFingerprint(master);
  // Two processes starting at once on a new database: the first insert wins, both read it back.
  await db.query(
    `INSERT INTO settings (key, value, updated_by) VALUES ($1, $2, 'system') ON CONFLICT (key) DO NOTHING`,
    [SETTING, JSON.stringify({ fingerprint })],
  );
  const r = await db.query<{ value: { fingerprint?: string } }>(`SELECT value FROM settings WHERE key = $1`, [SETTING]);
  if (r.rows[0]?.value.fingerprint !== fingerprint)
    throw new ConfigError([
      'BLASTGATE_SNAPSHOT_KEY is not the key this database was written with: its snapshots could not be read back, and new ones would be unreadable to the processes that have the right key. Start with the original key (changing keys is not supported yet)',
    ]);
}
