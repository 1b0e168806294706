// The snapshot store: what a resource looked like before a destructive call, kept so the call can
// be undone. Encrypted per resource (crypto.ts), content-addressed, insert-only (triggers), and
// verified on every read: a snapshot that does not decrypt, or whose content does not hash to the
// address the ledger holds, is never handed to a restore.
import type pg from 'pg';
import type { Queryable } from '../../lib/sql.ts';
import { contentOf, newDataKey, open, seal, unwrapDataKey } from './crypto.ts';

export interface SnapshotInput {
  resourceId: string;
  tenantId: string;
  data: unknown;
}

export type SnapshotRead =
  | { ok: true; data: unknown }
  /** snapshot_corrupt: altered or unreadable content; erased: its key was destroyed by an erasure. */
  | { ok: false; reason: 'snapshot_corrupt' | 'erased' | 'no_snapshot'; detail: string };

export interface SnapshotStore {
  /** In the caller's transaction: stores each input (content once), returns the snapshot ids in input order. */
  put(tx: pg.PoolClient, operationId: string, inputs: SnapshotInput[]): Promise<number[]>;
  /** Reads and verifies snapshots by id. */
  get(db: Queryable, ids: number[]): Promise<Map<number, SnapshotRead>>;
  /** Destroys every key of these resources (compliance erasure); returns how many keys. */
  erase(tx: pg.PoolClient, resourceIds: string[]): Promise<number>;
}

const aad = (resourceId: string, hash: string) => `snapshot:${resourceId}:${hash}`;

