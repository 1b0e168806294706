// `npm run openapi`: writes openapi/openapi.json from the route schemas. The app is built but never
// listens, and needs no running PostgreSQL or Redis: the pg pool and Prisma connect on first query
// and nothing queries while the document is generated. test/http/openapi.test.ts fails when the
// committed file differs from what the routes produce.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildApp } from '../src/app.ts';
import type { App } from '../src/lib/schemas.ts';

export const OPENAPI_FILE = resolve(import.meta.dirname, '..', 'openapi', 'openapi.json');

// Nothing listens on port 1: a plugin that connects eagerly fails fast instead of reaching a
// real server by accident.
const OFFLINE = {
  databaseUrl: 'postgres://openapi@127.0.0.1:1/openapi',
  redisUrl: 'redis://127.0.0.1:1',
  logLevel: 'silent',
  // Nothing is stored or read while the document is generated; the store only needs a key's shape.
  snapshotKey: Buffer.alloc(32),
};

/** The OpenAPI document of an app that is ready (routes registered). */
export function openApiDocument(app: App): unknown {
  return app.swagger();
}

/**
 * Stable text: keys sorted at every level so that moving a route or a plugin does not reorder the
 * file, except the members of `properties`, which keep their declared order (that is the order a
 * reader sees fields in). Two-space indent, trailing newline.
 */
export function renderOpenApi(doc: unknown): string {
  return `${JSON.stringify(sortKeys(doc, false), null, 2)}\n`;
}

function sortKeys(value: unknown, keepOrder: boolean): unknown {
  if (Array.isArray(value)) return value.map((v) => sortKeys(v, false));
  if (value === null || typeof value !== 'object') return value;
  const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
  if (!keepOrder) entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  // The children of `properties` are field names; their own values are schemas again.
  return Object.fromEntries(
    entries.map(([k, v]) => [k, keepOrder ? sortKeys(v, false) : sortKeys(v, k === 'properties' && isPlainObject(v))]),
  );
}

const isPlainObject = (v: unknown) => v !== null && typeof v === 'object' && !Array.isArray(v);

export async function generateOpenApi(): Promise<string> {
  const app = await buildApp({ config: OFFLINE, logger: false });
  try {
    await app.ready();
    return renderOpenApi(openApiDocument(app));
  } finally {
    await app.close();
  }
}

async function main() {
  const text = await generateOpenApi();
  mkdirSync(dirname(OPENAPI_FILE), { recursive: true });
  writeFileSync(OPENAPI_FILE, text);
  const doc = JSON.parse(text) as { paths: Record<string, Record<string, unknown>> };
  const operations = Object.values(doc.paths).reduce((n, p) => n + Object.keys(p).length, 0);
  console.log(
    `wrote ${join('openapi', 'openapi.json')}: ${Object.keys(doc.paths).length} paths, ${operations} operations`,
  );
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
