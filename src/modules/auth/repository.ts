// Data access for API tokens, in plain SQL on pg (one way for the whole module): the writes run in
// the caller's transaction so that each change commits together with its audit event.
import type pg from 'pg';
import { inTransaction, type Queryable } from '../../lib/sql.ts';
import type { TokenScope } from './roles.ts';

export interface TokenRow {
  id: string;
  name: string;
  role: string;
  scope: TokenScope | null;
  createdBy: string | null;
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
}

export interface TokenListRow extends TokenRow {
  createdByName: string | null;
  /** The latest time an older secret (replaced by a rotation) still works; null: none does. */
  previousSecretsValidUntil: Date | null;
}

/** A secret and the token it belongs to; `retiresAt` is when a rotation ends this secret. */
export interface SecretMatch {
  token: TokenRow;
  retiresAt: Date | null;
}

// Serialises changes to the set of admin tokens (bootstrap, revoking an admin), so two of them at
// once cannot both see "another admin exists" and leave none.
const ADMIN_SET_LOCK = 7_342_004;
/** Serialises token creation: a name is checked and taken in one step (see nameInUse). */
const TOKEN_NAME_LOCK = 7_342_008;

const COLUMNS = 't.id, t.name, t.role, t.scope, t.created_by, t.created_at, t.expires_at, t.revoked_at';

const toToken = (r: Record<string, unknown>): TokenRow => ({
  id: r.id as string,
  name: r.name as string,
  role: r.role as string,
  scope: (r.scope as TokenScope | null) ?? null,
  createdBy: (r.created_by as string | null) ?? null,
  createdAt: r.created_at as Date,
  expiresAt: (r.expires_at as Date | null) ?? null,
  revokedAt: (r.revoked_at as Date | null) ?? null,
});

/**
 * The one read authentication needs. It takes any Queryable, so authentication can run on a pool
 * of its own (one that uploads cannot exhaust) without the rest of the repository.
 */
export async function findBySecretHash(db: Queryable, hash: string): Promise<SecretMatch | undefined> {
  const r = await db.query(
    `SELECT ${COLUMNS}, s.retires_at FROM api_token_secrets s JOIN api_tokens t ON t.id = s.token_id WHERE s.hash = $1`,
    [hash],
  );
  const row = r.rows[0] as Record<string, unknown> | undefined;
  return row && { token: toToken(row), retiresAt: (row.retires_at as Date | null) ?? null };
}

export interface NewToken {
  name: string;
  role: string;
  scope: TokenScope | null;
  expiresAt: Date | null;
  createdBy: string | null;
  secretHash: string;
}