export function snapshotStore(master: Buffer): SnapshotStore {
  /**
   * The live key of each resource, created where missing (one per resource, race-safe). A key made
   * here is used as it is (no second read, no unwrap): the hot path of every chunk runs this.
   */
  async function liveKeys(tx: pg.PoolClient, resourceIds: string[]): Promise<Map<string, { id: number; key: Buffer }>> {
    const ids = [...new Set(resourceIds)];
    const read = (which: string[]) =>
      tx.query<{ id: string; resource_id: string; wrapped: Buffer }>(
        `SELECT id, resource_id, wrapped FROM resource_keys WHERE resource_id = ANY($1::text[]) AND erased_at IS NULL`,
        [which],
      );
    const keys = new Map<string, { id: number; key: Buffer }>();
    const adopt = (rows: { id: string; resource_id: string; wrapped: Buffer }[]) => {
      for (const r of rows)
        keys.set(r.resource_id, { id: Number(r.id), key: unwrapDataKey(master, r.resource_id, r.wrapped) });
    };
    adopt((await read(ids)).rows);
    const missing = ids.filter((id) => !keys.has(id));
    if (missing.length === 0) return keys;
    const fresh = missing.map((id) => newDataKey(master, id));
    const made = await tx.query<{ id: string; resource_id: string }>(
      `INSERT INTO resource_keys (resource_id, wrapped) SELECT * FROM unnest($1::text[], $2::bytea[])
       ON CONFLICT (resource_id) WHERE erased_at IS NULL DO NOTHING RETURNING id, resource_id`,
      [missing, fresh.map((f) => f.wrapped)],
    );
    const madeIds = new Map(made.rows.map((r) => [r.resource_id, Number(r.id)]));
    missing.forEach((id, k) => {
      const keyId = madeIds.get(id);
      if (keyId !== undefined) keys.set(id, { id: keyId, key: fresh[k]!.key });
    });
    // Another transaction made a key for the same resource first: use that one.
    const lost = missing.filter((id) => !madeIds.has(id));
    if (lost.length) adopt((await read(lost)).rows);
    return keys;
  }

  return {
    async put(tx, operationId, inputs) {
      if (inputs.length === 0) return [];
      const keys = await liveKeys(
        tx,
        inputs.map((i) => i.resourceId),
      );
      const rows = inputs.map((i) => {
        const { canonical, hash } = contentOf(i.data);
        const k = keys.get(i.resourceId)!;
        return {
          ...i,
          keyId: k.id,
          hash,
          sealed: seal(k.key, Buffer.from(canonical, 'utf8'), aad(i.resourceId, hash)),
        };
      });
      await tx.query(
        `INSERT INTO snapshot_contents (resource_id, key_id, hash, iv, tag, ciphertext)
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bytea[], $5::bytea[], $6::bytea[])
         ON CONFLICT DO NOTHING`,
        [
          rows.map((r) => r.resourceId),
          rows.map((r) => r.keyId),
          rows.map((r) => r.hash),
          rows.map((r) => r.sealed.iv),
          rows.map((r) => r.sealed.tag),
          rows.map((r) => r.sealed.ciphertext),
        ],
      );
      const ins = await tx.query<{ id: string; ord: number }>(
        `INSERT INTO snapshots (operation_id, resource_id, tenant_id, key_id, content_hash)
         SELECT $1, r, t, k, h FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[]) WITH ORDINALITY AS x(r, t, k, h, ord)
         ORDER BY ord RETURNING id`,
        [
          operationId,
          rows.map((r) => r.resourceId),
          rows.map((r) => r.tenantId),
          rows.map((r) => r.keyId),
          rows.map((r) => r.hash),
        ],
      );
      // Ids come from one sequence in insertion order, and the insert follows `ord`.
      return ins.rows.map((r) => Number(r.id)).sort((a, b) => a - b);
    },

    async get(db, ids) {
      const out = new Map<number, SnapshotRead>();
      if (ids.length === 0) return out;
      const r = await db.query<{
        id: string;
        resource_id: string;
        data: unknown;
        content_hash: string | null;
        key_id: string | null;
        iv: Buffer | null;
        tag: Buffer | null;
        ciphertext: Buffer | null;
        wrapped: Buffer | null;
        erased_at: Date | null;
      }>(
        `SELECT s.id, s.resource_id, s.data, s.content_hash, s.key_id, c.iv, c.tag, c.ciphertext, k.wrapped, k.erased_at
         FROM snapshots s
         LEFT JOIN snapshot_contents c ON c.resource_id = s.resource_id AND c.key_id = s.key_id AND c.hash = s.content_hash
         LEFT JOIN resource_keys k ON k.id = s.key_id
         WHERE s.id = ANY($1::bigint[])`,
        [ids],
      );
      for (const row of r.rows) {
        const id = Number(row.id);
        // A snapshot from before the encrypted store: plaintext, nothing to verify it against.
        if (row.content_hash === null) {
          out.set(id, { ok: true, data: row.data });
          continue;
        }
        if (row.erased_at !== null || row.wrapped === null) {
          out.set(id, {
            ok: false,
            reason: 'erased',
            detail: `the snapshot key of ${row.resource_id} was destroyed by an erasure`,
          });
          continue;
        }
        if (!row.ciphertext || !row.iv || !row.tag) {
          out.set(id, { ok: false, reason: 'snapshot_corrupt', detail: `the content of snapshot ${id} is missing` });
          continue;
        }
        try {
          const key = unwrapDataKey(master, row.resource_id, row.wrapped);
          const plain = open(
            key,
            { iv: row.iv, tag: row.tag, ciphertext: row.ciphertext },
            aad(row.resource_id, row.content_hash),
          );
          const data = JSON.parse(plain.toString('utf8')) as unknown;
          if (contentOf(data).hash !== row.content_hash) throw new Error('content does not hash to its address');
          out.set(id, { ok: true, data });
        } catch (err) {
          out.set(id, {
            ok: false,
            reason: 'snapshot_corrupt',
            detail: `snapshot ${id} of ${row.resource_id} failed verification: ${(err as Error).message}`,
          });
        }
      }
      for (const id of ids)
        if (!out.has(id)) out.set(id, { ok: false, reason: 'no_snapshot', detail: `snapshot ${id} does not exist` });
      return out;
    },

    async erase(tx, resourceIds) {
      const r = await tx.query(
        `UPDATE resource_keys SET wrapped = NULL, erased_at = now() WHERE resource_id = ANY($1::text[]) AND erased_at IS NULL`,
        [resourceIds],
      );
      return r.rowCount ?? 0;
    },
  };
}
