// The snapshot store on real PostgreSQL: encrypted content in the snapshot row (and the content of
// snapshots written before, in snapshot_contents, still read), insert-only (the triggers refuse
// changes), verified on read (tampered content is snapshot_corrupt, never data), and erasable only
// by destroying the resource's key.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inTransaction } from '../../src/lib/sql.ts';
import { snapshotStore } from '../../src/modules/snapshots/store.ts';
import { createTestDatabase } from '../support/db.ts';

const MASTER = randomBytes(32);
const store = snapshotStore(MASTER);
let pool: pg.Pool;
beforeAll(async () => {
  pool = new pg.Pool({ connectionString: await createTestDatabase(), max: 4 });
});
afterAll(async () => {
  await pool?.end();
});

const put = (op: string, inputs: { resourceId: string; tenantId: string; data: unknown }[]) =>
  inTransaction(pool, (tx) => store.put(tx, op, inputs));
const count = async (table: string) => Number((await pool.query(`SELECT count(*) AS n FROM ${table}`)).rows[0].n);

describe('snapshot store', () => {
  it('round-trips, and keeps each snapshot row with its content encrypted in it', async () => {
    const data = { id: 'app_1', name: 'Jira Insight', nested: { b: 2, a: [1, 'ü', null] } };
    const [a] = await put('op_1', [{ resourceId: 'app_1', tenantId: 't1', data }]);
    // Same content, keys in another order: the same canonical form, so the same hash.
    const [b] = await put('op_2', [
      {
        resourceId: 'app_1',
        tenantId: 't1',
        data: { nested: { a: [1, 'ü', null], b: 2 }, name: 'Jira Insight', id: 'app_1' },
      },
    ]);
    expect(a).not.toBe(b);
    const got = await store.get(pool, [a!, b!]);
    expect(got.get(a!)).toEqual({ ok: true, data });
    expect(got.get(b!)).toEqual({ ok: true, data });
    const rows = await pool.query(`SELECT content_hash, ciphertext FROM snapshots WHERE id = ANY($1) ORDER BY id`, [
      [a, b],
    ]);
    expect(rows.rows[0].content_hash).toBe(rows.rows[1].content_hash);
    expect(await count(`snapshot_contents`)).toBe(0);
    // Nothing readable is stored in the clear.
    for (const r of rows.rows) expect((r.ciphertext as Buffer).toString('utf8')).not.toContain('Jira');
  });

  it('two transactions snapshotting a new resource at once share one key, and both read back', async () => {
    const [a, b] = [await pool.connect(), await pool.connect()];
    try {
      await a.query('BEGIN');
      await b.query('BEGIN');
      const [first] = await store.put(a, 'op_r1', [{ resourceId: 'app_race', tenantId: 't1', data: { v: 'a' } }]);
      // b's key insert waits for a's uncommitted key, then takes it.
      const second = store.put(b, 'op_r2', [{ resourceId: 'app_race', tenantId: 't1', data: { v: 'b' } }]);
      await a.query('COMMIT');
      const [other] = await second;
      await b.query('COMMIT');
      expect(await count(`resource_keys WHERE resource_id = 'app_race'`)).toBe(1);
      const got = await store.get(pool, [first!, other!]);
      expect(got.get(first!)).toEqual({ ok: true, data: { v: 'a' } });
      expect(got.get(other!)).toEqual({ ok: true, data: { v: 'b' } });
    } finally {
      a.release();
      b.release();
    }
  });

  it('a batch mixing existing keys, new keys, a lost key race and repeated content keeps input order', async () => {
    await put('op_m0', [{ resourceId: 'app_m_old', tenantId: 't1', data: { v: 0 } }]);
    const [a, b] = [await pool.connect(), await pool.connect()];
    try {
      await a.query('BEGIN');
      await b.query('BEGIN');
      await store.put(a, 'op_m1', [{ resourceId: 'app_m_race', tenantId: 't1', data: { v: 'a' } }]);
      const batch = [
        { resourceId: 'app_m_new', tenantId: 't1', data: { v: 1 } },
        { resourceId: 'app_m_race', tenantId: 't1', data: { v: 2 } },
        { resourceId: 'app_m_old', tenantId: 't1', data: { v: 3 } },
        { resourceId: 'app_m_new', tenantId: 't1', data: { v: 1 } },
        { resourceId: 'app_m_race', tenantId: 't1', data: { v: 4 } },
      ];
      // b's new key for app_m_race waits for a's, loses, and those items are written under a's key.
      const pending = store.put(b, 'op_m2', batch);
      await a.query('COMMIT');
      const ids = await pending;
      await b.query('COMMIT');
      expect(new Set(ids).size).toBe(batch.length);
      const got = await store.get(pool, ids);
      ids.forEach((id, i) => expect(got.get(id)).toEqual({ ok: true, data: batch[i]!.data }));
      expect(await count(`resource_keys WHERE resource_id = 'app_m_race'`)).toBe(1);
    } finally {
      a.release();
      b.release();
    }
  });

  it('keysExpected false (a registry delete): a resource that has a key after all is written under it, in input order', async () => {
    // The put does not ask for keys first: the existing key's resources lose their new key to it
    // (the write's ON CONFLICT) and are sealed again under it, as after a lost race.
    await put('op_k0', [{ resourceId: 'app_k_old', tenantId: 't1', data: { v: 0 } }]);
    const keyOf = async (r: string) =>
      (await pool.query(`SELECT id FROM resource_keys WHERE resource_id = $1 AND erased_at IS NULL`, [r])).rows;
    const before = await keyOf('app_k_old');
    const batch = [
      { resourceId: 'app_k_new', tenantId: 't1', data: { v: 1 } },
      { resourceId: 'app_k_old', tenantId: 't1', data: { v: 2 } },
      { resourceId: 'app_k_new2', tenantId: 't1', data: { v: 3 } },
      { resourceId: 'app_k_old', tenantId: 't1', data: { v: 4 } },
    ];
    const ids = await inTransaction(pool, (tx) => store.put(tx, 'op_k1', batch, { keysExpected: false }));
    expect(new Set(ids).size).toBe(batch.length);
    const got = await store.get(pool, ids);
    ids.forEach((id, i) => expect(got.get(id)).toEqual({ ok: true, data: batch[i]!.data }));
    // One live key per resource: the old one kept, one new one each for the others.
    expect(await keyOf('app_k_old')).toEqual(before);
    const keyIds = await pool.query<{ key_id: string; resource_id: string }>(
      `SELECT DISTINCT key_id, resource_id FROM snapshots WHERE operation_id = 'op_k1'`,
    );
    // String() both: a bigint arrives as a string, or as a number once the app's db plugin (loaded
    // by another test file of this process) has set node-postgres's int8 parser.
    expect(String(keyIds.rows.find((r) => r.resource_id === 'app_k_old')?.key_id)).toBe(String(before[0].id));
    expect(await count(`resource_keys WHERE resource_id LIKE 'app_k_%'`)).toBe(3);
  });

  it('a key conflict undoes only the failed write: what the transaction wrote before it stays, and it commits', async () => {
    // The keys go in with a plain INSERT under a savepoint; an existing key fails it, and only the
    // work since the savepoint may be rolled back (a chunk has written its registry rows before).
    await put('op_s0', [{ resourceId: 'app_s_old', tenantId: 't1', data: { v: 0 } }]);
    const ids = await inTransaction(pool, async (tx) => {
      await tx.query(`CREATE TABLE IF NOT EXISTS before_put (n int)`);
      await tx.query(`INSERT INTO before_put VALUES (1)`);
      const out = await store.put(
        tx,
        'op_s1',
        [
          { resourceId: 'app_s_new', tenantId: 't1', data: { v: 1 } },
          { resourceId: 'app_s_old', tenantId: 't1', data: { v: 2 } },
        ],
        { keysExpected: false },
      );
      // The transaction is usable after the conflict, and later writes join it.
      await tx.query(`INSERT INTO before_put VALUES (2)`);
      return out;
    });
    expect(await count('before_put')).toBe(2);
    const got = await store.get(pool, ids);
    expect(ids.map((id) => got.get(id))).toEqual([
      { ok: true, data: { v: 1 } },
      { ok: true, data: { v: 2 } },
    ]);
    expect(await count(`resource_keys WHERE resource_id LIKE 'app_s_%'`)).toBe(2);
  });

  it('keeps the input order of a batch', async () => {
    const inputs = Array.from({ length: 50 }, (_, i) => ({ resourceId: `app_b${i}`, tenantId: 't1', data: { i } }));
    const ids = await put('op_3', inputs);
    const got = await store.get(pool, ids);
    ids.forEach((id, i) => expect(got.get(id)).toEqual({ ok: true, data: { i } }));
  });

  it('refuses to change or remove stored snapshots and contents (triggers)', async () => {
    await put('op_4', [{ resourceId: 'app_2', tenantId: 't1', data: { v: 1 } }]);
    for (const sql of [
      `UPDATE snapshots SET content_hash = 'x' WHERE resource_id = 'app_2'`,
      `UPDATE snapshots SET ciphertext = '\\x00' WHERE resource_id = 'app_2'`,
      `DELETE FROM snapshots WHERE resource_id = 'app_2'`,
      `TRUNCATE snapshot_contents`,
      `DELETE FROM resource_keys WHERE resource_id = 'app_2'`,
      `UPDATE resource_keys SET wrapped = '\\x00' WHERE resource_id = 'app_2'`,
    ]) {
      await expect(pool.query(sql), sql).rejects.toThrow(/append-only|never deleted|may only be erased/);
    }
  });

  it('never hands out tampered content: snapshot_corrupt', async () => {
    const [id] = await put('op_5', [{ resourceId: 'app_3', tenantId: 't1', data: { v: 'original' } }]);
    const [other] = await put('op_5', [{ resourceId: 'app_3', tenantId: 't1', data: { v: 'other' } }]);
    // Someone with superuser rights goes around the triggers, as an attacker on the database would.
    const c = await pool.connect();
    try {
      await c.query('ALTER TABLE snapshots DISABLE TRIGGER snapshots_append_only');
      await c.query(
        `UPDATE snapshots SET ciphertext = decode('00', 'hex') || substring(ciphertext from 2) WHERE id = $1`,
        [id],
      );
      // And points the other snapshot at content it was not (a swapped address).
      await c.query(
        `UPDATE snapshots SET content_hash = (SELECT content_hash FROM snapshots WHERE id = $1) WHERE id = $2`,
        [id, other],
      );
    } finally {
      await c.query('ALTER TABLE snapshots ENABLE TRIGGER snapshots_append_only');
      c.release();
    }
    const got = await store.get(pool, [id!, other!]);
    expect(got.get(id!)).toMatchObject({ ok: false, reason: 'snapshot_corrupt' });
    expect(got.get(other!)).toMatchObject({ ok: false, reason: 'snapshot_corrupt' });
  });

  it('a content whose hash does not match what it decrypts to is corrupt too', async () => {
    const [id] = await put('op_6', [{ resourceId: 'app_4', tenantId: 't1', data: { v: 1 } }]);
    // Content sealed correctly (same key, same aad) but whose plaintext hashes differently.
    const row = (await pool.query(`SELECT key_id, content_hash FROM snapshots WHERE id = $1`, [id])).rows[0];
    const wrapped = (await pool.query(`SELECT wrapped FROM resource_keys WHERE id = $1`, [row.key_id])).rows[0]
      .wrapped as Buffer;
    const { unwrapDataKey, seal } = await import('../../src/modules/snapshots/crypto.ts');
    const key = unwrapDataKey(MASTER, 'app_4', wrapped);
    const forged = seal(key, Buffer.from('{"v":2}'), `snapshot:app_4:${row.content_hash}`);
    const c = await pool.connect();
    try {
      await c.query('ALTER TABLE snapshots DISABLE TRIGGER snapshots_append_only');
      await c.query(`UPDATE snapshots SET iv = $1, tag = $2, ciphertext = $3 WHERE id = $4`, [
        forged.iv,
        forged.tag,
        forged.ciphertext,
        id,
      ]);
    } finally {
      await c.query('ALTER TABLE snapshots ENABLE TRIGGER snapshots_append_only');
      c.release();
    }
    expect((await store.get(pool, [id!])).get(id!)).toMatchObject({
      ok: false,
      reason: 'snapshot_corrupt',
      detail: expect.stringMatching(/hash/),
    });
  });

  it('an erasure makes every snapshot of the resource unreadable; later snapshots get a new key', async () => {
    const [before] = await put('op_7', [{ resourceId: 'app_5', tenantId: 't1', data: { v: 1 } }]);
    const erased = await inTransaction(pool, (tx) => store.erase(tx, ['app_5']));
    expect(erased).toBe(1);
    expect((await store.get(pool, [before!])).get(before!)).toMatchObject({ ok: false, reason: 'erased' });
    const [after] = await put('op_8', [{ resourceId: 'app_5', tenantId: 't1', data: { v: 1 } }]);
    expect((await store.get(pool, [after!])).get(after!)).toEqual({ ok: true, data: { v: 1 } });
    expect((await store.get(pool, [before!])).get(before!)).toMatchObject({ ok: false, reason: 'erased' });
    expect(await count(`resource_keys WHERE resource_id = 'app_5'`)).toBe(2);
  });

  it('a snapshot written before the content moved into its row is read from snapshot_contents', async () => {
    // The layout before migration 20261202070027: the row points at content stored by address.
    const [model] = await put('op_10', [{ resourceId: 'app_7', tenantId: 't1', data: { v: 'legacy' } }]);
    const c = await pool.connect();
    let legacy = 0;
    try {
      await c.query('BEGIN');
      await c.query('ALTER TABLE snapshots DROP CONSTRAINT snapshots_content_inline');
      await c.query(
        `INSERT INTO snapshot_contents (resource_id, key_id, hash, iv, tag, ciphertext)
         SELECT resource_id, key_id, content_hash, iv, tag, ciphertext FROM snapshots WHERE id = $1`,
        [model],
      );
      const r = await c.query(
        `INSERT INTO snapshots (operation_id, resource_id, tenant_id, key_id, content_hash)
         SELECT 'op_11', resource_id, tenant_id, key_id, content_hash FROM snapshots WHERE id = $1 RETURNING id`,
        [model],
      );
      legacy = Number(r.rows[0].id);
      await c.query(
        `ALTER TABLE snapshots ADD CONSTRAINT snapshots_content_inline
         CHECK (iv IS NOT NULL AND tag IS NOT NULL AND ciphertext IS NOT NULL) NOT VALID`,
      );
      await c.query('COMMIT');
    } finally {
      c.release();
    }
    expect((await store.get(pool, [legacy])).get(legacy)).toEqual({ ok: true, data: { v: 'legacy' } });
    // A new row without its content is refused (the constraint).
    await expect(
      pool.query(
        `INSERT INTO snapshots (operation_id, resource_id, tenant_id, key_id, content_hash)
         SELECT 'op_12', resource_id, tenant_id, key_id, content_hash FROM snapshots WHERE id = $1`,
        [model],
      ),
    ).rejects.toThrow(/snapshots_content_inline/);
    // Tampered legacy content is corrupt, as in the row.
    const t = await pool.connect();
    try {
      await t.query('ALTER TABLE snapshot_contents DISABLE TRIGGER snapshot_contents_append_only');
      await t.query(`UPDATE snapshot_contents SET ciphertext = '\\x00' || ciphertext WHERE resource_id = 'app_7'`);
    } finally {
      await t.query('ALTER TABLE snapshot_contents ENABLE TRIGGER snapshot_contents_append_only');
      t.release();
    }
    expect((await store.get(pool, [legacy])).get(legacy)).toMatchObject({ ok: false, reason: 'snapshot_corrupt' });
    expect((await store.get(pool, [model!])).get(model!)).toEqual({ ok: true, data: { v: 'legacy' } });
  });

  it('with another master key nothing decrypts', async () => {
    const [id] = await put('op_9', [{ resourceId: 'app_6', tenantId: 't1', data: { v: 1 } }]);
    const got = await snapshotStore(randomBytes(32)).get(pool, [id!]);
    expect(got.get(id!)).toMatchObject({ ok: false, reason: 'snapshot_corrupt' });
  });
});
