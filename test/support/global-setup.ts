// Starts a real PostgreSQL and Redis for this test run (in a temp dir, on free ports) and builds
// a migrated template database that each test file clones (CREATE DATABASE … TEMPLATE).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { startLocalServices } from '../../src/embedded/local-services.ts';
import { migrate } from '../../src/db/migrate.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    pgRootUrl: string;
    redisUrl: string;
    templateDb: string;
  }
}

export default async function setup(project: TestProject) {
  const dir = mkdtempSync(join(tmpdir(), 'blastgate-test-'));
  // Durability "fast" (fsync, synchronous_commit and full_page_writes off), chosen explicitly: this
  // PostgreSQL holds throw-away test data in a temp dir, so surviving a power cut is worth nothing,
  // while syncing every commit would slow the suite down on a small machine. The product default,
  // and what `npm start` runs, is "durable". startLocalServices logs the choice.
  const services = await startLocalServices({
    dir,
    database: 't_migrated',
    durability: 'fast',
    log: (m) => console.log(`[test services] ${m}`),
  });
  await migrate(services.databaseUrl);
  const root = services.databaseUrl.replace(/\/t_migrated$/, '');
  // A template may not have open connections when it is cloned.
  const admin = new pg.Client({ connectionString: `${root}/postgres` });
  await admin.connect();
  await admin.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 't_migrated' AND pid <> pg_backend_pid()`,
  );
  await admin.end();
  project.provide('pgRootUrl', root);
  project.provide('redisUrl', services.redisUrl);
  project.provide('templateDb', 't_migrated');
  return () => {
    const stopped = services.stop();
    if (!stopped.ok) console.error(`[test services] ${stopped.message}`);
    rmSync(dir, { recursive: true, force: true });
  };
}
