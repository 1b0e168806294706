// The snapshot store: what a resource looked like before a destructive call, kept so the call can
// be undone. Encrypted per resource (crypto.ts), hashed, insert-only (triggers), and verified on
// every read: a snapshot that does not decrypt, or whose content does not hash to the hash it
// carries, is never handed to a restore.
import type pg from 'pg';
import { intArray, textArray } from '../../lib/pg-array.ts';
import { inSlices } from '../../lib/slices.ts';
import type { Queryable } from '../../lib/sql.ts';
import {
  IV_BYTES as IV,
  TAG_BYTES as TAG,
  contentOf,
  freshIvs,
  newDataKeys,
  open,
  seal,
  unwrapDataKey,
} from './crypto.ts';

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
  /**
   * In the caller's transaction: stores each input (content once), returns the snapshot ids in input
   * order. `keysExpected: false`: the resources are expected to have no key yet (a delete's, almost
   * always: a key is made at a resource's first snapshot), so their keys are made without asking
   * first; one that has a key after all is sealed again under it, as after a lost race.
   */
  put(
    tx: pg.PoolClient,
    operationId: string,
    inputs: SnapshotInput[],
    opts?: { keysExpected?: boolean },
  ): Promise<number[]>;
  /** Reads and verifies snapshots by id. */
  get(db: Queryable, ids: number[]): Promise<Map<number, SnapshotRead>>;
  /** Destroys every key of these resources (compliance erasure); returns how many keys. */
  erase(tx: pg.PoolClient, resourceIds: string[]): Promise<number>;
}

const aad = (resourceId: string, hash: string) => `snapshot:${resourceId}:${hash}`;

/** One item of a put, sealed: `keyId` null means under a key this same statement creates. */
interface Sealed {
  resourceId: string;
  tenantId: string;
  hash: string;
  keyId: number | null;
  iv: Buffer;
  tag: Buffer;
  ciphertext: Buffer;
}

/**
 * One round trip for the whole write: the missing keys and the snapshot rows with their content, in
 * input order. The keys go in with a plain INSERT first (`KEYS_PLAIN`): a key row made by another
 * transaction meanwhile makes it fail on the one-live-key index, and `put` then writes again with
 * `KEYS_RACE_SAFE`, whose ON CONFLICT skips it. A plain insert because it is the usual case (a
 * delete's resources have no key) and ON CONFLICT's speculative insertion costs a second index
 * look and one more WAL record per row (Heap/HEAP_CONFIRM, pg_walinspect): one of ~20 per item of
 * a registry delete. An item whose new key lost a race gets no key id from `k`, so its snapshot is
 * not written; `lost` tells the caller which keys were not created (none, almost always: the names
 * of the ~1,000 keys a registry chunk makes, sent back, were ~2% of what a waves run allocated).
 * The content is in the snapshot row (not content-addressed in snapshot_contents, as before
 * 20261202070027): one row and three index entries per snapshot.
 */
const KEYS_PLAIN = `
  INSERT INTO resource_keys (resource_id, wrapped)
  SELECT r, substring($2::bytea FROM o + 1 FOR n) FROM unnest($1::text[], $3::int[], $4::int[]) AS u(r, o, n)
  RETURNING id, resource_id`;
const KEYS_RACE_SAFE = KEYS_PLAIN.replace(
  'RETURNING',
  'ON CONFLICT (resource_id) WHERE erased_at IS NULL DO NOTHING RETURNING',
);
const UNIQUE_VIOLATION = '23505';

