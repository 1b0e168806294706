// Applies prisma/migrations to a database, recording them in `_prisma_migrations` exactly as
// `prisma migrate deploy` does (same table, sha256 checksums), so a machine with the native
// Prisma engine can take over. The Prisma CLI cannot migrate offline here (../shared/STACK.md).
// An advisory lock makes concurrent start-ups (several API/worker processes) safe.
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { ConfigError, databaseNameProblem, shownUrl } from '../config.ts';
import { isUnreachable } from '../plugins/db.ts';

export const MIGRATIONS_DIR = resolve(import.meta.dirname, '..', '..', 'prisma', 'migrations');
const LOCK_KEY = 7_342_001; // arbitrary, fixed: one migrator at a time per database
/**
 * How long a start waits for PostgreSQL to answer a new connection. A DATABASE_URL naming a port
 * where something else accepts connections and never answers (a Redis port) hung `npm start` in
 * silence until it was killed (a trial); a refused or unknown host fails at once, as before.
 */
export const STARTUP_CONNECT_MS = 10_000;

export interface MigrationResult {
  applied: string[];
  alreadyApplied: number;
}

const migrationNames = (dir: string) =>
  existsSync(dir)
    ? readdirSync(dir, { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .map((d) => d.name)
        .sort()
    : [];
const APPLIED_SQL =
  'SELECT migration_name, checksum FROM "_prisma_migrations" WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL';

/**
 * The migrations of this build that the database has not applied (all of them when it has none):
 * a worker started against the wrong database, or before the release step migrated it, says so
 * instead of failing on its first query.
 */
export async function pendingMigrations(db: Pick<pg.Pool, 'query'>, dir = MIGRATIONS_DIR): Promise<string[]> {
  const names = migrationNames(dir);
  const table = await db.query<{ ok: boolean }>(`SELECT to_regclass('"_prisma_migrations"') IS NOT NULL AS ok`);
  if (!table.rows[0]?.ok) return names;
  const done = await db.query<{ migration_name: string }>(APPLIED_SQL);
  const applied = new Set(done.rows.map((r) => r.migration_name));
  return names.filter((n) => !applied.has(n));
}

/** DATABASE_URL as it may be shown: never its password. */

/**
 * A ConfigError saying what is wrong with DATABASE_URL when the first connection of a start failed
 * because of it (nothing listens there, no such database, the login is refused); undefined for any
 * other failure. A start used to end in pg's stack trace, which named neither the variable nor a fix.
 */
export function databaseProblem(err: unknown, databaseUrl: string): ConfigError | undefined {
  const e = err as { code?: unknown; message?: unknown };
  const u = new URL(databaseUrl);
  const database = decodeURIComponent(u.pathname.slice(1)) || '(default)';
  if (e.code === '3D000')
    return new ConfigError([
      `DATABASE_URL names the database "${database}", which does not exist on ${u.host}: create it (createdb ${database}) or correct the name`,
    ]);
  if (e.code === '28P01' || e.code === '28000')
    return new ConfigError([
      `DATABASE_URL (${shownUrl(databaseUrl)}) cannot log in: ${String(e.message)}; check the user and password`,
    ]);
  if (typeof e.message === 'string' && CONNECT_TIMEOUT.test(e.message))
    return new ConfigError([
      `DATABASE_URL (${shownUrl(databaseUrl)}) did not answer as PostgreSQL within ${STARTUP_CONNECT_MS / 1000} s: check the host and port (is it PostgreSQL's?), and that PostgreSQL runs there`,
    ]);
  if (isUnreachable(err))
    return new ConfigError([
      `DATABASE_URL (${shownUrl(databaseUrl)}) cannot be reached: ${String(e.message)}; check the host and port, and that PostgreSQL runs there`,
    ]);
  return undefined;
}

/** Connects once, within `connectMs`, and lets go: a start's first look at DATABASE_URL (workers). */
export async function databaseAnswers(databaseUrl: string, connectMs = STARTUP_CONNECT_MS): Promise<void> {
  await (await startupClient(databaseUrl, connectMs)).end();
}

/** A connected client that gave up connecting after `connectMs`; a dropped connection fails the query in hand instead of the process. */
async function startupClient(databaseUrl: string, connectMs: number): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: connectMs });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/** A ConfigError naming the database (never its credentials) when it lacks any of this build's migrations. */
export async function assertMigrated(db: Pick<pg.Pool, 'query'>, databaseUrl: string): Promise<void> {
  const pending = await pendingMigrations(db);
  if (pending.length === 0) return;
  const u = new URL(databaseUrl);
  throw new ConfigError([
    `The database ${u.pathname.slice(1) || '(default)'} on ${u.host} lacks ${pending.length} of this build's migrations (first: ${pending[0]}): point DATABASE_URL at the database the API uses, or apply them first (npm run db:migrate, or start the API, which applies them)`,
  ]);
}

/** What pg says when a connect outlasts connectionTimeoutMillis (pg 8: "timeout expired"). */
const CONNECT_TIMEOUT = /^timeout expired$|due to connection timeout/;

export async function migrate(
  databaseUrl: string,
  dir = MIGRATIONS_DIR,
  connectMs = STARTUP_CONNECT_MS,
): Promise<MigrationResult> {
  const noName = databaseNameProblem(databaseUrl);
  if (noName) throw new ConfigError([noName]);
  const names = migrationNames(dir);
  const client = await startupClient(databaseUrl, connectMs);
  try {
    await client.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
    await client.query(`CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
      "id" VARCHAR(36) PRIMARY KEY NOT NULL,
      "checksum" VARCHAR(64) NOT NULL,
      "finished_at" TIMESTAMPTZ,
      "migration_name" VARCHAR(255) NOT NULL,
      "logs" TEXT,
      "rolled_back_at" TIMESTAMPTZ,
      "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
      "applied_steps_count" INTEGER NOT NULL DEFAULT 0)`);
    const done = await client.query<{ migration_name: string; checksum: string }>(APPLIED_SQL);
    const applied = new Map(done.rows.map((r) => [r.migration_name, r.checksum]));
    const result: MigrationResult = { applied: [], alreadyApplied: 0 };
    for (const name of names) {
      const sql = readFileSync(join(dir, name, 'migration.sql'), 'utf8');
      const checksum = createHash('sha256').update(sql).digest('hex');
      const seen = applied.get(name);
      if (seen !== undefined) {
        if (seen !== checksum) throw new Error(`migration ${name} was edited after it was applied (checksum differs)`);
        result.alreadyApplied++;
        continue;
      }
      await client.query('BEGIN');
      try {
        await client.query(sql);
        await client.query(
          `INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, applied_steps_count)
           VALUES ($1, $2, now(), $3, 1)`,
          [randomUUID(), checksum, name],
        );
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw new Error(`migration ${name} failed: ${(err as Error).message}`, { cause: err });
      }
      result.applied.push(name);
    }
    return result;
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => undefined);
    await client.end();
  }
}