export function tokenRepository(pool: pg.Pool) {
  return {
    findBySecretHash: (hash: string) => findBySecretHash(pool, hash),
    transaction: <T>(fn: (tx: pg.PoolClient) => Promise<T>) => inTransaction(pool, fn),

    async list(): Promise<TokenListRow[]> {
      const r = await pool.query(
        `SELECT ${COLUMNS}, c.name AS created_by_name,
           (SELECT max(s.retires_at) FROM api_token_secrets s WHERE s.token_id = t.id AND s.retires_at > now())
             AS previous_valid_until
         FROM api_tokens t LEFT JOIN api_tokens c ON c.id::text = t.created_by
         ORDER BY t.created_at, t.id`,
      );
      return r.rows.map((row: Record<string, unknown>) => ({
        ...toToken(row),
        createdByName: (row.created_by_name as string | null) ?? null,
        previousSecretsValidUntil: (row.previous_valid_until as Date | null) ?? null,
      }));
    },

    /**
     * The token in use (not revoked, not expired) with this name or one that reads the same, if any, after taking the lock
     * that serialises token creation (two creates of one name at once cannot both pass).
     */
    async nameInUse(tx: pg.PoolClient, name: string): Promise<{ id: string; role: string } | undefined> {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [TOKEN_NAME_LOCK]);
      const r = await tx.query<{ id: string; role: string }>(
        // Compared as people read them: "ci-bot", "CI-Bot", "ci-bot " and "ci-bot" with a no-break
        // space (NFKC makes it a space) are one name in an audit log.
        `SELECT id, role FROM api_tokens
         WHERE lower(btrim(normalize(name, NFKC))) = lower(btrim(normalize($1, NFKC)))
           AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
         LIMIT 1`,
        [name],
      );
      return r.rows[0];
    },

    /** Of a scope's tenants and types, those the registry does not have (in the order given); null: none. */
    async unknownInScope(
      tx: Queryable,
      scope: TokenScope,
    ): Promise<{ tenants?: string[]; resourceTypes?: string[] } | null> {
      const r = await tx.query<{ tenants: string[]; types: string[] }>(
        `SELECT ARRAY(SELECT x FROM unnest($1::text[]) WITH ORDINALITY AS u(x, n)
                      WHERE NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = u.x) ORDER BY n) AS tenants,
                ARRAY(SELECT x FROM unnest($2::text[]) WITH ORDINALITY AS u(x, n)
                      WHERE NOT EXISTS (SELECT 1 FROM resource_types rt WHERE rt.name = u.x) ORDER BY n) AS types`,
        [scope.tenants ?? [], scope.resourceTypes ?? []],
      );
      const { tenants, types } = r.rows[0]!;
      if (!tenants.length && !types.length) return null;
      return { ...(tenants.length ? { tenants } : {}), ...(types.length ? { resourceTypes: types } : {}) };
    },

    /** Inserts a token with its first secret. */
    async insert(tx: pg.PoolClient, t: NewToken): Promise<TokenRow> {
      const r = await tx.query(
        `INSERT INTO api_tokens AS t (id, name, role, scope, expires_at, created_by)
         VALUES (gen_random_uuid(), $1, $2, $3, $4, $5) RETURNING ${COLUMNS}`,
        [t.name, t.role, t.scope === null ? null : JSON.stringify(t.scope), t.expiresAt, t.createdBy],
      );
      const token = toToken(r.rows[0] as Record<string, unknown>);
      await tx.query('INSERT INTO api_token_secrets (hash, token_id) VALUES ($1, $2)', [t.secretHash, token.id]);
      return token;
    },

    /** The token under its row lock, so concurrent rotations and revocations of it queue. */
    async lock(tx: pg.PoolClient, id: string): Promise<TokenRow | undefined> {
      const r = await tx.query(`SELECT ${COLUMNS} FROM api_tokens t WHERE t.id = $1 FOR UPDATE`, [id]);
      return r.rows[0] ? toToken(r.rows[0] as Record<string, unknown>) : undefined;
    },

    /** A rotation: every current secret stops at `until` (sooner if it already would), then a new one is added. */
    async rotateSecret(tx: pg.PoolClient, tokenId: string, until: Date, newHash: string) {
      await tx.query(
        `UPDATE api_token_secrets SET retires_at = $2 WHERE token_id = $1 AND (retires_at IS NULL OR retires_at > $2)`,
        [tokenId, until],
      );
      await tx.query('INSERT INTO api_token_secrets (hash, token_id) VALUES ($1, $2)', [newHash, tokenId]);
    },

    async revoke(tx: pg.PoolClient, id: string, at: Date) {
      await tx.query('UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL', [id, at]);
    },

    /** Held until the transaction ends; see ADMIN_SET_LOCK. */
    async lockAdminSet(tx: pg.PoolClient) {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [ADMIN_SET_LOCK]);
    },

    /** Admin tokens that work at `now`: not revoked, not expired, with a secret that is not retired. */
    async countActiveAdmins(tx: pg.PoolClient, now: Date, except: string | null = null): Promise<number> {
      const r = await tx.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM api_tokens t
         WHERE t.role = 'admin' AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $1)
           AND ($2::uuid IS NULL OR t.id <> $2::uuid)
           AND EXISTS (SELECT 1 FROM api_token_secrets s
                       WHERE s.token_id = t.id AND (s.retires_at IS NULL OR s.retires_at > $1))`,
        [now, except],
      );
      return r.rows[0]!.n;
    },
  };
}

export type TokenRepository = ReturnType<typeof tokenRepository>;