const writeSql = (keys: string) => `
WITH k AS (${keys}
), s AS (
  INSERT INTO snapshots (operation_id, resource_id, tenant_id, key_id, content_hash, iv, tag, ciphertext)
  SELECT $12, u.r, u.t, coalesce(u.kid, k.id), u.h, substring($9::bytea FROM u.o + 1 FOR ${IV}),
         substring($9::bytea FROM u.o + ${IV + 1} FOR ${TAG}),
         substring($9::bytea FROM u.o + ${IV + TAG + 1} FOR u.n - ${IV + TAG})
  FROM unnest($5::text[], $6::text[], $7::text[], $8::bigint[], $10::int[], $11::int[])
    WITH ORDINALITY AS u(r, t, h, kid, o, n, ord)
  LEFT JOIN k ON u.kid IS NULL AND k.resource_id = u.r
  WHERE coalesce(u.kid, k.id) IS NOT NULL ORDER BY u.ord RETURNING id
)
SELECT (SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM s) AS ids,
       (SELECT coalesce(array_agg(u.r), '{}') FROM unnest($1::text[]) AS u(r)
        WHERE NOT EXISTS (SELECT 1 FROM k WHERE k.resource_id = u.r)) AS lost`;
const WRITE_PLAIN = writeSql(KEYS_PLAIN);
const WRITE_RACE_SAFE = writeSql(KEYS_RACE_SAFE);

/**
 * Many byte strings as one Buffer with each one's offset and length: a Buffer parameter travels in
 * binary, where a bytea[] is written as hex text (twice the bytes, encoded here, decoded there).
 */
function pack(parts: Buffer[][]): { blob: Buffer; offsets: number[]; lengths: number[] } {
  const offsets: number[] = [];
  const lengths: number[] = [];
  let at = 0;
  for (const p of parts) {
    const n = p.reduce((sum, b) => sum + b.length, 0);
    offsets.push(at);
    lengths.push(n);
    at += n;
  }
  return { blob: Buffer.concat(parts.flat(), at), offsets, lengths };
}

