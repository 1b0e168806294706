// Registry fixtures shared by tests and benchmarks: resource types, tenants, and NDJSON for
// N tenants × M sites × K apps, generated lazily so that a million rows never sit in memory.
import { Readable } from 'node:stream';
import type { App } from '../../src/lib/schemas.ts';

export interface RegistryShape {
  tenants: number;
  sitesPerTenant: number;
  appsPerSite: number;
  /** Stop after this many resources (default: all of the shape). */
  limit?: number;
  /** Extra fields on every resource line, e.g. { protected: true }. */
  extra?: Record<string, unknown>;
}

export interface FixtureResource {
  id: string;
  type: string;
  tenantId: string;
  parentId?: string;
  [k: string]: unknown;
}

/** Types used by the fixtures: a site contains apps; deleting a site cascades to its apps. */
export const FIXTURE_TYPES = [
  { name: 'site', idPattern: '^site_[a-z0-9]+$', cascadeTo: ['app'] },
  { name: 'app', idPattern: '^app_[a-z0-9]+$', parentType: 'site' },
] as const;

export const tenantId = (t: number) => `tn_${t}`;
export const siteId = (t: number, s: number) => `site_t${t}s${s}`;
export const appId = (t: number, s: number, a: number) => `app_t${t}s${s}a${a}`;

export const resourceCount = (shape: RegistryShape) =>
  Math.min(shape.limit ?? Infinity, shape.tenants * shape.sitesPerTenant * (1 + shape.appsPerSite));

/** A shape of about `rows` resources: 1,000 per tenant (10 sites × (1 + 99 apps)). */
export const shapeForRows = (rows: number): RegistryShape => ({
  tenants: Math.max(1, Math.ceil(rows / 1000)),
  sitesPerTenant: 10,
  appsPerSite: 99,
  limit: rows,
});

export function tenantsFor(
  count: number,
  opts: { internal?: number; protectedIds?: number[]; contact?: boolean } = {},
) {
  return Array.from({ length: count }, (_, t) => ({
    id: tenantId(t),
    name: `Tenant ${t}`,
    internal: t < (opts.internal ?? 0),
    protected: opts.protectedIds?.includes(t) ?? false,
    ...(opts.contact ? { contact: { email: `ops+${t}@example.test` } } : {}),
  }));
}

/** Resources in parent-before-child order: each site, then its apps. */
export function* resourcesFor(shape: RegistryShape): Generator<FixtureResource> {
  let n = 0;
  const limit = shape.limit ?? Infinity;
  for (let t = 0; t < shape.tenants; t++) {
    for (let s = 0; s < shape.sitesPerTenant; s++) {
      if (n++ >= limit) return;
      yield { id: siteId(t, s), type: 'site', tenantId: tenantId(t), ...shape.extra };
      for (let a = 0; a < shape.appsPerSite; a++) {
        if (n++ >= limit) return;
        yield { id: appId(t, s, a), type: 'app', tenantId: tenantId(t), parentId: siteId(t, s), ...shape.extra };
      }
    }
  }
}

/** NDJSON text as chunks of `linesPerChunk` lines (for streaming request bodies). */
export function* ndjsonChunks(rows: Iterable<unknown>, linesPerChunk = 5_000): Generator<string> {
  let chunk = '';
  let n = 0;
  for (const r of rows) {
    chunk += `${JSON.stringify(r)}\n`;
    if (++n === linesPerChunk) {
      yield chunk;
      chunk = '';
      n = 0;
    }
  }
  if (chunk) yield chunk;
}

/**
 * NDJSON for a shape, byte for byte what `ndjsonChunks(resourcesFor(shape))` gives, but built from
 * templates (6× faster than JSON.stringify), so that a benchmark client in the same process takes
 * little CPU from the server it measures. Fixture IDs need no JSON escaping.
 */
export function* shapeNdjsonChunks(shape: RegistryShape, linesPerChunk = 5_000): Generator<string> {
  if (shape.extra) {
    yield* ndjsonChunks(resourcesFor(shape), linesPerChunk);
    return;
  }
  const total = resourceCount(shape);
  let chunk = '';
  let inChunk = 0;
  let n = 0;
  const add = (line: string) => {
    chunk += line;
    n++;
    return ++inChunk === linesPerChunk;
  };
  for (let t = 0; t < shape.tenants && n < total; t++) {
    const tn = tenantId(t);
    for (let s = 0; s < shape.sitesPerTenant && n < total; s++) {
      const site = siteId(t, s);
      if (add(`{"id":"${site}","type":"site","tenantId":"${tn}"}\n`)) {
        yield chunk;
        chunk = '';
        inChunk = 0;
      }
      for (let a = 0; a < shape.appsPerSite && n < total; a++) {
        if (add(`{"id":"${appId(t, s, a)}","type":"app","tenantId":"${tn}","parentId":"${site}"}\n`)) {
          yield chunk;
          chunk = '';
          inChunk = 0;
        }
      }
    }
  }
  if (chunk) yield chunk;
}

/** Whole NDJSON text: for small bodies in tests only. */
export const ndjson = (rows: Iterable<unknown>) => [...ndjsonChunks(rows)].join('');

/** A readable NDJSON body generated on demand. */
export const ndjsonStream = (rows: Iterable<unknown>) => Readable.from(ndjsonChunks(rows), { objectMode: false });

/**
 * Declares the fixture types, upserts the shape's tenants and imports its resources through the
 * real routes (app.inject, streamed NDJSON). Throws when a step does not answer 200.
 */
export async function seedRegistry(app: App, authorization: string, shape: RegistryShape) {
  const call = async (method: 'PUT' | 'POST', url: string, payload: unknown, contentType = 'application/json') => {
    const res = await app.inject({
      method,
      url,
      payload: payload as string,
      headers: { authorization, 'content-type': contentType },
    });
    if (res.statusCode !== 200)
      throw new Error(`${method} ${url} answered ${res.statusCode}: ${res.body.slice(0, 500)}`);
    return res.json();
  };
  await call('PUT', '/v1/registry/types', { types: FIXTURE_TYPES });
  await call('POST', '/v1/registry/tenants', { tenants: tenantsFor(shape.tenants) });
  return call('POST', '/v1/registry/resources', ndjsonStream(resourcesFor(shape)), 'application/x-ndjson') as Promise<{
    received: number;
    inserted: number;
    updated: number;
    unchanged: number;
  }>;
}
