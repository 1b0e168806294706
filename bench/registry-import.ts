// Benchmark: a bulk registry import of N resources as one streamed NDJSON request over real HTTP.
// The body is generated chunk by chunk while it is sent; it never exists whole in memory.
//   node --import tsx bench/registry-import.ts [rows]      (default 1,000,000; own Postgres/Redis)
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import type { App } from '../src/lib/schemas.ts';
import { FIXTURE_TYPES, shapeForRows, shapeNdjsonChunks, tenantsFor } from '../test/support/registry-fixtures.ts';

export interface RegistryImportBench {
  rows: number;
  seconds: number;
  rowsPerSec: number;
  peakRssMb?: number;
  inserted: number;
  updated: number;
  unchanged: number;
}

/** Sends a streamed NDJSON body to `url`; resolves with the status and the parsed answer. */
async function postStream(url: URL, authorization: string, body: Readable): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      { method: 'POST', headers: { authorization, 'content-type': 'application/x-ndjson' } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
        });
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) });
          } catch (err) {
            reject(err instanceof Error ? err : new Error(String(err)));
          }
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    // Backpressure comes from the socket: the generator only runs as fast as the server reads.
    pipeline(body, req).catch(reject);
  });
}

/**
 * Declares the fixture types, upserts the tenants (1 per 1,000 rows), then times one NDJSON import
 * of `rows` resources through app's HTTP listener (started on 127.0.0.1:0 if not listening yet).
 */
export async function benchRegistryImport({
  app,
  auth,
  rows,
}: {
  app: App;
  auth: string;
  rows: number;
}): Promise<RegistryImportBench> {
  const shape = shapeForRows(rows);
  const headers = { authorization: auth, 'content-type': 'application/json' };
  for (const [url, method, payload] of [
    ['/v1/registry/types', 'PUT', { types: FIXTURE_TYPES }],
    ['/v1/registry/tenants', 'POST', { tenants: tenantsFor(shape.tenants) }],
  ] as const) {
    const res = await app.inject({ method, url, headers, payload });
    if (res.statusCode !== 200) throw new Error(`${method} ${url} answered ${res.statusCode}: ${res.body}`);
  }
  if (!app.server.listening) await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (!address || typeof address !== 'object') throw new Error('the app is not listening on a TCP port');
  const url = new URL(`http://127.0.0.1:${address.port}/v1/registry/resources`);

  let peakRss = process.memoryUsage.rss();
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
  }, 50);
  const started = process.hrtime.bigint();
  try {
    const res = await postStream(url, auth, Readable.from(shapeNdjsonChunks(shape)));
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    if (res.status !== 200)
      throw new Error(`import answered ${res.status}: ${JSON.stringify(res.json).slice(0, 1000)}`);
    const counts = res.json as { received: number; inserted: number; updated: number; unchanged: number };
    if (counts.received !== rows) throw new Error(`import received ${counts.received} rows, sent ${rows}`);
    return {
      rows,
      seconds,
      rowsPerSec: Math.round(rows / seconds),
      peakRssMb: Math.round(peakRss / 2 ** 20),
      inserted: counts.inserted,
      updated: counts.updated,
      unchanged: counts.unchanged,
    };
  } finally {
    clearInterval(sampler);
  }
}

async function main() {
  const rows = Number(process.argv[2] ?? 1_000_000);
  const [{ startLocalServices }, { migrate }, { buildApp }] = await Promise.all([
    import('../src/embedded/local-services.ts'),
    import('../src/db/migrate.ts'),
    import('../src/app.ts'),
  ]);
  const dir = mkdtempSync(join(tmpdir(), 'blastgate-bench-'));
  // Throw-away benchmark data: fsync off (said here and in the log of bench/support.ts).
  const services = await startLocalServices({ dir, durability: 'fast', log: () => undefined });
  try {
    await migrate(services.databaseUrl);
    const app = await buildApp({
      config: {
        databaseUrl: services.databaseUrl,
        redisUrl: services.redisUrl,
        logLevel: 'warn',
        snapshotKey: randomBytes(32), // throw-away data
      },
      logger: false,
    });
    try {
      const token = 'bg_bench_admin_token_00000000000000';
      await app.authService.ensureBootstrap(token);
      const auth = `Bearer ${token}`;
      const first = await benchRegistryImport({ app, auth, rows });
      const again = await benchRegistryImport({ app, auth, rows });
      console.table(
        [
          { run: 'fresh import', ...first },
          { run: 're-import (identical)', ...again },
        ].map((r) => ({ ...r, seconds: Number(r.seconds.toFixed(2)) })),
      );
    } finally {
      await app.close();
    }
  } finally {
    services.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