export function snapshotStore(master: Buffer): SnapshotStore {
  /** The live keys of these resources (unwrapped); resources without one are absent. */
  async function readKeys(tx: pg.PoolClient, resourceIds: string[]): Promise<Map<string, { id: number; key: Buffer }>> {
    const r = await tx.query<{ id: string; resource_id: string; wrapped: Buffer }>(
      `SELECT id, resource_id, wrapped FROM resource_keys WHERE resource_id = ANY($1::text[]) AND erased_at IS NULL`,
      [textArray(resourceIds)],
    );
    return new Map(
      r.rows.map((k) => [k.resource_id, { id: Number(k.id), key: unwrapDataKey(master, k.resource_id, k.wrapped) }]),
    );
  }

  /**
   * Seals every item under its resource's key: an existing one (`existing`), else the fresh one in
   * `fresh` (created by the same statement). Canonical form and hash are computed once per item
   * (`contents`).
   */
  async function sealAll(
    inputs: SnapshotInput[],
    contents: { canonical: string; hash: string }[],
    existing: Map<string, { id: number; key: Buffer }>,
    fresh: Map<string, Buffer>,
  ): Promise<Sealed[]> {
    const ivs = freshIvs(inputs.length);
    return inSlices(inputs, (slice, offset) =>
      slice.map((i, k) => {
        const n = offset + k;
        const { canonical, hash } = contents[n]!;
        const old = existing.get(i.resourceId);
        const s = seal(old?.key ?? fresh.get(i.resourceId)!, canonical, aad(i.resourceId, hash), ivs[n]);
        return { resourceId: i.resourceId, tenantId: i.tenantId, hash, keyId: old?.id ?? null, ...s };
      }),
    );
  }

  async function write(
    tx: pg.PoolClient,
    operationId: string,
    rows: Sealed[],
    newKeys: { resourceId: string; wrapped: Buffer }[],
    sql = WRITE_RACE_SAFE,
  ): Promise<{ ids: number[]; lost: Set<string> }> {
    const keys = pack(newKeys.map((k) => [k.wrapped]));
    const sealed = pack(rows.map((x) => [x.iv, x.tag, x.ciphertext]));
    // Arrays as literals (lib/pg-array.ts): node-postgres's own encoding was most of a put's garbage.
    const r = await tx.query<{ ids: string[]; lost: string[] }>(sql, [
      textArray(newKeys.map((k) => k.resourceId)),
      keys.blob,
      intArray(keys.offsets),
      intArray(keys.lengths),
      textArray(rows.map((x) => x.resourceId)),
      textArray(rows.map((x) => x.tenantId)),
      textArray(rows.map((x) => x.hash)),
      intArray(rows.map((x) => x.keyId)),
      sealed.blob,
      intArray(sealed.offsets),
      intArray(sealed.lengths),
      operationId,
    ]);
    const row = r.rows[0]!;
    return { ids: row.ids.map(Number), lost: new Set(row.lost) };
  }

  /**
   * The write with its keys inserted plainly, under a savepoint: when another transaction made one
   * of them first, the statement fails as a whole (after waiting for that one's commit) and is
   * written again race-safe, where those items come back `lost`.
   */
  async function writeKeysPlainFirst(
    tx: pg.PoolClient,
    operationId: string,
    rows: Sealed[],
    newKeys: { resourceId: string; wrapped: Buffer }[],
  ): Promise<{ ids: number[]; lost: Set<string> }> {
    if (newKeys.length === 0) return write(tx, operationId, rows, newKeys);
    await tx.query('SAVEPOINT snapshot_keys');
    try {
      return await write(tx, operationId, rows, newKeys, WRITE_PLAIN);
    } catch (err) {
      if ((err as { code?: string }).code !== UNIQUE_VIOLATION) throw err;
    }
    await tx.query('ROLLBACK TO SAVEPOINT snapshot_keys');
    return write(tx, operationId, rows, newKeys);
  }

  return {
    async put(tx, operationId, inputs, opts) {
      if (inputs.length === 0) return [];
      // In slices (lib/slices.ts): the calls in flight on this event loop are answered meanwhile.
      const contents = await inSlices(inputs, (slice) => slice.map((i) => contentOf(i.data)));
      // Not asked when no key is expected: the write's key insert finds the ones that exist (the
      // plain insert fails on them and the race-safe one skips them), and those items take the lost
      // race's path below (a statement less per chunk of a registry delete, whose resources have none).
      const existing =
        opts?.keysExpected === false
          ? new Map<string, { id: number; key: Buffer }>()
          : await readKeys(tx, [...new Set(inputs.map((i) => i.resourceId))]);
      const missing = [...new Set(inputs.map((i) => i.resourceId).filter((id) => !existing.has(id)))];
      const made = await inSlices(missing, (slice) => newDataKeys(master, slice));
      const fresh = new Map(missing.map((id, k) => [id, made[k]!.key]));
      const rows = await sealAll(inputs, contents, existing, fresh);
      const first = await writeKeysPlainFirst(
        tx,
        operationId,
        rows,
        missing.map((id, k) => ({ resourceId: id, wrapped: made[k]!.wrapped })),
      );
      // Ids come from one sequence in insertion order, and the insert follows input order.
      const lost = (i: SnapshotInput) => first.lost.has(i.resourceId);
      if (!inputs.some(lost)) return first.ids;
      // Another transaction made a key for some resource first (we waited for it on the unique
      // index): those items are sealed again under that key and written in a second statement.
      const retry = inputs.map((i, n) => ({ i, n })).filter(({ i }) => lost(i));
      const theirs = await readKeys(tx, [...new Set(retry.map(({ i }) => i.resourceId))]);
      const second = await write(
        tx,
        operationId,
        await sealAll(
          retry.map(({ i }) => i),
          retry.map(({ n }) => contents[n]!),
          theirs,
          new Map(),
        ),
        [],
      );
      const out: number[] = [];
      let a = 0;
      let b = 0;
      for (const i of inputs) out.push(lost(i) ? second.ids[b++]! : first.ids[a++]!);
      return out;
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
        // Content in the row, or (snapshots written before 20261202070027) in snapshot_contents.
        `SELECT s.id, s.resource_id, s.data, s.content_hash, s.key_id, coalesce(s.iv, c.iv) AS iv,
           coalesce(s.tag, c.tag) AS tag, coalesce(s.ciphertext, c.ciphertext) AS ciphertext, k.wrapped, k.erased_at
         FROM snapshots s
         LEFT JOIN snapshot_contents c ON s.ciphertext IS NULL
           AND c.resource_id = s.resource_id AND c.key_id = s.key_id AND c.hash = s.content_hash
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
