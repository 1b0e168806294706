// Seeds a registry directly with set-based SQL: the shape of the April 2022 incident — sites that
// each belong to one customer, with apps inside them.
import pg from 'pg';

export interface SeedOptions {
  sites: number;
  appsPerSite: number;
  /** The first N tenants are internal (go in wave 0). */
  internalTenants?: number;
  /** App IDs marked protected. */
  protectedApps?: string[];
  /** Tenants flagged protected. */
  protectedTenants?: string[];
}

export const siteId = (i: number) => `site_${String(i).padStart(5, '0')}`;
export const appId = (site: number, j: number) => `app_${String(site).padStart(5, '0')}_${String(j).padStart(2, '0')}`;
export const tenantId = (i: number) => `tenant_${String(i).padStart(5, '0')}`;

export async function seedRegistry(databaseUrl: string, o: SeedOptions) {
  // IDs carry the app number in two digits (appId() and the SQL below agree only up to 99).
  if (o.appsPerSite > 100) throw new Error('seedRegistry: at most 100 apps per site');
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query(`INSERT INTO resource_types (name, id_pattern, parent_type, cascade_to) VALUES
      ('site', '^site_[0-9]+$', NULL, ARRAY['app']), ('app', '^app_[0-9_]+$', 'site', ARRAY[]::text[])
      ON CONFLICT (name) DO NOTHING`);
    const n = o.sites;
    await client.query(
      `INSERT INTO tenants (id, name, internal, protected)
       SELECT 'tenant_' || lpad(i::text, 5, '0'), 'Customer ' || i, i < $2, 'tenant_' || lpad(i::text, 5, '0') = ANY($3::text[])
       FROM generate_series(0, $1 - 1) i`,
      [n, o.internalTenants ?? 0, o.protectedTenants ?? []],
    );
    await client.query(
      `INSERT INTO resources (id, type, tenant_id)
       SELECT 'site_' || lpad(i::text, 5, '0'), 'site', 'tenant_' || lpad(i::text, 5, '0') FROM generate_series(0, $1 - 1) i`,
      [n],
    );
    await client.query(
      `INSERT INTO resources (id, type, tenant_id, parent_id, protected)
       SELECT 'app_' || lpad(i::text, 5, '0') || '_' || lpad(j::text, 2, '0'), 'app', 'tenant_' || lpad(i::text, 5, '0'),
              'site_' || lpad(i::text, 5, '0'),
              ('app_' || lpad(i::text, 5, '0') || '_' || lpad(j::text, 2, '0')) = ANY($3::text[])
       FROM generate_series(0, $1 - 1) i, generate_series(0, $2 - 1) j`,
      [n, o.appsPerSite, o.protectedApps ?? []],
    );
  } finally {
    await client.end();
  }
}

export async function query<T extends pg.QueryResultRow = Record<string, unknown>>(
  databaseUrl: string,
  sql: string,
  params: unknown[] = [],
): Promise<T[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/**
 * The last value of a sequence (0 before its first nextval): a fault trigger counts its hits in
 * one, since a sequence is not rolled back with the transaction the trigger fails or holds.
 */
export async function sequenceValue(databaseUrl: string, name: string): Promise<number> {
  const [row] = await query<{ n: string }>(
    databaseUrl,
    `SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS n FROM ${name}`,
  );
  return Number(row!.n);
}
